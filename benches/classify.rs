//! How long the webhook's pure handling spends reading one reply: a mix of
//! real replies of every class and several languages, read one after the
//! other; criterion reports the time for the whole mix, and the time per
//! message is printed beside it.
//!
//! Run with `cargo bench --bench classify` (profile `bench`: release with
//! thin LTO, see Cargo.toml).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sms_consent::domain::keywords::read;

/// Replies as patients send them: opt-outs, opt-ins, help, unclear and
/// ordinary messages, in English, Spanish, French, Portuguese, Vietnamese,
/// Chinese, Tagalog, Korean and Haitian Creole.
const REPLIES: &[&str] = &[
    "STOP",
    "Stop",
    "stop.",
    "STOP!!",
    "Stop. Thank you",
    "please stop texting me",
    "Stop. Wrong number",
    "STOP\n\nSent from my iPhone",
    "UNSUBSCRIBE",
    "STOP ALL",
    "No more messages please",
    "Take me off your list",
    "START",
    "unstop",
    "Yes",
    "HELP",
    "info?",
    "How do I stop these",
    "Please stop texting my son",
    "Can I stop by at 3?",
    "Cancel my appointment",
    "Can I cancel and reschedule?",
    "I will be there, thanks",
    "See you tomorrow at 10:30. Do I need to bring my insurance card?",
    "Ending my visit early?",
    "weekend",
    "Thanks!",
    "PARAR",
    "No me envíen más mensajes",
    "Ya no quiero recibir mensajes",
    "Quítenme de la lista por favor",
    "¿Puedo parar de tomar la pastilla?",
    "AYUDA",
    "Gracias, ahí estaré",
    "ARRÊT",
    "Je veux arrêter les messages",
    "Não quero mais mensagens",
    "DỪNG",
    "Hủy đăng ký",
    "Tôi có cần dùng thuốc trước không?",
    "退订",
    "请停止发送，谢谢",
    "我可以停止服药吗？",
    "TIGIL",
    "Salamat po, pupunta ako",
    "중지해 주세요",
    "약 복용을 중지해도 되나요?",
    "KANPE",
    "Mèsi, m ap la",
    "😀",
];

fn classify(c: &mut Criterion) {
    // Build the tables before measuring: the first read pays for them once.
    for reply in REPLIES {
        black_box(read(reply));
    }
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(REPLIES.len() as u64));
    group.bench_function("mixed_replies", |b| {
        b.iter(|| {
            for reply in REPLIES {
                black_box(read(black_box(reply)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, classify);
criterion_main!(benches);

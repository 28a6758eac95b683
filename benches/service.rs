//! The service over the embedded store (redb in a temporary directory, the
//! local keyring): one authorization, a batch of 100, and an inbound STOP
//! recorded durably (a new message each time: a committed transaction with
//! its fsync). 1,000 numbers are seeded first, a tenth of them opted out.
//!
//! Run with `cargo bench --bench service` (profile `bench`, see Cargo.toml).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sms_consent::domain::{InboundMessage, PhoneNumber};
use sms_consent::ports::SystemClock;
use sms_consent::providers::twilio;
use sms_consent::runtime::local::{self, Options};
use sms_consent::service::AuthorizationQuery;

const CLINIC: &str = "+14155550100";
const SEEDED: u32 = 1_000;

const CONFIG: &str = r#"
[[programs]]
id = "clinic"
name = "Lakeside Reminders"
organization = "Lakeside Family Clinic"
numbers = ["+14155550100"]
help_contact = "555-0100"
frequency = "Msg frequency varies"
categories = ["appointment_reminders", "billing"]
default = "opted_in"
send_rules = []
"#;

fn patient(i: u32) -> String {
    format!("+1415867{:04}", i % 10_000)
}

fn message(id: String, from: &str, text: &str) -> InboundMessage {
    InboundMessage {
        provider: twilio::NAME,
        message_id: id,
        from: PhoneNumber::parse(from).unwrap(),
        to: Some(PhoneNumber::parse(CLINIC).unwrap()),
        text: text.into(),
        occurred_at: None,
        replay_key: None,
    }
}

fn service(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = runtime
        .block_on(local::start(
            Options {
                config: Some(config),
                listen: Some("127.0.0.1:0".into()),
                data_dir: Some(dir.path().join("data")),
                sns_network: None,
            },
            Arc::new(SystemClock),
        ))
        .expect("server starts");
    let service = server.state.service.clone();
    runtime.block_on(async {
        for i in 0..SEEDED {
            let text = if i % 10 == 0 { "STOP" } else { "START" };
            service
                .handle_inbound(&message(format!("SMseed{i}"), &patient(i), text), twilio::REPLY_STYLE)
                .await
                .unwrap();
        }
    });
    let numbers: Vec<String> = (0..SEEDED).map(patient).collect();

    let mut group = c.benchmark_group("service");
    let query = AuthorizationQuery { to: &numbers[1], program: "clinic", category: "appointment_reminders" };
    assert!(runtime.block_on(service.authorize(&query)).allowed);
    group.bench_function("authorize", |b| b.iter(|| runtime.block_on(service.authorize(black_box(&query)))));
    let batch: Vec<AuthorizationQuery<'_>> = numbers[..100]
        .iter()
        .map(|to| AuthorizationQuery { to, program: "clinic", category: "appointment_reminders" })
        .collect();
    group.throughput(Throughput::Elements(100));
    group.bench_function("authorize_batch_100", |b| {
        b.iter(|| runtime.block_on(service.authorize_many(black_box(&batch))))
    });
    group.throughput(Throughput::Elements(1));
    let mut next = 0u64;
    group.bench_function("inbound_stop", |b| {
        b.iter_batched(
            || {
                next += 1;
                message(format!("SMbench{next}"), &numbers[(next % SEEDED as u64) as usize], "STOP")
            },
            |m| runtime.block_on(service.handle_inbound(&m, twilio::REPLY_STYLE)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
    drop(service);
    runtime.block_on(server.shutdown()).unwrap();
}

criterion_group!(benches, service);
criterion_main!(benches);

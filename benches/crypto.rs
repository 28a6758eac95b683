//! The record cryptography on the request path: sealing and opening a value
//! (AES-256-GCM under a cached data key, no key service call), the phone
//! number's blind index, and a state's integrity tag.
//!
//! Run with `cargo bench --bench crypto` (profile `bench`, see Cargo.toml).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sms_consent::adapters::local_keyring::LocalKeyring;
use sms_consent::crypto::{CacheLimits, Crypto};
use sms_consent::domain::{Consent, ConsentChange, ConsentState, PhoneNumber, Scope};

fn crypto(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keyring = LocalKeyring::open_or_create(dir.path()).unwrap();
    let crypto = runtime.block_on(async {
        let wrapped = Crypto::generate_keys(&keyring).await.unwrap();
        Crypto::start(Arc::new(keyring), &wrapped, "embedded", CacheLimits::default()).await.unwrap()
    });
    let mut group = c.benchmark_group("crypto");
    let sealed = runtime.block_on(crypto.seal("+14158675309", "PHONE#x", "STATE", "phone")).unwrap();
    group.bench_function("seal", |b| {
        b.iter(|| runtime.block_on(crypto.seal(black_box("+14158675309"), "PHONE#x", "STATE", "phone")).unwrap())
    });
    group.bench_function("open", |b| {
        b.iter(|| runtime.block_on(crypto.open(black_box(&sealed), "PHONE#x", "STATE", "phone")).unwrap())
    });
    let phone = PhoneNumber::parse("+14158675309").unwrap();
    group.bench_function("blind_index", |b| b.iter(|| crypto.blind_index(black_box(&phone))));
    let mut state = ConsentState::default();
    for (i, scope) in [Scope::All, Scope::Program { program: "clinic".into() }].into_iter().enumerate() {
        state.apply(&ConsentChange {
            event_id: format!("event-{i}"),
            occurred_at: time::macros::datetime!(2026-01-01 0:00 UTC),
            consent: if i == 0 { Consent::OptOut } else { Consent::OptIn },
            scope,
        });
    }
    let tag = crypto.tag("pid", 3, &state).unwrap();
    group.bench_function("integrity_tag", |b| b.iter(|| crypto.tag("pid", 3, black_box(&state)).unwrap()));
    group.bench_function("verify_integrity_tag", |b| b.iter(|| crypto.verify_tag("pid", 3, black_box(&state), &tag)));
    group.finish();
}

criterion_group!(benches, crypto);
criterion_main!(benches);

//! A webhook's pure handling, per provider, on realistic payloads: verify
//! the signature, read the payload (numbers included), classify the text and
//! render the provider's answer. No store: what the service adds is in
//! `benches/service.rs`.
//!
//! `twilio/known_sender` repeats one signed 20-field form (the patient's and
//! the clinic's numbers already seen: the usual case, a patient replying to
//! a reminder); `twilio/new_sender` signs each request for a number never
//! seen before (setup not timed), so the number parser runs for `From`.
//! `phone/*` measures the number parser alone: the crate, and the fast path
//! for a number already validated. Compare `twilio/known_sender` with
//! `scripts/bench/twilio_python.py` (run both with `scripts/bench/twilio`).
//!
//! Run with `cargo bench --bench webhooks` (profile `bench`, see Cargo.toml).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ed25519_dalek::{Signer, SigningKey};
use http::{HeaderMap, HeaderValue};
use sms_consent::domain::keywords::read;
use sms_consent::domain::PhoneNumber;
use sms_consent::providers::{
    self, aws_sns, form_pairs, standard_webhooks, twilio, Outcome, Provider, ProvidersConfig, Received, WebhookRequest,
};
use time::OffsetDateTime;

pub const TWILIO_TOKEN: &str = "12345678901234567890123456789012";
pub const TWILIO_URL: &str = "https://consent.example.org/webhooks/twilio";
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TELNYX_SEED: &str = "i1xxSkIuQOY9H8laaRslIoYGTJ1NwBAFdjsQwiwJH04=";
const TELNYX_PUBLIC_KEY: &str = "jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs=";
const CONFIRMATION: &str =
    "Lakeside Reminders: you are unsubscribed and will get no more messages. Reply START to resume.";

/// The 20 fields of Twilio's incoming-message webhook, as Twilio sends them
/// (also in `scripts/bench/twilio_python.py`).
pub fn twilio_form(from: &str) -> Vec<(String, String)> {
    [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("NumMedia", "0"),
        ("ToCity", "SAN FRANCISCO"),
        ("FromZip", "94105"),
        ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
        ("FromState", "CA"),
        ("SmsStatus", "received"),
        ("FromCity", "SAN FRANCISCO"),
        ("Body", "Stop. Thank you"),
        ("FromCountry", "US"),
        ("To", "+14155550100"),
        ("MessagingServiceSid", "MG0123456789abcdef0123456789abcdef"),
        ("ToZip", "94107"),
        ("NumSegments", "1"),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Polls a future that never waits (the providers below read no network).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmark's provider waited"),
    }
}

fn providers() -> Vec<Arc<dyn Provider>> {
    let config: ProvidersConfig = toml::from_str(&format!(
        "[twilio]\nauth_tokens = [\"{TWILIO_TOKEN}\"]\n[standard_webhooks]\nsecrets = [\"{SW_SECRET}\"]\n\
         [telnyx]\npublic_keys = [\"{TELNYX_PUBLIC_KEY}\"]\n"
    ))
    .expect("config parses");
    let outside = providers::Outside { sns_network: Arc::new(aws_sns::HttpSnsNetwork::new()) };
    providers::build_all(&config, &outside).expect("providers build")
}

fn find(all: &[Arc<dyn Provider>], name: &str) -> Arc<dyn Provider> {
    all.iter().find(|p| p.name() == name).expect("configured").clone()
}

/// Verify, read, classify and answer: what the webhook route does besides
/// the store.
fn handle(provider: &dyn Provider, request: &WebhookRequest<'_>) -> String {
    let received = ready(provider.receive(request)).expect("verifies");
    let Received::Message(message) = received else { panic!("a message") };
    let reading = read(&message.text);
    black_box(reading);
    provider.answer(&Outcome { status: "recorded", reply: Some((CONFIRMATION, &message)) }).body
}

fn twilio_request(from: &str) -> (HeaderMap, Vec<u8>) {
    let params = twilio_form(from);
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish().into_bytes();
    let mut headers = HeaderMap::new();
    let signature = twilio::sign(TWILIO_TOKEN, TWILIO_URL, &params);
    headers.insert(twilio::SIGNATURE_HEADER, HeaderValue::from_str(&signature).unwrap());
    headers.insert("content-type", HeaderValue::from_static("application/x-www-form-urlencoded"));
    (headers, body)
}

fn webhooks(c: &mut Criterion) {
    let all = providers();
    let now = OffsetDateTime::now_utc();
    let mut group = c.benchmark_group("webhook");

    let twilio = find(&all, "twilio");
    let (headers, body) = twilio_request("+14158675309");
    let request = WebhookRequest { method: "POST", url: TWILIO_URL, headers: &headers, body: &body, now };
    assert!(handle(twilio.as_ref(), &request).contains("<Message>"));
    group.bench_function("twilio/known_sender", |b| b.iter(|| handle(twilio.as_ref(), black_box(&request))));
    let mut next = 2_000_000u32;
    group.bench_function("twilio/new_sender", |b| {
        b.iter_batched(
            || {
                next += 1;
                twilio_request(&format!("+1415{next:07}"))
            },
            |(headers, body)| {
                let request = WebhookRequest { method: "POST", url: TWILIO_URL, headers: &headers, body: &body, now };
                handle(twilio.as_ref(), &request)
            },
            BatchSize::SmallInput,
        )
    });

    let telnyx = find(&all, "telnyx");
    let at = now.format(&time::format_description::well_known::Rfc3339).unwrap();
    let body = serde_json::json!({"data": {"record_type": "event", "id": "evt-1", "event_type": "message.received",
        "occurred_at": at,
        "payload": {"record_type": "message", "direction": "inbound", "id": "msg-1", "type": "SMS",
            "from": {"phone_number": "+14158675309", "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"},
            "to": [{"phone_number": "+14155550100", "status": "delivered"}], "text": "Stop. Thank you",
            "media": [], "encoding": "GSM-7", "parts": 1, "received_at": at}},
        "meta": {"attempt": 1, "delivered_to": "https://consent.example.org/webhooks/telnyx"}})
    .to_string();
    let ts = now.unix_timestamp().to_string();
    let seed: [u8; 32] = STANDARD.decode(TELNYX_SEED).unwrap().try_into().unwrap();
    let signature = SigningKey::from_bytes(&seed).sign(format!("{ts}|{body}").as_bytes());
    let mut headers = HeaderMap::new();
    headers.insert("telnyx-signature-ed25519", HeaderValue::from_str(&STANDARD.encode(signature.to_bytes())).unwrap());
    headers.insert("telnyx-timestamp", HeaderValue::from_str(&ts).unwrap());
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let url = "https://consent.example.org/webhooks/telnyx";
    let request = WebhookRequest { method: "POST", url, headers: &headers, body: body.as_bytes(), now };
    handle(telnyx.as_ref(), &request);
    group.bench_function("telnyx", |b| b.iter(|| handle(telnyx.as_ref(), black_box(&request))));

    let standard = find(&all, "standard-webhooks");
    let body = serde_json::json!({"id": "msg-1", "from": "+14158675309", "to": "+14155550100",
        "text": "Stop. Thank you", "occurred_at": at})
    .to_string();
    let signature = standard_webhooks::sign(SW_SECRET, "msg-1", now.unix_timestamp(), body.as_bytes()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(standard_webhooks::ID_HEADER, HeaderValue::from_static("msg-1"));
    headers.insert(standard_webhooks::TIMESTAMP_HEADER, HeaderValue::from_str(&ts).unwrap());
    headers.insert(standard_webhooks::SIGNATURE_HEADER, HeaderValue::from_str(&signature).unwrap());
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let url = "https://consent.example.org/webhooks/standard-webhooks";
    let request = WebhookRequest { method: "POST", url, headers: &headers, body: body.as_bytes(), now };
    handle(standard.as_ref(), &request);
    group.bench_function("standard_webhooks", |b| b.iter(|| handle(standard.as_ref(), black_box(&request))));
    group.finish();

    let mut group = c.benchmark_group("twilio_parts");
    let (_, body) = twilio_request("+14158675309");
    group.bench_function("form_pairs", |b| b.iter(|| form_pairs(black_box(&body))));
    let params = twilio_form("+14158675309");
    let signature = twilio::sign(TWILIO_TOKEN, TWILIO_URL, &params);
    let tokens = vec![serde_json::from_value(serde_json::json!(TWILIO_TOKEN)).unwrap()];
    group.bench_function("verify", |b| {
        b.iter(|| twilio::verify(&tokens, TWILIO_URL, black_box(&params), &body, Some(&signature)).unwrap())
    });
    group.bench_function("parse", |b| b.iter(|| twilio::parse(black_box(&params)).unwrap()));
    group.finish();

    let mut group = c.benchmark_group("phone");
    PhoneNumber::parse("+14158675309").unwrap();
    group.bench_function("crate", |b| b.iter(|| PhoneNumber::parse_uncached(black_box("+14158675309")).unwrap()));
    group.bench_function("known", |b| b.iter(|| PhoneNumber::parse(black_box("+14158675309")).unwrap()));
    group.finish();
}

criterion_group!(benches, webhooks);
criterion_main!(benches);

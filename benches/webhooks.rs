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
//! Every other provider repeats one signed request, "Stop. Thank you" from
//! +14158675309 to the clinic's +14155550100, as that provider sends its
//! inbound-message webhook (numbers known, as in `twilio/known_sender`):
//!
//! - `telnyx`: a `message.received` event, Ed25519 over `timestamp|body`.
//! - `standard_webhooks`: the generic JSON event, HMAC-SHA256 over
//!   `id.timestamp.body`.
//! - `plivo`: the incoming-message form, `X-Plivo-Signature-V3` (HMAC-SHA256
//!   over the URL, the sorted parameters and the nonce); the answer is Plivo
//!   XML carrying the confirmation.
//! - `vonage/sms_api`: the SMS API's inbound form with its `sig` parameter
//!   (HMAC-SHA256 over the sorted parameters) and `timestamp`.
//! - `vonage/messages_api`: the Messages API's inbound SMS JSON with an HS256
//!   JWT in `Authorization` (`iat`, `api_key`, `application_id` and the body's
//!   `payload_hash` checked).
//! - `sinch`: an SMS REST `mo_text` callback, HMAC-SHA256 over
//!   `body.nonce.timestamp`.
//! - `bandwidth`: a one-event `message-received` callback array, HTTP Basic
//!   credentials compared by digest.
//! - `bird`: a Channels API `sms.inbound` event, `messagebird-signature`
//!   (HMAC-SHA256 over timestamp, URL and the body's SHA-256).
//! - `aws_sns`: an SNS `Notification` (signature version 2, RSA-2048 with
//!   SHA-256) whose `Message` is an End User Messaging two-way SMS; its
//!   signing certificate is cached (fetched once from a counting fake
//!   network before timing, which the bench asserts), so this is the RSA
//!   verification and the two JSON reads, never a fetch.
//!
//! Each bench asserts once, before timing, that its request is received as a
//! message, so none can measure a rejection. Providers other than Twilio and
//! Plivo take no reply inline: their answer is the JSON acknowledgement.
//!
//! Run with `cargo bench --bench webhooks` (profile `bench`, see Cargo.toml).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ed25519_dalek::{Signer, SigningKey};
use http::{HeaderMap, HeaderValue};
use sms_consent::domain::keywords::read;
use sms_consent::domain::PhoneNumber;
use sms_consent::providers::vonage::VonageSignatureMethod;
use sms_consent::providers::{
    self, aws_sns, bird, form_fields, form_pairs, plivo, sha256_hex, sinch, standard_webhooks, twilio, vonage, Outcome,
    Provider, ProvidersConfig, Received, WebhookRequest,
};
use time::OffsetDateTime;

pub const TWILIO_TOKEN: &str = "12345678901234567890123456789012";
pub const TWILIO_URL: &str = "https://consent.example.org/webhooks/twilio";
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TELNYX_SEED: &str = "i1xxSkIuQOY9H8laaRslIoYGTJ1NwBAFdjsQwiwJH04=";
const TELNYX_PUBLIC_KEY: &str = "jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs=";
const PLIVO_TOKEN: &str = "MjA5NmQ0ZDE5ZjM3NTg2YjhkYTNkYzM4ZWRjNDQy";
const VONAGE_SIGNATURE_SECRET: &str = "vonage-signature-secret-0123456789";
const VONAGE_JWT_SECRET: &str = "vonage-jwt-secret-0123456789abcdef";
const VONAGE_API_KEY: &str = "abcd1234";
const VONAGE_APPLICATION: &str = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab";
const SINCH_SECRET: &str = "sinch-webhook-secret-0123456789";
const BANDWIDTH_USER: &str = "bandwidth-callbacks";
const BANDWIDTH_PASSWORD: &str = "bandwidth-password-0123456789";
const BIRD_KEY: &str = "bird-signing-key-0123456789";
const SNS_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:sms-consent-inbound";
/// The tests' throwaway SNS certificate (`tests/fixtures/sns`), served by
/// [`CountingSns`] at this URL.
const SNS_CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";
const SNS_CERT: &[u8] = include_bytes!("../tests/fixtures/sns/signing-cert.pem");
const SNS_KEY: &str = include_str!("../tests/fixtures/sns/signing-key.pem");
const BASE: &str = "https://consent.example.org/webhooks";
const PATIENT: &str = "+14158675309";
const CLINIC: &str = "+14155550100";
const TEXT: &str = "Stop. Thank you";
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

/// Polls a future that never waits (no provider here reaches a network: SNS
/// reads the in-memory [`CountingSns`]).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmark's provider waited"),
    }
}

/// The SNS network, from memory: the test certificate at `SNS_CERT_URL`,
/// and a count of the fetches (the bench asserts the certificate is fetched
/// once, then served from the verifier's cache).
#[derive(Default)]
struct CountingSns {
    fetches: AtomicUsize,
}

#[async_trait::async_trait]
impl aws_sns::SnsNetwork for CountingSns {
    async fn fetch_certificate(&self, url: &str) -> Result<Vec<u8>, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if url == SNS_CERT_URL {
            Ok(SNS_CERT.to_vec())
        } else {
            Err("no such certificate".into())
        }
    }

    async fn confirm_subscription(&self, _: &str) -> Result<(), String> {
        Err("the benchmark confirms no subscription".into())
    }
}

/// Every provider, each section as an operator would write it (Vonage with
/// both APIs and the claims it checks); SNS reads `sns` for its certificate.
fn providers(sns: Arc<CountingSns>) -> Vec<Arc<dyn Provider>> {
    let config: ProvidersConfig = toml::from_str(&format!(
        r#"
[twilio]
auth_tokens = ["{TWILIO_TOKEN}"]
[standard_webhooks]
secrets = ["{SW_SECRET}"]
[telnyx]
public_keys = ["{TELNYX_PUBLIC_KEY}"]
[plivo]
auth_tokens = ["{PLIVO_TOKEN}"]
[vonage]
signature_secrets = ["{VONAGE_SIGNATURE_SECRET}"]
signature_method = "sha256"
jwt_secrets = ["{VONAGE_JWT_SECRET}"]
api_key = "{VONAGE_API_KEY}"
application_ids = ["{VONAGE_APPLICATION}"]
[sinch]
secrets = ["{SINCH_SECRET}"]
[bandwidth]
credentials = [{{ username = "{BANDWIDTH_USER}", password = "{BANDWIDTH_PASSWORD}" }}]
[bird]
signing_keys = ["{BIRD_KEY}"]
[aws_sns]
topic_arns = ["{SNS_TOPIC}"]
"#
    ))
    .expect("config parses");
    let outside = providers::Outside { sns_network: sns };
    providers::build_all(&config, &outside).expect("providers build")
}

fn header_map(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(*name, HeaderValue::from_str(value).expect("a header value"));
    }
    headers
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn form_body(params: &[(String, String)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish().into_bytes()
}

/// A signed request, owned, for one bench.
struct Signed {
    url: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Signed {
    fn request(&self, now: OffsetDateTime) -> WebhookRequest<'_> {
        WebhookRequest { method: "POST", url: &self.url, headers: &self.headers, body: &self.body, now }
    }
}

/// Plivo's incoming-message form (numbers without `+`), signed V3.
fn plivo_request() -> Signed {
    let url = format!("{BASE}/plivo");
    let params = owned(&[
        ("From", &PATIENT[1..]),
        ("To", &CLINIC[1..]),
        ("Type", "sms"),
        ("Text", TEXT),
        ("MessageUUID", "2c8e5f4a-9c1b-11ef-8d9f-0242ac110003"),
        ("Units", "1"),
        ("TotalRate", "0.00000"),
        ("TotalAmount", "0.00000"),
    ]);
    let nonce = "05429567804466091622";
    let signature = plivo::sign_v3(PLIVO_TOKEN, "POST", &url, &params, nonce);
    let headers = header_map(&[
        (plivo::V3_HEADER, &signature),
        (plivo::V3_NONCE_HEADER, nonce),
        ("content-type", "application/x-www-form-urlencoded"),
    ]);
    Signed { url, headers, body: form_body(&params) }
}

/// The SMS API's inbound form, signed with `sig` (HMAC-SHA256).
fn vonage_sms_request(now: OffsetDateTime) -> Signed {
    let stamp = now.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")).unwrap();
    let timestamp = now.unix_timestamp().to_string();
    let mut params = owned(&[
        ("msisdn", &PATIENT[1..]),
        ("to", &CLINIC[1..]),
        ("messageId", "1700000012A3B4C5"),
        ("text", TEXT),
        ("type", "text"),
        ("keyword", "STOP."),
        ("api-key", VONAGE_API_KEY),
        ("message-timestamp", &stamp),
        ("timestamp", &timestamp),
        ("nonce", "8b2f3e0c-5d1a-4f7e-9a6b-2c4d6e8f0a1b"),
    ]);
    let sig = vonage::sign(VonageSignatureMethod::Sha256, VONAGE_SIGNATURE_SECRET, &params);
    params.push(("sig".into(), sig));
    let headers = header_map(&[("content-type", "application/x-www-form-urlencoded")]);
    Signed { url: format!("{BASE}/vonage"), headers, body: form_body(&params) }
}

/// The Messages API's inbound SMS, with its signed JWT.
fn vonage_messages_request(now: OffsetDateTime, at: &str) -> Signed {
    let body = serde_json::json!({"channel": "sms", "message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
        "to": &CLINIC[1..], "from": &PATIENT[1..], "timestamp": at, "text": TEXT,
        "sms": {"num_messages": "1", "count_total": "1"}, "usage": {"price": "0.0057", "currency": "EUR"},
        "message_type": "text", "context_status": "none"})
    .to_string()
    .into_bytes();
    let claims = serde_json::json!({"iat": now.unix_timestamp(), "jti": "c5ba8f24-1a14-4c10-bfdf-3fbe8ce511b5",
        "iss": "Vonage", "payload_hash": sha256_hex(&body), "api_key": VONAGE_API_KEY,
        "application_id": VONAGE_APPLICATION});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(VONAGE_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let headers = header_map(&[("authorization", &format!("Bearer {token}")), ("content-type", "application/json")]);
    Signed { url: format!("{BASE}/vonage"), headers, body }
}

/// An SMS REST `mo_text` callback.
fn sinch_request(now: OffsetDateTime, at: &str) -> Signed {
    let body = serde_json::json!({"type": "mo_text", "id": "01FC66621XXXXX119Z8PMV1QPQ", "from": &PATIENT[1..],
        "to": &CLINIC[1..], "body": TEXT, "operator_id": "311071", "sent_at": at, "received_at": at})
    .to_string()
    .into_bytes();
    let (nonce, timestamp) = ("01FJA8B4A7BM43YGWSG9GBV067", now.unix_timestamp().to_string());
    let signature = sinch::sign(SINCH_SECRET, &body, nonce, &timestamp);
    let headers = header_map(&[
        (sinch::SIGNATURE_HEADER, &signature),
        (sinch::NONCE_HEADER, nonce),
        (sinch::TIMESTAMP_HEADER, &timestamp),
        (sinch::ALGORITHM_HEADER, "HmacSHA256"),
        ("content-type", "application/json"),
    ]);
    Signed { url: format!("{BASE}/sinch"), headers, body }
}

/// A one-event `message-received` callback, with the application's Basic
/// credentials.
fn bandwidth_request(at: &str) -> Signed {
    let body = serde_json::json!([{"type": "message-received", "time": at, "description": "Incoming message received",
        "to": CLINIC, "message": {"id": "14762070468292kw2fuqty55yp2b2", "owner": CLINIC,
            "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2", "time": at, "segmentCount": 1,
            "direction": "in", "to": [CLINIC], "from": PATIENT, "text": TEXT}}])
    .to_string()
    .into_bytes();
    let basic = format!("Basic {}", STANDARD.encode(format!("{BANDWIDTH_USER}:{BANDWIDTH_PASSWORD}")));
    let headers = header_map(&[("authorization", &basic), ("content-type", "application/json; charset=utf-8")]);
    Signed { url: format!("{BASE}/bandwidth"), headers, body }
}

/// A Channels API `sms.inbound` event, signed with `messagebird-signature`.
fn bird_request(now: OffsetDateTime, at: &str) -> Signed {
    let url = format!("{BASE}/bird");
    let body = serde_json::json!({"service": "channels", "event": "sms.inbound", "payload": {
        "id": "f3c1e5a2-7d4b-4e8f-9a1c-2b3d4e5f6a7b", "channelId": "614208aa-b153-4d5d-9989-2fddfc0ce4c3",
        "sender": {"contact": {"id": "32cf5eee-9b1a-4c2d-8e3f-4a5b6c7d8e9f", "identifierKey": "phonenumber",
            "identifierValue": PATIENT}},
        "receiver": {"connector": {"id": "86cc4dc0-1b2c-4d3e-8f4a-5b6c7d8e9f0a", "identifierValue": CLINIC}},
        "meta": {"extraInformation": {"mcc": "310", "mnc": "260"}},
        "body": {"type": "text", "text": {"text": TEXT}}, "status": "delivered", "reason": "",
        "direction": "incoming", "lastStatusAt": at, "createdAt": at, "updatedAt": at}})
    .to_string()
    .into_bytes();
    let timestamp = now.unix_timestamp().to_string();
    let signature = bird::sign_hmac(BIRD_KEY, &timestamp, &url, &body);
    let headers = header_map(&[
        (bird::SIGNATURE_HEADER, &signature),
        (bird::TIMESTAMP_HEADER, &timestamp),
        ("content-type", "application/json"),
    ]);
    Signed { url, headers, body }
}

/// An SNS `Notification` carrying an End User Messaging two-way SMS, signed
/// (version 2) with the test key.
fn sns_request(now: OffsetDateTime) -> Signed {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer as _};
    let inner = serde_json::json!({"originationNumber": PATIENT, "destinationNumber": CLINIC,
        "messageKeyword": "KEYWORD_123456789012", "messageBody": TEXT,
        "previousPublishedMessageId": "wJ0gWL5s3F9example", "inboundMessageId": "cae173d2-66b9-564c-8309-21f858e9fb84"})
    .to_string();
    let timestamp = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap();
    let mut message = aws_sns::SnsMessage {
        kind: "Notification".into(),
        message_id: "5d6a0f4e-2f3b-5c4d-9e8f-0a1b2c3d4e5f".into(),
        topic_arn: SNS_TOPIC.into(),
        subject: None,
        message: inner,
        timestamp,
        signature_version: "2".into(),
        signature: String::new(),
        signing_cert_url: SNS_CERT_URL.into(),
        subscribe_url: None,
        token: None,
    };
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(SNS_KEY).unwrap();
    let signed = message.string_to_sign().unwrap();
    message.signature =
        STANDARD.encode(rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key).sign(signed.as_bytes()).to_bytes());
    let body = serde_json::json!({"Type": message.kind, "MessageId": message.message_id,
        "TopicArn": message.topic_arn, "Message": message.message, "Timestamp": message.timestamp,
        "SignatureVersion": message.signature_version, "Signature": message.signature,
        "SigningCertURL": message.signing_cert_url,
        "UnsubscribeURL": format!("https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={SNS_TOPIC}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55")})
    .to_string()
    .into_bytes();
    let headers = header_map(&[
        (aws_sns::MESSAGE_TYPE_HEADER, "Notification"),
        ("x-amz-sns-message-id", "5d6a0f4e-2f3b-5c4d-9e8f-0a1b2c3d4e5f"),
        ("x-amz-sns-topic-arn", SNS_TOPIC),
        ("content-type", "text/plain; charset=UTF-8"),
        ("user-agent", "Amazon Simple Notification Service Agent"),
    ]);
    Signed { url: format!("{BASE}/aws-sns"), headers, body }
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

/// Before timing: the request verifies and is read as the one message it
/// carries (so a bench cannot measure a rejection), and is answered.
fn assert_received(provider: &dyn Provider, request: &WebhookRequest<'_>) {
    let name = provider.name();
    let received = ready(provider.receive(request)).unwrap_or_else(|e| panic!("{name}: refused: {e}"));
    let Received::Message(message) = received else { panic!("{name}: not a message: {received:?}") };
    assert_eq!(message.from.as_e164(), PATIENT, "{name}");
    assert_eq!(message.to.as_ref().map(PhoneNumber::as_e164), Some(CLINIC), "{name}");
    assert_eq!(message.text, TEXT, "{name}");
    assert!(!handle(provider, request).is_empty(), "{name}");
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
    let sns = Arc::new(CountingSns::default());
    let all = providers(sns.clone());
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

    let at = now.replace_nanosecond(0).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
    let plivo = find(&all, "plivo");
    let signed = plivo_request();
    let request = signed.request(now);
    assert_received(plivo.as_ref(), &request);
    assert!(handle(plivo.as_ref(), &request).contains("<Message src=\"14155550100\" dst=\"14158675309\""));
    group.bench_function("plivo", |b| b.iter(|| handle(plivo.as_ref(), black_box(&request))));

    let vonage = find(&all, "vonage");
    let signed = vonage_sms_request(now);
    let request = signed.request(now);
    assert_received(vonage.as_ref(), &request);
    group.bench_function("vonage/sms_api", |b| b.iter(|| handle(vonage.as_ref(), black_box(&request))));
    let signed = vonage_messages_request(now, &at);
    let request = signed.request(now);
    assert_received(vonage.as_ref(), &request);
    group.bench_function("vonage/messages_api", |b| b.iter(|| handle(vonage.as_ref(), black_box(&request))));

    let sinch = find(&all, "sinch");
    let signed = sinch_request(now, &at);
    let request = signed.request(now);
    assert_received(sinch.as_ref(), &request);
    group.bench_function("sinch", |b| b.iter(|| handle(sinch.as_ref(), black_box(&request))));

    let bandwidth = find(&all, "bandwidth");
    let signed = bandwidth_request(&at);
    let request = signed.request(now);
    assert_received(bandwidth.as_ref(), &request);
    group.bench_function("bandwidth", |b| b.iter(|| handle(bandwidth.as_ref(), black_box(&request))));

    let bird = find(&all, "bird");
    let signed = bird_request(now, &at);
    let request = signed.request(now);
    assert_received(bird.as_ref(), &request);
    group.bench_function("bird", |b| b.iter(|| handle(bird.as_ref(), black_box(&request))));

    // The first request fetches the certificate (from the fake); every
    // later one, timed or not, finds it in the verifier's cache.
    let aws_sns = find(&all, "aws-sns");
    let signed = sns_request(now);
    let request = signed.request(now);
    assert_eq!(sns.fetches.load(Ordering::SeqCst), 0, "nothing fetched at build");
    assert_received(aws_sns.as_ref(), &request);
    assert_eq!(sns.fetches.load(Ordering::SeqCst), 1, "the certificate fetched once, before timing");
    group.bench_function("aws_sns", |b| b.iter(|| handle(aws_sns.as_ref(), black_box(&request))));
    assert!(sns.fetches.load(Ordering::SeqCst) <= 1, "the certificate stayed cached through the bench");
    group.finish();

    let mut group = c.benchmark_group("twilio_parts");
    let (_, body) = twilio_request("+14158675309");
    // What the Twilio route decodes with, beside the crate's owned pairs.
    group.bench_function("form_fields", |b| b.iter(|| form_fields(black_box(&body))));
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

//! Fuzzing on stable Rust, with proptest: every provider's receive path and
//! the `/v1` body parsers (in-process through the real router, over the
//! embedded store), the classifier, phone parsing and config loading.
//! Structure-aware generators make near-valid input (the right fields with
//! wrong types, huge, empty or unicode values; bad signatures; valid
//! signatures over mutated payloads; bodies changed after signing) beside
//! raw bytes.
//!
//! Properties: no panic; no 5xx on bad input (the store here never fails;
//! the one 5xx allowed is SNS's 502 when its certificate cannot be fetched);
//! a rejected request (4xx) writes nothing to the store.
//!
//! Each target runs a bounded number of cases in the test command
//! (`FUZZ_SCALE` multiplies them, `FUZZ_CASES` sets them; `scripts/fuzz`
//! runs many more). A failing input, shrunk, is
//! printed as JSON and, with `FUZZ_SAVE=1`, written to
//! `tests/fuzz-regressions/`; every file there is replayed by
//! `kept_failing_inputs_still_pass`, permanently.

#[path = "support/faulty_store.rs"]
mod faulty_store;
#[path = "api/helpers.rs"]
mod helpers;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use faulty_store::{FaultPlan, FaultyStore};
use helpers::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sms_consent::adapters::embedded::EmbeddedStore;
use sms_consent::adapters::local_keyring::LocalKeyring;
use sms_consent::config::{Config, VonageSignatureMethod};
use sms_consent::crypto::{CacheLimits, Crypto};
use sms_consent::domain::keywords::read;
use sms_consent::domain::PhoneNumber;
use sms_consent::http::auth::Authenticator;
use sms_consent::http::Role;
use sms_consent::ports::{Clock, ConsentStore};
use sms_consent::providers::{bird, plivo, sinch, standard_webhooks, twilio, vonage};
use sms_consent::runtime::{build, Parts};
use time::OffsetDateTime;
use tower::ServiceExt;

const BASE: &str = "https://sms.example.test";

/// One fuzz input, as kept in `tests/fuzz-regressions/` (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
enum Case {
    /// An HTTP request to the router, with the clock it was signed for.
    Http {
        now: i64,
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body_base64: String,
    },
    Phone {
        input: String,
    },
    Classifier {
        input: String,
    },
    Config {
        input: String,
    },
}

struct FixedClock(OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

/// The router over every provider, on the embedded store (counted), at a
/// fixed time.
struct App {
    router: Router,
    store: Arc<FaultyStore>,
    /// How many answers of each status each route gave: proof the
    /// generators reach past verification.
    seen: std::sync::Mutex<std::collections::BTreeMap<(String, u16), u32>>,
    _dir: tempfile::TempDir,
}

impl App {
    async fn new(now: OffsetDateTime) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn ConsentStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let keyring = Arc::new(LocalKeyring::open_or_create(dir.path()).unwrap());
        let wrapped = Crypto::generate_keys(keyring.as_ref()).await.unwrap();
        let wrapped = inner.put_wrapped_keys_if_absent(&wrapped).await.unwrap();
        let crypto = Crypto::start(keyring, &wrapped, inner.table(), CacheLimits::default()).await.unwrap();
        let store = FaultyStore::with_seed(inner, FaultPlan::none(), 0);
        let mut config = Config::from_toml(&config_text()).unwrap();
        config.server.public_base_url = Some(BASE.into());
        let parts = Parts {
            store: store.clone(),
            crypto,
            clock: Arc::new(FixedClock(now)),
            sns_network: Arc::new(FakeSns::default()),
            auth: Authenticator::api_keys(&config.api_keys),
        };
        let (_, router) = build(&config, Role::All, parts).unwrap();
        App { router, store, seen: Default::default(), _dir: dir }
    }

    /// Sends the request; checks the properties. Err: what broke.
    async fn check(&self, case: &Case) -> Result<(), String> {
        let Case::Http { method, path, headers, body_base64, .. } = case else { return check_pure(case) };
        let mut request = http::Request::builder().method(method.as_str()).uri(path.as_str());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let body = STANDARD.decode(body_base64).map_err(|e| e.to_string())?;
        let request = request.body(Body::from(body)).map_err(|e| format!("not a request: {e}"))?;
        let writes = self.store.writes();
        let response = self.router.clone().oneshot(request).await.map_err(|e| format!("{e}"))?;
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.map_err(|e| e.to_string())?;
        let written = self.store.writes() - writes;
        *self.seen.lock().unwrap().entry((path.clone(), status)).or_default() += 1;
        let sns_upstream = status == 502 && path == "/webhooks/aws-sns";
        if status >= 500 && !sns_upstream {
            return Err(format!("{path} answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        if status >= 400 && written > 0 {
            return Err(format!("{path} answered {status} but wrote {written} item(s)"));
        }
        Ok(())
    }
}

/// Configs that loaded (the structured mutations must reach past parsing).
static CONFIGS_LOADED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The targets that need no router.
fn check_pure(case: &Case) -> Result<(), String> {
    match case {
        Case::Http { .. } => unreachable!("checked by App::check"),
        Case::Classifier { input } => {
            let _ = read(input);
            Ok(())
        }
        Case::Phone { input } => {
            for parsed in [PhoneNumber::parse(input), PhoneNumber::parse_digits(input)].into_iter().flatten() {
                let e164 = parsed.as_e164();
                let digits = &e164[1..];
                if !(e164.starts_with('+')
                    && (4..=15).contains(&digits.len())
                    && digits.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Err(format!("{input:?} parsed to {e164:?}, not E.164"));
                }
                match PhoneNumber::parse(e164) {
                    Ok(again) if again == parsed => {}
                    other => return Err(format!("{input:?} parsed to {e164:?}, which parses to {other:?}")),
                }
            }
            Ok(())
        }
        Case::Config { input } => {
            if let Ok(config) = Config::from_toml(input) {
                CONFIGS_LOADED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // A config that loads builds its providers or says why.
                let _ = config.providers(Arc::new(FakeSns::default()));
                let _ = config.programs();
            }
            Ok(())
        }
    }
}

// ---- generators -----------------------------------------------------------

/// Values that break parsers: empty, huge, unicode, control characters,
/// numbers where strings go, dates out of range.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".into()),
        Just("\u{0}".into()),
        Just("STOP".into()),
        Just("ＳＴＯＰ".into()),
        Just("stop\u{200b}".into()),
        Just("+".into()),
        Just("+1".into()),
        Just("+0000000000".into()),
        Just("+999999999999999999999".into()),
        Just("+14158675309".into()),
        Just("14158675309".into()),
        Just("+1 (415) 867-5309".into()),
        Just("+١٤١٥٨٦٧٥٣٠٩".into()),
        Just("9999-12-31T23:59:59Z".into()),
        Just("10000-01-01T00:00:00Z".into()),
        Just("-0001-01-01T00:00:00Z".into()),
        Just("1969-12-31T23:59:59Z".into()),
        Just("2026-02-30T00:00:00Z".into()),
        Just("2026-01-01 00:00:00".into()),
        Just("clinic".into()),
        Just("a".repeat(9000)),
        Just("🙂".repeat(700)),
        "\\PC{0,40}",
        any::<String>(),
    ]
}

fn nasty_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(1e308)),
        Just(json!(-0.5)),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z_]{1,8}", inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A change to a JSON payload: replace one node (by its place in a walk),
/// remove one object key, or add one.
#[derive(Debug, Clone)]
enum JsonMutation {
    Keep,
    Replace(usize, Value),
    Remove(usize),
    Add(usize, String, Value),
}

fn json_mutation() -> impl Strategy<Value = JsonMutation> {
    prop_oneof![
        1 => Just(JsonMutation::Keep),
        4 => (any::<usize>(), nasty_json()).prop_map(|(i, v)| JsonMutation::Replace(i, v)),
        2 => any::<usize>().prop_map(JsonMutation::Remove),
        1 => (any::<usize>(), "[a-zA-Z_]{1,12}", nasty_json()).prop_map(|(i, k, v)| JsonMutation::Add(i, k, v)),
    ]
}

fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Applies `f` to the `n`th node of a pre-order walk; false if there is none.
fn at_node(value: &mut Value, n: &mut usize, f: &mut dyn FnMut(&mut Value)) -> bool {
    if *n == 0 {
        f(value);
        return true;
    }
    *n -= 1;
    match value {
        Value::Array(items) => items.iter_mut().any(|v| at_node(v, n, f)),
        Value::Object(map) => map.values_mut().any(|v| at_node(v, n, f)),
        _ => false,
    }
}

fn apply_json(mut value: Value, mutation: &JsonMutation) -> Value {
    let total = count_nodes(&value);
    let with_node = |value: &mut Value, i: usize, f: &mut dyn FnMut(&mut Value)| {
        at_node(value, &mut (i % total), f);
    };
    match mutation {
        JsonMutation::Keep => {}
        JsonMutation::Replace(i, new) => with_node(&mut value, *i, &mut |node| *node = new.clone()),
        JsonMutation::Remove(i) => with_node(&mut value, *i, &mut |node| {
            if let Value::Object(map) = node {
                let keys: Vec<String> = map.keys().cloned().collect();
                if !keys.is_empty() {
                    map.remove(&keys[i % keys.len()]);
                }
            }
        }),
        JsonMutation::Add(i, key, new) => with_node(&mut value, *i, &mut |node| {
            if let Value::Object(map) = node {
                map.insert(key.clone(), new.clone());
            }
        }),
    }
    value
}

/// A change to form parameters: a value replaced, a parameter dropped,
/// duplicated or added.
fn form_mutation() -> impl Strategy<Value = (u8, usize, String)> {
    (0u8..5, any::<usize>(), nasty_string())
}

fn apply_form(mut params: Vec<(String, String)>, (op, i, value): &(u8, usize, String)) -> Vec<(String, String)> {
    let at = i % params.len().max(1);
    match op {
        0 => {}
        1 if !params.is_empty() => params[at].1 = value.clone(),
        2 if !params.is_empty() => {
            params.remove(at);
        }
        3 if !params.is_empty() => params.push(params[at].clone()),
        _ => params.push((value.chars().take(12).collect(), value.clone())),
    }
    params
}

/// How a structured request is signed.
#[derive(Debug, Clone)]
enum Signing {
    Valid,
    /// A signature that is not the right one (garbage, or another key's).
    Bad(String),
    /// Signed, then the body changed (one byte flipped, or cut short).
    ChangedAfter {
        at: usize,
        flip: u8,
        cut: bool,
    },
    /// Signed at a time far from now.
    Stale(i64),
    /// No signature headers at all.
    Missing,
}

fn signing() -> impl Strategy<Value = Signing> {
    prop_oneof![
        6 => Just(Signing::Valid),
        1 => nasty_string().prop_map(Signing::Bad),
        2 => (any::<usize>(), 1u8.., any::<bool>()).prop_map(|(at, flip, cut)| Signing::ChangedAfter { at, flip, cut }),
        1 => prop_oneof![Just(-3600i64), Just(3600), Just(-86_400 * 365), Just(i64::MIN / 2)].prop_map(Signing::Stale),
        1 => Just(Signing::Missing),
    ]
}

/// The request before signing.
struct Draft {
    path: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn form_body(params: &[(String, String)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish().into_bytes()
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// The providers whose payloads are generated, as `tests/api/providers.rs`
/// shapes them.
#[derive(Debug, Clone, Copy)]
enum Provider {
    Twilio,
    StandardWebhooks,
    Telnyx,
    Plivo,
    VonageSms,
    VonageMessages,
    Sinch,
    Bandwidth,
    Bird,
    AwsSns,
}

const PROVIDERS: [Provider; 10] = [
    Provider::Twilio,
    Provider::StandardWebhooks,
    Provider::Telnyx,
    Provider::Plivo,
    Provider::VonageSms,
    Provider::VonageMessages,
    Provider::Sinch,
    Provider::Bandwidth,
    Provider::Bird,
    Provider::AwsSns,
];

/// Near-valid fields of one inbound SMS.
#[derive(Debug, Clone)]
struct Sms {
    id: String,
    from: String,
    to: String,
    text: String,
}

fn sms() -> impl Strategy<Value = Sms> {
    let id = prop_oneof![4 => "[A-Za-z0-9-]{1,24}", 1 => nasty_string()];
    let from = prop_oneof![4 => Just(PATIENT.to_owned()), 1 => Just(NEIGHBOUR.to_owned()), 2 => nasty_string()];
    let to = prop_oneof![3 => Just(CLINIC.to_owned()), 1 => Just(UNOWNED.to_owned()), 1 => nasty_string()];
    let text = prop_oneof![
        3 => prop_oneof![Just("STOP"), Just("START"), Just("HELP"), Just("stop please"), Just("STOP ALL")].prop_map(String::from),
        2 => nasty_string()
    ];
    (id, from, to, text).prop_map(|(id, from, to, text)| Sms { id, from, to, text })
}

fn bare(number: &str) -> String {
    number.trim_start_matches('+').to_owned()
}

/// The payload a provider would send for `sms` at `now`, mutated.
fn payload(
    provider: Provider,
    sms: &Sms,
    now: OffsetDateTime,
    json_m: &JsonMutation,
    form_m: &(u8, usize, String),
) -> Draft {
    let at = rfc3339(now - time::Duration::seconds(5));
    let owned = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    let json_draft = |path: &'static str, value: Value| Draft {
        path,
        headers: vec![("content-type".into(), "application/json".into())],
        body: apply_json(value, json_m).to_string().into_bytes(),
    };
    let form_draft = |path: &'static str, params: Vec<(String, String)>| Draft {
        path,
        headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
        body: form_body(&apply_form(params, form_m)),
    };
    match provider {
        Provider::Twilio => form_draft("/webhooks/twilio", twilio_params(&sms.id, &sms.from, &sms.to, &sms.text)),
        Provider::StandardWebhooks => json_draft(
            "/webhooks/standard-webhooks",
            json!({"id": sms.id, "from": sms.from, "to": sms.to, "text": sms.text, "occurred_at": at}),
        ),
        Provider::Telnyx => Draft {
            path: "/webhooks/telnyx",
            headers: vec![("content-type".into(), "application/json".into())],
            body: apply_json(serde_json::from_str(&telnyx_received(&sms.id, &sms.from, &sms.to, &sms.text, &at)).unwrap(), json_m)
                .to_string()
                .into_bytes(),
        },
        Provider::Plivo => {
            let (from, to) = (bare(&sms.from), bare(&sms.to));
            form_draft(
                "/webhooks/plivo",
                owned(&[("From", &from), ("To", &to), ("Text", &sms.text), ("Type", "sms"), ("MessageUUID", &sms.id), ("Units", "1")]),
            )
        }
        Provider::VonageSms => {
            let (from, to) = (bare(&sms.from), bare(&sms.to));
            let stamp = now.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")).unwrap();
            form_draft(
                "/webhooks/vonage",
                owned(&[
                    ("msisdn", &from),
                    ("to", &to),
                    ("messageId", &sms.id),
                    ("text", &sms.text),
                    ("type", "text"),
                    ("message-timestamp", &stamp),
                    ("nonce", "c4ab6ed2-9bf5-48a0"),
                ]),
            )
        }
        Provider::VonageMessages => json_draft(
            "/webhooks/vonage",
            json!({"channel": "sms", "message_uuid": sms.id, "to": bare(&sms.to), "from": bare(&sms.from), "timestamp": at,
                "text": sms.text, "sms": {"num_messages": "1"}, "message_type": "text"}),
        ),
        Provider::Sinch => json_draft(
            "/webhooks/sinch",
            json!({"type": "mo_text", "id": sms.id, "from": bare(&sms.from), "to": bare(&sms.to), "body": sms.text,
                "operator_id": "311071", "received_at": at}),
        ),
        Provider::Bandwidth => json_draft(
            "/webhooks/bandwidth",
            json!([{"type": "message-received", "time": at, "description": "Incoming message received", "to": sms.to,
                "message": {"id": sms.id, "time": at, "to": [sms.to], "from": sms.from, "text": sms.text,
                    "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2", "owner": sms.to, "direction": "in", "segmentCount": 1}}]),
        ),
        Provider::Bird => json_draft(
            "/webhooks/bird",
            json!({"service": "channels", "event": "sms.inbound", "payload": {"id": sms.id, "channelId": "614208aa-b153-4d5d-9989-2fddfc0ce4c3",
                "sender": {"contact": {"id": "32cf5eee", "identifierKey": "phonenumber", "identifierValue": sms.from}},
                "receiver": {"connector": {"id": "86cc4dc0", "identifierValue": sms.to}},
                "body": {"type": "text", "text": {"text": sms.text}}, "status": "delivered", "direction": "incoming",
                "createdAt": at}}),
        ),
        Provider::AwsSns => Draft {
            path: "/webhooks/aws-sns",
            headers: vec![
                ("content-type".into(), "text/plain; charset=UTF-8".into()),
                ("x-amz-sns-message-type".into(), "Notification".into()),
            ],
            // The inner message is mutated; the envelope is signed over it.
            body: apply_json(
                json!({"originationNumber": sms.from, "destinationNumber": sms.to, "messageKeyword": "KEYWORD_123456789012",
                    "messageBody": sms.text, "inboundMessageId": sms.id, "previousPublishedMessageId": "wJ0gWL5s3F9example"}),
                json_m,
            )
            .to_string()
            .into_bytes(),
        },
    }
}

/// Signs `draft` as `provider` does at `now`, then applies `signing`.
fn sign(provider: Provider, mut draft: Draft, now: OffsetDateTime, signing: &Signing) -> Case {
    let at = match signing {
        Signing::Stale(offset) => now.checked_add(time::Duration::seconds(*offset)).unwrap_or(now),
        _ => now,
    };
    let ts = at.unix_timestamp().to_string();
    let url = format!("{BASE}{}", draft.path);
    let body_text = String::from_utf8_lossy(&draft.body).into_owned();
    let form: Vec<(String, String)> = form_urlencoded::parse(&draft.body).into_owned().collect();
    let mut signed: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: String| signed.push((k.to_owned(), v));
    match provider {
        Provider::Twilio => push("x-twilio-signature", twilio::sign(TWILIO_TOKEN, &url, &form)),
        Provider::StandardWebhooks => {
            let id = "msg_fuzz";
            push("webhook-id", id.into());
            push("webhook-timestamp", ts.clone());
            push(
                "webhook-signature",
                standard_webhooks::sign(SW_SECRET, id, at.unix_timestamp(), &draft.body).unwrap(),
            );
        }
        Provider::Telnyx => {
            use ed25519_dalek::{Signer, SigningKey};
            let seed: [u8; 32] = STANDARD.decode(TELNYX_SEED).unwrap().try_into().unwrap();
            let mut message = format!("{ts}|").into_bytes();
            message.extend_from_slice(&draft.body);
            push("telnyx-signature-ed25519", STANDARD.encode(SigningKey::from_bytes(&seed).sign(&message).to_bytes()));
            push("telnyx-timestamp", ts.clone());
        }
        Provider::Plivo => {
            let nonce = "fuzz-nonce".to_owned();
            push(plivo::V3_HEADER, plivo::sign_v3(PLIVO_TOKEN, "POST", &url, &form, &nonce));
            push(plivo::V3_NONCE_HEADER, nonce);
        }
        Provider::VonageSms => {
            let mut params = form.clone();
            params.push(("timestamp".into(), ts.clone()));
            let sig = vonage::sign(VonageSignatureMethod::Sha256, VONAGE_SECRET, &params);
            params.push(("sig".into(), sig));
            draft.body = form_body(&params);
        }
        Provider::VonageMessages => {
            let claims = json!({"iat": at.unix_timestamp(), "jti": "jti-fuzz", "iss": "Vonage",
                "payload_hash": hex::encode(Sha256::digest(&draft.body)),
                "api_key": "abcd1234", "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"});
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(VONAGE_JWT_SECRET.as_bytes()),
            )
            .unwrap();
            push("authorization", format!("Bearer {token}"));
        }
        Provider::Sinch => {
            let nonce = "fuzz-nonce";
            push(sinch::SIGNATURE_HEADER, sinch::sign(SINCH_SECRET, &draft.body, nonce, &ts));
            push(sinch::NONCE_HEADER, nonce.into());
            push(sinch::TIMESTAMP_HEADER, ts.clone());
            push(sinch::ALGORITHM_HEADER, "HmacSHA256".into());
        }
        Provider::Bandwidth => {
            push(
                "authorization",
                format!("Basic {}", STANDARD.encode(format!("{BANDWIDTH_USER}:{BANDWIDTH_PASSWORD}"))),
            );
        }
        Provider::Bird => {
            push(bird::SIGNATURE_HEADER, bird::sign_hmac(BIRD_KEY, &ts, &url, &draft.body));
            push(bird::TIMESTAMP_HEADER, ts.clone());
        }
        Provider::AwsSns => draft.body = sns_envelope(&body_text, at).to_string().into_bytes(),
    }
    match signing {
        Signing::Missing => signed.clear(),
        Signing::Bad(garbage) => {
            for (_, value) in signed.iter_mut().filter(|(k, _)| k.contains("signature") || k == "authorization") {
                *value = garbage.chars().filter(|c| !c.is_control()).collect();
            }
            if matches!(provider, Provider::VonageSms) {
                let mut params: Vec<(String, String)> = form_urlencoded::parse(&draft.body).into_owned().collect();
                if let Some(sig) = params.iter_mut().find(|(k, _)| k == "sig") {
                    sig.1 = garbage.clone();
                }
                draft.body = form_body(&params);
            }
            if matches!(provider, Provider::AwsSns) {
                let mut envelope: Value = serde_json::from_slice(&draft.body).unwrap();
                envelope["Signature"] = json!(STANDARD.encode(garbage));
                draft.body = envelope.to_string().into_bytes();
            }
        }
        Signing::ChangedAfter { at, flip, cut } => {
            if !draft.body.is_empty() {
                let i = at % draft.body.len();
                if *cut {
                    draft.body.truncate(i);
                } else {
                    draft.body[i] ^= flip;
                }
            }
        }
        Signing::Valid | Signing::Stale(_) => {}
    }
    draft.headers.extend(signed.into_iter().filter(|(_, v)| http::HeaderValue::from_str(v).is_ok()));
    Case::Http {
        now: now.unix_timestamp(),
        method: "POST".into(),
        path: draft.path.into(),
        headers: draft.headers,
        body_base64: STANDARD.encode(&draft.body),
    }
}

/// An SNS notification (signature version 2) over `message`, with the test
/// key.
fn sns_envelope(message: &str, at: OffsetDateTime) -> Value {
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let timestamp = rfc3339(at);
    let message_id = "sns-fuzz";
    let string_to_sign = format!(
        "Message\n{message}\nMessageId\n{message_id}\nTimestamp\n{timestamp}\nTopicArn\n{SNS_TOPIC}\nType\nNotification\n"
    );
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("fixtures/sns/signing-key.pem")).unwrap();
    let signature = SigningKey::<Sha256>::new(key).sign(string_to_sign.as_bytes());
    json!({"Type": "Notification", "MessageId": message_id, "TopicArn": SNS_TOPIC, "Message": message, "Timestamp": timestamp,
        "SignatureVersion": "2", "Signature": STANDARD.encode(signature.to_bytes()), "SigningCertURL": SNS_CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x"})
}

/// Every `/v1` route with a valid body, and the key whose scope it needs.
fn v1_routes(now: OffsetDateTime) -> Vec<(&'static str, Value, &'static str)> {
    let at = rfc3339(now - time::Duration::hours(1));
    vec![
        ("/v1/authorizations", json!({"to": PATIENT, "program": "clinic", "category": "billing"}), AUTHORIZE_KEY),
        (
            "/v1/authorizations",
            json!({"requests": [{"to": PATIENT, "program": "visits", "category": "reminders", "reserve": true,
                "length": 100, "segments": 1, "send_at": at, "recipient": {"state": "CA"}}]}),
            AUTHORIZE_KEY,
        ),
        ("/v1/reservations/release", json!({"reservation_id": "r-1"}), AUTHORIZE_KEY),
        (
            "/v1/consents",
            json!({"to": PATIENT, "program": "clinic", "kind": "express_written", "source": "web_form", "captured_at": at,
                "categories": ["billing"], "evidence": "form-1", "id": "rec-1"}),
            RECORD_ONLY_KEY,
        ),
        ("/v1/consents/state", json!({"to": PATIENT}), STAFF_KEY),
        ("/v1/consents/events", json!({"to": PATIENT, "page_token": null}), STAFF_KEY),
        ("/v1/consents/erasure", json!({"to": PATIENT}), STAFF_KEY),
        ("/v1/consents/evidence", json!({"to": PATIENT}), STAFF_KEY),
        ("/v1/reviews", json!({"page_token": null}), REVIEW_KEY),
        ("/v1/reviews/resolve", json!({"event_id": "standard-webhooks:m1", "decision": "revocation"}), REVIEW_KEY),
        ("/v1/audit", json!({"from": at, "to": rfc3339(now)}), AUDIT_KEY),
    ]
}

fn v1_case(now: OffsetDateTime) -> impl Strategy<Value = Case> {
    let routes = v1_routes(now);
    let keys = prop_oneof![
        8 => Just(None),
        1 => Just(Some(String::new())),
        1 => Just(Some("not-a-key".to_owned())),
        1 => prop_oneof![Just(AUTHORIZE_KEY), Just(RECORD_ONLY_KEY), Just(STAFF_KEY), Just(REVIEW_KEY), Just(AUDIT_KEY)]
            .prop_map(|k| Some(k.to_owned())),
    ];
    (0..routes.len(), json_mutation(), json_mutation(), keys, any::<bool>()).prop_map(
        move |(route, first, second, key, json_type)| {
            let (path, body, right_key) = &routes[route];
            let body = apply_json(apply_json(body.clone(), &first), &second);
            let mut headers =
                vec![("authorization".to_owned(), format!("Bearer {}", key.as_deref().unwrap_or(right_key)))];
            if json_type {
                headers.push(("content-type".into(), "application/json".into()));
            }
            Case::Http {
                now: now.unix_timestamp(),
                method: "POST".into(),
                path: (*path).into(),
                headers,
                body_base64: STANDARD.encode(body.to_string()),
            }
        },
    )
}

fn provider_case(now: OffsetDateTime) -> impl Strategy<Value = Case> {
    (0..PROVIDERS.len(), sms(), json_mutation(), form_mutation(), signing()).prop_map(
        move |(p, sms, json_m, form_m, signing)| {
            let provider = PROVIDERS[p];
            sign(provider, payload(provider, &sms, now, &json_m, &form_m), now, &signing)
        },
    )
}

/// Raw bytes to any route, with or without plausible headers.
fn raw_case(now: OffsetDateTime) -> impl Strategy<Value = Case> {
    let paths = prop_oneof![
        Just("/webhooks/twilio"),
        Just("/webhooks/standard-webhooks"),
        Just("/webhooks/telnyx"),
        Just("/webhooks/plivo"),
        Just("/webhooks/vonage"),
        Just("/webhooks/sinch"),
        Just("/webhooks/bandwidth"),
        Just("/webhooks/bird"),
        Just("/webhooks/aws-sns"),
        Just("/v1/authorizations"),
        Just("/v1/consents"),
        Just("/v1/consents/events"),
        Just("/v1/reviews/resolve"),
        Just("/v1/audit"),
        Just("/v1/consents/evidence"),
    ];
    let methods = prop_oneof![8 => Just("POST"), 1 => Just("GET"), 1 => Just("PUT")];
    let header = prop_oneof![
        Just(("content-type".to_owned(), "application/json".to_owned())),
        Just(("content-type".to_owned(), "application/x-www-form-urlencoded".to_owned())),
        Just(("authorization".to_owned(), format!("Bearer {AUTHORIZE_KEY}"))),
        Just(("authorization".to_owned(), format!("Bearer {STAFF_KEY}"))),
        Just(("x-amz-sns-message-type".to_owned(), "Notification".to_owned())),
        Just(("x-twilio-signature".to_owned(), "AAAA".to_owned())),
        Just(("webhook-id".to_owned(), "x".to_owned())),
        ("[a-z-]{1,20}", "[ -~]{0,40}"),
    ];
    (paths, methods, proptest::collection::vec(header, 0..4), proptest::collection::vec(any::<u8>(), 0..600)).prop_map(
        move |(path, method, headers, body)| Case::Http {
            now: now.unix_timestamp(),
            method: method.into(),
            path: path.into(),
            headers,
            body_base64: STANDARD.encode(body),
        },
    )
}

fn phone_case() -> impl Strategy<Value = Case> {
    let structured = (
        prop_oneof![Just(""), Just("+"), Just("++"), Just("00"), Just(" +")],
        proptest::collection::vec(prop_oneof![8 => "[0-9]", 1 => "[ ().-]"], 0..24),
    )
        .prop_map(|(prefix, parts)| format!("{prefix}{}", parts.concat()));
    prop_oneof![structured, nasty_string(), "[+0-9 ().-]{0,45}"].prop_map(|input| Case::Phone { input })
}

fn classifier_case() -> impl Strategy<Value = Case> {
    let near = (
        prop_oneof![
            Just("STOP"),
            Just("stop all"),
            Just("Unsubscribe"),
            Just("START"),
            Just("ayuda"),
            Just("ARRÊT"),
            Just("yes")
        ],
        "[ .!?\u{200b}\u{feff}\u{301}a-z]{0,6}",
        "[ .!?a-zA-Z]{0,6}",
    )
        .prop_map(|(keyword, before, after)| format!("{before}{keyword}{after}"));
    prop_oneof![near, nasty_string(), any::<String>()].prop_map(|input| Case::Classifier { input })
}

/// A valid config (every provider, every key) as TOML, then structurally
/// mutated; or its text cut or changed at one byte; or arbitrary text.
fn config_case() -> impl Strategy<Value = Case> {
    let valid: toml::Value = toml::from_str(&config_text()).unwrap();
    let nasty_toml = prop_oneof![
        nasty_string().prop_map(toml::Value::String),
        any::<i64>().prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        Just(toml::Value::Array(vec![])),
        Just(toml::Value::Table(Default::default())),
        nasty_string().prop_map(|s| toml::Value::Array(vec![toml::Value::String(s)])),
    ];
    let structured = (any::<usize>(), nasty_toml, any::<bool>()).prop_map(move |(i, value, remove)| {
        let mut config = valid.clone();
        mutate_toml(&mut config, i, value, remove);
        toml::to_string(&config).unwrap_or_default()
    });
    let text = config_text();
    let damaged = (any::<usize>(), any::<u8>(), any::<bool>()).prop_map(move |(i, byte, cut)| {
        let mut bytes = text.clone().into_bytes();
        let i = i % bytes.len();
        if cut {
            bytes.truncate(i);
        } else {
            bytes[i] = byte;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    });
    prop_oneof![4 => structured, 2 => damaged, 1 => any::<String>()].prop_map(|input| Case::Config { input })
}

/// Replaces (or removes from) the `i`th node of a pre-order walk of `value`.
fn mutate_toml(value: &mut toml::Value, i: usize, new: toml::Value, remove: bool) {
    fn count(value: &toml::Value) -> usize {
        1 + match value {
            toml::Value::Array(items) => items.iter().map(count).sum(),
            toml::Value::Table(map) => map.iter().map(|(_, v)| count(v)).sum(),
            _ => 0,
        }
    }
    fn at(value: &mut toml::Value, n: &mut usize, f: &mut dyn FnMut(&mut toml::Value)) -> bool {
        if *n == 0 {
            f(value);
            return true;
        }
        *n -= 1;
        match value {
            toml::Value::Array(items) => items.iter_mut().any(|v| at(v, n, f)),
            toml::Value::Table(map) => map.iter_mut().any(|(_, v)| at(v, n, f)),
            _ => false,
        }
    }
    let mut n = i % count(value);
    let mut new = Some(new);
    at(value, &mut n, &mut |node| match node {
        toml::Value::Table(map) if remove && !map.is_empty() => {
            let key = map.keys().nth(i % map.len()).cloned().unwrap_or_default();
            map.remove(&key);
        }
        toml::Value::Array(items) if remove && !items.is_empty() => {
            items.remove(i % items.len());
        }
        _ => *node = new.take().unwrap_or(toml::Value::Boolean(false)),
    });
}

// ---- the runner -------------------------------------------------------------

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions")
}

/// `FUZZ_CASES` cases if set, else the target's default times `FUZZ_SCALE`
/// (1 in the test command; `scripts/fuzz` raises it).
fn cases(default: u32) -> u32 {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    env("FUZZ_CASES").unwrap_or_else(|| default.saturating_mul(env("FUZZ_SCALE").unwrap_or(1)))
}

/// Runs `strategy` for `cases` cases through `check`; a failure is shrunk,
/// printed, kept (with `FUZZ_SAVE=1`) and fails the test.
fn fuzz<S: Strategy<Value = Case>>(
    name: &str,
    default_cases: u32,
    strategy: impl FnOnce(OffsetDateTime) -> S,
) -> std::collections::BTreeMap<(String, u16), u32> {
    let now = OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = runtime.block_on(App::new(now));
    let config = ProptestConfig { cases: cases(default_cases), failure_persistence: None, ..ProptestConfig::default() };
    // The test command's bounded run is the same every time (its coverage
    // checks below must not depend on luck); `scripts/fuzz` (FUZZ_SCALE or
    // FUZZ_CASES set) draws new cases each run.
    let explore = std::env::var_os("FUZZ_SCALE").is_some() || std::env::var_os("FUZZ_CASES").is_some();
    let mut runner = if explore {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    };
    let result = runner.run(&strategy(now), |case| runtime.block_on(app.check(&case)).map_err(TestCaseError::fail));
    match result {
        Ok(()) => {
            let seen = app.seen.lock().unwrap().clone();
            eprintln!("{name}: answers by route and status: {seen:?}");
            seen
        }
        Err(TestError::Fail(why, case)) => {
            let json = serde_json::to_string_pretty(&case).unwrap();
            let mut kept = String::new();
            if std::env::var("FUZZ_SAVE").is_ok_and(|v| v == "1") {
                let digest = hex::encode(&Sha256::digest(json.as_bytes())[..6]);
                let path = regressions_dir().join(format!("{name}-{digest}.json"));
                std::fs::create_dir_all(regressions_dir()).unwrap();
                std::fs::write(&path, &json).unwrap();
                kept = format!("\nkept as {}", path.display());
            }
            panic!("fuzz target {name} failed: {why}\ninput:\n{json}{kept}");
        }
        Err(e) => panic!("fuzz target {name}: {e}"),
    }
}

/// Which routes answered with a status in `range`.
fn routes_with(seen: &std::collections::BTreeMap<(String, u16), u32>, range: std::ops::Range<u16>) -> Vec<String> {
    let mut routes: Vec<String> =
        seen.keys().filter(|(_, status)| range.contains(status)).map(|(path, _)| path.clone()).collect();
    routes.dedup();
    routes
}

#[test]
fn fuzz_every_provider_receive_path() {
    let seen = fuzz("provider", 400, provider_case);
    // The generators reach every provider's parser with a valid signature
    // (some 2xx) and its refusals (some 4xx).
    let routes: Vec<String> = PROVIDERS
        .iter()
        .map(|&p| {
            payload(p, &sample_sms(), OffsetDateTime::now_utc(), &JsonMutation::Keep, &(0, 0, String::new()))
                .path
                .to_owned()
        })
        .collect();
    for route in routes {
        assert!(routes_with(&seen, 200..300).contains(&route), "no 2xx from {route}: {seen:?}");
        assert!(routes_with(&seen, 400..500).contains(&route), "no 4xx from {route}: {seen:?}");
    }
}

fn sample_sms() -> Sms {
    Sms { id: "SM1".into(), from: PATIENT.into(), to: CLINIC.into(), text: "STOP".into() }
}

#[test]
fn fuzz_v1_bodies() {
    let seen = fuzz("v1", 400, v1_case);
    for (route, _, _) in v1_routes(OffsetDateTime::now_utc()) {
        assert!(routes_with(&seen, 400..500).contains(&route.to_owned()), "no 4xx from {route}: {seen:?}");
    }
    assert!(routes_with(&seen, 200..300).len() >= 7, "most /v1 routes answer some 2xx: {seen:?}");
}

#[test]
fn fuzz_raw_bytes_on_every_route() {
    fuzz("raw", 400, raw_case);
}

#[test]
fn fuzz_phone_parsing() {
    fuzz("phone", 2000, |_| phone_case());
}

#[test]
fn fuzz_the_classifier() {
    fuzz("classifier", 2000, |_| classifier_case());
}

#[test]
fn fuzz_config_loading() {
    fuzz("config", 300, |_| config_case());
    let loaded = CONFIGS_LOADED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(loaded > 0, "no mutated config loaded: the generator stops at the parser");
    eprintln!("config: {loaded} mutated configs loaded");
}

/// Every input a fuzz run kept, replayed at the time it was made.
#[test]
fn kept_failing_inputs_still_pass() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(regressions_dir())
        .expect("tests/fuzz-regressions exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "tests/fuzz-regressions holds the kept inputs");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut failures = Vec::new();
    for file in &files {
        let case: Case = serde_json::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let result = match &case {
            Case::Http { now, .. } => runtime.block_on(async {
                let app = App::new(OffsetDateTime::from_unix_timestamp(*now).unwrap()).await;
                app.check(&case).await
            }),
            pure => check_pure(pure),
        };
        if let Err(why) = result {
            failures.push(format!("{}: {why}", file.display()));
        }
    }
    assert!(failures.is_empty(), "kept inputs fail again:\n{}", failures.join("\n"));
}

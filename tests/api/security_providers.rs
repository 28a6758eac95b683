//! The provider-side attacks of the security review, replayed over HTTP
//! against the real server: each would succeed without its fix.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sms_consent::config::VonageSignatureMethod;
use sms_consent::ports::SystemClock;
use sms_consent::providers::aws_sns::SnsNetwork;
use sms_consent::providers::{plivo, vonage};
use sms_consent::runtime::local::{self, Options};

use crate::helpers::*;
use crate::providers::sns_message;

const OTHER_PATIENT: &str = "+14158675310";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap()
}

// ---- Plivo V2: signs the URL and a nonce only ----

/// A Plivo inbound STOP with a V2 signature (and no V3 headers).
async fn plivo_v2(app: &TestApp, id: &str, from: &str, nonce: &str) -> reqwest::Response {
    let url = app.url("/webhooks/plivo");
    let from = from.trim_start_matches('+');
    let to = CLINIC.trim_start_matches('+');
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("From", from), ("To", to), ("Text", "STOP"), ("Type", "sms"), ("MessageUUID", id)])
        .finish();
    app.client
        .post(&url)
        .header("X-Plivo-Signature-V2", plivo::sign_v2(PLIVO_TOKEN, &url, nonce))
        .header("X-Plivo-Signature-V2-Nonce", nonce)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_plivo_v2_signature_is_refused_unless_config_turns_it_on() {
    let app = TestApp::spawn().await;

    let refused = plivo_v2(&app, "uuid-1", PATIENT, "nonce-1").await;

    let problem = assert_problem(refused, 401).await;
    assert!(problem["detail"].as_str().unwrap().contains("accept_v2_signatures"), "{problem}");
    assert_eq!(app.ledger_len(PATIENT).await, 0);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed", "nothing changed");

    let legacy = TestApp::spawn_with(&config_text().replace(
        r#"auth_tokens = ["plivo-auth-token"]"#,
        "auth_tokens = [\"plivo-auth-token\"]\naccept_v2_signatures = true",
    ))
    .await;
    let accepted = plivo_v2(&legacy, "uuid-1", PATIENT, "nonce-1").await;
    assert_eq!(accepted.status(), 200);
    assert_eq!(legacy.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(legacy.ledger_len(PATIENT).await, 1);
}

#[tokio::test]
async fn a_captured_plivo_v2_pair_works_once_even_with_another_body() {
    let legacy = TestApp::spawn_with(&config_text().replace(
        r#"auth_tokens = ["plivo-auth-token"]"#,
        "auth_tokens = [\"plivo-auth-token\"]\naccept_v2_signatures = true",
    ))
    .await;
    assert_eq!(plivo_v2(&legacy, "uuid-1", PATIENT, "nonce-1").await.status(), 200);

    // The same header pair (URL + nonce) over a forged body: another
    // message id, another patient.
    let forged = plivo_v2(&legacy, "uuid-2", OTHER_PATIENT, "nonce-1").await;

    assert_eq!(forged.status(), 200, "a replay is acknowledged, not retried");
    assert_eq!(legacy.ledger_len(OTHER_PATIENT).await, 0);
    assert_eq!(legacy.reason(OTHER_PATIENT, "clinic", "billing").await, "allowed", "nothing changed");
    // A fresh nonce is a new delivery.
    assert_eq!(plivo_v2(&legacy, "uuid-3", OTHER_PATIENT, "nonce-2").await.status(), 200);
    assert_eq!(legacy.reason(OTHER_PATIENT, "clinic", "billing").await, "opted_out");
}

// ---- Bandwidth: a callback is an array of events ----

fn bandwidth_event(id: &str, from: &str, text: &str) -> Value {
    let at = rfc3339_now();
    json!({"type": "message-received", "time": at, "description": "Incoming message received", "to": CLINIC,
        "message": {"id": id, "time": at, "to": [CLINIC], "from": from, "text": text,
            "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2", "owner": CLINIC, "direction": "in", "segmentCount": 1}})
}

async fn bandwidth(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/webhooks/bandwidth"))
        .basic_auth(BANDWIDTH_USER, Some(BANDWIDTH_PASSWORD))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_stop_of_a_bandwidth_callback_is_recorded_once() {
    let app = TestApp::spawn().await;
    let callback = json!([bandwidth_event("bw-1", PATIENT, "STOP"), bandwidth_event("bw-2", OTHER_PATIENT, "STOP")]);

    let first = bandwidth(&app, &callback).await;

    assert_eq!(first.status(), 200);
    assert_eq!(first.json::<Value>().await.unwrap()["status"], "recorded_reply_queued");
    assert_eq!(app.reason(PATIENT, "clinic", "appointment_reminders").await, "opted_out");
    assert_eq!(app.reason(OTHER_PATIENT, "clinic", "appointment_reminders").await, "opted_out");

    let replay = bandwidth(&app, &callback).await;

    assert_eq!(replay.status(), 200);
    assert_eq!(replay.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!((app.ledger_len(PATIENT).await, app.ledger_len(OTHER_PATIENT).await), (1, 1));
    assert_eq!((app.outbox_len(PATIENT).await, app.outbox_len(OTHER_PATIENT).await), (1, 1));
}

#[tokio::test]
async fn a_bandwidth_callback_with_one_unreadable_event_changes_nothing() {
    let app = TestApp::spawn().await;
    let mut broken = bandwidth_event("bw-2", OTHER_PATIENT, "STOP");
    broken["message"]["time"] = "-0001-01-01T00:00:00Z".into();
    let callback = json!([bandwidth_event("bw-1", PATIENT, "STOP"), broken]);

    assert_problem(bandwidth(&app, &callback).await, 400).await;
    assert_eq!((app.ledger_len(PATIENT).await, app.ledger_len(OTHER_PATIENT).await), (0, 0));
}

// ---- Vonage Messages API: the JWT must bind the body ----

fn vonage_body(id: &str, text: &str) -> String {
    json!({"channel": "sms", "message_uuid": id, "to": CLINIC.trim_start_matches('+'),
        "from": PATIENT.trim_start_matches('+'), "timestamp": rfc3339_now(), "text": text, "message_type": "text"})
    .to_string()
}

#[tokio::test]
async fn a_vonage_jwt_without_payload_hash_carries_no_body() {
    let app = TestApp::spawn().await;
    // A fresh, genuinely signed token, as for a status callback, with no
    // payload_hash: it must not vouch for an arbitrary STOP.
    let claims = json!({"iat": now(), "jti": "jti-1", "iss": "Vonage", "api_key": "abcd1234"});

    let response = app.vonage_jwt(&claims, vonage_body("v-1", "STOP")).await;

    assert_problem(response, 401).await;
    assert_eq!(app.ledger_len(PATIENT).await, 0);
}

#[tokio::test]
async fn a_vonage_jwt_for_another_account_or_application_is_refused_when_configured() {
    let config = config_text().replace(
        "jwt_secrets = [",
        "api_key = \"abcd1234\"\napplication_ids = [\"aaaaaaaa-bbbb-cccc-dddd-0123456789ab\"]\njwt_secrets = [",
    );
    let app = TestApp::spawn_with(&config).await;
    let signed = |id: &str, api_key: &str, application_id: &str| {
        let body = vonage_body(id, "STOP");
        let claims = json!({"iat": now(), "jti": format!("jti-{id}"), "iss": "Vonage",
            "payload_hash": hex::encode(Sha256::digest(body.as_bytes())), "api_key": api_key, "application_id": application_id});
        (claims, body)
    };

    let (claims, body) = signed("v-1", "ffff0000", "aaaaaaaa-bbbb-cccc-dddd-0123456789ab");
    assert_problem(app.vonage_jwt(&claims, body).await, 401).await;
    let (claims, body) = signed("v-2", "abcd1234", "00000000-0000-0000-0000-000000000000");
    assert_problem(app.vonage_jwt(&claims, body).await, 401).await;
    assert_eq!(app.ledger_len(PATIENT).await, 0);

    let (claims, body) = signed("v-3", "abcd1234", "aaaaaaaa-bbbb-cccc-dddd-0123456789ab");
    assert_eq!(app.vonage_jwt(&claims, body).await.status(), 200);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
}

// ---- Event times out of range ----

#[tokio::test]
async fn a_signed_vonage_message_from_year_minus_one_is_a_400_and_the_server_lives_on() {
    let app = TestApp::spawn().await;
    let ts = now().to_string();
    let mut params: Vec<(String, String)> = [
        ("msisdn", PATIENT.trim_start_matches('+')),
        ("to", CLINIC.trim_start_matches('+')),
        ("messageId", "0A0000000123ABCD"),
        ("text", "STOP"),
        ("type", "text"),
        ("keyword", "STOP"),
        ("message-timestamp", "-0001-01-01 00:00:00"),
        ("timestamp", ts.as_str()),
        ("nonce", "c4ab6ed2-9bf5-48a0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sig = vonage::sign(VonageSignatureMethod::Sha256, VONAGE_SECRET, &params);
    params.push(("sig".into(), sig));

    let response = app
        .client
        .post(app.url("/webhooks/vonage"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish())
        .send()
        .await
        .unwrap();

    let problem = assert_problem(response, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("message-timestamp"), "{problem}");
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(app.ledger_len(PATIENT).await, 0);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
}

#[tokio::test]
async fn a_standard_webhooks_occurred_at_before_1970_is_a_400() {
    let app = TestApp::spawn().await;

    let response = app.standard_sms("msg_1", PATIENT, CLINIC, "STOP", Some("0000-01-01T00:00:00+01:00")).await;

    assert_problem(response, 400).await;
    assert_eq!(app.ledger_len(PATIENT).await, 0);
}

// ---- SNS: nothing fetched for a topic or region that is not ours ----

/// The test certificate network, counting certificate fetches.
#[derive(Default)]
struct CountingSns {
    inner: FakeSns,
    fetches: AtomicUsize,
}

#[async_trait::async_trait]
impl SnsNetwork for CountingSns {
    async fn fetch_certificate(&self, url: &str) -> Result<Vec<u8>, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch_certificate(url).await
    }
    async fn confirm_subscription(&self, url: &str) -> Result<(), String> {
        self.inner.confirm_subscription(url).await
    }
}

async fn spawn_counting() -> (TestApp, Arc<CountingSns>) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config_text()).unwrap();
    let network = Arc::new(CountingSns::default());
    let server = local::start(
        Options {
            config: Some(config_path.clone()),
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().join("data")),
            sns_network: Some(network.clone()),
        },
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let app =
        TestApp { sns: Arc::new(FakeSns::default()), server: Some(server), dir, config_path, client: http_client() };
    (app, network)
}

fn two_way(id: &str, text: &str) -> String {
    json!({"originationNumber": PATIENT, "destinationNumber": CLINIC, "messageBody": text, "inboundMessageId": id})
        .to_string()
}

async fn post_sns(app: &TestApp, message: &Value) -> reqwest::Response {
    app.client.post(app.url("/webhooks/aws-sns")).body(message.to_string()).send().await.unwrap()
}

#[tokio::test]
async fn an_sns_message_for_a_foreign_topic_or_region_fetches_nothing() {
    let (app, network) = spawn_counting().await;

    let mut foreign = sns_message("Notification", "sns-1", &two_way("in-1", "STOP"), None);
    foreign["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:attacker".into();
    foreign["SigningCertURL"] = "https://sns.us-east-1.amazonaws.com/attacker-chosen.pem".into();
    assert_problem(post_sns(&app, &foreign).await, 403).await;

    let mut elsewhere = sns_message("Notification", "sns-2", &two_way("in-2", "STOP"), None);
    elsewhere["SigningCertURL"] = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-test.pem".into();
    assert_problem(post_sns(&app, &elsewhere).await, 401).await;

    assert_eq!(network.fetches.load(Ordering::SeqCst), 0);
    assert_eq!(app.ledger_len(PATIENT).await, 0);
}

#[tokio::test]
async fn sns_certificate_fetches_are_bounded_and_a_verified_certificate_stays_cached() {
    let (app, network) = spawn_counting().await;
    let genuine = sns_message("Notification", "sns-0", &two_way("in-0", "HELP"), None);
    assert_eq!(post_sns(&app, &genuine).await.status(), 200);
    assert_eq!(network.fetches.load(Ordering::SeqCst), 1);

    for i in 0..40 {
        let mut probe = sns_message("Notification", &format!("sns-p{i}"), &two_way("x", "STOP"), None);
        probe["SigningCertURL"] = format!("https://sns.us-east-1.amazonaws.com/probe-{i}.pem").into();
        let status = post_sns(&app, &probe).await.status().as_u16();
        assert_eq!(status, 502, "no certificate: the delivery is retried later, not refused for good");
    }
    let fetched = network.fetches.load(Ordering::SeqCst);
    assert!(fetched <= 1 + sms_consent::providers::aws_sns::CERTIFICATE_FETCHES_PER_MINUTE as usize, "{fetched}");

    let stop = sns_message("Notification", "sns-1", &two_way("in-1", "STOP"), None);
    assert_eq!(post_sns(&app, &stop).await.status(), 200, "the verified certificate was kept");
    assert_eq!(network.fetches.load(Ordering::SeqCst), fetched, "and not fetched again");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
}

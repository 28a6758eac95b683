//! Every provider, over HTTP, with requests shaped as each provider's
//! documentation shows them and signed as each provider signs them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::Response;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sms_consent::config::VonageSignatureMethod;
use sms_consent::providers::{bird, plivo, sinch, vonage};

use crate::helpers::*;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Event times for payloads that carry one: now, plus a second for each
/// message sent, so that messages sent in order are ordered in time.
pub fn event_time() -> time::OffsetDateTime {
    use std::sync::atomic::{AtomicI64, Ordering};
    static SENT: AtomicI64 = AtomicI64::new(0);
    time::OffsetDateTime::now_utc() + time::Duration::seconds(SENT.fetch_add(1, Ordering::SeqCst))
}

pub fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn form(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish()
}

fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
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

pub const ALL: [Provider; 10] = [
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

impl Provider {
    /// Whether the provider's answer carries the confirmation.
    pub fn replies_inline(self) -> bool {
        matches!(self, Provider::Twilio | Provider::StandardWebhooks | Provider::Plivo)
    }
}

impl TestApp {
    /// Sends `text` from `from` to `to` through `provider`, signed correctly.
    pub async fn sms_via(&self, provider: Provider, id: &str, from: &str, to: &str, text: &str) -> Response {
        let bare = |n: &str| n.trim_start_matches('+').to_owned();
        let at = event_time();
        let at_text = rfc3339(at);
        match provider {
            Provider::Twilio => self.twilio_sms(id, from, to, text).await,
            Provider::StandardWebhooks => self.standard_sms(id, from, to, text, None).await,
            Provider::Telnyx => self.telnyx_signed(telnyx_received(id, from, to, text, &at_text)).await,
            Provider::Plivo => {
                let (from, to) = (bare(from), bare(to));
                let params = [
                    ("From", from.as_str()),
                    ("To", to.as_str()),
                    ("Text", text),
                    ("Type", "sms"),
                    ("MessageUUID", id),
                    ("Units", "1"),
                    ("TotalRate", "0"),
                    ("TotalAmount", "0"),
                ];
                let nonce = format!("{id}-nonce");
                let signature =
                    plivo::sign_v3(PLIVO_TOKEN, "POST", &self.url("/webhooks/plivo"), &owned(&params), &nonce);
                self.client
                    .post(self.url("/webhooks/plivo"))
                    .header("X-Plivo-Signature-V3", signature)
                    .header("X-Plivo-Signature-V3-Nonce", nonce)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form(&params))
                    .send()
                    .await
                    .unwrap()
            }
            Provider::VonageSms => {
                let (from, to, ts) = (bare(from), bare(to), now().to_string());
                let mut params = owned(&[
                    ("msisdn", from.as_str()),
                    ("to", to.as_str()),
                    ("messageId", id),
                    ("text", text),
                    ("type", "text"),
                    ("keyword", "STOP"),
                    (
                        "message-timestamp",
                        &at.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
                            .unwrap(),
                    ),
                    ("timestamp", ts.as_str()),
                    ("nonce", "c4ab6ed2-9bf5-48a0"),
                ]);
                let sig = vonage::sign(VonageSignatureMethod::Sha256, VONAGE_SECRET, &params);
                params.push(("sig".into(), sig));
                self.client
                    .post(self.url("/webhooks/vonage"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish())
                    .send()
                    .await
                    .unwrap()
            }
            Provider::VonageMessages => {
                let body = json!({"channel": "sms", "message_uuid": id, "to": bare(to), "from": bare(from), "timestamp": at_text,
                    "text": text, "sms": {"num_messages": "1"}, "message_type": "text"}).to_string();
                let claims = json!({"iat": now(), "jti": format!("jti-{id}"), "iss": "Vonage", "payload_hash": hex::encode(Sha256::digest(body.as_bytes())),
                    "api_key": "abcd1234", "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"});
                self.vonage_jwt(&claims, body).await
            }
            Provider::Sinch => {
                let body = json!({"type": "mo_text", "id": id, "from": bare(from), "to": bare(to), "body": text,
                    "operator_id": "311071", "received_at": at_text})
                .to_string();
                let (nonce, ts) = (format!("nonce-{id}"), now().to_string());
                self.client
                    .post(self.url("/webhooks/sinch"))
                    .header("x-sinch-webhook-signature", sinch::sign(SINCH_SECRET, body.as_bytes(), &nonce, &ts))
                    .header("x-sinch-webhook-signature-nonce", nonce)
                    .header("x-sinch-webhook-signature-timestamp", ts)
                    .header("x-sinch-webhook-signature-algorithm", "HmacSHA256")
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            }
            Provider::Bandwidth => {
                let body = json!([{"type": "message-received", "time": at_text, "description": "Incoming message received", "to": to,
                    "message": {"id": id, "time": at_text, "to": [to], "from": from, "text": text,
                        "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2", "owner": to, "direction": "in", "segmentCount": 1}}]).to_string();
                self.client
                    .post(self.url("/webhooks/bandwidth"))
                    .basic_auth(BANDWIDTH_USER, Some(BANDWIDTH_PASSWORD))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            }
            Provider::Bird => {
                let body = json!({"service": "channels", "event": "sms.inbound", "payload": {"id": id, "channelId": "614208aa-b153-4d5d-9989-2fddfc0ce4c3",
                    "sender": {"contact": {"id": "32cf5eee", "identifierKey": "phonenumber", "identifierValue": from}},
                    "receiver": {"connector": {"id": "86cc4dc0", "identifierValue": to}},
                    "body": {"type": "text", "text": {"text": text}}, "status": "delivered", "direction": "incoming",
                    "createdAt": at_text}}).to_string();
                let ts = now().to_string();
                let url = self.url("/webhooks/bird");
                self.client
                    .post(&url)
                    .header("messagebird-signature", bird::sign_hmac(BIRD_KEY, &ts, &url, body.as_bytes()))
                    .header("messagebird-request-timestamp", ts)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
            }
            Provider::AwsSns => {
                let inner = json!({"originationNumber": from, "destinationNumber": to, "messageKeyword": "KEYWORD_123456789012",
                    "messageBody": text, "inboundMessageId": id, "previousPublishedMessageId": "wJ0gWL5s3F9example"}).to_string();
                let message = sns_message("Notification", &format!("sns-{id}"), &inner, None);
                self.client
                    .post(self.url("/webhooks/aws-sns"))
                    .header("x-amz-sns-message-type", "Notification")
                    .header("content-type", "text/plain; charset=UTF-8")
                    .body(message.to_string())
                    .send()
                    .await
                    .unwrap()
            }
        }
    }
}

/// An SNS message signed (version 2) with the test key.
pub fn sns_message(kind: &str, message_id: &str, message: &str, subscribe: Option<(&str, &str)>) -> Value {
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let timestamp = rfc3339(event_time());
    let mut fields: Vec<(&str, String)> = vec![("Message", message.into()), ("MessageId", message_id.into())];
    if let Some((url, token)) = subscribe {
        fields.push(("SubscribeURL", url.into()));
        fields.push(("Timestamp", timestamp.clone()));
        fields.push(("Token", token.into()));
    } else {
        fields.push(("Timestamp", timestamp.clone()));
    }
    fields.push(("TopicArn", SNS_TOPIC.into()));
    fields.push(("Type", kind.into()));
    let string_to_sign: String = fields.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../fixtures/sns/signing-key.pem")).unwrap();
    let signature = SigningKey::<Sha256>::new(key).sign(string_to_sign.as_bytes());
    let mut out = json!({"Type": kind, "MessageId": message_id, "TopicArn": SNS_TOPIC, "Message": message, "Timestamp": timestamp,
        "SignatureVersion": "2", "Signature": STANDARD.encode(signature.to_bytes()), "SigningCertURL": SNS_CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x"});
    if let Some((url, token)) = subscribe {
        out["SubscribeURL"] = url.into();
        out["Token"] = token.into();
    }
    out
}

#[tokio::test]
async fn the_same_stop_through_every_provider_has_the_same_outcome() {
    for provider in ALL {
        let app = TestApp::spawn().await;

        let response = app.sms_via(provider, "msg-0001", PATIENT, CLINIC, "STOP").await;

        assert_eq!(response.status(), 200, "{provider:?}");
        let body = response.text().await.unwrap();
        let decision = app.decision(PATIENT, "clinic", "appointment_reminders").await;
        assert_eq!(decision["reason"], "opted_out", "{provider:?}");
        assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "no_consent", "{provider:?}: one program only");
        assert_eq!(app.ledger_len(PATIENT).await, 1, "{provider:?}");
        if provider.replies_inline() {
            assert!(body.contains("You are unsubscribed"), "{provider:?}: {body}");
            assert_eq!(app.outbox_len(PATIENT).await, 0, "{provider:?}");
        } else {
            assert!(!body.contains("unsubscribed"), "{provider:?}: {body}");
            assert_eq!(app.outbox_len(PATIENT).await, 1, "{provider:?}: the reply waits in the outbox");
        }
    }
}

#[tokio::test]
async fn a_replayed_delivery_is_recorded_once_on_every_provider() {
    for provider in ALL {
        let app = TestApp::spawn().await;

        let first = app.sms_via(provider, "msg-0001", PATIENT, CLINIC, "Stop. Thank you").await;
        let replay = app.sms_via(provider, "msg-0001", PATIENT, CLINIC, "Stop. Thank you").await;

        assert_eq!((first.status().as_u16(), replay.status().as_u16()), (200, 200), "{provider:?}");
        assert_eq!(app.ledger_len(PATIENT).await, 1, "{provider:?}");
        assert_eq!(
            app.outbox_len(PATIENT).await,
            usize::from(!provider.replies_inline()),
            "{provider:?}: one confirmation"
        );
    }
}

#[tokio::test]
async fn start_and_help_through_every_provider() {
    for provider in ALL {
        let app = TestApp::spawn().await;
        app.sms_via(provider, "m1", PATIENT, PHARMACY, "STOP").await;

        assert_eq!(app.sms_via(provider, "m2", PATIENT, PHARMACY, "START").await.status(), 200);
        assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "allowed", "{provider:?}");
        assert_eq!(app.sms_via(provider, "m3", PATIENT, PHARMACY, "HELP").await.status(), 200);
        assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "allowed", "{provider:?}");
        assert_eq!(app.ledger_len(PATIENT).await, 3, "{provider:?}");
    }
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_requests_are_refused_on_every_route() {
    let app = TestApp::spawn().await;
    let routes = ["telnyx", "plivo", "vonage", "sinch", "bandwidth", "bird", "aws-sns", "twilio", "standard-webhooks"];
    for route in routes {
        let response = app
            .client
            .post(app.url(&format!("/webhooks/{route}")))
            .header("content-type", "application/json")
            .body(r#"{"text":"STOP"}"#)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(status == 401 || status == 403, "{route} answered {status}");
    }
    let wrong = app
        .client
        .post(app.url("/webhooks/bandwidth"))
        .basic_auth(BANDWIDTH_USER, Some("guess"))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_problem(wrong, 401).await;
    assert_eq!(app.ledger_len(PATIENT).await, 0);
}

#[tokio::test]
async fn a_stop_through_a_provider_that_names_no_clinic_number_covers_every_program() {
    let app = TestApp::spawn().await;
    let body = json!({"app_id": "app", "accepted_time": "2026-10-18T17:49:13Z", "message": {"id": "01FJ", "direction": "TO_APP",
        "contact_message": {"text_message": {"text": "STOP"}}, "channel_identity": {"channel": "SMS", "identity": PATIENT.trim_start_matches('+'), "app_id": ""},
        "accept_time": "2026-10-18T17:49:13Z"}}).to_string();
    let (nonce, ts) = ("n1".to_owned(), now().to_string());

    let response = app
        .client
        .post(app.url("/webhooks/sinch"))
        .header("x-sinch-webhook-signature", sinch::sign(SINCH_SECRET, body.as_bytes(), &nonce, &ts))
        .header("x-sinch-webhook-signature-nonce", nonce)
        .header("x-sinch-webhook-signature-timestamp", ts)
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "opted_out");
}

#[tokio::test]
async fn a_subscription_is_confirmed_only_for_an_allowed_topic() {
    let app = TestApp::spawn().await;
    let url = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=abc";
    let confirmation =
        sns_message("SubscriptionConfirmation", "sub-1", "You have chosen to subscribe", Some((url, "abc")));

    let response = app
        .client
        .post(app.url("/webhooks/aws-sns"))
        .header("x-amz-sns-message-type", "SubscriptionConfirmation")
        .body(confirmation.to_string())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(*app.sns.confirmed.lock().unwrap(), vec![url.to_owned()]);

    let other_topic =
        TestApp::spawn_with(&config_text().replace(SNS_TOPIC, "arn:aws:sns:us-east-1:123456789012:someone-else")).await;
    let refused = other_topic
        .client
        .post(other_topic.url("/webhooks/aws-sns"))
        .header("x-amz-sns-message-type", "SubscriptionConfirmation")
        .body(confirmation.to_string())
        .send()
        .await
        .unwrap();
    assert_problem(refused, 403).await;
    assert!(other_topic.sns.confirmed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_subscribe_url_off_sns_is_never_called() {
    let app = TestApp::spawn().await;
    let confirmation = sns_message(
        "SubscriptionConfirmation",
        "sub-1",
        "subscribe",
        Some(("https://attacker.example/confirm", "abc")),
    );

    let response = app.client.post(app.url("/webhooks/aws-sns")).body(confirmation.to_string()).send().await.unwrap();

    assert_problem(response, 401).await;
    assert!(app.sns.confirmed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_tampered_sns_message_is_refused() {
    let app = TestApp::spawn().await;
    let inner = json!({"originationNumber": PATIENT, "destinationNumber": CLINIC, "messageBody": "START", "inboundMessageId": "x"}).to_string();
    let mut message = sns_message("Notification", "sns-1", &inner, None);
    message["Message"] = json!({"originationNumber": PATIENT, "destinationNumber": CLINIC, "messageBody": "STOP", "inboundMessageId": "x"}).to_string().into();

    let response = app.client.post(app.url("/webhooks/aws-sns")).body(message.to_string()).send().await.unwrap();

    assert_problem(response, 401).await;
    assert_eq!(app.ledger_len(PATIENT).await, 0);
}

#[tokio::test]
async fn the_real_sns_network_fetches_and_confirms_over_http() {
    use axum::routing::get;
    use sms_consent::providers::aws_sns::{HttpSnsNetwork, SnsNetwork};
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new()
        .route("/cert.pem", get(|| async { include_str!("../fixtures/sns/signing-cert.pem") }))
        .route(
            "/confirm",
            get(move || async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "<ConfirmSubscriptionResponse/>"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let network = HttpSnsNetwork::new();

    let pem = network.fetch_certificate(&format!("{base}/cert.pem")).await.unwrap();
    network.confirm_subscription(&format!("{base}/confirm")).await.unwrap();

    assert!(String::from_utf8(pem).unwrap().contains("BEGIN CERTIFICATE"));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(network.fetch_certificate(&format!("{base}/missing.pem")).await.is_err());
}

#[tokio::test]
async fn delivery_reports_are_acknowledged_and_change_nothing() {
    let app = TestApp::spawn().await;
    let body = json!([{"type": "message-delivered", "time": "2026-01-23T18:10:02Z", "to": PATIENT,
        "message": {"id": "x", "from": CLINIC, "to": [PATIENT], "direction": "out"}}])
    .to_string();

    let response = app
        .client
        .post(app.url("/webhooks/bandwidth"))
        .basic_auth(BANDWIDTH_USER, Some(BANDWIDTH_PASSWORD))
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(app.ledger_len(PATIENT).await + app.ledger_len(CLINIC).await, 0);
}

#[tokio::test]
async fn with_reply_mode_provider_only_what_the_provider_missed_is_confirmed() {
    let config = config_text().replace("default = \"opted_in\"", "default = \"opted_in\"\nreply_mode = \"provider\"");
    let app = TestApp::spawn_with(&config).await;

    let exact = app.twilio_sms("SM1", PATIENT, CLINIC, "STOP").await.text().await.unwrap();
    let courteous = app.twilio_sms("SM2", PATIENT, CLINIC, "Stop. Thank you").await.text().await.unwrap();
    app.sms_via(Provider::Telnyx, "t1", PATIENT, CLINIC, "START").await;
    app.sms_via(Provider::Telnyx, "t2", "+14158675310", CLINIC, "please stop texting me").await;

    assert!(!exact.contains("<Message>"), "Twilio answers its own exact keyword: {exact}");
    assert!(courteous.contains("You are unsubscribed"), "{courteous}");
    assert_eq!(app.outbox_len(PATIENT).await, 0, "Telnyx answers START itself");
    assert_eq!(app.outbox_len("+14158675310").await, 1);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
}

/// `check-config` builds every provider as the server would: a key that
/// does not decode is reported at once, naming its field, not on the first
/// webhook.
#[test]
fn check_config_names_a_provider_key_that_does_not_decode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let good = crate::helpers::config_text();
    let bad = good.replace("public_keys = [", "public_keys = [\"bm90IGEga2V5\", ");
    assert_ne!(bad, good);
    std::fs::write(&path, bad).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sms-consent"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("providers.telnyx.public_keys[0]: is not a 32-byte Ed25519 public key"), "{stderr}");

    std::fs::write(&path, good).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sms-consent"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // The providers whose replies cannot go inline and that have no send
    // table are named: their replies will wait in the outbox.
    let stdout = String::from_utf8_lossy(&output.stdout);
    for waiting in ["telnyx", "vonage", "sinch", "bandwidth", "bird", "aws-sns"] {
        assert!(stdout.contains(&format!("note: {waiting} has no send table")), "{stdout}");
    }
    assert!(!stdout.contains("twilio has no") && !stdout.contains("plivo has no"), "{stdout}");
}

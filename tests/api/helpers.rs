#![allow(dead_code)] // shared by several test binaries, each using a part

use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{Client, Response};
use serde_json::{json, Value};
use sms_consent::ports::SystemClock;
use sms_consent::providers::aws_sns::SnsNetwork;
use sms_consent::providers::{standard_webhooks, twilio};
use sms_consent::runtime::local::{self, LocalServer, Options};
use tempfile::TempDir;

pub const CLINIC: &str = "+14155550100";
pub const PHARMACY: &str = "+14155550200";
pub const UNOWNED: &str = "+14155550999";
/// The clinic number of `visits`, the program with every sending rule.
pub const VISITS: &str = "+14155550300";
pub const PATIENT: &str = "+14158675309";
pub const TWILIO_TOKEN: &str = "twilio-current-token";
pub const TWILIO_OLD_TOKEN: &str = "twilio-previous-token";
pub const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const AUTHORIZE_KEY: &str = "key-for-reminders";
/// telnyx-java's test key pair (seed and public key).
pub const TELNYX_SEED: &str = "i1xxSkIuQOY9H8laaRslIoYGTJ1NwBAFdjsQwiwJH04=";
pub const TELNYX_PUBLIC_KEY: &str = "jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs=";
pub const PLIVO_TOKEN: &str = "plivo-auth-token";
pub const VONAGE_SECRET: &str = "vonage-signature-secret";
pub const VONAGE_JWT_SECRET: &str = "vonage-jwt-secret-0123456789abcdef";
pub const SINCH_SECRET: &str = "sinch-webhook-secret";
pub const BANDWIDTH_USER: &str = "bandwidth-callbacks";
pub const BANDWIDTH_PASSWORD: &str = "bandwidth-password";
pub const BIRD_KEY: &str = "bird-signing-key";
pub const SNS_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:sms-consent-inbound";
pub const SNS_CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";
pub const RECORD_ONLY_KEY: &str = "key-for-front-desk";
pub const STAFF_KEY: &str = "key-for-compliance-staff";
pub const REVIEW_KEY: &str = "key-for-the-review-desk";
pub const AUDIT_KEY: &str = "key-for-the-privacy-officer";
/// A second patient.
pub const NEIGHBOUR: &str = "+14158675310";

pub fn config_text() -> String {
    format!(
        r#"
[[programs]]
id = "clinic"
name = "Lakeside Reminders"
organization = "Lakeside Family Clinic"
numbers = ["{CLINIC}"]
help_contact = "555-0100"
frequency = "Msg frequency varies"
categories = ["appointment_reminders", "billing"]
default = "opted_in"
send_rules = []

[[programs]]
id = "pharmacy"
name = "Lakeside Pharmacy"
organization = "Lakeside Family Clinic"
numbers = ["{PHARMACY}"]
help_contact = "555-0200"
frequency = "Up to 4 msgs/mo"
categories = ["refills"]
send_rules = []

[[programs]]
id = "visits"
name = "Lakeside Visits"
organization = "Lakeside Family Clinic"
numbers = ["{VISITS}"]
help_contact = "555-0300"
frequency = "Up to 3 msgs/wk"
categories = ["reminders"]
default = "opted_in"
send_rules = ["quiet_hours", "state_quiet_hours", "state_frequency", "healthcare_exemption"]

[providers.twilio]
auth_tokens = ["{TWILIO_OLD_TOKEN}", "{TWILIO_TOKEN}"]

[providers.standard_webhooks]
secrets = ["{SW_SECRET}"]

[providers.telnyx]
public_keys = ["{TELNYX_PUBLIC_KEY}"]

[providers.plivo]
auth_tokens = ["{PLIVO_TOKEN}"]

[providers.vonage]
signature_secrets = ["{VONAGE_SECRET}"]
signature_method = "sha256"
jwt_secrets = ["{VONAGE_JWT_SECRET}"]

[providers.sinch]
secrets = ["{SINCH_SECRET}"]

[providers.bandwidth]
credentials = [{{ username = "{BANDWIDTH_USER}", password = "{BANDWIDTH_PASSWORD}" }}]

[providers.bird]
signing_keys = ["{BIRD_KEY}"]

[providers.aws_sns]
topic_arns = ["{SNS_TOPIC}"]

[[api_keys]]
name = "reminders"
token_sha256 = "{authorize_hash}"
scopes = ["authorize"]

[[api_keys]]
name = "front-desk"
token_sha256 = "{record_hash}"
scopes = ["record"]

[[api_keys]]
name = "compliance"
token_sha256 = "{staff_hash}"
scopes = ["read_history", "erase"]

[[api_keys]]
name = "review-desk"
token_sha256 = "{review_hash}"
scopes = ["review"]

[[api_keys]]
name = "privacy-officer"
token_sha256 = "{audit_hash}"
scopes = ["audit"]
"#,
        authorize_hash = sms_consent::http::auth::sha256_hex(AUTHORIZE_KEY),
        record_hash = sms_consent::http::auth::sha256_hex(RECORD_ONLY_KEY),
        staff_hash = sms_consent::http::auth::sha256_hex(STAFF_KEY),
        review_hash = sms_consent::http::auth::sha256_hex(REVIEW_KEY),
        audit_hash = sms_consent::http::auth::sha256_hex(AUDIT_KEY),
    )
}

/// The SNS network, served from memory: the test certificate, and a record
/// of confirmed subscriptions.
#[derive(Default)]
pub struct FakeSns {
    pub confirmed: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl SnsNetwork for FakeSns {
    async fn fetch_certificate(&self, url: &str) -> Result<Vec<u8>, String> {
        if url == SNS_CERT_URL {
            Ok(include_bytes!("../fixtures/sns/signing-cert.pem").to_vec())
        } else {
            Err(format!("no certificate at {url}"))
        }
    }
    async fn confirm_subscription(&self, url: &str) -> Result<(), String> {
        self.confirmed.lock().unwrap().push(url.to_owned());
        Ok(())
    }
}

pub struct TestApp {
    pub sns: Arc<FakeSns>,
    pub server: Option<LocalServer>,
    pub dir: TempDir,
    pub config_path: PathBuf,
    pub client: Client,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&config_text()).await
    }

    pub async fn spawn_with(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let sns = Arc::new(FakeSns::default());
        let server = start(&config_path, &dir.path().join("data"), sns.clone()).await;
        TestApp { sns, server: Some(server), dir, config_path, client: http_client() }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn server(&self) -> &LocalServer {
        self.server.as_ref().expect("server running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server().base_url())
    }

    pub async fn stop(&mut self) {
        self.server.take().expect("server running").shutdown().await.unwrap();
    }

    pub async fn restart(&mut self) {
        if self.server.is_some() {
            self.stop().await;
        }
        self.server = Some(start(&self.config_path, &self.data_dir(), self.sns.clone()).await);
    }

    /// Posts a Vonage Messages API webhook with a JWT signed over `claims`.
    pub async fn vonage_jwt(&self, claims: &Value, body: String) -> Response {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(VONAGE_JWT_SECRET.as_bytes()),
        )
        .unwrap();
        self.client
            .post(self.url("/webhooks/vonage"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a body to the Telnyx route, signed as Telnyx signs it (Ed25519
    /// over `timestamp|body`).
    pub async fn telnyx_signed(&self, body: String) -> Response {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        use ed25519_dalek::{Signer, SigningKey};
        let ts = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let seed: [u8; 32] = STANDARD.decode(TELNYX_SEED).unwrap().try_into().unwrap();
        let signature = SigningKey::from_bytes(&seed).sign(format!("{ts}|{body}").as_bytes());
        self.client
            .post(self.url("/webhooks/telnyx"))
            .header("telnyx-signature-ed25519", STANDARD.encode(signature.to_bytes()))
            .header("telnyx-timestamp", ts)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// An inbound SMS through Telnyx, now.
    pub async fn telnyx_sms(&self, id: &str, from: &str, to: &str, text: &str) -> Response {
        let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
        self.telnyx_signed(telnyx_received(id, from, to, text, &now)).await
    }

    /// Posts an inbound SMS exactly as Twilio would sign it.
    pub async fn twilio_sms(&self, sid: &str, from: &str, to: &str, body: &str) -> Response {
        let params = twilio_params(sid, from, to, body);
        let signature = twilio::sign(TWILIO_TOKEN, &self.url("/webhooks/twilio"), &params);
        self.twilio_raw(&params, Some(&signature)).await
    }

    pub async fn twilio_raw(&self, params: &[(String, String)], signature: Option<&str>) -> Response {
        let mut request =
            self.client.post(self.url("/webhooks/twilio")).header("content-type", "application/x-www-form-urlencoded");
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        request.body(body).send().await.unwrap()
    }

    /// Posts a Standard Webhooks message signed now.
    pub async fn standard_sms(
        &self,
        id: &str,
        from: &str,
        to: &str,
        text: &str,
        occurred_at: Option<&str>,
    ) -> Response {
        let body = json!({ "id": id, "from": from, "to": to, "text": text, "occurred_at": occurred_at }).to_string();
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        self.standard_raw(id, ts, &body, SW_SECRET).await
    }

    pub async fn standard_raw(&self, id: &str, ts: i64, body: &str, secret: &str) -> Response {
        let signature = standard_webhooks::sign(secret, id, ts, body.as_bytes()).unwrap();
        self.client
            .post(self.url("/webhooks/standard-webhooks"))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub async fn authorize_as(&self, key: Option<&str>, body: String) -> Response {
        let mut request = self.client.post(self.url("/v1/authorizations")).header("content-type", "application/json");
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.body(body).send().await.unwrap()
    }

    /// POSTs JSON to an API route with a key.
    pub async fn api(&self, path: &str, key: Option<&str>, body: serde_json::Value) -> Response {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.unwrap()
    }

    /// The decision for one number, program and category.
    pub async fn decision(&self, to: &str, program: &str, category: &str) -> Value {
        let response = self
            .authorize_as(
                Some(AUTHORIZE_KEY),
                json!({ "to": to, "program": program, "category": category }).to_string(),
            )
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn reason(&self, to: &str, program: &str, category: &str) -> String {
        self.decision(to, program, category).await["reason"].as_str().unwrap().to_owned()
    }

    /// How many replies wait in the outbox for the number.
    pub async fn outbox_len(&self, number: &str) -> usize {
        let phone = sms_consent::domain::PhoneNumber::parse(number).unwrap();
        self.server().state.service.outbox(&phone).await.unwrap().len()
    }

    /// How many ledger events the number has.
    pub async fn ledger_len(&self, number: &str) -> usize {
        let phone = sms_consent::domain::PhoneNumber::parse(number).unwrap();
        self.server().state.service.events(&phone).await.unwrap().len()
    }
}

async fn start(config: &Path, data_dir: &Path, sns: Arc<FakeSns>) -> LocalServer {
    local::start(
        Options {
            config: Some(config.to_owned()),
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.to_owned()),
            sns_network: Some(sns),
        },
        Arc::new(SystemClock),
    )
    .await
    .expect("server starts")
}

pub fn twilio_params(sid: &str, from: &str, to: &str, body: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("Body", body),
        ("From", from),
        ("FromCountry", "US"),
        ("MessageSid", sid),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsMessageSid", sid),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("To", to),
        ("ToCountry", "US"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An HTTP client for the tests (plain HTTP; the TLS provider the product
/// installs for its own client must be there before any client is built).
/// Telnyx's `message.received` webhook body for one inbound SMS.
pub fn telnyx_received(id: &str, from: &str, to: &str, text: &str, at: &str) -> String {
    json!({"data": {"record_type": "event", "id": format!("evt-{id}"), "event_type": "message.received",
        "occurred_at": at,
        "payload": {"record_type": "message", "direction": "inbound", "id": id, "type": "SMS",
            "from": {"phone_number": from, "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"},
            "to": [{"phone_number": to, "status": "delivered"}], "text": text, "media": [], "encoding": "GSM-7", "parts": 1,
            "received_at": at}}, "meta": {"attempt": 1, "delivered_to": "https://example.com"}})
    .to_string()
}

pub fn http_client() -> Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Client::new()
}

pub async fn assert_problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// The review queue end to end, over HTTP, on whichever backend `app` runs:
/// an unclear message holds sends (program `clinic` keeps the default
/// `unclear = "deny"`) until staff decide; a revocation opts out as of the
/// message's own time, "not a revocation" lifts the hold; the scope is
/// enforced and every read and decision is in the ledger with its caller.
pub async fn review_queue_end_to_end(app: &TestApp) {
    let an_hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let at = an_hour_ago.replace_nanosecond(0).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
    let unclear = "Please stop texting my son";
    assert_eq!(app.standard_sms("msg-unclear-1", PATIENT, CLINIC, unclear, Some(&at)).await.status(), 200);
    assert_eq!(app.standard_sms("msg-unclear-2", NEIGHBOUR, CLINIC, "How do I stop these", None).await.status(), 200);

    let held = app.decision(PATIENT, "clinic", "billing").await;
    assert_eq!((held["allowed"].as_bool(), held["reason"].as_str()), (Some(false), Some("review_pending")));
    assert_eq!(held["as_of"], at.as_str());
    assert_eq!(app.reason(NEIGHBOUR, "clinic", "appointment_reminders").await, "review_pending");

    // Only the `review` scope lists or decides.
    assert_problem(app.api("/v1/reviews", None, json!({})).await, 401).await;
    assert_problem(app.api("/v1/reviews", Some(STAFF_KEY), json!({})).await, 403).await;
    let decide = |event_id: &str, decision: &str| json!({ "event_id": event_id, "decision": decision });
    let forbidden =
        app.api("/v1/reviews/resolve", Some(AUTHORIZE_KEY), decide("standard-webhooks:msg-unclear-1", "revocation"));
    assert_problem(forbidden.await, 403).await;
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "review_pending", "a refused decision changes nothing");

    let page: Value = app.api("/v1/reviews", Some(REVIEW_KEY), json!({})).await.json().await.unwrap();
    let reviews = page["reviews"].as_array().unwrap();
    assert_eq!(reviews.len(), 2, "{page}");
    let (newest, oldest) = (&reviews[0], &reviews[1]);
    assert_eq!(newest["to"], NEIGHBOUR, "newest first");
    assert_eq!(oldest["to"], PATIENT);
    assert_eq!(oldest["text"], unclear);
    assert_eq!(oldest["program"], "clinic");
    assert_eq!(oldest["occurred_at"], at.as_str());
    let (first, second) = (oldest["event_id"].as_str().unwrap(), newest["event_id"].as_str().unwrap());

    // A revocation: opted out as of the message, not of the decision.
    let answer = app.api("/v1/reviews/resolve", Some(REVIEW_KEY), decide(first, "revocation")).await;
    assert_eq!(answer.status(), 200);
    let decided = app.decision(PATIENT, "clinic", "billing").await;
    assert_eq!((decided["reason"].as_str(), decided["as_of"].as_str()), (Some("opted_out"), Some(at.as_str())));
    assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "no_consent", "the clinic's program only");
    assert_problem(app.api("/v1/reviews/resolve", Some(REVIEW_KEY), decide(first, "not_revocation")).await, 404).await;

    // Not a revocation: the hold lifts, consent is as it was.
    let answer = app.api("/v1/reviews/resolve", Some(REVIEW_KEY), decide(second, "not_revocation")).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(app.reason(NEIGHBOUR, "clinic", "appointment_reminders").await, "allowed");
    let page: Value = app.api("/v1/reviews", Some(REVIEW_KEY), json!({})).await.json().await.unwrap();
    assert_eq!(page["reviews"], json!([]));
    assert_problem(app.api("/v1/reviews/resolve", Some(REVIEW_KEY), json!({"event_id": first})).await, 400).await;

    // The ledger keeps the message (sealed), who read it, and who decided.
    let history: Value =
        app.api("/v1/consents/events", Some(STAFF_KEY), json!({ "to": PATIENT })).await.json().await.unwrap();
    let events = history["events"].as_array().unwrap();
    let find = |kind: &str| events.iter().find(|e| e["kind"] == kind).unwrap_or_else(|| panic!("no {kind}: {history}"));
    assert_eq!(find("unclear")["text"], unclear);
    assert_eq!(find("review_read")["caller"], "review-desk");
    let revocation = find("revocation");
    assert_eq!((revocation["caller"].as_str(), revocation["source"].as_str()), (Some("review-desk"), Some("review")));
    assert_eq!(revocation["occurred_at"], at.as_str());
    let history: Value =
        app.api("/v1/consents/events", Some(STAFF_KEY), json!({ "to": NEIGHBOUR })).await.json().await.unwrap();
    assert!(
        history["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "not_revocation" && e["caller"] == "review-desk"),
        "{history}"
    );
}

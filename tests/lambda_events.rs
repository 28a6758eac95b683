//! Every sample event in `events/` through the Lambda handler: parsed by
//! `lambda_http::request::from_str`, run through the function's Router (for
//! its role), with the response asserted. The clock is set to the time the
//! events were signed for.

#[path = "api/helpers.rs"]
mod helpers;

use std::sync::Arc;

use axum::body::Body;
use serde_json::Value;
use sms_consent::config::{KeysBackend, StorageBackend};
use sms_consent::domain::Reason;
use sms_consent::http::Role;
use sms_consent::ports::Clock;
use sms_consent::runtime::backends::Backends;
use sms_consent::runtime::lambda::{assemble, compose, Settings};
use sms_consent::service::AuthorizationQuery;
use time::OffsetDateTime;
use tower::ServiceExt;

const EVENTS_TIME: i64 = 1_795_305_600;
const PATIENT: &str = "+14158675309";

struct Fixed;

impl Clock for Fixed {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(EVENTS_TIME).unwrap()
    }
}

fn events_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

struct Function {
    router: axum::Router,
    service_check: Arc<sms_consent::service::ConsentService>,
    _dir: tempfile::TempDir,
}

/// The function for `role`, configured as the SSM parameter and the secret
/// of `events/` would configure it, over a local store.
async fn function(role: Role) -> Function {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        config_parameter: "unused".into(),
        secret_id: None,
        table: "sms-consent-events".into(),
        key_id: "alias/sms-consent".into(),
        public_base_url: None,
        sns_topic_arns: Vec::new(),
    };
    let parameter = std::fs::read_to_string(events_dir().join("config.toml")).unwrap();
    let secret = std::fs::read_to_string(events_dir().join("secrets.toml")).unwrap();
    let mut config = compose(&settings, &parameter, Some(&secret), Role::All).unwrap();
    assert_eq!(config.storage.table.as_deref(), Some("sms-consent-events"), "the settings win over the parameter");
    config.storage.backend = StorageBackend::Embedded;
    config.keys.backend = KeysBackend::Local;
    config.server.data_dir = dir.path().to_owned();
    let backends = Backends::open(&config).await.unwrap();
    let crypto = backends.crypto(&config).await.unwrap();
    // A second handle on the same store, to check what the function did.
    let check_crypto = backends.crypto(&config).await.unwrap();
    let service_check = Arc::new(sms_consent::service::ConsentService::new(
        config.programs(),
        backends.store.clone(),
        Arc::new(check_crypto),
        Arc::new(Fixed),
    ));
    let router =
        assemble(&config, role, &backends, crypto, Arc::new(Fixed), Arc::new(helpers::FakeSns::default())).unwrap();
    Function { router, service_check, _dir: dir }
}

async fn invoke(function: &Function, file: &str) -> (u16, String) {
    let text = std::fs::read_to_string(events_dir().join(file)).unwrap();
    let request = lambda_http::request::from_str(&text).expect("a valid API Gateway v2 event");
    let request = request.map(|body| Body::from(body.to_vec()));
    let response = function.router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn role_of(file: &str) -> Role {
    match file.split('-').next().unwrap() {
        "webhook" => Role::Webhook,
        "authorize" => Role::Authorize,
        "consents" => Role::Consents,
        other => panic!("no role for {other}"),
    }
}

async fn reason(function: &Function, program: &str, category: &str) -> Reason {
    function.service_check.authorize(&AuthorizationQuery { to: PATIENT, program, category }).await.reason
}

#[tokio::test]
async fn every_sample_event_gets_the_expected_answer() {
    let mut files: Vec<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".json"))
        // The outbox function's stream event is not an HTTP request: the store
        // contract runs it through the function's handler on DynamoDB.
        .filter(|f| !f.starts_with("outbox-"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "a STOP, START, HELP and tampered event per provider, and the API events");
    for file in &files {
        let f = function(role_of(file)).await;
        let (status, body) = invoke(&f, file).await;
        let stem = file.trim_end_matches(".json");
        match stem.rsplit('-').next().unwrap() {
            "stop" => {
                assert_eq!(status, 200, "{file}: {body}");
                assert_eq!(reason(&f, "clinic", "billing").await, Reason::OptedOut, "{file}");
                if stem.contains("twilio") || stem.contains("plivo") || stem.contains("standard-webhooks") {
                    assert!(body.contains("You are unsubscribed"), "{file}: {body}");
                }
            }
            "start" => {
                assert_eq!(status, 200, "{file}: {body}");
                assert_eq!(reason(&f, "clinic", "billing").await, Reason::Allowed, "{file}");
                assert_eq!(
                    f.service_check
                        .events(&sms_consent::domain::PhoneNumber::parse(PATIENT).unwrap())
                        .await
                        .unwrap()
                        .len(),
                    1
                );
            }
            "help" => {
                assert_eq!(status, 200, "{file}: {body}");
                assert_eq!(
                    f.service_check.events(&sms_consent::domain::PhoneNumber::parse(PATIENT).unwrap()).await.unwrap()
                        [0]
                    .kind,
                    "help"
                );
            }
            "tampered" => {
                assert_eq!(status, 401, "{file}: {body}");
                assert!(f
                    .service_check
                    .events(&sms_consent::domain::PhoneNumber::parse(PATIENT).unwrap())
                    .await
                    .unwrap()
                    .is_empty());
            }
            _ => {
                let expected: (u16, &str) = match stem {
                    "authorize-allowed" => (200, r#""reason":"allowed""#),
                    "authorize-denied" => (200, r#""reason":"no_consent""#),
                    "authorize-batch" => (
                        200,
                        r#"{"results":[{"to":"+14158675309","allowed":true,"reason":"allowed","as_of":null},{"to":"+14158675309","allowed":false,"reason":"no_consent","as_of":null},{"to":"+14155550123","allowed":true,"reason":"allowed","as_of":null}]}"#,
                    ),
                    "authorize-unmapped-principal" => (403, "not mapped"),
                    "consents-record" => (201, r#""status":"recorded""#),
                    "consents-state" => (200, r#""consents":"#),
                    other => panic!("no expectation for {other}"),
                };
                assert_eq!(status, expected.0, "{file}: {body}");
                assert!(body.contains(expected.1), "{file}: {body}");
            }
        }
    }
}

#[tokio::test]
async fn a_function_serves_only_its_own_routes() {
    let authorize = function(Role::Authorize).await;
    let webhook = function(Role::Webhook).await;

    assert_eq!(invoke(&authorize, "webhook-twilio-stop.json").await.0, 404);
    assert_eq!(invoke(&authorize, "consents-record.json").await.0, 404);
    assert_eq!(invoke(&webhook, "authorize-allowed.json").await.0, 404);
    let served: Value = {
        let request = axum::http::Request::get("/openapi.json").body(Body::empty()).unwrap();
        let response = authorize.router.clone().oneshot(request).await.unwrap();
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap()
    };
    assert_eq!(served["openapi"], "3.1.0");
}

#[tokio::test]
async fn an_iam_principal_gets_only_its_scopes() {
    let consents = function(Role::Consents).await;
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(events_dir().join("consents-record.json")).unwrap()).unwrap();
    event["requestContext"]["authorizer"]["iam"]["userArn"] =
        "arn:aws:sts::123456789012:assumed-role/reminder-sender/x".into();
    let request = lambda_http::request::from_str(&event.to_string()).unwrap().map(|b| Body::from(b.to_vec()));

    let response = consents.router.clone().oneshot(request).await.unwrap();

    assert_eq!(response.status(), 403, "the sender's role may authorize, not record");
    event["requestContext"].as_object_mut().unwrap().remove("authorizer");
    let request = lambda_http::request::from_str(&event.to_string()).unwrap().map(|b| Body::from(b.to_vec()));
    assert_eq!(consents.router.clone().oneshot(request).await.unwrap().status(), 401);
}

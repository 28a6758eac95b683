//! The EMF lines of the Lambda functions: sample events from `events/`
//! through a function's Router by `lambda::invoke` (what `lambda::run`
//! serves), the lines each invocation writes parsed as CloudWatch reads
//! them: aggregate counts, one line per set of labels, no number or text.

#[path = "api/helpers.rs"]
mod helpers;

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use sms_consent::config::{KeysBackend, StorageBackend};
use sms_consent::http::Role;
use sms_consent::metrics::Emf;
use sms_consent::ports::Clock;
use sms_consent::runtime::backends::Backends;
use sms_consent::runtime::lambda::{assemble, compose, invoke, Settings};
use time::OffsetDateTime;

/// The time the sample events were signed for.
const EVENTS_TIME: i64 = 1_795_305_600;

struct Fixed;

impl Clock for Fixed {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(EVENTS_TIME).unwrap()
    }
}

/// What the recorder writes (stdout on Lambda).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The lines written since the last call, each parsed.
    fn take(&self) -> Vec<Value> {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap());
        let text = String::from_utf8(bytes).unwrap();
        for phi in ["8675309", "5550100", "STOP", "SM", "+1"] {
            assert!(!text.contains(phi), "{phi} in the EMF lines: {text}");
        }
        text.lines().map(|line| serde_json::from_str(line).expect("each line one JSON object")).collect()
    }
}

fn events_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

/// The functions of `roles` over one local store, configured as `events/`
/// configures them.
async fn functions(dir: &std::path::Path, roles: &[Role]) -> Vec<axum::Router> {
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
    assert!(config.metrics.enabled, "on unless turned off");
    config.storage.backend = StorageBackend::Embedded;
    config.keys.backend = KeysBackend::Local;
    config.server.data_dir = dir.to_owned();
    let backends = Backends::open(&config).await.unwrap();
    let mut routers = Vec::new();
    for role in roles {
        let crypto = backends.crypto(&config).await.unwrap();
        let sns = Arc::new(helpers::FakeSns::default());
        routers.push(assemble(&config, *role, &backends, crypto, Arc::new(Fixed), sns).unwrap());
    }
    routers
}

async fn call(router: &axum::Router, file: &str) -> u16 {
    let text = std::fs::read_to_string(events_dir().join(file)).unwrap();
    let request = lambda_http::request::from_str(&text).expect("a valid API Gateway v2 event");
    invoke(router.clone(), request).await.unwrap().status().as_u16()
}

/// The one line whose dimension `key` is `value`.
fn line_with<'a>(lines: &'a [Value], key: &str, value: &str) -> &'a Value {
    let found: Vec<&Value> = lines.iter().filter(|l| l[key] == value).collect();
    assert_eq!(found.len(), 1, "one line with {key}={value}: {lines:?}");
    found[0]
}

#[tokio::test]
async fn each_invocation_writes_its_counts_once_as_emf_lines() {
    let captured = Captured::default();
    let emf = Emf::install("sms-consent/test", Box::new(captured.clone())).expect("the first recorder");
    let dir = tempfile::tempdir().unwrap();
    let routers = functions(dir.path(), &[Role::Webhook, Role::Authorize]).await;
    let (webhook, authorize) = (&routers[0], &routers[1]);
    captured.take();

    // A STOP: one event recorded, its store calls and the request.
    assert_eq!(call(webhook, "webhook-twilio-stop.json").await, 200);
    let lines = captured.take();
    for line in &lines {
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "sms-consent/test");
        assert!(line["_aws"]["Timestamp"].is_i64(), "{line}");
        // Every metric named in the directive has its value in the line.
        for metric in directive["Metrics"].as_array().unwrap() {
            assert!(!line[metric["Name"].as_str().unwrap()].is_null(), "{line}");
        }
        // Each metric by its labels and over all of them.
        let dimensions = directive["Dimensions"].as_array().unwrap();
        assert_eq!(dimensions.last().unwrap(), &json!([]), "{line}");
    }
    let recorded = line_with(&lines, "kind", "opt_out");
    assert_eq!(recorded["provider"], "twilio");
    assert_eq!(recorded["events_recorded"], 1);
    assert_eq!(recorded["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["kind", "provider"], []]));
    assert_eq!(
        recorded["_aws"]["CloudWatchMetrics"][0]["Metrics"],
        json!([{ "Name": "events_recorded", "Unit": "Count" }])
    );
    let commit = line_with(&lines, "operation", "commit");
    assert_eq!(commit["outcome"], "ok");
    assert_eq!(commit["store_latency_seconds"].as_array().unwrap().len(), 1);
    let request = line_with(&lines, "route", "/webhooks/twilio");
    assert_eq!(request["status"], "2xx");
    assert_eq!(request["http_request_duration_seconds"].as_array().unwrap().len(), 1);
    let mut label_sets: Vec<String> = lines
        .iter()
        .map(|l| {
            let mut l = l.clone();
            let object = l.as_object_mut().unwrap();
            object.retain(|k, v| k != "_aws" && v.is_string());
            serde_json::to_string(object).unwrap()
        })
        .collect();
    let all = label_sets.len();
    label_sets.dedup();
    assert_eq!(label_sets.len(), all, "one line per set of labels: {lines:?}");

    // The same delivery again: a duplicate, and nothing carried over from
    // the first invocation.
    assert_eq!(call(webhook, "webhook-twilio-stop.json").await, 200);
    let lines = captured.take();
    assert_eq!(line_with(&lines, "provider", "twilio")["duplicates"], 1);
    assert!(lines.iter().all(|l| l.get("events_recorded").is_none()), "{lines:?}");
    assert_eq!(line_with(&lines, "operation", "commit")["store_latency_seconds"].as_array().unwrap().len(), 1);

    // A forged delivery: a signature failure, by provider.
    assert_eq!(call(webhook, "webhook-twilio-tampered.json").await, 401);
    let lines = captured.take();
    let failure = line_with(&lines, "provider", "twilio");
    assert_eq!(failure["signature_failures"], 1);
    assert_eq!(failure["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["provider"], []]));
    assert_eq!(line_with(&lines, "route", "/webhooks/twilio")["status"], "4xx");

    // A batch of three authorizations, counted by reason (the patient's
    // STOP above now denies the first).
    assert_eq!(call(authorize, "authorize-batch.json").await, 200);
    let lines = captured.take();
    assert_eq!(line_with(&lines, "reason", "opted_out")["authorizations"], 1);
    assert_eq!(line_with(&lines, "reason", "no_consent")["authorizations"], 1);
    assert_eq!(line_with(&lines, "reason", "allowed")["authorizations"], 1);

    // Nothing happened: no line.
    emf.flush();
    assert!(captured.take().is_empty());
}

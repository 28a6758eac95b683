//! Replies through a provider's own API, end to end: the real server takes
//! a signed Telnyx webhook, and its outbox worker confirms through a local
//! fake of Telnyx's messages API (`POST /v2/messages`) that checks each
//! request as Telnyx documents it and answers with Telnyx's own bodies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::providers::{event_time, rfc3339, Provider};

const TELNYX_API_KEY: &str = "KEY0123456789ABCDEF_test";

/// One answer of the fake: status, headers, JSON body.
#[derive(Clone)]
struct Answer(u16, Vec<(&'static str, &'static str)>, Value);

fn accepted(id: &str) -> Answer {
    Answer(
        200,
        vec![],
        json!({"data": {"record_type": "message", "direction": "outbound", "id": id, "type": "SMS",
            "messaging_profile_id": null, "to": [{"status": "queued"}], "parts": 1}}),
    )
}

fn telnyx_error(status: u16, code: &str, title: &str) -> Answer {
    Answer(status, vec![], json!({"errors": [{"code": code, "title": title, "detail": title}]}))
}

#[derive(Clone, Default)]
struct Fake {
    /// The JSON bodies received, in order.
    seen: Arc<Mutex<Vec<Value>>>,
    /// Answers in order; the last repeats.
    script: Arc<Mutex<Vec<Answer>>>,
}

/// Telnyx's `POST /v2/messages`, checked as its API reference describes it:
/// bearer API key, JSON body with `from`, `to` and `text` in E.164.
async fn messages(State(fake): State<Fake>, headers: HeaderMap, body: String) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {TELNYX_API_KEY}")) {
        return (StatusCode::UNAUTHORIZED, "{}").into_response();
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "{}").into_response();
    };
    let e164 = |v: &Value| v.as_str().is_some_and(|s| s.starts_with('+') && s[1..].chars().all(|c| c.is_ascii_digit()));
    let fields: Vec<&String> = request.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    let well_formed = headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
        && e164(&request["from"])
        && e164(&request["to"])
        && request["text"].is_string()
        && fields.iter().all(|f| ["from", "to", "text", "messaging_profile_id"].contains(&f.as_str()));
    if !well_formed {
        return (StatusCode::UNPROCESSABLE_ENTITY, r#"{"errors":[{"code":"10002","title":"Invalid parameter"}]}"#)
            .into_response();
    }
    fake.seen.lock().unwrap().push(request);
    let Answer(status, extra, body) = {
        let mut script = fake.script.lock().unwrap();
        if script.len() > 1 {
            script.remove(0)
        } else {
            script[0].clone()
        }
    };
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    for (name, value) in extra {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

impl Fake {
    async fn start(script: Vec<Answer>) -> (Fake, String) {
        let fake = Fake { seen: Default::default(), script: Arc::new(Mutex::new(script)) };
        let app = axum::Router::new().route("/v2/messages", axum::routing::post(messages)).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v2", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (fake, base)
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits up to 10 s for `n` requests.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            if self.seen().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.seen()
    }
}

/// The test config with Telnyx sending to `base` and fast retries.
fn config_with_send(base: &str) -> String {
    config_text().replace(
        &format!("[providers.telnyx]\npublic_keys = [\"{TELNYX_PUBLIC_KEY}\"]\n"),
        &format!(
            "[providers.telnyx]\npublic_keys = [\"{TELNYX_PUBLIC_KEY}\"]\n\
             [providers.telnyx.send]\napi_key = \"{TELNYX_API_KEY}\"\nbase_url = \"{base}\"\n\n\
             [outbox]\npoll_interval_ms = 100\nretry_initial_ms = 200\nretry_max_ms = 1000\n"
        ),
    )
}

/// The history's entry for one Telnyx event.
async fn history_entry(app: &TestApp, message_id: &str) -> Value {
    let history: Value =
        app.api("/v1/consents/events", Some(STAFF_KEY), json!({"to": PATIENT})).await.json().await.unwrap();
    let id = format!("telnyx:{message_id}");
    history["events"].as_array().unwrap().iter().find(|e| e["event_id"] == id.as_str()).cloned().unwrap_or_default()
}

/// Waits up to 10 s for the reply of a Telnyx event to leave `pending`.
async fn final_reply(app: &TestApp, message_id: &str) -> Value {
    for _ in 0..100 {
        let reply = history_entry(app, message_id).await["reply"].clone();
        if reply["status"] != "pending" {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    history_entry(app, message_id).await["reply"].clone()
}

#[tokio::test]
async fn a_stop_through_telnyx_is_confirmed_through_its_api_once_even_across_a_restart() {
    let (fake, base) = Fake::start(vec![accepted("40317159-1cb6-4d6a-a5b5-f1e4fbf01b1a")]).await;
    let mut app = TestApp::spawn_with(&config_with_send(&base)).await;
    let response = app.sms_via(Provider::Telnyx, "tx-stop-1", PATIENT, CLINIC, "STOP").await;
    assert_eq!(response.status(), 200);
    let seen = fake.wait_for(1).await;
    assert_eq!(seen.len(), 1, "the confirmation went out within seconds");
    assert_eq!(seen[0]["to"], PATIENT);
    assert_eq!(seen[0]["from"], CLINIC);
    assert!(seen[0]["text"].as_str().unwrap().starts_with("Lakeside Reminders: You are unsubscribed"));

    let reply = final_reply(&app, "tx-stop-1").await;
    assert_eq!(reply["status"], "sent");
    assert_eq!(reply["provider"], "telnyx");
    assert_eq!(reply["provider_message_id"], "40317159-1cb6-4d6a-a5b5-f1e4fbf01b1a");
    assert_eq!(reply["attempts"], 1);
    assert!(reply["finished_at"].is_string());

    // A restart, and a retried delivery of the same STOP: nothing more is sent.
    app.restart().await;
    app.sms_via(Provider::Telnyx, "tx-stop-1", PATIENT, CLINIC, "STOP").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.seen().len(), 1, "exactly once");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
}

#[tokio::test]
async fn a_reply_recorded_before_a_restart_goes_out_after_it_once() {
    // First without a send table: the confirmation waits in the outbox.
    let (fake, base) = Fake::start(vec![accepted("m-after-restart")]).await;
    let mut app = TestApp::spawn().await;
    app.sms_via(Provider::Telnyx, "tx-help-1", PATIENT, CLINIC, "HELP").await;
    assert_eq!(history_entry(&app, "tx-help-1").await["reply"]["status"], "pending");
    // Then the send table is configured and the server restarted.
    app.stop().await;
    std::fs::write(&app.config_path, config_with_send(&base)).unwrap();
    app.restart().await;
    let seen = fake.wait_for(1).await;
    assert_eq!(seen.len(), 1);
    assert!(seen[0]["text"].as_str().unwrap().contains("Help at 555-0100"));
    assert_eq!(final_reply(&app, "tx-help-1").await["status"], "sent");
    app.restart().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(fake.seen().len(), 1, "not again after another restart");
}

#[tokio::test]
async fn a_500_and_a_429_are_retried_with_backoff_until_sent() {
    let (fake, base) = Fake::start(vec![
        telnyx_error(500, "10001", "Inactive phone number"),
        Answer(429, vec![("retry-after", "1")], json!({"errors": [{"code": "10011", "title": "Too many requests"}]})),
        accepted("m-third-time"),
    ])
    .await;
    let app = TestApp::spawn_with(&config_with_send(&base)).await;
    let started = std::time::Instant::now();
    app.sms_via(Provider::Telnyx, "tx-start-1", PATIENT, CLINIC, "START").await;
    let seen = fake.wait_for(3).await;
    assert_eq!(seen.len(), 3);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was respected");
    let reply = final_reply(&app, "tx-start-1").await;
    assert_eq!(reply["status"], "sent");
    assert_eq!(reply["attempts"], 3);
    assert_eq!(reply["provider_message_id"], "m-third-time");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.seen().len(), 3, "nothing after the success");
}

#[tokio::test]
async fn a_permanent_refusal_fails_the_reply_and_the_history_says_why() {
    let (fake, base) = Fake::start(vec![telnyx_error(400, "40013", "Invalid source number")]).await;
    let app = TestApp::spawn_with(&config_with_send(&base)).await;
    app.sms_via(Provider::Telnyx, "tx-help-2", PATIENT, CLINIC, "HELP").await;
    let reply = final_reply(&app, "tx-help-2").await;
    assert_eq!(reply["status"], "failed");
    assert!(reply["error"].as_str().unwrap().contains("40013"), "{reply}");
    assert!(!reply["error"].as_str().unwrap().contains("8675309"), "no number in the reason");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.seen().len(), 1, "a permanent refusal is not retried");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed", "and is not an opt-out");
}

#[tokio::test]
async fn telnyxs_stop_block_on_a_send_records_a_provider_opt_out() {
    let (_fake, base) = Fake::start(vec![telnyx_error(400, "40300", "Blocked due to STOP message")]).await;
    let app = TestApp::spawn_with(&config_with_send(&base)).await;
    app.sms_via(Provider::Telnyx, "tx-start-2", PATIENT, CLINIC, "START").await;
    assert_eq!(final_reply(&app, "tx-start-2").await["status"], "failed");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    let history: Value =
        app.api("/v1/consents/events", Some(STAFF_KEY), json!({"to": PATIENT})).await.json().await.unwrap();
    let block = history["events"].as_array().unwrap().iter().find(|e| e["source"] == "provider_block").unwrap();
    assert_eq!(block["kind"], "opt_out");
    assert_eq!(block["code"], "telnyx:40300");
    assert_eq!(block["program"], "clinic");
}

/// A `message.finalized` webhook for one of our messages, signed as Telnyx signs.
async fn finalized(app: &TestApp, message_id: &str, code: &str) -> reqwest::Response {
    let at = rfc3339(event_time());
    let body = json!({"data": {"record_type": "event", "id": format!("evt-{message_id}"), "event_type": "message.finalized",
        "occurred_at": at, "payload": {"record_type": "message", "direction": "outbound", "id": message_id, "type": "SMS",
            "from": {"phone_number": CLINIC, "carrier": "Telnyx", "line_type": "Wireless"},
            "to": [{"phone_number": PATIENT, "status": "delivery_failed", "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"}],
            "text": "Lakeside Reminders: your visit is tomorrow at 10.", "completed_at": at,
            "errors": [{"code": code, "title": "Blocked due to STOP message"}]}},
        "meta": {"attempt": 1, "delivered_to": "https://example.com"}})
    .to_string();
    app.telnyx_signed(body).await
}

#[tokio::test]
async fn a_signed_status_callback_with_telnyxs_block_code_opts_the_number_out_once() {
    let app = TestApp::spawn().await;
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
    let first = finalized(&app, "out-1", "40300").await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.json::<Value>().await.unwrap()["status"], "recorded");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "no_consent", "only the sending program");
    let again = finalized(&app, "out-1", "40300").await;
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "duplicate");
    let other = finalized(&app, "out-2", "40008").await;
    assert_eq!(other.json::<Value>().await.unwrap()["status"], "ignored", "another failure is not an opt-out");
    assert_eq!(app.ledger_len(PATIENT).await, 1);
    // A patient's START afterwards wins: event time orders.
    app.sms_via(Provider::Telnyx, "tx-start-3", PATIENT, CLINIC, "START").await;
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
}

#[tokio::test]
async fn a_bandwidth_callback_with_a_stop_and_an_opt_out_failure_records_both() {
    const OTHER: &str = "+14158675310";
    let app = TestApp::spawn().await;
    let at = rfc3339(event_time());
    let body = json!([
        {"type": "message-received", "time": at, "description": "Incoming message received", "to": CLINIC,
         "message": {"id": "bw-in-1", "time": at, "to": [CLINIC], "from": PATIENT, "text": "STOP",
            "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2", "owner": CLINIC, "direction": "in", "segmentCount": 1}},
        {"type": "message-failed", "time": at, "description": "destination-rejected-due-to-user-opt-out", "to": OTHER,
         "errorCode": 4775,
         "message": {"id": "bw-out-1", "owner": CLINIC, "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2",
            "time": at, "segmentCount": 1, "direction": "out", "to": [OTHER], "from": CLINIC, "text": "", "tag": "r-1"}}
    ])
    .to_string();
    let post = || {
        app.client
            .post(app.url("/webhooks/bandwidth"))
            .basic_auth(BANDWIDTH_USER, Some(BANDWIDTH_PASSWORD))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out", "the patient's STOP");
    assert_eq!(app.reason(OTHER, "clinic", "billing").await, "opted_out", "the opt-out Bandwidth reported");
    let again = post().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(again["status"], "duplicate", "a retried callback changes nothing");
    assert_eq!((app.ledger_len(PATIENT).await, app.ledger_len(OTHER).await), (1, 1));
}

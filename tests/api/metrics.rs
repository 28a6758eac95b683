//! `GET /metrics`: the service's counters in Prometheus text, behind the API
//! key scope `metrics`, with exact counts and no number or text anywhere.

use crate::helpers::*;

const METRICS_KEY: &str = "key-for-the-prometheus-scraper";

fn config_with_metrics_key(extra: &str) -> String {
    format!(
        "{}\n[[api_keys]]\nname = \"prometheus\"\ntoken_sha256 = \"{}\"\nscopes = [\"metrics\"]\n{extra}",
        config_text(),
        sms_consent::http::auth::sha256_hex(METRICS_KEY)
    )
}

async fn metrics(app: &TestApp, key: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url("/metrics"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

/// The labels of every sample line: `name{k="v",...} value`.
fn labels(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let Some((_, rest)) = line.split_once('{') else { continue };
        let (inside, _) = rest.rsplit_once('}').unwrap();
        for pair in inside.split("\",") {
            let (key, value) = pair.split_once("=\"").unwrap();
            found.push((key.to_owned(), value.trim_end_matches('"').to_owned()));
        }
    }
    found
}

#[tokio::test]
async fn metrics_count_stops_duplicates_bad_signatures_and_decisions_exactly_with_no_phi() {
    let app = TestApp::spawn_with(&config_with_metrics_key("")).await;

    assert_eq!(app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await.status(), 200);
    assert_eq!(app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await.status(), 200, "a replay");
    assert_eq!(app.twilio_sms("SM0002", PATIENT, CLINIC, "Thanks, see you Tuesday").await.status(), 200);
    let params = twilio_params("SM0003", PATIENT, CLINIC, "STOP");
    assert_eq!(app.twilio_raw(&params, Some("bm90IGEgc2lnbmF0dXJl")).await.status(), 401);
    assert_eq!(app.reason(PATIENT, "clinic", "appointment_reminders").await, "opted_out");
    assert_eq!(app.reason(NEIGHBOUR, "clinic", "billing").await, "allowed");
    assert_eq!(app.reason("+1415", "clinic", "billing").await, "invalid_number");

    let response = metrics(&app, Some(METRICS_KEY)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();
    for line in [
        r#"sms_consent_events_recorded_total{kind="opt_out",provider="twilio"} 1"#,
        r#"sms_consent_duplicates_total{provider="twilio"} 1"#,
        r#"sms_consent_ignored_messages_total{provider="twilio"} 1"#,
        r#"sms_consent_signature_failures_total{provider="twilio"} 1"#,
        r#"sms_consent_integrity_alarms_total 0"#,
        r#"sms_consent_authorizations_total{reason="opted_out"} 1"#,
        r#"sms_consent_authorizations_total{reason="allowed"} 1"#,
        r#"sms_consent_authorizations_total{reason="invalid_number"} 1"#,
        // The STOP and its replay each commit once (the replay finds its
        // dedup marker); the ignored message is not stored.
        r#"sms_consent_store_latency_seconds_count{operation="commit",outcome="ok"} 2"#,
        r#"sms_consent_http_request_duration_seconds_count{route="/webhooks/twilio",status="2xx"} 3"#,
        r#"sms_consent_http_request_duration_seconds_count{route="/webhooks/twilio",status="4xx"} 1"#,
        r#"sms_consent_http_request_duration_seconds_count{route="/v1/authorizations",status="2xx"} 3"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in:\n{text}");
    }
    assert!(text.contains("# TYPE sms_consent_store_latency_seconds histogram"), "{text}");
    assert_eq!(text.matches("sms_consent_events_recorded_total{").count(), 1, "{text}");
    for phi in ["8675309", "8675310", "5550100", "Thanks", "Tuesday", "STOP", "SM000", TWILIO_TOKEN, AUTHORIZE_KEY] {
        assert!(!text.contains(phi), "{phi} in the metrics:\n{text}");
    }
    let fixed = ["kind", "provider", "reason", "operation", "outcome", "route", "status", "le"];
    for (key, value) in labels(&text) {
        assert!(fixed.contains(&key.as_str()), "label {key}={value}");
        // Digits only in bucket bounds, status classes and route templates.
        assert!(
            !value.chars().any(|c| c.is_ascii_digit())
                || ["le", "status"].contains(&key.as_str())
                || value == "/v1/authorizations",
            "{key}={value}"
        );
    }
}

#[tokio::test]
async fn metrics_need_a_key_with_the_metrics_scope() {
    let app = TestApp::spawn_with(&config_with_metrics_key("")).await;
    assert_problem(metrics(&app, None).await, 401).await;
    assert_problem(metrics(&app, Some("not-a-key")).await, 401).await;
    assert_problem(metrics(&app, Some(AUTHORIZE_KEY)).await, 403).await;
    assert_eq!(metrics(&app, Some(METRICS_KEY)).await.status(), 200);
}

#[tokio::test]
async fn metrics_off_answer_404_to_a_key_that_holds_the_scope() {
    let app = TestApp::spawn_with(&config_with_metrics_key("\n[metrics]\nenabled = false\n")).await;
    assert_problem(metrics(&app, None).await, 401).await;
    assert_problem(metrics(&app, Some(METRICS_KEY)).await, 404).await;
}

/// A stand-in for Telnyx's `POST /v2/messages`: a 500, then an acceptance,
/// then a permanent refusal (and that refusal again after).
async fn telnyx_messages_api() -> String {
    use axum::http::StatusCode;
    let answers = std::sync::Arc::new(std::sync::Mutex::new(vec![
        (StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({"errors": [{"code": "10001", "title": "Busy"}]})),
        (StatusCode::OK, serde_json::json!({"data": {"id": "m-1", "to": [{"status": "queued"}]}})),
        (StatusCode::BAD_REQUEST, serde_json::json!({"errors": [{"code": "40013", "title": "Invalid source"}]})),
    ]));
    let app = axum::Router::new().route(
        "/v2/messages",
        axum::routing::post(move || {
            let answers = answers.clone();
            async move {
                let mut answers = answers.lock().unwrap();
                let (status, body) = if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() };
                (status, axum::Json(body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v2", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// Waits up to 10 s for `line` in the metrics.
async fn wait_for_line(app: &TestApp, line: &str) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = metrics(app, Some(METRICS_KEY)).await.text().await.unwrap();
        if text.lines().any(|l| l == line) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    text
}

#[tokio::test]
async fn replies_from_the_outbox_are_counted_sent_retried_and_failed() {
    let base = telnyx_messages_api().await;
    let send = format!(
        "[providers.telnyx]\npublic_keys = [\"{TELNYX_PUBLIC_KEY}\"]\n\
         [providers.telnyx.send]\napi_key = \"KEY_test\"\nbase_url = \"{base}\"\n\n\
         [outbox]\npoll_interval_ms = 100\nretry_initial_ms = 200\nretry_max_ms = 1000\n"
    );
    let config = config_with_metrics_key("")
        .replace(&format!("[providers.telnyx]\npublic_keys = [\"{TELNYX_PUBLIC_KEY}\"]\n"), &send);
    assert!(config.contains("[providers.telnyx.send]"));
    let app = TestApp::spawn_with(&config).await;

    assert_eq!(app.telnyx_sms("tx-1", PATIENT, CLINIC, "START").await.status(), 200);
    let text = wait_for_line(&app, r#"sms_consent_replies_total{outcome="sent"} 1"#).await;
    assert!(text.lines().any(|l| l == r#"sms_consent_replies_total{outcome="sent"} 1"#), "{text}");
    assert!(text.lines().any(|l| l == r#"sms_consent_replies_total{outcome="retry"} 1"#), "{text}");
    assert!(text.contains(r#"sms_consent_events_recorded_total{kind="opt_in",provider="telnyx"} 1"#), "{text}");

    assert_eq!(app.telnyx_sms("tx-2", PATIENT, CLINIC, "HELP").await.status(), 200);
    let text = wait_for_line(&app, r#"sms_consent_replies_total{outcome="failed"} 1"#).await;
    assert!(text.lines().any(|l| l == r#"sms_consent_replies_total{outcome="failed"} 1"#), "{text}");
    assert!(text.lines().any(|l| l == r#"sms_consent_replies_total{outcome="sent"} 1"#), "{text}");
    assert!(!text.contains("8675309") && !text.contains("5550100"), "{text}");
}

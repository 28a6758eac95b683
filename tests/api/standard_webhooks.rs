use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn a_signed_stop_is_recorded_and_answered_in_json() {
    let app = TestApp::spawn().await;

    let response = app.standard_sms("msg_1", PATIENT, CLINIC, "STOP", None).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "recorded");
    assert!(body["reply"].as_str().unwrap().contains("You are unsubscribed"));
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
}

#[tokio::test]
async fn a_retried_delivery_is_applied_once() {
    let app = TestApp::spawn().await;
    app.standard_sms("msg_1", PATIENT, CLINIC, "STOP", None).await;

    let again: Value = app.standard_sms("msg_1", PATIENT, CLINIC, "STOP", None).await.json().await.unwrap();

    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["reply"], Value::Null);
    assert_eq!(app.ledger_len(PATIENT).await, 1);
}

#[tokio::test]
async fn stale_future_and_forged_deliveries_are_refused_without_change() {
    let app = TestApp::spawn().await;
    let body = format!(r#"{{"id":"msg_1","from":"{PATIENT}","to":"{CLINIC}","text":"STOP"}}"#);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    assert_problem(app.standard_raw("msg_1", now - 301, &body, SW_SECRET).await, 401).await;
    assert_problem(app.standard_raw("msg_1", now + 301, &body, SW_SECRET).await, 401).await;
    assert_problem(app.standard_raw("msg_1", now, &body, "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").await, 401).await;
    let missing = app.client.post(app.url("/webhooks/standard-webhooks")).body(body.clone()).send().await.unwrap();
    assert_problem(missing, 401).await;

    assert_eq!(app.ledger_len(PATIENT).await, 0);
}

#[tokio::test]
async fn event_time_orders_not_arrival() {
    let app = TestApp::spawn().await;

    // The later START arrives first; the earlier STOP arrives late.
    app.standard_sms("msg_start", PATIENT, CLINIC, "START", Some("2026-03-01T10:05:00Z")).await;
    app.standard_sms("msg_stop", PATIENT, CLINIC, "STOP", Some("2026-03-01T10:00:00Z")).await;

    let decision = app.decision(PATIENT, "clinic", "billing").await;
    assert_eq!(decision["reason"], "allowed");
    assert_eq!(decision["as_of"], "2026-03-01T10:05:00Z");
}

#[tokio::test]
async fn an_opt_out_wins_a_tie() {
    let app = TestApp::spawn().await;

    app.standard_sms("msg_stop", PATIENT, CLINIC, "STOP", Some("2026-03-01T10:00:00Z")).await;
    app.standard_sms("msg_start", PATIENT, CLINIC, "START", Some("2026-03-01T10:00:00Z")).await;

    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
}

#[tokio::test]
async fn a_signed_but_unreadable_body_is_a_400() {
    let app = TestApp::spawn().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    assert_problem(app.standard_raw("msg_1", now, "{not json", SW_SECRET).await, 400).await;
    assert_problem(
        app.standard_raw("msg_1", now, r#"{"id":"msg_1","from":"+1","to":"+1","text":"STOP"}"#, SW_SECRET).await,
        400,
    )
    .await;
}

#[tokio::test]
async fn concurrent_deliveries_for_one_number_converge_on_the_latest_event() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let (text, minute) = if i % 2 == 0 { ("STOP", i) } else { ("START", i) };
            let at = format!("2026-03-01T10:{minute:02}:00Z");
            let response = app.standard_sms(&format!("msg_{i}"), PATIENT, CLINIC, text, Some(&at)).await;
            assert_eq!(response.status(), 200);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    // Event 23 (START, 10:23) is the latest.
    let decision = app.decision(PATIENT, "clinic", "billing").await;
    assert_eq!(decision["reason"], "allowed");
    assert_eq!(decision["as_of"], "2026-03-01T10:23:00Z");
    assert_eq!(app.ledger_len(PATIENT).await, 24);
}

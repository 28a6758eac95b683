use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn every_reason_code_is_reachable() {
    let app = TestApp::spawn().await;
    app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await;

    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason("+14155550123", "clinic", "billing").await, "allowed");
    assert_eq!(app.reason("+14155550123", "pharmacy", "refills").await, "no_consent");
    assert_eq!(app.reason(PATIENT, "dentist", "billing").await, "unknown_program");
    assert_eq!(app.reason(PATIENT, "clinic", "marketing").await, "unknown_category");
    assert_eq!(app.reason("555-0100", "clinic", "billing").await, "invalid_number");
}

#[tokio::test]
async fn a_number_with_no_record_has_no_as_of() {
    let app = TestApp::spawn().await;

    let decision = app.decision(PATIENT, "pharmacy", "refills").await;

    assert_eq!(decision, json!({ "allowed": false, "reason": "no_consent", "as_of": null }));
}

#[tokio::test]
async fn callers_without_a_valid_key_or_scope_are_refused() {
    let app = TestApp::spawn().await;
    let body = json!({ "to": PATIENT, "program": "clinic", "category": "billing" }).to_string();

    let missing = assert_problem(app.authorize_as(None, body.clone()).await, 401).await;
    assert_problem(app.authorize_as(Some("guess"), body.clone()).await, 401).await;
    let forbidden = assert_problem(app.authorize_as(Some(RECORD_ONLY_KEY), body).await, 403).await;

    assert!(missing["detail"].as_str().unwrap().contains("API key"));
    assert!(forbidden["detail"].as_str().unwrap().contains("authorize"));
}

#[tokio::test]
async fn malformed_requests_are_a_400() {
    let app = TestApp::spawn().await;

    for body in ["{", "[]", r#"{"to":"+14158675309"}"#, r#"{"to":1,"program":"clinic","category":"billing"}"#] {
        assert_problem(app.authorize_as(Some(AUTHORIZE_KEY), body.into()).await, 400).await;
    }
}

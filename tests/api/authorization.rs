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

/// Tomorrow at `hour`:00 in a fixed UTC-8 zone (`Etc/GMT+8`), RFC 3339.
fn tomorrow_at(hour: u8) -> String {
    let offset = time::UtcOffset::from_hms(-8, 0, 0).unwrap();
    let date = time::OffsetDateTime::now_utc().to_offset(offset).date().next_day().unwrap();
    let at = time::OffsetDateTime::new_in_offset(date, time::Time::from_hms(hour, 0, 0).unwrap(), offset);
    at.to_offset(time::UtcOffset::UTC).format(&time::format_description::well_known::Rfc3339).unwrap()
}

async fn ask(app: &TestApp, body: serde_json::Value) -> reqwest::Response {
    app.authorize_as(Some(AUTHORIZE_KEY), body.to_string()).await
}

#[tokio::test]
async fn time_and_volume_are_answered_and_a_reservation_can_be_released() {
    let app = TestApp::spawn().await;
    let visit = |send_at: String, reserve: bool| {
        json!({"to": PATIENT, "program": "visits", "category": "reminders",
               "recipient": {"time_zone": "Etc/GMT+8"}, "send_at": send_at, "reserve": reserve, "segments": 1})
    };
    let late: serde_json::Value = ask(&app, visit(tomorrow_at(22), false)).await.json().await.unwrap();
    assert_eq!((late["allowed"].as_bool(), late["reason"].as_str()), (Some(false), Some("quiet_hours")), "{late}");
    let next = time::OffsetDateTime::parse(
        late["next_allowed_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expected = time::OffsetDateTime::parse(&tomorrow_at(8), &time::format_description::well_known::Rfc3339)
        .unwrap()
        + time::Duration::days(1);
    assert_eq!(next, expected, "08:00 the day after, in the recipient's zone");

    let reserved: serde_json::Value = ask(&app, visit(tomorrow_at(10), true)).await.json().await.unwrap();
    assert_eq!(reserved["allowed"], true, "{reserved}");
    let id = reserved["reservation_id"].as_str().expect("a reservation id").to_owned();
    assert!(!id.contains("8675309"), "no number in the id");
    let capped: serde_json::Value = ask(&app, visit(tomorrow_at(11), true)).await.json().await.unwrap();
    assert_eq!(capped["reason"], "frequency_cap", "one a day under the healthcare exemption: {capped}");

    let release =
        |id: String| app.api("/v1/reservations/release", Some(AUTHORIZE_KEY), json!({ "reservation_id": id }));
    let released: serde_json::Value = release(id.clone()).await.json().await.unwrap();
    assert_eq!(released["status"], "released");
    assert_problem(release(id).await, 404).await;
    assert_problem(app.api("/v1/reservations/release", Some(STAFF_KEY), json!({"reservation_id": "x"})).await, 403)
        .await;
    let again: serde_json::Value = ask(&app, visit(tomorrow_at(11), true)).await.json().await.unwrap();
    assert_eq!(again["allowed"], true, "the released slot is free: {again}");

    let long = json!({"to": PATIENT, "program": "visits", "category": "reminders", "segments": 2});
    let long: serde_json::Value = ask(&app, long).await.json().await.unwrap();
    assert_eq!(long["reason"], "too_long_for_exemption");
}

#[tokio::test]
async fn a_recipient_or_send_at_that_cannot_be_is_a_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let base = json!({"to": PATIENT, "program": "visits", "category": "reminders"});
    let with = |extra: serde_json::Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let zone = assert_problem(ask(&app, with(json!({"recipient": {"time_zone": "Mars/Olympus"}}))).await, 400).await;
    assert!(zone["detail"].as_str().unwrap().contains("recipient.time_zone"), "{zone}");
    let state = assert_problem(ask(&app, with(json!({"recipient": {"state": "ZZ"}}))).await, 400).await;
    assert!(state["detail"].as_str().unwrap().contains("recipient.state"), "{state}");
    let far = assert_problem(ask(&app, with(json!({"send_at": "2099-01-01T00:00:00Z"}))).await, 400).await;
    assert!(far["detail"].as_str().unwrap().contains("send_at"), "{far}");
    let batch = json!({"requests": [base.clone(), with(json!({"recipient": {"state": "ZZ"}}))]});
    let batch = assert_problem(ask(&app, batch).await, 400).await;
    assert!(batch["detail"].as_str().unwrap().starts_with("requests[1].recipient.state"), "{batch}");
}

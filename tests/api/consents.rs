use serde_json::{json, Value};

use crate::helpers::*;

fn request(to: &str, program: &str, category: &str) -> Value {
    json!({ "to": to, "program": program, "category": category })
}

#[tokio::test]
async fn a_batch_is_answered_in_order_with_every_reason() {
    let app = TestApp::spawn().await;
    app.twilio_sms("SM1", PATIENT, CLINIC, "STOP").await;
    let batch = json!({ "requests": [
        request(PATIENT, "clinic", "billing"),
        request("+14155550123", "clinic", "billing"),
        request("+14155550123", "pharmacy", "refills"),
        request(PATIENT, "dentist", "billing"),
        request(PATIENT, "clinic", "marketing"),
        request("555-0100", "clinic", "billing"),
        request(PATIENT, "clinic", "appointment_reminders"),
    ]});

    let response = app.api("/v1/authorizations", Some(AUTHORIZE_KEY), batch).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let reasons: Vec<&str> =
        body["results"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        ["opted_out", "allowed", "no_consent", "unknown_program", "unknown_category", "invalid_number", "opted_out"]
    );
    assert_eq!(body["results"][1]["to"], "+14155550123");
    assert_eq!(body["results"][1]["as_of"], Value::Null);
    assert!(body["results"][0]["as_of"].is_string());
}

#[tokio::test]
async fn an_empty_batch_or_one_of_101_is_a_400() {
    let app = TestApp::spawn().await;
    let many: Vec<Value> = (0..101).map(|i| request(&format!("+1415555{i:04}"), "clinic", "billing")).collect();

    assert_problem(app.api("/v1/authorizations", Some(AUTHORIZE_KEY), json!({ "requests": [] })).await, 400).await;
    assert_problem(app.api("/v1/authorizations", Some(AUTHORIZE_KEY), json!({ "requests": many })).await, 400).await;
    let hundred: Vec<Value> = (0..100).map(|i| request(&format!("+1415555{i:04}"), "clinic", "billing")).collect();
    assert_eq!(app.api("/v1/authorizations", Some(AUTHORIZE_KEY), json!({ "requests": hundred })).await.status(), 200);
}

#[tokio::test]
async fn every_route_refuses_a_missing_key_and_a_missing_scope() {
    let app = TestApp::spawn().await;
    let record = json!({ "to": PATIENT, "program": "clinic", "kind": "express", "source": "front_desk", "captured_at": "2026-01-01T00:00:00Z" });
    let cases = [
        ("/v1/authorizations", request(PATIENT, "clinic", "billing"), STAFF_KEY, "authorize"),
        ("/v1/consents", record, AUTHORIZE_KEY, "record"),
        ("/v1/consents/state", json!({ "to": PATIENT }), RECORD_ONLY_KEY, "read_history"),
        ("/v1/consents/events", json!({ "to": PATIENT }), AUTHORIZE_KEY, "read_history"),
        ("/v1/consents/erasure", json!({ "to": PATIENT }), RECORD_ONLY_KEY, "erase"),
    ];
    for (path, body, wrong_key, scope) in cases {
        assert_problem(app.api(path, None, body.clone()).await, 401).await;
        assert_problem(app.api(path, Some("not-a-key"), body.clone()).await, 401).await;
        let forbidden = assert_problem(app.api(path, Some(wrong_key), body).await, 403).await;
        assert!(forbidden["detail"].as_str().unwrap().contains(scope), "{path}");
    }
    assert_eq!(app.ledger_len(PATIENT).await, 0);
}

fn phone_call_revocation(id: &str, captured_at: &str) -> Value {
    json!({ "to": PATIENT, "program": "clinic", "kind": "revocation", "source": "phone_call",
            "captured_at": captured_at, "evidence": "call-recording-7731", "id": id })
}

#[tokio::test]
async fn a_phone_call_revocation_is_ordered_by_when_it_was_captured() {
    let app = TestApp::spawn().await;
    let before_start = time::OffsetDateTime::now_utc() - time::Duration::minutes(10);
    app.twilio_sms("SM1", PATIENT, CLINIC, "START").await;
    let rfc = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();

    // Captured before the START, recorded after it: the START stands.
    let late =
        app.api("/v1/consents", Some(RECORD_ONLY_KEY), phone_call_revocation("call-1", &rfc(before_start))).await;
    assert_eq!(late.status(), 201);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");

    // Captured after the START: the revocation wins.
    let after = app
        .api(
            "/v1/consents",
            Some(RECORD_ONLY_KEY),
            phone_call_revocation("call-2", &rfc(time::OffsetDateTime::now_utc())),
        )
        .await;
    assert_eq!(after.status(), 201);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
}

#[tokio::test]
async fn a_record_retried_with_its_id_is_applied_once() {
    let app = TestApp::spawn().await;
    let body = phone_call_revocation("call-1", "2026-01-01T00:00:00Z");

    let first = app.api("/v1/consents", Some(RECORD_ONLY_KEY), body.clone()).await;
    let again = app.api("/v1/consents", Some(RECORD_ONLY_KEY), body).await;

    assert_eq!((first.status().as_u16(), again.status().as_u16()), (201, 200));
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    assert_eq!(app.ledger_len(PATIENT).await, 1);
}

#[tokio::test]
async fn written_consent_for_one_category_opens_only_that_category() {
    let app = TestApp::spawn().await;
    let body = json!({ "to": PATIENT, "program": "pharmacy", "categories": ["refills"], "kind": "express_written",
                       "source": "web_form", "captured_at": "2026-01-01T00:00:00Z", "evidence": "form-42" });

    assert_eq!(app.api("/v1/consents", Some(RECORD_ONLY_KEY), body).await.status(), 201);

    assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "allowed");
    let state: Value =
        app.api("/v1/consents/state", Some(STAFF_KEY), json!({ "to": PATIENT })).await.json().await.unwrap();
    let refills = state["consents"].as_array().unwrap().iter().find(|c| c["program"] == "pharmacy").unwrap().clone();
    assert_eq!(refills["reason"], "allowed");
    assert!(refills["decided_by"].as_str().unwrap().starts_with("api:front-desk:"));
    assert_eq!(state["consents"].as_array().unwrap().len(), 4, "clinic (2), pharmacy (1), visits (1)");
}

#[tokio::test]
async fn bad_records_are_a_400_and_change_nothing() {
    let app = TestApp::spawn().await;
    let good = json!({ "to": PATIENT, "program": "clinic", "kind": "express", "source": "ehr", "captured_at": "2026-01-01T00:00:00Z" });
    let mut cases = Vec::new();
    for (field, value) in [
        ("to", json!("555")),
        ("program", json!("dentist")),
        ("categories", json!(["marketing"])),
        ("categories", json!([])),
        ("kind", json!("implied")),
        ("source", json!("carrier_pigeon")),
        ("captured_at", json!("yesterday")),
        ("captured_at", json!("2999-01-01T00:00:00Z")),
        ("surprise", json!(1)),
    ] {
        let mut body = good.clone();
        body[field] = value;
        cases.push(body);
    }
    for body in cases {
        assert_problem(app.api("/v1/consents", Some(RECORD_ONLY_KEY), body.clone()).await, 400).await;
    }
    assert_eq!(app.ledger_len(PATIENT).await, 0);
}

#[tokio::test]
async fn history_is_newest_first_paginated_and_every_read_is_recorded() {
    let app = TestApp::spawn().await;
    for i in 0..55 {
        app.twilio_sms(&format!("SM{i:03}"), PATIENT, CLINIC, if i % 2 == 0 { "STOP" } else { "START" }).await;
    }

    let first: Value =
        app.api("/v1/consents/events", Some(STAFF_KEY), json!({ "to": PATIENT })).await.json().await.unwrap();
    let events = first["events"].as_array().unwrap();
    assert_eq!(events.len(), 50);
    assert_eq!(events[0]["kind"], "history_read", "the read is recorded before anything is shown");
    assert_eq!(events[0]["caller"], "compliance");
    assert_eq!(events[1]["event_id"], "twilio:SM054");
    assert_eq!(events[1]["text"], "STOP");
    let token = first["next_page_token"].as_str().unwrap();

    let second: Value = app
        .api("/v1/consents/events", Some(STAFF_KEY), json!({ "to": PATIENT, "page_token": token }))
        .await
        .json()
        .await
        .unwrap();
    let older = second["events"].as_array().unwrap();
    assert_eq!(older.len(), 6);
    assert_eq!(older.last().unwrap()["event_id"], "twilio:SM000");
    assert_eq!(app.ledger_len(PATIENT).await, 57, "55 messages and two reads");
    assert_problem(
        app.api("/v1/consents/events", Some(STAFF_KEY), json!({ "to": PATIENT, "page_token": "!!" })).await,
        400,
    )
    .await;
}

#[tokio::test]
async fn erasure_removes_the_texts_and_keeps_the_number_suppressed() {
    let mut app = TestApp::spawn().await;
    app.twilio_sms("SM1", PATIENT, CLINIC, "please stop texting me").await;
    app.api("/v1/consents", Some(RECORD_ONLY_KEY), phone_call_revocation("call-1", "2026-01-01T00:00:00Z")).await;

    let response = app.api("/v1/consents/erasure", Some(STAFF_KEY), json!({ "to": PATIENT })).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["events_scrubbed"], 2);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out", "still suppressed");
    let history: Value =
        app.api("/v1/consents/events", Some(STAFF_KEY), json!({ "to": PATIENT })).await.json().await.unwrap();
    let events = history["events"].as_array().unwrap();
    assert!(events.iter().all(|e| e["text"].is_null() && e["evidence"].is_null()));
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["history_read", "erasure", "opt_out", "revocation"]);
    assert_eq!(events[1]["caller"], "compliance");
    // A second erasure is harmless; opting in again works as before.
    assert_eq!(app.api("/v1/consents/erasure", Some(STAFF_KEY), json!({ "to": PATIENT })).await.status(), 200);
    app.twilio_sms("SM2", PATIENT, CLINIC, "START").await;
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
    app.stop().await;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(app.data_dir()).unwrap() {
        files.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(!String::from_utf8_lossy(&files).contains("call-recording"), "evidence is never stored in plaintext");
}

#[tokio::test]
async fn the_openapi_document_is_served_and_matches_the_repo() {
    let app = TestApp::spawn().await;

    let served = app.client.get(app.url("/openapi.json")).send().await.unwrap().text().await.unwrap();

    let kept = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    assert_eq!(served, kept, "openapi.json is stale: run `cargo run -- openapi > openapi.json`");
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[tokio::test]
async fn erasing_a_number_with_written_consent_denies_it_until_a_new_opt_in() {
    let app = TestApp::spawn().await;
    let rfc = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let written = |id: &str| {
        json!({ "to": PATIENT, "program": "pharmacy", "kind": "express_written", "source": "web_form",
                "captured_at": rfc(time::OffsetDateTime::now_utc()), "evidence": "form-7", "id": id })
    };
    assert_eq!(app.api("/v1/consents", Some(RECORD_ONLY_KEY), written("form-7")).await.status(), 201);
    assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "allowed");

    let erased = app.api("/v1/consents/erasure", Some(STAFF_KEY), json!({ "to": PATIENT })).await;
    assert_eq!(erased.status(), 200);

    // Without its evidence the consent cannot be defended: every program denies.
    for (program, category) in [("pharmacy", "refills"), ("clinic", "billing"), ("visits", "reminders")] {
        assert_eq!(app.reason(PATIENT, program, category).await, "opted_out", "{program}");
    }
    let state: Value =
        app.api("/v1/consents/state", Some(STAFF_KEY), json!({ "to": PATIENT })).await.json().await.unwrap();
    let history: Value =
        app.api("/v1/consents/events", Some(STAFF_KEY), json!({ "to": PATIENT })).await.json().await.unwrap();
    let erasure = history["events"].as_array().unwrap().iter().find(|e| e["kind"] == "erasure").unwrap().clone();
    assert!(state["consents"].as_array().unwrap().iter().all(|c| c["decided_by"] == erasure["event_id"]), "{state}");
    // Safe to repeat.
    assert_eq!(app.api("/v1/consents/erasure", Some(STAFF_KEY), json!({ "to": PATIENT })).await.status(), 200);

    // A new opt-in decides again: START for the clinic, a new form for the pharmacy.
    assert_eq!(app.twilio_sms("SM-after", PATIENT, CLINIC, "START").await.status(), 200);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
    assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "opted_out");
    assert_eq!(app.api("/v1/consents", Some(RECORD_ONLY_KEY), written("form-8")).await.status(), 201);
    assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "allowed");
}

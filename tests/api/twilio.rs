use crate::helpers::*;

#[tokio::test]
async fn a_signed_stop_is_confirmed_in_twiml_and_denies_sending() {
    let app = TestApp::spawn().await;

    let response = app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await;

    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/xml"));
    let twiml = response.text().await.unwrap();
    assert!(twiml.contains("<Response><Message>Lakeside Reminders: You are unsubscribed"), "{twiml}");
    assert!(twiml.contains("Reply START to resubscribe"));
    assert!(!twiml.contains("8675309") && !twiml.contains("STOP<"), "replies carry no PHI: {twiml}");
    let decision = app.decision(PATIENT, "clinic", "appointment_reminders").await;
    assert_eq!(decision["allowed"], false);
    assert_eq!(decision["reason"], "opted_out");
    assert!(decision["as_of"].is_string());
}

#[tokio::test]
async fn start_after_stop_allows_again_and_help_changes_nothing() {
    let app = TestApp::spawn().await;
    app.twilio_sms("SM0001", PATIENT, CLINIC, "Stop. Thank you").await;

    let start = app.twilio_sms("SM0002", PATIENT, CLINIC, "START").await.text().await.unwrap();
    assert!(start.contains("You are resubscribed") && start.contains("Msg &amp; data rates may apply"), "{start}");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");

    let help = app.twilio_sms("SM0003", PATIENT, CLINIC, "HELP").await.text().await.unwrap();
    assert!(help.contains("Help at 555-0100") && help.contains("Reply STOP to opt out"), "{help}");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
    assert_eq!(app.ledger_len(PATIENT).await, 3);
}

#[tokio::test]
async fn a_repeated_stop_is_recorded_once_and_confirmed_once() {
    let app = TestApp::spawn().await;

    let first = app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await.text().await.unwrap();
    let again = app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await;

    assert!(first.contains("<Message>"));
    assert_eq!(again.status(), 200);
    assert!(!again.text().await.unwrap().contains("<Message>"));
    assert_eq!(app.ledger_len(PATIENT).await, 1);
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let params = twilio_params("SM0001", PATIENT, CLINIC, "STOP");
    let forged = sms_consent::providers::twilio::sign("not-the-token", &app.url("/webhooks/twilio"), &params);

    assert_problem(app.twilio_raw(&params, Some(&forged)).await, 401).await;
    assert_problem(app.twilio_raw(&params, None).await, 401).await;

    assert_eq!(app.ledger_len(PATIENT).await, 0);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
}

#[tokio::test]
async fn a_tampered_body_is_refused() {
    let app = TestApp::spawn().await;
    let params = twilio_params("SM0001", PATIENT, CLINIC, "START");
    let signature = sms_consent::providers::twilio::sign(TWILIO_TOKEN, &app.url("/webhooks/twilio"), &params);
    let mut tampered = params.clone();
    tampered.iter_mut().find(|(k, _)| k == "Body").unwrap().1 = "STOP".into();

    assert_problem(app.twilio_raw(&tampered, Some(&signature)).await, 401).await;
    assert_eq!(app.ledger_len(PATIENT).await, 0);
}

#[tokio::test]
async fn the_previous_token_still_verifies_during_rotation() {
    let app = TestApp::spawn().await;
    let params = twilio_params("SM0001", PATIENT, CLINIC, "STOP");
    let signature = sms_consent::providers::twilio::sign(TWILIO_OLD_TOKEN, &app.url("/webhooks/twilio"), &params);

    assert_eq!(app.twilio_raw(&params, Some(&signature)).await.status(), 200);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
}

#[tokio::test]
async fn the_signed_url_comes_from_config_not_the_host_header() {
    let app = TestApp::spawn().await;
    let params = twilio_params("SM0001", PATIENT, CLINIC, "STOP");
    let attacker_url = "http://attacker.example/webhooks/twilio";
    let signature = sms_consent::providers::twilio::sign(TWILIO_TOKEN, attacker_url, &params);
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();

    let response = app
        .client
        .post(app.url("/webhooks/twilio"))
        .header("Host", "attacker.example")
        .header("X-Twilio-Signature", signature)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();

    assert_problem(response, 401).await;
}

#[tokio::test]
async fn stop_all_opts_out_of_every_program() {
    let app = TestApp::spawn().await;
    app.twilio_sms("SM0001", PATIENT, CLINIC, "START").await;
    app.twilio_sms("SM0002", PATIENT, PHARMACY, "START").await;

    app.twilio_sms("SM0003", PATIENT, CLINIC, "STOP ALL").await;

    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "opted_out");
}

#[tokio::test]
async fn stop_to_one_program_leaves_the_other_alone() {
    let app = TestApp::spawn().await;
    app.twilio_sms("SM0001", PATIENT, PHARMACY, "START").await;

    app.twilio_sms("SM0002", PATIENT, CLINIC, "STOP").await;

    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "allowed");
}

#[tokio::test]
async fn a_stop_to_a_number_no_program_owns_is_never_dropped() {
    let app = TestApp::spawn().await;

    let response = app.twilio_sms("SM0001", PATIENT, UNOWNED, "stop").await.text().await.unwrap();

    assert!(response.contains("You are unsubscribed"), "{response}");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "opted_out");
}

#[tokio::test]
async fn ordinary_messages_are_neither_stored_nor_answered() {
    let app = TestApp::spawn().await;

    for (i, text) in ["Can I stop by at 3?", "weekend", "I will be there, thanks"].iter().enumerate() {
        let twiml = app.twilio_sms(&format!("SM000{i}"), PATIENT, CLINIC, text).await.text().await.unwrap();
        assert!(!twiml.contains("<Message>"));
    }
    app.twilio_sms("SM0100", PATIENT, UNOWNED, "START").await;

    assert_eq!(app.ledger_len(PATIENT).await, 0);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
}

#[tokio::test]
async fn a_status_callback_is_acknowledged_and_ignored() {
    let app = TestApp::spawn().await;
    let params: Vec<(String, String)> =
        [("MessageSid", "SM1"), ("MessageStatus", "delivered"), ("From", CLINIC), ("To", PATIENT)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let signature = sms_consent::providers::twilio::sign(TWILIO_TOKEN, &app.url("/webhooks/twilio"), &params);

    assert_eq!(app.twilio_raw(&params, Some(&signature)).await.status(), 200);
    assert_eq!(app.ledger_len(CLINIC).await + app.ledger_len(PATIENT).await, 0);
}

#[tokio::test]
async fn a_signed_message_with_a_garbage_number_is_a_400() {
    let app = TestApp::spawn().await;
    let params = twilio_params("SM0001", "not a number", CLINIC, "STOP");
    let signature = sms_consent::providers::twilio::sign(TWILIO_TOKEN, &app.url("/webhooks/twilio"), &params);

    assert_problem(app.twilio_raw(&params, Some(&signature)).await, 400).await;
}

#[tokio::test]
async fn a_public_url_with_a_stage_path_is_what_gets_verified() {
    let public = "https://consent.example.org/prod";
    let app = TestApp::spawn_with(&format!("[server]\npublic_base_url = \"{public}\"\n{}", config_text())).await;
    let params = twilio_params("SM0001", PATIENT, CLINIC, "STOP");
    let signature = sms_consent::providers::twilio::sign(TWILIO_TOKEN, &format!("{public}/webhooks/twilio"), &params);
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
    let local = format!("http://{}/webhooks/twilio", app.server().addr);

    let response = app
        .client
        .post(&local)
        .header("X-Twilio-Signature", signature)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(app.ledger_len(PATIENT).await, 1);
}

/// A STOP is never refused for its number: an area code newer than the
/// bundled numbering metadata (+1 273, in service since 2025) or a range it
/// lacks is recorded and honoured.
#[tokio::test]
async fn a_stop_from_a_number_newer_than_the_numbering_data_is_honoured() {
    let app = TestApp::spawn().await;
    for (sid, newer) in [("SM273", "+12735550123"), ("SM44", "+4420794609581")] {
        let response = app.twilio_sms(sid, newer, CLINIC, "STOP").await;
        assert_eq!(response.status(), 200, "{newer}");
        assert!(response.text().await.unwrap().contains("unsubscribed"));
        assert_eq!(app.reason(newer, "clinic", "billing").await, "opted_out", "{newer}");
    }
    assert_eq!(app.reason("+1273555012", "clinic", "billing").await, "invalid_number", "still not garbage");
}

/// "Reply YES to confirm": a Yes from a number that never opted out is an
/// ordinary answer (no event, no "resubscribed"); after a STOP it opts in.
#[tokio::test]
async fn yes_opts_in_only_after_an_opt_out() {
    let app = TestApp::spawn().await;
    let answer = app.twilio_sms("SM-yes-1", PATIENT, CLINIC, "Yes").await.text().await.unwrap();
    assert!(!answer.contains("<Message>"), "no reply to a confirmation: {answer}");
    assert_eq!(app.ledger_len(PATIENT).await, 0, "nothing stored");
    let answer = app.twilio_sms("SM-yes-0", PATIENT, CLINIC, "Yes. See you Tuesday").await.text().await.unwrap();
    assert!(!answer.contains("<Message>"), "a yes with more said is an answer too: {answer}");
    assert_eq!(app.ledger_len(PATIENT).await, 0, "nothing stored");
    app.twilio_sms("SM-stop", PATIENT, CLINIC, "STOP").await;
    let answer = app.twilio_sms("SM-yes-2", PATIENT, CLINIC, "Sí").await.text().await.unwrap();
    assert!(answer.contains("Mensajes reactivados"), "resubscribed, in the patient's Spanish: {answer}");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
    let again = app.twilio_sms("SM-yes-3", PATIENT, CLINIC, "YES").await.text().await.unwrap();
    assert!(!again.contains("<Message>"), "opted in already: an ordinary answer again");
    assert_eq!(app.ledger_len(PATIENT).await, 2);
}

/// A category revoked by phone (recorded through the API) stays revoked
/// when the patient texts START to the program.
#[tokio::test]
async fn a_start_does_not_reopen_a_category_revoked_through_the_api() {
    let app = TestApp::spawn().await;
    let revocation = serde_json::json!({"to": PATIENT, "program": "clinic", "categories": ["billing"], "kind": "revocation",
        "source": "phone_call", "captured_at": "2026-01-01T00:00:00Z"});
    assert_eq!(app.api("/v1/consents", Some(RECORD_ONLY_KEY), revocation).await.status(), 201);
    app.twilio_sms("SM-stop", PATIENT, CLINIC, "STOP").await;
    app.twilio_sms("SM-start", PATIENT, CLINIC, "START").await;
    assert_eq!(app.reason(PATIENT, "clinic", "appointment_reminders").await, "allowed");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out", "billing stays revoked");
}

#[tokio::test]
async fn a_patient_is_answered_in_the_language_they_wrote_in() {
    let app = TestApp::spawn().await;

    let stop = app.twilio_sms("SM0001", PATIENT, CLINIC, "No me envíen más mensajes").await.text().await.unwrap();
    assert!(stop.contains("Lakeside Reminders: Se ha dado de baja"), "the shipped Spanish reply: {stop}");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    let start = app.twilio_sms("SM0002", PATIENT, CLINIC, "START").await.text().await.unwrap();
    assert!(start.contains("You are resubscribed"), "a language-neutral keyword is answered in English: {start}");
    // A language the program has no templates for is answered in English.
    let vietnamese = app.twilio_sms("SM0003", PATIENT, CLINIC, "DỪNG").await.text().await.unwrap();
    assert!(vietnamese.contains("You are unsubscribed"), "{vietnamese}");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
}

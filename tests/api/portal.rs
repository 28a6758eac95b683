//! The patient preference page over HTTP: links, the page, its choices,
//! and every way a link or a form is refused.

use reqwest::Response;
use serde_json::{json, Value};

use crate::helpers::*;

/// Makes a link for `to` and `program` with the record-scoped key.
async fn link(app: &TestApp, to: &str, program: &str) -> String {
    let response = app.api("/v1/preference-links", Some(RECORD_ONLY_KEY), json!({"to": to, "program": program})).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["url"].as_str().unwrap().to_owned()
}

fn token_of(url: &str) -> &str {
    url.rsplit_once("/p/").unwrap().1
}

fn form_token(html: &str) -> String {
    let start = html.find(r#"name="form" value=""#).expect("a form token") + r#"name="form" value=""#.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

async fn submit(app: &TestApp, url: &str, fields: &[(&str, &str)]) -> Response {
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    app.client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap()
}

/// The page's form token, read from the page as a browser would.
async fn open(app: &TestApp, url: &str) -> String {
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    form_token(&response.text().await.unwrap())
}

fn assert_secured(response: &Response) {
    let h = response.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"), "{csp}");
    assert!(csp.contains("form-action 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("script"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
}

async fn portal_events(app: &TestApp, to: &str) -> Vec<Value> {
    let response = app.api("/v1/consents/events", Some(STAFF_KEY), json!({"to": to})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "portal" && e["kind"] != "state_read")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_link_opens_the_page_with_the_masked_number_and_nothing_else_of_the_patient() {
    let app = TestApp::spawn().await;
    let before = time::OffsetDateTime::now_utc();
    let response =
        app.api("/v1/preference-links", Some(RECORD_ONLY_KEY), json!({"to": PATIENT, "program": "clinic"})).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let url = body["url"].as_str().unwrap();
    assert!(url.starts_with(&app.url("/p/")), "{url}");
    let token = token_of(url);
    assert_eq!(token.len(), 24);
    assert!(format!("https://msg.clinic.example/p/{token}").len() < 60);
    assert!(!url.contains("8675309"));
    let expires = time::OffsetDateTime::parse(
        body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!((expires - before - time::Duration::days(30)).abs() < time::Duration::minutes(1));

    let page = app.client.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_secured(&page);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.len() < 20 * 1024, "{} bytes", html.len());
    assert!(html.contains("(•••) •••-5309"));
    assert!(html.contains("Lakeside Reminders") && html.contains("Lakeside Family Clinic"));
    assert!(html.contains("Appointment reminders") && html.contains("Billing"));
    assert!(!html.contains("8675309") && !html.contains(token), "no number, no token");
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    for control in ["stop-appointment_reminders", "stop-billing", "stop-program", "stop-all"] {
        assert!(html.contains(&format!(r#"<label for="{control}">"#)), "a label for {control}");
    }
    // The link was recorded with its maker, and the page view with the link.
    let history = app.api("/v1/consents/events", Some(STAFF_KEY), json!({"to": PATIENT})).await;
    let history: Value = history.json().await.unwrap();
    let events = history["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["kind"] == "preference_link" && e["caller"] == "front-desk"));
    assert!(events.iter().any(|e| e["kind"] == "state_read"
        && e["source"] == "portal"
        && e["caller"].as_str().unwrap().starts_with("link:")));
}

#[tokio::test]
async fn the_link_route_needs_the_record_scope_and_a_valid_number_and_program() {
    let app = TestApp::spawn().await;
    let body = json!({"to": PATIENT, "program": "clinic"});
    assert_problem(app.api("/v1/preference-links", None, body.clone()).await, 401).await;
    assert_problem(app.api("/v1/preference-links", Some(AUTHORIZE_KEY), body.clone()).await, 403).await;
    for bad in [
        json!({"to": "555", "program": "clinic"}),
        json!({"to": PATIENT, "program": "nope"}),
        json!({"to": PATIENT}),
        json!({"to": PATIENT, "program": "clinic", "extra": 1}),
    ] {
        let problem = assert_problem(app.api("/v1/preference-links", Some(RECORD_ONLY_KEY), bad).await, 400).await;
        assert!(!problem["detail"].as_str().unwrap().contains("8675309"));
    }
    assert_eq!(app.ledger_len(PATIENT).await, 0, "a refused request records nothing");
}

#[tokio::test]
async fn stopping_a_category_denies_it_keeps_the_other_and_a_double_submit_records_once() {
    let app = TestApp::spawn().await;
    let url = link(&app, PATIENT, "clinic").await;
    let form = open(&app, &url).await;
    let fields = [("form", form.as_str()), ("lang", "en"), ("choice", "stop:billing")];
    let response = submit(&app, &url, &fields).await;
    assert_eq!(response.status(), 200);
    assert_secured(&response);
    let html = response.text().await.unwrap();
    assert!(html.contains("You will no longer get Billing texts from Lakeside Reminders"), "{html}");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason(PATIENT, "clinic", "appointment_reminders").await, "allowed");
    // The same form again (a double tap, a reload): recorded once.
    assert_eq!(submit(&app, &url, &fields).await.status(), 200);
    let events = portal_events(&app, PATIENT).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["kind"], "revocation");
    assert_eq!(events[0]["categories"], json!(["billing"]));
    assert!(events[0]["caller"].as_str().unwrap().starts_with("link:"));
    assert!(!events[0]["caller"].as_str().unwrap().contains(token_of(&url)));
}

#[tokio::test]
async fn resume_records_the_configured_wording_and_stop_all_covers_every_program() {
    let config = config_text().replacen(
        "default = \"opted_in\"\nsend_rules = []",
        "default = \"opted_in\"\nsend_rules = []\nresume_wording = { en = \"Yes, text me {program} again.\", es = \"Sí, envíenme {program} otra vez.\" }",
        1,
    );
    let app = TestApp::spawn_with(&config).await;
    let url = link(&app, PATIENT, "clinic").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let form = open(&app, &url).await;
    let response = submit(&app, &url, &[("form", &form), ("choice", "stop_program")]).await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("Yes, text me Lakeside Reminders again."), "the wording is shown with resume");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let response = submit(&app, &url, &[("form", &form_token(&html)), ("choice", "resume")]).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("Texts from Lakeside Reminders are back on"));
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
    assert_eq!(app.reason(PATIENT, "clinic", "appointment_reminders").await, "allowed");
    let events = portal_events(&app, PATIENT).await;
    let resumed: Vec<_> = events.iter().filter(|e| e["kind"] == "consent_express_written").collect();
    assert_eq!(resumed.len(), 2, "the program and its categories");
    assert!(resumed.iter().all(|e| e["evidence"] == "Yes, text me Lakeside Reminders again."));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let form = open(&app, &url).await;
    assert_eq!(submit(&app, &url, &[("form", &form), ("choice", "stop_all")]).await.status(), 200);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason(PATIENT, "visits", "reminders").await, "opted_out", "every program of the organisation");
}

#[tokio::test]
async fn a_tampered_unknown_or_expired_link_gets_the_plain_invalid_page_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let url = link(&app, PATIENT, "clinic").await;
    let form = open(&app, &url).await;
    let events = app.ledger_len(PATIENT).await;
    let token = token_of(&url).to_owned();
    let mut tampered = token.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [tampered.as_str(), "short", &format!("{token}x"), "AAAAAAAAAAAAAAAAAAAAAAAA"] {
        let response = app.client.get(app.url(&format!("/p/{bad}"))).send().await.unwrap();
        assert_eq!(response.status(), 404, "{bad}");
        assert_secured(&response);
        assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
        let text = response.text().await.unwrap();
        assert!(text.contains("not valid") && text.contains("reply STOP"), "{text}");
        let posted = submit(&app, &app.url(&format!("/p/{bad}")), &[("form", &form), ("choice", "stop:billing")]).await;
        assert_eq!(posted.status(), 404);
    }
    assert_eq!(app.ledger_len(PATIENT).await, events, "no state change");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");

    // A link that has expired: 410, still nothing recorded.
    let service = &app.server().state.service;
    let (short, _) =
        service.make_preference_link(PATIENT, "clinic", time::Duration::milliseconds(300), "test").await.unwrap();
    let expired_url = app.url(&format!("/p/{short}"));
    let form = open(&app, &expired_url).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let events = app.ledger_len(PATIENT).await;
    let response = app.client.get(&expired_url).send().await.unwrap();
    assert_eq!(response.status(), 410);
    assert_secured(&response);
    assert!(response.text().await.unwrap().contains("reply STOP"));
    let posted = submit(&app, &expired_url, &[("form", &form), ("choice", "stop:billing")]).await;
    assert_eq!(posted.status(), 410);
    assert_eq!(app.ledger_len(PATIENT).await, events);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
}

#[tokio::test]
async fn an_erased_number_s_links_open_nothing_and_cannot_bring_the_number_back() {
    let app = TestApp::spawn().await;
    let url = link(&app, PATIENT, "clinic").await;
    let form = open(&app, &url).await;
    assert_eq!(app.api("/v1/consents/erasure", Some(STAFF_KEY), json!({ "to": PATIENT })).await.status(), 200);
    let events = app.ledger_len(PATIENT).await;
    let response = app.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 404, "the number is gone, and with it the page");
    assert!(response.text().await.unwrap().contains("reply STOP"));
    // Resuming from an old page would record the number again: refused.
    let posted = submit(&app, &url, &[("form", &form), ("choice", "resume")]).await;
    assert_eq!(posted.status(), 404);
    assert_eq!(app.ledger_len(PATIENT).await, events, "no state change");
    assert_eq!(app.reason(PATIENT, "clinic", "appointment_reminders").await, "opted_out");

    // The patient consents again later: the number is sealed anew, and the
    // links made before the erasure stay dead; a new link opens.
    let consent = json!({ "to": PATIENT, "program": "clinic", "kind": "express_written", "source": "web_form",
                          "captured_at": crate::providers::rfc3339(time::OffsetDateTime::now_utc()), "evidence": "form-2" });
    assert_eq!(app.api("/v1/consents", Some(RECORD_ONLY_KEY), consent).await.status(), 201);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 404);
    let fresh = link(&app, PATIENT, "clinic").await;
    assert_eq!(app.client.get(&fresh).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_form_token_missing_forged_or_of_another_link_is_refused() {
    let app = TestApp::spawn().await;
    let url = link(&app, PATIENT, "clinic").await;
    let other = link(&app, PATIENT, "clinic").await;
    let other_form = open(&app, &other).await;
    let form = open(&app, &url).await;
    let events = app.ledger_len(PATIENT).await;
    let mut forged = form.clone().into_bytes();
    forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for fields in [
        vec![("choice", "stop:billing")],
        vec![("form", forged.as_str()), ("choice", "stop:billing")],
        vec![("form", other_form.as_str()), ("choice", "stop:billing")],
    ] {
        let response = submit(&app, &url, &fields).await;
        assert_eq!(response.status(), 403);
        assert_secured(&response);
    }
    assert_eq!(app.ledger_len(PATIENT).await, events);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
    // A valid form with no choice, or an unknown one: 400, and nothing is
    // read or recorded (not even a view).
    for choice in [None, Some("stop:nope"), Some("sing")] {
        let mut fields = vec![("form", form.as_str())];
        fields.extend(choice.map(|c| ("choice", c)));
        let response = submit(&app, &url, &fields).await;
        assert_eq!(response.status(), 400);
        assert_secured(&response);
        assert!(response.text().await.unwrap().contains("Choose one of the options"));
    }
    assert_eq!(app.ledger_len(PATIENT).await, events);
    // A path that is not text, or a query that does not parse.
    let response = app.client.get(app.url("/p/%FF%FE")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_secured(&response);
    assert_eq!(app.client.get(format!("{url}?lang=es&lang=en")).send().await.unwrap().status(), 200);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
    // An oversized form.
    let big = "x".repeat(8 * 1024);
    assert_eq!(submit(&app, &url, &[("form", &form), ("pad", &big)]).await.status(), 413);
}

#[tokio::test]
async fn submissions_past_the_limit_get_429_and_record_nothing() {
    let config = format!("{}\n[preferences]\nsubmissions_per_minute = 2\n", config_text());
    let app = TestApp::spawn_with(&config).await;
    let url = link(&app, PATIENT, "clinic").await;
    for _ in 0..2 {
        let form = open(&app, &url).await;
        assert_eq!(submit(&app, &url, &[("form", &form), ("choice", "sing")]).await.status(), 400);
    }
    let form = open(&app, &url).await;
    let response = submit(&app, &url, &[("form", &form), ("choice", "stop:billing")]).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "60");
    assert_secured(&response);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed");
    // Another link of the same number has its own limit.
    let other = link(&app, PATIENT, "clinic").await;
    let form = open(&app, &other).await;
    assert_eq!(submit(&app, &other, &[("form", &form), ("choice", "stop:billing")]).await.status(), 200);
}

#[tokio::test]
async fn the_page_is_in_spanish_on_request_when_the_program_has_spanish() {
    let config = format!(
        "{}\n[[programs]]\nid = \"english-only\"\nname = \"Lakeside Lab\"\norganization = \"Lakeside Family Clinic\"\n\
         numbers = [\"+14155550400\"]\nhelp_contact = \"555-0400\"\nfrequency = \"Msg frequency varies\"\n\
         categories = [\"results\"]\nsend_rules = []\n[programs.replies]\nes = false\n",
        config_text()
    );
    let app = TestApp::spawn_with(&config).await;
    let url = link(&app, PATIENT, "clinic").await;
    let english = app.client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(english.contains(r#"<html lang="en">"#) && english.contains(r#"href="?lang=es""#));
    let spanish = app.client.get(format!("{url}?lang=es")).send().await.unwrap().text().await.unwrap();
    assert!(spanish.contains(r#"<html lang="es">"#) && spanish.contains("Sus mensajes de texto de Lakeside Reminders"));
    assert!(spanish.contains(r#"href="?lang=en""#) && spanish.contains("Guardar mi elección"));
    let response =
        submit(&app, &url, &[("form", &form_token(&spanish)), ("lang", "es"), ("choice", "stop:billing")]).await;
    assert!(response.text().await.unwrap().contains("Guardado. Ya no recibirá mensajes de Billing"));

    let lab = link(&app, PATIENT, "english-only").await;
    let page = app.client.get(format!("{lab}?lang=es")).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains(r#"<html lang="en">"#) && !page.contains("?lang=es"),
        "no Spanish templates, no Spanish page"
    );
}

#[tokio::test]
async fn a_link_survives_a_restart() {
    let mut app = TestApp::spawn().await;
    let url = link(&app, PATIENT, "clinic").await;
    let token = token_of(&url).to_owned();
    app.restart().await;
    let response = app.client.get(app.url(&format!("/p/{token}"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn with_the_page_disabled_neither_the_page_nor_the_link_route_exists() {
    let app = TestApp::spawn().await;
    let url = link(&app, PATIENT, "clinic").await;
    let config = format!("{}\n[preferences]\nenabled = false\n", config_text());
    let off = TestApp::spawn_with(&config).await;
    let body = json!({"to": PATIENT, "program": "clinic"});
    assert_problem(off.api("/v1/preference-links", Some(RECORD_ONLY_KEY), body).await, 404).await;
    let response = off.client.get(off.url(&format!("/p/{}", token_of(&url)))).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

//! Evidence bundles over HTTP: the signed JSON bundle, checked by the
//! stand-alone verifier with the key the real binary prints; the PDF,
//! rendered by `pdftotext`; the export in the audit trail; the scope.

use serde_json::{json, Value};

use crate::helpers::*;

#[path = "../evidence_verifier/verify.rs"]
mod verify;

/// Consent captured on a form (at a whole second, as forms give it), then
/// STOP (Twilio: the reply in the webhook answer), START (Telnyx: the reply
/// waits in the outbox) and HELP, most likely within the same second.
async fn seed(app: &TestApp) {
    let captured = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let captured = captured.format(&time::format_description::well_known::Rfc3339).unwrap();
    let record = json!({ "to": PATIENT, "program": "clinic", "kind": "express_written", "source": "web_form",
        "captured_at": captured, "evidence": "form-2026-0042" });
    assert_eq!(app.api("/v1/consents", Some(RECORD_ONLY_KEY), record).await.status(), 201);
    assert_eq!(app.twilio_sms("SM-ev-1", PATIENT, CLINIC, "STOP").await.status(), 200);
    assert_eq!(app.telnyx_sms("tx-ev-2", PATIENT, CLINIC, "START").await.status(), 200);
    assert_eq!(app.twilio_sms("SM-ev-4", PATIENT, CLINIC, "HELP").await.status(), 200);
}

/// Oldest first by event time (a whole-second time is not after a
/// fractional one of the same second), arrival breaking ties.
const KINDS: [&str; 5] = ["consent_express_written", "opt_out", "opt_in", "help", "evidence_export"];

async fn export(app: &TestApp, key: Option<&str>, accept: Option<&str>, to: &str) -> reqwest::Response {
    let mut request = app.client.post(app.url("/v1/consents/evidence")).json(&json!({ "to": to }));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().await.unwrap()
}

fn kinds(bundle: &Value) -> Vec<String> {
    bundle["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

/// The `public_key:` line the real binary prints for the app's ledger
/// (the server stopped: the embedded ledger opens in one process).
fn published_key(app: &TestApp) -> String {
    let config = app.dir.path().join("evidence-key.toml");
    std::fs::write(
        &config,
        format!("{}\n[server]\ndata_dir = {:?}\n", config_text(), app.data_dir().display().to_string()),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sms-consent"))
        .args(["evidence-public-key", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("-----BEGIN PUBLIC KEY-----"), "{stdout}");
    stdout.lines().find_map(|l| l.strip_prefix("public_key: ")).unwrap().to_owned()
}

#[tokio::test]
async fn the_bundle_holds_every_event_in_order_and_verifies_with_the_published_key() {
    let mut app = TestApp::spawn().await;
    seed(&app).await;

    let response = export(&app, Some(STAFF_KEY), None, PATIENT).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let text = response.text().await.unwrap();
    for full in [PATIENT, PATIENT.trim_start_matches("+1"), "867-5309"] {
        assert!(!text.contains(full), "the full number is in the bundle");
    }
    let answer: Value = serde_json::from_str(&text).unwrap();
    app.stop().await;
    let key = published_key(&app);
    let bundle = verify::verify_answer(&answer, &key).unwrap();
    assert_eq!(bundle, answer["bundle"], "the convenience copy is what was signed");
    assert_eq!(kinds(&bundle), KINDS);
    let events = bundle["events"].as_array().unwrap();
    assert_eq!(events[0]["evidence"], "form-2026-0042");
    assert_eq!(events[0]["caller"], "front-desk");
    assert_eq!(events[1]["text"], "STOP");
    assert_eq!(events[1]["source"], "twilio");
    assert_eq!(events[1]["reply"], Value::Null, "Twilio's reply went in the webhook answer");
    assert_eq!(events[2]["reply"]["status"], "pending", "Telnyx's waits in the outbox");
    assert_eq!(events[2]["reply"]["provider"], "telnyx");
    assert!(events[2]["reply"]["body"].as_str().unwrap().contains("Lakeside Reminders"));
    assert_eq!(events[4]["caller"], "compliance");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(bundle["verification"]["result"], "intact");
    assert_eq!(bundle["number"]["masked"], "(•••) •••-5309");
    assert_eq!(bundle["organization"], "Lakeside Family Clinic");
    assert_eq!(bundle["programs"][0]["name"], "Lakeside Reminders");
    assert_eq!(bundle["generated_by"], "compliance");

    let bytes = verify::signed_bytes(&answer).unwrap();
    for at in [0, bytes.len() / 2, bytes.len() - 1] {
        let mut altered = bytes.clone();
        altered[at] ^= 0x20;
        assert!(verify::verify_bytes(&altered, &answer["signature"], &key).is_err(), "byte {at} changed");
    }
}

/// Runs `pdftotext -layout` (poppler-utils; `scripts/test` installs it):
/// missing, the test fails.
fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) must be installed: scripts/test installs it");
    assert!(out.status.success(), "pdftotext: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_pdf_shows_the_events_in_order_and_no_full_number() {
    let app = TestApp::spawn().await;
    seed(&app).await;

    let response = export(&app, Some(STAFF_KEY), Some("application/pdf"), PATIENT).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment; filename=\"evidence-") && disposition.ends_with(".pdf\""));
    let pdf = response.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let text = pdf_text(&pdf);
    for expected in ["Consent evidence bundle", "Lakeside Family Clinic", "Lakeside Reminders", "(•••) •••-5309"]
    {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    assert!(text.contains("Chain verification: intact"), "{text}");
    assert!(text.contains("form-2026-0042") && text.contains("text: \"STOP\""), "{text}");
    for full in [PATIENT, PATIENT.trim_start_matches("+1"), "867-5309", "8675309"] {
        assert!(!text.contains(full), "the full number {full} is in the PDF");
    }
    let table = &text[text.find("Events, oldest first").expect("the events table")..];
    let mut at = 0;
    for kind in KINDS {
        let found = table[at..].find(&format!(" {kind} ")).unwrap_or_else(|| panic!("{kind} not in order:\n{table}"));
        at += found + kind.len();
    }
}

#[tokio::test]
async fn an_export_is_in_the_audit_with_its_caller_and_needs_read_history() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let before = app.ledger_len(PATIENT).await;

    assert_problem(export(&app, Some(RECORD_ONLY_KEY), None, PATIENT).await, 403).await;
    assert_problem(export(&app, None, None, PATIENT).await, 401).await;
    assert_problem(export(&app, Some(STAFF_KEY), None, "555-0100").await, 400).await;
    assert_eq!(app.ledger_len(PATIENT).await, before, "a refused export changes nothing");
    // The number goes only in a body: there is no GET with it in the URL.
    let by_url = app.client.get(app.url(&format!("/v1/consents/evidence?to={PATIENT}"))).bearer_auth(STAFF_KEY);
    assert_problem(by_url.send().await.unwrap(), 405).await;

    assert_eq!(export(&app, Some(STAFF_KEY), Some("application/pdf"), PATIENT).await.status(), 200);

    let history: Value =
        app.api("/v1/consents/events", Some(STAFF_KEY), json!({ "to": PATIENT })).await.json().await.unwrap();
    let exports: Vec<&Value> =
        history["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "evidence_export").collect();
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0]["caller"], "compliance");
    assert_eq!(exports[0]["source"], "api");
}

//! The access report (`POST /v1/audit`, scope `audit`) and retention's
//! purge, over HTTP on the embedded store.

use std::sync::Arc;

use serde_json::{json, Value};
use sms_consent::ports::Clock;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::helpers::*;

fn rfc(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn pid_of(app: &TestApp, number: &str) -> String {
    app.server().state.service.crypto().blind_index(&sms_consent::domain::PhoneNumber::parse(number).unwrap())
}

/// The whole report of the last hour (and the next), every page.
async fn report(app: &TestApp, from: OffsetDateTime, to: OffsetDateTime) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let body = json!({ "from": rfc(from), "to": rfc(to), "page_token": token });
        let response = app.api("/v1/audit", Some(AUDIT_KEY), body).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(!text.contains("4158675309"), "no number in the report: {text}");
        let page: Value = serde_json::from_str(&text).unwrap();
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => return entries,
        }
    }
}

fn around_now() -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - time::Duration::hours(1), now + time::Duration::hours(1))
}

#[tokio::test]
async fn state_reads_history_reads_records_and_erasures_are_in_the_access_report_with_their_callers() {
    let app = TestApp::spawn().await;
    let record = json!({ "to": PATIENT, "program": "pharmacy", "kind": "express_written", "source": "web_form",
                         "captured_at": rfc(OffsetDateTime::now_utc()), "evidence": "form-1" });
    assert_eq!(app.api("/v1/consents", Some(RECORD_ONLY_KEY), record).await.status(), 201);
    assert_eq!(app.api("/v1/consents/state", Some(STAFF_KEY), json!({ "to": PATIENT })).await.status(), 200);
    assert_eq!(app.api("/v1/consents/events", Some(STAFF_KEY), json!({ "to": PATIENT })).await.status(), 200);
    assert_eq!(app.api("/v1/reviews", Some(REVIEW_KEY), json!({})).await.status(), 200);
    assert_eq!(app.api("/v1/consents/erasure", Some(STAFF_KEY), json!({ "to": PATIENT })).await.status(), 200);
    // An SMS is no caller's access: not in the report.
    assert_eq!(app.twilio_sms("SM1", NEIGHBOUR, CLINIC, "STOP").await.status(), 200);

    let (from, to) = around_now();
    let entries = report(&app, from, to).await;
    let seen: Vec<(&str, &str)> =
        entries.iter().map(|e| (e["kind"].as_str().unwrap(), e["caller"].as_str().unwrap())).collect();
    assert_eq!(
        seen,
        [
            ("consent_express_written", "front-desk"),
            ("state_read", "compliance"),
            ("history_read", "compliance"),
            ("erasure", "compliance")
        ]
    );
    let pid = pid_of(&app, PATIENT);
    assert!(entries.iter().all(|e| e["pid"] == pid.as_str()), "{entries:?}");
    assert_eq!(entries[0]["program"], "pharmacy");
    // The state read is in the number's ledger too, with its caller.
    let history: Value =
        app.api("/v1/consents/events", Some(STAFF_KEY), json!({ "to": PATIENT })).await.json().await.unwrap();
    let state_read = history["events"].as_array().unwrap().iter().find(|e| e["kind"] == "state_read").cloned();
    assert_eq!(state_read.unwrap()["caller"], "compliance");
    // Each entry names its ledger event.
    let ids: Vec<&str> =
        history["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert!(entries.iter().all(|e| ids.contains(&e["event_id"].as_str().unwrap())));
}

#[tokio::test]
async fn a_refused_state_read_is_not_disclosed_and_a_bad_number_records_nothing() {
    let app = TestApp::spawn().await;
    assert_problem(app.api("/v1/consents/state", Some(STAFF_KEY), json!({ "to": "555-0100" })).await, 400).await;
    assert_problem(app.api("/v1/consents/state", Some(AUDIT_KEY), json!({ "to": PATIENT })).await, 403).await;
    let (from, to) = around_now();
    assert!(report(&app, from, to).await.is_empty());
    assert_eq!(app.ledger_len(PATIENT).await, 0);
}

#[tokio::test]
async fn the_access_report_needs_the_audit_scope_and_takes_its_range_in_the_body() {
    let app = TestApp::spawn().await;
    let (from, to) = around_now();
    let body = json!({ "from": rfc(from), "to": rfc(to) });
    assert_problem(app.api("/v1/audit", None, body.clone()).await, 401).await;
    assert_problem(app.api("/v1/audit", Some("not-a-key"), body.clone()).await, 401).await;
    for key in [STAFF_KEY, AUTHORIZE_KEY, RECORD_ONLY_KEY, REVIEW_KEY] {
        let forbidden = assert_problem(app.api("/v1/audit", Some(key), body.clone()).await, 403).await;
        assert!(forbidden["detail"].as_str().unwrap().contains("audit"));
    }
    // The audit key reads the report and nothing else.
    assert_problem(app.api("/v1/consents/events", Some(AUDIT_KEY), json!({ "to": PATIENT })).await, 403).await;
    assert_eq!(app.api("/v1/audit", Some(AUDIT_KEY), body).await.status(), 200);
    // No route takes a number (or anything) in its URL: a GET is refused.
    let get = app.client.get(app.url("/v1/audit")).bearer_auth(AUDIT_KEY).send().await.unwrap();
    assert_problem(get, 405).await;
}

#[tokio::test]
async fn a_bad_range_or_page_token_is_a_400() {
    let app = TestApp::spawn().await;
    let now = OffsetDateTime::now_utc();
    let ask = |body: Value| app.api("/v1/audit", Some(AUDIT_KEY), body);
    let cases = [
        json!({ "from": rfc(now), "to": rfc(now) }),
        json!({ "from": rfc(now), "to": rfc(now - time::Duration::hours(1)) }),
        json!({ "from": rfc(now - time::Duration::days(32)), "to": rfc(now) }),
        json!({ "from": "yesterday", "to": rfc(now) }),
        json!({ "from": rfc(now - time::Duration::days(1)) }),
        json!({ "from": rfc(now - time::Duration::days(1)), "to": rfc(now), "page_token": "%%%" }),
        json!({ "from": rfc(now - time::Duration::days(1)), "to": rfc(now), "page_token": "RVZFTlQjeA" }),
        json!({ "from": rfc(now - time::Duration::days(1)), "to": rfc(now), "extra": 1 }),
    ];
    for body in cases {
        assert_problem(ask(body.clone()).await, 400).await;
    }
    // 31 days exactly is a report.
    assert_eq!(ask(json!({ "from": rfc(now - time::Duration::days(31)), "to": rfc(now) })).await.status(), 200);
    // A token of another range is refused.
    for _ in 0..101 {
        app.api("/v1/consents/state", Some(STAFF_KEY), json!({ "to": PATIENT })).await;
    }
    let (from, to) = around_now();
    let page: Value = ask(json!({ "from": rfc(from), "to": rfc(to) })).await.json().await.unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 100);
    let token = page["next_page_token"].as_str().unwrap();
    let elsewhere = json!({ "from": rfc(to), "to": rfc(to + time::Duration::days(1)), "page_token": token });
    assert_problem(ask(elsewhere).await, 400).await;
    assert_eq!(report(&app, from, to).await.len(), 101);
}

/// A clock eight years ahead: what the purge command sees in 2034.
struct Later(time::Duration);

impl Clock for Later {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.0
    }
}

#[tokio::test]
async fn a_purge_keeps_the_latest_opt_out_the_ledger_verifies_and_the_purge_is_in_the_access_report() {
    let config = format!("{}\n[retention]\nevents_years = 7\n", config_text());
    let mut app = TestApp::spawn_with(&config).await;
    for (sid, text) in [("SM1", "START"), ("SM2", "HELP"), ("SM3", "STOP"), ("SM4", "HELP")] {
        assert_eq!(app.twilio_sms(sid, PATIENT, CLINIC, text).await.status(), 200);
    }
    assert_eq!(app.ledger_len(PATIENT).await, 4);
    app.stop().await;

    // The tools' config: the server's, with its data directory.
    let tool_config = app.dir.path().join("purge.toml");
    let data_dir = app.data_dir().display().to_string();
    std::fs::write(&tool_config, format!("[server]\ndata_dir = {data_dir:?}\n\n{config}")).unwrap();
    // Today nothing is seven years old: the command purges nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sms-consent"))
        .args(["purge", "--dry-run", "--config"])
        .arg(&tool_config)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(printed.contains("would purge 0 events of 0 numbers (1 walked)"), "{printed}");

    let later = time::Duration::days(8 * 366);
    let options =
        sms_consent::runtime::verify::PurgeOptions { dry_run: false, operator: "records-officer".into(), rate: 100.0 };
    let purged = sms_consent::runtime::verify::purge(&tool_config, &options, Arc::new(Later(later))).await.unwrap();
    assert_eq!((purged.purged_numbers, purged.events_purged), (1, 2), "the HELPs; not the anchor, not the STOP");
    let verified = sms_consent::runtime::verify::verify_ledger(&tool_config, 100.0, &|_, _| {}).await.unwrap();
    assert!(verified.intact(), "{verified:?}");

    app.restart().await;
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(app.ledger_len(PATIENT).await, 3, "START, STOP and the purge");
    let at = OffsetDateTime::now_utc() + later;
    let entries = report(&app, at - time::Duration::days(1), at + time::Duration::days(1)).await;
    assert!(entries.iter().any(|e| e["kind"] == "purge" && e["caller"] == "records-officer"), "{entries:?}");
    // Without [retention] nothing is purged: the command says so (exit 2).
    app.stop().await;
    std::fs::write(&tool_config, format!("[server]\ndata_dir = {data_dir:?}\n\n{}", config_text())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sms-consent"))
        .args(["purge", "--config"])
        .arg(&tool_config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("retention.events_years is not set"));
}

#[tokio::test]
async fn evidence_exports_and_review_decisions_are_in_the_access_report_with_their_callers() {
    let app = TestApp::spawn().await;
    assert_eq!(app.standard_sms("msg-1", PATIENT, CLINIC, "How do I stop these", None).await.status(), 200);
    let page: Value = app.api("/v1/reviews", Some(REVIEW_KEY), json!({})).await.json().await.unwrap();
    let event_id = page["reviews"][0]["event_id"].as_str().unwrap().to_owned();
    let decision = json!({ "event_id": event_id, "decision": "not_revocation" });
    assert_eq!(app.api("/v1/reviews/resolve", Some(REVIEW_KEY), decision).await.status(), 200);
    assert_eq!(app.api("/v1/consents/evidence", Some(STAFF_KEY), json!({ "to": PATIENT })).await.status(), 200);

    let (from, to) = around_now();
    let entries = report(&app, from, to).await;
    let seen: Vec<(&str, &str)> =
        entries.iter().map(|e| (e["kind"].as_str().unwrap(), e["caller"].as_str().unwrap())).collect();
    assert_eq!(
        seen,
        [("review_read", "review-desk"), ("not_revocation", "review-desk"), ("evidence_export", "compliance")]
    );
    let pid = pid_of(&app, PATIENT);
    assert!(entries.iter().all(|e| e["pid"] == pid.as_str()), "{entries:?}");
}

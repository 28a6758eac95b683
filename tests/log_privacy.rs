//! Promise 4 for logs: capture everything the service logs, at every level,
//! while it handles real traffic, and find no phone number or message text.

#[path = "api/helpers.rs"]
mod helpers;

use std::io::Write;
use std::sync::{Arc, Mutex};

use helpers::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_no_phone_number_or_message_text() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt().json().with_max_level(tracing::Level::TRACE).with_writer(move || writer.clone()).init();

    // Telnyx's send API, faked: it refuses the first reply with an error
    // text that quotes the number (as providers' texts do), accepts the next.
    let answers = Arc::new(Mutex::new(vec![
        (
            400,
            format!(r#"{{"errors":[{{"code":"40310","title":"Invalid to number","detail":"{PATIENT} is invalid"}}]}}"#),
        ),
        (200, r#"{"data":{"id":"m-2"}}"#.to_owned()),
    ]));
    let api = axum::Router::new().route(
        "/v2/messages",
        axum::routing::post(move || {
            let answers = answers.clone();
            async move {
                let mut answers = answers.lock().unwrap();
                let (status, body) = if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() };
                (axum::http::StatusCode::from_u16(status).unwrap(), body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v2", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    let config = config_text().replace(
        "[providers.telnyx]\n",
        &format!("[outbox]\npoll_interval_ms = 50\n\n[providers.telnyx.send]\napi_key = \"k\"\nbase_url = \"{base}\"\n\n[providers.telnyx]\n"),
    );
    let mut app = TestApp::spawn_with(&config).await;
    // One at a time: a STOP arriving before the HELP's reply went out would
    // rightly supersede it.
    let logged = |what: &str| String::from_utf8_lossy(&captured.0.lock().unwrap()).contains(what);
    let wait_for = |what: &'static str| async move {
        for _ in 0..100 {
            if logged(what) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    app.telnyx_sms("tx-1", PATIENT, CLINIC, "HELP me please").await;
    wait_for("reply refused by the provider").await;
    app.telnyx_sms("tx-2", PATIENT, CLINIC, "stop texting me now").await;
    wait_for("reply sent").await;
    app.twilio_sms("SM0001", PATIENT, CLINIC, "Stop. Thank you").await;
    app.twilio_sms("SM0001", PATIENT, CLINIC, "Stop. Thank you").await;
    app.twilio_sms("SM0002", PATIENT, UNOWNED, "please stop texting me").await;
    app.twilio_sms("SM0003", PATIENT, CLINIC, "Can I stop by at 3?").await;
    app.standard_sms("msg_1", PATIENT, PHARMACY, "Unsubscribe", None).await;
    app.twilio_raw(&twilio_params("SM0004", PATIENT, CLINIC, "START"), Some("AAAA")).await;
    app.twilio_sms("SM0005", "nonsense-number", CLINIC, "STOP").await;
    app.decision(PATIENT, "clinic", "billing").await;
    app.decision("+1 415 867 5309", "clinic", "billing").await;
    app.decision(PATIENT, "+14152095590 STOP", "billing").await;
    // The preference page: a link made, opened, tampered with, posted to
    // without its form; the token is a credential and never logged.
    let made = app
        .api("/v1/preference-links", Some(RECORD_ONLY_KEY), serde_json::json!({"to": PATIENT, "program": "clinic"}))
        .await;
    assert_eq!(made.status(), 201);
    let url = made.json::<serde_json::Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    let token = url.rsplit_once("/p/").unwrap().1.to_owned();
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
    let tampered = format!("{}{}", &url[..url.len() - 1], if url.ends_with('A') { "B" } else { "A" });
    assert_eq!(app.client.get(&tampered).send().await.unwrap().status(), 404);
    assert_eq!(
        app.client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("choice=stop_all")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    app.stop().await;
    tamper(&app);
    app.restart().await;
    app.decision(PATIENT, "clinic", "billing").await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("consent event recorded"), "the capture saw the service's logs");
    assert!(logs.contains("preference link made"), "and the preference page's");
    assert!(!logs.contains(&token) && !logs.contains(&token[..12]), "the link's token appeared in the logs");
    assert!(logs.contains("integrity"), "the integrity alarm was logged");
    assert!(
        logs.contains("no send table: this provider's replies will wait in the outbox") && logs.contains("\"vonage\""),
        "one warning at start for a provider whose replies will wait"
    );
    let worker_lines: Vec<&str> = logs.lines().filter(|l| l.contains("reply") || l.contains("outbox")).collect();
    assert!(
        logs.contains("reply refused by the provider") && logs.contains("reply sent"),
        "the worker's logs too: {worker_lines:#?}"
    );
    for needle in [
        "4158675309",
        "867 5309",
        "4155550100",
        "4155550999",
        "4155550200",
        "Thank you",
        "texting me",
        "stop by",
        "Unsubscribe",
        "nonsense-number",
        "4152095590",
        "HELP me",
        "texting me now",
    ] {
        assert!(!logs.contains(needle), "{needle:?} appeared in the logs");
    }
}

fn tamper(app: &TestApp) {
    use redb::{Database, ReadableTable, TableDefinition};
    const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");
    let db = Database::open(app.data_dir().join("ledger.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(ITEMS).unwrap();
        let states: Vec<(String, Vec<u8>)> = table
            .iter()
            .unwrap()
            .map(Result::unwrap)
            .filter(|(k, _)| k.value().1 == "STATE")
            .map(|(k, v)| (k.value().0.to_owned(), v.value().to_vec()))
            .collect();
        for (pk, value) in states {
            let edited = String::from_utf8(value).unwrap().replace("\"opt_out\"", "\"opt_in\"");
            table.insert((pk.as_str(), "STATE"), edited.as_bytes()).unwrap();
        }
    }
    txn.commit().unwrap();
}

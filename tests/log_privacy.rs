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

    let mut app = TestApp::spawn().await;
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
    app.stop().await;
    tamper(&app);
    app.restart().await;
    app.decision(PATIENT, "clinic", "billing").await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("consent event recorded"), "the capture saw the service's logs");
    assert!(logs.contains("integrity"), "the integrity alarm was logged");
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

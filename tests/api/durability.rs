use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use crate::helpers::*;

#[tokio::test]
async fn acknowledged_changes_survive_a_restart() {
    let mut app = TestApp::spawn().await;
    app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await;
    app.twilio_sms("SM0002", PATIENT, PHARMACY, "START").await;

    app.restart().await;

    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason(PATIENT, "pharmacy", "refills").await, "allowed");
    // The same delivery after a restart is still recognised.
    let again = app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await.text().await.unwrap();
    assert!(!again.contains("<Message>"));
    assert_eq!(app.ledger_len(PATIENT).await, 2);
}

const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");

/// Rewrites every STATE item in the embedded store, bypassing the service.
fn tamper_with_states(data_dir: &Path, edit: impl Fn(&str) -> String) -> usize {
    let db = Database::open(data_dir.join("ledger.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    let mut changed = 0;
    {
        let mut table = txn.open_table(ITEMS).unwrap();
        let states: Vec<(String, String)> = table
            .iter()
            .unwrap()
            .map(Result::unwrap)
            .filter(|(k, _)| k.value().1 == "STATE")
            .map(|(k, v)| (k.value().0.to_owned(), String::from_utf8(v.value().to_vec()).unwrap()))
            .collect();
        for (pk, json) in states {
            let edited = edit(&json);
            assert_ne!(edited, json, "the tamper must change the item");
            table.insert((pk.as_str(), "STATE"), edited.as_bytes()).unwrap();
            changed += 1;
        }
    }
    txn.commit().unwrap();
    changed
}

#[tokio::test]
async fn an_opt_out_flipped_in_the_store_denies_as_unavailable() {
    let mut app = TestApp::spawn().await;
    app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await;
    app.stop().await;

    let changed = tamper_with_states(&app.data_dir(), |json| json.replace("\"opt_out\"", "\"opt_in\""));
    app.restart().await;

    assert_eq!(changed, 1);
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "unavailable");
    assert_eq!(app.server().state.service.counters.integrity_alarms.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn no_number_or_message_text_is_written_in_plaintext() {
    let mut app = TestApp::spawn().await;
    let texts = ["Stop. Thank you", "please stop texting me", "START", "HELP", "STOP ALL"];
    for (i, text) in texts.iter().enumerate() {
        app.twilio_sms(&format!("SM000{i}"), PATIENT, CLINIC, text).await;
    }
    app.standard_sms("msg_1", "+14158675310", UNOWNED, "Unsubscribe", None).await;
    app.stop().await;

    let mut haystack = Vec::new();
    for entry in std::fs::read_dir(app.data_dir()).unwrap() {
        haystack.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let haystack = String::from_utf8_lossy(&haystack);
    for needle in
        ["4158675309", "4158675310", "4155550100", "4155550999", "Thank you", "texting me", "Unsubscribe", "STOP ALL"]
    {
        assert!(!haystack.contains(needle), "{needle:?} found in plaintext in the data directory");
    }
}

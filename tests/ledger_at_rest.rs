//! The embedded ledger at rest: a start on a damaged or half-missing data
//! directory refuses clearly and changes nothing, and an erasure leaves no
//! old value in the file.

#[path = "api/helpers.rs"]
mod helpers;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use helpers::*;
use redb::{Database, ReadableTable, TableDefinition};
use sms_consent::adapters::embedded::EmbeddedStore;
use sms_consent::ports::SystemClock;
use sms_consent::runtime::local::{self, Options};

const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");

/// Every file of the directory with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// A data directory that recorded opt-outs, with the server stopped.
async fn used_data_dir() -> TestApp {
    let mut app = TestApp::spawn().await;
    for i in 0..10 {
        app.twilio_sms(&format!("SM{i:04}"), &format!("+1415867{i:04}"), CLINIC, "STOP").await;
    }
    app.stop().await;
    app
}

async fn start_error(app: &TestApp) -> String {
    let started = local::start(
        Options {
            config: Some(app.config_path.clone()),
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(app.data_dir()),
            sns_network: None,
        },
        Arc::new(SystemClock),
    )
    .await;
    match started {
        Ok(_) => panic!("the server started on a damaged data directory"),
        Err(e) => e.to_string(),
    }
}

async fn assert_refuses(app: &TestApp, names: &str) {
    assert_refuses_keeping(app, names, true).await;
}

/// `exact`: every file keeps its bytes; otherwise the same files stay and
/// the keyring keeps its bytes (opening a redb file touches its header).
async fn assert_refuses_keeping(app: &TestApp, names: &str, exact: bool) {
    let before = snapshot(&app.data_dir());
    let message = start_error(app).await;
    assert!(message.contains(names), "{message}");
    assert!(message.contains("backup") && message.contains("move the whole data directory aside"), "{message}");
    let after = snapshot(&app.data_dir());
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "files were created or removed");
    assert!(after.get("keyring.json") == before.get("keyring.json"), "the keyring changed");
    if exact {
        assert!(after == before, "a refused start changed the data directory");
    }
}

#[tokio::test]
async fn a_keyring_without_its_ledger_refuses_to_start() {
    let app = used_data_dir().await;
    std::fs::remove_file(app.data_dir().join("ledger.redb")).unwrap();
    assert_refuses(&app, "ledger.redb is missing").await;
}

#[tokio::test]
async fn an_empty_ledger_refuses_to_start() {
    let app = used_data_dir().await;
    std::fs::write(app.data_dir().join("ledger.redb"), b"").unwrap();
    assert_refuses(&app, "ledger.redb is empty").await;
}

#[tokio::test]
async fn a_ledger_without_its_keyring_refuses_to_start_and_makes_no_keyring() {
    let app = used_data_dir().await;
    std::fs::remove_file(app.data_dir().join("keyring.json")).unwrap();
    assert_refuses(&app, "keyring.json is missing").await;
    assert!(!app.data_dir().join("keyring.json").exists());
}

#[tokio::test]
async fn a_ledger_without_its_keys_item_refuses_to_start() {
    let app = used_data_dir().await;
    let db = Database::open(app.data_dir().join("ledger.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(ITEMS).unwrap().remove(("KEYRING", "v1")).unwrap();
    txn.commit().unwrap();
    drop(db);
    assert_refuses_keeping(&app, "holds no index and integrity keys", false).await;
}

#[tokio::test]
async fn a_whole_data_directory_still_starts_and_keeps_its_opt_outs() {
    let mut app = used_data_dir().await;
    app.restart().await;
    assert_eq!(app.reason("+14158670003", "clinic", "billing").await, "opted_out");
}

/// Cuts the ledger to half its length.
fn truncate_ledger(dir: &Path) {
    let path = dir.join("ledger.redb");
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
}

#[tokio::test]
async fn a_truncated_ledger_is_an_error_naming_the_file() {
    let app = used_data_dir().await;
    truncate_ledger(&app.data_dir());
    let error = EmbeddedStore::open(&app.data_dir()).err().expect("a truncated ledger does not open");
    let message = error.to_string();
    assert!(message.contains(&app.data_dir().join("ledger.redb").display().to_string()), "{message}");
    assert!(message.contains("truncated") && message.contains("backup"), "{message}");
    assert_refuses(&app, "truncated").await;
}

#[tokio::test]
async fn serve_on_a_truncated_ledger_exits_with_a_message_and_no_panic() {
    let app = used_data_dir().await;
    truncate_ledger(&app.data_dir());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sms-consent"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&app.config_path)
        .arg("--data-dir")
        .arg(app.data_dir())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("ledger.redb is damaged (truncated"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
}

/// Every `v1.` sealed token in some bytes.
fn sealed_tokens(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let token = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    text.match_indices("v1.")
        .map(|(at, _)| text[at..].chars().take_while(|c| token(*c)).collect::<String>())
        .filter(|t| t.split('.').count() == 3)
        .collect()
}

#[tokio::test]
async fn an_erased_text_is_gone_from_the_ledger_file() {
    let text = "Stop. Thank you";
    let mut app = TestApp::spawn().await;
    app.twilio_sms("SM0001", PATIENT, CLINIC, text).await;
    app.twilio_sms("SM0002", "+14158675310", CLINIC, "STOP").await;
    app.stop().await;
    let sealed = {
        let db = Database::open(app.data_dir().join("ledger.redb")).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(ITEMS).unwrap();
        let events: Vec<serde_json::Value> = table
            .iter()
            .unwrap()
            .map(Result::unwrap)
            .filter(|(k, _)| k.value().1.starts_with("EVENT#"))
            .map(|(_, v)| serde_json::from_slice(v.value()).unwrap())
            .collect();
        events.iter().filter_map(|e| e["text"].as_str()).map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(sealed.len(), 2);
    app.restart().await;
    let service = &app.server().state.service;
    let opened = service.history(PATIENT, None, "dpo").await.unwrap().0;
    assert!(opened.iter().any(|e| e.text.as_deref() == Some(text)));
    assert_eq!(service.erase(PATIENT, "dpo").await.unwrap(), 1);

    let bytes = std::fs::read(app.data_dir().join("ledger.redb")).unwrap();
    let haystack = String::from_utf8_lossy(&bytes);
    assert!(!haystack.contains("Thank you"));
    let pid = service.crypto().blind_index(&sms_consent::domain::PhoneNumber::parse(PATIENT).unwrap());
    let patient_sealed: Vec<&String> = sealed
        .iter()
        .filter(|s| opened.iter().any(|e| e.event.pid == pid && e.event.text.as_deref() == Some(s.as_str())))
        .collect();
    assert_eq!(patient_sealed.len(), 1);
    assert!(!haystack.contains(patient_sealed[0].as_str()), "the erased sealed text is still in the file");
    // No sealed value left in the file opens to the erased text, for any record of the number.
    let events = service.events(&sms_consent::domain::PhoneNumber::parse(PATIENT).unwrap()).await.unwrap();
    let pk = format!("PHONE#{pid}");
    let tokens = sealed_tokens(&bytes);
    assert!(!tokens.is_empty(), "the other number's text is still sealed in the file");
    for token in &tokens {
        for sk in events.iter().map(|e| e.sort_key()).chain(["STATE".to_owned()]) {
            for attribute in ["text", "evidence", "phone", "to", "from"] {
                if let Ok(plain) = service.crypto().open(token, &pk, &sk, attribute).await {
                    assert_ne!(plain, text);
                }
            }
        }
    }
    // The store still works on the compacted file, and after a restart.
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    app.restart().await;
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason("+14158675310", "clinic", "billing").await, "opted_out");
}

/// `sms-consent verify-ledger` on the data directory (server stopped):
/// its exit status and everything it printed.
fn verify_ledger(app: &TestApp) -> (Option<i32>, String) {
    let config = app.dir.path().join("verify.toml");
    let original = std::fs::read_to_string(&app.config_path).unwrap();
    let data_dir = app.data_dir().display().to_string();
    std::fs::write(&config, format!("[server]\ndata_dir = {data_dir:?}\n\n{original}")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sms-consent"))
        .args(["verify-ledger", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), printed)
}

#[tokio::test]
async fn verify_ledger_exits_0_intact_1_on_a_deleted_event_2_when_it_cannot_run_and_prints_no_number() {
    let mut app = used_data_dir().await;
    let (code, printed) = verify_ledger(&app);
    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.contains("verified 10 numbers, 10 events: intact"), "{printed}");

    // A STOP deleted from the file, behind the service's back.
    let (pk, sk) = {
        let db = Database::open(app.data_dir().join("ledger.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let key = {
            let mut table = txn.open_table(ITEMS).unwrap();
            let key = table
                .iter()
                .unwrap()
                .map(Result::unwrap)
                .map(|(k, _)| (k.value().0.to_owned(), k.value().1.to_owned()))
                .find(|(pk, sk)| pk.starts_with("PHONE#") && sk.starts_with("EVENT#"))
                .unwrap();
            table.remove((key.0.as_str(), key.1.as_str())).unwrap();
            key
        };
        txn.commit().unwrap();
        key
    };
    let pid = pk.trim_start_matches("PHONE#");
    let (code, printed) = verify_ledger(&app);
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains(&format!("broken {pid}: event seq 1 is missing (deleted)")), "{printed}");
    assert!(printed.contains(&format!("quarantined {pid}")), "{printed}");
    assert!(printed.contains("verified 10 numbers, 9 events: 1 broken"), "{printed}");
    for i in 0..10 {
        let number = format!("415867{i:04}");
        assert!(!printed.contains(&number), "a phone number in the output: {printed}");
    }
    assert!(!printed.contains(&sk), "the event's key names no number either");

    // The quarantined number denies at authorization, over HTTP; the others do not.
    app.restart().await;
    let mut unavailable = 0;
    for i in 0..10 {
        let decision = app.decision(&format!("+1415867{i:04}"), "clinic", "billing").await;
        match decision["reason"].as_str() {
            Some("unavailable") => unavailable += 1,
            other => assert_eq!(other, Some("opted_out")),
        }
    }
    assert_eq!(unavailable, 1);
    app.stop().await;

    // No ledger there: it creates none and says so.
    std::fs::rename(app.data_dir(), app.dir.path().join("moved")).unwrap();
    let (code, printed) = verify_ledger(&app);
    assert_eq!(code, Some(2), "{printed}");
    assert!(printed.contains("no ledger to verify"), "{printed}");
    assert!(!app.data_dir().join("ledger.redb").exists());
}

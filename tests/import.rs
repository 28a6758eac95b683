//! `sms-consent import` and `export`: every format from a sample that
//! follows its documentation (`tests/fixtures/import/`), idempotent re-runs,
//! strict mode, event-time merging against the ledger, the export's round
//! trip and audit entry, a resume after `kill -9` that ends with the ledger
//! of an uninterrupted run, and both stores (DynamoDB on moto).

#[path = "api/helpers.rs"]
mod helpers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use helpers::*;
use serde_json::{json, Value};
use sms_consent::ports::{ConsentStore, ScanOptions};
use sms_consent::runtime::import::{read_items, Format, Item};

/// The binary under test. (`SMS_CONSENT_TEST_BIN` may name a copy of it:
/// builds of other branches sharing a target directory replace the file.)
fn bin() -> PathBuf {
    std::env::var_os("SMS_CONSENT_TEST_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sms-consent")), PathBuf::from)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import").join(name)
}

/// A stopped server's data directory and a tool config pointing at it.
struct Ledger {
    app: TestApp,
    config: PathBuf,
}

impl Ledger {
    async fn new() -> Self {
        let mut app = TestApp::spawn().await;
        app.stop().await;
        let config = app.dir.path().join("tools.toml");
        let data_dir = app.data_dir().display().to_string();
        std::fs::write(&config, format!("[server]\ndata_dir = {data_dir:?}\n\n{}", config_text())).unwrap();
        Ledger { app, config }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(bin()).args(args).arg("--config").arg(&self.config).output().unwrap()
    }

    fn import(&self, format: &str, path: &Path, more: &[&str]) -> Output {
        let mut args = vec!["import", "--format", format];
        args.extend_from_slice(more);
        let path = path.display().to_string();
        args.push(&path);
        self.run(&args)
    }

    /// The exported CSV's data rows, sorted.
    fn export(&self, more: &[&str]) -> Vec<String> {
        let mut args = vec!["export", "--opted-out", "--operator", "records-officer"];
        args.extend_from_slice(more);
        let out = self.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.first().is_some_and(|l| l.starts_with("number,")) {
            lines.remove(0);
        }
        lines.sort();
        lines
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn rows(format: Format, name: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let file = std::fs::File::open(fixture(name)).unwrap();
    read_items(format, file, &mut |item| {
        items.push(item);
        true
    })
    .unwrap();
    items
}

fn numbers(items: &[Item]) -> Vec<(u64, String, Option<String>)> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Row(row) => Some((row.index, row.number.clone(), row.opted_out_at.map(|t| t.to_string()))),
            _ => None,
        })
        .collect()
}

#[test]
fn each_format_reads_its_documented_sample() {
    let csv = rows(Format::Csv, "optouts.csv");
    assert_eq!(csv.len(), 4);
    let Item::Row(first) = &csv[0] else { panic!("{csv:?}") };
    assert_eq!(first.number, "+14158670001");
    assert_eq!(first.note.as_deref(), Some("front desk binder"));
    let Item::Row(third) = &csv[2] else { panic!() };
    assert_eq!((third.program.as_deref(), third.categories.clone()), (Some("pharmacy"), vec!["refills".to_owned()]));
    let Item::Row(fourth) = &csv[3] else { panic!() };
    assert_eq!(fourth.note.as_deref(), Some("spreadsheet, tab \"STOP\""));
    assert_eq!(fourth.opted_out_at.unwrap().unix_timestamp(), 1642264200);

    // Two pages concatenated: the entries of both, in order.
    let aws = numbers(&rows(Format::Aws, "aws-pages.json"));
    let expected: Vec<(u64, &str)> = vec![(1, "+14158670011"), (2, "+14158670012"), (3, "+14158670013")];
    assert_eq!(aws.iter().map(|(i, n, _)| (*i, n.as_str())).collect::<Vec<_>>(), expected);
    assert!(aws.iter().all(|(_, _, at)| at.is_some()), "{aws:?}");
    let lines = numbers(&rows(Format::Aws, "aws-lines.jsonl"));
    assert_eq!(lines.iter().map(|(_, n, _)| n.as_str()).collect::<Vec<_>>(), ["+14158670014", "+14158670015"]);

    let telnyx = numbers(&rows(Format::Telnyx, "telnyx.json"));
    assert_eq!(telnyx.iter().map(|(_, n, _)| n.as_str()).collect::<Vec<_>>(), ["+14158670021", "+14158670022"]);

    // The inbound STOP and "unsubscribe"; the reminder and the HELP are not opt-outs.
    let twilio = rows(Format::Twilio, "twilio-messages.csv");
    assert_eq!(
        numbers(&twilio).iter().map(|(i, n, _)| (*i, n.as_str())).collect::<Vec<_>>(),
        [(1, "+14158670031"), (3, "+14158670032")]
    );
    assert_eq!(twilio.iter().filter(|i| matches!(i, Item::Skip { .. })).count(), 2);
}

#[test]
fn a_json_array_is_streamed_entry_by_entry_and_a_broken_document_is_an_error_after_the_good_entries() {
    let text = r#"{"OptedOutNumbers":[{"OptedOutNumber":"+14158670011","OptedOutTimestamp":1},{"OptedOutNumber":5},"#;
    let mut items = Vec::new();
    let error = read_items(Format::Aws, text.as_bytes(), &mut |item| {
        items.push(item);
        true
    })
    .unwrap_err();
    assert!(error.contains("after entry 2"), "{error}");
    assert!(matches!(&items[0], Item::Row(row) if row.number == "+14158670011"));
    assert!(matches!(&items[1], Item::Bad { line: 2, why, .. } if why.contains("OptedOutNumber")), "{items:?}");
}

#[test]
fn a_json_error_names_its_place_never_the_value_and_national_numbers_are_guarded() {
    // JSON lines holding bare numbers: serde_json's own message would quote one.
    let text = "\"+14158670012\"\n";
    let error = read_items(Format::Aws, text.as_bytes(), &mut |_| true).unwrap_err();
    assert!(error.contains("line 1") && !error.contains("4158670012"), "{error}");
    let us = Some(phonenumber::country::Id::US);
    assert!(sms_consent::service::import::parse_number("(415) 867-0013", us).is_ok());
    for bad in ["4158670013x", "", &"4".repeat(41), "415\u{0}8670013"] {
        assert!(sms_consent::service::import::parse_number(bad, us).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn every_format_imports_into_the_ledger_and_authorization_denies() {
    let mut ledger = Ledger::new().await;
    let out = ledger.import("csv", &fixture("optouts.csv"), &["--default-country", "US"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("4 rows read, 4 recorded"), "{}", stdout(&out));
    for (format, file, recorded) in [
        ("aws", "aws-pages.json", "3 recorded"),
        ("aws", "aws-lines.jsonl", "2 recorded"),
        ("telnyx", "telnyx.json", "2 recorded"),
        ("twilio", "twilio-messages.csv", "2 recorded, 0 already there, 2 skipped"),
    ] {
        let out = ledger.import(format, &fixture(file), &[]);
        assert_eq!(out.status.code(), Some(0), "{format}: {}{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains(recorded), "{format}: {}", stdout(&out));
    }
    ledger.app.restart().await;
    let app = &ledger.app;
    // Every program (no program given), one program, one category.
    assert_eq!(app.reason("+14158670001", "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason("+14158670001", "pharmacy", "refills").await, "opted_out");
    assert_eq!(app.reason("+14158670002", "clinic", "billing").await, "opted_out");
    assert_eq!(app.reason("+14158670002", "pharmacy", "refills").await, "no_consent");
    assert_eq!(app.reason("+14158670003", "pharmacy", "refills").await, "opted_out");
    assert_eq!(app.reason("+14158670003", "clinic", "billing").await, "allowed");
    for number in ["+14158670004", "+14158670011", "+14158670015", "+14158670022", "+14158670032"] {
        assert_eq!(app.reason(number, "clinic", "appointment_reminders").await, "opted_out", "{number}");
    }
    // The HELP in the Twilio log was not an opt-out.
    assert_eq!(app.reason("+14158670033", "clinic", "billing").await, "allowed");
    // The file's name and row are sealed in the event; the source is `import`.
    let phone = sms_consent::domain::PhoneNumber::parse("+14158670001").unwrap();
    let events = app.server().state.service.events(&phone).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].source.as_str(), events[0].kind.as_str()), ("import", "opt_out"));
    assert!(events[0].event_id.starts_with("import:") && events[0].event_id.ends_with(":1"), "{:?}", events[0]);
    assert!(!events[0].evidence.as_deref().unwrap().contains("optouts.csv"), "sealed, not plain");
}

#[tokio::test]
async fn running_the_same_file_again_records_nothing() {
    let mut ledger = Ledger::new().await;
    let first = ledger.import("aws", &fixture("aws-pages.json"), &[]);
    assert!(stdout(&first).contains("3 recorded, 0 already there"), "{}", stdout(&first));
    let again = ledger.import("aws", &fixture("aws-pages.json"), &[]);
    assert_eq!(again.status.code(), Some(0));
    assert!(stdout(&again).contains("0 recorded, 3 already there"), "{}", stdout(&again));
    ledger.app.restart().await;
    assert_eq!(ledger.app.ledger_len("+14158670011").await, 1);
}

#[tokio::test]
async fn bad_rows_are_reported_by_line_and_skipped_and_strict_writes_nothing() {
    let mut ledger = Ledger::new().await;
    let file = ledger.app.dir.path().join("mixed.csv");
    std::fs::write(
        &file,
        "number,opted_out_at,program\n+14158670101,,\nnot a number,,\n+14158670102,yesterday,\n\
         +14158670103,,dentistry\n4158670104,,\n+14158670105,2023-01-01,clinic\n",
    )
    .unwrap();
    let strict = ledger.import("csv", &file, &["--strict"]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(stdout(&strict).contains("4 bad rows; nothing was written"), "{}", stdout(&strict));
    let errors = stderr(&strict);
    for expected in [
        "line 3: number",
        "line 4: opted_out_at",
        "line 5: program: not the id of a configured program",
        "line 6: number",
        "--default-country",
    ] {
        assert!(errors.contains(expected), "{expected}: {errors}");
    }
    assert!(!errors.contains("415867"), "no number in the messages: {errors}");
    ledger.app.restart().await;
    assert_eq!(ledger.app.reason("+14158670101", "clinic", "billing").await, "allowed", "strict wrote nothing");
    ledger.app.stop().await;

    let lenient = ledger.import("csv", &file, &[]);
    assert_eq!(lenient.status.code(), Some(1), "bad rows: exit 1");
    assert!(stdout(&lenient).contains("6 rows read, 2 recorded, 0 already there, 0 skipped (not opt-outs), 4 errors"));
    ledger.app.restart().await;
    assert_eq!(ledger.app.reason("+14158670101", "clinic", "billing").await, "opted_out");
    assert_eq!(ledger.app.reason("+14158670105", "clinic", "billing").await, "opted_out");
    assert_eq!(ledger.app.reason("+14158670105", "pharmacy", "refills").await, "no_consent");
}

#[tokio::test]
async fn a_corrected_file_does_not_record_its_opt_outs_again_over_a_later_opt_in() {
    let mut ledger = Ledger::new().await;
    // A list without times: each row at the import's time.
    let file = ledger.app.dir.path().join("list.csv");
    std::fs::write(&file, format!("number\n{PATIENT}\nnot a number\n")).unwrap();
    assert_eq!(ledger.import("csv", &file, &[]).status.code(), Some(1), "one bad row");
    ledger.app.restart().await;
    assert_eq!(ledger.app.reason(PATIENT, "clinic", "billing").await, "opted_out");
    // The patient opts in again by text, after the import.
    assert_eq!(ledger.app.twilio_sms("SM9", PATIENT, CLINIC, "START").await.status(), 200);
    assert_eq!(ledger.app.reason(PATIENT, "clinic", "billing").await, "allowed");
    let events = ledger.app.ledger_len(PATIENT).await;
    ledger.app.stop().await;
    // The file is corrected (another digest) and imported again: the row
    // that was already recorded is a duplicate, not a new opt-out at this
    // run's time that would override the START.
    std::fs::write(&file, format!("number\n{PATIENT}\n{NEIGHBOUR}\n")).unwrap();
    let out = ledger.import("csv", &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 recorded, 1 already there"), "{}", stdout(&out));
    ledger.app.restart().await;
    assert_eq!(ledger.app.reason(PATIENT, "clinic", "billing").await, "allowed", "the START stands");
    assert_eq!(ledger.app.ledger_len(PATIENT).await, events, "nothing recorded again");
    assert_eq!(ledger.app.reason(NEIGHBOUR, "clinic", "billing").await, "opted_out");
}

#[tokio::test]
async fn a_newer_opt_in_in_the_ledger_survives_an_older_imported_opt_out() {
    let mut ledger = Ledger::new().await;
    ledger.app.restart().await;
    // The patient texts STOP then START today: opted in again.
    assert_eq!(ledger.app.twilio_sms("SM1", PATIENT, CLINIC, "STOP").await.status(), 200);
    assert_eq!(ledger.app.twilio_sms("SM2", PATIENT, CLINIC, "START").await.status(), 200);
    assert_eq!(ledger.app.reason(PATIENT, "clinic", "billing").await, "allowed");
    ledger.app.stop().await;
    // A list from an old system says the number opted out in 2021, and a
    // neighbour with no record today.
    let file = ledger.app.dir.path().join("old.csv");
    std::fs::write(&file, format!("number,opted_out_at\n{PATIENT},2021-06-01T00:00:00Z\n{NEIGHBOUR},2021-06-01\n"))
        .unwrap();
    let out = ledger.import("csv", &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    ledger.app.restart().await;
    assert_eq!(ledger.app.reason(PATIENT, "clinic", "billing").await, "allowed", "the later START stands");
    assert_eq!(ledger.app.ledger_len(PATIENT).await, 3, "the import is in the ledger all the same");
    assert_eq!(ledger.app.reason(NEIGHBOUR, "clinic", "billing").await, "opted_out");
}

#[tokio::test]
async fn export_round_trips_an_import_and_is_in_the_access_report() {
    let mut ledger = Ledger::new().await;
    let out = ledger.import("csv", &fixture("optouts.csv"), &["--default-country", "US"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = ledger.export(&[]);
    // Opted out of every program: rows 1 and 4 (rows 2 and 3 named a program).
    assert_eq!(all, ["+14158670001,2023-04-01T10:00:00Z,,,export", "+14158670004,2022-01-15T16:30:00Z,,,export"]);
    assert_eq!(ledger.export(&["--program", "clinic"]).len(), 3, "1, 2 and 4");
    let aws = ledger.run(&["export", "--opted-out", "--operator", "ops", "--format", "aws"]);
    let lines: Vec<Value> = stdout(&aws).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.contains(&json!({ "OptOutListName": "Default", "OptedOutNumber": "+14158670001" })), "{lines:?}");

    // Into another ledger and out again: the same list.
    let other = Ledger::new().await;
    let exported = other.app.dir.path().join("exported.csv");
    let csv = ledger.run(&["export", "--opted-out", "--operator", "records-officer"]);
    std::fs::write(&exported, &csv.stdout).unwrap();
    let out = other.import("csv", &exported, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(other.export(&[]), all);

    // The export is in the access report, with its operator.
    ledger.app.restart().await;
    let now = time::OffsetDateTime::now_utc();
    let body = json!({
        "from": (now - time::Duration::hours(1)).format(&time::format_description::well_known::Rfc3339).unwrap(),
        "to": (now + time::Duration::hours(1)).format(&time::format_description::well_known::Rfc3339).unwrap(),
    });
    let report: Value = ledger.app.api("/v1/audit", Some(AUDIT_KEY), body).await.json().await.unwrap();
    let entries = report["entries"].as_array().unwrap();
    let exports: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "opted_out_export").collect();
    assert_eq!(exports.len(), 4, "{entries:?}");
    assert!(exports.iter().any(|e| e["caller"] == "ops"), "{exports:?}");
    assert!(exports.iter().any(|e| e["caller"] == "records-officer"), "{exports:?}");
}

/// Every number's consent marks, by event id (pids differ between ledgers:
/// each has its own index key), and the count of events.
async fn ledger_contents(data_dir: &Path) -> (Vec<String>, usize) {
    let store = sms_consent::adapters::embedded::EmbeddedStore::open(data_dir).unwrap();
    let (mut marks, mut events) = (Vec::new(), 0);
    store
        .scan_ledger(ScanOptions { rate: 100.0 }, &mut |number| {
            events += number.events.len();
            if let Some(Ok(state)) = number.state {
                marks.extend(
                    state
                        .consent
                        .marks
                        .iter()
                        .map(|(k, m)| format!("{k} {:?} {} {}", m.consent, m.occurred_at, m.event_id)),
                );
            }
        })
        .await
        .unwrap();
    marks.sort();
    (marks, events)
}

#[tokio::test]
async fn an_import_killed_mid_way_resumes_and_ends_with_the_ledger_of_an_uninterrupted_run() {
    const ROWS: u64 = 12_000;
    let killed = Ledger::new().await;
    let file = killed.app.dir.path().join("big.csv");
    let mut text = String::from("number,opted_out_at\n");
    for i in 0..ROWS {
        text.push_str(&format!("+1415{:07},2023-0{}-01T00:00:00Z\n", 2_000_000 + i, 1 + i % 9));
    }
    std::fs::write(&file, text).unwrap();
    let mut child = Command::new(bin())
        .args(["import", "--format", "csv", "--config"])
        .arg(&killed.config)
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once some batches are in, well before the end.
    let data_dir = killed.app.data_dir();
    let checkpoint = || {
        std::fs::read_dir(&data_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".checkpoint.json"))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|c| c["rows_done"].as_u64())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while checkpoint().is_none_or(|done| done < 2000) {
        assert!(child.try_wait().unwrap().is_none(), "the import ended before it could be killed");
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = checkpoint().unwrap();
    assert!(done < ROWS, "killed mid-way ({done})");

    let resumed = killed.import("csv", &file, &[]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert!(stdout(&resumed).contains(&format!("{done} done before (resumed)")), "{}", stdout(&resumed));
    assert!(checkpoint().is_none(), "the checkpoint goes once the import is done");

    let whole = Ledger::new().await;
    let out = whole.import("csv", &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("{ROWS} recorded")), "{}", stdout(&out));

    assert_eq!(killed.export(&[]), whole.export(&[]));
    let (marks, events) = ledger_contents(&killed.app.data_dir()).await;
    assert_eq!((marks.clone(), events), ledger_contents(&whole.app.data_dir()).await);
    assert_eq!(marks.len() as u64, ROWS);
    let verify = killed.run(&["verify-ledger"]);
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
}

#[tokio::test]
async fn a_batch_mixing_recorded_and_new_rows_records_only_the_new_ones() {
    let ledger = Ledger::new().await;
    mixed_batch(&ledger.config, &ledger.app.data_dir()).await;
}

/// Rows 3 and 4 first (a checkpoint says 1 and 2 are done), then the whole
/// file: one batch (one transaction, or one TransactWriteItems) holding two
/// recorded rows and two new ones.
async fn mixed_batch(config: &Path, data_dir: &Path) {
    let file = fixture("optouts.csv");
    let digest = sms_consent::runtime::import::file_digest(&file).unwrap();
    let checkpoint = sms_consent::runtime::import::checkpoint_path(data_dir, &digest);
    let started_at = time::OffsetDateTime::now_utc();
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(&checkpoint, json!({ "digest": digest, "rows_done": 2, "started_at": started_at.format(&time::format_description::well_known::Rfc3339).unwrap() }).to_string()).unwrap();
    let command = sms_consent::runtime::import::ImportCommand {
        config: config.to_owned(),
        format: Format::Csv,
        path: file,
        default_country: Some("us".into()),
        program: None,
        strict: false,
        rate: None,
    };
    let first = sms_consent::runtime::import::import(&command).await.unwrap();
    assert_eq!((first.resumed, first.recorded, first.duplicates), (2, 2, 0), "{first:?}");
    let whole = sms_consent::runtime::import::import(&command).await.unwrap();
    assert_eq!((whole.resumed, whole.recorded, whole.duplicates, whole.errors), (0, 2, 2, 0), "{whole:?}");
    let again = sms_consent::runtime::import::import(&command).await.unwrap();
    assert_eq!((again.recorded, again.duplicates), (0, 4), "{again:?}");
    let mut out = Vec::new();
    let export = sms_consent::runtime::import::ExportCommand {
        config: config.to_owned(),
        program: Some("clinic".into()),
        format: sms_consent::runtime::import::ExportFormat::Csv,
        operator: "ops".into(),
        opt_out_list: "Default".into(),
        rate: 100.0,
    };
    let report = sms_consent::runtime::import::export(&export, &mut out).await.unwrap();
    assert_eq!(report.exported, 3, "{}", String::from_utf8_lossy(&out));
}

mod dynamodb {
    use super::*;

    fn moto() -> String {
        std::env::var("SMS_CONSENT_TEST_MOTO").expect("SMS_CONSENT_TEST_MOTO is not set: these tests need moto")
    }

    fn unique(prefix: &str) -> String {
        let mut bytes = [0u8; 6];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        format!("{prefix}-{}", hex::encode(bytes))
    }

    #[tokio::test]
    async fn imports_in_batched_transactions_resume_and_export_on_dynamodb() {
        let endpoint = moto();
        let dir = tempfile::tempdir().unwrap();
        let (table, alias) = (unique("import"), unique("alias/import"));
        let data_dir = dir.path().join("data");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\ndata_dir = {:?}\n[storage]\nbackend = \"dynamodb\"\ntable = \"{table}\"\n\
                 endpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n[keys]\nbackend = \"kms\"\n\
                 key_id = \"{alias}\"\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n{}",
                data_dir.display().to_string(),
                config_text()
            ),
        )
        .unwrap();
        sms_consent::runtime::local::provision(&config).await.expect("provision on moto");
        mixed_batch(&config, &data_dir).await;

        // 60 rows: three transactions (25 rows of 4 items each), paced at 200
        // write units a second (one batch of 25 rows at a time). (A re-run
        // of a file on DynamoDB is `mixed_batch`'s third import.)
        let file = dir.path().join("list.csv");
        let mut text = String::from("number,opted_out_at\n");
        for i in 0..60 {
            text.push_str(&format!("+1415{:07},2023-03-01T00:00:00Z\n", 3_000_000 + i));
        }
        std::fs::write(&file, text).unwrap();
        let command = sms_consent::runtime::import::ImportCommand {
            config: config.clone(),
            format: Format::Csv,
            path: file,
            default_country: None,
            program: None,
            strict: false,
            rate: Some(200.0),
        };
        let summary = sms_consent::runtime::import::import(&command).await.unwrap();
        // (moto answers a 100-item transaction slowly; where the SDK retried
        // one that had gone through, its rows count as already there.)
        assert_eq!((summary.recorded + summary.duplicates, summary.errors), (60, 0), "{summary:?}");
        let mut out = Vec::new();
        let export = sms_consent::runtime::import::ExportCommand {
            config: config.clone(),
            program: None,
            format: sms_consent::runtime::import::ExportFormat::Aws,
            operator: "ops".into(),
            opt_out_list: "Clinic".into(),
            rate: 1000.0,
        };
        let report = sms_consent::runtime::import::export(&export, &mut out).await.unwrap();
        // 60 here and rows 1 and 4 of the sample (opted out of every program).
        assert_eq!(report.exported, 62, "{}", String::from_utf8_lossy(&out));
        let verified = sms_consent::runtime::verify::verify_ledger(&config, 1000.0, &|_, _| {}).await.unwrap();
        assert!(verified.intact(), "{verified:?}");
    }
}

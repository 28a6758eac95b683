//! `sms-consent import` and `export`: the list formats, read as streams
//! (no file is read whole), the progress shown, and the resume checkpoint.
//! The use case itself is `service::import`.
//!
//! Formats (each documented with an example in the README, "Import and
//! export"):
//! - `csv`: a header with `number` and optionally `opted_out_at`,
//!   `program`, `categories` (`;`-separated) and `source_note`.
//! - `aws`: the JSON of AWS End User Messaging SMS `DescribeOptedOutNumbers`
//!   (`OptedOutNumbers`: `OptedOutNumber`, `OptedOutTimestamp`,
//!   `EndUserOptedOut`; see
//!   <https://docs.aws.amazon.com/pinpoint/latest/apireference_smsvoicev2/API_OptedOutNumberInformation.html>):
//!   pages concatenated (the CLI's one merged document too: its array is
//!   streamed entry by entry), or one entry per line (JSON lines).
//! - `telnyx`: the JSON of Telnyx's `GET /v2/messaging_optouts` (`data`:
//!   `to`, `from`, `messaging_profile_id`, `keyword`, `created_at`; see
//!   <https://developers.telnyx.com/api-reference/opt-out-management/list-opt-outs>):
//!   pages concatenated, or one entry per line. The opted-out number is `to`.
//! - `twilio`: a Twilio console CSV export. Twilio keeps no opt-out list to
//!   download (its docs: maintain your own from the STOP messages), so this
//!   reads the console's message log export (the Message resource's fields,
//!   <https://www.twilio.com/docs/sms/api/message>: `From`, `To`, `Body`,
//!   `Direction`, `SentDate`/`DateSent`): every inbound message whose body
//!   is an opt-out keyword (read as the inbound path reads it) is an
//!   opt-out of its `From`; other rows are skipped. A CSV in the fields of
//!   Twilio's Consent Management API (`contact_id`, `status`,
//!   `date_of_consent`) is read too: rows whose status is `opt-out`.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::OffsetDateTime;

use crate::config::StorageBackend;
use crate::ports::{ScanOptions, SystemClock};
use crate::runtime::local::load_config;
use crate::runtime::verify::open_service;
use crate::runtime::StartError;
use crate::service::import::{
    BatchReport, ExportReport, ExportRow, ImportFile, ImportOptions, SourceRow, WRITE_UNITS_PER_ROW,
};

/// A list's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Aws,
    Telnyx,
    Twilio,
}

/// What the export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The `csv` import format (`number,opted_out_at,program,categories,source_note`).
    Csv,
    /// One `PutOptedOutNumber` input per line (JSON).
    Aws,
}

/// One item a format reader yields.
#[derive(Debug)]
pub enum Item {
    Row(SourceRow),
    /// A row that is not an opt-out (a Twilio log's other messages).
    Skip {
        index: u64,
    },
    /// A row that cannot be read: its index, place and why (no number).
    Bad {
        index: u64,
        line: u64,
        why: String,
    },
}

/// Rows in one batch: one transaction on the embedded store; on DynamoDB
/// one batch read and transactions of at most 100 items.
const EMBEDDED_BATCH: usize = 2000;
const DYNAMODB_BATCH: usize = 100;
/// How often a plain progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// How `import` runs.
#[derive(Debug, Clone)]
pub struct ImportCommand {
    pub config: PathBuf,
    pub format: Format,
    pub path: PathBuf,
    pub default_country: Option<String>,
    pub program: Option<String>,
    pub strict: bool,
    /// DynamoDB write capacity units per second to stay under.
    pub rate: Option<f64>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportSummary {
    pub rows: u64,
    pub recorded: u64,
    pub duplicates: u64,
    pub skipped: u64,
    pub errors: u64,
    /// Rows a checkpoint said were done already.
    pub resumed: u64,
    pub seconds: f64,
    /// `--strict` found bad rows: nothing was written.
    pub refused: bool,
}

/// Counters the progress display reads.
#[derive(Default)]
struct Counts {
    bytes: AtomicU64,
    rows: AtomicU64,
    recorded: AtomicU64,
    duplicates: AtomicU64,
    skipped: AtomicU64,
    errors: AtomicU64,
}

/// A reader that counts the bytes read (the progress bar's position).
struct Counting<R> {
    inner: R,
    counts: Arc<Counts>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Where an import stands, kept beside the ledger (`<data_dir>/import-<digest
/// prefix>.checkpoint.json`): every row up to `rows_done` is handled. Gone
/// once the import finishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub digest: String,
    pub rows_done: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Bad rows (reported and skipped) among those: a resumed run still
    /// counts them in its summary and exit code.
    #[serde(default)]
    pub bad_rows: u64,
}

pub fn checkpoint_path(data_dir: &Path, digest: &str) -> PathBuf {
    data_dir.join(format!("import-{}.checkpoint.json", digest.get(..16).unwrap_or(digest)))
}

fn read_checkpoint(path: &Path, digest: &str) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<Checkpoint>(&text).ok().filter(|c| c.digest == digest)
}

/// Written whole to a temporary file and renamed over: never half written.
fn write_checkpoint(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, serde_json::to_vec(checkpoint).unwrap_or_default())?;
    std::fs::rename(&temporary, path)
}

/// SHA-256 of the file, hex (streamed).
pub fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut file = BufReader::with_capacity(1 << 16, std::fs::File::open(path)?);
    let mut hasher = Sha256::new();
    loop {
        let buf = file.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        hasher.update(buf);
        let n = buf.len();
        file.consume(n);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A time as lists write them: RFC 3339, RFC 2822, `YYYY-MM-DD HH:MM:SS`
/// (UTC, an optional ` UTC`/`Z`), a date alone (midnight UTC), or epoch
/// seconds.
pub fn parse_time(input: &str) -> Result<OffsetDateTime, String> {
    let text = input.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc2822) {
        return Ok(at);
    }
    let plain = text.trim_end_matches(" UTC").trim_end_matches('Z').trim_end_matches(" +0000");
    let datetime = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    if let Ok(at) = time::PrimitiveDateTime::parse(plain, datetime) {
        return Ok(at.assume_utc());
    }
    let datetime_t = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    if let Ok(at) = time::PrimitiveDateTime::parse(plain, datetime_t) {
        return Ok(at.assume_utc());
    }
    if let Ok(day) = time::Date::parse(plain, time::macros::format_description!("[year]-[month]-[day]")) {
        return Ok(day.midnight().assume_utc());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return epoch(seconds);
    }
    Err("not a date and time (RFC 3339, e.g. 2024-03-05T14:22:11Z)".into())
}

fn epoch(seconds: f64) -> Result<OffsetDateTime, String> {
    if !seconds.is_finite() {
        return Err("not a time".into());
    }
    OffsetDateTime::from_unix_timestamp_nanos((seconds * 1e9) as i128).map_err(|_| "out of range".to_owned())
}

/// A header name compared loosely: lower case, letters and digits only.
fn loose(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// Reads `format` from `input`, handing each item to `each` (false: stop).
/// An error: the file cannot be read on (I/O, a JSON syntax error).
pub fn read_items(format: Format, input: impl Read, each: &mut dyn FnMut(Item) -> bool) -> Result<(), String> {
    match format {
        Format::Csv => read_csv(input, each),
        Format::Twilio => read_twilio(input, each),
        Format::Aws => read_json(input, "OptedOutNumbers", &aws_entry, each),
        Format::Telnyx => read_json(input, "data", &telnyx_entry, each),
    }
}

fn csv_reader(input: impl Read) -> csv::Reader<impl Read> {
    csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(input)
}

fn read_csv(input: impl Read, each: &mut dyn FnMut(Item) -> bool) -> Result<(), String> {
    let mut reader = csv_reader(input);
    let headers: Vec<String> = reader.headers().map_err(|e| format!("header: {e}"))?.iter().map(loose).collect();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let number = column("number").ok_or("header: no `number` column")?;
    let (at, program, categories, note) =
        (column("optedoutat"), column("program"), column("categories"), column("sourcenote"));
    csv_items(&mut reader, each, |index, line, record| {
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).filter(|v| !v.is_empty());
        let opted_out_at = match field(at).map(parse_time).transpose() {
            Ok(at) => at,
            Err(why) => return Item::Bad { index, line, why: format!("opted_out_at: {why}") },
        };
        Item::Row(SourceRow {
            index,
            line,
            number: field(Some(number)).unwrap_or_default().to_owned(),
            opted_out_at,
            program: field(program).map(str::to_owned),
            categories: field(categories)
                .map(|c| c.split(';').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default(),
            note: field(note).map(str::to_owned),
        })
    })
}

/// Each record of a CSV as one item (`to_item`, with its row index and
/// line); a record that is not UTF-8 CSV is a bad row, an I/O error the end.
fn csv_items(
    reader: &mut csv::Reader<impl Read>,
    each: &mut dyn FnMut(Item) -> bool,
    mut to_item: impl FnMut(u64, u64, &csv::StringRecord) -> Item,
) -> Result<(), String> {
    let mut record = csv::StringRecord::new();
    let mut index = 0u64;
    loop {
        let line = reader.position().line() + 1;
        index += 1;
        let item = match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => to_item(index, record.position().map_or(line, |p| p.line()), &record),
            Err(e) if e.is_io_error() => return Err(e.to_string()),
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                Item::Bad { index, line, why: "not a CSV record in UTF-8".into() }
            }
        };
        if !each(item) {
            return Ok(());
        }
    }
}

fn read_twilio(input: impl Read, each: &mut dyn FnMut(Item) -> bool) -> Result<(), String> {
    let mut reader = csv_reader(input);
    let headers: Vec<String> = reader.headers().map_err(|e| format!("header: {e}"))?.iter().map(loose).collect();
    let column = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
    // The message log export, or the Consent Management fields.
    let log = (column(&["from"]), column(&["body"]));
    let consent = (column(&["contactid"]), column(&["status"]));
    let (number, kind) = match (log, consent) {
        ((Some(from), Some(_)), _) => (from, "log"),
        (_, (Some(contact), Some(_))) => (contact, "consent"),
        _ => return Err("header: neither a message log (From, Body) nor a consent list (contact_id, status)".into()),
    };
    let (body, direction) = (log.1, column(&["direction"]));
    let status = consent.1;
    let at = column(&["sentdate", "datesent", "datecreated", "dateofconsent"]);
    csv_items(&mut reader, each, |index, line, record| {
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or_default();
        let opt_out = if kind == "log" {
            let inbound = direction.is_none() || field(direction).to_ascii_lowercase().starts_with("inbound");
            inbound && crate::domain::keywords::read(field(body)).intent.is_opt_out()
        } else {
            loose(field(status)) == "optout"
        };
        if !opt_out {
            return Item::Skip { index };
        }
        match Some(field(at)).filter(|v| !v.is_empty()).map(parse_time).transpose() {
            Ok(opted_out_at) => Item::Row(SourceRow {
                index,
                line,
                number: field(Some(number)).to_owned(),
                opted_out_at,
                note: Some(if kind == "log" { "twilio message log" } else { "twilio consent list" }.into()),
                ..SourceRow::default()
            }),
            Err(why) => Item::Bad { index, line, why: format!("date: {why}") },
        }
    })
}

/// An AWS entry: the number (a `+` added where the list left it out) and
/// the time (epoch seconds, or a date-time string as the CLI prints it).
fn aws_entry(entry: &Map<String, Value>) -> Result<SourceRow, String> {
    let number = match entry.get("OptedOutNumber") {
        Some(Value::String(n)) if n.starts_with('+') => n.clone(),
        Some(Value::String(n)) => format!("+{n}"),
        _ => return Err("OptedOutNumber: missing".into()),
    };
    let opted_out_at = match entry.get("OptedOutTimestamp") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(epoch(n.as_f64().unwrap_or(f64::NAN))?),
        Some(Value::String(s)) => Some(parse_time(s).map_err(|e| format!("OptedOutTimestamp: {e}"))?),
        Some(_) => return Err("OptedOutTimestamp: not a time".into()),
    };
    let note = match entry.get("EndUserOptedOut") {
        Some(Value::Bool(false)) => "aws opt-out list (added by the account)",
        _ => "aws opt-out list",
    };
    Ok(SourceRow { number, opted_out_at, note: Some(note.into()), ..SourceRow::default() })
}

/// A Telnyx entry: `to` opted out of messages from `from`, at `created_at`.
fn telnyx_entry(entry: &Map<String, Value>) -> Result<SourceRow, String> {
    let Some(Value::String(number)) = entry.get("to") else { return Err("to: missing".into()) };
    let opted_out_at = match entry.get("created_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_time(s).map_err(|e| format!("created_at: {e}"))?),
        Some(_) => return Err("created_at: not a time".into()),
    };
    let note = match entry.get("keyword") {
        Some(Value::String(keyword)) if keyword.len() <= 32 => format!("telnyx opt-out ({keyword})"),
        _ => "telnyx opt-out".into(),
    };
    Ok(SourceRow { number: number.clone(), opted_out_at, note: Some(note), ..SourceRow::default() })
}

type EntryFn = dyn Fn(&Map<String, Value>) -> Result<SourceRow, String>;

/// The state of a JSON read: entries so far and the reader's callback.
struct JsonRead<'a> {
    field: &'static str,
    entry: &'a EntryFn,
    each: &'a mut dyn FnMut(Item) -> bool,
    index: u64,
    stopped: bool,
}

impl JsonRead<'_> {
    fn entry(&mut self, value: &Map<String, Value>) {
        if self.stopped {
            return;
        }
        self.index += 1;
        let index = self.index;
        let item = match (self.entry)(value) {
            Ok(row) => Item::Row(SourceRow { index, line: index, ..row }),
            Err(why) => Item::Bad { index, line: index, why },
        };
        self.stopped = !(self.each)(item);
    }
}

/// One top-level document: a page (its array streamed) or one entry.
struct Document<'r, 'a>(&'r mut JsonRead<'a>);

impl<'de> DeserializeSeed<'de> for Document<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Document<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object: a page of the list or one of its entries")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut own = Map::new();
        let mut page = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.0.field {
                page = true;
                map.next_value_seed(Entries(&mut *self.0))?;
            } else if page || own.len() > 64 {
                map.next_value::<IgnoredAny>()?;
            } else {
                own.insert(key, map.next_value::<Value>()?);
            }
        }
        if !page {
            self.0.entry(&own);
        }
        Ok(())
    }
}

/// A page's array, entry by entry (never held whole).
struct Entries<'r, 'a>(&'r mut JsonRead<'a>);

impl<'de> DeserializeSeed<'de> for Entries<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<Value>()? {
            match entry {
                Value::Object(entry) => self.0.entry(&entry),
                _ => self.0.entry(&Map::new()),
            }
        }
        Ok(())
    }
}

/// Documents one after another (pages concatenated, or JSON lines), read
/// with serde_json's streaming reader.
fn read_json(
    input: impl Read,
    field: &'static str,
    entry: &EntryFn,
    each: &mut dyn FnMut(Item) -> bool,
) -> Result<(), String> {
    let mut read = JsonRead { field, entry, each, index: 0, stopped: false };
    let mut deserializer = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 16, input));
    while !read.stopped && deserializer.end().is_err() {
        // serde_json's message can quote the value it did not expect (a
        // number, say): only its kind and place are reported.
        Document(&mut read).deserialize(&mut deserializer).map_err(|e| {
            format!(
                "JSON after entry {}: {:?} error at line {} column {} (fix the file and run the import again: \
                 what is recorded stays recorded once)",
                read.index,
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
    }
    Ok(())
}

/// Shows progress: a bar on a terminal, a plain line every few seconds
/// otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    counts: Arc<Counts>,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(counts: Arc<Counts>, total_bytes: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total_bytes);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% eta {eta} | {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress { bar, counts, started: Instant::now(), last_line: Instant::now() }
    }

    fn line(&self) -> String {
        let c = &self.counts;
        let rows = c.rows.load(Ordering::Relaxed);
        let rate = rows as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        format!(
            "{rows} read, {} recorded, {} already there, {} skipped, {} errors, {rate:.0} rows/s",
            c.recorded.load(Ordering::Relaxed),
            c.duplicates.load(Ordering::Relaxed),
            c.skipped.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed),
        )
    }

    fn tick(&mut self, force: bool) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.counts.bytes.load(Ordering::Relaxed));
                bar.set_message(self.line());
            }
            None if force || self.last_line.elapsed() >= PLAIN_EVERY => {
                self.last_line = Instant::now();
                eprintln!("import: {}", self.line());
            }
            None => {}
        }
    }

    /// A bad row's message, above the bar.
    fn report(&self, line: u64, why: &str) {
        let text = format!("line {line}: {why}");
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("import: {text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The items of a file, and the thread reading it.
type Reader = (tokio::sync::mpsc::Receiver<Item>, std::thread::JoinHandle<Result<(), String>>);

/// Starts a thread reading the file into a bounded channel.
fn spawn_reader(format: Format, path: &Path, counts: Arc<Counts>) -> Result<Reader, StartError> {
    let file =
        std::fs::File::open(path).map_err(|e| StartError::Io { context: path.display().to_string(), source: e })?;
    let (tx, rx) = tokio::sync::mpsc::channel(8192);
    let handle = std::thread::spawn(move || {
        let input = Counting { inner: BufReader::with_capacity(1 << 16, file), counts };
        read_items(format, input, &mut |item| tx.blocking_send(item).is_ok())
    });
    Ok((rx, handle))
}

fn reader_result(handle: std::thread::JoinHandle<Result<(), String>>) -> Result<(), StartError> {
    match handle.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(StartError::Other(why)),
        Err(_) => Err(StartError::Other("the file reader failed".into())),
    }
}

/// Runs an import. An error: it could not run (config, store, file);
/// bad rows are counted in the summary, not errors.
pub async fn import(command: &ImportCommand) -> Result<ImportSummary, StartError> {
    let started = Instant::now();
    if let Some(rate) = command.rate {
        if !(rate.is_finite() && rate >= WRITE_UNITS_PER_ROW) {
            return Err(StartError::Other(format!("--rate: at least {WRITE_UNITS_PER_ROW} write units per second")));
        }
    }
    let default_country = match &command.default_country {
        Some(code) => Some(
            code.trim()
                .to_ascii_uppercase()
                .parse::<phonenumber::country::Id>()
                .map_err(|_| StartError::Other(format!("--default-country: {code:?} is not a country code")))?,
        ),
        None => None,
    };
    let config = load_config(&command.config)?;
    let service = open_service(&config, "import into", Arc::new(SystemClock)).await?;
    if let Some(program) = &command.program {
        if config.programs().get(program).is_none() {
            return Err(StartError::Other(format!("--program: {program:?} is not configured")));
        }
    }
    let options = ImportOptions { default_country, program: command.program.clone() };
    let path = &command.path;
    let io = |e: std::io::Error| StartError::Io { context: path.display().to_string(), source: e };
    let digest = file_digest(path).map_err(io)?;
    let total_bytes = std::fs::metadata(path).map_err(io)?.len();
    std::fs::create_dir_all(&config.server.data_dir)
        .map_err(|e| StartError::Io { context: config.server.data_dir.display().to_string(), source: e })?;
    let checkpoint_file = checkpoint_path(&config.server.data_dir, &digest);
    let resumed = read_checkpoint(&checkpoint_file, &digest);
    let file = ImportFile {
        digest: digest.clone(),
        name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        started_at: resumed.as_ref().map_or_else(|| service.now(), |c| c.started_at),
    };
    let rows_done = resumed.as_ref().map_or(0, |c| c.rows_done);
    let earlier_bad_rows = resumed.as_ref().map_or(0, |c| c.bad_rows);
    let mut summary = ImportSummary { resumed: rows_done, ..ImportSummary::default() };

    // --strict: the whole file checked before anything is written.
    if command.strict {
        let counts = Arc::new(Counts::default());
        let (mut rx, handle) = spawn_reader(command.format, path, counts.clone())?;
        let progress = Progress::new(counts, total_bytes);
        let mut bad = 0u64;
        while let Some(item) = rx.recv().await {
            let problem = match item {
                Item::Row(row) => {
                    let line = row.line;
                    service.check_import_row(&file, &options, row).err().map(|why| (line, why))
                }
                Item::Bad { line, why, .. } => Some((line, why)),
                Item::Skip { .. } => None,
            };
            if let Some((line, why)) = problem {
                bad += 1;
                progress.report(line, &why);
            }
        }
        progress.finish();
        reader_result(handle)?;
        if bad > 0 {
            summary.errors = bad;
            summary.refused = true;
            summary.seconds = started.elapsed().as_secs_f64();
            return Ok(summary);
        }
    }

    let batch_size = match (config.storage.backend, command.rate) {
        (StorageBackend::Embedded, _) => EMBEDDED_BATCH,
        (_, Some(rate)) => ((rate / WRITE_UNITS_PER_ROW) as usize).clamp(1, DYNAMODB_BATCH),
        _ => DYNAMODB_BATCH,
    };
    let rows_per_second = command.rate.map(|rate| rate / WRITE_UNITS_PER_ROW);
    let counts = Arc::new(Counts::default());
    let (mut rx, handle) = spawn_reader(command.format, path, counts.clone())?;
    let mut progress = Progress::new(counts.clone(), total_bytes);
    let mut batch = Vec::with_capacity(batch_size);
    let mut last_index = rows_done;
    // Bad rows up to the checkpoint, and since it. Once a batch has a row the
    // store could not take (contention, a failed integrity check), the
    // checkpoint stays where it was: a resumed run goes over those rows again
    // (the ones recorded meanwhile are duplicates by then).
    let mut bad_checkpointed = earlier_bad_rows;
    let mut bad_since = 0u64;
    let mut frozen = false;
    let mut written_rows = 0u64;
    let paced_from = Instant::now();
    let mut finished = false;
    while !finished {
        let item = rx.recv().await;
        finished = item.is_none();
        if let Some(item) = item {
            let index = match &item {
                Item::Row(row) => row.index,
                Item::Skip { index } | Item::Bad { index, .. } => *index,
            };
            counts.rows.fetch_add(1, Ordering::Relaxed);
            if index <= rows_done {
                continue;
            }
            last_index = index;
            match item {
                Item::Skip { .. } => {
                    counts.skipped.fetch_add(1, Ordering::Relaxed);
                }
                Item::Bad { line, why, .. } => {
                    counts.errors.fetch_add(1, Ordering::Relaxed);
                    bad_since += 1;
                    progress.report(line, &why);
                }
                Item::Row(row) => {
                    let line = row.line;
                    match service.check_import_row(&file, &options, row) {
                        Ok(row) => batch.push(row),
                        Err(why) => {
                            counts.errors.fetch_add(1, Ordering::Relaxed);
                            bad_since += 1;
                            progress.report(line, &why);
                        }
                    }
                }
            }
        }
        if batch.len() >= batch_size || (finished && !batch.is_empty()) {
            let rows = std::mem::take(&mut batch);
            written_rows += rows.len() as u64;
            let report: BatchReport = service.import_batch(&file, rows).await.map_err(StartError::other)?;
            counts.recorded.fetch_add(report.recorded, Ordering::Relaxed);
            counts.duplicates.fetch_add(report.duplicates, Ordering::Relaxed);
            counts.errors.fetch_add(report.errors.len() as u64, Ordering::Relaxed);
            for (line, why) in &report.errors {
                progress.report(*line, why);
            }
            frozen |= !report.errors.is_empty();
            if !frozen {
                bad_checkpointed += std::mem::take(&mut bad_since);
                let checkpoint = Checkpoint {
                    digest: digest.clone(),
                    rows_done: last_index,
                    started_at: file.started_at,
                    bad_rows: bad_checkpointed,
                };
                write_checkpoint(&checkpoint_file, &checkpoint).map_err(io)?;
            }
            if let Some(per_second) = rows_per_second {
                let due = Duration::from_secs_f64(written_rows as f64 / per_second);
                if let Some(wait) = due.checked_sub(paced_from.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        progress.tick(false);
    }
    progress.tick(true);
    progress.finish();
    reader_result(handle)?;
    // Done: the checkpoint goes (a re-run finds every row already there).
    let _ = std::fs::remove_file(&checkpoint_file);
    summary.rows = counts.rows.load(Ordering::Relaxed);
    summary.recorded = counts.recorded.load(Ordering::Relaxed);
    summary.duplicates = counts.duplicates.load(Ordering::Relaxed);
    summary.skipped = counts.skipped.load(Ordering::Relaxed);
    summary.errors = counts.errors.load(Ordering::Relaxed) + earlier_bad_rows;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// How `export` runs.
#[derive(Debug, Clone)]
pub struct ExportCommand {
    pub config: PathBuf,
    pub program: Option<String>,
    pub format: ExportFormat,
    pub operator: String,
    /// `--format aws`: the opt-out list's name.
    pub opt_out_list: String,
    /// DynamoDB read capacity units per second the scan may use.
    pub rate: f64,
}

/// Writes the opted-out list to `out`. An error: it could not run.
pub async fn export(command: &ExportCommand, out: &mut (dyn Write + Send)) -> Result<ExportReport, StartError> {
    if !(command.rate.is_finite() && command.rate > 0.0) {
        return Err(StartError::Other("--rate: give a number of read units per second above 0".into()));
    }
    let config = load_config(&command.config)?;
    let service = open_service(&config, "export", Arc::new(SystemClock)).await?;
    let options = ScanOptions { rate: command.rate };
    let format = command.format;
    let list = command.opt_out_list.clone();
    enum Sink<'a> {
        Csv(Box<csv::Writer<&'a mut (dyn Write + Send)>>),
        Lines(&'a mut (dyn Write + Send)),
    }
    let mut sink = match format {
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer
                .write_record(["number", "opted_out_at", "program", "categories", "source_note"])
                .map_err(StartError::other)?;
            Sink::Csv(Box::new(writer))
        }
        ExportFormat::Aws => Sink::Lines(out),
    };
    let mut each = |row: ExportRow| -> std::io::Result<()> {
        match &mut sink {
            Sink::Csv(writer) => {
                let at = row.opted_out_at.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_default();
                writer.write_record([row.number.as_str(), &at, row.program.as_deref().unwrap_or(""), "", "export"])?;
            }
            Sink::Lines(out) => {
                let line = serde_json::json!({ "OptOutListName": list, "OptedOutNumber": row.number });
                serde_json::to_writer(&mut **out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    };
    let report = service
        .export_opted_out(command.program.as_deref(), &command.operator, options, &mut each)
        .await
        .map_err(StartError::other)?;
    match &mut sink {
        Sink::Csv(writer) => writer.flush(),
        Sink::Lines(out) => out.flush(),
    }
    .map_err(StartError::other)?;
    Ok(report)
}

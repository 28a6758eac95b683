//! Bringing a clinic's existing opt-outs in, and taking the list out.
//!
//! **Import.** Every row of a list (see `runtime::import` for the formats)
//! becomes an opt-out event with source `import`, through the ledger's own
//! write (`ConsentService::ledger_write`: dedup marker, event, chain link,
//! state with its version and tag), so it merges by the same rules as a
//! STOP: event time orders, an opt-out wins a tie, and a later opt-in the
//! ledger already holds survives. Its id is derived from the file's SHA-256
//! and the row's ordinal (`import:<digest prefix>:<row>`, its dedup key
//! `DEDUP#import#<digest>:<row>`), so running the same file again records
//! nothing twice, and a run resumed after a crash converges to the ledger of
//! an uninterrupted one. The file's name and the row number are sealed in
//! the event's `evidence` (with the row's `source_note`); the number only
//! as its blind index and sealed in the state.
//!
//! Rows go in batches: one batch read of the numbers' states
//! (`get_states`), each write computed as the normal path computes it, and
//! one `commit_batch` (one transaction on the embedded store; transactions
//! of at most 100 items on DynamoDB). A row whose state changed meanwhile
//! (a version conflict) goes through the normal single commit; a number
//! twice in one batch is committed singly after it. No key service call
//! beyond the cached data keys.
//!
//! **Export.** `export_opted_out` lists the numbers opted out of every
//! program (or of one), decrypted, after recording the export with its
//! operator in the access report.

use std::collections::HashSet;

use time::{Duration, OffsetDateTime};

use super::{check_event_time, ConsentService, Effect, Pending, ServiceError};
use crate::domain::{Consent, ConsentChange, ConsentState, PhoneNumber, Scope};
use crate::ports::keys::{dedup_pk, event_sk, phone_pk, STATE_SK};
use crate::ports::{CommitOutcome, EventItem, ScanOptions, StateItem};

/// The source of every imported event.
pub const IMPORT_SOURCE: &str = "import";
/// The kind of an imported event.
pub const IMPORT_KIND: &str = "opt_out";
/// The ledger entry an export is recorded under (not a number: a
/// partition of its own whose chain holds one event per export).
pub const EXPORT_PID: &str = "exports";
/// The kind of an export's event (with the operator as caller).
pub const EXPORT_KIND: &str = "opted_out_export";
/// DynamoDB write units one imported row takes, about: four items (dedup
/// marker, event, state, version marker) under 1 KB each, written
/// transactionally (2 units each). What `--rate` divides by.
pub const WRITE_UNITS_PER_ROW: f64 = 8.0;
/// How far ahead of the clock an `opted_out_at` may be (clock skew).
const SKEW: Duration = Duration::minutes(5);
/// The longest `source_note` kept.
const MAX_NOTE: usize = 512;

/// The file an import reads: its SHA-256 (hex), its name (sealed into each
/// event) and the import's time (for rows without one; a resumed import
/// keeps the first run's).
#[derive(Debug, Clone)]
pub struct ImportFile {
    pub digest: String,
    pub name: String,
    pub started_at: OffsetDateTime,
}

/// One row as a format read it (nothing checked yet but its date).
#[derive(Debug, Clone, Default)]
pub struct SourceRow {
    /// Its ordinal in the file, from 1: part of the event's id.
    pub index: u64,
    /// Where it is in the file, for messages: a line (CSV) or an entry (JSON).
    pub line: u64,
    pub number: String,
    pub opted_out_at: Option<OffsetDateTime>,
    pub program: Option<String>,
    pub categories: Vec<String>,
    pub note: Option<String>,
}

/// How rows are read: a country for national numbers, a program for rows
/// that name none (none: every program).
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub default_country: Option<phonenumber::country::Id>,
    pub program: Option<String>,
}

/// A row that passed its checks.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub index: u64,
    pub line: u64,
    pub number: PhoneNumber,
    pub occurred_at: OffsetDateTime,
    /// Whether the row gave its own `opted_out_at` (else: the import's time).
    pub timed: bool,
    pub scope: Scope,
    pub note: Option<String>,
}

/// What one batch did. Errors by line, without the number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub recorded: u64,
    pub duplicates: u64,
    pub errors: Vec<(u64, String)>,
}

/// One number of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    /// E.164, decrypted.
    pub number: String,
    /// The deciding opt-out's time.
    pub opted_out_at: OffsetDateTime,
    pub program: Option<String>,
}

/// What an export found besides its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub numbers: u64,
    pub exported: u64,
    /// States whose tag failed or that are quarantined: left out (run
    /// `verify-ledger`).
    pub unverified: u64,
}

/// Parses a number as the inbound path does (E.164), or a national one in
/// `country` when given.
pub fn parse_number(input: &str, country: Option<phonenumber::country::Id>) -> Result<PhoneNumber, String> {
    let trimmed = input.trim();
    match country {
        Some(country) if !trimmed.starts_with('+') => {
            // The same guard as an international number's before the crate.
            let shaped = !trimmed.is_empty()
                && trimmed.len() <= crate::domain::phone::MAX_INPUT_LEN
                && trimmed.chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'));
            if !shaped {
                return Err("not a valid phone number".into());
            }
            let parsed = phonenumber::parse(Some(country), trimmed).map_err(|_| "not a valid phone number")?;
            let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
            PhoneNumber::parse(&e164).map_err(|e| e.to_string())
        }
        _ => PhoneNumber::parse(trimmed).map_err(|e| match e {
            crate::domain::phone::PhoneError::NotInternational => {
                format!("{e} (or give --default-country for national numbers)")
            }
            e => e.to_string(),
        }),
    }
}

/// A row's place, for messages.
fn at_line(line: u64, why: impl std::fmt::Display) -> (u64, String) {
    (line, why.to_string())
}

impl ConsentService {
    /// Checks one row: the number, its program and categories, its time.
    /// The error names the field, never the number.
    pub fn check_import_row(
        &self,
        file: &ImportFile,
        options: &ImportOptions,
        row: SourceRow,
    ) -> Result<ImportRow, String> {
        let number = parse_number(&row.number, options.default_country).map_err(|e| format!("number: {e}"))?;
        let program = row.program.as_deref().filter(|p| !p.is_empty()).or(options.program.as_deref());
        let scope = match program {
            None if row.categories.is_empty() => Scope::All,
            None => return Err("categories: given without a program".into()),
            Some(id) => {
                // The row's own values are not echoed: a shifted column could
                // hold a number.
                let program = self.programs.get(id).ok_or("program: not the id of a configured program")?;
                if row.categories.is_empty() {
                    Scope::Program { program: program.id.clone() }
                } else {
                    if row.categories.iter().any(|c| !program.has_category(c)) {
                        return Err(format!("categories: one is not a category of {:?}", program.id));
                    }
                    let mut categories = row.categories.clone();
                    categories.sort();
                    categories.dedup();
                    Scope::Categories { program: program.id.clone(), categories }
                }
            }
        };
        let occurred_at = row.opted_out_at.unwrap_or(file.started_at);
        check_event_time(occurred_at, "opted_out_at").map_err(|e| e.to_string())?;
        let now = self.now();
        if occurred_at > now + SKEW {
            return Err("opted_out_at: in the future".into());
        }
        let note = row.note.filter(|n| !n.trim().is_empty()).map(|n| n.chars().take(MAX_NOTE).collect());
        let timed = row.opted_out_at.is_some();
        Ok(ImportRow {
            index: row.index,
            line: row.line,
            number,
            occurred_at: occurred_at.min(now),
            timed,
            scope,
            note,
        })
    }

    /// Records a batch of checked rows: one batch read of their states, the
    /// writes computed as every event's are, one `commit_batch`; a version
    /// conflict, and a number seen twice in the batch, through the single
    /// commit. An error: the store failed (nothing of the batch may be
    /// counted as done).
    pub async fn import_batch(&self, file: &ImportFile, rows: Vec<ImportRow>) -> Result<BatchReport, ServiceError> {
        let now = self.now();
        let mut report = BatchReport::default();
        // The owned parts of each row's event, then the pendings over them.
        struct Part {
            line: u64,
            pid: String,
            number: PhoneNumber,
            change: ConsentChange,
            event: EventItem,
            dedup_key: String,
            content_key: String,
        }
        let mut parts = Vec::with_capacity(rows.len());
        for row in rows {
            let event_id = format!("{IMPORT_SOURCE}:{}:{}", file.digest.get(..16).unwrap_or(&file.digest), row.index);
            let pid = self.crypto.blind_index(&row.number);
            let pk = phone_pk(&pid);
            let sk = event_sk(row.occurred_at, &event_id);
            let mut evidence = format!("{} row {}", file.name, row.index);
            if let Some(note) = &row.note {
                evidence.push_str(": ");
                evidence.push_str(note);
            }
            let (program, categories) = match &row.scope {
                Scope::All => (None, Vec::new()),
                Scope::Program { program } => (Some(program.clone()), Vec::new()),
                Scope::Categories { program, categories } => (Some(program.clone()), categories.clone()),
            };
            let event = EventItem {
                pid: pid.clone(),
                event_id: event_id.clone(),
                kind: IMPORT_KIND.into(),
                source: IMPORT_SOURCE.into(),
                program,
                categories,
                text: None,
                evidence: Some(self.crypto.seal(&evidence, &pk, &sk, "evidence").await?),
                caller: None,
                code: None,
                signature_verified: false,
                occurred_at: row.occurred_at,
                received_at: now,
                link: None,
            };
            let change =
                ConsentChange { event_id, occurred_at: row.occurred_at, consent: Consent::OptOut, scope: row.scope };
            let dedup_key = dedup_pk(IMPORT_SOURCE, &format!("{}:{}", file.digest, row.index));
            let content_key = content_key(&pid, &change.scope, row.timed.then_some(row.occurred_at));
            parts.push(Part { line: row.line, pid, number: row.number, change, event, dedup_key, content_key });
        }
        fn pending(part: &Part) -> Pending<'_> {
            Pending {
                phone: Some(&part.number),
                dedup_key: part.dedup_key.clone(),
                extra_dedup_keys: vec![part.content_key.clone()],
                event: part.event.clone(),
                outbox: None,
                effect: Effect::Apply(&part.change),
                review: None,
            }
        }
        // A number at most once per batch: a repeat is committed singly after.
        let mut seen = HashSet::new();
        let (batch, later): (Vec<&Part>, Vec<&Part>) = parts.iter().partition(|p| seen.insert(p.pid.clone()));
        let mut states = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(100) {
            let pids: Vec<String> = chunk.iter().map(|p| p.pid.clone()).collect();
            let read = self.store.get_states(&pids).await;
            states.extend(self.stored(&pids[0], read)?);
        }
        let mut writes = Vec::with_capacity(batch.len());
        let mut written = Vec::with_capacity(batch.len());
        for (part, state) in batch.into_iter().zip(states) {
            let current = match state.map(|s| self.verified(&part.pid, s)).transpose() {
                Ok(current) => current,
                Err(e) => {
                    report.errors.push(at_line(part.line, e));
                    continue;
                }
            };
            writes.push(self.ledger_write(&pending(part), current.as_ref(), now).await?);
            written.push(part);
        }
        let outcomes = self.store.commit_batch(writes).await?;
        let mut single = later;
        for (part, outcome) in written.into_iter().zip(outcomes) {
            match outcome {
                CommitOutcome::Committed => report.recorded += 1,
                CommitOutcome::Duplicate => report.duplicates += 1,
                CommitOutcome::VersionConflict => single.push(part),
                CommitOutcome::Tampered => {
                    self.integrity_alarm(&part.pid, "the state was rolled back or deleted");
                    report.errors.push(at_line(part.line, ServiceError::Integrity));
                }
            }
        }
        for part in single {
            match self.commit_event(pending(part)).await {
                Ok(true) => report.recorded += 1,
                Ok(false) => report.duplicates += 1,
                Err(e @ (ServiceError::Integrity | ServiceError::Contention | ServiceError::Invalid(_))) => {
                    report.errors.push(at_line(part.line, e))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Streams the numbers opted out of every program (`program` None) or
    /// of one program, decrypted, to `each`, after recording the export
    /// (`opted_out_export`, with the operator) in the access report. A
    /// state that fails its tag or is quarantined is left out and counted.
    pub async fn export_opted_out(
        &self,
        program: Option<&str>,
        operator: &str,
        options: ScanOptions,
        each: &mut (dyn FnMut(ExportRow) -> std::io::Result<()> + Send),
    ) -> Result<ExportReport, ServiceError> {
        let operator = operator.trim();
        if operator.is_empty() || operator.len() > 128 {
            return Err(ServiceError::Invalid("--operator: 1 to 128 characters".into()));
        }
        let program = match program {
            Some(id) => Some(
                self.programs
                    .get(id)
                    .ok_or_else(|| ServiceError::Invalid(format!("--program: {id:?} is not configured")))?
                    .id
                    .clone(),
            ),
            None => None,
        };
        let mut event = self.service_event(EXPORT_PID, EXPORT_KIND, "export", Some(operator));
        event.program = program.clone();
        self.commit_event(Pending::own(event, Effect::None)).await?;
        tracing::info!(operator, program = program.as_deref().unwrap_or("*"), "opted-out list export recorded");

        // The scan hands states over as it walks; they are opened and
        // written meanwhile.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, StateItem)>();
        let mut sink = move |ledger: crate::ports::NumberLedger| {
            if let Some(Ok(state)) = ledger.state {
                let _ = tx.send((ledger.pid, state));
            }
        };
        let scan = async move {
            let scanned = self.store.scan_ledger(options, &mut sink).await;
            drop(sink);
            scanned
        };
        let mut report = ExportReport::default();
        let consume = async {
            while let Some((pid, state)) = rx.recv().await {
                if pid == EXPORT_PID {
                    continue;
                }
                report.numbers += 1;
                let Some(at) = opted_out_at(&state.consent, program.as_deref()) else { continue };
                if state.pid != pid || state.quarantine.is_some() || !self.crypto.verify_state_tag(&pid, &state) {
                    report.unverified += 1;
                    continue;
                }
                // An erased number has no number left to export.
                let Some(sealed) = &state.phone else { continue };
                let number = self.crypto.open(sealed, &phone_pk(&state.pid), STATE_SK, "phone").await?;
                each(ExportRow { number, opted_out_at: at, program: program.clone() })
                    .map_err(|e| ServiceError::Invalid(format!("writing the export: {e}")))?;
                report.exported += 1;
            }
            Ok::<_, ServiceError>(())
        };
        let (scanned, consumed) = tokio::join!(scan, consume);
        scanned?;
        consumed?;
        Ok(report)
    }
}

/// A row's second replay key, from what it says rather than where it is: the
/// number (its blind index), the scope and its own time, or "untimed". A
/// corrected file (another digest) or another list holding the same opt-out
/// is then a duplicate, not a second opt-out at a later import's time that
/// would override an opt-in recorded in between.
fn content_key(pid: &str, scope: &Scope, at: Option<OffsetDateTime>) -> String {
    use sha2::{Digest, Sha256};
    let scope = match scope {
        Scope::All => "*".to_owned(),
        Scope::Program { program } => format!("p:{program}"),
        Scope::Categories { program, categories } => {
            let mut categories = categories.clone();
            categories.sort();
            format!("c:{program}:{}", categories.join(","))
        }
    };
    let at = at.map_or_else(|| "untimed".to_owned(), |at| at.unix_timestamp_nanos().to_string());
    let digest = Sha256::digest(format!("{pid}\u{1f}{scope}\u{1f}{at}"));
    dedup_pk(IMPORT_SOURCE, &format!("row:{}", hex::encode(&digest[..16])))
}

/// When the number was opted out, if it is: of every program (an opt-out
/// of all that no later opt-in of any program or category follows), or of
/// one program (the later of the global and the program's marks is an
/// opt-out).
pub fn opted_out_at(consent: &ConsentState, program: Option<&str>) -> Option<OffsetDateTime> {
    let global = consent.marks.get("*");
    match program {
        None => {
            let global = global.filter(|m| m.consent == Consent::OptOut)?;
            let reopened =
                consent.marks.values().any(|m| m.consent == Consent::OptIn && m.occurred_at > global.occurred_at);
            (!reopened).then_some(global.occurred_at)
        }
        Some(program) => {
            if !consent.program_opted_out(program) {
                return None;
            }
            [global, consent.marks.get(&format!("{program}/*"))]
                .into_iter()
                .flatten()
                .filter(|m| m.consent == Consent::OptOut)
                .map(|m| m.occurred_at)
                .max()
        }
    }
}

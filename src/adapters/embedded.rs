//! The embedded consent store: the data model's items in one `redb` table,
//! keyed by (PK, SK). Every commit is one ACID write transaction, durable
//! (fsync) before it returns, so an acknowledged STOP survives a crash.
//! After an erasure the file is rewritten from its live items, so no freed
//! page keeps an erased value.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::ports::keys::{
    audit_pk, audit_sk_bound, audit_sk_time, link_pk, outbox_due_sk, outbox_sk, phone_pk, review_by_event_pk,
    split_outbox_due_sk, state_version_sk, DEDUP_SK, EVENT_END, EVENT_PREFIX, KEYRING_PK, KEYRING_SK, LINK_SK,
    OUTBOX_DUE_PK, OUTBOX_END, OUTBOX_PREFIX, REVIEW_PK, SK_MAX, SK_MIN, STATE_SK, USAGE_SK,
};
use crate::ports::{
    distinct_usages, AuditEntry, CommitOutcome, ConsentStore, DeliveryStatus, EventItem, LedgerWrite, LinkItem,
    NumberLedger, OutboxItem, ReviewItem, ScanOptions, StateItem, StateRead, StoreError, UsageItem, WrappedEvidenceKey,
    WrappedKeys,
};

pub const DATABASE_FILE: &str = "ledger.redb";
const COMPACT_FILE: &str = "ledger.redb.compact";
const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");

/// What a recovery from a damaged or missing ledger takes, for start-up errors.
pub const RECOVERY: &str = "restore the data directory (ledger.redb and keyring.json together) from a backup; \
     or, to start with an empty ledger and lose every recorded opt-out, move the whole data directory aside";

#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Operations hold it shared; the compaction after an erasure holds it
    /// exclusively while it swaps the file, so reads in flight finish first.
    db: RwLock<Arc<Database>>,
}

/// An idempotency marker: kept for ever, so a replay at any age is known.
/// (Markers written by older versions carry an `expires_at`, now ignored.)
#[derive(Serialize, Deserialize)]
struct DedupItem {
    event_id: String,
}

/// An entry of the pending-outbox index: when the item is next due.
#[derive(Serialize, Deserialize)]
struct DueEntry {
    #[serde(default, with = "time::serde::rfc3339::option")]
    next_attempt_at: Option<time::OffsetDateTime>,
}

type Items<'t> = redb::Table<'t, (&'static str, &'static str), &'static [u8]>;

/// Writes an outbox item and keeps the pending index in step with it.
fn put_outbox(table: &mut Items<'_>, item: &OutboxItem) -> Result<(), StoreError> {
    let pk = phone_pk(&item.pid);
    let sk = outbox_sk(&item.event_id);
    table.insert((pk.as_str(), sk.as_str()), encode(item)?.as_slice()).map_err(unavailable)?;
    let due = outbox_due_sk(&item.pid, &item.event_id);
    if item.delivery.status == DeliveryStatus::Pending {
        let entry = DueEntry { next_attempt_at: item.delivery.next_attempt_at };
        table.insert((OUTBOX_DUE_PK, due.as_str()), encode(&entry)?.as_slice()).map_err(unavailable)?;
    } else {
        table.remove((OUTBOX_DUE_PK, due.as_str())).map_err(unavailable)?;
    }
    Ok(())
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(item: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(item).map_err(|e| StoreError::Corrupt(format!("item does not serialise: {e}")))
}

/// What is at `dir/ledger.redb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerFile {
    Missing,
    /// There, but 0 bytes long: not a ledger.
    Empty,
    Present,
}

pub fn ledger_file(dir: &Path) -> Result<LedgerFile, StoreError> {
    let path = dir.join(DATABASE_FILE);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() == 0 => Ok(LedgerFile::Empty),
        Ok(_) => Ok(LedgerFile::Present),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LedgerFile::Missing),
        Err(e) => Err(unavailable(format!("{}: {e}", path.display()))),
    }
}

// redb's file header (redb 2, `tree_store/page_store/header.rs`): what its
// open asserts (and aborts a release build on) when it does not hold.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
const REDB_HEADER_SIZE: usize = 320;
const REDB_PAGE_SIZE_OFFSET: usize = 12;

fn damaged(path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!(
        "the ledger {} is damaged ({why}); refusing to start rather than start with an empty ledger: {RECOVERY}",
        path.display()
    ))
}

/// Checks what redb would otherwise assert on: the magic number, the page
/// size, and that the file is as long as its header says (a truncated file).
fn check_header(path: &Path) -> Result<(), StoreError> {
    let mut file = File::open(path).map_err(|e| damaged(path, e))?;
    let len = file.metadata().map_err(|e| damaged(path, e))?.len();
    let mut header = [0u8; REDB_HEADER_SIZE];
    if len < REDB_HEADER_SIZE as u64 {
        return Err(damaged(path, format!("{len} bytes, shorter than a database header")));
    }
    file.read_exact(&mut header).map_err(|e| damaged(path, e))?;
    if header[..REDB_MAGIC.len()] != REDB_MAGIC {
        return Err(damaged(path, "not a redb database file"));
    }
    let u32_at = |offset: usize| {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&header[offset..offset + 4]);
        u64::from(u32::from_le_bytes(bytes))
    };
    let page_size = u32_at(REDB_PAGE_SIZE_OFFSET);
    let (region_header_pages, region_max_data_pages) = (u32_at(16), u32_at(20));
    let (full_regions, trailing_pages) = (u32_at(24), u32_at(28));
    if !page_size.is_power_of_two() || page_size < REDB_HEADER_SIZE as u64 || region_max_data_pages == 0 {
        return Err(damaged(path, "its header is invalid"));
    }
    if full_regions == 0 && trailing_pages == 0 {
        return Err(damaged(path, "its header names no data"));
    }
    let region = |pages: u64| (region_header_pages + pages) * page_size;
    let expected = page_size
        + full_regions * region(region_max_data_pages)
        + if trailing_pages > 0 { region(trailing_pages) } else { 0 };
    if len < expected {
        return Err(damaged(path, format!("truncated: {len} of {expected} bytes")));
    }
    Ok(())
}

/// Opens (or creates) a redb file, turning any panic of redb's into an error
/// where panics unwind.
fn open_database(path: &Path, create: bool) -> Result<Database, StoreError> {
    let opened = std::panic::catch_unwind(|| if create { Database::create(path) } else { Database::open(path) });
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(damaged(path, e)),
        Err(_) => Err(damaged(path, "the database refused to open")),
    }
}

fn create_table(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    txn.open_table(ITEMS).map_err(unavailable)?;
    txn.commit().map_err(unavailable)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    let _ = dir;
    Ok(())
}

impl EmbeddedStore {
    /// Opens `dir/ledger.redb`, creating it when there is none. A file that
    /// is there but empty, truncated or not a redb file is refused with an
    /// error naming it (never opened, never started over).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DATABASE_FILE);
        let db = match ledger_file(dir)? {
            LedgerFile::Missing => open_database(&path, true)?,
            LedgerFile::Empty => return Err(damaged(&path, "0 bytes")),
            LedgerFile::Present => {
                check_header(&path)?;
                open_database(&path, false)?
            }
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(unavailable)?;
        }
        create_table(&db)?;
        Ok(EmbeddedStore { inner: Arc::new(Inner { path, db: RwLock::new(Arc::new(db)) }) })
    }

    /// A short read-only transaction on the authorization path (a state, a
    /// usage, a batch of them: microseconds from redb's cache), run in place
    /// when the ledger lock is free: a hop to the blocking pool costs more
    /// than the read (two thread wake-ups; three quarters of an
    /// authorization's time under load, `scripts/bench-http`). While
    /// compaction holds the lock it waits on the blocking pool, as before.
    async fn reading<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let f = match self.inner.db.try_read() {
            Ok(db) => return f(&db),
            Err(_) => f,
        };
        self.blocking(f).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let db = inner.db.read().map_err(|_| unavailable("ledger lock poisoned"))?;
            f(&db)
        })
        .await
        .map_err(unavailable)?
    }

    /// Rewrites the ledger from its live items into a fresh file, swaps it
    /// in atomically (rename, directory fsync), then overwrites the old
    /// file's bytes: redb reuses freed pages but never clears them, so
    /// without this an erased value stays readable in the file.
    async fn compact(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.db.write().map_err(|_| unavailable("ledger lock poisoned"))?;
            let dir = inner.path.parent().map(Path::to_path_buf).unwrap_or_default();
            let fresh_path = dir.join(COMPACT_FILE);
            let _ = std::fs::remove_file(&fresh_path);
            {
                let fresh = Database::create(&fresh_path).map_err(unavailable)?;
                let read = guard.begin_read().map_err(unavailable)?;
                let from = read.open_table(ITEMS).map_err(unavailable)?;
                let write = fresh.begin_write().map_err(unavailable)?;
                {
                    let mut to = write.open_table(ITEMS).map_err(unavailable)?;
                    for entry in from.iter().map_err(unavailable)? {
                        let (key, value) = entry.map_err(unavailable)?;
                        to.insert(key.value(), value.value()).map_err(unavailable)?;
                    }
                }
                write.commit().map_err(unavailable)?;
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&fresh_path, std::fs::Permissions::from_mode(0o600)).map_err(unavailable)?;
            }
            File::open(&fresh_path).and_then(|f| f.sync_all()).map_err(unavailable)?;
            // The old file, kept open to overwrite once it is unlinked.
            let mut old = std::fs::OpenOptions::new().read(true).write(true).open(&inner.path).map_err(unavailable)?;
            std::fs::rename(&fresh_path, &inner.path).map_err(unavailable)?;
            sync_dir(&dir).map_err(unavailable)?;
            let reopened = Database::open(&inner.path).map_err(unavailable)?;
            // In-flight operations held the lock shared: none is left.
            *guard = Arc::new(reopened);
            drop(guard);
            let len = old.seek(SeekFrom::End(0)).map_err(unavailable)?;
            old.seek(SeekFrom::Start(0)).map_err(unavailable)?;
            let zeros = vec![0u8; 1 << 16];
            let mut left = len;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                old.write_all(&zeros[..n]).map_err(unavailable)?;
                left -= n as u64;
            }
            old.sync_all().map_err(unavailable)?;
            Ok(())
        })
        .await
        .map_err(unavailable)?
    }
}

impl EmbeddedStore {
    /// One page, newest first: up to `limit` items of `pk` whose sort keys
    /// are in `start..end`, and the last one's sort key as the next page's
    /// `end` when the page is full.
    async fn page_back<T: DeserializeOwned + Send + 'static>(
        &self,
        pk: String,
        start: &'static str,
        end: String,
        limit: usize,
    ) -> Result<(Vec<T>, Option<String>), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let range = table.range((pk.as_str(), start)..(pk.as_str(), end.as_str())).map_err(unavailable)?;
            let (mut page, mut last) = (Vec::new(), None);
            for entry in range.rev().take(limit) {
                let (key, value) = entry.map_err(unavailable)?;
                page.push(decode::<T>(value.value())?);
                last = Some(key.value().1.to_owned());
            }
            let next = if page.len() == limit { last } else { None };
            Ok((page, next))
        })
        .await
    }

    /// One item by its key.
    async fn get<T: DeserializeOwned + Send + 'static>(&self, pk: String, sk: String) -> Result<Option<T>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let item = table.get((pk.as_str(), sk.as_str())).map_err(unavailable)?;
            item.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    /// Every item of one number whose sort key is in `start..end`, in
    /// sort-key order.
    async fn items<T: DeserializeOwned + Send + 'static>(
        &self,
        pid: &str,
        start: &'static str,
        end: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let pk = phone_pk(pid);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let range = table.range((pk.as_str(), start)..(pk.as_str(), end)).map_err(unavailable)?;
            range.map(|entry| decode(entry.map_err(unavailable)?.1.value())).collect()
        })
        .await
    }
}

/// The usage of one number, read in `table` (a read or write transaction's).
fn usage_item(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    pid: &str,
) -> Result<Option<UsageItem>, StoreError> {
    let pk = phone_pk(pid);
    let item = table.get((pk.as_str(), USAGE_SK)).map_err(unavailable)?;
    item.map(|v| decode(v.value())).transpose()
}

/// Writes every usage whose stored version is still the expected one, in
/// the open transaction; false (and nothing written) on the first that
/// changed. The caller commits only on true.
fn put_usages_in(table: &mut Items<'_>, items: &[(UsageItem, Option<u64>)]) -> Result<bool, StoreError> {
    for (item, expected) in items {
        if usage_item(table, &item.pid)?.map(|u| u.version) != *expected {
            return Ok(false);
        }
    }
    for (item, _) in items {
        let pk = phone_pk(&item.pid);
        table.insert((pk.as_str(), USAGE_SK), encode(item)?.as_slice()).map_err(unavailable)?;
    }
    Ok(true)
}

/// The `PHONE#` partitions: every key from `PHONE#` up to (not including)
/// `PHONE$`.
const PHONE_FIRST: &str = "PHONE#";
const PHONE_END: &str = "PHONE$";

/// Gathers one number's `STATE` and events, item by item in key order, and
/// hands each finished number on.
struct LedgerGrouper<'a> {
    current: Option<NumberLedger>,
    each: &'a mut (dyn FnMut(NumberLedger) + Send),
}

impl LedgerGrouper<'_> {
    fn item(&mut self, pk: &str, sk: &str, value: &[u8]) {
        let Some(pid) = crate::ports::keys::pid_of(pk) else { return };
        if self.current.as_ref().is_none_or(|c| c.pid != pid) {
            self.flush();
            self.current = Some(NumberLedger { pid: pid.to_owned(), state: None, events: Vec::new() });
        }
        let Some(current) = self.current.as_mut() else { return };
        let text = |e: StoreError| e.to_string();
        if sk == STATE_SK {
            current.state = Some(decode::<StateItem>(value).map_err(text));
        } else if sk.starts_with(EVENT_PREFIX) {
            current.events.push((sk.to_owned(), decode::<EventItem>(value).map_err(text)));
        }
    }

    fn flush(&mut self) {
        if let Some(done) = self.current.take() {
            (self.each)(done);
        }
    }
}

/// Checks one ledger write against the open transaction's table and, when
/// nothing refuses it, applies it (every check comes before any insert, so a
/// refused write leaves the table as it was).
fn commit_in(table: &mut Items<'_>, write: &LedgerWrite) -> Result<CommitOutcome, StoreError> {
    let pk = phone_pk(&write.event.pid);
    let dedup_keys = || std::iter::once(&write.dedup_key).chain(&write.extra_dedup_keys);
    for key in dedup_keys() {
        if table.get((key.as_str(), DEDUP_SK)).map_err(unavailable)?.is_some() {
            return Ok(CommitOutcome::Duplicate);
        }
    }
    let stored_version = table
        .get((pk.as_str(), STATE_SK))
        .map_err(unavailable)?
        .map(|v| decode::<StateItem>(v.value()).map(|s| s.version))
        .transpose()?;
    if let Some(state) = &write.state {
        if stored_version != write.expected_version {
            return Ok(CommitOutcome::VersionConflict);
        }
        let marker = state_version_sk(state.version);
        if table.get((pk.as_str(), marker.as_str())).map_err(unavailable)?.is_some() {
            return Ok(CommitOutcome::Tampered);
        }
        table.insert((pk.as_str(), marker.as_str()), b"{}".as_slice()).map_err(unavailable)?;
        table.insert((pk.as_str(), STATE_SK), encode(state)?.as_slice()).map_err(unavailable)?;
    } else if let (Some(initial), None) = (&write.initial_state, stored_version) {
        // No STATE: a first event, or a deleted STATE. An event or
        // outbox item of the number already there (anything at or
        // below STATE, as `read_state` sees it) means a deletion;
        // a usage item (sends counted before any event) does not.
        let (first, last) = ((pk.as_str(), SK_MIN), (pk.as_str(), STATE_SK));
        if table.range(first..=last).map_err(unavailable)?.next().is_some() {
            return Ok(CommitOutcome::Tampered);
        }
        let marker = state_version_sk(initial.version);
        table.insert((pk.as_str(), marker.as_str()), b"{}".as_slice()).map_err(unavailable)?;
        table.insert((pk.as_str(), STATE_SK), encode(initial)?.as_slice()).map_err(unavailable)?;
    }
    for key in dedup_keys() {
        let dedup = DedupItem { event_id: write.event.event_id.clone() };
        table.insert((key.as_str(), DEDUP_SK), encode(&dedup)?.as_slice()).map_err(unavailable)?;
    }
    table
        .insert((pk.as_str(), write.event.sort_key().as_str()), encode(&write.event)?.as_slice())
        .map_err(unavailable)?;
    if let Some(outbox) = &write.outbox {
        put_outbox(table, outbox)?;
    }
    let (opened, closed) = write.review_changes();
    if let Some(review) = opened {
        let value = encode(review)?;
        for (pk, sk) in review.keys() {
            table.insert((pk.as_str(), sk.as_str()), value.as_slice()).map_err(unavailable)?;
        }
    }
    for (pk, sk) in closed.flat_map(ReviewItem::keys) {
        table.remove((pk.as_str(), sk.as_str())).map_err(unavailable)?;
    }
    if let Some(audit) = &write.audit {
        let (pk, sk) = (audit.partition_key(), audit.sort_key());
        table.insert((pk.as_str(), sk.as_str()), encode(audit)?.as_slice()).map_err(unavailable)?;
    }
    Ok(CommitOutcome::Committed)
}

#[async_trait]
impl ConsentStore for EmbeddedStore {
    /// The last item of the number at or below `STATE`, in one read
    /// transaction (a snapshot): the `STATE` if there is one.
    async fn read_state(&self, pid: &str) -> Result<StateRead, StoreError> {
        let pk = phone_pk(pid);
        self.reading(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let mut range = table.range((pk.as_str(), SK_MIN)..=(pk.as_str(), STATE_SK)).map_err(unavailable)?;
            match range.next_back().transpose().map_err(unavailable)? {
                None => Ok(StateRead::Absent),
                Some((key, value)) if key.value().1 == STATE_SK => Ok(StateRead::Found(decode(value.value())?)),
                Some(_) => Ok(StateRead::MissingWithHistory),
            }
        })
        .await
    }

    async fn get_states(&self, pids: &[String]) -> Result<Vec<Option<StateItem>>, StoreError> {
        let pids = pids.to_vec();
        // One read transaction (a snapshot) for the whole batch.
        self.reading(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            pids.iter()
                .map(|pid| {
                    let pk = phone_pk(pid);
                    let item = table.get((pk.as_str(), STATE_SK)).map_err(unavailable)?;
                    item.map(|v| decode(v.value())).transpose()
                })
                .collect()
        })
        .await
    }

    async fn link(&self, hash: &str) -> Result<Option<LinkItem>, StoreError> {
        self.get(link_pk(hash), LINK_SK.to_owned()).await
    }

    /// One write transaction, durable before it returns.
    async fn put_link(&self, item: &LinkItem) -> Result<bool, StoreError> {
        let pk = item.partition_key();
        let bytes = encode(item)?;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let written = {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                if table.get((pk.as_str(), LINK_SK)).map_err(unavailable)?.is_some() {
                    false
                } else {
                    table.insert((pk.as_str(), LINK_SK), bytes.as_slice()).map_err(unavailable)?;
                    true
                }
            };
            txn.commit().map_err(unavailable)?;
            Ok(written)
        })
        .await
    }

    async fn wrapped_keys(&self) -> Result<Option<WrappedKeys>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let item = table.get((KEYRING_PK, KEYRING_SK)).map_err(unavailable)?;
            item.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn add_evidence_key_if_absent(&self, key: &WrappedEvidenceKey) -> Result<WrappedKeys, StoreError> {
        let key = key.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let kept = {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                let existing = table.get((KEYRING_PK, KEYRING_SK)).map_err(unavailable)?.map(|v| decode(v.value()));
                let mut keys: WrappedKeys =
                    existing.ok_or_else(|| StoreError::Unavailable("no keyring to add to".into()))??;
                if keys.evidence_keys.is_empty() {
                    keys.evidence_keys.push(key);
                    table.insert((KEYRING_PK, KEYRING_SK), encode(&keys)?.as_slice()).map_err(unavailable)?;
                }
                keys
            };
            txn.commit().map_err(unavailable)?;
            Ok(kept)
        })
        .await
    }

    async fn put_wrapped_keys_if_absent(&self, keys: &WrappedKeys) -> Result<WrappedKeys, StoreError> {
        let keys = keys.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let kept = {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                let existing = table.get((KEYRING_PK, KEYRING_SK)).map_err(unavailable)?.map(|v| decode(v.value()));
                match existing {
                    Some(kept) => kept?,
                    None => {
                        table.insert((KEYRING_PK, KEYRING_SK), encode(&keys)?.as_slice()).map_err(unavailable)?;
                        keys
                    }
                }
            };
            txn.commit().map_err(unavailable)?;
            Ok(kept)
        })
        .await
    }

    async fn commit(&self, write: LedgerWrite) -> Result<CommitOutcome, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let outcome = {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                commit_in(&mut table, &write)?
            };
            if outcome == CommitOutcome::Committed {
                // redb's default durability fsyncs before commit returns.
                txn.commit().map_err(unavailable)?;
            }
            Ok(outcome)
        })
        .await
    }

    /// One write transaction for the whole batch: each write checked and
    /// applied in turn (a refused one writes nothing), one fsync at the end.
    async fn commit_batch(&self, writes: Vec<LedgerWrite>) -> Result<Vec<CommitOutcome>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let outcomes = {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                writes.iter().map(|write| commit_in(&mut table, write)).collect::<Result<Vec<_>, _>>()?
            };
            txn.commit().map_err(unavailable)?;
            Ok(outcomes)
        })
        .await
    }

    async fn events(&self, pid: &str) -> Result<Vec<EventItem>, StoreError> {
        self.items(pid, EVENT_PREFIX, EVENT_END).await
    }

    async fn outbox(&self, pid: &str) -> Result<Vec<OutboxItem>, StoreError> {
        self.items(pid, OUTBOX_PREFIX, OUTBOX_END).await
    }

    async fn outbox_item(&self, pid: &str, event_id: &str) -> Result<Option<OutboxItem>, StoreError> {
        self.get(phone_pk(pid), outbox_sk(event_id)).await
    }

    async fn event(&self, pid: &str, sk: &str) -> Result<Option<EventItem>, StoreError> {
        self.get(phone_pk(pid), sk.to_owned()).await
    }

    async fn reviews_page(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ReviewItem>, Option<String>), StoreError> {
        self.page_back(REVIEW_PK.to_owned(), SK_MIN, before.unwrap_or(SK_MAX).to_owned(), limit).await
    }

    async fn review(&self, event_id: &str) -> Result<Option<ReviewItem>, StoreError> {
        self.get(review_by_event_pk(event_id), DEDUP_SK.to_owned()).await
    }

    /// One read transaction: a range of each day's partition in turn.
    async fn audit_page(
        &self,
        from: time::OffsetDateTime,
        to: time::OffsetDateTime,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<String>), StoreError> {
        let after = after.map(str::to_owned);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let start = after.as_deref().and_then(audit_sk_time).map_or(from, |at| at.max(from));
            let (low, high) = (audit_sk_bound(from), audit_sk_bound(to));
            let mut page = Vec::new();
            let mut day = start;
            while audit_pk(day) <= audit_pk(to) && page.len() < limit {
                let pk = audit_pk(day);
                let range =
                    table.range((pk.as_str(), low.as_str())..(pk.as_str(), high.as_str())).map_err(unavailable)?;
                for entry in range {
                    let (key, value) = entry.map_err(unavailable)?;
                    if after.as_deref().is_some_and(|after| key.value().1 <= after) {
                        continue;
                    }
                    page.push(decode::<AuditEntry>(value.value())?);
                    if page.len() == limit {
                        break;
                    }
                }
                day += time::Duration::days(1);
            }
            let next = (page.len() == limit).then(|| page.last().map(AuditEntry::sort_key)).flatten();
            Ok((page, next))
        })
        .await
    }

    /// One write transaction; `reclaim` rewrites the file afterwards.
    async fn delete_events(&self, pid: &str, sort_keys: &[String]) -> Result<usize, StoreError> {
        let pk = phone_pk(pid);
        let sort_keys = sort_keys.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let mut deleted = 0;
            {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                for sk in sort_keys.iter().filter(|sk| sk.starts_with(EVENT_PREFIX)) {
                    if table.remove((pk.as_str(), sk.as_str())).map_err(unavailable)?.is_some() {
                        deleted += 1;
                    }
                }
            }
            txn.commit().map_err(unavailable)?;
            Ok(deleted)
        })
        .await
    }

    async fn reclaim(&self) -> Result<(), StoreError> {
        self.compact().await
    }

    async fn update_outbox(&self, item: &OutboxItem, expected: u64) -> Result<bool, StoreError> {
        let item = item.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                let (pk, sk) = (phone_pk(&item.pid), outbox_sk(&item.event_id));
                let stored = table
                    .get((pk.as_str(), sk.as_str()))
                    .map_err(unavailable)?
                    .map(|v| decode::<OutboxItem>(v.value()))
                    .transpose()?;
                if stored.is_none_or(|stored| stored.delivery.revision != expected) {
                    return Ok(false);
                }
                put_outbox(&mut table, &item)?;
            }
            txn.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn due_outbox(&self, now: time::OffsetDateTime, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let mut due = Vec::new();
            for entry in table.range((OUTBOX_DUE_PK, SK_MIN)..(OUTBOX_DUE_PK, SK_MAX)).map_err(unavailable)? {
                let (key, value) = entry.map_err(unavailable)?;
                let when: DueEntry = decode(value.value())?;
                if when.next_attempt_at.is_some_and(|at| at > now) {
                    continue;
                }
                let sk = key.value().1;
                let (pid, event_id) = split_outbox_due_sk(sk)
                    .ok_or_else(|| StoreError::Corrupt("a malformed outbox index key".into()))?;
                due.push((pid.to_owned(), event_id.to_owned()));
                if due.len() >= limit {
                    break;
                }
            }
            Ok(due)
        })
        .await
    }

    async fn events_page(
        &self,
        pid: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<EventItem>, Option<String>), StoreError> {
        self.page_back(phone_pk(pid), EVENT_PREFIX, before.unwrap_or(EVENT_END).to_owned(), limit).await
    }

    async fn usage(&self, pid: &str) -> Result<Option<UsageItem>, StoreError> {
        let pid = pid.to_owned();
        self.reading(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            usage_item(&table, &pid)
        })
        .await
    }

    /// One reverse range in one read transaction.
    async fn read_state_with_usage(&self, pid: &str) -> Result<(StateRead, Option<UsageItem>), StoreError> {
        let pk = phone_pk(pid);
        self.reading(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let mut range = table.range((pk.as_str(), SK_MIN)..=(pk.as_str(), USAGE_SK)).map_err(unavailable)?;
            let mut usage = None;
            let mut last = range.next_back().transpose().map_err(unavailable)?;
            if let Some((key, value)) = &last {
                if key.value().1 == USAGE_SK {
                    usage = Some(decode::<UsageItem>(value.value())?);
                    last = range.next_back().transpose().map_err(unavailable)?;
                }
            }
            let state = match last {
                None => StateRead::Absent,
                Some((key, value)) if key.value().1 == STATE_SK => StateRead::Found(decode(value.value())?),
                Some(_) => StateRead::MissingWithHistory,
            };
            Ok((state, usage))
        })
        .await
    }

    /// One read transaction: a consistent snapshot of all of them.
    async fn usages(&self, pids: &[String]) -> Result<Vec<Option<UsageItem>>, StoreError> {
        let pids = pids.to_vec();
        self.reading(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            pids.iter().map(|pid| usage_item(&table, pid)).collect()
        })
        .await
    }

    async fn put_usage(&self, item: &UsageItem, expected: Option<u64>) -> Result<bool, StoreError> {
        Ok(self.put_usages(&[(item.clone(), expected)]).await?.first().copied().unwrap_or(false))
    }

    /// One write transaction for all of them: all written, or none.
    async fn put_usages(&self, items: &[(UsageItem, Option<u64>)]) -> Result<Vec<bool>, StoreError> {
        distinct_usages(items)?;
        let items = items.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let written = {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                put_usages_in(&mut table, &items)?
            };
            if written {
                txn.commit().map_err(unavailable)?;
            } else {
                txn.abort().map_err(unavailable)?;
            }
            Ok(vec![written; items.len()])
        })
        .await
    }

    /// Scrubs, then compacts the file so the old values are gone from it.
    async fn scrub(&self, pid: &str) -> Result<usize, StoreError> {
        let pk = phone_pk(pid);
        let changed = self
            .blocking(move |db| {
                let txn = db.begin_write().map_err(unavailable)?;
                let mut changed = 0;
                {
                    let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                    let events: Vec<EventItem> = table
                        .range((pk.as_str(), EVENT_PREFIX)..(pk.as_str(), EVENT_END))
                        .map_err(unavailable)?
                        .map(|entry| decode(entry.map_err(unavailable)?.1.value()))
                        .collect::<Result<_, _>>()?;
                    for mut event in events {
                        if event.text.take().is_some() | event.evidence.take().is_some() {
                            table
                                .insert((pk.as_str(), event.sort_key().as_str()), encode(&event)?.as_slice())
                                .map_err(unavailable)?;
                            changed += 1;
                        }
                    }
                    // Pending replies are deleted; the others keep their
                    // status but not the numbers.
                    let outbox: Vec<OutboxItem> = table
                        .range((pk.as_str(), OUTBOX_PREFIX)..(pk.as_str(), OUTBOX_END))
                        .map_err(unavailable)?
                        .map(|entry| decode(entry.map_err(unavailable)?.1.value()))
                        .collect::<Result<_, _>>()?;
                    for mut item in outbox {
                        if item.delivery.status == DeliveryStatus::Pending {
                            table.remove((pk.as_str(), outbox_sk(&item.event_id).as_str())).map_err(unavailable)?;
                            let due = outbox_due_sk(&item.pid, &item.event_id);
                            table.remove((OUTBOX_DUE_PK, due.as_str())).map_err(unavailable)?;
                        } else if item.to.take().is_some() | item.from.take().is_some() {
                            put_outbox(&mut table, &item)?;
                        }
                    }
                }
                txn.commit().map_err(unavailable)?;
                Ok(changed)
            })
            .await?;
        self.compact().await?;
        Ok(changed)
    }

    /// One read transaction over every `PHONE#` partition: a snapshot.
    async fn scan_ledger(
        &self,
        _options: ScanOptions,
        each: &mut (dyn FnMut(NumberLedger) + Send),
    ) -> Result<(), StoreError> {
        // Held (shared) for the whole scan, so no compaction swaps the file
        // under it. Reads from the calling task: a verification is a tool's
        // only work, not the server's.
        let db = self.inner.db.read().map_err(|_| unavailable("ledger lock poisoned"))?;
        let txn = db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(ITEMS).map_err(unavailable)?;
        let mut grouper = LedgerGrouper { current: None, each };
        for entry in table.range((PHONE_FIRST, SK_MIN)..(PHONE_END, SK_MIN)).map_err(unavailable)? {
            let (key, value) = entry.map_err(unavailable)?;
            let (pk, sk) = key.value();
            grouper.item(pk, sk, value.value());
        }
        grouper.flush();
        Ok(())
    }

    async fn number_ledger(&self, pid: &str) -> Result<NumberLedger, StoreError> {
        let pk = phone_pk(pid);
        let pid = pid.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let mut found = None;
            let mut each = |ledger: NumberLedger| found = Some(ledger);
            let mut grouper = LedgerGrouper { current: None, each: &mut each };
            for entry in table.range((pk.as_str(), SK_MIN)..(pk.as_str(), SK_MAX)).map_err(unavailable)? {
                let (key, value) = entry.map_err(unavailable)?;
                let (pk, sk) = key.value();
                grouper.item(pk, sk, value.value());
            }
            grouper.flush();
            Ok(found.unwrap_or(NumberLedger { pid, state: None, events: Vec::new() }))
        })
        .await
    }

    fn table(&self) -> &str {
        "embedded"
    }
}

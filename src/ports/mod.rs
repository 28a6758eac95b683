//! The traits the core needs from the outside world: a consent store, a key
//! service and a clock. Adapters implement them; the binary picks them by
//! config.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::domain::{ConsentState, ReplyKind};

pub mod keys;

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The KMS encryption context of a data key: coarse (application, purpose,
/// table) so one cached key serves many records and IAM can condition on it.
pub type EncryptionContext = BTreeMap<String, String>;

pub struct DataKey {
    pub plaintext: Zeroizing<[u8; 32]>,
    /// The key as the key service wrapped it; stored beside every value.
    pub wrapped: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key service unavailable: {0}")]
    Unavailable(String),
    #[error("wrapped key was refused: {0}")]
    Refused(String),
}

#[async_trait]
pub trait KeyService: Send + Sync {
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyError>;
    async fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError>;
}

/// `KEYRING` / `v1`: the index and integrity keys, wrapped by the key
/// service and kept in the store beside the data they protect (useless
/// without the key service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKeys {
    pub index_key: String,
    /// Integrity keys by id; the newest (last) signs, any verifies.
    pub integrity_keys: Vec<WrappedIntegrityKey>,
    /// Ed25519 keys that sign evidence bundles (each a 32-byte seed: a data
    /// key of the key service); the newest (last) signs. Empty in a keyring
    /// from before evidence bundles: `provision` adds one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence_keys: Vec<WrappedEvidenceKey>,
}

/// An evidence signing key: `id` names its public half
/// (`ed25519-<first 8 bytes of SHA-256(public key), hex>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedEvidenceKey {
    pub id: String,
    pub wrapped: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedIntegrityKey {
    pub id: String,
    pub wrapped: String,
}

/// `PHONE#<pid>` / `STATE`: the current consent of one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateItem {
    pub pid: String,
    pub version: u64,
    pub consent: ConsentState,
    /// The E.164 number, sealed; `None` once erased.
    pub phone: Option<String>,
    /// HMAC over key, consent and version, and the chain head and
    /// quarantine when present (see `crypto::Crypto::state_tag`).
    pub tag: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The newest link of the number's event chain (`None`: a state written
    /// before the chain, whose next event starts it; see `service::ledger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<ChainHead>,
    /// Set by `verify-ledger` when the number's events disagree with their
    /// chain: every authorization of it denies (`unavailable`). No PHI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
}

/// The head of a number's event chain: the sequence number and MAC of its
/// newest link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: u64,
    pub mac: String,
}

/// An event's place in its number's chain (events ordered by arrival):
/// `mac` is `c1.<integrity key id>.<HMAC>` over the event's fields, `seq`,
/// `prev` and the digests of its sealed values (see `service::ledger`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    pub seq: u64,
    /// The previous link's MAC; for the first link `""` (a new number) or
    /// `"legacy"` (a number with events from before the chain).
    pub prev: String,
    /// SHA-256 (base64url) of the sealed `text` / `evidence` as written:
    /// they stay when erasure removes the sealed values.
    #[serde(default)]
    pub text_digest: Option<String>,
    #[serde(default)]
    pub evidence_digest: Option<String>,
    pub mac: String,
}

/// `PHONE#<pid>` / `EVENT#<occurred_at>#<event_id>`: one immutable ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventItem {
    pub pid: String,
    pub event_id: String,
    /// `opt_out`, `opt_out_all`, `opt_in`, `help`, ...
    pub kind: String,
    /// Who or what produced it: a provider, an API caller, an import.
    pub source: String,
    /// Programs the event applies to; empty means every program.
    pub program: Option<String>,
    pub categories: Vec<String>,
    /// The message text, sealed; `None` once erased or when there was none.
    pub text: Option<String>,
    /// The evidence reference of consent captured elsewhere, sealed.
    #[serde(default)]
    pub evidence: Option<String>,
    /// The API caller that recorded it, read it or erased it.
    #[serde(default)]
    pub caller: Option<String>,
    /// For a `provider_block` event: the provider and its own code
    /// (`telnyx:40300`). No PHI.
    #[serde(default)]
    pub code: Option<String>,
    pub signature_verified: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// Its link in the number's chain, set by the service as it commits
    /// (`None` in events written before the chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<ChainLink>,
}

impl EventItem {
    /// Sort key: event time first, so the ledger reads in event order.
    pub fn sort_key(&self) -> String {
        keys::event_sk(self.occurred_at, &self.event_id)
    }
}

/// `PHONE#<pid>` / `OUTBOX#<event_id>`: a reply that is due but cannot go
/// inline in the webhook's answer, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub pid: String,
    pub event_id: String,
    pub provider: String,
    /// The rendered reply (templates carry no PHI).
    pub body: String,
    /// Sealed E.164 of the patient (`None` once erased), and of the clinic
    /// number to send from (unknown when the provider named only a channel).
    pub to: Option<String>,
    pub from: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    /// Which confirmation it is: only an opt-out's may follow an opt-out.
    /// (`None` in items written before it was kept: treated as not one.)
    #[serde(default)]
    pub kind: Option<ReplyKind>,
    /// The program whose reply it is, when one owns the clinic number.
    #[serde(default)]
    pub program: Option<String>,
    /// When the event it confirms happened (a later STOP supersedes it).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub event_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub delivery: Delivery,
}

/// `REVIEW` / `<time>#<event_id>` (and its copy at `REVIEW#<event_id>`): an
/// unclear message awaiting a staff decision. No PHI: the text stays sealed
/// in its event, the number in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewItem {
    pub pid: String,
    pub event_id: String,
    /// The program whose number received it (`None`: no program owns it).
    pub program: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}

impl ReviewItem {
    pub fn sort_key(&self) -> String {
        keys::review_sk(self.occurred_at, &self.event_id)
    }

    /// Its two keys: the queue entry, and its copy by event id.
    pub fn keys(&self) -> [(String, String); 2] {
        [
            (keys::REVIEW_PK.to_owned(), self.sort_key()),
            (keys::review_by_event_pk(&self.event_id), keys::DEDUP_SK.to_owned()),
        ]
    }

    /// The sort key of the unclear message's own event.
    pub fn event_sort_key(&self) -> String {
        keys::event_sk(self.occurred_at, &self.event_id)
    }
}

/// `AUDIT#<day>` / `<at>#<event_id>`: one access or change a caller made
/// (a record, a revocation, a read of the state, history or review queue, a
/// review decision, an erasure, an evidence export, a purge), written in
/// the same transaction as its event: the access report's index. No PHI:
/// the number only as its blind index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub pid: String,
    /// The event's kind (`state_read`, `history_read`, `erasure`, ...).
    pub kind: String,
    /// The API key's name, or the IAM principal, or the purge's operator.
    pub caller: String,
    /// When it was done (the event's arrival time).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub event_id: String,
    #[serde(default)]
    pub program: Option<String>,
}

impl AuditEntry {
    pub fn partition_key(&self) -> String {
        keys::audit_pk(self.at)
    }

    pub fn sort_key(&self) -> String {
        keys::audit_sk(self.at, &self.event_id)
    }
}

/// A patient preference-page link (`LINK#<hash>` / `-`): which number (its
/// blind index only: the page opens the number sealed in its `STATE`, so an
/// erasure, which removes that, leaves every link of the number opening
/// nothing) and program it opens, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkItem {
    /// base64url SHA-256 of the link's random id.
    pub hash: String,
    pub pid: String,
    /// The digest of the number as sealed in its state when the link was
    /// made (`Crypto::digest`): an erasure removes that, and a number
    /// recorded again after it is sealed anew, so no earlier link opens.
    pub phone_digest: String,
    pub program: String,
    /// The API key's name or IAM principal that asked for it.
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl LinkItem {
    pub fn partition_key(&self) -> String {
        keys::link_pk(&self.hash)
    }
}

/// What a commit does to the review queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewWrite {
    /// An unclear message joins the queue.
    Open(ReviewItem),
    /// A staff decision takes it off.
    Close(ReviewItem),
}

/// Where a reply stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting to be sent (or to be sent again, after a temporary failure).
    #[default]
    Pending,
    /// The provider accepted it.
    Sent,
    /// The provider refused it for good, or every attempt failed.
    Failed,
    /// Not sent: its moment passed (older than `outbox.max_age_seconds`).
    Expired,
    /// Not sent: a later opt-out arrived before it went out.
    Superseded,
}

/// The delivery record of one outbox item. Every change is written only if
/// the stored `revision` is still the one read (compare and set), so two
/// workers never both claim an item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub status: DeliveryStatus,
    pub revision: u64,
    /// Send attempts made so far.
    pub attempts: u32,
    /// A pending item is not tried before this (backoff); `None`: now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The worker holding the item, and until when (a lease that lapses
    /// lets another worker take over a crashed one's item).
    pub lease_owner: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub lease_until: Option<OffsetDateTime>,
    /// When it reached its final status.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The provider's id of the message sent.
    pub provider_message_id: Option<String>,
    /// Why it failed, expired or was superseded, or the last temporary error.
    pub error: Option<String>,
}

/// `PHONE#<pid>` / `STATE#USAGE`: the recent sends of one number, counted by
/// the frequency caps (`domain::volume`). No PHI: program and organization
/// ids, times and reservation ids only. Written by compare and set on
/// `version` (the caller sets the next one), so concurrent reservations for
/// one number never both take the last slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageItem {
    pub pid: String,
    pub version: u64,
    pub sends: Vec<SendRecord>,
}

/// One send reserved (or made) for a number (a domain value, stored as is).
pub use crate::domain::volume::SendRecord;

/// One atomic write: the idempotency markers, the event, an outbox item where
/// a reply is due, and the new state when it changed.
///
/// Idempotency markers never expire: an event id stays known as long as the
/// ledger keeps its events (for ever), so a captured delivery replayed at any
/// age is a duplicate.
///
/// Every commit keeps two invariants of the ledger at rest:
/// - if any event of a number exists, its `STATE` exists: a commit without a
///   new state creates a default one (`initial_state`, version 1) when none is
///   there, without a read; so a missing `STATE` beside events is a deletion;
/// - a `STATE` of version v is written once: its version marker
///   (`PHONE#<pid>` / `STATEV#<v>`) is written with it, and a marker already
///   there means the state was rolled back (`CommitOutcome::Tampered`).
///
/// The service now sets `state` on every write (each event moves the
/// number's chain head, see `service::ledger`); `initial_state` stays part of
/// the contract for writes without one.
#[derive(Debug, Clone)]
pub struct LedgerWrite {
    /// `DEDUP#<source>#<id>`; the write is refused as a duplicate if present.
    pub dedup_key: String,
    /// Further replay keys of the same delivery (e.g. a provider's nonce),
    /// each `DEDUP#...`: all must be absent and all are written; any present
    /// makes the write a duplicate.
    pub extra_dedup_keys: Vec<String>,
    pub event: EventItem,
    pub outbox: Option<OutboxItem>,
    /// New state, written only if the stored version is still `expected_version`
    /// (`None`: no state item may exist yet).
    pub state: Option<StateItem>,
    pub expected_version: Option<u64>,
    /// With no `state`: the version-1 state to create if the number has none
    /// (ignored when a `STATE` exists). The service always sets it then.
    pub initial_state: Option<StateItem>,
    /// A review queue entry to add or remove, in the same transaction.
    pub review: Option<ReviewWrite>,
    /// Further queue entries to remove (an erasure closes every open review
    /// of the number).
    pub close_reviews: Vec<ReviewItem>,
    /// The access report's entry of an event a caller made.
    pub audit: Option<AuditEntry>,
}

impl LedgerWrite {
    /// The review queue item this write opens, and the ones it closes.
    pub fn review_changes(&self) -> (Option<&ReviewItem>, impl Iterator<Item = &ReviewItem>) {
        let (opened, closed) = match &self.review {
            Some(ReviewWrite::Open(review)) => (Some(review), None),
            Some(ReviewWrite::Close(review)) => (None, Some(review)),
            None => (None, None),
        };
        (opened, closed.into_iter().chain(&self.close_reviews))
    }
}

/// What one read of a number's state found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateRead {
    Found(StateItem),
    /// The number has no items: it is new.
    Absent,
    /// No `STATE`, but other items of the number (events, outbox): since
    /// every commit keeps a `STATE` beside its events, it was deleted.
    MissingWithHistory,
}

/// One number's ledger as stored, for verification: its `STATE` and its
/// events with the sort keys they are stored under. An item that does not
/// decode is kept as its error (a break to report, not a failed scan).
#[derive(Debug, Clone)]
pub struct NumberLedger {
    pub pid: String,
    pub state: Option<Result<StateItem, String>>,
    pub events: Vec<(String, Result<EventItem, String>)>,
}

/// How a ledger scan may read: `rate` bounds the read capacity units per
/// second on DynamoDB (the embedded store reads one snapshot, unpaced).
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    pub rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// The dedup marker was already there: a retried delivery, nothing changed.
    Duplicate,
    /// Someone else changed the state since it was read: re-read and retry.
    VersionConflict,
    /// The stored `STATE` was changed behind the service's back: the new
    /// state's version marker was already there (the `STATE` was put back to
    /// an older version), or, on the embedded store, a number with items has
    /// no `STATE` (it was deleted). Nothing was written.
    Tampered,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored item is malformed: {0}")]
    Corrupt(String),
}

#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// One strongly consistent read of one number's state, which also tells
    /// a new number from a deleted `STATE`: the last item of the number at
    /// or below `STATE` in sort order (see `keys`).
    async fn read_state(&self, pid: &str) -> Result<StateRead, StoreError>;
    /// Strongly consistent read of many states (at most 100) in one call,
    /// in the order asked.
    async fn get_states(&self, pids: &[String]) -> Result<Vec<Option<StateItem>>, StoreError>;
    async fn commit(&self, write: LedgerWrite) -> Result<CommitOutcome, StoreError>;
    /// Many writes of distinct numbers (an import's batch), each with the
    /// outcome `commit` would give it, in order. A write that is refused
    /// (duplicate, version conflict, tampered) writes nothing of its own and
    /// does not stop the others. The embedded store commits the batch in one
    /// transaction; DynamoDB in `TransactWriteItems` of at most 100 items.
    /// (No default: a wrapper that forgot it would commit one at a time.)
    async fn commit_batch(&self, writes: Vec<LedgerWrite>) -> Result<Vec<CommitOutcome>, StoreError>;
    /// The ledger of one number, oldest first.
    async fn events(&self, pid: &str) -> Result<Vec<EventItem>, StoreError>;
    /// The outbox items of one number, whatever their status.
    async fn outbox(&self, pid: &str) -> Result<Vec<OutboxItem>, StoreError>;
    /// One outbox item (strongly consistent).
    async fn outbox_item(&self, pid: &str, event_id: &str) -> Result<Option<OutboxItem>, StoreError>;
    /// Replaces an outbox item if the stored one is still at revision
    /// `expected` (the caller sets `item.delivery.revision` to the next
    /// one). False, and nothing written, when it changed or is gone.
    async fn update_outbox(&self, item: &OutboxItem, expected: u64) -> Result<bool, StoreError>;
    /// Up to `limit` pending items due at `now`, as (pid, event id): what a
    /// polling worker sends (on AWS the table's stream feeds the worker).
    async fn due_outbox(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<(String, String)>, StoreError>;
    /// One page of the ledger, newest first: events whose sort key is below
    /// `before` (all when `None`), at most `limit`; and the cursor of the next
    /// page when there may be one.
    async fn events_page(
        &self,
        pid: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<EventItem>, Option<String>), StoreError>;
    /// Erasure: removes the sealed texts and evidence from every event of the
    /// number (kinds and times stay), deletes its pending outbox items and
    /// removes the numbers from the others (their status stays). Safe to
    /// repeat. Returns how many events it changed. The number's usage
    /// (`STATE#USAGE`) stays: it holds no PHI, and its caps still apply.
    async fn scrub(&self, pid: &str) -> Result<usize, StoreError>;
    /// The number's usage (None when it has none), strongly consistent.
    /// Erasure (`scrub`) leaves usage alone: it holds no PHI.
    async fn usage(&self, pid: &str) -> Result<Option<UsageItem>, StoreError>;
    /// The number's state and usage in one strongly consistent read: the
    /// last two items at or below `STATE#USAGE` (which sorts right after
    /// `STATE`), so what `read_state` tells apart, this does too.
    async fn read_state_with_usage(&self, pid: &str) -> Result<(StateRead, Option<UsageItem>), StoreError>;
    /// Many at once (<= 100 pids; one BatchGetItem on DynamoDB, unprocessed
    /// keys retried), in the order asked.
    async fn usages(&self, pids: &[String]) -> Result<Vec<Option<UsageItem>>, StoreError>;
    /// Writes `item` if the stored version is still `expected` (None: must
    /// not exist). False, and nothing written, when it changed (the caller
    /// re-reads and retries). One conditional PutItem on DynamoDB; one
    /// transaction on the embedded store.
    async fn put_usage(&self, item: &UsageItem, expected: Option<u64>) -> Result<bool, StoreError>;
    /// Several at once, each if its stored version is still the one given
    /// (None: must not exist), all or nothing per chunk. One bool per item,
    /// in order: true = written. False = not written: that item's version
    /// changed, or another item of its chunk had, so nothing of the chunk was
    /// written (the caller re-reads the false ones and retries them). On
    /// DynamoDB a chunk is one TransactWriteItems of at most 100 items, and
    /// chunks are NOT atomic with each other: more than 100 items can end
    /// half written. The embedded store writes every item in one transaction
    /// (one chunk). A pid given twice is refused (`Unavailable`).
    async fn put_usages(&self, items: &[(UsageItem, Option<u64>)]) -> Result<Vec<bool>, StoreError>;
    /// One event of a number by its sort key (strongly consistent).
    async fn event(&self, pid: &str, sk: &str) -> Result<Option<EventItem>, StoreError>;
    /// One page of the review queue, newest first: items whose sort key is
    /// below `before` (all when `None`), at most `limit`; and the cursor of
    /// the next page when there may be one.
    async fn reviews_page(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ReviewItem>, Option<String>), StoreError>;
    /// The open review of one unclear message, by its event id.
    async fn review(&self, event_id: &str) -> Result<Option<ReviewItem>, StoreError>;
    /// One page of the access report, oldest first: entries at or after
    /// `from` and before `to` (at most 32 UTC days apart), after the entry
    /// whose sort key is `after` (from the start when `None`), at most
    /// `limit`; and the sort key to continue after when there may be more.
    /// (A store that keeps no report, such as a test double, says so.)
    async fn audit_page(
        &self,
        _from: OffsetDateTime,
        _to: OffsetDateTime,
        _after: Option<&str>,
        _limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<String>), StoreError> {
        Err(StoreError::Unavailable("this store keeps no access report".into()))
    }
    /// Retention: deletes these events of a number (by sort key; the dedup
    /// markers stay, so a replay of a purged delivery is still a
    /// duplicate). Returns how many were there. On DynamoDB through
    /// `BatchWriteItem`, which the functions' roles may not use to delete a
    /// number's items: an operator's command.
    async fn delete_events(&self, _pid: &str, _sort_keys: &[String]) -> Result<usize, StoreError> {
        Err(StoreError::Unavailable("this store cannot purge".into()))
    }
    /// After deletions: makes sure deleted values are gone from the files
    /// (the embedded store rewrites its file; DynamoDB has nothing to do).
    async fn reclaim(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// A preference-page link by the hash of its id (strongly consistent).
    async fn link(&self, hash: &str) -> Result<Option<LinkItem>, StoreError>;
    /// Stores a new link; false, and nothing written, when one is already
    /// stored under its hash.
    async fn put_link(&self, item: &LinkItem) -> Result<bool, StoreError>;
    /// The wrapped index and integrity keys, if provisioned.
    async fn wrapped_keys(&self) -> Result<Option<WrappedKeys>, StoreError>;
    /// Stores `keys` unless some are there already; returns the ones kept.
    async fn put_wrapped_keys_if_absent(&self, keys: &WrappedKeys) -> Result<WrappedKeys, StoreError>;
    /// Adds `key` as the evidence signing key of the stored keyring if it
    /// has none, by compare and set on the keyring as read (so concurrent
    /// callers agree: the first one stored wins); returns the keyring kept.
    /// Never changes the index or integrity keys.
    async fn add_evidence_key_if_absent(&self, _key: &WrappedEvidenceKey) -> Result<WrappedKeys, StoreError> {
        Err(StoreError::Unavailable("this store cannot add an evidence key".into()))
    }
    /// Every number's ledger (`PHONE#` partitions), one at a time, in key
    /// order: one read snapshot on the embedded store; a paginated,
    /// consistent, paced `Scan` on DynamoDB (not a snapshot: a number being
    /// written during the scan may show a torn view, so a caller confirms
    /// what it finds with `number_ledger`).
    /// (A store that cannot be walked, such as a test double, says so.)
    async fn scan_ledger(
        &self,
        _options: ScanOptions,
        _each: &mut (dyn FnMut(NumberLedger) + Send),
    ) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("this store cannot be walked".into()))
    }
    /// One number's ledger, strongly consistent (one snapshot on the
    /// embedded store; a paginated `Query` of its partition on DynamoDB).
    async fn number_ledger(&self, _pid: &str) -> Result<NumberLedger, StoreError> {
        Err(StoreError::Unavailable("this store cannot be walked".into()))
    }
    /// Name of the table, bound into every value's AAD.
    fn table(&self) -> &str;
}

/// What `put_usages` refuses on every store: one number's usage twice.
pub fn distinct_usages(items: &[(UsageItem, Option<u64>)]) -> Result<(), StoreError> {
    let mut pids: Vec<&str> = items.iter().map(|(item, _)| item.pid.as_str()).collect();
    pids.sort_unstable();
    let before = pids.len();
    pids.dedup();
    if pids.len() == before {
        Ok(())
    } else {
        Err(StoreError::Unavailable("a number's usage is written twice in one batch".into()))
    }
}

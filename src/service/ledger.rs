//! The tamper-evident ledger: each number's events form a hash chain, and
//! `verify-ledger` walks it.
//!
//! **The chain.** Every event a commit writes carries a link
//! (`ports::ChainLink`): `seq` (1, 2, ... by arrival: the order commits
//! happened in, not event time, which still orders consent), `prev` (the
//! previous link's MAC) and `mac`, an HMAC with the newest integrity key
//! (`c1.<key id>.<HMAC>`, so a rotation keeps old links verifiable) over a
//! canonical encoding of the event: its key (pid and sort key), id, kind,
//! source, program, categories, caller, code, signature flag, times, `seq`,
//! `prev`, and the SHA-256 digests of its sealed `text` and `evidence`. The
//! number's `STATE` records the head (`seq` and `mac` of the newest link)
//! under its integrity tag, and every commit is conditioned on the `STATE`
//! version it read, so links are handed out one at a time per number.
//!
//! **Erasure.** The link covers the digests of the sealed values, not the
//! values: erasure removes `text`/`evidence` and keeps the digests, so an
//! erased ledger verifies as it did, with nothing to re-seal. A sealed value
//! that is gone while no `erasure` event is in the chain is reported.
//!
//! **Legacy numbers.** A `STATE` without a head was written before the chain
//! (its tag, without head, still verifies). The next commit starts the chain
//! at `seq` 1 with `prev = "legacy"`; the events written before it carry no
//! link and are accepted only if they arrived before the first link. A new
//! number's first link has `prev = ""`, and then an event without a link is
//! an insertion.
//!
//! **Verification** (`verify_number`) reports a deleted event (a gap in
//! `seq`, or a head beyond the last link), an inserted or replayed one (a
//! `seq` seen twice, an event without a link, a copy under another sort
//! key), a reordered one (a `prev` that is not the previous link's MAC, or
//! contents moved to another sort key), an altered one (a MAC that fails),
//! a `STATE` whose head is not the last link, and a `STATE` whose tag fails.
//!
//! **Retention** (`purge`). Events older than `[retention] events_years`
//! are deleted, except the chain's anchor (its first link, `seq` 1), the
//! events that decide the number's current consent (every mark's deciding
//! event, so the latest opt-out's), those of open reviews, and earlier
//! `purge` events. Before deleting, the purge records a `purge` event (a
//! link like any other, with the operator as caller) whose `code` lists the
//! runs of `seq` it deletes and, for each, the MAC of its last link. A gap
//! in the chain is then accepted only where such a verified purge event
//! declared it, and the first link after a run must follow that run's
//! recorded MAC; a link left inside a run (a purge interrupted before its
//! deletions finished) still verifies by its own MAC.
//!
//! **Quarantine.** Authorization reads only `STATE`. Where `verify-ledger`
//! finds a break that only the events show, it records an
//! `integrity_quarantine` event through the normal commit, whose new `STATE`
//! carries `quarantine` under its tag: every later authorization of the
//! number denies (`unavailable`) and raises the integrity alarm, with the
//! same one read and no key service call. STOPs are still recorded.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{ConsentService, Effect, Pending, ServiceError};
use crate::crypto::{Crypto, CryptoError};
use crate::ports::{ChainLink, EventItem, NumberLedger, ScanOptions, StateItem};

/// `prev` of the first link of a number with events from before the chain.
pub const LEGACY_START: &str = "legacy";
/// The event kind an erasure records (its sealed values may then be gone).
pub const ERASURE: &str = "erasure";
/// The event kind `verify-ledger` records when it quarantines a number.
pub const QUARANTINE: &str = "integrity_quarantine";
/// The event kind a retention purge records (see `PurgeRecord`).
pub const PURGE: &str = "purge";

/// Links a purge deleted: `seq` `from` to `to`, the last of which had the
/// MAC `last_mac` (what the next surviving link's `prev` is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgedRun {
    pub from: u64,
    pub to: u64,
    pub last_mac: String,
}

/// What a `purge` event carries in its `code` (covered by its MAC), as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRecord {
    pub purged: Vec<PurgedRun>,
}

impl PurgeRecord {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn of(event: &EventItem) -> Option<PurgeRecord> {
        if event.kind != PURGE {
            return None;
        }
        serde_json::from_str(event.code.as_deref()?).ok()
    }
}

/// The runs of links that verified purge events declared deleted: each
/// before its purge event, never the anchor.
fn declared_purges(crypto: &Crypto, pid: &str, linked: &[(&EventItem, &ChainLink)]) -> Vec<PurgedRun> {
    linked
        .iter()
        .filter(|(event, link)| event.kind == PURGE && link_holds(crypto, pid, event, link))
        .filter_map(|(event, link)| Some((PurgeRecord::of(event)?, link.seq)))
        .flat_map(|(record, seq)| {
            record.purged.into_iter().filter(move |r| 2 <= r.from && r.from <= r.to && r.to < seq)
        })
        .collect()
}

/// Whether every `seq` in `from..to` lies in a declared run (in as many
/// steps as there are runs, however wide the gap).
fn covered(runs: &[PurgedRun], from: u64, to: u64) -> bool {
    let mut seq = from;
    while seq < to {
        match runs.iter().filter(|r| r.from <= seq && seq <= r.to).map(|r| r.to).max() {
            Some(end) => seq = end.saturating_add(1),
            None => return false,
        }
    }
    true
}

/// What a link's MAC covers, in a fixed order (serialised as JSON: the
/// field order is the struct's, strings escaped one way).
#[derive(Serialize)]
struct LinkBody<'a> {
    v: &'static str,
    pid: &'a str,
    sk: String,
    event_id: &'a str,
    kind: &'a str,
    source: &'a str,
    program: Option<&'a str>,
    categories: &'a [String],
    caller: Option<&'a str>,
    code: Option<&'a str>,
    signature_verified: bool,
    occurred_at: String,
    received_at: String,
    seq: u64,
    prev: &'a str,
    text_digest: Option<&'a str>,
    evidence_digest: Option<&'a str>,
}

fn nanos(at: OffsetDateTime) -> String {
    at.unix_timestamp_nanos().to_string()
}

fn link_body(event: &EventItem, seq: u64, prev: &str, text: Option<&str>, evidence: Option<&str>) -> Vec<u8> {
    let body = LinkBody {
        v: "c1",
        pid: &event.pid,
        sk: event.sort_key(),
        event_id: &event.event_id,
        kind: &event.kind,
        source: &event.source,
        program: event.program.as_deref(),
        categories: &event.categories,
        caller: event.caller.as_deref(),
        code: event.code.as_deref(),
        signature_verified: event.signature_verified,
        occurred_at: nanos(event.occurred_at),
        received_at: nanos(event.received_at),
        seq,
        prev,
        text_digest: text,
        evidence_digest: evidence,
    };
    // Strings, numbers and booleans only: serialising cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The link of `event` at `seq` after `prev`.
pub(crate) fn link(crypto: &Crypto, event: &EventItem, seq: u64, prev: String) -> Result<ChainLink, CryptoError> {
    let text_digest = event.text.as_deref().map(Crypto::digest);
    let evidence_digest = event.evidence.as_deref().map(Crypto::digest);
    let body = link_body(event, seq, &prev, text_digest.as_deref(), evidence_digest.as_deref());
    let mac = crypto.link_mac(&event.pid, &body)?;
    Ok(ChainLink { seq, prev, text_digest, evidence_digest, mac })
}

/// Whether an event's link MAC holds and its sealed values (where still
/// there) are the ones it was written with.
fn link_holds(crypto: &Crypto, pid: &str, event: &EventItem, link: &ChainLink) -> bool {
    let body = link_body(event, link.seq, &link.prev, link.text_digest.as_deref(), link.evidence_digest.as_deref());
    let sealed_match = |value: &Option<String>, digest: &Option<String>| match value {
        Some(sealed) => digest.as_deref() == Some(Crypto::digest(sealed).as_str()),
        None => true,
    };
    event.pid == pid
        && crypto.verify_link_mac(pid, &body, &link.mac)
        && sealed_match(&event.text, &link.text_digest)
        && sealed_match(&event.evidence, &link.evidence_digest)
}

/// One break in a number's ledger. No PHI: sequence numbers and storage
/// keys (event time and the provider's or API's event id) only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    StateMissing,
    StateMalformed,
    StateTag,
    StateHead {
        head: Option<u64>,
        last: Option<u64>,
    },
    Quarantined,
    EventMalformed {
        sk: String,
    },
    /// Stored under a key that is not its own (a copy, or swapped contents).
    Misplaced {
        sk: String,
    },
    Unlinked {
        sk: String,
    },
    Altered {
        seq: u64,
    },
    SealedValueRemoved {
        seq: u64,
    },
    Missing {
        from: u64,
        to: u64,
    },
    Duplicate {
        seq: u64,
    },
    Relinked {
        seq: u64,
    },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::StateMissing => write!(f, "the STATE is missing while the number has events (deleted)"),
            Break::StateMalformed => write!(f, "the STATE does not decode (altered)"),
            Break::StateTag => write!(f, "the STATE fails its integrity tag (altered or moved)"),
            Break::StateHead { head, last } => {
                let show = |v: &Option<u64>| v.map_or("none".to_owned(), |v| v.to_string());
                write!(f, "the STATE's chain head (seq {}) is not the last link (seq {})", show(head), show(last))
            }
            Break::Quarantined => write!(f, "quarantined by an earlier verification"),
            Break::EventMalformed { sk } => write!(f, "the event at {sk} does not decode (altered)"),
            Break::Misplaced { sk } => write!(f, "the item at {sk} is another event (copied, replayed or reordered)"),
            Break::Unlinked { sk } => write!(f, "the event at {sk} is not in the chain (inserted)"),
            Break::Altered { seq } => write!(f, "event seq {seq} fails its MAC (altered)"),
            Break::SealedValueRemoved { seq } => {
                write!(f, "event seq {seq} lost its sealed text or evidence without an erasure")
            }
            Break::Missing { from, to } if from == to => write!(f, "event seq {from} is missing (deleted)"),
            Break::Missing { from, to } => write!(f, "events seq {from} to {to} are missing (deleted)"),
            Break::Duplicate { seq } => write!(f, "event seq {seq} is there twice (replayed or inserted)"),
            Break::Relinked { seq } => {
                write!(f, "event seq {seq} does not follow the previous link (reordered or inserted)")
            }
        }
    }
}

/// Every break of one number's ledger (empty: intact).
pub fn verify_number(crypto: &Crypto, ledger: &NumberLedger) -> Vec<Break> {
    let pid = ledger.pid.as_str();
    let mut breaks = Vec::new();
    let state: Option<&StateItem> = match &ledger.state {
        None if ledger.events.is_empty() => None,
        None => {
            breaks.push(Break::StateMissing);
            None
        }
        Some(Err(_)) => {
            breaks.push(Break::StateMalformed);
            None
        }
        Some(Ok(state)) if state.pid != pid || !crypto.verify_state_tag(pid, state) => {
            breaks.push(Break::StateTag);
            None
        }
        Some(Ok(state)) => Some(state),
    };
    if state.is_some_and(|s| s.quarantine.is_some()) {
        breaks.push(Break::Quarantined);
    }
    let mut linked: Vec<(&EventItem, &ChainLink)> = Vec::new();
    let mut unlinked: Vec<(&str, &EventItem)> = Vec::new();
    for (sk, event) in &ledger.events {
        match event {
            Err(_) => breaks.push(Break::EventMalformed { sk: sk.clone() }),
            Ok(event) if event.pid != pid || event.sort_key() != *sk => {
                breaks.push(Break::Misplaced { sk: sk.clone() })
            }
            Ok(event) => match &event.link {
                Some(link) => linked.push((event, link)),
                None => unlinked.push((sk, event)),
            },
        }
    }
    linked.sort_by_key(|(_, link)| link.seq);
    let erased = linked.iter().any(|(event, link)| event.kind == ERASURE && link_holds(crypto, pid, event, link));
    let purged = declared_purges(crypto, pid, &linked);
    let mut expected = 1;
    let mut previous: Option<&str> = None;
    for (event, link) in &linked {
        if !link_holds(crypto, pid, event, link) {
            breaks.push(Break::Altered { seq: link.seq });
            continue;
        }
        if !erased
            && (event.text.is_none() && link.text_digest.is_some()
                || event.evidence.is_none() && link.evidence_digest.is_some())
        {
            breaks.push(Break::SealedValueRemoved { seq: link.seq });
        }
        if link.seq < expected {
            breaks.push(Break::Duplicate { seq: link.seq });
            continue;
        }
        if link.seq > expected && covered(&purged, expected, link.seq) {
            // A gap a purge declared: the link follows the run's last MAC,
            // or is itself left inside a run.
            let follows = purged.iter().any(|r| r.to == link.seq - 1 && link.prev == r.last_mac)
                || covered(&purged, link.seq, link.seq.saturating_add(1));
            if !follows {
                breaks.push(Break::Relinked { seq: link.seq });
            }
        } else if link.seq > expected {
            breaks.push(Break::Missing { from: expected, to: link.seq - 1 });
        } else {
            let follows = match (link.seq, previous) {
                (1, _) => link.prev.is_empty() || link.prev == LEGACY_START,
                (_, Some(previous)) => link.prev == previous,
                (_, None) => false,
            };
            if !follows {
                breaks.push(Break::Relinked { seq: link.seq });
            }
        }
        expected = link.seq + 1;
        previous = Some(&link.mac);
    }
    // Events without a link: only a legacy number's, arrived before its chain.
    let first = linked.iter().find(|(_, link)| link.seq == 1);
    for (sk, event) in unlinked {
        let legacy = match first {
            Some((first, link)) => link.prev == LEGACY_START && event.received_at <= first.received_at,
            None => state.is_some_and(|s| s.head.is_none()),
        };
        if !legacy {
            breaks.push(Break::Unlinked { sk: sk.to_owned() });
        }
    }
    if let Some(state) = state {
        let last = linked.last().map(|(_, link)| *link);
        let head_seq = state.head.as_ref().map(|h| h.seq);
        let matches = match (&state.head, last) {
            (None, None) => true,
            (Some(head), Some(last)) => head.seq == last.seq && head.mac == last.mac,
            _ => false,
        };
        if !matches {
            match (head_seq, last.map(|l| l.seq)) {
                (Some(head), Some(last)) if head > last => breaks.push(Break::Missing { from: last + 1, to: head }),
                (Some(head), None) => breaks.push(Break::Missing { from: 1, to: head }),
                (head, last) => breaks.push(Break::StateHead { head, last }),
            }
        }
    }
    breaks
}

/// A number whose ledger has breaks, by its blind index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenNumber {
    pub pid: String,
    pub breaks: Vec<Break>,
    /// Quarantined by this run (its next authorizations deny).
    pub quarantined: bool,
}

/// What one verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerReport {
    pub numbers: u64,
    pub events: u64,
    pub broken: Vec<BrokenNumber>,
}

impl LedgerReport {
    pub fn intact(&self) -> bool {
        self.broken.is_empty()
    }
}

impl ConsentService {
    /// Walks every number's ledger and reports each break. A number the scan
    /// finds broken is read again alone (strongly consistent: a scan is no
    /// snapshot on DynamoDB) and reported only if still broken; where its
    /// `STATE` still verifies it is quarantined, so that authorization
    /// denies it. `progress` is called with (numbers, events) so far.
    pub async fn verify_ledger(
        &self,
        options: ScanOptions,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<LedgerReport, ServiceError> {
        let mut report = LedgerReport::default();
        let mut suspects = Vec::new();
        {
            let crypto = &self.crypto;
            let (report, suspects) = (&mut report, &mut suspects);
            let mut each = |ledger: NumberLedger| {
                report.numbers += 1;
                report.events += ledger.events.len() as u64;
                if !verify_number(crypto, &ledger).is_empty() {
                    suspects.push(ledger.pid);
                }
                progress(report.numbers, report.events);
            };
            self.store.scan_ledger(options, &mut each).await?;
        }
        for pid in suspects {
            let ledger = self.store.number_ledger(&pid).await?;
            let breaks = verify_number(&self.crypto, &ledger);
            if breaks.is_empty() {
                continue;
            }
            self.integrity_alarm(&pid, "the event chain is broken");
            let quarantined = self.quarantine(&ledger, &breaks).await?;
            report.broken.push(BrokenNumber { pid, breaks, quarantined });
        }
        Ok(report)
    }

    /// Records the quarantine of a number whose `STATE` verifies but whose
    /// events do not (a `STATE` that fails denies already). False when there
    /// is nothing to do or it is quarantined already.
    async fn quarantine(&self, ledger: &NumberLedger, breaks: &[Break]) -> Result<bool, ServiceError> {
        let state_broken = breaks
            .iter()
            .any(|b| matches!(b, Break::StateMissing | Break::StateMalformed | Break::StateTag | Break::Quarantined));
        if state_broken {
            return Ok(false);
        }
        let reason = breaks.first().map(ToString::to_string).unwrap_or_default();
        let mut event = self.service_event(&ledger.pid, QUARANTINE, "system", None);
        event.code = Some("verify-ledger".into());
        match self.commit_event(Pending::own(event, Effect::Quarantine(&reason))).await {
            Ok(written) => Ok(written),
            // The STATE changed under the scan and no longer verifies: it
            // denies by itself.
            Err(ServiceError::Integrity) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Checks the links of events read for a reader (a page of history):
    /// each MAC and sealed value, and that consecutive links follow each
    /// other. A break denies the read and raises the alarm.
    pub(crate) fn check_links(&self, pid: &str, events: &[EventItem]) -> Result<(), ServiceError> {
        let mut links: Vec<(&EventItem, &ChainLink)> =
            events.iter().filter_map(|e| e.link.as_ref().map(|l| (e, l))).collect();
        links.sort_by_key(|(_, link)| link.seq);
        let holds = links.iter().all(|(event, link)| link_holds(&self.crypto, pid, event, link))
            && links.windows(2).all(|pair| pair[1].1.seq != pair[0].1.seq)
            && links.windows(2).all(|pair| pair[1].1.seq != pair[0].1.seq + 1 || pair[1].1.prev == pair[0].1.mac);
        if holds {
            Ok(())
        } else {
            self.integrity_alarm(pid, "the event chain is broken");
            Err(ServiceError::Integrity)
        }
    }
}

//! Every storage key of the single-table layout, in one place. Both stores,
//! the service and the integrity tag build their keys here; the strings are
//! the format at rest and never change.
//!
//! Items of one number (`PHONE#<pid>`) sort `EVENT#` < `OUTBOX#` < `STATE` <
//! `STATE#USAGE` < `STATEV#`, so the last item at or below `STATE` is the
//! `STATE` itself when there is one, and otherwise the newest event or outbox
//! item of the number (never its usage or version markers, which sort after).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const PHONE_PREFIX: &str = "PHONE#";
/// Sort key of a number's current consent.
pub const STATE_SK: &str = "STATE";
/// Sort key of a number's recent sends (frequency caps): after `STATE`, so
/// `read_state` never sees it, and before the `STATEV#` markers.
pub const USAGE_SK: &str = "STATE#USAGE";
/// The first sort key of a number's events, and the first key after them.
pub const EVENT_PREFIX: &str = "EVENT#";
pub const EVENT_END: &str = "EVENT$";
/// The first sort key of a number's outbox items, and the first key after them.
pub const OUTBOX_PREFIX: &str = "OUTBOX#";
pub const OUTBOX_END: &str = "OUTBOX$";
/// Below every sort key, and above every one (redb ranges over one number).
pub const SK_MIN: &str = "";
pub const SK_MAX: &str = "\u{10ffff}";
/// The sort key of an idempotency marker (its partition key is the marker).
pub const DEDUP_SK: &str = "-";
/// Where the wrapped index and integrity keys are kept.
pub const KEYRING_PK: &str = "KEYRING";
pub const KEYRING_SK: &str = "v1";

/// `PHONE#<pid>`: the partition of one number.
pub fn phone_pk(pid: &str) -> String {
    format!("{PHONE_PREFIX}{pid}")
}

/// The pid of a `PHONE#<pid>` partition key.
pub fn pid_of(pk: &str) -> Option<&str> {
    pk.strip_prefix(PHONE_PREFIX)
}

/// `EVENT#<occurred_at>#<event_id>`: event time first, so the ledger reads
/// in event order.
pub fn event_sk(occurred_at: OffsetDateTime, event_id: &str) -> String {
    let at = occurred_at.format(&Rfc3339).unwrap_or_default();
    format!("{EVENT_PREFIX}{at}#{event_id}")
}

/// Whether `sk` is an event's sort key (a history page cursor is one).
pub fn is_event_sk(sk: &str) -> bool {
    sk.starts_with(EVENT_PREFIX)
}

/// `OUTBOX#<event_id>`: a reply due for one number.
pub fn outbox_sk(event_id: &str) -> String {
    format!("{OUTBOX_PREFIX}{event_id}")
}

/// The embedded store's index of pending outbox items (DynamoDB needs
/// none: its stream feeds the worker): one item per pending reply,
/// `OUTBOX-DUE` / `<pid>#<event_id>`, removed when the reply is finished.
pub const OUTBOX_DUE_PK: &str = "OUTBOX-DUE";

pub fn outbox_due_sk(pid: &str, event_id: &str) -> String {
    format!("{pid}#{event_id}")
}

/// The (pid, event id) of an `OUTBOX-DUE` sort key (a pid has no `#`).
pub fn split_outbox_due_sk(sk: &str) -> Option<(&str, &str)> {
    sk.split_once('#')
}

/// A patient preference-page link: `LINK#<hash of its id>` / `-` (the id
/// itself is only in the link; see `service::preferences`).
pub const LINK_PREFIX: &str = "LINK#";
pub const LINK_SK: &str = "-";

pub fn link_pk(hash: &str) -> String {
    format!("{LINK_PREFIX}{hash}")
}

/// `STATEV#<version>`: the marker that a `STATE` of this version was once
/// written (zero-padded, so versions sort in order).
pub fn state_version_sk(version: u64) -> String {
    format!("STATEV#{version:020}")
}

/// `DEDUP#<source>#<id>`: the replay key of one delivery of a source.
pub fn dedup_pk(source: &str, id: &str) -> String {
    format!("DEDUP#{source}#{id}")
}

/// `DEDUP#<event_id>`: the replay key of an event whose id already names
/// its source (`api:<caller>:<id>`).
pub fn event_dedup_pk(event_id: &str) -> String {
    format!("DEDUP#{event_id}")
}

/// The review queue: one item per unclear message awaiting staff,
/// `REVIEW` / `<occurred_at as 20-digit Unix nanoseconds>#<event_id>`, so a
/// query of the partition backwards lists the newest first.
pub const REVIEW_PK: &str = "REVIEW";

pub fn review_sk(occurred_at: OffsetDateTime, event_id: &str) -> String {
    let nanos = occurred_at.unix_timestamp_nanos().max(0);
    format!("{nanos:020}#{event_id}")
}

/// Whether `sk` is a review queue sort key (a page cursor is one).
pub fn is_review_sk(sk: &str) -> bool {
    sk.split_once('#').is_some_and(|(nanos, _)| nanos.len() == 20 && nanos.bytes().all(|b| b.is_ascii_digit()))
}

/// `REVIEW#<event_id>` / `-`: where an open review is found by its event id
/// (a copy of the queue item, written and deleted with it).
pub fn review_by_event_pk(event_id: &str) -> String {
    format!("REVIEW#{event_id}")
}

/// The access report's index: one item per access or change a caller made
/// (`ports::AuditEntry`, no PHI), partitioned by UTC day,
/// `AUDIT#<YYYY-MM-DD>` / `<at as 20-digit Unix nanoseconds>#<event_id>`,
/// so one day reads oldest first with a range of its partition.
pub const AUDIT_PREFIX: &str = "AUDIT#";

/// `AUDIT#<YYYY-MM-DD>`: the partition of one UTC day.
pub fn audit_pk(at: OffsetDateTime) -> String {
    let day = at.to_offset(time::UtcOffset::UTC).date();
    format!("{AUDIT_PREFIX}{:04}-{:02}-{:02}", day.year(), u8::from(day.month()), day.day())
}

/// `<20-digit Unix nanoseconds>#<event_id>`, as a review's.
pub fn audit_sk(at: OffsetDateTime, event_id: &str) -> String {
    review_sk(at, event_id)
}

/// The sort key below every entry at or after `at` (and above every one
/// before it): the 20 digits alone.
pub fn audit_sk_bound(at: OffsetDateTime) -> String {
    format!("{:020}", at.unix_timestamp_nanos().max(0))
}

/// The time of an audit sort key (a page cursor is one), if it is one.
pub fn audit_sk_time(sk: &str) -> Option<OffsetDateTime> {
    if !is_review_sk(sk) {
        return None;
    }
    let nanos: i128 = sk.get(..20)?.parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_items_of_a_number_sort_events_outbox_state_usage_then_version_markers() {
        let at = time::macros::datetime!(2026-03-01 10:00 UTC);
        let mut keys =
            [state_version_sk(0), USAGE_SK.to_owned(), STATE_SK.to_owned(), outbox_sk("x:1"), event_sk(at, "x:1")];
        keys.sort();
        let usage = USAGE_SK.to_owned();
        assert_eq!(keys, [event_sk(at, "x:1"), outbox_sk("x:1"), STATE_SK.to_owned(), usage, state_version_sk(0)]);
        // `read_state` reads the last item at or below `STATE`: never the usage.
        assert!(USAGE_SK > STATE_SK && USAGE_SK < state_version_sk(0).as_str());
        assert!(keys.iter().all(|k| k.as_str() > SK_MIN && k.as_str() < SK_MAX));
        assert!(event_sk(at, "x").as_str() < EVENT_END && outbox_sk("x").as_str() < OUTBOX_END);
    }

    #[test]
    fn the_formats_are_the_ones_at_rest() {
        let at = time::macros::datetime!(2026-03-01 10:00 UTC);
        assert_eq!(phone_pk("abc"), "PHONE#abc");
        assert_eq!(pid_of("PHONE#abc"), Some("abc"));
        assert_eq!(event_sk(at, "twilio:SM1"), "EVENT#2026-03-01T10:00:00Z#twilio:SM1");
        assert_eq!(outbox_sk("twilio:SM1"), "OUTBOX#twilio:SM1");
        assert_eq!(state_version_sk(3), "STATEV#00000000000000000003");
        assert_eq!(USAGE_SK, "STATE#USAGE");
        assert_eq!(dedup_pk("twilio", "SM1"), "DEDUP#twilio#SM1");
        assert_eq!(event_dedup_pk("api:a:1"), "DEDUP#api:a:1");
        assert_eq!(outbox_due_sk("abc", "telnyx:m#1"), "abc#telnyx:m#1");
        assert_eq!(split_outbox_due_sk("abc#telnyx:m#1"), Some(("abc", "telnyx:m#1")));
        assert_eq!(review_sk(at, "twilio:SM1"), "01772359200000000000#twilio:SM1");
        assert!(is_review_sk(&review_sk(at, "twilio:SM1")) && !is_review_sk("EVENT#x") && !is_review_sk("1#x"));
        assert!(review_sk(at, "b") < review_sk(at + time::Duration::nanoseconds(1), "a"));
        assert_eq!(review_by_event_pk("twilio:SM1"), "REVIEW#twilio:SM1");
        assert_eq!(audit_pk(at), "AUDIT#2026-03-01");
        assert_eq!(audit_sk(at, "api:x:1"), "01772359200000000000#api:x:1");
        assert!(
            audit_sk_bound(at) < audit_sk(at, "a")
                && audit_sk(at, "a") < audit_sk_bound(at + time::Duration::nanoseconds(1))
        );
        assert_eq!(audit_sk_time(&audit_sk(at, "api:x:1")), Some(at));
        assert_eq!(audit_sk_time("EVENT#x"), None);
        assert_eq!((link_pk("h4sh").as_str(), LINK_SK), ("LINK#h4sh", "-"));
    }
}

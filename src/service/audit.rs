//! The access report and retention.
//!
//! **The access report.** Every event a caller makes (a record or
//! revocation through the API, a read of a number's state, history or of
//! the review queue, a review decision, an erasure, an evidence export, a
//! purge) writes, in the same transaction as the event, an index entry
//! `AUDIT#<UTC day>` / `<at>#<event_id>` (`ports::AuditEntry`: blind index,
//! kind, caller, time, program; no PHI). `access_report` lists a time range
//! of at most 31 days, oldest first, 100 a page.
//!
//! **Retention.** `purge` deletes events older than a cutoff (by the time
//! they arrived), keeping what the chain and the current consent need (see
//! `ledger`), and records each number's purge as a `purge` event with the
//! operator as caller, so it is in the access report too.

use std::collections::HashSet;

use time::{Duration, OffsetDateTime};

use super::ledger::{verify_number, PurgeRecord, PurgedRun, ERASURE, PURGE};
use super::{check_event_time, ConsentService, Effect, Pending, ServiceError};
use crate::ports::keys::audit_sk_time;
use crate::ports::{AuditEntry, ChainLink, NumberLedger, ScanOptions};

/// Entries in one page of the access report.
pub const AUDIT_PAGE: usize = 100;
/// The widest range one report covers.
pub const MAX_AUDIT_RANGE: Duration = Duration::days(31);

/// What a purge did (or, dry, would do). No PHI: blind indexes only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Numbers walked.
    pub numbers: u64,
    /// Numbers that had events to purge, and how many events in all.
    pub purged_numbers: u64,
    pub events_purged: u64,
    /// Numbers left alone because their chain does not verify (run
    /// `verify-ledger`): a purge never deletes evidence of a break.
    pub skipped: Vec<String>,
}

/// The events of one number a purge deletes, and the runs of links it
/// declares.
struct PurgePlan {
    sort_keys: Vec<String>,
    runs: Vec<PurgedRun>,
}

/// What of `ledger` is older than `cutoff` (by arrival) and may go: not the
/// anchor (`seq` 1), not an event that decides a current mark or awaits
/// review, not the message a kept staff decision judged, not a purge and not
/// an erasure (it is what explains the texts missing from older events).
fn purge_plan(ledger: &NumberLedger, cutoff: OffsetDateTime) -> PurgePlan {
    let state = ledger.state.as_ref().and_then(|s| s.as_ref().ok());
    let mut kept: HashSet<&str> = HashSet::new();
    if let Some(state) = state {
        kept.extend(state.consent.marks.values().map(|m| m.event_id.as_str()));
        kept.extend(state.consent.reviews.keys().map(String::as_str));
    }
    // A kept staff decision (`review:<message>`) keeps the message it judged.
    let judged: Vec<&str> = kept.iter().filter_map(|id| id.strip_prefix("review:")).collect();
    kept.extend(judged);
    let mut sort_keys = Vec::new();
    let mut links: Vec<&ChainLink> = Vec::new();
    for (sk, event) in &ledger.events {
        let Ok(event) = event else { continue };
        let old = event.received_at < cutoff;
        let anchor = event.link.as_ref().is_some_and(|l| l.seq == 1);
        let record = matches!(event.kind.as_str(), PURGE | ERASURE);
        if !old || anchor || record || kept.contains(event.event_id.as_str()) {
            continue;
        }
        sort_keys.push(sk.clone());
        links.extend(event.link.as_ref());
    }
    links.sort_by_key(|l| l.seq);
    let mut runs: Vec<PurgedRun> = Vec::new();
    for link in links {
        match runs.last_mut() {
            Some(run) if run.to + 1 == link.seq => {
                run.to = link.seq;
                run.last_mac = link.mac.clone();
            }
            _ => runs.push(PurgedRun { from: link.seq, to: link.seq, last_mac: link.mac.clone() }),
        }
    }
    PurgePlan { sort_keys, runs }
}

/// `years` before `at` (the 29th of February becomes the 28th).
pub fn years_before(at: OffsetDateTime, years: u32) -> OffsetDateTime {
    let year = at.year() - years as i32;
    at.replace_year(year)
        .or_else(|_| at.replace_day(28).and_then(|at| at.replace_year(year)))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl ConsentService {
    /// One page of the access report: who read, recorded, erased, exported
    /// or purged what (by blind index) at or after `from` and before `to`,
    /// oldest first. `to - from` is at most 31 days; `after` is the sort
    /// key of the previous page's last entry.
    pub async fn access_report(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        after: Option<&str>,
    ) -> Result<(Vec<AuditEntry>, Option<String>), ServiceError> {
        check_event_time(from, "from")?;
        check_event_time(to, "to")?;
        if from >= to {
            return Err(ServiceError::Invalid("from: must be before to".into()));
        }
        if to - from > MAX_AUDIT_RANGE {
            return Err(ServiceError::Invalid("to: at most 31 days after from".into()));
        }
        if after.is_some_and(|after| audit_sk_time(after).is_none_or(|at| at < from || at >= to)) {
            return Err(ServiceError::Invalid("page_token: not a token this service gave for this range".into()));
        }
        Ok(self.store.audit_page(from, to, after, AUDIT_PAGE).await?)
    }

    /// Retention: for every number, deletes the events that arrived before
    /// `cutoff`, except the anchor of its chain, the events that decide its
    /// current consent (its latest opt-out among them), those awaiting
    /// review and earlier purges; first records a `purge` event (caller
    /// `operator`) declaring what goes, so the chain still verifies. A number
    /// whose chain does not verify is skipped and reported. `dry_run`
    /// counts without changing anything.
    pub async fn purge(
        &self,
        cutoff: OffsetDateTime,
        operator: &str,
        dry_run: bool,
        options: ScanOptions,
    ) -> Result<PurgeReport, ServiceError> {
        let mut report = PurgeReport::default();
        let mut candidates = Vec::new();
        {
            let report = &mut report;
            let candidates = &mut candidates;
            let mut each = |ledger: NumberLedger| {
                report.numbers += 1;
                if !purge_plan(&ledger, cutoff).sort_keys.is_empty() {
                    candidates.push(ledger.pid);
                }
            };
            self.store.scan_ledger(options, &mut each).await?;
        }
        for pid in candidates {
            // Read again alone (strongly consistent), and verified first.
            let ledger = self.store.number_ledger(&pid).await?;
            if !verify_number(&self.crypto, &ledger).is_empty() {
                tracing::warn!(pid = %pid, "purge: the number's chain does not verify; left alone");
                report.skipped.push(pid);
                continue;
            }
            let plan = purge_plan(&ledger, cutoff);
            if plan.sort_keys.is_empty() {
                continue;
            }
            report.purged_numbers += 1;
            report.events_purged += plan.sort_keys.len() as u64;
            if dry_run {
                continue;
            }
            // The operator as caller; what it deletes in `code` (under its MAC).
            let mut event = self.service_event(&pid, PURGE, "retention", Some(operator));
            event.code = Some(PurgeRecord { purged: plan.runs }.encode());
            self.commit_event(Pending::own(event, Effect::None)).await?;
            let deleted = self.store.delete_events(&pid, &plan.sort_keys).await?;
            tracing::info!(pid = %pid, operator, deleted, "events purged");
        }
        if !dry_run && report.events_purged > 0 {
            self.store.reclaim().await?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_before_keeps_the_date_and_moves_a_leap_day_to_the_28th() {
        let at = time::macros::datetime!(2026-03-01 10:00 UTC);
        assert_eq!(years_before(at, 7), time::macros::datetime!(2019-03-01 10:00 UTC));
        let leap = time::macros::datetime!(2028-02-29 10:00 UTC);
        assert_eq!(years_before(leap, 1), time::macros::datetime!(2027-02-28 10:00 UTC));
    }
}

//! The whole authorization question: consent first, then time (the
//! recipient's allowed hours), then volume (caps, with reservations).
//!
//! Consent reasons win over time reasons: an opted-out number is
//! `opted_out`, never `quiet_hours`. Any store or key failure denies
//! `unavailable`. An unreserved authorization of a program without caps
//! stays one store read and no key-service call.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::{AuthorizationQuery, ConsentService, ServiceError, MAX_ATTEMPTS};
use crate::domain::recipient::{self, Whereabouts};
use crate::domain::rules::{self, SendRule};
use crate::domain::volume::{self, Cap};
use crate::domain::window::{self, Window};
use crate::domain::{Decision, PhoneNumber, Program, Reason};
use crate::ports::{SendRecord, UsageItem};

/// How far ahead a `send_at` may plan (a batch for tomorrow, or next week).
pub const MAX_PLAN_AHEAD: time::Duration = time::Duration::days(14);
/// How far back a `send_at` may be (a clock a little behind).
const MAX_PLAN_BEHIND: time::Duration = time::Duration::minutes(5);
/// Rounds of "wait for the window, then for the cap" before giving up on
/// finding the next allowed moment.
const SEARCH_ROUNDS: usize = 16;

/// What the sender says about one send, beyond program, category and number.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendPlan<'a> {
    /// The recipient's IANA time zone, when the clinic knows it.
    pub time_zone: Option<&'a str>,
    /// The recipient's US state (two letters), when the clinic knows it.
    pub state: Option<&'a str>,
    /// When the send will happen (default: now).
    pub send_at: Option<OffsetDateTime>,
    /// Count the send if allowed, and return a reservation id.
    pub reserve: bool,
    /// The message's segments and characters (for the healthcare exemption).
    pub segments: Option<u32>,
    pub length: Option<u32>,
}

/// A reservation id: random, then the number's blind index, so a release
/// finds its usage item without the number.
fn reservation_id(pid: &str) -> String {
    format!("{}.{pid}", super::random_id())
}

fn pid_of_reservation(id: &str) -> Option<&str> {
    let (random, pid) = id.split_once('.')?;
    let well_formed = random.len() == 24
        && random.chars().all(|c| c.is_ascii_hexdigit())
        && !pid.is_empty()
        && pid.len() <= 64
        && pid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    well_formed.then_some(pid)
}

/// The time and volume verdict at `at`: `None` when a send is allowed then,
/// else the reason that stopped it first and the first moment it would be
/// allowed.
fn first_allowed(
    windows: &[Window],
    caps: &[Cap],
    whereabouts: &Whereabouts,
    sends: &[SendRecord],
    program: &Program,
    at: OffsetDateTime,
) -> Option<(Reason, OffsetDateTime)> {
    let zone = whereabouts.zones.first().map(String::as_str).unwrap_or("UTC");
    let organization = &program.letterhead.organization;
    let mut t = at;
    let mut first: Option<Reason> = None;
    for _ in 0..SEARCH_ROUNDS {
        let mut moved = false;
        for w in windows {
            if let Err(next) = window::check(*w, &whereabouts.zones, t) {
                first.get_or_insert(Reason::QuietHours);
                t = next.max(t);
                moved = true;
            }
        }
        if !caps.is_empty() {
            if let Err(next) = volume::check(caps, sends, &program.id, organization, zone, t) {
                first.get_or_insert(Reason::FrequencyCap);
                t = next.max(t);
                moved = true;
            }
        }
        if !moved {
            return first.map(|reason| (reason, t));
        }
    }
    Some((first.unwrap_or(Reason::QuietHours), t))
}

/// What one send must meet: its time, the windows and caps that apply.
struct Check {
    at: OffsetDateTime,
    whereabouts: Whereabouts,
    windows: Vec<Window>,
    caps: Vec<Cap>,
}

impl Check {
    /// Whether the number's usage must be read: caps to count, or a
    /// reservation to add.
    fn counts(&self, plan: &SendPlan<'_>) -> bool {
        !self.caps.is_empty() || plan.reserve
    }

    /// `None` when a send at `at` keeps every window and cap given `sends`;
    /// else the denial, with the first moment it would be allowed.
    fn verdict(&self, sends: &[SendRecord], program: &Program, consent: &Decision) -> Option<Decision> {
        first_allowed(&self.windows, &self.caps, &self.whereabouts, sends, program, self.at)
            .map(|(reason, next)| Decision::wait(reason, consent.as_of, next))
    }
}

/// One reserved request of a batch, once consent allowed it.
pub(crate) struct Reservation<'q, 'p> {
    pub index: usize,
    pub pid: String,
    pub program: &'p Program,
    pub query: &'q AuthorizationQuery<'q>,
    pub plan: &'q SendPlan<'q>,
    pub consent: Decision,
}

impl ConsentService {
    /// Checks what the sender said about a send (a 400 names the field).
    pub fn check_plan(&self, query: &AuthorizationQuery<'_>, plan: &SendPlan<'_>) -> Result<(), ServiceError> {
        // Only what the sender said can be wrong (the presumption from a
        // valid number always places it).
        if plan.time_zone.is_some() || plan.state.is_some() {
            if let Ok(number) = PhoneNumber::parse(query.to) {
                recipient::locate(&number, plan.time_zone, plan.state).map_err(ServiceError::Invalid)?;
            }
        }
        if let Some(at) = plan.send_at {
            let now = self.now();
            if at < now - MAX_PLAN_BEHIND || at > now + MAX_PLAN_AHEAD {
                return Err(ServiceError::Invalid(format!(
                    "send_at: must be between now and {} days ahead",
                    MAX_PLAN_AHEAD.whole_days()
                )));
            }
        }
        Ok(())
    }

    /// May this program send this category to this number at the planned
    /// time? Consent, then the program's time and volume rules, from one
    /// consistent read (the state, and the usage when the program can cap
    /// or the send is reserved); with `reserve`, an allowed send is counted
    /// (one conditional write, re-read and retried on a lost race) and a
    /// reservation id returned. Any failure denies.
    pub async fn authorize_send(&self, query: &AuthorizationQuery<'_>, plan: &SendPlan<'_>) -> Decision {
        let (pid, program) = match self.validate_query(query) {
            Ok(valid) => valid,
            Err(denied) => return denied,
        };
        // A program that can cap volume (or a reservation) needs the usage
        // too: read with the state, in the same single read.
        if plan.reserve || !rules::caps_none(&program.send_rules) {
            let (read, usage) = match self.store.read_state_with_usage(&pid).await {
                Ok((state, usage)) => (Ok(state), Some(usage)),
                Err(error) => (Err(error), None),
            };
            let consent = self.decide(&pid, read, program, query.category).await;
            if !consent.allowed {
                return consent;
            }
            return self.after_consent(&pid, program, query, plan, consent, usage).await;
        }
        let read = self.store.read_state(&pid).await;
        let consent = self.decide(&pid, read, program, query.category).await;
        if !consent.allowed {
            return consent;
        }
        self.after_consent(&pid, program, query, plan, consent, None).await
    }

    /// Time and volume, once consent allows. `usage` is the number's usage
    /// when the caller read it already.
    pub(crate) async fn after_consent(
        &self,
        pid: &str,
        program: &Program,
        query: &AuthorizationQuery<'_>,
        plan: &SendPlan<'_>,
        consent: Decision,
        mut usage: Option<Option<UsageItem>>,
    ) -> Decision {
        if program.send_rules.is_empty() && !plan.reserve {
            return consent;
        }
        let check = match self.prepare(program, query, plan) {
            Ok(check) => check,
            Err(denied) => return denied,
        };
        for _ in 0..MAX_ATTEMPTS {
            let current = match usage.take() {
                Some(known) => known,
                None if check.counts(plan) => match self.store.usage(pid).await {
                    Ok(found) => found,
                    Err(error) => {
                        tracing::error!(pid = %pid, %error, "authorization denied: usage unavailable");
                        return Decision::deny(Reason::Unavailable);
                    }
                },
                None => None,
            };
            let sends = current.as_ref().map(|u| u.sends.as_slice()).unwrap_or_default();
            if let Some(denied) = check.verdict(sends, program, &consent) {
                return denied;
            }
            if !plan.reserve {
                return consent;
            }
            let expected = current.as_ref().map(|u| u.version);
            let (next, id) = self.with_reservation(pid, current, program, check.at);
            match self.store.put_usage(&next, expected).await {
                Ok(true) => {
                    tracing::info!(pid = %pid, program = %program.id, "send reserved");
                    return Decision { reservation_id: Some(id), ..consent };
                }
                Ok(false) => continue,
                Err(error) => {
                    tracing::error!(pid = %pid, %error, "authorization denied: reservation not stored");
                    return Decision::deny(Reason::Unavailable);
                }
            }
        }
        tracing::error!(pid = %pid, "authorization denied: reservations kept racing");
        Decision::deny(Reason::Unavailable)
    }

    /// What a send must meet, for this program, recipient and time.
    fn prepare(
        &self,
        program: &Program,
        query: &AuthorizationQuery<'_>,
        plan: &SendPlan<'_>,
    ) -> Result<Check, Decision> {
        let rules: &[SendRule] = &program.send_rules;
        if rules::too_long_for_exemption(rules, plan.segments, plan.length) {
            return Err(Decision::deny(Reason::TooLongForExemption));
        }
        let number = PhoneNumber::parse(query.to).map_err(|_| Decision::deny(Reason::InvalidNumber))?;
        // `check_plan` refuses a bad recipient before; never allow on doubt.
        let whereabouts =
            recipient::locate(&number, plan.time_zone, plan.state).map_err(|_| Decision::deny(Reason::Unavailable))?;
        Ok(Check {
            at: plan.send_at.unwrap_or_else(|| self.now()),
            windows: rules::windows(rules, &whereabouts),
            caps: rules::caps(rules, &whereabouts),
            whereabouts,
        })
    }

    /// The number's usage with one more send reserved, and its id.
    fn with_reservation(
        &self,
        pid: &str,
        current: Option<UsageItem>,
        program: &Program,
        at: OffsetDateTime,
    ) -> (UsageItem, String) {
        let id = reservation_id(pid);
        let version = current.as_ref().map_or(1, |u| u.version + 1);
        let mut next = current.unwrap_or_else(|| UsageItem { pid: pid.to_owned(), ..Default::default() });
        volume::prune(&mut next.sends, self.now());
        next.sends.push(SendRecord {
            reservation_id: id.clone(),
            program: program.id.clone(),
            organization: program.letterhead.organization.clone(),
            at,
        });
        next.version = version;
        (next, id)
    }

    /// A batch's reservations, from the usage read with the batch: each
    /// request is decided in order against its number's usage (a second
    /// request for one number counts the first's reservation), then every
    /// changed usage is written with `put_usages` (`TransactWriteItems` in
    /// chunks on DynamoDB). A number whose write lost a race has its
    /// requests decided again one by one.
    pub(crate) async fn reserve_many(
        &self,
        requests: Vec<Reservation<'_, '_>>,
        mut usages: HashMap<String, Option<UsageItem>>,
    ) -> Vec<(usize, Decision)> {
        let mut expected: HashMap<String, Option<u64>> = HashMap::new();
        let mut decided: Vec<(usize, Decision)> = Vec::with_capacity(requests.len());
        for r in &requests {
            let check = match self.prepare(r.program, r.query, r.plan) {
                Ok(check) => check,
                Err(denied) => {
                    decided.push((r.index, denied));
                    continue;
                }
            };
            let current = usages.remove(&r.pid).flatten();
            expected.entry(r.pid.clone()).or_insert_with(|| current.as_ref().map(|u| u.version));
            let sends = current.as_ref().map(|u| u.sends.as_slice()).unwrap_or_default();
            if let Some(denied) = check.verdict(sends, r.program, &r.consent) {
                usages.insert(r.pid.clone(), current);
                decided.push((r.index, denied));
                continue;
            }
            let (mut next, id) = self.with_reservation(&r.pid, current, r.program, check.at);
            // One write per number, whatever its number of requests.
            next.version = expected[&r.pid].map_or(1, |v| v + 1);
            usages.insert(r.pid.clone(), Some(next));
            decided.push((r.index, Decision { reservation_id: Some(id), ..r.consent.clone() }));
        }
        let writes: Vec<(UsageItem, Option<u64>)> = expected
            .iter()
            .filter_map(|(pid, before)| {
                let item = usages.get(pid)?.as_ref()?;
                (Some(item.version) != *before).then(|| (item.clone(), *before))
            })
            .collect();
        let lost: Vec<String> = match self.store.put_usages(&writes).await {
            Ok(written) => writes.iter().zip(written).filter(|(_, ok)| !ok).map(|((u, _), _)| u.pid.clone()).collect(),
            Err(error) => {
                tracing::error!(%error, "batch reservations not stored; denied");
                let failed: Vec<String> = writes.iter().map(|(u, _)| u.pid.clone()).collect();
                for (index, decision) in decided.iter_mut() {
                    let pid = &requests.iter().find(|r| r.index == *index).map(|r| r.pid.clone()).unwrap_or_default();
                    if decision.reservation_id.is_some() && failed.contains(pid) {
                        *decision = Decision::deny(Reason::Unavailable);
                    }
                }
                return decided;
            }
        };
        // A number whose usage changed meanwhile: its requests again, one by one.
        for r in requests.iter().filter(|r| lost.contains(&r.pid)) {
            let decision = self.after_consent(&r.pid, r.program, r.query, r.plan, r.consent.clone(), None).await;
            if let Some(slot) = decided.iter_mut().find(|(index, _)| *index == r.index) {
                slot.1 = decision;
            }
        }
        decided
    }

    /// Releases a reservation that was not used, so a failed send does not
    /// count. True when it was found and removed; false when there is no
    /// such reservation (never made, or released already).
    pub async fn release(&self, reservation_id: &str) -> Result<bool, ServiceError> {
        let Some(pid) = pid_of_reservation(reservation_id) else {
            return Ok(false);
        };
        for _ in 0..MAX_ATTEMPTS {
            let Some(current) = self.store.usage(pid).await? else {
                return Ok(false);
            };
            let mut next = current.clone();
            next.sends.retain(|s| s.reservation_id != reservation_id);
            if next.sends.len() == current.sends.len() {
                return Ok(false);
            }
            next.version = current.version + 1;
            if self.store.put_usage(&next, Some(current.version)).await? {
                tracing::info!(pid = %pid, "reservation released");
                return Ok(true);
            }
        }
        Err(ServiceError::Contention)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_id_carries_the_blind_index_and_nothing_else_is_accepted() {
        let id = reservation_id("AbC-_09");
        assert_eq!(pid_of_reservation(&id), Some("AbC-_09"));
        assert_ne!(reservation_id("AbC-_09"), id, "random");
        for bad in ["", "x.pid", "0123456789abcdef01234567.", "0123456789abcdef01234567.a/b", "no-dot"] {
            assert_eq!(pid_of_reservation(bad), None, "{bad}");
        }
    }
}

//! Frequency caps over a number's recent sends (stored as `ports::UsageItem`): pure,
//! no I/O. A send counts where it is reserved, whatever its time: a send
//! reserved for later counts in every window that holds it, so reservations
//! made out of time order never let a window overflow.
//!
//! Windows: two sends share a rolling window of length `w` when they are
//! less than `w` apart (so the 4th of 3-per-24-hours is allowed exactly 24
//! hours after the first); calendar caps count the recipient's local days
//! (the IANA zone given), the same way over day numbers.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime};

/// One send reserved (or made) for a number: what the caps count. No
/// number, no text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRecord {
    pub reservation_id: String,
    pub program: String,
    pub organization: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// How far back a cap can count: the weekly one covers 7 local calendar
/// days (at most 7 days and a daylight-saving hour before a send); kept
/// with a margin.
const HORIZON: Duration = Duration::days(8);

/// One frequency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// FL/OK: at most `max` sends in any rolling `window` across the organization's programs
    Organization { max: usize, window: Duration },
    /// healthcare exemption: at most `max` sends of this program per local calendar day
    ProgramDaily { max: usize },
    /// healthcare exemption: at most `max` sends of this program in the 7 local calendar days ending on the send's day
    ProgramWeekly { max: usize },
}

/// Ok(()) if one more send by `program` (of `organization`) at `at` keeps
/// every cap; else Err(next_allowed_at): the earliest instant at or after
/// `at` when it would (the oldest counted send ages out, or the local
/// day/week rolls over). `zone` is the recipient's IANA zone for day
/// boundaries (`known_zone`).
///
/// Fails closed: a cap of `max` 0, or a calendar cap with a zone that is
/// not known (or a time outside the calendar), denies with `NEVER`.
pub fn check(
    caps: &[Cap],
    sends: &[SendRecord],
    program: &str,
    organization: &str,
    zone: &str,
    at: OffsetDateTime,
) -> Result<(), OffsetDateTime> {
    let calendar = caps.iter().any(|cap| !matches!(cap, Cap::Organization { .. }));
    let zone = match (calendar, TimeZone::get(zone)) {
        (false, _) => None,
        (true, Ok(zone)) => Some(zone),
        (true, Err(_)) => return Err(NEVER),
    };
    let mut rules = Vec::with_capacity(caps.len());
    for cap in caps {
        rules.push(Rule::new(*cap, sends, program, organization, zone.as_ref()).ok_or(NEVER)?);
    }
    // Each cap is denied on a union of open intervals of time; the first
    // allowed instant at or after `at` is `at` or the end of one of them.
    let mut candidates = vec![at];
    for rule in &rules {
        candidates.extend(rule.ends().into_iter().filter(|end| *end > at));
    }
    candidates.sort();
    candidates.dedup();
    for candidate in candidates {
        let mut allowed = true;
        for rule in &rules {
            allowed &= rule.allows(candidate).ok_or(NEVER)?;
        }
        if allowed {
            return if candidate == at { Ok(()) } else { Err(candidate) };
        }
    }
    Err(NEVER)
}

/// Drops records older than anything a cap can count (8 days), so the item
/// stays small. Records at or after `now - 8 days` (and any reserved for
/// later) stay.
pub fn prune(sends: &mut Vec<SendRecord>, now: OffsetDateTime) {
    let oldest = now - HORIZON;
    sends.retain(|send| send.at >= oldest);
}

/// The answer when no instant can be named: not before the end of the
/// calendar.
pub const NEVER: OffsetDateTime = PrimitiveDateTime::MAX.assume_utc();

/// A cap over positions on a line: instants (nanoseconds) for a rolling
/// window, local day numbers for a calendar one.
struct Rule<'z> {
    max: usize,
    window: i128,
    /// The counted sends' positions, sorted.
    positions: Vec<i128>,
    /// `None`: positions are instants; `Some`: local days in this zone.
    zone: Option<&'z TimeZone>,
}

impl<'z> Rule<'z> {
    fn new(
        cap: Cap,
        sends: &[SendRecord],
        program: &str,
        organization: &str,
        zone: Option<&'z TimeZone>,
    ) -> Option<Self> {
        let (max, window, zone) = match cap {
            Cap::Organization { max, window } => (max, window.whole_nanoseconds(), None),
            Cap::ProgramDaily { max } => (max, 1, Some(zone?)),
            Cap::ProgramWeekly { max } => (max, 7, Some(zone?)),
        };
        let counted = sends.iter().filter(|send| match cap {
            Cap::Organization { .. } => send.organization == organization,
            _ => send.program == program,
        });
        let mut positions = Vec::new();
        for send in counted {
            positions.push(match zone {
                None => send.at.unix_timestamp_nanos(),
                Some(zone) => local_day(send.at, zone)?,
            });
        }
        positions.sort_unstable();
        Some(Rule { max, window, positions, zone })
    }

    /// The position of an instant on this rule's line.
    fn position(&self, at: OffsetDateTime) -> Option<i128> {
        match self.zone {
            None => Some(at.unix_timestamp_nanos()),
            Some(zone) => local_day(at, zone),
        }
    }

    /// The instant a position starts (a local day's first instant).
    fn instant(&self, position: i128) -> Option<OffsetDateTime> {
        match self.zone {
            None => OffsetDateTime::from_unix_timestamp_nanos(position).ok(),
            Some(zone) => start_of_local_day(position, zone),
        }
    }

    /// Every run of `max` consecutive counted sends less than a window
    /// apart, as (first, last): one more send at `p` overflows a window iff
    /// some run has `last - window < p < first + window`.
    fn full_runs(&self) -> impl Iterator<Item = (i128, i128)> + '_ {
        self.positions
            .windows(self.max.max(1))
            .filter_map(|run| Some((*run.first()?, *run.last()?)))
            .filter(|(first, last)| last - first < self.window)
    }

    fn allows(&self, at: OffsetDateTime) -> Option<bool> {
        if self.max == 0 {
            return Some(false);
        }
        let p = self.position(at)?;
        Some(!self.full_runs().any(|(first, last)| last - self.window < p && p < first + self.window))
    }

    /// Where each denied interval ends: the first instant a run's oldest
    /// send no longer shares a window with the new one.
    fn ends(&self) -> Vec<OffsetDateTime> {
        if self.max == 0 {
            return Vec::new();
        }
        self.full_runs().filter_map(|(first, _)| self.instant(first + self.window)).collect()
    }
}

/// The recipient's local calendar day of `at`, as a Julian day number.
fn local_day(at: OffsetDateTime, zone: &TimeZone) -> Option<i128> {
    let timestamp = Timestamp::from_nanosecond(at.unix_timestamp_nanos()).ok()?;
    let date = timestamp.to_zoned(zone.clone()).date();
    let month = Month::try_from(u8::try_from(date.month()).ok()?).ok()?;
    let day = u8::try_from(date.day()).ok()?;
    Some(i128::from(Date::from_calendar_date(i32::from(date.year()), month, day).ok()?.to_julian_day()))
}

/// The first instant of local day `day` (a Julian day number) in `zone`
/// (after a daylight-saving gap at midnight, the first that exists).
fn start_of_local_day(day: i128, zone: &TimeZone) -> Option<OffsetDateTime> {
    let date = Date::from_julian_day(i32::try_from(day).ok()?).ok()?;
    let civil = jiff::civil::Date::new(
        i16::try_from(date.year()).ok()?,
        i8::try_from(u8::from(date.month())).ok()?,
        i8::try_from(date.day()).ok()?,
    )
    .ok()?;
    let start = civil.to_zoned(zone.clone()).ok()?.start_of_day().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(start.timestamp().as_nanosecond()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const DAY: Duration = Duration::days(1);
    const FL: Cap = Cap::Organization { max: 3, window: DAY };
    const EXEMPTION: [Cap; 2] = [Cap::ProgramDaily { max: 1 }, Cap::ProgramWeekly { max: 3 }];

    fn send(id: &str, program: &str, organization: &str, at: OffsetDateTime) -> SendRecord {
        SendRecord { reservation_id: id.into(), program: program.into(), organization: organization.into(), at }
    }

    fn sends(program: &str, organization: &str, times: &[OffsetDateTime]) -> Vec<SendRecord> {
        times.iter().enumerate().map(|(i, at)| send(&format!("r{i}"), program, organization, *at)).collect()
    }

    #[test]
    fn three_in_24_hours_then_the_fourth_waits_for_the_first_to_age_out() {
        let first = datetime!(2026-03-10 14:00 UTC);
        let mut sent = Vec::new();
        for (i, at) in [first, first + Duration::hours(2), first + Duration::hours(5)].into_iter().enumerate() {
            assert_eq!(check(&[FL], &sent, "clinic", "org", "UTC", at), Ok(()), "send {i}");
            sent.push(send(&format!("r{i}"), "clinic", "org", at));
        }
        let fourth = first + Duration::hours(6);
        assert_eq!(check(&[FL], &sent, "clinic", "org", "UTC", fourth), Err(first + DAY));
        // One nanosecond before, still denied; at first + 24 h, allowed.
        let just_before = first + DAY - Duration::nanoseconds(1);
        assert_eq!(check(&[FL], &sent, "clinic", "org", "UTC", just_before), Err(first + DAY));
        assert_eq!(check(&[FL], &sent, "clinic", "org", "UTC", first + DAY), Ok(()));
    }

    #[test]
    fn the_organization_cap_counts_every_program_of_the_organization_and_no_other() {
        let at = datetime!(2026-03-10 14:00 UTC);
        let mut sent = sends("clinic", "lakeside", &[at - Duration::hours(3), at - Duration::hours(1)]);
        sent.push(send("p", "pharmacy", "lakeside", at - Duration::hours(2)));
        sent.extend(sends("other", "elsewhere", &[at - Duration::hours(4), at - Duration::minutes(5)]));
        // Two programs of lakeside sent 3: a third program of it is denied
        // until the oldest (3 hours ago) is 24 hours old.
        assert_eq!(check(&[FL], &sent, "billing", "lakeside", "UTC", at), Err(at + Duration::hours(21)));
        // Another organization's sends do not count against it.
        assert_eq!(check(&[FL], &sent, "other", "elsewhere", "UTC", at), Ok(()));
    }

    #[test]
    fn a_send_reserved_for_later_counts_in_every_window_that_holds_it() {
        let at = datetime!(2026-03-10 14:00 UTC);
        let later = [at + Duration::hours(1), at + Duration::hours(2), at + Duration::hours(3)];
        let sent = sends("clinic", "org", &later);
        // Now would put 4 in (now, now + 3 h]; the first free instant is
        // 24 h after the earliest reserved one.
        assert_eq!(check(&[FL], &sent, "clinic", "org", "UTC", at), Err(at + Duration::hours(25)));
        // More than 24 h before the last, the window is free.
        assert_eq!(check(&[FL], &sent, "clinic", "org", "UTC", at - Duration::hours(22)), Ok(()));
    }

    #[test]
    fn the_daily_exemption_counts_the_recipients_local_day_not_utcs() {
        // 06:30 UTC on 10 March 2026 is 23:30 on the 9th in Los Angeles (PDT).
        let sent = sends("clinic", "org", &[datetime!(2026-03-10 06:30 UTC)]);
        let after_local_midnight = datetime!(2026-03-10 07:30 UTC);
        let la = "America/Los_Angeles";
        assert_eq!(check(&EXEMPTION, &sent, "clinic", "org", la, after_local_midnight), Ok(()));
        // In UTC both are the 10th: denied until the UTC midnight.
        let utc = check(&EXEMPTION, &sent, "clinic", "org", "UTC", after_local_midnight);
        assert_eq!(utc, Err(datetime!(2026-03-11 00:00 UTC)));
        // Before the local midnight, denied until it (07:00 UTC).
        let before = datetime!(2026-03-10 06:45 UTC);
        assert_eq!(check(&EXEMPTION, &sent, "clinic", "org", la, before), Err(datetime!(2026-03-10 07:00 UTC)));
        // Another program's send does not count against this one.
        assert_eq!(check(&EXEMPTION, &sent, "pharmacy", "org", la, before), Ok(()));
    }

    #[test]
    fn the_weekly_exemption_counts_the_7_local_days_ending_today() {
        let la = "America/Los_Angeles";
        // Local days (PDT, UTC-7): Mon 9th, Thu 12th, Sat 14th March 2026.
        let sent = sends(
            "clinic",
            "org",
            &[datetime!(2026-03-09 17:00 UTC), datetime!(2026-03-12 17:00 UTC), datetime!(2026-03-14 17:00 UTC)],
        );
        // Sunday 15th: 3 in the 7 days 9th..15th; the week rolls past the
        // 9th at local midnight starting the 16th.
        let sunday = datetime!(2026-03-15 17:00 UTC);
        assert_eq!(check(&EXEMPTION, &sent, "clinic", "org", la, sunday), Err(datetime!(2026-03-16 07:00 UTC)));
        assert_eq!(check(&EXEMPTION, &sent, "clinic", "org", la, datetime!(2026-03-16 07:00 UTC)), Ok(()));
        // Friday 13th: no send that day, but the week 8th..14th would
        // hold 4 (9th, 12th, 13th, 14th): denied until the 9th leaves every
        // window holding the 14th, local midnight starting the 16th.
        let friday = datetime!(2026-03-13 17:00 UTC);
        assert_eq!(check(&EXEMPTION, &sent, "clinic", "org", la, friday), Err(datetime!(2026-03-16 07:00 UTC)));
    }

    #[test]
    fn the_answer_is_the_first_instant_every_cap_allows() {
        let la = "America/Los_Angeles";
        // Organization: 3 sends of other programs; the oldest ages out at
        // 18:00 UTC on the 10th, which is still the local day (the 10th)
        // of this program's send: the daily cap holds it to local midnight.
        let mut sent = sends("pharmacy", "org", &[datetime!(2026-03-09 18:00 UTC), datetime!(2026-03-09 19:00 UTC)]);
        sent.push(send("c", "clinic", "org", datetime!(2026-03-10 16:00 UTC)));
        let mut caps = vec![FL];
        caps.extend(EXEMPTION);
        let at = datetime!(2026-03-10 17:00 UTC);
        assert_eq!(check(&caps, &sent, "clinic", "org", la, at), Err(datetime!(2026-03-11 07:00 UTC)));
        // Without the exemption caps, the organization cap alone answers 18:00.
        assert_eq!(check(&[FL], &sent, "clinic", "org", la, at), Err(datetime!(2026-03-10 18:00 UTC)));
    }

    #[test]
    fn a_local_day_shortened_by_daylight_saving_still_starts_at_local_midnight() {
        // 8 March 2026: clocks spring forward in Los Angeles (a 23-hour day).
        let la = "America/Los_Angeles";
        let sent = sends("clinic", "org", &[datetime!(2026-03-08 09:00 UTC)]);
        let at = datetime!(2026-03-08 20:00 UTC);
        // Midnight starting the 9th is 07:00 UTC (PDT), not 08:00 (PST).
        assert_eq!(check(&EXEMPTION, &sent, "clinic", "org", la, at), Err(datetime!(2026-03-09 07:00 UTC)));
    }

    #[test]
    fn no_caps_or_no_sends_allow_and_bad_input_denies() {
        let at = datetime!(2026-03-10 14:00 UTC);
        let sent = sends("clinic", "org", &[at]);
        assert_eq!(check(&[], &sent, "clinic", "org", "UTC", at), Ok(()));
        assert_eq!(check(&EXEMPTION, &[], "clinic", "org", "UTC", at), Ok(()));
        // A calendar cap needs a known zone: an unknown one denies.
        assert_eq!(check(&EXEMPTION, &[], "clinic", "org", "Mars/Olympus_Mons", at), Err(NEVER));
        // The organization cap needs no zone.
        assert_eq!(check(&[FL], &[], "clinic", "org", "Mars/Olympus_Mons", at), Ok(()));
        // A cap of 0 never allows.
        assert_eq!(check(&[Cap::ProgramDaily { max: 0 }], &[], "clinic", "org", "UTC", at), Err(NEVER));
        // Times at the ends of the calendar do not panic.
        let (min, max) = (PrimitiveDateTime::MIN.assume_utc(), PrimitiveDateTime::MAX.assume_utc());
        let edge = sends("clinic", "org", &[min, max]);
        for at in [min, max] {
            assert!(check(&EXEMPTION, &edge, "clinic", "org", "Pacific/Kiritimati", at).is_err());
            let _ = check(&[FL], &edge, "clinic", "org", "UTC", at);
        }
    }

    #[test]
    fn prune_keeps_8_days_and_anything_reserved_for_later() {
        let now = datetime!(2026-03-10 14:00 UTC);
        let times = [now - Duration::days(9), now - HORIZON, now - Duration::days(3), now + Duration::hours(2)];
        let mut sent = sends("clinic", "org", &times);
        prune(&mut sent, now);
        let kept: Vec<OffsetDateTime> = sent.iter().map(|s| s.at).collect();
        assert_eq!(kept, times[1..]);
    }
}

//! When a recipient may be texted: a daily window of local wall-clock time,
//! checked in every zone the recipient may be in.
//!
//! An instant is inside a window in a zone when the zone's local time of day
//! at that instant is in `[start, end)`. Between two offset transitions a
//! zone's offset is constant, so its open intervals there follow by
//! arithmetic; the transitions (from jiff's bundled tz database) cut the time
//! line, which handles DST gaps and overlaps exactly: a window opening inside
//! a spring-forward gap opens at the transition, and a wall-clock hour that
//! repeats in the autumn is judged by the clock as it reads.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use time::OffsetDateTime;

/// A daily local window [start, end), minutes after local midnight.
///
/// `end_minute` at most 1440 (midnight ending the day). A window with
/// `end_minute <= start_minute` runs over midnight; an empty one
/// (`start_minute == end_minute`) is never open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_minute: u16,
    pub end_minute: u16,
}

/// Federal TCPA window: 8:00..21:00 local.
pub const FEDERAL: Window = Window { start_minute: 8 * 60, end_minute: 21 * 60 };

/// Florida, Oklahoma and Washington: 8:00..20:00 local.
const STRICT_STATES: Window = Window { start_minute: 8 * 60, end_minute: 20 * 60 };

/// FL, OK, WA: 8:00..20:00; None for other states.
pub fn state_window(state: &str) -> Option<Window> {
    match state.trim().to_ascii_uppercase().as_str() {
        "FL" | "OK" | "WA" => Some(STRICT_STATES),
        _ => None,
    }
}

const DAY: i64 = 86_400;
const NANOS: i128 = 1_000_000_000;
/// How far ahead openings are looked for: real zones with a 12- or 13-hour
/// window share an opening every day, so this only bounds the guard below.
const HORIZON_DAYS: i64 = 8;
/// The guard for zones that never share an opening looks this far ahead.
const GUARD_DAYS: i64 = 7;

/// A half-open interval of Unix seconds.
type Span = (i64, i64);

/// Ok(()) when `at` is inside `window` in every zone of `zones`; else Err(next): the first instant >= at when it is inside in all zones at once.
///
/// Computed per zone from the zone's offset transitions (no minute-by-minute
/// search): each zone's open intervals over the next days are intersected and
/// the first common instant at or after `at` is the answer.
///
/// Choices, for the cases real data never produces:
/// - Zones whose windows are never open together within 7 days (impossible
///   for real zones of one country with 12- or 13-hour windows; possible for
///   [`crate::domain::recipient::ANYWHERE`]): the answer is still a denial,
///   with `next` the earliest instant in the 7 days from `at` that is open in
///   the most zones (which may be `at` itself). A sender retrying then is
///   denied again; giving `recipient.time_zone` is the way out.
/// - An unknown zone name (a caller bug: `locate` checks names) is replaced by
///   the strictest presumption, every offset from UTC-12 to UTC+14
///   ([`crate::domain::recipient::ANYWHERE`]), so it denies as above.
/// - No zones at all is treated the same way (never "always open").
/// - An `at` outside jiff's range (years -9999..=9999) is denied with
///   `next == at`.
pub fn check(window: Window, zones: &[String], at: OffsetDateTime) -> Result<(), OffsetDateTime> {
    let at_nanos = at.unix_timestamp_nanos();
    let Some(at_second) = seconds_floor(at_nanos) else {
        return Err(at);
    };
    let zones = resolve(zones);
    let from = at_second - DAY;
    let until = at_second + HORIZON_DAYS * DAY;
    let per_zone: Vec<Vec<Span>> = zones.iter().map(|tz| open_spans(tz, window, from, until)).collect();
    let common = per_zone
        .iter()
        .skip(1)
        .fold(per_zone.first().cloned().unwrap_or_default(), |acc, spans| intersect(&acc, spans));
    let first = common.iter().find(|(_, end)| i128::from(*end) * NANOS > at_nanos);
    match first {
        Some((start, _)) if i128::from(*start) * NANOS <= at_nanos => Ok(()),
        Some((start, _)) => Err(to_time(*start).unwrap_or(at)),
        None => Err(most_open(&per_zone, at_nanos, at_second).and_then(to_time).unwrap_or(at)),
    }
}

fn seconds_floor(nanos: i128) -> Option<i64> {
    let ts = Timestamp::from_nanosecond(nanos).ok()?;
    // Floor, not truncate, for instants before 1970.
    Some(ts.as_second() - i64::from(ts.subsec_nanosecond() < 0))
}

fn to_time(second: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(second).ok()
}

/// The zones to check: known names from the bundled database; an unknown name,
/// or none at all, brings in every offset UTC-12..UTC+14.
fn resolve(zones: &[String]) -> Vec<TimeZone> {
    let mut resolved = Vec::with_capacity(zones.len());
    let mut anywhere = zones.is_empty();
    for name in zones {
        match jiff::tz::db().get(name) {
            Ok(tz) => resolved.push(tz),
            Err(_) => anywhere = true,
        }
    }
    if anywhere {
        resolved.extend((-12..=14).filter_map(|hours| jiff::tz::Offset::from_hours(hours).ok()).map(TimeZone::fixed));
    }
    resolved
}

/// The intervals of [from, until) when `tz`'s local time of day is inside
/// `window`, sorted and merged.
fn open_spans(tz: &TimeZone, window: Window, from: i64, until: i64) -> Vec<Span> {
    let start = i64::from(window.start_minute.min(1440)) * 60;
    let mut end = i64::from(window.end_minute.min(1440)) * 60;
    if start == end {
        return Vec::new();
    }
    if end < start {
        end += DAY;
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut segment_start = from;
    while segment_start < until {
        let Ok(ts) = Timestamp::from_second(segment_start) else {
            break;
        };
        let offset = i64::from(tz.to_offset(ts).seconds());
        let next_transition = tz
            .following(ts)
            .next()
            .map(|transition| transition.timestamp().as_second())
            .filter(|&second| second > segment_start);
        let segment_end = next_transition.map_or(until, |second| second.min(until));
        // Within the segment local = utc + offset; local day k opens at
        // k*DAY + start and closes at k*DAY + end (local seconds).
        let first_day = (segment_start + offset).div_euclid(DAY) - 1;
        let last_day = (segment_end + offset).div_euclid(DAY);
        for day in first_day..=last_day {
            let open = (day * DAY + start - offset).max(segment_start);
            let close = (day * DAY + end - offset).min(segment_end);
            if open < close {
                match spans.last_mut() {
                    Some(last) if last.1 >= open => last.1 = last.1.max(close),
                    _ => spans.push((open, close)),
                }
            }
        }
        segment_start = segment_end;
    }
    spans
}

/// The intersection of two sorted, disjoint interval lists.
fn intersect(a: &[Span], b: &[Span]) -> Vec<Span> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let open = a[i].0.max(b[j].0);
        let close = a[i].1.min(b[j].1);
        if open < close {
            out.push((open, close));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The guard for zones never open together: the earliest second in the
/// [`GUARD_DAYS`] from `at` that is open in the most zones; None when that is
/// `at` itself.
fn most_open(per_zone: &[Vec<Span>], at_nanos: i128, at_second: i64) -> Option<i64> {
    let limit = at_second + GUARD_DAYS * DAY;
    let open_count = |nanos: i128| {
        let inside = |(open, close): &Span| i128::from(*open) * NANOS <= nanos && nanos < i128::from(*close) * NANOS;
        per_zone.iter().filter(|spans| spans.iter().any(inside)).count()
    };
    // The count only rises where some zone opens, so those instants (and `at`) are the candidates.
    let mut candidates: Vec<i64> = per_zone
        .iter()
        .flatten()
        .map(|(open, _)| *open)
        .filter(|&open| i128::from(open) * NANOS > at_nanos && open < limit)
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    let mut best = (open_count(at_nanos), None);
    for second in candidates {
        let count = open_count(i128::from(second) * NANOS);
        if count > best.0 {
            best = (count, Some(second));
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn zones(list: &[&str]) -> Vec<String> {
        list.iter().map(|z| (*z).to_owned()).collect()
    }

    #[test]
    fn windows() {
        assert_eq!(FEDERAL, Window { start_minute: 480, end_minute: 1260 });
        for state in ["FL", "OK", "WA", "fl"] {
            assert_eq!(state_window(state), Some(Window { start_minute: 480, end_minute: 1200 }), "{state}");
        }
        for state in ["CA", "NY", "TX", "", "FLA"] {
            assert_eq!(state_window(state), None, "{state}");
        }
    }

    #[test]
    fn los_angeles_closes_at_nine_pm_and_reopens_at_eight_am() {
        let la = zones(&["America/Los_Angeles"]);
        // 2025-01-15 20:59 PST = 04:59 UTC on the 16th.
        assert_eq!(check(FEDERAL, &la, datetime!(2025-01-16 04:59:59.999 UTC)), Ok(()));
        assert_eq!(check(FEDERAL, &la, datetime!(2025-01-16 05:00 UTC)), Err(datetime!(2025-01-16 16:00 UTC)));
        // Before 8:00 the next opening is the same day's.
        assert_eq!(check(FEDERAL, &la, datetime!(2025-01-16 15:59 UTC)), Err(datetime!(2025-01-16 16:00 UTC)));
        assert_eq!(check(FEDERAL, &la, datetime!(2025-01-16 16:00 UTC)), Ok(()));
        // Summer: 21:00 PDT = 04:00 UTC, next 08:00 PDT = 15:00 UTC.
        assert_eq!(check(FEDERAL, &la, datetime!(2025-07-16 03:59 UTC)), Ok(()));
        assert_eq!(check(FEDERAL, &la, datetime!(2025-07-16 04:00 UTC)), Err(datetime!(2025-07-16 15:00 UTC)));
    }

    #[test]
    fn a_415_number_at_2059_and_2100_los_angeles_time() {
        let n = crate::domain::PhoneNumber::parse("+14155550123").unwrap();
        let whereabouts = crate::domain::recipient::presume(&n);
        assert_eq!(check(FEDERAL, &whereabouts.zones, datetime!(2025-03-20 20:59 -07:00)), Ok(()));
        assert_eq!(
            check(FEDERAL, &whereabouts.zones, datetime!(2025-03-20 21:00 -07:00)),
            Err(datetime!(2025-03-21 08:00 -07:00))
        );
    }

    #[test]
    fn florida_closes_at_eight_pm() {
        let n = crate::domain::PhoneNumber::parse("+13055550123").unwrap();
        let miami = crate::domain::recipient::presume(&n);
        let florida = state_window(miami.state.as_deref().unwrap()).unwrap();
        assert_eq!(check(florida, &miami.zones, datetime!(2025-06-10 19:59 -04:00)), Ok(()));
        assert_eq!(
            check(florida, &miami.zones, datetime!(2025-06-10 20:00 -04:00)),
            Err(datetime!(2025-06-11 08:00 -04:00))
        );
        // The federal window would still be open.
        assert_eq!(check(FEDERAL, &miami.zones, datetime!(2025-06-10 20:00 -04:00)), Ok(()));
    }

    #[test]
    fn a_two_zone_area_code_opens_when_the_later_zone_does() {
        let n = crate::domain::PhoneNumber::parse("+12705550123").unwrap();
        let kentucky = crate::domain::recipient::presume(&n).zones;
        assert_eq!(kentucky, zones(&["America/Chicago", "America/New_York"]));
        // 8:30 Eastern is 7:30 Central: denied until 8:00 Central (9:00 Eastern).
        assert_eq!(
            check(FEDERAL, &kentucky, datetime!(2025-05-05 08:30 -04:00)),
            Err(datetime!(2025-05-05 08:00 -05:00))
        );
        assert_eq!(check(FEDERAL, &kentucky, datetime!(2025-05-05 08:00 -05:00)), Ok(()));
        // And it closes when the earlier zone does: 21:00 Eastern is 20:00 Central.
        assert_eq!(check(FEDERAL, &kentucky, datetime!(2025-05-05 20:59 -04:00)), Ok(()));
        assert_eq!(
            check(FEDERAL, &kentucky, datetime!(2025-05-05 21:00 -04:00)),
            Err(datetime!(2025-05-06 08:00 -05:00))
        );
    }

    #[test]
    fn spring_forward_in_new_york() {
        let ny = zones(&["America/New_York"]);
        // 2025-03-09: 2:00 EST becomes 3:00 EDT. At 21:00 EST the day before, next is 8:00 EDT.
        assert_eq!(check(FEDERAL, &ny, datetime!(2025-03-08 21:00 -05:00)), Err(datetime!(2025-03-09 08:00 -04:00)));
        assert_eq!(check(FEDERAL, &ny, datetime!(2025-03-09 07:59 -04:00)), Err(datetime!(2025-03-09 08:00 -04:00)));
        assert_eq!(check(FEDERAL, &ny, datetime!(2025-03-09 08:00 -04:00)), Ok(()));
        assert_eq!(check(FEDERAL, &ny, datetime!(2025-03-09 21:00 -04:00)), Err(datetime!(2025-03-10 08:00 -04:00)));
        // A window opening inside the gap opens when the clock jumps past it.
        let from_2_30 = Window { start_minute: 150, end_minute: 600 };
        assert_eq!(check(from_2_30, &ny, datetime!(2025-03-09 01:59 -05:00)), Err(datetime!(2025-03-09 03:00 -04:00)));
    }

    #[test]
    fn fall_back_in_new_york() {
        let ny = zones(&["America/New_York"]);
        // 2025-11-02: 2:00 EDT becomes 1:00 EST. At 21:00 EDT the day before, next is 8:00 EST.
        assert_eq!(check(FEDERAL, &ny, datetime!(2025-11-01 21:00 -04:00)), Err(datetime!(2025-11-02 08:00 -05:00)));
        assert_eq!(check(FEDERAL, &ny, datetime!(2025-11-02 07:59 -05:00)), Err(datetime!(2025-11-02 08:00 -05:00)));
        assert_eq!(check(FEDERAL, &ny, datetime!(2025-11-02 08:00 -05:00)), Ok(()));
        // A window closing at 1:30 reopens for the repeated hour's first half.
        let until_1_30 = Window { start_minute: 0, end_minute: 90 };
        assert_eq!(check(until_1_30, &ny, datetime!(2025-11-02 01:29 -04:00)), Ok(()));
        assert_eq!(check(until_1_30, &ny, datetime!(2025-11-02 01:30 -04:00)), Err(datetime!(2025-11-02 01:00 -05:00)));
        assert_eq!(check(until_1_30, &ny, datetime!(2025-11-02 01:30 -05:00)), Err(datetime!(2025-11-03 00:00 -05:00)));
    }

    #[test]
    fn an_unknown_us_area_code_still_has_an_opening_every_day() {
        let us = crate::domain::recipient::presume(&crate::domain::recipient::unknown_us_number()).zones;
        assert!(us.contains(&"Pacific/Honolulu".to_owned()) && us.contains(&"America/Adak".to_owned()));
        for window in [FEDERAL, STRICT_STATES] {
            // Every day of a year (both DST seasons), the next opening is within the day and it is open there.
            let mut at = datetime!(2025-01-01 00:00 UTC);
            for _ in 0..365 {
                let next = match check(window, &us, at) {
                    Ok(()) => at,
                    Err(next) => next,
                };
                assert!(next - at < time::Duration::days(1), "{window:?} at {at}: next {next}");
                assert_eq!(check(window, &us, next), Ok(()), "{window:?} at {at}");
                at += time::Duration::days(1);
            }
        }
        // Summer: 8:00 HST (UTC-10) to 21:00 EDT (UTC-4) = 18:00 to 01:00 UTC.
        assert_eq!(check(FEDERAL, &us, datetime!(2025-07-01 17:59 UTC)), Err(datetime!(2025-07-01 18:00 UTC)));
        assert_eq!(check(FEDERAL, &us, datetime!(2025-07-02 01:00 UTC)), Err(datetime!(2025-07-02 18:00 UTC)));
    }

    #[test]
    fn every_presumed_country_with_one_zone_family_has_an_opening() {
        for e164 in ["+447911123456", "+61412345678", "+79161234567", "+5511912345678", "+525512345678"] {
            let n = crate::domain::PhoneNumber::parse(e164).unwrap();
            let z = crate::domain::recipient::presume(&n).zones;
            let at = datetime!(2025-04-01 12:00 UTC);
            let next = match check(FEDERAL, &z, at) {
                Ok(()) => at,
                Err(next) => next,
            };
            assert!(next - at < time::Duration::days(1), "{e164}");
            assert_eq!(check(FEDERAL, &z, next), Ok(()), "{e164}");
        }
    }

    #[test]
    fn zones_never_open_together_deny_with_the_best_instant() {
        let anywhere = zones(&crate::domain::recipient::ANYWHERE);
        for at in [datetime!(2025-04-01 12:00 UTC), datetime!(2025-04-01 03:17:42.5 UTC)] {
            let next = check(FEDERAL, &anywhere, at).unwrap_err();
            assert!(next >= at && next - at < time::Duration::days(7), "{next}");
            assert!(check(FEDERAL, &anywhere, next).is_err());
        }
        // An unknown zone name, or none, is never open: the strictest presumption.
        for z in [zones(&["Mars/Olympus_Mons"]), zones(&["America/Chicago", "Nowhere"]), Vec::new()] {
            for hour in 0..24 {
                let at = datetime!(2025-04-01 00:00 UTC) + time::Duration::hours(hour);
                assert!(check(FEDERAL, &z, at).is_err(), "{z:?} {hour}");
            }
        }
    }

    #[test]
    fn odd_windows_and_instants_never_panic() {
        let ny = zones(&["America/New_York"]);
        let overnight = Window { start_minute: 22 * 60, end_minute: 6 * 60 };
        assert_eq!(check(overnight, &ny, datetime!(2025-01-10 23:00 -05:00)), Ok(()));
        assert_eq!(check(overnight, &ny, datetime!(2025-01-11 05:59 -05:00)), Ok(()));
        assert_eq!(check(overnight, &ny, datetime!(2025-01-11 06:00 -05:00)), Err(datetime!(2025-01-11 22:00 -05:00)));
        let empty = Window { start_minute: 600, end_minute: 600 };
        assert!(check(empty, &ny, datetime!(2025-01-10 10:00 -05:00)).is_err());
        let huge = Window { start_minute: u16::MAX, end_minute: u16::MAX - 1 };
        let _ = check(huge, &ny, datetime!(2025-01-10 10:00 -05:00));
        let _ = check(FEDERAL, &ny, OffsetDateTime::UNIX_EPOCH - time::Duration::days(400_000));
        let _ = check(FEDERAL, &ny, datetime!(1965-06-01 12:00:00.5 UTC));
    }

    proptest::proptest! {
        #[test]
        fn next_is_the_first_open_instant(
            seconds in 0i64..4_102_444_800,
            area in proptest::sample::select(vec!["415", "270", "907", "208", "850", "787", "808", "416", "709"]),
            strict in proptest::bool::ANY,
        ) {
            let n = crate::domain::PhoneNumber::parse(&format!("+1{area}2345678")).unwrap();
            let z = crate::domain::recipient::presume(&n).zones;
            let window = if strict { STRICT_STATES } else { FEDERAL };
            let at = OffsetDateTime::from_unix_timestamp(seconds).unwrap();
            match check(window, &z, at) {
                Ok(()) => {}
                Err(next) => {
                    proptest::prop_assert!(next > at && next - at < time::Duration::days(1), "{at} -> {next}");
                    proptest::prop_assert_eq!(check(window, &z, next), Ok(()));
                    proptest::prop_assert!(check(window, &z, next - time::Duration::seconds(1)).is_err());
                }
            }
        }

        #[test]
        fn any_input_never_panics(
            seconds in proptest::num::i64::ANY,
            start in proptest::num::u16::ANY,
            end in proptest::num::u16::ANY,
            zone in ".{0,40}",
        ) {
            let at = OffsetDateTime::from_unix_timestamp(seconds % 253_402_300_799).unwrap();
            let _ = check(Window { start_minute: start, end_minute: end }, std::slice::from_ref(&zone), at);
        }
    }
}

//! Phone numbers, built only by parsing: a `PhoneNumber` is always E.164.
//!
//! A number the bundled numbering metadata knows is formatted by it. A
//! number it does not know yet (a range or area code opened after the
//! `phonenumber` crate's data, such as +1 273 in 2025) is still accepted
//! when it is syntactically E.164 under a country code that exists: 8 to 15
//! digits, and for +1 the North American plan's shape. A STOP from such a
//! number must be recorded, not refused. Keep the crate's data fresh.
//!
//! A number under calling code 1 (the North American plan) is checked
//! against the plan's 25 regions only (`data/nanp_metadata.xml`, cut from
//! the crate's own data); any other calling code against the crate's whole
//! database, which takes tens of milliseconds to parse and so is parsed
//! only when such a number first comes.

use std::collections::HashSet;
use std::fmt;
use std::sync::{OnceLock, RwLock};

use phonenumber::metadata::{Database, DATABASE};

/// Longest input worth handing to the parser; E.164 has at most 15 digits, so
/// anything far longer is garbage and is refused before any parsing work.
pub const MAX_INPUT_LEN: usize = 40;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number is too long")]
    TooLong,
    #[error("phone number has characters other than digits, spaces, '+', '-', '.', '(' and ')'")]
    BadCharacters,
    #[error("phone number must be in E.164 form, starting with '+' and the country code")]
    NotInternational,
    #[error("not a valid phone number")]
    Invalid,
}

/// How many validated numbers the fast path remembers before it starts over:
/// the clinic numbers (a handful) and the patients seen recently. At most
/// about 1 MB; emptied when full, so a flood of new numbers costs only the
/// crate's parse each, as before.
const KNOWN_CAPACITY: usize = 16_384;

/// Numbers already validated by the crate, in the exact E.164 form it
/// produced for themselves. Parsing is a pure function of the input, so an
/// input equal to one of these parses to itself: the set answers exactly
/// what the crate would, without its ~6 µs (two thirds of a Twilio
/// webhook's handling). Only canonical inputs are remembered, so the set
/// holds only valid numbers and never grows on garbage.
fn known() -> &'static RwLock<HashSet<Box<str>>> {
    static KNOWN: OnceLock<RwLock<HashSet<Box<str>>>> = OnceLock::new();
    KNOWN.get_or_init(|| RwLock::new(HashSet::new()))
}

/// `+` then 8 to 15 digits, nothing else: the only inputs the fast path
/// looks up (every valid number in that form is its own E.164).
fn is_canonical_shape(s: &str) -> bool {
    let b = s.as_bytes();
    b.first() == Some(&b'+') && (9..=16).contains(&b.len()) && b[1..].iter().all(u8::is_ascii_digit)
}

impl PhoneNumber {
    /// Parses a number in international form (`+` and country code; spaces,
    /// dashes, dots and brackets allowed) into E.164.
    ///
    /// A canonical input validated before is answered from memory; any other
    /// goes through [`PhoneNumber::parse_uncached`] (the crate), and a valid
    /// canonical one is then remembered.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        let canonical = is_canonical_shape(trimmed);
        if canonical && known().read().is_ok_and(|set| set.contains(trimmed)) {
            return Ok(Self(trimmed.to_owned()));
        }
        let parsed = Self::parse_uncached(trimmed)?;
        if canonical && parsed.0 == trimmed {
            if let Ok(mut set) = known().write() {
                if set.len() >= KNOWN_CAPACITY {
                    set.clear();
                }
                set.insert(trimmed.into());
            }
        }
        Ok(parsed)
    }

    /// The full parse through the numbering metadata, without the memory of
    /// known numbers (what [`PhoneNumber::parse`] answers for a new input).
    pub fn parse_uncached(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        if trimmed.len() > MAX_INPUT_LEN {
            return Err(PhoneError::TooLong);
        }
        if !trimmed.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')')) {
            return Err(PhoneError::BadCharacters);
        }
        if !trimmed.starts_with('+') || trimmed[1..].contains('+') {
            return Err(PhoneError::NotInternational);
        }
        let digits = trimmed.chars().filter(char::is_ascii_digit).count();
        if !(4..=15).contains(&digits) {
            return Err(PhoneError::Invalid);
        }
        Self::parse_in(metadata_for(trimmed), trimmed)
    }

    /// The crate's parse and validation of a checked input against one
    /// database (the one [`metadata_for`] picks).
    fn parse_in(database: &Database, trimmed: &str) -> Result<Self, PhoneError> {
        let parsed = phonenumber::parse_with(database, None, trimmed).map_err(|_| PhoneError::Invalid)?;
        if phonenumber::is_valid_with(database, &parsed) {
            // What the crate's E.164 formatter writes; that formatter loads
            // the whole database whatever database it is given.
            return Ok(Self(format!("+{}{}", parsed.code().value(), parsed.national())));
        }
        // Not in the bundled metadata: E.164 by shape under a real country code.
        let all: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        let code = parsed.code().value().to_string();
        let national = all.strip_prefix(code.as_str()).unwrap_or_default();
        let shaped = (8..=15).contains(&all.len()) && national.len() >= 4 && (code != "1" || is_nanp(national));
        if !shaped {
            return Err(PhoneError::Invalid);
        }
        Ok(Self(format!("+{all}")))
    }

    /// Parses a provider's bare-digit form (`14155550100`, as Vonage sends it)
    /// by reading it as international.
    pub fn parse_digits(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if trimmed.starts_with('+') {
            Self::parse(trimmed)
        } else {
            Self::parse(&format!("+{trimmed}"))
        }
    }

    pub fn as_e164(&self) -> &str {
        &self.0
    }

    /// The calling code, and the region whose patterns the number matches
    /// (`None` for a number newer than the metadata). `None` only if the
    /// crate could not read its own E.164 back, which it always can.
    pub fn region(&self) -> Option<(u16, Option<phonenumber::country::Id>)> {
        let database = metadata_for(&self.0);
        let parsed = phonenumber::parse_with(database, None, &self.0).ok()?;
        Some((parsed.code().value(), parsed.metadata(database).and_then(|m| m.id().parse().ok())))
    }
}

/// The North American plan's metadata: the crate's own territories with
/// calling code 1, verbatim (`data/nanp_metadata.py` cuts them; a unit test
/// checks them against the crate's). Parsed once, on first use, in a few
/// milliseconds; `None` (never expected) sends +1 to the whole database.
fn nanp() -> Option<&'static Database> {
    static NANP: OnceLock<Option<Database>> = OnceLock::new();
    NANP.get_or_init(|| Database::parse(include_str!("../../data/nanp_metadata.xml")).ok()).as_ref()
}

/// The database that answers for an input in international form: the plan's
/// subset when its first digit is 1 (no other calling code begins with 1),
/// else the crate's whole database.
fn metadata_for(international: &str) -> &'static Database {
    match international.bytes().find(u8::is_ascii_digit) {
        // Not `unwrap_or(&DATABASE)`: coercing the Lazy to `&Database` loads it.
        Some(b'1') => nanp().unwrap_or_else(|| &DATABASE),
        _ => &DATABASE,
    }
}

/// Loads the numbering metadata a +1 number needs and compiles the patterns
/// its validation uses (they are compiled on first use): a cold start calls
/// it on a spare thread while it waits on the network, so that validating
/// the config's clinic numbers does not pay it. (A clinic number under
/// another calling code loads the whole database while the config is
/// validated.)
pub fn load_metadata() {
    let _ = PhoneNumber::parse_uncached("+12015550123");
}

/// The North American plan's shape: NXX NXX XXXX (N is 2 to 9).
fn is_nanp(national: &str) -> bool {
    let b = national.as_bytes();
    b.len() == 10 && (b'2'..=b'9').contains(&b[0]) && (b'2'..=b'9').contains(&b[3])
}

/// Never prints the number: a stray `{:?}` in a log line must not leak PHI.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneNumber([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formatted_international_numbers_become_e164() {
        for (input, expected) in [
            ("+14158675309", "+14158675309"),
            ("+1 (415) 867-5309", "+14158675309"),
            (" +44 20 7946 0958 ", "+442079460958"),
            ("+34 612 34 56 78", "+34612345678"),
        ] {
            assert_eq!(PhoneNumber::parse(input).unwrap().as_e164(), expected, "{input}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [
            "",
            "   ",
            "hello",
            "+",
            "++14155550100",
            "+1415867530x",
            "4158675309",
            "+1 415 867 5309 1234 5678 9012 3456 7890 1234",
            "+0000",
            "+1\u{0}415",
            "+١٢٣",
        ] {
            assert!(PhoneNumber::parse(input).is_err(), "{input:?} should be refused");
        }
    }

    #[test]
    fn a_number_newer_than_the_bundled_metadata_is_accepted_by_its_shape() {
        // +1 273 (Pennsylvania) went into service in 2025.
        assert_eq!(PhoneNumber::parse("+1 273 555 0123").unwrap().as_e164(), "+12735550123");
        assert_eq!(PhoneNumber::parse_digits("12735550123").unwrap().as_e164(), "+12735550123");
        for bad in ["+1273555012", "+12731550123", "+1 073 555 0123", "+999123456789", "+4412"] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(PhoneNumber::parse("+4420794609581").is_ok(), "a +44 number the metadata does not know");
    }

    #[test]
    fn bare_digits_are_read_as_international() {
        assert_eq!(PhoneNumber::parse_digits("14843472194").unwrap().as_e164(), "+14843472194");
    }

    #[test]
    fn debug_output_hides_the_number() {
        let n = PhoneNumber::parse("+14158675309").unwrap();
        assert!(!format!("{n:?}").contains("867"));
    }

    /// Near-misses of E.164: the shapes a fast path could wrongly accept.
    fn near_e164() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\+1[2-9][0-9]{2}[2-9][0-9]{6}",
            "\\+1[0-9]{8,12}",
            "\\+[1-9][0-9]{6,15}",
            "\\+(44|33|34|49|52|61|81|86|91|353|380|972)[0-9]{6,12}",
            "\\+0[0-9]{7,14}",
            "[0-9]{8,15}",
            " ?\\+1[2-9][0-9]{9} ?",
            "\\+1[2-9][0-9]{2}[ .-]?[2-9][0-9]{2}[ .-]?[0-9]{4}",
            "\\+{1,2}[0-9]{8,15}\\+?",
        ]
    }

    #[test]
    fn a_known_number_is_answered_exactly_as_the_crate_answers() {
        for input in ["+14158675309", "+442079460958", "+12735550123", "+14155550100"] {
            let first = PhoneNumber::parse(input).unwrap();
            assert!(known().read().unwrap().contains(input), "{input} is remembered");
            assert_eq!(PhoneNumber::parse(input).unwrap(), first);
            assert_eq!(PhoneNumber::parse_uncached(input).unwrap(), first);
        }
        // A formatted input is not remembered under its own spelling.
        PhoneNumber::parse("+1 (415) 867-5309").unwrap();
        assert!(!known().read().unwrap().contains("+1 (415) 867-5309"));
        for bad in ["+1415867530", "+10735550123", "+999123456789"] {
            assert!(PhoneNumber::parse(bad).is_err() && PhoneNumber::parse(bad).is_err());
            assert!(!known().read().unwrap().contains(bad), "{bad} is not remembered");
        }
    }

    #[test]
    fn the_nanp_subset_is_the_crates_plus_one_metadata() {
        let nanp = nanp().expect("data/nanp_metadata.xml parses");
        let regions = DATABASE.region(&1).expect("the crate knows +1");
        assert_eq!(
            nanp.region(&1),
            Some(regions.clone()),
            "the same regions, main one first (rerun data/nanp_metadata.py)"
        );
        for id in regions {
            // Debug shows every field, each pattern as its source text.
            assert_eq!(
                format!("{:?}", nanp.by_id(id)),
                format!("{:?}", DATABASE.by_id(id)),
                "{id} differs from the crate's (rerun data/nanp_metadata.py)"
            );
        }
    }

    /// The subset answers as the whole database for +1 inputs (parse,
    /// validation, E.164 form, region); the area codes from `data/` and
    /// random digits, plain and formatted.
    fn assert_same_answer(input: &str) {
        let nanp = nanp().unwrap();
        assert_eq!(PhoneNumber::parse_in(nanp, input), PhoneNumber::parse_in(&DATABASE, input), "{input}");
        if let Ok(number) = PhoneNumber::parse_in(&DATABASE, input) {
            let whole = phonenumber::parse_with(&DATABASE, None, input).unwrap();
            if phonenumber::is_valid(&whole) {
                assert_eq!(number.as_e164(), whole.format().mode(phonenumber::Mode::E164).to_string(), "{input}");
            }
            let whole = phonenumber::parse_with(&DATABASE, None, number.as_e164()).unwrap();
            let whole = (whole.code().value(), whole.metadata(&DATABASE).and_then(|m| m.id().parse().ok()));
            assert_eq!(number.region(), Some(whole), "{input}");
        }
    }

    #[test]
    fn every_area_code_is_answered_as_the_whole_database_answers() {
        assert!(std::ptr::eq(metadata_for("+1 415"), nanp().unwrap()));
        assert!(std::ptr::eq(metadata_for("+44 20"), &*DATABASE));
        for npa in 0..1000 {
            for line in ["2345678", "5550100", "8675309", "1234567"] {
                assert_same_answer(&format!("+1{npa:03}{line}"));
            }
        }
    }

    proptest! {
        #[test]
        fn plus_one_is_answered_as_the_whole_database_answers(
            s in prop_oneof!["\\+1[0-9]{3,14}", "\\+1 ?\\(?[0-9]{3}\\)? ?[0-9]{3}[ .-]?[0-9]{4}"]
        ) {
            assert_same_answer(&s);
        }

        #[test]
        fn the_e164_form_is_the_crates(s in prop_oneof![near_e164(), "\\+39 ?0[0-9]{5,10}", "\\+(225|242|378) ?0[0-9]{6,9}"]) {
            // Where both accept it (the crate also reads "++1..." and bare digits).
            if let (Ok(ours), Ok(whole)) = (PhoneNumber::parse_uncached(&s), phonenumber::parse(None, s.trim())) {
                if phonenumber::is_valid(&whole) {
                    prop_assert_eq!(ours.0, whole.format().mode(phonenumber::Mode::E164).to_string());
                }
            }
        }

        #[test]
        fn the_fast_path_answers_exactly_what_the_crate_answers(s in near_e164()) {
            let crate_answer = PhoneNumber::parse_uncached(&s);
            // First through the crate (and remembered if valid), then from memory.
            prop_assert_eq!(&PhoneNumber::parse(&s), &crate_answer);
            prop_assert_eq!(&PhoneNumber::parse(&s), &crate_answer);
            prop_assert_eq!(&PhoneNumber::parse_digits(s.trim_start_matches('+')), &PhoneNumber::parse_uncached(&format!("+{}", s.trim().trim_start_matches('+'))));
        }

        #[test]
        fn parsing_any_string_never_panics(s in ".{0,64}") {
            let _ = PhoneNumber::parse(&s);
            let _ = PhoneNumber::parse_digits(&s);
        }

        #[test]
        fn parsing_plausible_numbers_never_panics(s in "\\+[0-9 ()-]{0,30}") {
            let _ = PhoneNumber::parse(&s);
        }
    }
}

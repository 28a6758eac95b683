//! A +1 number never loads the `phonenumber` crate's whole database (the
//! tens of milliseconds a cold start used to spend): parsing, the fast path
//! and the recipient's region use the North American plan's subset. The
//! test is this binary's only one, so no other test has loaded it before.

use once_cell::sync::Lazy;
use phonenumber::metadata::DATABASE;
use sms_consent::domain::phone::{load_metadata, PhoneNumber};
use sms_consent::domain::recipient::presume;

#[test]
fn plus_one_numbers_leave_the_whole_database_unloaded_until_another_code_comes() {
    load_metadata();
    for input in ["+14155550100", "+1 (415) 867-5309", "+12735550123", "+17875550123", "+18765550123"] {
        let number = PhoneNumber::parse(input).unwrap();
        let _ = presume(&number);
        assert!(number.region().is_some());
    }
    assert!(PhoneNumber::parse("+1415").is_err());
    assert!(PhoneNumber::parse_digits("12025550123").is_ok());
    assert!(Lazy::get(&DATABASE).is_none(), "a +1 number loaded the whole database");

    let london = PhoneNumber::parse("+44 20 7946 0958").unwrap();
    assert_eq!(london.as_e164(), "+442079460958");
    assert!(Lazy::get(&DATABASE).is_some(), "another calling code is answered by the whole database");
}

//! The stand-alone verifier (`evidence_verifier/verify.rs`) against a
//! bundle the service exported and the public key `sms-consent
//! evidence-public-key` printed for it (`fixtures/evidence/`): the bundle
//! alone, no service code.

#[path = "evidence_verifier/verify.rs"]
mod verify;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/evidence/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn answer() -> serde_json::Value {
    serde_json::from_str(&fixture("bundle.json")).unwrap()
}

/// The `public_key:` line of `sms-consent evidence-public-key`.
fn public_key() -> String {
    fixture("public-key.txt").lines().find_map(|l| l.strip_prefix("public_key: ")).unwrap().to_owned()
}

#[test]
fn an_exported_bundle_verifies_with_the_published_key() {
    let bundle = verify::verify_answer(&answer(), &public_key()).unwrap();
    assert_eq!(bundle["format"], "sms-consent/evidence-bundle/v1");
    assert_eq!(bundle["verification"]["result"], "intact");
    assert!(!bundle["events"].as_array().unwrap().is_empty());
}

#[test]
fn any_one_byte_changed_in_the_signed_bytes_fails() {
    let answer = answer();
    let key = public_key();
    let bytes = verify::signed_bytes(&answer).unwrap();
    for at in [0, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        let mut altered = bytes.clone();
        altered[at] ^= 0x01;
        assert!(verify::verify_bytes(&altered, &answer["signature"], &key).is_err(), "byte {at} changed");
    }
}

#[test]
fn another_key_or_a_changed_signature_fails() {
    let answer = answer();
    let other = "jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs=";
    assert!(verify::verify_answer(&answer, other).is_err());
    let mut swapped = answer.clone();
    let value = swapped["signature"]["value"].as_str().unwrap().to_owned();
    let flipped = if value.starts_with('A') { value.replacen('A', "B", 1) } else { format!("A{}", &value[1..]) };
    swapped["signature"]["value"] = flipped.into();
    assert!(verify::verify_answer(&swapped, &public_key()).is_err());
}

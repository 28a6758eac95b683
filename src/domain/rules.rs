//! The sending rules a program follows, and what they ask of one send: the
//! daily windows it must fall in and the caps it must keep, for a
//! recipient where they are. The facts and their sources are in the
//! README's "Sending rules".

use serde::{Deserialize, Serialize};
use time::Duration;

use super::recipient::Whereabouts;
use super::volume::Cap;
use super::window::{self, Window};

/// A rule a program may follow (`send_rules` in config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendRule {
    /// The TCPA rules (47 CFR 64.1200(c)(1)): nothing before 8:00 or from
    /// 21:00 at the recipient's location.
    QuietHours,
    /// Florida (Telephone Solicitation Act, Fla. Stat. 501.059), Oklahoma
    /// (Telephone Solicitation Act of 2022, 15 O.S. 775C) and Washington
    /// (RCW 80.36.390, RCW 19.158): 8:00 to 20:00.
    StateQuietHours,
    /// Florida and Oklahoma (the acts above): at most 3 messages in 24
    /// hours on one subject, counted across the organization's programs.
    StateFrequency,
    /// The healthcare exemption of the FCC's 2015 TCPA Omnibus Declaratory
    /// Ruling and Order (FCC 15-72): at most one message a day and three a
    /// week per program, 160 characters or fewer.
    HealthcareExemption,
}

/// What a program follows when its config does not say.
pub const DEFAULT_RULES: [SendRule; 2] = [SendRule::QuietHours, SendRule::StateQuietHours];

/// The longest message the healthcare exemption covers: one segment.
pub const EXEMPTION_MAX_CHARACTERS: u32 = 160;

/// States that cap frequency (`StateFrequency`), and the cap.
const FREQUENCY_STATES: [&str; 2] = ["FL", "OK"];
const STATE_FREQUENCY_MAX: usize = 3;

/// The daily windows a send must fall in, for a recipient where they are.
pub fn windows(rules: &[SendRule], at: &Whereabouts) -> Vec<Window> {
    let mut out = Vec::new();
    if rules.contains(&SendRule::QuietHours) {
        out.push(window::FEDERAL);
    }
    if rules.contains(&SendRule::StateQuietHours) {
        out.extend(at.state.as_deref().and_then(window::state_window));
    }
    out
}

/// The caps a send must keep, for a recipient where they are.
pub fn caps(rules: &[SendRule], at: &Whereabouts) -> Vec<Cap> {
    let mut out = Vec::new();
    if rules.contains(&SendRule::StateFrequency) && at.state.as_deref().is_some_and(|s| FREQUENCY_STATES.contains(&s)) {
        out.push(Cap::Organization { max: STATE_FREQUENCY_MAX, window: Duration::hours(24) });
    }
    if rules.contains(&SendRule::HealthcareExemption) {
        out.push(Cap::ProgramDaily { max: 1 });
        out.push(Cap::ProgramWeekly { max: 3 });
    }
    out
}

/// Whether no rule of these can cap volume (then no usage is read).
pub fn caps_none(rules: &[SendRule]) -> bool {
    !rules.iter().any(|r| matches!(r, SendRule::StateFrequency | SendRule::HealthcareExemption))
}

/// Whether a message of `segments` segments or `length` characters is too
/// long for the healthcare exemption.
pub fn too_long_for_exemption(rules: &[SendRule], segments: Option<u32>, length: Option<u32>) -> bool {
    rules.contains(&SendRule::HealthcareExemption)
        && (segments.is_some_and(|s| s > 1) || length.is_some_and(|l| l > EXEMPTION_MAX_CHARACTERS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(state: Option<&str>) -> Whereabouts {
        Whereabouts { zones: vec!["America/New_York".into()], state: state.map(str::to_owned), presumed: true }
    }

    #[test]
    fn the_rules_give_their_windows_and_caps_by_state() {
        let all =
            [SendRule::QuietHours, SendRule::StateQuietHours, SendRule::StateFrequency, SendRule::HealthcareExemption];
        assert_eq!(windows(&DEFAULT_RULES, &at(Some("NY"))), [window::FEDERAL]);
        assert_eq!(windows(&DEFAULT_RULES, &at(Some("FL"))).len(), 2);
        assert!(windows(&[], &at(Some("FL"))).is_empty(), "send_rules = [] turns them off");
        assert!(caps(&all, &at(Some("NY"))).iter().all(|c| !matches!(c, Cap::Organization { .. })));
        assert!(caps(&all, &at(Some("OK"))).iter().any(|c| matches!(c, Cap::Organization { max: 3, .. })));
        assert!(caps(&DEFAULT_RULES, &at(Some("FL"))).is_empty());
        assert!(too_long_for_exemption(&all, Some(2), None));
        assert!(too_long_for_exemption(&all, None, Some(161)));
        assert!(!too_long_for_exemption(&all, Some(1), Some(160)));
        assert!(!too_long_for_exemption(&DEFAULT_RULES, Some(3), None));
    }

    #[test]
    fn rule_names_are_the_documented_ones_and_unknown_names_are_refused() {
        let rules: Vec<SendRule> =
            serde_json::from_str(r#"["quiet_hours","state_quiet_hours","state_frequency","healthcare_exemption"]"#)
                .unwrap();
        assert_eq!(rules.len(), 4);
        assert!(serde_json::from_str::<Vec<SendRule>>(r#"["quiet_time"]"#).is_err());
    }
}

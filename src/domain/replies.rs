//! Confirmation texts: CTIA content, one SMS segment, and no PHI. A template
//! may name only the program, the organisation, the help contact and the
//! message frequency; everything is checked when config loads.

use serde::{Deserialize, Serialize};

/// One GSM-7 segment.
pub const MAX_SEGMENT: usize = 160;

const PLACEHOLDERS: &[&str] = &["{program}", "{organization}", "{help_contact}", "{frequency}"];

/// The program facts a reply may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letterhead {
    pub program: String,
    pub organization: String,
    pub help_contact: String,
    pub frequency: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    OptOut,
    OptIn,
    Help,
}

impl ReplyKind {
    /// What CTIA expects each reply to carry, as (placeholder or phrase, why).
    fn required(self) -> &'static [(&'static str, &'static str)] {
        match self {
            ReplyKind::OptOut => &[("{program}", "name the program"), ("START", "say how to resubscribe (START)")],
            ReplyKind::OptIn => &[
                ("{program}", "name the program"),
                ("{frequency}", "give the message frequency"),
                ("Msg & data rates may apply", "say \"Msg & data rates may apply\""),
                ("HELP", "say how to get help (HELP)"),
                ("STOP", "say how to opt out (STOP)"),
            ],
            ReplyKind::Help => &[
                ("{program}", "name the program"),
                ("{help_contact}", "give the help contact"),
                ("{frequency}", "give the message frequency"),
                ("Msg & data rates may apply", "say \"Msg & data rates may apply\""),
                ("STOP", "say how to opt out (STOP)"),
            ],
        }
    }
}

/// The three replies of a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyTemplates {
    #[serde(default = "default_opt_out")]
    pub opt_out: String,
    #[serde(default = "default_opt_in")]
    pub opt_in: String,
    #[serde(default = "default_help")]
    pub help: String,
}

fn default_opt_out() -> String {
    "{program}: You are unsubscribed and will receive no more messages. Reply START to resubscribe.".into()
}

fn default_opt_in() -> String {
    "{program}: You are resubscribed. {frequency}. Msg & data rates may apply. Reply HELP for help, STOP to opt out."
        .into()
}

fn default_help() -> String {
    "{program}: Help at {help_contact}. {frequency}. Msg & data rates may apply. Reply STOP to opt out.".into()
}

impl Default for ReplyTemplates {
    fn default() -> Self {
        ReplyTemplates { opt_out: default_opt_out(), opt_in: default_opt_in(), help: default_help() }
    }
}

/// The reply to a STOP sent to a number that no program owns: nothing to name.
pub const UNOWNED_OPT_OUT_REPLY: &str =
    "You are unsubscribed and will receive no more messages from this number. Reply START to resubscribe.";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("uses {0}, but only {{program}}, {{organization}}, {{help_contact}} and {{frequency}} are allowed")]
    UnknownPlaceholder(String),
    #[error("must {0}")]
    MissingContent(&'static str),
    #[error("renders to {0} GSM-7 characters; one SMS segment holds {MAX_SEGMENT}")]
    TooLong(usize),
    #[error("contains {0:?}, which is not in the GSM-7 alphabet")]
    NotGsm7(char),
}

impl ReplyTemplates {
    pub fn get(&self, kind: ReplyKind) -> &str {
        match kind {
            ReplyKind::OptOut => &self.opt_out,
            ReplyKind::OptIn => &self.opt_in,
            ReplyKind::Help => &self.help,
        }
    }

    pub fn render(&self, kind: ReplyKind, letterhead: &Letterhead) -> String {
        render(self.get(kind), letterhead)
    }

    /// Checks every template against CTIA content, the placeholder allow-list
    /// and the segment length, rendered with this program's own values.
    pub fn validate(&self, letterhead: &Letterhead) -> Result<(), (ReplyKind, TemplateError)> {
        for kind in [ReplyKind::OptOut, ReplyKind::OptIn, ReplyKind::Help] {
            validate_one(self.get(kind), kind, letterhead).map_err(|e| (kind, e))?;
        }
        Ok(())
    }
}

fn render(template: &str, letterhead: &Letterhead) -> String {
    template
        .replace("{program}", &letterhead.program)
        .replace("{organization}", &letterhead.organization)
        .replace("{help_contact}", &letterhead.help_contact)
        .replace("{frequency}", &letterhead.frequency)
}

fn validate_one(template: &str, kind: ReplyKind, letterhead: &Letterhead) -> Result<(), TemplateError> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let tail = &rest[open..];
        let end = tail.find('}').map(|i| i + 1).unwrap_or(tail.len());
        let placeholder = &tail[..end];
        if !PLACEHOLDERS.contains(&placeholder) {
            return Err(TemplateError::UnknownPlaceholder(placeholder.to_owned()));
        }
        rest = &tail[end..];
    }
    for (needle, why) in kind.required() {
        if !template.contains(needle) {
            return Err(TemplateError::MissingContent(why));
        }
    }
    let rendered = render(template, letterhead);
    let length = gsm7_length(&rendered).map_err(TemplateError::NotGsm7)?;
    if length > MAX_SEGMENT {
        return Err(TemplateError::TooLong(length));
    }
    Ok(())
}

/// Length in GSM-7 septets (extension characters count twice), or the first
/// character that GSM-7 cannot carry.
pub fn gsm7_length(text: &str) -> Result<usize, char> {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "^{}\\[~]|€\u{c}";
    text.chars().try_fold(0, |n, c| {
        if BASIC.contains(c) {
            Ok(n + 1)
        } else if EXTENSION.contains(c) {
            Ok(n + 2)
        } else {
            Err(c)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letterhead() -> Letterhead {
        Letterhead {
            program: "Lakeside Reminders".into(),
            organization: "Lakeside Family Clinic".into(),
            help_contact: "555-0100".into(),
            frequency: "Msg frequency varies".into(),
        }
    }

    #[test]
    fn the_default_templates_pass_their_own_checks() {
        ReplyTemplates::default().validate(&letterhead()).unwrap();
    }

    #[test]
    fn the_help_reply_carries_ctia_content() {
        let help = ReplyTemplates::default().render(ReplyKind::Help, &letterhead());
        for needle in ["Lakeside Reminders", "555-0100", "Msg frequency varies", "Msg & data rates may apply", "STOP"] {
            assert!(help.contains(needle), "{help} lacks {needle}");
        }
    }

    #[test]
    fn a_placeholder_that_could_carry_phi_is_refused() {
        let t = ReplyTemplates { opt_out: "{program}: bye {patient_name}. Reply START".into(), ..Default::default() };
        assert_eq!(
            t.validate(&letterhead()),
            Err((ReplyKind::OptOut, TemplateError::UnknownPlaceholder("{patient_name}".into())))
        );
    }

    #[test]
    fn an_unclosed_brace_is_refused() {
        let t = ReplyTemplates { opt_out: "{program}: Reply START {oops".into(), ..Default::default() };
        assert!(matches!(t.validate(&letterhead()), Err((_, TemplateError::UnknownPlaceholder(_)))));
    }

    #[test]
    fn a_help_reply_without_a_contact_is_refused() {
        let t = ReplyTemplates {
            help: "{program}: {frequency}. Msg & data rates may apply. Reply STOP to opt out.".into(),
            ..Default::default()
        };
        assert_eq!(
            t.validate(&letterhead()),
            Err((ReplyKind::Help, TemplateError::MissingContent("give the help contact")))
        );
    }

    #[test]
    fn a_reply_longer_than_one_segment_is_refused() {
        let mut long = letterhead();
        long.program = "A".repeat(120);
        assert!(matches!(ReplyTemplates::default().validate(&long), Err((_, TemplateError::TooLong(_)))));
    }

    #[test]
    fn characters_outside_gsm7_are_refused() {
        let mut emoji = letterhead();
        emoji.program = "Clinic 🏥".into();
        assert!(matches!(ReplyTemplates::default().validate(&emoji), Err((_, TemplateError::NotGsm7('🏥')))));
    }

    #[test]
    fn extension_characters_count_twice() {
        assert_eq!(gsm7_length("a€[").unwrap(), 5);
    }
}

//! The programs a deployment runs, as the service needs them: who sends,
//! from which numbers, what a number with no record means, and how to reply.
//! Built once at start from config (already validated there).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::keywords::Language;
use super::rules::SendRule;
use super::{DefaultConsent, Letterhead, PhoneNumber, ReplyKind, ReplyTemplates};

/// Who confirms a keyword: `service` (default) sends every confirmation;
/// `provider` leaves the provider's own auto-responder to answer its exact
/// keywords and confirms only what it recognised beyond them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyMode {
    #[default]
    Service,
    Provider,
}

/// What authorization answers for a number whose last message was unclear
/// (revocation vocabulary, but no clear keyword) until staff resolve it:
/// `deny` (default: `allowed: false`, reason `review_pending`, failing
/// closed as the FCC's revocation rule expects) or `allow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnclearPolicy {
    #[default]
    Deny,
    Allow,
}

/// One messaging program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub id: String,
    /// The program facts its replies show.
    pub letterhead: Letterhead,
    /// The clinic numbers it sends from; each belongs to this program only.
    pub numbers: Vec<PhoneNumber>,
    pub categories: Vec<String>,
    pub default: DefaultConsent,
    /// Its replies, per language (English always).
    pub replies: ReplyTemplates,
    pub reply_mode: ReplyMode,
    /// What an unclear message means for sends until it is reviewed.
    pub unclear: UnclearPolicy,
    /// The sending rules authorization applies (`send_rules`).
    pub send_rules: Vec<SendRule>,
}

impl Program {
    /// The reply of this kind in `language` when the program has templates
    /// for it, else in English.
    pub fn reply(&self, kind: ReplyKind, language: Language) -> String {
        self.replies.render(kind, language, &self.letterhead)
    }

    pub fn has_category(&self, category: &str) -> bool {
        self.categories.iter().any(|c| c == category)
    }
}

/// Every program by id, and the owner of every clinic number.
#[derive(Debug, Clone, Default)]
pub struct Programs {
    by_id: HashMap<String, Program>,
    /// E.164 of a clinic number -> the id of the program that owns it.
    owners: HashMap<String, String>,
}

impl Programs {
    pub fn new(programs: impl IntoIterator<Item = Program>) -> Self {
        let mut out = Programs::default();
        for program in programs {
            for number in &program.numbers {
                out.owners.insert(number.as_e164().to_owned(), program.id.clone());
            }
            out.by_id.insert(program.id.clone(), program);
        }
        out
    }

    pub fn get(&self, id: &str) -> Option<&Program> {
        self.by_id.get(id)
    }

    /// The program that sends from this clinic number, if any.
    pub fn owner_of(&self, number: &PhoneNumber) -> Option<&Program> {
        self.owners.get(number.as_e164()).and_then(|id| self.by_id.get(id))
    }

    /// Every program, ordered by id.
    pub fn sorted(&self) -> Vec<&Program> {
        let mut programs: Vec<&Program> = self.by_id.values().collect();
        programs.sort_by(|a, b| a.id.cmp(&b.id));
        programs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(id: &str, number: &str) -> Program {
        Program {
            id: id.into(),
            letterhead: Letterhead {
                program: id.into(),
                organization: "Clinic".into(),
                help_contact: "555-0100".into(),
                frequency: "Msg frequency varies".into(),
            },
            numbers: vec![PhoneNumber::parse(number).unwrap()],
            categories: vec!["billing".into()],
            default: DefaultConsent::NoConsent,
            replies: ReplyTemplates::default(),
            reply_mode: ReplyMode::Service,
            unclear: UnclearPolicy::default(),
            send_rules: Vec::new(),
        }
    }

    #[test]
    fn a_clinic_number_finds_its_program_and_programs_list_by_id() {
        let programs = Programs::new([program("z", "+14155550100"), program("a", "+14155550200")]);
        assert_eq!(programs.owner_of(&PhoneNumber::parse("+14155550200").unwrap()).unwrap().id, "a");
        assert!(programs.owner_of(&PhoneNumber::parse("+14155550300").unwrap()).is_none());
        assert_eq!(programs.sorted().iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["a", "z"]);
        assert!(programs.get("z").unwrap().has_category("billing") && !programs.get("z").unwrap().has_category("x"));
    }

    #[test]
    fn a_program_replies_in_its_languages_and_in_english_otherwise() {
        let p = program("clinic", "+14155550100");
        assert!(p.reply(ReplyKind::OptOut, Language::Es).contains("Se ha dado de baja"));
        assert_eq!(p.reply(ReplyKind::OptOut, Language::Ko), p.reply(ReplyKind::OptOut, Language::En));
        assert_eq!(p.unclear, UnclearPolicy::Deny, "unclear messages deny unless the program says");
    }
}

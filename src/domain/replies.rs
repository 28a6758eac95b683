//! Confirmation texts: CTIA content, one SMS segment, and no PHI. A template
//! may name only the program, the organisation, the help contact and the
//! message frequency; everything is checked when config loads.
//!
//! A program has templates per language (English always, Spanish shipped
//! too); a reply goes out in the patient's language when the program has
//! templates for it, else in English. One segment is 160 GSM-7 septets, or
//! 70 UTF-16 code units once any character needs UCS-2.

use std::collections::BTreeMap;

use super::keywords::{Intent, Language};

/// One GSM-7 segment, in septets.
pub const MAX_SEGMENT: usize = 160;
/// One UCS-2 segment, in UTF-16 code units.
pub const MAX_UCS2_SEGMENT: usize = 70;

const PLACEHOLDERS: &[&str] = &["{program}", "{organization}", "{help_contact}", "{frequency}"];

/// The program facts a reply may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letterhead {
    pub program: String,
    pub organization: String,
    pub help_contact: String,
    pub frequency: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    OptOut,
    OptIn,
    Help,
}

impl ReplyKind {
    pub const ALL: [ReplyKind; 3] = [ReplyKind::OptOut, ReplyKind::OptIn, ReplyKind::Help];

    /// Its key in `[programs.replies]`.
    pub fn key(self) -> &'static str {
        match self {
            ReplyKind::OptOut => "opt_out",
            ReplyKind::OptIn => "opt_in",
            ReplyKind::Help => "help",
        }
    }

    /// The placeholders CTIA content needs in each reply, as (placeholder, why).
    fn placeholders(self) -> &'static [(&'static str, &'static str)] {
        match self {
            ReplyKind::OptOut => &[("{program}", "name the program")],
            ReplyKind::OptIn => &[("{program}", "name the program"), ("{frequency}", "give the message frequency")],
            ReplyKind::Help => &[
                ("{program}", "name the program"),
                ("{help_contact}", "give the help contact"),
                ("{frequency}", "give the message frequency"),
            ],
        }
    }

    /// The keyword instructions each reply gives: a word in capitals that
    /// the classifier reads as this intent, and what to say when none does.
    fn keywords(self) -> &'static [(Keyword, &'static str)] {
        match self {
            ReplyKind::OptOut => &[(Keyword::OptIn, "say how to resubscribe with a keyword in capitals (START)")],
            ReplyKind::OptIn => &[
                (Keyword::Help, "say how to get help with a keyword in capitals (HELP)"),
                (Keyword::OptOut, "say how to opt out with a keyword in capitals (STOP)"),
            ],
            ReplyKind::Help => &[(Keyword::OptOut, "say how to opt out with a keyword in capitals (STOP)")],
        }
    }

    fn needs_rates(self) -> bool {
        matches!(self, ReplyKind::OptIn | ReplyKind::Help)
    }
}

#[derive(Debug, Clone, Copy)]
enum Keyword {
    OptOut,
    OptIn,
    Help,
}

impl Keyword {
    fn matches(self, intent: Intent) -> bool {
        match self {
            Keyword::OptOut => intent.is_opt_out(),
            Keyword::OptIn => intent == Intent::OptIn,
            Keyword::Help => intent == Intent::Help,
        }
    }
}

/// The rates notice CTIA asks of opt-in and help replies, per language
/// (compared without regard to case). Other languages' wording is the
/// clinic's responsibility and is not checked.
const RATES_EN: &[&str] = &["Msg & data rates may apply"];
const RATES_ES: &[&str] = &[
    "Pueden aplicarse tarifas de mensajes y datos",
    "Pueden aplicar tarifas de mensajes y datos",
    "Pueden aplicar tarifas de msj y datos",
    "Pueden aplicarse cargos por mensajes y datos",
    "Pueden aplicar cargos por mensajes y datos",
    "Msg & data rates may apply",
];

fn rates(language: Language) -> Option<(&'static [&'static str], &'static str)> {
    match language {
        Language::En => Some((RATES_EN, "say \"Msg & data rates may apply\"")),
        Language::Es => {
            Some((RATES_ES, "say \"Pueden aplicar tarifas de mensajes y datos\" (or another wording the README lists)"))
        }
        _ => None,
    }
}

/// One language's three replies, and optionally the message frequency in
/// that language (else the program's `frequency`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguageTemplates {
    pub opt_out: String,
    pub opt_in: String,
    pub help: String,
    pub frequency: Option<String>,
}

impl LanguageTemplates {
    /// The templates shipped for a language: English and Spanish.
    pub fn shipped(language: Language) -> Option<LanguageTemplates> {
        let (opt_out, opt_in, help) = match language {
            Language::En => (
                "{program}: You are unsubscribed and will receive no more messages. Reply START to resubscribe.",
                "{program}: You are resubscribed. {frequency}. Msg & data rates may apply. \
                 Reply HELP for help, STOP to opt out.",
                "{program}: Help at {help_contact}. {frequency}. Msg & data rates may apply. Reply STOP to opt out.",
            ),
            // GSM-7 has no á, í, ó or ú: these are worded without them.
            Language::Es => (
                "{program}: Se ha dado de baja y ya no le enviaremos mensajes. \
                 Responda START para volver a suscribirse.",
                "{program}: Mensajes reactivados. {frequency}. Pueden aplicar tarifas de msj y datos. \
                 HELP para ayuda, STOP para cancelar.",
                "{program}: Ayuda: {help_contact}. {frequency}. Pueden aplicar tarifas de msj y datos. \
                 Responda STOP para cancelar.",
            ),
            _ => return None,
        };
        Some(LanguageTemplates { opt_out: opt_out.into(), opt_in: opt_in.into(), help: help.into(), frequency: None })
    }

    pub fn get(&self, kind: ReplyKind) -> &str {
        match kind {
            ReplyKind::OptOut => &self.opt_out,
            ReplyKind::OptIn => &self.opt_in,
            ReplyKind::Help => &self.help,
        }
    }

    pub fn set(&mut self, kind: ReplyKind, template: String) {
        match kind {
            ReplyKind::OptOut => self.opt_out = template,
            ReplyKind::OptIn => self.opt_in = template,
            ReplyKind::Help => self.help = template,
        }
    }

    fn letterhead(&self, letterhead: &Letterhead) -> Letterhead {
        match &self.frequency {
            Some(frequency) => Letterhead { frequency: frequency.clone(), ..letterhead.clone() },
            None => letterhead.clone(),
        }
    }
}

/// A program's replies in every language it answers in. English is always
/// there: it is the answer for every other language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTemplates {
    languages: BTreeMap<Language, LanguageTemplates>,
}

/// English and Spanish, as shipped.
impl Default for ReplyTemplates {
    fn default() -> Self {
        let languages = [Language::En, Language::Es]
            .into_iter()
            .filter_map(|l| LanguageTemplates::shipped(l).map(|t| (l, t)))
            .collect();
        ReplyTemplates { languages }
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
    #[error("renders to {0} GSM-7 characters; one GSM-7 segment holds {MAX_SEGMENT}")]
    TooLong(usize),
    #[error(
        "contains {first:?}, which is not in the GSM-7 alphabet, so it goes as UCS-2: renders to {units} UTF-16 \
         code units; one UCS-2 segment holds {MAX_UCS2_SEGMENT}"
    )]
    TooLongUcs2 { first: char, units: usize },
    #[error("contains the emoji {0:?}; replies are plain text")]
    Emoji(char),
}

impl TemplateError {
    /// Whether the reply is too long for one segment.
    pub fn is_too_long(&self) -> bool {
        matches!(self, TemplateError::TooLong(_) | TemplateError::TooLongUcs2 { .. })
    }
}

impl ReplyTemplates {
    /// English only, as shipped.
    pub fn english() -> Self {
        let mut templates = ReplyTemplates::default();
        templates.languages.retain(|l, _| *l == Language::En);
        templates
    }

    /// Adds or replaces a language's templates.
    pub fn insert(&mut self, language: Language, templates: LanguageTemplates) {
        self.languages.insert(language, templates);
    }

    /// Drops a language (its patients get English); English stays.
    pub fn remove(&mut self, language: Language) {
        if language != Language::En {
            self.languages.remove(&language);
        }
    }

    /// The languages this program answers in, English first.
    pub fn languages(&self) -> impl Iterator<Item = Language> + '_ {
        self.languages.keys().copied()
    }

    /// The templates a patient writing in `language` gets: that language's,
    /// else English.
    pub fn for_language(&self, language: Language) -> &LanguageTemplates {
        match self.languages.get(&language).or_else(|| self.languages.get(&Language::En)) {
            Some(templates) => templates,
            None => english_fallback(),
        }
    }

    pub fn get(&self, kind: ReplyKind, language: Language) -> &str {
        self.for_language(language).get(kind)
    }

    /// The reply in `language` when the program has it, else in English.
    pub fn render(&self, kind: ReplyKind, language: Language, letterhead: &Letterhead) -> String {
        let templates = self.for_language(language);
        render(templates.get(kind), &templates.letterhead(letterhead))
    }

    /// Checks every template against CTIA content, the placeholder allow-list
    /// and the segment length, rendered with this program's own values.
    pub fn validate(&self, letterhead: &Letterhead) -> Result<(), (Language, ReplyKind, TemplateError)> {
        for (language, templates) in &self.languages {
            let letterhead = templates.letterhead(letterhead);
            for kind in ReplyKind::ALL {
                validate_one(templates.get(kind), kind, *language, &letterhead).map_err(|e| (*language, kind, e))?;
            }
        }
        Ok(())
    }
}

/// English as shipped, for a `ReplyTemplates` that somehow lost it.
fn english_fallback() -> &'static LanguageTemplates {
    static ENGLISH: std::sync::OnceLock<LanguageTemplates> = std::sync::OnceLock::new();
    ENGLISH.get_or_init(|| {
        LanguageTemplates::shipped(Language::En).unwrap_or(LanguageTemplates {
            opt_out: String::new(),
            opt_in: String::new(),
            help: String::new(),
            frequency: None,
        })
    })
}

fn render(template: &str, letterhead: &Letterhead) -> String {
    template
        .replace("{program}", &letterhead.program)
        .replace("{organization}", &letterhead.organization)
        .replace("{help_contact}", &letterhead.help_contact)
        .replace("{frequency}", &letterhead.frequency)
}

fn validate_one(
    template: &str,
    kind: ReplyKind,
    language: Language,
    letterhead: &Letterhead,
) -> Result<(), TemplateError> {
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
    for (needle, why) in kind.placeholders() {
        if !template.contains(needle) {
            return Err(TemplateError::MissingContent(why));
        }
    }
    if kind.needs_rates() {
        if let Some((phrases, why)) = rates(language) {
            let lower = template.to_lowercase();
            if !phrases.iter().any(|p| lower.contains(&p.to_lowercase())) {
                return Err(TemplateError::MissingContent(why));
            }
        }
    }
    let instructions = keyword_candidates(template);
    for (keyword, why) in kind.keywords() {
        if !instructions.iter().any(|word| keyword.matches(Intent::classify(word))) {
            return Err(TemplateError::MissingContent(why));
        }
    }
    let rendered = render(template, letterhead);
    if let Some(emoji) = rendered.chars().find(|c| is_emoji(*c)) {
        return Err(TemplateError::Emoji(emoji));
    }
    match encoding(&rendered) {
        Encoding::Gsm7 { septets } if septets > MAX_SEGMENT => Err(TemplateError::TooLong(septets)),
        Encoding::Ucs2 { first, units } if units > MAX_UCS2_SEGMENT => Err(TemplateError::TooLongUcs2 { first, units }),
        _ => Ok(()),
    }
}

/// The words of a template written in capitals (or in a script without
/// case), alone and in pairs ("STOP ALL"): where its keyword instructions
/// are. Placeholders are left out, so a program named "Stop Smoking" is no
/// instruction.
fn keyword_candidates(template: &str) -> Vec<String> {
    let mut text = template.to_owned();
    for placeholder in PLACEHOLDERS {
        text = text.replace(placeholder, " ");
    }
    // Split at anything not a letter or digit, and where a script with case
    // meets one without ("回复STOP退订").
    let mut tokens: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut cased_run: Option<bool> = None;
    for c in text.chars() {
        if !c.is_alphanumeric() {
            tokens.extend((!word.is_empty()).then(|| std::mem::take(&mut word)));
            cased_run = None;
            continue;
        }
        if c.is_alphabetic() {
            let cased = c.is_uppercase() || c.is_lowercase();
            if cased_run.is_some_and(|run| run != cased) && !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            cased_run = Some(cased);
        }
        word.push(c);
    }
    tokens.extend((!word.is_empty()).then_some(word));
    let capitals = |w: &str| !w.chars().any(char::is_lowercase) && w.chars().any(char::is_alphabetic);
    let mut out: Vec<String> = Vec::new();
    for (i, token) in tokens.iter().enumerate().filter(|(_, t)| capitals(t)) {
        out.push(token.clone());
        if let Some(next) = tokens.get(i + 1).filter(|n| capitals(n)) {
            out.push(format!("{token} {next}"));
        }
    }
    out
}

/// How a text travels: GSM-7 septets, or UTF-16 code units once one
/// character (`first`) is outside GSM-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7 { septets: usize },
    Ucs2 { first: char, units: usize },
}

pub fn encoding(text: &str) -> Encoding {
    match gsm7_length(text) {
        Ok(septets) => Encoding::Gsm7 { septets },
        Err(first) => Encoding::Ucs2 { first, units: text.encode_utf16().count() },
    }
}

/// Pictographs and the joiners and selectors that build emoji sequences.
fn is_emoji(c: char) -> bool {
    matches!(
        u32::from(c),
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x2300..=0x23FF | 0xFE0F | 0x200D | 0xE0020..=0xE007F
    )
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

    fn english(change: impl FnOnce(&mut LanguageTemplates)) -> ReplyTemplates {
        let mut en = LanguageTemplates::shipped(Language::En).unwrap();
        change(&mut en);
        let mut templates = ReplyTemplates::default();
        templates.insert(Language::En, en);
        templates
    }

    /// UCS-2 leaves room for a short name only.
    fn short() -> Letterhead {
        Letterhead { program: "Lakeside".into(), ..letterhead() }
    }

    /// Short Vietnamese replies with STOP/START/HELP (every classifier reads
    /// those), the frequency given in Vietnamese.
    fn vietnamese() -> LanguageTemplates {
        LanguageTemplates {
            opt_out: "{program}: Đã hủy đăng ký. Nhắn START để đăng ký lại.".into(),
            opt_in: "{program}: Đăng ký lại. {frequency}. HELP: trợ giúp. STOP: hủy.".into(),
            help: "{program}: {help_contact}. {frequency}. Nhắn STOP để hủy.".into(),
            frequency: Some("Tần suất thay đổi".into()),
        }
    }

    /// `template` grown with `fill` until it renders to `length` units of
    /// its encoding.
    fn padded(template: &str, fill: char, length: usize, letterhead: &Letterhead) -> String {
        let mut out = template.to_owned();
        let measure = |t: &str| match encoding(&render(t, letterhead)) {
            Encoding::Gsm7 { septets } => septets,
            Encoding::Ucs2 { units, .. } => units,
        };
        while measure(&out) < length {
            out.push(fill);
        }
        assert_eq!(measure(&out), length, "{out}");
        out
    }

    #[test]
    fn the_default_templates_pass_their_own_checks_in_english_and_spanish() {
        let defaults = ReplyTemplates::default();
        assert_eq!(defaults.languages().collect::<Vec<_>>(), [Language::En, Language::Es]);
        defaults.validate(&letterhead()).unwrap();
        for kind in ReplyKind::ALL {
            let es = defaults.render(kind, Language::Es, &letterhead());
            assert!(matches!(encoding(&es), Encoding::Gsm7 { .. }), "the Spanish defaults stay GSM-7: {es}");
            assert!(es.starts_with("Lakeside Reminders: "), "{es}");
        }
        let help = defaults.render(ReplyKind::Help, Language::Es, &letterhead());
        assert!(help.contains("555-0100") && help.contains("tarifas de msj y datos") && help.contains("STOP"));
    }

    #[test]
    fn the_help_reply_carries_ctia_content() {
        let help = ReplyTemplates::default().render(ReplyKind::Help, Language::En, &letterhead());
        for needle in ["Lakeside Reminders", "555-0100", "Msg frequency varies", "Msg & data rates may apply", "STOP"] {
            assert!(help.contains(needle), "{help} lacks {needle}");
        }
    }

    #[test]
    fn a_language_without_templates_is_answered_in_english() {
        let mut templates = ReplyTemplates::default();
        templates.insert(Language::Vi, vietnamese());
        let en = templates.render(ReplyKind::OptOut, Language::En, &letterhead());
        assert_eq!(templates.render(ReplyKind::OptOut, Language::Fr, &letterhead()), en);
        assert!(templates.render(ReplyKind::OptOut, Language::Vi, &letterhead()).contains("Đã hủy đăng ký"));
        let opt_in = templates.render(ReplyKind::OptIn, Language::Vi, &letterhead());
        assert!(opt_in.contains("Tần suất thay đổi") && !opt_in.contains("Msg frequency"), "{opt_in}");
        templates.remove(Language::Es);
        templates.remove(Language::En);
        assert_eq!(templates.render(ReplyKind::OptOut, Language::Es, &letterhead()), en, "English stays");
    }

    #[test]
    fn a_ucs2_reply_fits_70_code_units_and_not_71() {
        let lh = short();
        let mut vi = vietnamese();
        let mut templates = ReplyTemplates::default();
        vi.opt_out = padded(&vi.opt_out, 'ạ', 70, &lh);
        templates.insert(Language::Vi, vi.clone());
        templates.validate(&lh).unwrap();
        vi.opt_out.push('ạ');
        templates.insert(Language::Vi, vi);
        let err = templates.validate(&lh).unwrap_err();
        assert_eq!(err, (Language::Vi, ReplyKind::OptOut, TemplateError::TooLongUcs2 { first: 'Đ', units: 71 }));
        assert_eq!(
            err.2.to_string(),
            "contains 'Đ', which is not in the GSM-7 alphabet, so it goes as UCS-2: renders to 71 UTF-16 code units; \
             one UCS-2 segment holds 70"
        );
    }

    #[test]
    fn a_gsm7_reply_fits_160_septets_and_not_161() {
        let lh = letterhead();
        let at = |n| english(|en| en.opt_out = padded(&en.opt_out, '.', n, &lh));
        at(160).validate(&lh).unwrap();
        let err = at(161).validate(&lh).unwrap_err();
        assert_eq!(err, (Language::En, ReplyKind::OptOut, TemplateError::TooLong(161)));
        assert_eq!(err.2.to_string(), "renders to 161 GSM-7 characters; one GSM-7 segment holds 160");
        // Extension characters count twice: 159 septets and one '€' is 161.
        let euro = english(|en| en.opt_out = format!("{}€", padded(&en.opt_out, '.', 159, &lh)));
        assert_eq!(euro.validate(&lh).unwrap_err().2, TemplateError::TooLong(161));
    }

    #[test]
    fn a_surrogate_pair_counts_two_code_units() {
        assert_eq!(encoding("𠀀a"), Encoding::Ucs2 { first: '𠀀', units: 3 });
        let lh = short();
        let mut vi = vietnamese();
        // 69 units and one character outside the Basic Multilingual Plane:
        // 70 characters, 71 code units.
        vi.opt_out = format!("{}𠀀", padded(&vi.opt_out, 'ạ', 69, &lh));
        assert_eq!(render(&vi.opt_out, &lh).chars().count(), 70);
        let mut templates = ReplyTemplates::default();
        templates.insert(Language::Vi, vi);
        assert!(matches!(templates.validate(&lh), Err((_, _, TemplateError::TooLongUcs2 { units: 71, .. }))));
    }

    #[test]
    fn every_language_must_give_its_keyword_instructions_in_capitals() {
        let lh = letterhead();
        let cases: [(Language, ReplyKind, &str, &str); 6] = [
            (Language::Vi, ReplyKind::OptOut, "{program}: Đã hủy đăng ký.", "say how to resubscribe"),
            (Language::Vi, ReplyKind::Help, "{program}: {help_contact}. {frequency}.", "say how to opt out"),
            (
                Language::Es,
                ReplyKind::OptIn,
                "{program}: Listo. {frequency}. Pueden aplicar tarifas de msj y datos. Responda STOP para salir.",
                "say how to get help",
            ),
            (
                Language::Es,
                ReplyKind::Help,
                "{program}: {help_contact}. {frequency}. Pueden aplicar tarifas de msj y datos. Responda stop.",
                "say how to opt out",
            ),
            (Language::En, ReplyKind::OptOut, "{program}: Bye. Reply start to resubscribe.", "say how to resubscribe"),
            // The program's name is no instruction, whatever it says.
            (
                Language::En,
                ReplyKind::OptOut,
                "{program}: Bye. Reply {program} to resubscribe.",
                "say how to resubscribe",
            ),
        ];
        for (language, kind, template, want) in cases {
            let mut templates = ReplyTemplates::default();
            let mut these =
                if language == Language::Vi { vietnamese() } else { LanguageTemplates::shipped(language).unwrap() };
            these.set(kind, template.into());
            templates.insert(language, these);
            let lh = Letterhead { program: "START".into(), ..lh.clone() };
            match templates.validate(&lh) {
                Err((l, k, TemplateError::MissingContent(why))) if l == language && k == kind => {
                    assert!(why.starts_with(want), "{template}: {why}")
                }
                other => panic!("{template}: {other:?}"),
            }
        }
        // Spanish keywords the classifier knows count, STOP always does.
        let mut es = LanguageTemplates::shipped(Language::Es).unwrap();
        es.help =
            "{program}: {help_contact}. {frequency}. Pueden aplicar tarifas de msj y datos. Responda BAJA.".into();
        es.opt_in = "{program}: Listo. {frequency}. Pueden aplicarse tarifas de mensajes y datos. AYUDA o ALTO.".into();
        let mut templates = ReplyTemplates::default();
        templates.insert(Language::Es, es);
        templates.validate(&lh).unwrap();
    }

    #[test]
    fn the_rates_notice_is_required_in_english_and_spanish_only() {
        let lh = letterhead();
        let mut es = LanguageTemplates::shipped(Language::Es).unwrap();
        es.help = "{program}: Ayuda: {help_contact}. {frequency}. Responda STOP para darse de baja.".into();
        let mut templates = ReplyTemplates::default();
        templates.insert(Language::Es, es.clone());
        assert!(matches!(
            templates.validate(&lh),
            Err((Language::Es, ReplyKind::Help, TemplateError::MissingContent(why))) if why.contains("tarifas")
        ));
        es.help = "{program}: Ayuda: {help_contact}. {frequency}. Msg & data rates may apply. STOP para salir.".into();
        templates.insert(Language::Es, es);
        templates.validate(&lh).unwrap();
        // Vietnamese wording is the clinic's: none is asked for.
        templates.insert(Language::Vi, vietnamese());
        templates.validate(&short()).unwrap();
    }

    #[test]
    fn a_placeholder_that_could_carry_phi_is_refused() {
        let t = english(|en| en.opt_out = "{program}: bye {patient_name}. Reply START".into());
        assert_eq!(
            t.validate(&letterhead()),
            Err((Language::En, ReplyKind::OptOut, TemplateError::UnknownPlaceholder("{patient_name}".into())))
        );
    }

    #[test]
    fn an_unclosed_brace_is_refused() {
        let t = english(|en| en.opt_out = "{program}: Reply START {oops".into());
        assert!(matches!(t.validate(&letterhead()), Err((_, _, TemplateError::UnknownPlaceholder(_)))));
    }

    #[test]
    fn a_help_reply_without_a_contact_is_refused() {
        let t =
            english(|en| en.help = "{program}: {frequency}. Msg & data rates may apply. Reply STOP to opt out.".into());
        assert_eq!(
            t.validate(&letterhead()),
            Err((Language::En, ReplyKind::Help, TemplateError::MissingContent("give the help contact")))
        );
    }

    #[test]
    fn a_reply_longer_than_one_segment_is_refused() {
        let mut long = letterhead();
        long.program = "A".repeat(120);
        assert!(matches!(ReplyTemplates::default().validate(&long), Err((_, _, TemplateError::TooLong(_)))));
    }

    #[test]
    fn emoji_are_refused_in_templates_and_in_the_program_facts() {
        let mut emoji = letterhead();
        emoji.program = "Clinic 🏥".into();
        assert!(matches!(ReplyTemplates::default().validate(&emoji), Err((_, _, TemplateError::Emoji('🏥')))));
        let t = english(|en| en.opt_out.push_str(" ✅"));
        assert_eq!(t.validate(&letterhead()).unwrap_err().2, TemplateError::Emoji('✅'));
    }

    #[test]
    fn extension_characters_count_twice() {
        assert_eq!(gsm7_length("a€[").unwrap(), 5);
        assert_eq!(encoding("a€["), Encoding::Gsm7 { septets: 5 });
    }

    #[test]
    fn keyword_words_are_found_in_any_script() {
        assert_eq!(keyword_candidates("回复STOP退订"), ["回复", "回复 STOP", "STOP", "STOP 退订", "退订"]);
        assert_eq!(keyword_candidates("Nhắn DỪNG, STOP ALL"), ["DỪNG", "DỪNG STOP", "STOP", "STOP ALL", "ALL"]);
        assert!(keyword_candidates("Reply Stop").is_empty());
    }
}

//! Reads what a patient wrote and decides whether it is an opt-out, an opt-in,
//! a request for help, or an ordinary message.
//!
//! Two readings, both deterministic and explainable:
//!
//! 1. The whole message is a keyword or a known phrase, optionally wrapped
//!    in courtesy ("Stop. Thank you", "please stop texting me"), with a
//!    repeated word read once ("STOP STOP") and a leading "ok" dropped.
//! 2. Otherwise, sentence by sentence: the message is split at sentence
//!    ends and line breaks, sign-offs are dropped ("Sent from my iPhone",
//!    "-John"), and a first sentence that is itself a keyword or phrase
//!    decides, the rest being its reason ("Stop. Wrong number"), unless a
//!    later sentence negates it ("Stop. Don't stop") or is another keyword
//!    of a different kind. A question never decides, and CANCEL decides only
//!    alone (a clinic's patients cancel appointments).
//!
//! A keyword inside a sentence ("Can I stop by at 3?") or inside a word
//! ("weekend") is never one. Lists and phrases come from the providers'
//! documented defaults and the FCC's 2024 revocation order
//! (`shared/compliance/KEYWORDS.md`), in English and Spanish.

use std::collections::HashMap;
use std::sync::OnceLock;

use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};

/// What a message asks for. Its serde name (`opt_out`, `opt_out_all`, ...)
/// is the kind of the event it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Stop messages from the program that owns the number it was sent to.
    OptOut,
    /// Stop messages from every program (`STOP ALL`).
    OptOutAll,
    /// Resume messages from the program that owns the number it was sent to.
    OptIn,
    Help,
    /// Not a clear keyword, but it uses revocation vocabulary ("stop",
    /// "unsubscribe", "no more"...): recorded for staff to review.
    Unclear,
    /// Not a keyword: the message is neither stored nor answered.
    None,
}

/// A language the classifier reads, by its ISO 639-1 code (the key of a
/// program's per-language reply templates: `[programs.replies.es]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    Es,
    Fr,
    Pt,
    Vi,
    Zh,
    Tl,
    Ko,
    Ht,
}

impl Language {
    pub const ALL: [Language; 9] = [
        Language::En,
        Language::Es,
        Language::Fr,
        Language::Pt,
        Language::Vi,
        Language::Zh,
        Language::Tl,
        Language::Ko,
        Language::Ht,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Es => "es",
            Language::Fr => "fr",
            Language::Pt => "pt",
            Language::Vi => "vi",
            Language::Zh => "zh",
            Language::Tl => "tl",
            Language::Ko => "ko",
            Language::Ht => "ht",
        }
    }

    pub fn from_code(code: &str) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.code() == code)
    }
}

/// What a message asks for, and the language it was written in (English
/// when nothing says otherwise: "STOP" is every language's keyword).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub intent: Intent,
    pub language: Language,
}

/// Reads one message.
pub fn read(text: &str) -> Reading {
    Reading { intent: Intent::classify(text), language: Language::En }
}

impl Intent {
    pub fn classify(text: &str) -> Intent {
        match lookup(&normalize(text)) {
            Intent::None => by_sentence(text),
            intent => intent,
        }
    }

    pub fn is_opt_out(self) -> bool {
        matches!(self, Intent::OptOut | Intent::OptOutAll)
    }
}

/// The phrase a run of words is, after courtesy and repeats.
fn lookup(tokens: &[String]) -> Intent {
    let mut core = strip_courtesy(tokens);
    core.dedup();
    if core.is_empty() {
        return Intent::None;
    }
    phrase_table().get(&core.join(" ")).copied().unwrap_or(Intent::None)
}

/// Sentence ends and line breaks.
fn sentences(text: &str) -> impl Iterator<Item = (&str, bool)> {
    text.split_inclusive(['.', '!', '?', ';', '\n', '\r'])
        .map(|raw| (raw.trim(), raw.trim_end().ends_with('?')))
        .filter(|(raw, _)| !raw.is_empty())
}

/// A signature or sign-off line: "Sent from my iPhone", "-John", "Get Outlook".
fn is_sign_off(raw: &str, tokens: &[String]) -> bool {
    raw.starts_with(['-', '\u{2013}', '\u{2014}', '~'])
        || tokens.starts_with(&["sent".into(), "from".into()])
        || tokens.starts_with(&["get".into(), "outlook".into()])
}

/// A sentence that takes a keyword back: "don't stop", "do not stop".
fn negates(tokens: &[String]) -> bool {
    tokens.windows(2).any(|w| matches!(w[0].as_str(), "dont" | "not" | "never") && lookup(&w[1..]).is_opt_out())
}

/// The second reading: a first sentence that is a keyword decides.
fn by_sentence(text: &str) -> Intent {
    let parts: Vec<(Vec<String>, bool)> = sentences(text)
        .map(|(raw, question)| (raw, normalize(raw), question))
        .filter(|(raw, tokens, _)| !tokens.is_empty() && !is_sign_off(raw, tokens))
        .map(|(_, tokens, question)| (tokens, question))
        .collect();
    let Some(((first, question), rest)) = parts.split_first() else {
        return Intent::None;
    };
    let intent = lookup(first);
    if *question || intent == Intent::None {
        return Intent::None;
    }
    // CANCEL alone is an opt-out; with more said it may be an appointment.
    if !rest.is_empty() && strip_courtesy(first) == ["cancel"] {
        return Intent::None;
    }
    let contradicted = rest
        .iter()
        .any(|(tokens, _)| negates(tokens) || !matches!(lookup(tokens), Intent::None) && lookup(tokens) != intent);
    if contradicted || negates(first) {
        Intent::None
    } else {
        intent
    }
}

/// Opt-in words that are also everyday answers: reminders ask patients to
/// "reply YES to confirm", so "Yes" or "Sí" opts in only a number that is
/// opted out (as the providers do); from any other number it is an
/// ordinary message.
const CONDITIONAL_OPT_IN: &[&str] = &["yes", "si"];

/// Whether `text` is an opt-in only when it follows an opt-out.
pub fn is_conditional_opt_in(text: &str) -> bool {
    let tokens = normalize(text);
    let core = strip_courtesy(&tokens);
    CONDITIONAL_OPT_IN.contains(&core.join(" ").as_str())
}

/// True when `text`, uppercased and trimmed, is exactly one of `keywords`: how
/// the providers' own auto-responders match (no courtesy, no punctuation).
pub fn is_exact_keyword(text: &str, keywords: &[&str]) -> bool {
    let upper = text.trim().to_uppercase();
    keywords.iter().any(|k| *k == upper)
}

/// Case, Unicode compatibility forms, accents, punctuation, emoji and spacing
/// are all noise; apostrophes vanish so "don't" and "dont" read alike.
fn normalize(text: &str) -> Vec<String> {
    let folded: String = text
        .nfkc()
        .collect::<String>()
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .filter(|c| !matches!(c, '\'' | '\u{2019}' | '`'))
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    folded.split_whitespace().map(str::to_owned).collect()
}

/// Courtesy that may surround a keyword without changing what it means.
const COURTESY: &[&[&str]] = &[
    &["thank", "you"],
    &["thanks"],
    &["thankyou"],
    &["thx"],
    &["ty"],
    &["please"],
    &["pls"],
    &["plz"],
    &["now"],
    &["asap"],
    &["immediately"],
    &["anymore"],
    &["por", "favor"],
    &["gracias"],
    &["ya"],
    &["ok"],
    &["okay"],
];

fn strip_courtesy(tokens: &[String]) -> Vec<&str> {
    let mut core: Vec<&str> = tokens.iter().map(String::as_str).collect();
    loop {
        let before = core.len();
        for phrase in COURTESY {
            if core.starts_with(phrase) {
                core.drain(..phrase.len());
            }
            if core.ends_with(phrase) {
                core.truncate(core.len() - phrase.len());
            }
        }
        if core.len() == before {
            return core;
        }
    }
}

const OPT_OUT: &[&str] = &[
    // Provider defaults (Twilio, AWS, Telnyx, Plivo, Vonage, Sinch).
    "stop",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "revoke",
    "optout",
    "opt out",
    "arret",
    "remove",
    "td",
    "unsub",
    "no more",
    // Spanish and Portuguese.
    "detener",
    "salir",
    "parar",
    "cancelar",
    "alto",
    "basta",
    "no mas",
    "baja",
    "darme de baja",
    "no mas mensajes",
    "no mas textos",
    "no me envien mas mensajes",
    "no me manden mas mensajes",
    "ya no quiero mensajes",
    "no quiero mensajes",
    "no quiero recibir mensajes",
    "no quiero mas mensajes",
    "no me manden mensajes",
    "no me envien mensajes",
    "deja de enviarme mensajes",
    "dejen de enviarme mensajes",
    "deja de mandarme mensajes",
    "dejen de mandarme mensajes",
    // French (providers' ARRET, and the verb as people write it).
    "arrete",
    "arreter",
    // Plain-language revocations a reasonable person would read as "stop".
    "stop it",
    "stop this",
    "unsubscribe me",
    "opt me out",
    "remove me",
    "leave me alone",
    "wrong number",
    "i want to opt out",
    "i want to unsubscribe",
    "i want to stop",
];

const OPT_OUT_ALL: &[&str] = &[
    "stopall",
    "stop all",
    "unsubscribe all",
    "cancel all",
    "end all",
    "quit all",
    "stop everything",
    "parar todo",
    "cancelar todo",
];

const OPT_IN: &[&str] = &[
    "start",
    "resume messages",
    "resume texts",
    "start messages",
    "start texts",
    "yes",
    "unstop",
    "subscribe",
    "resume",
    "join",
    "opt in",
    "optin",
    "si",
    "volver",
    "recibir",
    "comenzar",
    "voltar",
    "receber",
];

const HELP: &[&str] = &["help", "info", "help me", "ayuda", "informacion", "ajuda"];

fn phrase_table() -> &'static HashMap<String, Intent> {
    static TABLE: OnceLock<HashMap<String, Intent>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = HashMap::new();
        for (list, intent) in
            [(OPT_OUT, Intent::OptOut), (OPT_OUT_ALL, Intent::OptOutAll), (OPT_IN, Intent::OptIn), (HELP, Intent::Help)]
        {
            table.extend(list.iter().map(|p| (p.to_string(), intent)));
        }
        for phrase in revocation_phrases() {
            table.insert(phrase, Intent::OptOut);
        }
        table
    })
}

/// "stop texting me", "no more messages", "do not text me", "take me off your
/// list" and their combinations.
fn revocation_phrases() -> Vec<String> {
    const VERBS: &[&str] = &["stop", "quit", "please stop"];
    const GERUNDS: &[&str] = &["texting", "messaging", "contacting", "sending"];
    const DETERMINERS: &[&str] = &["", "these ", "the ", "your ", "all ", "any "];
    const NOUNS: &[&str] = &["texts", "messages", "text messages", "reminders", "sms"];
    const DONT: &[&str] = &["dont", "do not", "never"];
    const CONTACT: &[&str] = &["text", "message", "contact", "sms"];
    const LIST: &[&str] = &["list", "your list", "the list", "this list", "the texting list"];

    let mut objects: Vec<String> = Vec::new();
    for gerund in GERUNDS {
        objects.push(gerund.to_string());
        objects.push(format!("{gerund} me"));
        objects.push(format!("{gerund} this number"));
        objects.push(format!("{gerund} my number"));
    }
    objects.push("text".into());
    for det in DETERMINERS {
        for noun in NOUNS {
            objects.push(format!("{det}{noun}"));
            objects.push(format!("sending {det}{noun}"));
            objects.push(format!("sending me {det}{noun}"));
        }
    }
    let mut out = Vec::new();
    for verb in VERBS {
        for object in &objects {
            out.push(format!("{verb} {object}"));
        }
    }
    for noun in NOUNS.iter().chain(&["texting"]) {
        out.push(format!("no more {noun}"));
        for det in DETERMINERS {
            for want in ["i dont want", "i no longer want", "i dont want to receive", "i no longer want to receive"] {
                out.push(format!("{want} {det}{noun}"));
            }
        }
    }
    for dont in DONT {
        for verb in CONTACT {
            out.push(format!("{dont} {verb} me"));
            out.push(format!("{dont} {verb} me again"));
        }
    }
    for list in LIST {
        out.push(format!("take me off {list}"));
        out.push(format!("remove me from {list}"));
        out.push(format!("remove my number from {list}"));
        out.push(format!("unsubscribe me from {list}"));
    }
    out.extend(["remove me", "remove my number", "unsubscribe me"].map(String::from));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Intent::*;

    /// Real-world replies, as patients type them.
    const CASES: &[(&str, Intent)] = &[
        // The plain keywords, every way they arrive.
        ("STOP", OptOut),
        ("Stop", OptOut),
        ("stop", OptOut),
        ("stop.", OptOut),
        ("STOP!!", OptOut),
        (" stop ", OptOut),
        ("\tSTOP\n", OptOut),
        ("Stop ✋", OptOut),
        ("🛑 STOP 🛑", OptOut),
        ("ＳＴＯＰ", OptOut),
        ("\"stop\"", OptOut),
        ("Stop!!!!!!", OptOut),
        ("STOP.", OptOut),
        ("Unsubscribe", OptOut),
        ("UNSUBSCRIBE", OptOut),
        ("unsub", OptOut),
        ("Cancel", OptOut),
        ("END", OptOut),
        ("end.", OptOut),
        ("Quit", OptOut),
        ("REVOKE", OptOut),
        ("OPTOUT", OptOut),
        ("OPT OUT", OptOut),
        ("opt-out", OptOut),
        ("Opt out.", OptOut),
        ("REMOVE", OptOut),
        ("ARRET", OptOut),
        ("Arrêt", OptOut),
        ("TD", OptOut),
        // Courtesy around a keyword.
        ("Stop. Thank you", OptOut),
        ("STOP please", OptOut),
        ("Please stop", OptOut),
        ("stop pls", OptOut),
        ("Stop now!", OptOut),
        ("Stop, thanks", OptOut),
        ("Unsubscribe please, thank you!", OptOut),
        ("Stop it!", OptOut),
        // The FCC's plain-language revocations.
        ("please stop texting me", OptOut),
        ("Stop texting me", OptOut),
        ("stop texting me please", OptOut),
        ("STOP SENDING ME TEXTS", OptOut),
        ("Stop sending me these messages", OptOut),
        ("stop messaging me", OptOut),
        ("Quit texting me!", OptOut),
        ("no more texts", OptOut),
        ("No more messages please", OptOut),
        ("No more", OptOut),
        ("Don't text me", OptOut),
        ("Do not text me again", OptOut),
        ("dont contact me anymore", OptOut),
        ("Take me off your list", OptOut),
        ("Remove me from the list please", OptOut),
        ("Remove me", OptOut),
        ("unsubscribe me", OptOut),
        ("Leave me alone", OptOut),
        ("I don't want these texts", OptOut),
        ("Wrong number", OptOut),
        // Spanish.
        ("PARAR", OptOut),
        ("ALTO", OptOut),
        ("BASTA", OptOut),
        ("NO MAS", OptOut),
        ("No más", OptOut),
        ("no más mensajes", OptOut),
        ("CANCELAR", OptOut),
        ("Detener", OptOut),
        ("salir", OptOut),
        ("Basta ya", OptOut),
        ("parar por favor", OptOut),
        ("No me envíen más mensajes", OptOut),
        ("baja", OptOut),
        // Everything, everywhere.
        ("STOP ALL", OptOutAll),
        ("stopall", OptOutAll),
        ("Stop all.", OptOutAll),
        ("STOP ALL please", OptOutAll),
        ("Unsubscribe all", OptOutAll),
        ("cancel all", OptOutAll),
        // Opt back in.
        ("START", OptIn),
        ("Start", OptIn),
        ("start.", OptIn),
        ("unstop", OptIn),
        ("UNSTOP", OptIn),
        ("Yes", OptIn),
        ("YES!", OptIn),
        ("yes please", OptIn),
        ("Subscribe", OptIn),
        ("RESUME", OptIn),
        ("JOIN", OptIn),
        ("opt in", OptIn),
        ("Sí", OptIn),
        ("VOLVER", OptIn),
        ("recibir", OptIn),
        // Help.
        ("HELP", Help),
        ("help", Help),
        ("Help!", Help),
        ("info", Help),
        ("info?", Help),
        ("INFO", Help),
        ("AYUDA", Help),
        ("help me please", Help),
        ("Información", Help),
        // Ordinary messages that must never opt anyone out.
        ("weekend", None),
        ("Can I stop by at 3?", None),
        ("I will be there, thanks", None),
        ("Thanks", None),
        ("Thank you!", None),
        ("ok", None),
        ("See you tomorrow", None),
        ("Cancel my appointment", None),
        ("Can I cancel my appointment?", None),
        ("I need to reschedule", None),
        ("The pharmacy said stop taking it", None),
        ("stopped", None),
        ("Stopwatch", None),
        ("unstoppable", None),
        ("backend", None),
        ("friend", None),
        ("helpful, thanks", None),
        ("Information about parking?", None),
        ("Yes I will be there", None),
        ("yesterday", None),
        ("Is this the end of my treatment?", None),
        ("Don't stop", None),
        ("starting tomorrow", None),
        ("", None),
        ("   ", None),
        ("!!!", None),
        ("😀", None),
        ("please", None),
        ("C", None),
        ("Stop by the front desk", None),
        // Sentences around a keyword, as people write them (issue 13).
        ("STOP STOP", OptOut),
        ("STOP\n\nSent from my iPhone", OptOut),
        ("Stop. Wrong number", OptOut),
        ("ok stop", OptOut),
        ("Stop text", OptOut),
        ("Please remove my number", OptOut),
        ("Unsubscribe me from this list", OptOut),
        ("I no longer want to receive texts", OptOut),
        ("Stop messaging this number", OptOut),
        ("No quiero más mensajes", OptOut),
        ("Ya no me manden mensajes", OptOut),
        ("Deja de enviarme mensajes", OptOut),
        ("Arrête", OptOut),
        ("Resume messages", OptIn),
        ("STOP\n-John", OptOut),
        ("Stop! Thanks!", OptOut),
        ("Help. I have a question", Help),
        // ... and what must not become one.
        ("Please don't stop the reminders", None),
        ("Stop. Don't stop", None),
        ("Can you stop by the pharmacy?", None),
        ("Where do I stop to park?", None),
        ("Can I cancel and reschedule?", None),
        ("Ending my visit early?", None),
        ("Unstoppable", None),
        ("Cancel. I will call to reschedule", None),
        ("Stop? What is this about?", None),
        ("Thanks. See you at 3", None),
        ("Sent from my iPhone", None),
        ("Stop. Start", None),
    ];

    #[test]
    fn real_world_messages_are_classified_as_people_mean_them() {
        assert!(CASES.len() >= 100, "the table keeps at least 100 real messages");
        let wrong: Vec<_> = CASES
            .iter()
            .filter(|(text, want)| Intent::classify(text) != *want)
            .map(|(text, want)| format!("{text:?}: want {want:?}, got {:?}", Intent::classify(text)))
            .collect();
        assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    }

    #[test]
    fn a_signature_or_courtesy_after_a_keyword_never_changes_its_class() {
        for keyword in OPT_OUT.iter().chain(OPT_IN).chain(HELP).filter(|k| **k != "cancel") {
            let class = Intent::classify(keyword);
            assert_ne!(class, Intent::None, "{keyword}");
            for tail in ["\n\nSent from my iPhone", "\n-Maria", ". Thank you", "! Thanks!", " please"] {
                let text = format!("{keyword}{tail}");
                assert_eq!(Intent::classify(&text), class, "{text:?}");
            }
        }
    }

    #[test]
    fn a_question_word_never_turns_an_ordinary_sentence_into_an_opt_out() {
        let ordinary = CASES.iter().filter(|(_, want)| *want == None).map(|(text, _)| *text);
        for text in ordinary.chain(["stop by tomorrow", "cancel my appointment", "end my visit early"]) {
            for question in ["Can I", "Why", "Where do I", "Should I", "How do I"] {
                let asked = format!("{question} {text}?");
                assert!(!Intent::classify(&asked).is_opt_out(), "{asked:?}");
            }
        }
    }

    #[test]
    fn exact_keywords_are_matched_as_the_providers_do() {
        let list = ["STOP", "STOPALL"];
        assert!(is_exact_keyword(" stop ", &list));
        assert!(!is_exact_keyword("Stop. Thank you", &list));
        assert!(!is_exact_keyword("STOP!", &list));
    }

    proptest::proptest! {
        #[test]
        fn classifying_any_text_never_panics(s in "\\PC{0,200}") {
            let _ = Intent::classify(&s);
        }
    }

    #[test]
    fn yes_and_si_are_conditional_opt_ins_and_start_is_not() {
        for text in ["Yes", "YES!", "yes please", "Sí", "si"] {
            assert!(is_conditional_opt_in(text), "{text}");
            assert_eq!(Intent::classify(text), Intent::OptIn, "{text}");
        }
        for text in ["START", "unstop", "Yes, see you then at 3", "STOP"] {
            assert!(!is_conditional_opt_in(text), "{text}");
        }
    }
}

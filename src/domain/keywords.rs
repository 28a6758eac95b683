//! Reads what a patient wrote and decides whether it is an opt-out, an opt-in,
//! a request for help, a message staff should look at, or an ordinary message,
//! and in which language it was written.
//!
//! Three readings, all deterministic and explainable (no network, no model):
//!
//! 1. The whole message is a keyword or a known phrase, optionally wrapped
//!    in courtesy ("Stop. Thank you", "please stop texting me", "退订，谢谢",
//!    "중지해 주세요"), with a repeated word read once ("STOP STOP") and a
//!    leading "ok" dropped.
//! 2. Otherwise, sentence by sentence: the message is split at sentence
//!    ends (also "。！？") and line breaks, sign-offs are dropped ("Sent from
//!    my iPhone", "-John"), and a sentence that is itself a keyword or
//!    phrase decides, the rest being its reason ("Stop. Wrong number", "Why
//!    am I getting these? Stop"), unless another sentence negates it ("Stop.
//!    Don't stop") or is another keyword of a different kind. A first
//!    sentence may also start with an opt-out and run on into its reason
//!    without punctuation ("stop i have a new doctor now", "Stop until after
//!    my surgery"). A question never decides, CANCEL or CANCELAR decides only
//!    alone (a clinic's patients cancel appointments), and YES (SÍ, OUI...)
//!    only as the first sentence.
//! 3. Otherwise, if revocation vocabulary appears as a word ("stop",
//!    "unsubscribe", "remove", "opt out", "quit", "no more", "don't text",
//!    "parar", "no más", "dejen de", "arrêt", "退订", "중지", ...), the message
//!    is [`Intent::Unclear`]: recorded for staff to review rather than
//!    dropped. A word is revocation vocabulary only as a whole word ("weekend",
//!    "stopped", "unstoppable" never are) and not where it plainly means
//!    something else:
//!    - after a negation or as a noun: "don't stop", "the bus stop";
//!    - before a place or a purpose: "stop by", "stop in", "stop to park";
//!    - before another activity: "stop taking", "parar de tomar", "stop my
//!      medication" (only messages, texts, reminders... as the object keep it);
//!    - "cancel", "remove", "cancelar", "salir", "hủy" only with messages, a
//!      number, a list or a subscription as their object ("cancel my
//!      subscription", not "cancel my appointment" or "remove the bandage");
//!    - "no more" / "no más" only alone or before messages ("no more
//!      please???", not "no more pain").
//!
//!    A false Unclear is not free: with the default `unclear = "deny"` the
//!    patient gets no reminders until staff review, so the exclusions above
//!    keep "Can I stop by at 3?" and "Cancel my appointment" ordinary, while
//!    "Stop?", "How do I stop these" or "Please stop texting my son" are
//!    Unclear.
//!
//! Language ([`read`]): the language of the phrase that decided ("PARAR" is
//! Spanish, "ARRÊT" French, "退订" Chinese). A keyword the providers list in
//! their English defaults or that several languages share ("STOP", "INFO",
//! "please stop texting me") is English unless the rest of the message says
//! otherwise: Hangul means Korean, Chinese characters Chinese, Vietnamese
//! letters (ư, ơ, đ, ạ...) Vietnamese, and a few unambiguous words ("gracias",
//! "merci", "obrigado", "salamat", "mèsi"...) their language, so "STOP por
//! favor" is Spanish. An Unclear or ordinary message takes the language of the
//! revocation vocabulary it carries, else the same hints, else English.
//!
//! Matching folds case, Unicode compatibility forms, accents, punctuation,
//! emoji and spacing; table entries go through the same folding when the
//! table is built, so "DỪNG", "dừng" and "dung", "Arrêt" and "ARRET", Hangul
//! and Chinese (where a message has no spaces, so "退订" must be the whole
//! message) all meet. "đ" has no decomposition and stays "đ" (so "Đúng",
//! "right", is not "dừng"); every entry with "đ" is also entered with "d", as
//! people type without diacritics. Sources of each language's words are
//! beside them; a language with no provider list found uses the plain word
//! its speakers use, marked as such.

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

/// A phrase of the table: what it asks for, in which language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    intent: Intent,
    language: Language,
}

/// Reads one message.
pub fn read(text: &str) -> Reading {
    let tokens = normalize(text);
    if let Some(found) = lookup(&tokens) {
        return Reading { intent: found.intent, language: resolve(found.language, text, &tokens) };
    }
    let parts = parts(text);
    if let Some(found) = by_sentence(&parts) {
        return Reading { intent: found.intent, language: resolve(found.language, text, &tokens) };
    }
    match unclear(&parts) {
        Some(language) => Reading { intent: Intent::Unclear, language: resolve(language, text, &tokens) },
        None => Reading { intent: Intent::None, language: resolve(Language::En, text, &tokens) },
    }
}

impl Intent {
    pub fn classify(text: &str) -> Intent {
        read(text).intent
    }

    pub fn is_opt_out(self) -> bool {
        matches!(self, Intent::OptOut | Intent::OptOutAll)
    }
}

/// English is the default and the shared keywords' language: the rest of the
/// message may say otherwise.
fn resolve(language: Language, text: &str, tokens: &[String]) -> Language {
    match language {
        Language::En => hint(text, tokens).unwrap_or(Language::En),
        other => other,
    }
}

/// What the script or an unambiguous word says about the language.
fn hint(text: &str, tokens: &[String]) -> Option<Language> {
    let mut han = false;
    for c in text.chars() {
        match c {
            '\u{AC00}'..='\u{D7A3}' | '\u{1100}'..='\u{11FF}' | '\u{3130}'..='\u{318F}' => return Some(Language::Ko),
            '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' => han = true,
            'đ' | 'Đ' | 'ư' | 'Ư' | 'ơ' | 'Ơ' | 'ă' | 'Ă' | '\u{1EA0}'..='\u{1EF9}' => {
                return Some(Language::Vi)
            }
            _ => {}
        }
    }
    if han {
        return Some(Language::Zh);
    }
    tokens.iter().enumerate().find_map(|(i, token)| {
        let next = tokens.get(i + 1).map(String::as_str);
        match (token.as_str(), next) {
            ("gracias" | "mensajes" | "quiero" | "textos", _) | ("por", Some("favor")) => Some(Language::Es),
            ("merci" | "svp", _) | ("sil", Some("vous")) => Some(Language::Fr),
            ("obrigado" | "obrigada" | "mensagens" | "nao", _) => Some(Language::Pt),
            ("salamat" | "po" | "ayoko" | "huwag", _) => Some(Language::Tl),
            ("mesi" | "tanpri" | "mwen" | "anko", _) => Some(Language::Ht),
            ("cam", Some("on")) | ("xin" | "khong", _) => Some(Language::Vi),
            _ => None,
        }
    })
}

/// The phrase a run of words is, after courtesy and repeats.
fn lookup(tokens: &[String]) -> Option<Found> {
    let mut core = strip_courtesy(tokens);
    core.dedup();
    if core.is_empty() {
        return None;
    }
    let table = phrase_table();
    match core.as_slice() {
        [only] => table.get(*only).or_else(|| table.get(strip_attached_courtesy(only))).copied(),
        [rest @ .., last] => table.get(&core.join(" ")).copied().or_else(|| {
            let stem = strip_attached_courtesy(last);
            let key = rest.iter().chain([&stem]).copied().collect::<Vec<_>>().join(" ");
            (stem != *last).then(|| table.get(&key).copied()).flatten()
        }),
        [] => None,
    }
}

/// Sentence ends and line breaks, Western and CJK.
fn sentences(text: &str) -> impl Iterator<Item = (&str, bool)> {
    text.split_inclusive(['.', '!', '?', ';', '\n', '\r', '。', '！', '？', '；', '｡'])
        .map(|raw| (raw.trim(), raw.trim_end().ends_with(['?', '？'])))
        .filter(|(raw, _)| !raw.is_empty())
}

/// The sentences that carry words, each folded, with whether it asks.
fn parts(text: &str) -> Vec<(Vec<String>, bool)> {
    sentences(text)
        .map(|(raw, question)| (raw, normalize(raw), question))
        .filter(|(raw, tokens, _)| !tokens.is_empty() && !is_sign_off(raw, tokens))
        .map(|(_, tokens, question)| (tokens, question))
        .collect()
}

/// A signature or sign-off line: "Sent from my iPhone", "-John", "Get Outlook".
fn is_sign_off(raw: &str, tokens: &[String]) -> bool {
    raw.starts_with(['-', '\u{2013}', '\u{2014}', '~'])
        || tokens.starts_with(&["sent".into(), "from".into()])
        || tokens.starts_with(&["get".into(), "outlook".into()])
}

/// A sentence that takes a keyword back: "don't stop", "do not stop".
fn negates(tokens: &[String]) -> bool {
    tokens.windows(2).any(|w| {
        matches!(w[0].as_str(), "dont" | "not" | "never") && lookup(&w[1..]).is_some_and(|f| f.intent.is_opt_out())
    })
}

/// Words that start the reason after a keyword said without punctuation:
/// "stop i have a new doctor", "Stop, she passed away", "stop until June".
const REASONS: &[&str] = &["i", "im", "she", "he", "this", "we", "its", "or", "until", "because", "hasta", "porque"];

/// The second reading: a sentence that is a keyword decides, the others
/// being its reason; else a first sentence that starts with an opt-out and
/// goes on with its reason.
fn by_sentence(parts: &[(Vec<String>, bool)]) -> Option<Found> {
    let keyword = parts.iter().enumerate().find_map(|(at, (tokens, question))| {
        let found = lookup(tokens).filter(|_| !*question)?;
        // "Yes" after other sentences is an answer, not an opt-in.
        (at == 0 || !is_conditional(tokens)).then_some((at, found))
    });
    let (at, found, reason) = match keyword {
        Some((at, found)) => (at, found, None),
        None => {
            let (first, question) = parts.first()?;
            let split = (1..first.len()).find(|&i| {
                REASONS.contains(&first[i].as_str()) && lookup(&first[..i]).is_some_and(|f| f.intent.is_opt_out())
            });
            let split = split.filter(|_| !*question)?;
            (0, lookup(&first[..split])?, Some(&first[split..]))
        }
    };
    let decider = match reason {
        Some(reason) => &parts[at].0[..parts[at].0.len() - reason.len()],
        None => &parts[at].0[..],
    };
    // CANCEL alone is an opt-out; with more said it may be an appointment.
    let said_more = parts.len() > 1 || reason.is_some();
    if said_more && matches!(strip_courtesy(decider).as_slice(), ["cancel"] | ["cancelar"]) {
        return None;
    }
    let mut others = parts.iter().enumerate().filter(|(i, _)| *i != at).map(|(_, (tokens, _))| tokens);
    let contradicted = negates(decider)
        || reason.is_some_and(negates)
        || others.any(|tokens| negates(tokens) || lookup(tokens).is_some_and(|f| f.intent != found.intent));
    (!contradicted).then_some(found)
}

fn is_conditional(tokens: &[String]) -> bool {
    CONDITIONAL_OPT_IN.contains(&strip_courtesy(tokens).join(" ").as_str())
}

/// Opt-in words that are also everyday answers: reminders ask patients to
/// "reply YES to confirm", so "Yes" or "Sí" opts in only a number that is
/// opted out (as the providers do); from any other number it is an
/// ordinary message.
const CONDITIONAL_OPT_IN: &[&str] = &["yes", "si", "oui", "sim", "co", "是", "oo", "네", "wi"];

/// Whether `text` is an opt-in only when it follows an opt-out: a yes
/// alone, or a yes as the first sentence ("Yes. See you Tuesday").
pub fn is_conditional_opt_in(text: &str) -> bool {
    is_conditional(&normalize(text)) || parts(text).first().is_some_and(|(tokens, _)| is_conditional(tokens))
}

/// True when `text`, uppercased and trimmed, is exactly one of `keywords`: how
/// the providers' own auto-responders match (no courtesy, no punctuation).
pub fn is_exact_keyword(text: &str, keywords: &[&str]) -> bool {
    let upper = text.trim().to_uppercase();
    keywords.iter().any(|k| *k == upper)
}

/// Case, Unicode compatibility forms, accents, punctuation, emoji and spacing
/// are all noise; apostrophes vanish so "don't" and "dont" read alike. Hangul
/// syllables, split into jamo to drop marks, are put back together.
fn normalize(text: &str) -> Vec<String> {
    // NFKD is NFD of NFKC (canonically equivalent strings decompose alike),
    // in one pass: compatibility forms folded, accents split off and dropped.
    let mut folded = String::with_capacity(text.len());
    let mut fold = |c: char| match c {
        '\'' | '\u{2019}' | '`' => {}
        // The stop sign is the one emoji people send to mean the word.
        '\u{1F6D1}' => folded.push_str(" stop "),
        c if c.is_alphanumeric() => folded.push(c),
        _ => folded.push(' '),
    };
    if text.is_ascii() {
        // Most replies: NFKD leaves ASCII as it is and it has no accents.
        text.chars().for_each(|c| fold(c.to_ascii_lowercase()));
    } else {
        text.nfkd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).for_each(fold);
    }
    if folded.chars().any(|c| matches!(c, '\u{1100}'..='\u{11FF}')) {
        folded = folded.nfc().collect();
    }
    let tokens: Vec<String> = folded.split_whitespace().map(str::to_owned).collect();
    if tokens.len() < 2 {
        return tokens;
    }
    // An angry "STOP F***ING TEXTING ME" is a plain "stop texting me".
    tokens.into_iter().filter(|t| !INTENSIFIERS.contains(&t.as_str())).collect()
}

/// Words that add heat, not meaning (and what is left of a starred one).
const INTENSIFIERS: &[&str] =
    &["fucking", "fuckin", "freaking", "freakin", "frickin", "friggin", "effing", "damn", "goddamn", "f", "ing"];

fn is_han(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}')
}

fn is_hangul(c: char) -> bool {
    matches!(c, '\u{AC00}'..='\u{D7A3}')
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
    &["and"],
    &["pleas"],
    &["kindly"],
    &["sorry"],
    &["could", "you"],
    &["can", "you"],
    &["would", "you"],
    &["will", "you"],
    &["i", "would", "like", "to"],
    &["id", "like", "to"],
    &["i", "wish", "to"],
    &["i", "said"],
    &["i", "already", "said"],
    &["i", "guess"],
    &["enough"],
    &["for", "the", "last", "time"],
    &["from", "you"],
    &["de", "ustedes"],
    &["de", "esta", "clinica"],
    &["merci"],
    &["svp"],
    &["sil", "vous", "plait"],
    &["obrigado"],
    &["obrigada"],
    &["salamat"],
    &["po"],
    &["na"],
    &["mesi"],
    &["tanpri"],
    &["cam", "on"],
    &["xin"],
    &["lam", "on"],
    &["谢谢"],
    &["謝謝"],
    &["감사합니다"],
    &["고맙습니다"],
    &["해", "주세요"],
    &["주세요"],
    &["해주세요"],
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

/// Courtesy written into the word itself, as Chinese and Korean do: "请退订",
/// "退订谢谢", "중지해주세요", "그만하세요".
fn strip_attached_courtesy(token: &str) -> &str {
    const HAN_BEFORE: &[&str] = &["请", "請"];
    const HAN_AFTER: &[&str] = &["谢谢", "謝謝", "了", "吧"];
    const HANGUL_AFTER: &[&str] = &["해주세요", "합니다", "하세요", "주세요", "해요", "해줘", "해"];
    let mut word = token;
    if word.chars().any(is_han) {
        loop {
            let before = word.len();
            for prefix in HAN_BEFORE {
                word = word.strip_prefix(prefix).unwrap_or(word);
            }
            for suffix in HAN_AFTER {
                word = word.strip_suffix(suffix).unwrap_or(word);
            }
            if word.len() == before {
                return word;
            }
        }
    }
    if word.chars().any(is_hangul) {
        for suffix in HANGUL_AFTER {
            if let Some(stem) = word.strip_suffix(suffix).filter(|s| !s.is_empty()) {
                return stem;
            }
        }
    }
    word
}

/// One language's keywords and phrases.
struct Keywords {
    language: Language,
    opt_out: &'static [&'static str],
    opt_out_all: &'static [&'static str],
    opt_in: &'static [&'static str],
    help: &'static [&'static str],
}

/// English. Provider defaults: Twilio Advanced Opt-Out (STOP, STOPALL,
/// UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT / START, YES, UNSTOP / HELP,
/// INFO), "Required opt-out keywords - AWS End User Messaging SMS"
/// (docs.aws.amazon.com/sms-voice/latest/userguide/keywords-required.html:
/// ARRET, CANCEL, END, OPT-OUT, OPTOUT, QUIT, REMOVE, STOP, TD, UNSUBSCRIBE),
/// Telnyx, Plivo, Vonage (`shared/compliance/KEYWORDS.md`); plain-language
/// revocations a reasonable person would read as "stop" (FCC 2024 order).
const EN: Keywords = Keywords {
    language: Language::En,
    opt_out: &[
        "stop",
        "unsubscribe",
        "cancel",
        "end",
        "quit",
        "revoke",
        "optout",
        "opt out",
        "remove",
        "td",
        "unsub",
        "no more",
        "stop it",
        "stop this",
        "unsubscribe me",
        "opt me out",
        "remove me",
        "leave me alone",
        "wrong person",
        "wrong number",
        "i want to opt out",
        "i want to unsubscribe",
        "i want to stop",
        // Common misspellings of the keywords.
        "stpo",
        "sotp",
        "stopp",
        "unsubcribe",
        "unsuscribe",
        "unsubscibe",
        // Plain-language revocations (FCC 2024 order: any reasonable means).
        "lose my number",
        "delete my number",
        "delete me",
        "revoke my consent",
        "withdraw my consent",
        "i revoke my consent",
        "i withdraw my consent",
        "i revoke my consent to receive texts",
        "i revoke my consent to receive messages",
        "opt out of text messages",
        "opt out of texts",
        "opt out of messages",
        "you have the wrong number",
        "end texts",
        "end messages",
        "stop bothering me",
        "stop harassing me",
        "cancel my texts",
        "cancel my text messages",
        "cancel these texts",
        "cancel these messages",
        "cancel these reminders",
        "cancel the reminders",
        "cancel my reminders",
    ],
    opt_out_all: &[
        "stopall",
        "stop all",
        "unsubscribe all",
        "cancel all",
        "end all",
        "quit all",
        "stop everything",
        "unsubscribe me from everything",
        "remove me from all your lists",
        "remove me from all lists",
    ],
    opt_in: &[
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
        "start again",
        "start sending me reminders again",
        "start sending me texts again",
        "start sending me messages again",
        "i want to receive texts again",
        "i want to receive messages again",
    ],
    help: &["help", "info", "help me", "i need help", "more info", "more information"],
};

/// Spanish. "Can I customize opt-in and opt-out keywords for use with consent
/// management?" (Sinch Community, community.sinch.com/t5/Conversation-API/
/// Can-I-customize-opt-in-and-opt-out-keywords-for-use-with-consent/ta-p/18980):
/// DETENER, SALIR / VOLVER, RECIBIR. "Reserved Keywords" (Textizen,
/// support.textizen.com/article/92-reserved-keywords): ALTO, INICIO, AUXILIO.
/// The rest (PARAR, BASTA, NO MÁS, BAJA, AYUDA, INFORMACIÓN, COMENZAR, and the
/// phrases of [`spanish_phrases`]) are plain Spanish as patients write it
/// (`shared/compliance/KEYWORDS.md`, FCC's "No mas"); no provider list.
const ES: Keywords = Keywords {
    language: Language::Es,
    opt_out: &[
        "detener",
        "salir",
        "parar",
        "pare",
        "paren",
        "cancelar",
        "alto",
        "basta",
        "baja",
        "no mas",
        "detengan",
        "dejame en paz",
        "dejenme en paz",
        "numero equivocado",
        "para",
    ],
    opt_out_all: &["parar todo", "cancelar todo", "detener todo", "salir de todo"],
    opt_in: &[
        "si",
        "volver",
        "recibir",
        "inicio",
        "comenzar",
        "quiero recibir mensajes otra vez",
        "quiero recibir mensajes de nuevo",
        "quiero volver a recibir mensajes",
    ],
    help: &["ayuda", "informacion", "auxilio", "necesito ayuda"],
};

/// French. "Canadian mandatory keyword responses" (Infobip, after the CWTA
/// Canadian Common Short Code Application Guidelines,
/// support.infobip.com/docs/essentials/usa-and-canada-compliance/canadian-mandatory-keyword-responses):
/// STOP, ARRET, HELP, AIDE, INFO. "Opt-out keywords" (Twilio Proxy,
/// www.twilio.com/docs/proxy/opt-out-keywords): ARRETT, ARRET, ARRETE.
/// AWS End User Messaging lists ARRET too. No provider lists a French opt-in:
/// COMMENCER is the plain verb, marked as such; ARRÊTEZ and DÉSABONNER are
/// the plain verbs for stop and unsubscribe.
const FR: Keywords = Keywords {
    language: Language::Fr,
    opt_out: &[
        "arret",
        "arrett",
        "arrete",
        "arreter",
        "arretez",
        "desabonner",
        "me desabonner",
        "desabonnez moi",
        "arretez de menvoyer des messages",
        "arrete de menvoyer des messages",
        "je ne veux plus recevoir de messages",
        "ne menvoyez plus de messages",
        "ne menvoyez plus de textos",
        "ne menvoyez plus de sms",
    ],
    opt_out_all: &["arret tout", "arreter tout"],
    // Plain words, no provider list found; OUI ("yes") only after an opt-out.
    opt_in: &["commencer", "oui", "je veux recevoir les messages de nouveau"],
    help: &["aide"],
};

/// Portuguese. Sinch Community (as for Spanish above): PARAR, CANCELAR /
/// VOLTAR, RECEBER. No provider lists a Portuguese help word or the other
/// phrases: AJUDA ("help"), PARE/PAREM ("stop"), SAIR ("leave"),
/// DESCADASTRAR ("unsubscribe") and "não quero mais mensagens" are plain
/// Portuguese, marked as such.
const PT: Keywords = Keywords {
    language: Language::Pt,
    opt_out: &[
        "parem",
        "sair",
        "descadastrar",
        "nao quero mais mensagens",
        "nao quero receber mensagens",
        "nao quero receber mais mensagens",
        "nao envie mais mensagens",
        "nao me envie mais mensagens",
        "nao mande mais mensagens",
        "parem de enviar mensagens",
        "parem de me enviar mensagens",
        "pare de enviar mensagens",
        "pare de me enviar mensagens",
        "nao me mande mais mensagens",
        "chega",
        "me tire da lista",
        "tire me da lista",
        "cancelar inscricao",
    ],
    opt_out_all: &["parar tudo", "cancelar tudo"],
    // SIM ("yes") only after an opt-out, as YES.
    opt_in: &["voltar", "receber", "sim"],
    help: &["ajuda"],
};

/// Vietnamese. No US provider list found. Vietnamese carriers' and services'
/// own unsubscribe keyword is HUY ("hủy", cancel), e.g. "send 'HUY'" on a
/// Vietnamese service's unsubscribe page (winwithfun.com/VN/support/unsubscribe)
/// and "HUY DNC" for the national do-not-call list (quantrimang.com,
/// "Chặn tin nhắn rác, cuộc gọi rác chỉ bằng 1 tin nhắn"). DỪNG / NGỪNG
/// ("stop"), "hủy đăng ký" ("unsubscribe"), BẮT ĐẦU ("start"), GIÚP / TRỢ GIÚP
/// ("help") are the plain words, marked as such.
const VI: Keywords = Keywords {
    language: Language::Vi,
    opt_out: &[
        "hủy",
        "dừng",
        "ngừng",
        "ngưng",
        "dừng lại",
        "hủy đăng ký",
        "dừng gửi tin nhắn",
        "ngừng gửi tin nhắn",
        "đừng nhắn tin nữa",
        "không nhận tin nhắn nữa",
        "tôi không muốn nhận tin nhắn",
        "đừng nhắn tin cho tôi nữa",
        "đừng nhắn tin cho tôi",
    ],
    opt_out_all: &["dừng tất cả", "hủy tất cả"],
    // Plain words, no provider list found; CÓ ("yes") only after an opt-out.
    opt_in: &["bắt đầu", "có"],
    help: &["giúp", "trợ giúp", "giúp đỡ"],
};

/// Chinese, simplified and traditional. "Managing Unsubscribed Users"
/// (Tencent Cloud SMS, intl.cloud.tencent.com/document/product/382/35474):
/// users reply "TD" (the pinyin initials of 退订, tuìdìng, "unsubscribe"),
/// which AWS End User Messaging also lists (under English here). No provider
/// list of characters found: 退订/退訂 ("unsubscribe"), 停止 ("stop"),
/// 取消订阅/取消訂閱 ("cancel subscription"), 开始/開始 ("start"), 帮助/幫助
/// ("help") are the plain words, marked as such. 取消 alone ("cancel") is not
/// one: 取消预约 is cancelling an appointment.
const ZH: Keywords = Keywords {
    language: Language::Zh,
    opt_out: &[
        "退订",
        "退訂",
        "停止",
        "取消订阅",
        "取消訂閱",
        "停止发送",
        "停止發送",
        "不要再发了",
        "不要再發了",
        "不要再发短信",
        "不要再發簡訊",
        "不要再傳簡訊",
        "别再给我发信息",
        "別再給我發訊息",
        "不要再给我发信息",
        "停止传送讯息",
        "停止傳送訊息",
        "停止发信息",
    ],
    opt_out_all: &["全部退订", "全部退訂", "全部停止"],
    // 是 ("yes") only after an opt-out.
    opt_in: &["开始", "開始", "订阅", "訂閱", "是"],
    help: &["帮助", "幫助", "求助"],
};

/// Tagalog. No provider list found: TIGIL / HINTO ("stop"), "ayoko na"
/// ("I don't want [it] anymore"), SIMULA ("start"), TULONG ("help") are the
/// plain words, marked as such.
const TL: Keywords = Keywords {
    language: Language::Tl,
    opt_out: &[
        "tigil",
        "itigil",
        "hinto",
        "ihinto",
        "itigil na",
        "ihinto na",
        "itigil ang text",
        "itigil ang mga text",
        "huwag na kayong mag text",
        "wag na kayong mag text",
        "ayoko na ng text",
        "ayaw ko na ng text",
        "huwag na po kayong mag text",
        "wag na po kayong mag text",
    ],
    opt_out_all: &["itigil lahat", "ihinto lahat"],
    // OO ("yes") only after an opt-out.
    opt_in: &["simula", "magsimula", "oo"],
    help: &["tulong", "tulungan"],
};

/// Korean. No provider keyword list found. 수신거부 ("refuse receipt") is the
/// term Korean law makes advertisers print ("무료수신거부", Information and
/// Communications Network Act art. 50, as a Korean bulk-SMS sender's notice
/// explains: invitobiz.com/findNoti?seq=576). 중지 ("stop"), 그만 ("enough"),
/// 구독 취소 ("unsubscribe"), 시작 ("start"), 도움말 / 도움 ("help") are the
/// plain words, marked as such. Endings ("중지해 주세요") are courtesy.
const KO: Keywords = Keywords {
    language: Language::Ko,
    opt_out: &[
        "수신거부",
        "수신 거부",
        "중지",
        "그만",
        "구독취소",
        "구독 취소",
        "문자 그만",
        "그만 보내세요",
        "문자 그만 보내세요",
        "보내지 마세요",
        "문자 보내지 마세요",
        "정지",
    ],
    opt_out_all: &["모두 중지", "전체 중지"],
    // 네 ("yes") only after an opt-out.
    opt_in: &["시작", "네"],
    help: &["도움말", "도움"],
};

/// Haitian Creole. No provider list found: KANPE / SISPANN ("stop"),
/// "pa voye mesaj ankò" ("don't send messages any more"), KÒMANSE ("start"),
/// ÈD ("help") are the plain words, marked as such. RETE ("stop") is left out:
/// it also means "stay, live" ("m rete Miami").
const HT: Keywords = Keywords {
    language: Language::Ht,
    opt_out: &[
        "kanpe",
        "sispann",
        "sispan",
        "pa voye mesaj anko",
        "pa voye m mesaj anko",
        "mwen pa vle mesaj anko",
        "sispann voye mesaj",
        "sispann voye mesaj ba mwen",
        "mwen pa vle resevwa mesaj anko",
        "pa voye mesaj ban mwen anko",
    ],
    opt_out_all: &["kanpe tout", "sispann tout"],
    // WI ("yes") only after an opt-out.
    opt_in: &["komanse", "wi"],
    help: &["ed", "ede m", "ede mwen", "mwen bezwen ed"],
};

/// Every language, English first: a phrase two languages share keeps the
/// first language that lists it.
const LANGUAGES: [&Keywords; 9] = [&EN, &ES, &FR, &PT, &VI, &ZH, &TL, &KO, &HT];

fn phrase_table() -> &'static HashMap<String, Found> {
    static TABLE: OnceLock<HashMap<String, Found>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = HashMap::new();
        let mut add = |phrase: &str, intent: Intent, language: Language| {
            let key = normalize(phrase).join(" ");
            if key.contains('đ') {
                table.entry(key.replace('đ', "d")).or_insert(Found { intent, language });
            }
            table.entry(key).or_insert(Found { intent, language });
        };
        for keywords in LANGUAGES {
            for (list, intent) in [
                (keywords.opt_out, Intent::OptOut),
                (keywords.opt_out_all, Intent::OptOutAll),
                (keywords.opt_in, Intent::OptIn),
                (keywords.help, Intent::Help),
            ] {
                for phrase in list {
                    add(phrase, intent, keywords.language);
                }
            }
        }
        for phrase in revocation_phrases() {
            add(&phrase, Intent::OptOut, Language::En);
        }
        for phrase in spanish_phrases() {
            add(&phrase, Intent::OptOut, Language::Es);
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
    const LIST: &[&str] = &["list", "your list", "the list", "this list", "the texting list", "your texting list"];

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
            for want in [
                "i dont want",
                "i do not want",
                "i no longer want",
                "i dont want to receive",
                "i do not want to receive",
                "i no longer want to receive",
                "i no longer wish to receive",
            ] {
                out.push(format!("{want} {det}{noun}"));
            }
        }
    }
    for dont in DONT {
        for verb in CONTACT {
            out.push(format!("{dont} {verb} me"));
            out.push(format!("{dont} {verb} me again"));
        }
        for noun in NOUNS {
            out.push(format!("{dont} send me {noun}"));
            out.push(format!("{dont} send me any more {noun}"));
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

/// Spanish revocations as patients write them, accents optional: "no me
/// envíen más mensajes", "ya no quiero recibir mensajes", "deja de enviarme
/// mensajes", "quítenme de la lista", "cancelar suscripción", "darme de baja".
fn spanish_phrases() -> Vec<String> {
    const SEND: &[&str] =
        &["envien", "envies", "envie", "manden", "mandes", "mande", "escriban", "escribas", "escriba"];
    const NOUNS: &[&str] = &["mensajes", "textos", "sms", "recordatorios", "mensajes de texto", "notificaciones"];
    const TO_ME: &[&str] = &["enviarme", "mandarme", "escribirme", "enviar", "mandar", "textearme"];
    const CEASE: &[&str] = &["deja de", "dejen de", "deje de", "paren de", "pare de", "para de", "dejar de"];
    const TAKE: &[&str] = &[
        "quitenme",
        "quiteme",
        "quitame",
        "sacame",
        "saquenme",
        "saqueme",
        "borrenme",
        "borrame",
        "eliminenme",
        "eliminame",
        "quiero salir",
    ];
    const LIST: &[&str] = &["la lista", "su lista", "esta lista", "la lista de mensajes", "sus mensajes"];

    let mut out = Vec::new();
    for send in SEND {
        out.push(format!("no me {send} mas"));
        for noun in NOUNS {
            out.push(format!("no me {send} {noun}"));
            out.push(format!("no me {send} mas {noun}"));
        }
    }
    for want in ["no quiero", "no deseo", "ya no quiero"] {
        for receive in ["", "recibir ", "recibir mas ", "mas "] {
            for noun in NOUNS {
                out.push(format!("{want} {receive}{noun}"));
            }
        }
    }
    for cease in CEASE {
        for verb in TO_ME {
            out.push(format!("{cease} {verb}"));
            for noun in NOUNS {
                out.push(format!("{cease} {verb} {noun}"));
            }
        }
    }
    for take in TAKE {
        out.push(take.to_string());
        for list in LIST {
            out.push(format!("{take} de {list}"));
        }
    }
    for noun in NOUNS {
        out.push(format!("basta de {noun}"));
        out.push(format!("no mas {noun}"));
        out.push(format!("parar {noun}"));
        out.push(format!("paren los {noun}"));
    }
    for subscription in ["suscripcion", "mi suscripcion", "la suscripcion", "subscripcion"] {
        out.push(format!("cancelar {subscription}"));
        out.push(format!("anular {subscription}"));
    }
    out.extend(
        ["darme de baja", "quiero darme de baja", "dar de baja", "de baja", "desuscribir", "desuscribirme"]
            .map(String::from),
    );
    out
}

/// When a word of revocation vocabulary counts (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// Always: "unsubscribe", "opt out".
    Always,
    /// A verb that could stop anything: not after a negation or as a noun,
    /// not before a place, a purpose or another activity.
    Verb,
    /// Only with messages, a number, a list or a subscription as its object.
    Object,
    /// "no more": alone, before courtesy or before messages.
    NoMore,
}

/// Revocation vocabulary of the languages written with spaces, folded like
/// messages. Each entry: words, language, guard.
const VOCABULARY: &[(&str, Language, Guard)] = &[
    ("stop", Language::En, Guard::Verb),
    ("quit", Language::En, Guard::Verb),
    ("unsubscribe", Language::En, Guard::Always),
    ("unsub", Language::En, Guard::Always),
    ("optout", Language::En, Guard::Always),
    ("opt out", Language::En, Guard::Always),
    ("revoke", Language::En, Guard::Always),
    ("no more", Language::En, Guard::NoMore),
    ("dont text", Language::En, Guard::Always),
    ("dont message", Language::En, Guard::Always),
    ("dont contact", Language::En, Guard::Always),
    ("dont send", Language::En, Guard::Always),
    ("do not text", Language::En, Guard::Always),
    ("do not message", Language::En, Guard::Always),
    ("do not contact", Language::En, Guard::Always),
    ("do not send", Language::En, Guard::Always),
    ("leave me alone", Language::En, Guard::Always),
    ("wrong number", Language::En, Guard::Always),
    ("take me off", Language::En, Guard::Always),
    ("remove", Language::En, Guard::Object),
    ("withdraw my consent", Language::En, Guard::Always),
    ("revoke my consent", Language::En, Guard::Always),
    ("cancel", Language::En, Guard::Object),
    ("parar", Language::Es, Guard::Verb),
    ("paren", Language::Es, Guard::Verb),
    ("pare", Language::Es, Guard::Verb),
    ("detener", Language::Es, Guard::Verb),
    ("detengan", Language::Es, Guard::Verb),
    ("basta", Language::Es, Guard::Verb),
    ("no mas", Language::Es, Guard::NoMore),
    ("de baja", Language::Es, Guard::Always),
    ("desuscribir", Language::Es, Guard::Always),
    ("desuscribirme", Language::Es, Guard::Always),
    ("deja de", Language::Es, Guard::Object),
    ("dejen de", Language::Es, Guard::Object),
    ("deje de", Language::Es, Guard::Object),
    ("dejar de", Language::Es, Guard::Object),
    ("dejo de", Language::Es, Guard::Object),
    ("no me envien", Language::Es, Guard::Always),
    ("no me manden", Language::Es, Guard::Always),
    ("cancelar", Language::Es, Guard::Object),
    ("salir", Language::Es, Guard::Object),
    ("quitenme", Language::Es, Guard::Always),
    ("sacame", Language::Es, Guard::Always),
    ("saquenme", Language::Es, Guard::Always),
    ("arret", Language::Fr, Guard::Verb),
    ("arrete", Language::Fr, Guard::Verb),
    ("arreter", Language::Fr, Guard::Verb),
    ("arretez", Language::Fr, Guard::Verb),
    ("desabonner", Language::Fr, Guard::Always),
    ("desinscrire", Language::Fr, Guard::Always),
    ("desabonne", Language::Fr, Guard::Always),
    ("parem", Language::Pt, Guard::Verb),
    ("descadastrar", Language::Pt, Guard::Always),
    ("sair", Language::Pt, Guard::Object),
    ("huy", Language::Vi, Guard::Object),
    ("dung", Language::Vi, Guard::Object),
    ("ngung", Language::Vi, Guard::Object),
    ("huy đang ky", Language::Vi, Guard::Always),
    ("huy dang ky", Language::Vi, Guard::Always),
    ("tu choi", Language::Vi, Guard::Object),
    ("tigil", Language::Tl, Guard::Verb),
    ("itigil", Language::Tl, Guard::Verb),
    ("hinto", Language::Tl, Guard::Verb),
    ("ihinto", Language::Tl, Guard::Verb),
    ("ayoko na", Language::Tl, Guard::Object),
    ("huwag", Language::Tl, Guard::Object),
    ("kanpe", Language::Ht, Guard::Verb),
    ("sispann", Language::Ht, Guard::Verb),
    ("pa voye", Language::Ht, Guard::Object),
];

/// Chinese revocation vocabulary, found inside a run of characters, unless
/// it is one of the exclusions (stopping a medicine).
const HAN_VOCABULARY: &[&str] = &[
    "退订",
    "退訂",
    "停止",
    "取消订阅",
    "取消訂閱",
    "不要再发",
    "不要再發",
    "别再发",
    "別再發",
    "不要发短信",
    "不要發簡訊",
    "别再给我发",
    "別再給我發",
];
/// What is sent, in Chinese: 取消 ("cancel") counts only with one of these.
const HAN_MESSAGES: &[&str] = &["短信", "信息", "讯息", "訊息", "簡訊", "简讯", "提醒"];
const HAN_EXCLUSIONS: &[&str] = &["停止服药", "停止服藥", "停止吃药", "停止吃藥", "停止用药", "停止用藥"];

/// Korean revocation vocabulary, at the start of a word (endings follow),
/// unless the sentence is about a medicine (약, 복용).
const HANGUL_VOCABULARY: &[&str] = &["수신거부", "중지", "구독취소", "그만보내", "보내지마"];

/// What is sent or received: the objects that keep a guarded word.
const MESSAGE_WORDS: &[&str] = &[
    "text",
    "texts",
    "texting",
    "message",
    "messages",
    "messaging",
    "msg",
    "msgs",
    "sms",
    "reminder",
    "reminders",
    "notification",
    "notifications",
    "alerts",
    "sending",
    "contacting",
    "getting",
    "receiving",
    "receive",
    "surveys",
    "recibir",
    "receber",
    "mensaje",
    "mensajes",
    "textos",
    "texto",
    "recordatorios",
    "notificaciones",
    "enviar",
    "enviarme",
    "mandar",
    "mandarme",
    "escribirme",
    "textear",
    "textearme",
    "contactarme",
    "mensagens",
    "mensagem",
    "tin",
    "nhan",
    "mesaj",
    "mensahe",
];

/// Objects that keep "remove", "cancel", "salir"... besides messages.
const OBJECT_WORDS: &[&str] =
    &["number", "numero", "list", "lista", "subscription", "suscripcion", "subscripcion", "inscricao"];

const DETERMINERS: &[&str] = &[
    "my", "the", "his", "her", "our", "their", "your", "el", "la", "los", "las", "mi", "mis", "su", "sus", "tu", "tus",
    "le", "les", "mon", "ma", "mes", "o", "os", "as", "meu", "minha", "meus", "minhas", "ang",
];

fn is_message_word(token: &str) -> bool {
    MESSAGE_WORDS.contains(&token)
}

/// Whether the guarded word at `tokens[at..at + len]` counts.
fn counts(tokens: &[String], at: usize, len: usize, guard: Guard) -> bool {
    let previous = at.checked_sub(1).map(|i| tokens[i].as_str());
    let next = tokens.get(at + len).map(String::as_str);
    let after = tokens.get(at + len + 1).map(String::as_str);
    let later = &tokens[(at + len).min(tokens.len())..];
    match guard {
        Guard::Always => true,
        Guard::Object if matches!(previous, Some("dont" | "not" | "never" | "no" | "nao" | "pa")) => false,
        Guard::Object => {
            matches!(next, Some("me" | "us" | "what" | "que"))
                || later.iter().any(|t| is_message_word(t) || OBJECT_WORDS.contains(&t.as_str()))
        }
        Guard::NoMore => match next {
            None => true,
            Some(word) => {
                is_message_word(word)
                    || matches!(word, "of" | "from" | "de")
                    || COURTESY.iter().any(|phrase| phrase[0] == word)
            }
        },
        Guard::Verb => {
            let negated_or_noun = matches!(
                previous,
                Some(
                    "dont"
                        | "not"
                        | "never"
                        | "cant"
                        | "cannot"
                        | "didnt"
                        | "doesnt"
                        | "a"
                        | "the"
                        | "bus"
                        | "next"
                        | "last"
                        | "pit"
                        | "full"
                        | "first"
                        | "rest"
                        | "which"
                        | "what"
                        | "my"
                        | "nunca"
                        | "pa"
                )
            );
            let elsewhere = match next {
                None => false,
                Some(
                    "by" | "in" | "at" | "over" | "to" | "for" | "sign" | "signs" | "light" | "en" | "por" | "con"
                    | "pran" | "bwe" | "manje" | "tomar" | "uminom",
                ) => true,
                Some("de") => after.is_some_and(|verb| !is_message_word(verb)),
                Some(word) if DETERMINERS.contains(&word) => !after.is_some_and(is_message_word),
                Some(word) => word.len() > 4 && word.ends_with("ing") && !is_message_word(word),
            };
            !negated_or_noun && !elsewhere
        }
    }
}

/// Folded vocabulary entries, by their first word.
type ByWord = HashMap<String, Vec<(Vec<String>, Language, Guard)>>;

/// The folded vocabulary, by its first word.
fn vocabulary() -> &'static ByWord {
    static VOCABULARY_BY_WORD: OnceLock<ByWord> = OnceLock::new();
    VOCABULARY_BY_WORD.get_or_init(|| {
        let mut by_word = ByWord::new();
        for (words, language, guard) in VOCABULARY {
            let words = normalize(words);
            by_word.entry(words[0].clone()).or_default().push((words, *language, *guard));
        }
        by_word
    })
}

/// The third reading: the language of the first revocation word that counts.
fn unclear(parts: &[(Vec<String>, bool)]) -> Option<Language> {
    parts.iter().find_map(|(tokens, _)| {
        let medicine = tokens.iter().any(|t| t.starts_with("복용") || matches!(t.as_str(), "약" | "약을" | "약은"));
        tokens.iter().enumerate().find_map(|(at, token)| {
            if let Some(entries) = vocabulary().get(token) {
                let found = entries.iter().find(|(words, _, guard)| {
                    tokens[at..].starts_with(words) && counts(tokens, at, words.len(), *guard)
                });
                if let Some((_, language, _)) = found {
                    return Some(*language);
                }
            }
            if token.chars().any(is_han)
                && (HAN_VOCABULARY.iter().any(|word| token.contains(word))
                    || token.contains("取消") && HAN_MESSAGES.iter().any(|word| token.contains(word)))
                && !HAN_EXCLUSIONS.iter().any(|word| token.contains(word))
            {
                return Some(Language::Zh);
            }
            if !medicine && token.chars().any(is_hangul) {
                let joined = [token.as_str(), tokens.get(at + 1).map_or("", String::as_str)].concat();
                if token == "그만" || HANGUL_VOCABULARY.iter().any(|word| joined.starts_with(word)) {
                    return Some(Language::Ko);
                }
            }
            None
        })
    })
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
        ("🛑", OptOut),
        ("STOP F***ING TEXTING ME", OptOut),
        ("Stop freaking texting me", OptOut),
        ("Wrong person", OptOut),
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
        ("Stop. Don't stop", Unclear),
        ("Can you stop by the pharmacy?", None),
        ("Where do I stop to park?", None),
        ("Can I cancel and reschedule?", None),
        ("Ending my visit early?", None),
        ("Unstoppable", None),
        ("Cancel. I will call to reschedule", None),
        // Revocation vocabulary that is not a clear keyword: for staff.
        ("Stop? What is this about?", Unclear),
        ("Thanks. See you at 3", None),
        ("Sent from my iPhone", None),
        ("Stop. Start", Unclear),
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
        let all = LANGUAGES.iter().flat_map(|k| k.opt_out.iter().chain(k.opt_out_all).chain(k.opt_in).chain(k.help));
        for keyword in all.filter(|k| **k != "cancel") {
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
        for text in ["Yes", "YES!", "yes please", "Sí", "si", "Yes. See you Tuesday", "Oui. À mardi"] {
            assert!(is_conditional_opt_in(text), "{text}");
            assert_eq!(Intent::classify(text), Intent::OptIn, "{text}");
        }
        for text in ["START", "unstop", "Yes, see you then at 3", "STOP"] {
            assert!(!is_conditional_opt_in(text), "{text}");
        }
    }

    /// `text` with its accents dropped and "đ" written "d", as people type
    /// without diacritics.
    fn unaccented(text: &str) -> String {
        text.nfd().filter(|c| !is_combining_mark(*c)).collect::<String>().replace('đ', "d").replace('Đ', "D")
    }

    #[test]
    fn every_listed_keyword_reads_in_upper_lower_accented_and_unaccented_forms() {
        for keywords in LANGUAGES {
            for (list, intent) in [
                (keywords.opt_out, OptOut),
                (keywords.opt_out_all, OptOutAll),
                (keywords.opt_in, OptIn),
                (keywords.help, Help),
            ] {
                for phrase in list {
                    for form in [
                        phrase.to_string(),
                        phrase.to_uppercase(),
                        unaccented(phrase),
                        unaccented(&phrase.to_uppercase()),
                    ] {
                        let reading = read(&form);
                        assert_eq!(reading.intent, intent, "{form:?}");
                        if keywords.language != Language::En {
                            assert_ne!(reading.language, Language::En, "{form:?}");
                        }
                    }
                }
            }
        }
    }

    /// Messages in every language, with the language they are read in.
    const LANGUAGE_CASES: &[(&str, Intent, Language)] = &[
        // Spanish, fully.
        ("PARAR", OptOut, Language::Es),
        ("No me envíen más mensajes", OptOut, Language::Es),
        ("no me envien mas mensajes", OptOut, Language::Es),
        ("No me manden más textos", OptOut, Language::Es),
        ("no me mandes mensajes", OptOut, Language::Es),
        ("Deja de enviarme mensajes", OptOut, Language::Es),
        ("Dejen de mandarme mensajes por favor", OptOut, Language::Es),
        ("Ya no quiero recibir mensajes", OptOut, Language::Es),
        ("ya no quiero recibir textos", OptOut, Language::Es),
        ("Quítenme de la lista", OptOut, Language::Es),
        ("Sáquenme de su lista, gracias", OptOut, Language::Es),
        ("No más, por favor", OptOut, Language::Es),
        ("Cancelar suscripción", OptOut, Language::Es),
        ("cancelar suscripcion", OptOut, Language::Es),
        ("Quiero darme de baja", OptOut, Language::Es),
        ("DETENER", OptOut, Language::Es),
        ("Parar todo", OptOutAll, Language::Es),
        ("VOLVER", OptIn, Language::Es),
        ("Inicio", OptIn, Language::Es),
        ("AYUDA", Help, Language::Es),
        ("Información", Help, Language::Es),
        ("auxilio", Help, Language::Es),
        // French.
        ("ARRÊT", OptOut, Language::Fr),
        ("arret", OptOut, Language::Fr),
        ("Arrêtez svp", OptOut, Language::Fr),
        ("ARRETT", OptOut, Language::Fr),
        ("Désabonnez-moi", OptOut, Language::Fr),
        ("AIDE", Help, Language::Fr),
        ("Commencer", OptIn, Language::Fr),
        // Portuguese.
        ("PAREM", OptOut, Language::Pt),
        ("Não quero mais mensagens", OptOut, Language::Pt),
        ("nao quero mais mensagens", OptOut, Language::Pt),
        ("Sair", OptOut, Language::Pt),
        ("VOLTAR", OptIn, Language::Pt),
        ("receber", OptIn, Language::Pt),
        ("Ajuda", Help, Language::Pt),
        // Vietnamese: "đ" does not decompose.
        ("DỪNG", OptOut, Language::Vi),
        ("dừng", OptOut, Language::Vi),
        ("dung", OptOut, Language::Vi),
        ("Dừng lại", OptOut, Language::Vi),
        ("HỦY", OptOut, Language::Vi),
        ("Hủy đăng ký", OptOut, Language::Vi),
        ("huy dang ky", OptOut, Language::Vi),
        ("HUY DANG KY", OptOut, Language::Vi),
        ("Ngừng", OptOut, Language::Vi),
        ("Đừng nhắn tin nữa", OptOut, Language::Vi),
        ("dung nhan tin nua", OptOut, Language::Vi),
        ("Bắt đầu", OptIn, Language::Vi),
        ("bat dau", OptIn, Language::Vi),
        ("GIÚP", Help, Language::Vi),
        ("tro giup", Help, Language::Vi),
        ("Đúng", None, Language::Vi),
        // Chinese, simplified and traditional, with no spaces.
        ("退订", OptOut, Language::Zh),
        ("退訂", OptOut, Language::Zh),
        ("请退订", OptOut, Language::Zh),
        ("請退訂", OptOut, Language::Zh),
        ("退订，谢谢", OptOut, Language::Zh),
        ("退订。", OptOut, Language::Zh),
        ("停止", OptOut, Language::Zh),
        ("请停止发送", OptOut, Language::Zh),
        ("停止發送", OptOut, Language::Zh),
        ("取消订阅", OptOut, Language::Zh),
        ("取消訂閱", OptOut, Language::Zh),
        ("全部退订", OptOutAll, Language::Zh),
        ("开始", OptIn, Language::Zh),
        ("開始", OptIn, Language::Zh),
        ("帮助", Help, Language::Zh),
        ("幫助", Help, Language::Zh),
        // Tagalog.
        ("TIGIL", OptOut, Language::Tl),
        ("Hinto po", OptOut, Language::Tl),
        ("itigil na po", OptOut, Language::Tl),
        ("Simula", OptIn, Language::Tl),
        ("Tulong po", Help, Language::Tl),
        // Korean: Hangul syllables survive the folding.
        ("중지", OptOut, Language::Ko),
        ("중지해 주세요", OptOut, Language::Ko),
        ("중지해주세요", OptOut, Language::Ko),
        ("수신거부", OptOut, Language::Ko),
        ("수신 거부", OptOut, Language::Ko),
        ("그만 보내세요", OptOut, Language::Ko),
        ("구독 취소", OptOut, Language::Ko),
        ("시작", OptIn, Language::Ko),
        ("도움말", Help, Language::Ko),
        // Haitian Creole.
        ("KANPE", OptOut, Language::Ht),
        ("Sispann", OptOut, Language::Ht),
        ("Pa voye mesaj ankò", OptOut, Language::Ht),
        ("KÒMANSE", OptIn, Language::Ht),
        ("Èd", Help, Language::Ht),
        // Shared keywords are English unless the rest says otherwise.
        ("STOP", OptOut, Language::En),
        ("STOP\n\nSent from my iPhone", OptOut, Language::En),
        ("HELP", Help, Language::En),
        ("Info", Help, Language::En),
        ("STOP por favor", OptOut, Language::Es),
        ("Stop, gracias", OptOut, Language::Es),
        ("Stop merci", OptOut, Language::Fr),
        ("STOP 谢谢", OptOut, Language::Zh),
        ("Stop po", OptOut, Language::Tl),
        ("STOP mèsi", OptOut, Language::Ht),
        ("See you tomorrow", None, Language::En),
    ];

    #[test]
    fn each_language_is_read_and_named_by_the_phrase_that_decided() {
        let wrong: Vec<_> = LANGUAGE_CASES
            .iter()
            .filter(|(text, intent, language)| read(text) != Reading { intent: *intent, language: *language })
            .map(|(text, intent, language)| format!("{text:?}: want {intent:?}/{language:?}, got {:?}", read(text)))
            .collect();
        assert!(wrong.is_empty(), "misread:\n{}", wrong.join("\n"));
    }

    #[test]
    fn revocation_vocabulary_that_is_not_a_clear_keyword_is_unclear_in_its_language() {
        for (text, language) in [
            ("How do I stop these", Language::En),
            ("Please stop texting my son", Language::En),
            ("Stop? What is this about?", Language::En),
            ("Can you remove my wife's number from the list?", Language::En),
            ("I want to cancel my subscription to these texts", Language::En),
            ("How do I unsubscribe?", Language::En),
            ("Is there a way to opt out?", Language::En),
            ("Ya no me interesa, no más", Language::Es),
            ("¿Cómo puedo parar estos mensajes?", Language::Es),
            ("Por favor dejen de mandarle mensajes a mi mamá", Language::Es),
            ("Je veux arrêter les messages", Language::Fr),
            ("Tanpri kanpe voye mesaj bay manman m", Language::Ht),
            ("Paki-tigil ang text sa anak ko", Language::Tl),
            ("Xin dừng gửi tin cho mẹ tôi", Language::Vi),
            ("请不要再发短信给我妈妈", Language::Zh),
            ("我想停止接收這些簡訊", Language::Zh),
            ("엄마한테 문자 그만 보내주세요", Language::Ko),
        ] {
            assert_eq!(read(text), Reading { intent: Unclear, language }, "{text:?}");
        }
    }

    #[test]
    fn healthcare_replies_that_share_words_with_opt_outs_are_ordinary() {
        for text in [
            "Cancel my appointment",
            "Can I cancel and reschedule?",
            "Ending my visit early?",
            "Unstoppable",
            "Can I stop by at 3?",
            "I stopped taking the pills",
            "Should I stop my medication before surgery?",
            "Can I stop taking ibuprofen?",
            "When can I remove the bandage?",
            "I quit smoking last year!",
            "No more pain since Tuesday",
            "Where is the bus stop?",
            "I can't stop coughing",
            "Please don't stop the reminders",
            "The end of my treatment is next week",
            "weekend",
            "Quiero cancelar mi cita",
            "¿Puedo parar de tomar la pastilla?",
            "Necesito cancelar la cita del lunes",
            "Tôi có cần dùng thuốc trước không?",
            "我可以停止服药吗？",
            "取消预约",
            "약 복용을 중지해도 되나요?",
        ] {
            assert_eq!(Intent::classify(text), None, "{text:?}");
        }
    }

    /// Every keyword of the languages besides English, with its class.
    fn foreign_keywords() -> Vec<(&'static str, Intent)> {
        LANGUAGES[1..]
            .iter()
            .flat_map(|k| {
                let lists = [(k.opt_out, OptOut), (k.opt_out_all, OptOutAll), (k.opt_in, OptIn), (k.help, Help)];
                lists.into_iter().flat_map(|(list, intent)| list.iter().map(move |phrase| (*phrase, intent)))
            })
            .filter(|(phrase, _)| *phrase != "cancelar")
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn a_keyword_of_any_language_keeps_its_class_after_a_sign_off(
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            name in "[A-Z][a-z]{1,8}",
            tail in proptest::sample::select(vec![
                "\n\nSent from my iPhone", "\n-{}", "\n\u{2014} {}", "\n~{}", ". Thank you", "! Gracias", "。谢谢", " please",
            ]),
        ) {
            let keywords = foreign_keywords();
            let (keyword, intent) = keywords[pick.index(keywords.len())];
            let text = format!("{keyword}{}", tail.replace("{}", &name));
            let alone = read(keyword);
            proptest::prop_assert_eq!(alone.intent, intent);
            proptest::prop_assert_eq!(read(&text), alone, "{:?}", text);
        }
    }

    proptest::proptest! {
        /// `normalize` folds with NFKD in one pass where it used NFKC then
        /// NFD: the same text for any input. ASCII skips the fold: NFKD
        /// leaves it as it is, it has no combining mark, and its lower case
        /// is `to_ascii_lowercase`.
        #[test]
        fn nfkd_is_nfd_of_nfkc(text in "\\PC{0,24}", ascii in "[ -~]{0,24}") {
            let two_passes: String = text.nfkc().collect::<String>().nfd().collect();
            proptest::prop_assert_eq!(text.nfkd().collect::<String>(), two_passes);
            proptest::prop_assert_eq!(ascii.nfkd().collect::<String>(), ascii.clone());
            proptest::prop_assert!(!ascii.chars().any(is_combining_mark));
            proptest::prop_assert!(ascii.chars().all(|c| c.to_lowercase().eq([c.to_ascii_lowercase()])));
        }
    }
}

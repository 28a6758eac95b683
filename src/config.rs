//! Typed settings: one TOML file, validated at start with errors that name
//! the bad field. Secrets are never printed by `Debug`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::keywords::Language;
pub use crate::domain::program::UnclearPolicy;
use crate::domain::replies::{LanguageTemplates, TemplateError};
use crate::domain::rules::{SendRule, DEFAULT_RULES};
pub use crate::domain::ReplyMode;
use crate::domain::{DefaultConsent, Letterhead, PhoneNumber, Program, Programs, ReplyKind, ReplyTemplates};
use crate::providers::aws_sns::SnsNetwork;
pub use crate::providers::standard_webhooks::StandardWebhooksConfig;
pub use crate::providers::twilio::TwilioConfig;
pub use crate::providers::vonage::VonageSignatureMethod;
/// The `[providers.*]` sections, declared by the providers' registration
/// table (`providers::build_all`).
pub use crate::providers::ProvidersConfig;
pub use crate::providers::Secret;
use crate::providers::{self, Outside, Provider};
use crate::service::outbox::OutboxSettings;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = ".sms-consent";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub programs: Vec<ProgramConfig>,
    #[serde(default)]
    pub providers: ProvidersConfig,
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// On Lambda: the IAM principals (role or user ARNs) allowed on `/v1`.
    #[serde(default)]
    pub iam_principals: Vec<IamPrincipalConfig>,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub preferences: PreferencesConfig,
}

/// `[metrics]`: counters and histograms (see `crate::metrics`): locally at
/// `GET /metrics` (API key scope `metrics`), on Lambda as EMF log lines.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Off: the local `/metrics` route answers 404. (The Lambda functions
    /// write their EMF lines regardless: the template's alarms read them.)
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true }
    }
}

/// `[preferences]`: the patient preference page (`/p/<token>`) and the
/// route that makes its links (`POST /v1/preference-links`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferencesConfig {
    /// Serve the page and the link route (default: on; without links made
    /// by a caller with scope `record` the page opens for no one).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a link opens the page (default 30 days).
    #[serde(default = "default_link_ttl_days")]
    pub link_ttl_days: u32,
    /// The public URL links start with, e.g. `https://msg.clinic.example`
    /// (default: `server.public_base_url`, else the API's own URL on Lambda).
    pub public_base_url: Option<String>,
    /// Choices one link may submit per minute (per process).
    #[serde(default = "default_submissions_per_minute")]
    pub submissions_per_minute: u32,
}

fn default_true() -> bool {
    true
}

fn default_link_ttl_days() -> u32 {
    30
}

fn default_submissions_per_minute() -> u32 {
    10
}

impl Default for PreferencesConfig {
    fn default() -> Self {
        PreferencesConfig {
            enabled: true,
            link_ttl_days: default_link_ttl_days(),
            public_base_url: None,
            submissions_per_minute: default_submissions_per_minute(),
        }
    }
}

impl PreferencesConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=365).contains(&self.link_ttl_days) {
            return Err(bad("preferences.link_ttl_days", "must be between 1 and 365 days"));
        }
        if !(1..=600).contains(&self.submissions_per_minute) {
            return Err(bad("preferences.submissions_per_minute", "must be between 1 and 600"));
        }
        if let Some(url) = &self.public_base_url {
            check_base_url("preferences.public_base_url", url, "https://msg.clinic.example")?;
        }
        Ok(())
    }
}

/// A public base URL (links sent to patients start with it): https with no
/// query or fragment; plain http only to this machine (local testing).
fn check_base_url(field: &str, url: &str, example: &str) -> Result<(), ConfigError> {
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|host| url.strip_prefix(host).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/'])));
    if !(url.starts_with("https://") || local) || url.contains(['?', '#']) {
        return Err(bad(
            field,
            format!("must be an https URL with no query or fragment (http only to this machine), e.g. {example}"),
        ));
    }
    Ok(())
}

/// A program's `resume_wording`: the consent a patient gives by resuming
/// on the preference page, as one English text or per language
/// (`{ en = "...", es = "..." }`). `{program}`, `{organization}` and
/// `{frequency}` are filled in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ResumeWording {
    English(String),
    PerLanguage(std::collections::BTreeMap<String, String>),
}

/// The most a resume wording may hold (it is recorded with the consent).
pub const MAX_RESUME_WORDING: usize = 1000;

/// `[retention]`: how long events are kept. Nothing set: for ever.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// `sms-consent purge` deletes events that arrived more than this many
    /// years ago (keeping each number's chain anchor and the events that
    /// decide its consent).
    pub events_years: Option<u32>,
}

/// `[outbox]`: how replies that wait in the outbox are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// A reply not sent this long after its event is not sent (`expired`).
    pub max_age_seconds: u64,
    /// Attempts before a reply that keeps failing temporarily is `failed`.
    pub max_attempts: u32,
    /// How long a worker holds a reply it is sending.
    pub lease_seconds: u64,
    /// The first retry's delay and the most any retry waits (doubling, with
    /// jitter; never sooner than the provider's `Retry-After`).
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Local process only: how often the worker looks for due replies
    /// (a new reply wakes it at once).
    pub poll_interval_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        let settings = OutboxSettings::default();
        OutboxConfig {
            max_age_seconds: settings.max_age.as_secs(),
            max_attempts: settings.max_attempts,
            lease_seconds: settings.lease.as_secs(),
            retry_initial_ms: settings.retry_initial.as_millis() as u64,
            retry_max_ms: settings.retry_max.as_millis() as u64,
            poll_interval_ms: 1000,
        }
    }
}

impl OutboxConfig {
    pub fn settings(&self) -> OutboxSettings {
        OutboxSettings {
            max_age: Duration::from_secs(self.max_age_seconds),
            max_attempts: self.max_attempts,
            lease: Duration::from_secs(self.lease_seconds),
            retry_initial: Duration::from_millis(self.retry_initial_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let ranges: [(&str, u64, std::ops::RangeInclusive<u64>); 6] = [
            ("outbox.max_age_seconds", self.max_age_seconds, 1..=86_400),
            ("outbox.max_attempts", u64::from(self.max_attempts), 1..=100),
            ("outbox.lease_seconds", self.lease_seconds, 1..=3600),
            ("outbox.retry_initial_ms", self.retry_initial_ms, 1..=3_600_000),
            ("outbox.retry_max_ms", self.retry_max_ms, 1..=3_600_000),
            ("outbox.poll_interval_ms", self.poll_interval_ms, 10..=3_600_000),
        ];
        for (field, value, range) in ranges {
            if !range.contains(&value) {
                return Err(bad(field, format!("must be between {} and {}", range.start(), range.end())));
            }
        }
        if self.retry_initial_ms > self.retry_max_ms {
            return Err(bad("outbox.retry_initial_ms", "must not exceed outbox.retry_max_ms"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamPrincipalConfig {
    /// An IAM role or user ARN; a role's assumed-role sessions match it.
    pub arn: String,
    pub scopes: Vec<ApiScope>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The URL providers call and sign, e.g. `https://consent.example.org`
    /// (with an API Gateway stage path if there is one).
    pub public_base_url: Option<String>,
    /// Local server only: a connection that has not sent a whole request
    /// head within this many seconds is closed.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: u64,
    /// Local server only: a request not answered within this many seconds
    /// (a body that stalls, for instance) gets 408 and its connection closes.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Local server only: at most this many connections at once; further
    /// clients wait in the listen backlog. Lowered at start to fit the
    /// process's open-file limit.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_header_read_timeout() -> u64 {
    10
}

fn default_request_timeout() -> u64 {
    30
}

fn default_max_connections() -> usize {
    256
}

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}

fn default_data_dir() -> PathBuf {
    DEFAULT_DATA_DIR.into()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            data_dir: default_data_dir(),
            public_base_url: None,
            header_read_timeout_seconds: default_header_read_timeout(),
            request_timeout_seconds: default_request_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageBackend {
    #[default]
    Embedded,
    Dynamodb,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub backend: StorageBackend,
    /// DynamoDB table name.
    pub table: Option<String>,
    /// Another endpoint than AWS's (moto, DynamoDB Local).
    pub endpoint_url: Option<String>,
    /// Default: the SDK's usual lookup (AWS_REGION, profile).
    pub region: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeysBackend {
    #[default]
    Local,
    Kms,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    #[serde(default)]
    pub backend: KeysBackend,
    /// KMS key: an ARN, a key id, or `alias/...`.
    pub key_id: Option<String>,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramConfig {
    pub id: String,
    pub name: String,
    pub organization: String,
    pub numbers: Vec<String>,
    pub help_contact: String,
    pub frequency: String,
    pub categories: Vec<String>,
    #[serde(default)]
    pub default: DefaultConsent,
    /// `[programs.replies]`: the English templates, a table per language.
    #[serde(default)]
    pub replies: RepliesConfig,
    /// What an unclear message means for sends until staff review it:
    /// `deny` (default) or `allow`.
    #[serde(default)]
    pub unclear: UnclearPolicy,
    /// Who confirms: `service` (default) sends every confirmation; `provider`
    /// leaves the provider's own auto-responder to answer its exact keywords
    /// and confirms only what it recognised beyond them.
    #[serde(default)]
    pub reply_mode: ReplyMode,
    /// The sending rules authorization applies: `quiet_hours`,
    /// `state_quiet_hours`, `state_frequency`, `healthcare_exemption`.
    /// Default: `["quiet_hours", "state_quiet_hours"]`; `[]` turns them off.
    #[serde(default = "default_send_rules")]
    pub send_rules: Vec<SendRule>,
    /// The consent shown and recorded when a patient resumes on the
    /// preference page (default: a wording built from the program's facts).
    pub resume_wording: Option<ResumeWording>,
}

fn default_send_rules() -> Vec<SendRule> {
    DEFAULT_RULES.to_vec()
}

impl ProgramConfig {
    /// The resume wording in `language` (`en` or `es`), filled in: the
    /// configured one, else English's configured one for a language the
    /// config leaves out, else the default.
    pub fn resume_wording(&self, language: Language) -> String {
        let configured = match &self.resume_wording {
            Some(ResumeWording::English(text)) if language == Language::En => Some(text.as_str()),
            Some(ResumeWording::English(_)) => None,
            Some(ResumeWording::PerLanguage(texts)) => texts.get(language.code()).map(String::as_str),
            None => None,
        };
        let template = configured.unwrap_or(match language {
            Language::Es => {
                "Al elegir Reanudar, acepta recibir mensajes de texto de {program} de {organization} en este \
                 número. {frequency}. Pueden aplicarse tarifas de mensajes y datos. Responda STOP para cancelar."
            }
            _ => {
                "By choosing Resume, you agree to receive {program} text messages from {organization} at this \
                 number. {frequency}. Msg & data rates may apply. Reply STOP to cancel, HELP for help."
            }
        });
        template
            .replace("{program}", &self.name)
            .replace("{organization}", &self.organization)
            .replace("{frequency}", self.frequency.trim_end_matches('.'))
    }

    fn validate_resume_wording(&self) -> Result<(), (String, String)> {
        let texts: Vec<(String, &str)> = match &self.resume_wording {
            None => return Ok(()),
            Some(ResumeWording::English(text)) => vec![("resume_wording".into(), text.as_str())],
            Some(ResumeWording::PerLanguage(texts)) => {
                if !texts.contains_key("en") {
                    return Err(("resume_wording".into(), "give the English wording as `en`".into()));
                }
                if let Some(other) = texts.keys().find(|k| !["en", "es"].contains(&k.as_str())) {
                    return Err((
                        format!("resume_wording.{other}"),
                        "the preference page is in English and Spanish only: use `en` or `es`".into(),
                    ));
                }
                texts.iter().map(|(k, v)| (format!("resume_wording.{k}"), v.as_str())).collect()
            }
        };
        for (field, text) in texts {
            if text.trim().is_empty() {
                return Err((field, "must not be empty".into()));
            }
            if text.chars().count() > MAX_RESUME_WORDING {
                return Err((field, format!("at most {MAX_RESUME_WORDING} characters")));
            }
        }
        Ok(())
    }

    pub fn letterhead(&self) -> Letterhead {
        Letterhead {
            program: self.name.clone(),
            organization: self.organization.clone(),
            help_contact: self.help_contact.clone(),
            frequency: self.frequency.clone(),
        }
    }

    /// The program as the service sees it. Numbers that do not parse are
    /// left out (`validate` refuses them before anything is built).
    pub fn program(&self) -> Program {
        Program {
            id: self.id.clone(),
            letterhead: self.letterhead(),
            numbers: self.numbers.iter().filter_map(|n| PhoneNumber::parse(n).ok()).collect(),
            categories: self.categories.clone(),
            default: self.default,
            replies: self.replies.templates(&self.id).unwrap_or_default(),
            reply_mode: self.reply_mode,
            unclear: self.unclear,
            send_rules: self.send_rules.clone(),
        }
    }
}

/// `[programs.replies]` as written: the English templates (`opt_out`,
/// `opt_in`, `help`), then per language (`[programs.replies.es]`) any of
/// the three and its `frequency`, or `es = false` to answer that language in
/// English. Read into `ReplyTemplates` by `templates`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct RepliesConfig(pub toml::Table);

impl RepliesConfig {
    /// The program's templates: shipped English and Spanish with what the
    /// config replaces or adds. An error is (field under the program, message).
    pub fn templates(&self, program: &str) -> Result<ReplyTemplates, (String, String)> {
        let codes = Language::ALL.map(Language::code).join(", ");
        let mut templates = ReplyTemplates::default();
        let mut english_table: Vec<String> = Vec::new();
        for (key, value) in &self.0 {
            if reply_kind(key).is_some() {
                continue;
            }
            let field = format!("replies.{key}");
            let Some(language) = Language::from_code(key) else {
                return Err((
                    field,
                    format!(
                        "{key:?} is not a reply of program {program:?}: use opt_out, opt_in, help (English) or a \
                         language code ({codes}) with its own table"
                    ),
                ));
            };
            match value {
                toml::Value::Boolean(false) if language == Language::En => {
                    return Err((
                        field,
                        format!(
                            "English answers every language without templates; it cannot be off (program {program:?})"
                        ),
                    ))
                }
                toml::Value::Boolean(false) => templates.remove(language),
                toml::Value::Table(table) => {
                    if language == Language::En {
                        english_table.extend(table.keys().cloned());
                    }
                    templates.insert(language, language_templates(program, language, table)?);
                }
                _ => {
                    return Err((
                        field,
                        format!("must be a table ([programs.replies.{key}]) or false (program {program:?})"),
                    ))
                }
            }
        }
        let mut english = templates.for_language(Language::En).clone();
        for (key, value) in &self.0 {
            let Some(kind) = reply_kind(key) else { continue };
            if english_table.iter().any(|k| k == key) {
                return Err((
                    format!("replies.{key}"),
                    format!("is also set in [programs.replies.en] (program {program:?})"),
                ));
            }
            english.set(kind, template_text(program, &format!("replies.{key}"), value)?);
        }
        templates.insert(Language::En, english);
        Ok(templates)
    }
}

fn reply_kind(key: &str) -> Option<ReplyKind> {
    ReplyKind::ALL.into_iter().find(|k| k.key() == key)
}

fn template_text(program: &str, field: &str, value: &toml::Value) -> Result<String, (String, String)> {
    match value {
        toml::Value::String(text) if !text.trim().is_empty() => Ok(text.clone()),
        _ => Err((field.to_owned(), format!("must be a non-empty string (program {program:?})"))),
    }
}

/// One `[programs.replies.<code>]` table over that language's shipped
/// templates; a language without them gives all three.
fn language_templates(
    program: &str,
    language: Language,
    table: &toml::Table,
) -> Result<LanguageTemplates, (String, String)> {
    let code = language.code();
    let shipped = LanguageTemplates::shipped(language);
    let mut out = shipped.clone().unwrap_or(LanguageTemplates {
        opt_out: String::new(),
        opt_in: String::new(),
        help: String::new(),
        frequency: None,
    });
    for (key, value) in table {
        let field = format!("replies.{code}.{key}");
        match (reply_kind(key), key.as_str()) {
            (Some(kind), _) => out.set(kind, template_text(program, &field, value)?),
            (None, "frequency") if language != Language::En => {
                out.frequency = Some(template_text(program, &field, value)?)
            }
            _ => {
                let frequency = if language == Language::En { "" } else { ", frequency" };
                return Err((
                    field,
                    format!("{key:?} is not a key of program {program:?}'s {code} replies: use opt_out, opt_in, help{frequency}"),
                ));
            }
        }
    }
    if shipped.is_none() {
        if let Some(kind) = ReplyKind::ALL.into_iter().find(|k| !table.contains_key(k.key())) {
            return Err((
                format!("replies.{code}.{}", kind.key()),
                format!(
                    "program {program:?}: no templates ship for {code}; give all three (opt_out, opt_in, help) \
                     in [programs.replies.{code}]"
                ),
            ));
        }
    }
    Ok(out)
}

/// The reason a template fails, and for a shipped one that no longer fits
/// because of the program's own name or frequency, what to do about it.
fn template_problem(language: Language, kind: ReplyKind, template: &str, error: &TemplateError) -> String {
    let shipped = LanguageTemplates::shipped(language).is_some_and(|t| t.get(kind) == template);
    if !(shipped && error.is_too_long()) {
        return error.to_string();
    }
    let key = kind.key();
    match language {
        Language::En => format!(
            "{error}: the shipped reply does not fit with this program's name and frequency; shorten them, or write \
             your own {key} under [programs.replies]"
        ),
        _ => {
            let code = language.code();
            format!(
                "{error}: the shipped {code} reply does not fit with this program's name and frequency; shorten them, \
                 write your own {key} under [programs.replies.{code}], or set {code} = false under [programs.replies] \
                 to answer in English"
            )
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiScope {
    Authorize,
    Record,
    ReadHistory,
    Erase,
    /// The review queue of unclear messages: list and decide.
    Review,
    /// The access report (`POST /v1/audit`): who read, recorded, erased or
    /// exported what.
    Audit,
    /// The service's counters (`GET /metrics`, Prometheus text).
    Metrics,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who the key belongs to, for logs and the ledger.
    #[serde(default)]
    pub name: Option<String>,
    /// Hex SHA-256 of the key: how keys are kept.
    pub token_sha256: Option<String>,
    /// The key itself: for local development only.
    pub token: Option<Secret>,
    pub scopes: Vec<ApiScope>,
}

/// A config problem, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let field = e.span().map(|span| locate(text, span.start)).unwrap_or_else(|| "config".into());
            bad(field, e.message().to_owned())
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.outbox.validate()?;
        self.preferences.validate()?;
        if self.retention.events_years.is_some_and(|years| !(1..=100).contains(&years)) {
            return Err(bad("retention.events_years", "must be between 1 and 100 (omit it to keep events for ever)"));
        }
        self.server.listen.parse::<SocketAddr>().map_err(|_| {
            bad("server.listen", format!("{:?} is not an address like 127.0.0.1:8080", self.server.listen))
        })?;
        if let Some(url) = &self.server.public_base_url {
            check_base_url("server.public_base_url", url, "https://consent.example.org/prod")?;
        }
        for (field, value) in [
            ("server.header_read_timeout_seconds", self.server.header_read_timeout_seconds),
            ("server.request_timeout_seconds", self.server.request_timeout_seconds),
        ] {
            if !(1..=3600).contains(&value) {
                return Err(bad(field, "must be between 1 and 3600 seconds"));
            }
        }
        if self.server.max_connections == 0 {
            return Err(bad("server.max_connections", "must be at least 1"));
        }
        self.validate_backends()?;
        let mut program_ids = HashSet::new();
        let mut owners: HashMap<String, String> = HashMap::new();
        for (i, program) in self.programs.iter().enumerate() {
            let at = |field: &str| format!("programs[{i}].{field}");
            if program.id.is_empty() || !program.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(bad(at("id"), "must be non-empty letters, digits, '-' or '_'"));
            }
            if !program_ids.insert(program.id.clone()) {
                return Err(bad(at("id"), format!("{:?} is used by another program", program.id)));
            }
            for (field, value) in [
                ("name", &program.name),
                ("organization", &program.organization),
                ("help_contact", &program.help_contact),
                ("frequency", &program.frequency),
            ] {
                if value.trim().is_empty() {
                    return Err(bad(at(field), "must not be empty"));
                }
            }
            if program.numbers.is_empty() {
                return Err(bad(at("numbers"), "a program needs at least one sender number"));
            }
            for (j, number) in program.numbers.iter().enumerate() {
                let e164 = PhoneNumber::parse(number)
                    .map_err(|e| bad(format!("programs[{i}].numbers[{j}]"), format!("{number:?}: {e}")))?;
                if let Some(other) = owners.insert(e164.as_e164().to_owned(), program.id.clone()) {
                    return Err(bad(
                        format!("programs[{i}].numbers[{j}]"),
                        format!("{number:?} already belongs to program {other:?}; a number belongs to one program"),
                    ));
                }
            }
            if program.categories.is_empty() {
                return Err(bad(at("categories"), "a program needs at least one category"));
            }
            for (j, category) in program.categories.iter().enumerate() {
                if category.is_empty() || !category.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    return Err(bad(format!("programs[{i}].categories[{j}]"), "must be letters, digits, '-' or '_'"));
                }
            }
            program.validate_resume_wording().map_err(|(field, message)| bad(at(&field), message))?;
            let templates =
                program.replies.templates(&program.id).map_err(|(field, message)| bad(at(&field), message))?;
            templates.validate(&program.letterhead()).map_err(|(language, kind, e)| {
                let field = match language {
                    Language::En => format!("replies.{}", kind.key()),
                    _ => format!("replies.{}.{}", language.code(), kind.key()),
                };
                bad(at(&field), template_problem(language, kind, templates.get(kind, language), &e))
            })?;
        }
        for (i, principal) in self.iam_principals.iter().enumerate() {
            if !principal.arn.starts_with("arn:aws") || !principal.arn.contains(":iam::") {
                return Err(bad(
                    format!("iam_principals[{i}].arn"),
                    "must be an IAM role or user ARN (arn:aws:iam::<account>:role/<name>)",
                ));
            }
            if principal.scopes.is_empty() {
                return Err(bad(format!("iam_principals[{i}].scopes"), "grant at least one scope"));
            }
        }
        for (i, key) in self.api_keys.iter().enumerate() {
            match (&key.token_sha256, &key.token) {
                (Some(hash), None) => {
                    if hash.len() != 64 || hex::decode(hash).is_err() {
                        return Err(bad(
                            format!("api_keys[{i}].token_sha256"),
                            "must be 64 hex digits (SHA-256 of the key)",
                        ));
                    }
                }
                (None, Some(token)) if !token.expose().is_empty() => {}
                _ => return Err(bad(format!("api_keys[{i}]"), "set exactly one of token_sha256 or token")),
            }
            if key.scopes.is_empty() {
                return Err(bad(format!("api_keys[{i}].scopes"), "grant at least one scope"));
            }
        }
        Ok(())
    }

    fn validate_backends(&self) -> Result<(), ConfigError> {
        let url_ok =
            |u: &Option<String>| u.as_deref().is_none_or(|u| u.starts_with("http://") || u.starts_with("https://"));
        if !url_ok(&self.storage.endpoint_url) {
            return Err(bad("storage.endpoint_url", "must be an http(s) URL"));
        }
        if !url_ok(&self.keys.endpoint_url) {
            return Err(bad("keys.endpoint_url", "must be an http(s) URL"));
        }
        if self.storage.backend == StorageBackend::Dynamodb {
            let table = self.storage.table.as_deref().unwrap_or("");
            if !(3..=255).contains(&table.len())
                || !table.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                return Err(bad(
                    "storage.table",
                    "the dynamodb backend needs a table name (3-255 of letters, digits, '_', '.', '-')",
                ));
            }
        }
        if self.keys.backend == KeysBackend::Kms {
            let key = self.keys.key_id.as_deref().unwrap_or("");
            if !(key.starts_with("arn:aws")
                || key.starts_with("alias/")
                || (key.len() == 36 && key.chars().all(|c| c.is_ascii_hexdigit() || c == '-')))
            {
                return Err(bad("keys.key_id", "the kms backend needs a key ARN, key id or alias/<name>"));
            }
        }
        Ok(())
    }

    /// Builds every configured provider, once per process: a key or secret
    /// that does not decode is named here (`providers.telnyx.public_keys[0]`).
    pub fn providers(&self, sns_network: Arc<dyn SnsNetwork>) -> Result<Vec<Arc<dyn Provider>>, ConfigError> {
        providers::build_all(&self.providers, &Outside { sns_network }).map_err(|e| bad(e.field, e.message))
    }

    /// Every configured program, for the service.
    pub fn programs(&self) -> Programs {
        Programs::new(self.programs.iter().map(ProgramConfig::program))
    }

    pub fn program(&self, id: &str) -> Option<&ProgramConfig> {
        self.programs.iter().find(|p| p.id == id)
    }
}

/// Names the TOML table and key around a byte offset, for error messages.
fn locate(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    // Headers up to and including the line the error points at.
    let line_end = text[before.len()..].find('\n').map_or(text.len(), |i| before.len() + i);
    let mut table = String::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in text[..line_end].lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let n = counts.entry(name.to_owned()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name.to_owned();
        }
    }
    let line = text[before.rfind('\n').map(|i| i + 1).unwrap_or(0)..].lines().next().unwrap_or("");
    let key = line.split('=').next().map(str::trim).filter(|k| !k.is_empty() && !k.starts_with('['));
    match (table.is_empty(), key) {
        (true, Some(key)) => key.to_owned(),
        (false, Some(key)) => format!("{table}.{key}"),
        (false, None) => table,
        (true, None) => format!("line {}", before.lines().count().max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
public_base_url = "https://consent.example.org"

[[programs]]
id = "lakeside"
name = "Lakeside Reminders"
organization = "Lakeside Family Clinic"
numbers = ["+14155550100"]
help_contact = "555-0100"
frequency = "Msg frequency varies"
categories = ["appointment_reminders", "billing"]

[providers.twilio]
auth_tokens = ["abc"]

[[api_keys]]
token_sha256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
scopes = ["authorize"]
"#;

    #[test]
    fn a_complete_config_loads() {
        let config = Config::from_toml(GOOD).unwrap();
        assert_eq!(config.server.listen, DEFAULT_LISTEN);
        assert_eq!(config.programs[0].default, DefaultConsent::NoConsent);
        assert_eq!(config.programs[0].send_rules, DEFAULT_RULES, "quiet hours and state rules unless it says");
        let off = Config::from_toml(&GOOD.replace("categories = [", "send_rules = []\ncategories = [")).unwrap();
        assert!(off.programs[0].send_rules.is_empty(), "[] turns them off");
        assert_eq!(config.retention.events_years, None, "events are kept for ever unless it says");
        let kept = Config::from_toml(&format!("{GOOD}\n[retention]\nevents_years = 7\n")).unwrap();
        assert_eq!(kept.retention.events_years, Some(7));
        let audit = Config::from_toml(&GOOD.replace("scopes = [\"authorize\"]", "scopes = [\"audit\"]")).unwrap();
        assert_eq!(audit.api_keys[0].scopes, [ApiScope::Audit]);
    }

    #[test]
    fn errors_name_the_bad_field() {
        let cases = [
            (GOOD.replace("+14155550100", "555-0100"), "programs[0].numbers[0]"),
            (
                GOOD.replace("categories = [\"appointment_reminders\", \"billing\"]", "categories = []"),
                "programs[0].categories",
            ),
            (GOOD.replace("scopes = [\"authorize\"]", "scopes = [\"everything\"]"), "api_keys[0].scopes"),
            (GOOD.replace("2c26b4", "zz26b4"), "api_keys[0].token_sha256"),
            (
                GOOD.replace(
                    "frequency = \"Msg frequency varies\"",
                    "frequency = \"Msg frequency varies\"\nreplies = { help = \"Hi {patient}\" }",
                ),
                "programs[0].replies.help",
            ),
            (GOOD.replace("[server]", "[server]\nlisten = \"everywhere\""), "server.listen"),
            (GOOD.replace("[server]", "[server]\nsurprise = 1"), "server.surprise"),
            (format!("{GOOD}\n[retention]\nevents_years = 0\n"), "retention.events_years"),
            (format!("{GOOD}\n[retention]\nevent_years = 7\n"), "retention.event_years"),
            (
                GOOD.replace(
                    "frequency = \"Msg frequency varies\"",
                    "frequency = \"Msg frequency varies\"\nsend_rules = [\"quiet_hours\", \"quiet_time\"]",
                ),
                "programs[0].send_rules",
            ),
            (GOOD.replace("[server]", "[outbox]\nmax_attempts = 0\n[server]"), "outbox.max_attempts"),
        ];
        for (text, field) in cases {
            let err = Config::from_toml(&text).unwrap_err();
            assert!(err.field.starts_with(field), "want {field}, got {err}");
        }
    }

    #[test]
    fn a_number_in_two_programs_is_refused() {
        let two = format!(
            "{GOOD}\n{}",
            &GOOD[GOOD.find("[[programs]]").unwrap()..GOOD.find("[providers").unwrap()].replace("lakeside", "other")
        );
        let err = Config::from_toml(&two).unwrap_err();
        assert_eq!(err.field, "programs[1].numbers[0]");
    }

    /// GOOD with `keys` added to its program and `tables` after it.
    fn with(keys: &str, tables: &str) -> Result<Config, ConfigError> {
        build(GOOD, keys, tables)
    }

    /// As `with`, for a program named "Lakeside": UCS-2 replies (70 code
    /// units) leave room for a short name only.
    fn short(tables: &str) -> Result<Config, ConfigError> {
        build(&GOOD.replace("Lakeside Reminders", "Lakeside"), "", tables)
    }

    fn build(base: &str, keys: &str, tables: &str) -> Result<Config, ConfigError> {
        let text = base
            .replace("frequency = \"Msg frequency varies\"", &format!("frequency = \"Msg frequency varies\"\n{keys}"))
            .replace("[providers.twilio]", &format!("{tables}\n[providers.twilio]"));
        Config::from_toml(&text)
    }

    const VIETNAMESE: &str = r#"
[programs.replies.vi]
opt_out = "{program}: Đã hủy đăng ký. Nhắn START để đăng ký lại."
opt_in = "{program}: Đăng ký lại. {frequency}. HELP: trợ giúp. STOP: hủy."
help = "{program}: {help_contact}. {frequency}. Nhắn STOP để hủy."
frequency = "Tần suất thay đổi"
"#;

    #[test]
    fn programs_answer_in_english_and_spanish_by_default() {
        let config = with("", "").unwrap();
        let program = config.programs().get("lakeside").unwrap().clone();
        assert_eq!(program.replies.languages().collect::<Vec<_>>(), [Language::En, Language::Es]);
        assert_eq!(program.replies, ReplyTemplates::default());
        assert!(program.reply(ReplyKind::OptOut, Language::Es).starts_with("Lakeside Reminders: Se ha dado de baja"));
        assert_eq!(program.reply(ReplyKind::Help, Language::Fr), program.reply(ReplyKind::Help, Language::En));
    }

    #[test]
    fn a_spanish_table_replaces_only_the_replies_it_names() {
        let mine = "{program}: Listo, ya no le escribiremos. Responda START o VOLVER para recibir mensajes de nuevo.";
        let config = with("", &format!("[programs.replies.es]\nopt_out = \"{mine}\"")).unwrap();
        let program = config.programs().get("lakeside").unwrap().clone();
        assert_eq!(program.reply(ReplyKind::OptOut, Language::Es), mine.replace("{program}", "Lakeside Reminders"));
        let shipped = ReplyTemplates::default();
        let lh = program.letterhead.clone();
        assert_eq!(program.reply(ReplyKind::Help, Language::Es), shipped.render(ReplyKind::Help, Language::Es, &lh));
        assert_eq!(
            program.reply(ReplyKind::OptOut, Language::En),
            shipped.render(ReplyKind::OptOut, Language::En, &lh)
        );
        // Today's English keys still replace the English replies.
        let english = with("replies = { opt_out = \"{program}: Bye. Reply START to come back.\" }", "").unwrap();
        let program = english.programs().get("lakeside").unwrap().clone();
        assert_eq!(
            program.reply(ReplyKind::OptOut, Language::En),
            "Lakeside Reminders: Bye. Reply START to come back."
        );
        assert_eq!(program.reply(ReplyKind::OptOut, Language::Ko), program.reply(ReplyKind::OptOut, Language::En));
    }

    #[test]
    fn a_language_without_shipped_templates_gives_all_three() {
        let config = short(VIETNAMESE).unwrap();
        let program = config.programs().get("lakeside").unwrap().clone();
        assert_eq!(program.replies.languages().collect::<Vec<_>>(), [Language::En, Language::Es, Language::Vi]);
        assert!(program.reply(ReplyKind::OptIn, Language::Vi).contains("Tần suất thay đổi"));
        let err = short(&VIETNAMESE.replace("help = ", "# help = ")).unwrap_err();
        assert_eq!(err.field, "programs[0].replies.vi.help");
        assert!(err.message.contains("give all three") && err.message.contains("\"lakeside\""), "{err}");
        // One code unit past a UCS-2 segment names the encoding and the numbers.
        let long = VIETNAMESE.replace("Nhắn STOP để hủy.", "Nhắn STOP để hủy. Cảm ơn bạn đã dùng dịch vụ!");
        let err = short(&long).unwrap_err();
        assert_eq!(err.field, "programs[0].replies.vi.help");
        assert!(err.message.contains("UCS-2") && err.message.contains("one UCS-2 segment holds 70"), "{err}");
    }

    #[test]
    fn unknown_languages_and_keys_under_replies_are_refused_by_name() {
        let cases = [
            ("[programs.replies.xx]\nopt_out = \"{program}: Reply START\"", "programs[0].replies.xx", "\"xx\""),
            ("[programs.replies.ES]\nopt_out = \"{program}: Reply START\"", "programs[0].replies.ES", "\"ES\""),
            ("[programs.replies]\nhelpp = \"{program}\"", "programs[0].replies.helpp", "\"helpp\""),
            ("[programs.replies.es]\nstop = \"{program}\"", "programs[0].replies.es.stop", "\"stop\""),
            ("[programs.replies]\nfrequency = \"often\"", "programs[0].replies.frequency", "\"frequency\""),
            ("[programs.replies]\nopt_out = 3", "programs[0].replies.opt_out", "string"),
            ("[programs.replies]\nes = true", "programs[0].replies.es", "table"),
            ("[programs.replies]\nen = false", "programs[0].replies.en", "English"),
            (
                "[programs.replies]\nopt_out = \"{program}: Reply START\"\n[programs.replies.en]\nopt_out = \"{program}: START\"",
                "programs[0].replies.opt_out",
                "[programs.replies.en]",
            ),
        ];
        for (tables, field, says) in cases {
            let err = with("", tables).unwrap_err();
            assert_eq!(err.field, field, "{tables}: {err}");
            assert!(err.message.contains(says) && err.message.contains("\"lakeside\""), "{err}");
        }
    }

    #[test]
    fn a_reply_without_its_keyword_instruction_is_refused_in_each_language() {
        let es = "[programs.replies.es]\nopt_out = \"{program}: Se ha dado de baja.\"";
        assert_eq!(with("", es).unwrap_err().field, "programs[0].replies.es.opt_out");
        let vi = VIETNAMESE.replace("Nhắn START để đăng ký lại.", "Nhắn để đăng ký lại.");
        let err = short(&vi).unwrap_err();
        assert_eq!(err.field, "programs[0].replies.vi.opt_out");
        assert!(err.message.contains("say how to resubscribe"), "{err}");
    }

    #[test]
    fn a_name_too_long_for_the_shipped_spanish_says_what_to_do() {
        // Fits every English reply (49 characters to spare), not the Spanish opt-in.
        let name = "Lakeside Family Clinic Appointment Reminder";
        let long = GOOD.replace("Lakeside Reminders", name);
        let err = Config::from_toml(&long).unwrap_err();
        assert_eq!(err.field, "programs[0].replies.es.opt_in");
        assert!(
            err.message.contains("GSM-7")
                && err.message.contains("[programs.replies.es]")
                && err.message.contains("es = false"),
            "{err}"
        );
        // Saying so answers Spanish in English.
        let english_only = long.replace("[providers.twilio]", "[programs.replies]\nes = false\n\n[providers.twilio]");
        let config = Config::from_toml(&english_only).unwrap();
        let program = config.programs().get("lakeside").unwrap().clone();
        assert_eq!(program.replies.languages().collect::<Vec<_>>(), [Language::En]);
        assert!(program.reply(ReplyKind::OptOut, Language::Es).contains("You are unsubscribed"));
    }

    #[test]
    fn preferences_default_on_for_30_days_and_bad_settings_are_refused_by_name() {
        let config = Config::from_toml(GOOD).unwrap();
        assert!(config.preferences.enabled);
        assert_eq!((config.preferences.link_ttl_days, config.preferences.public_base_url), (30, None));
        for (section, field) in [
            ("link_ttl_days = 0", "preferences.link_ttl_days"),
            ("link_ttl_days = 366", "preferences.link_ttl_days"),
            ("submissions_per_minute = 0", "preferences.submissions_per_minute"),
            ("public_base_url = \"msg.clinic.example\"", "preferences.public_base_url"),
            ("public_base_url = \"https://msg.clinic.example/?a=b\"", "preferences.public_base_url"),
            ("public_base_url = \"http://msg.clinic.example\"", "preferences.public_base_url"),
            ("public_base_url = \"http://localhost.example.com\"", "preferences.public_base_url"),
        ] {
            let err = Config::from_toml(&format!("{GOOD}\n[preferences]\n{section}\n")).unwrap_err();
            assert_eq!(err.field, field, "{section}: {err}");
        }
        for local in ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:9000/base"] {
            let config = Config::from_toml(&format!("{GOOD}\n[preferences]\npublic_base_url = \"{local}\"\n"));
            assert!(config.is_ok(), "{local}: plain http to this machine is for local testing");
        }
        let off = Config::from_toml(&format!("{GOOD}\n[preferences]\nenabled = false\nlink_ttl_days = 7\n")).unwrap();
        assert!(!off.preferences.enabled && off.preferences.link_ttl_days == 7);
    }

    #[test]
    fn resume_wording_is_filled_in_per_language_and_checked() {
        let config = with("resume_wording = \"Text me {program} from {organization} again.\"", "").unwrap();
        let program = &config.programs[0];
        assert_eq!(
            program.resume_wording(Language::En),
            "Text me Lakeside Reminders from Lakeside Family Clinic again."
        );
        assert!(program.resume_wording(Language::Es).starts_with("Al elegir Reanudar"), "the default in Spanish");
        let both = with("resume_wording = { en = \"Yes {program}\", es = \"Sí {program}\" }", "").unwrap();
        assert_eq!(both.programs[0].resume_wording(Language::Es), "Sí Lakeside Reminders");
        let default = Config::from_toml(GOOD).unwrap();
        assert!(default.programs[0].resume_wording(Language::En).contains("Lakeside Reminders text messages"));
        for (keys, field) in [
            ("resume_wording = \" \"", "programs[0].resume_wording"),
            ("resume_wording = { es = \"Sí\" }", "programs[0].resume_wording"),
            ("resume_wording = { en = \"Yes\", fr = \"Oui\" }", "programs[0].resume_wording.fr"),
            ("resume_wording = { en = \"\" }", "programs[0].resume_wording.en"),
        ] {
            assert_eq!(with(keys, "").unwrap_err().field, field, "{keys}");
        }
        let long = format!("resume_wording = \"{}\"", "a".repeat(MAX_RESUME_WORDING + 1));
        assert!(with(&long, "").unwrap_err().message.contains("at most"));
    }

    #[test]
    fn unclear_is_deny_unless_the_program_says_allow() {
        assert_eq!(with("", "").unwrap().programs().get("lakeside").unwrap().unclear, UnclearPolicy::Deny);
        assert_eq!(with("unclear = \"deny\"", "").unwrap().programs[0].unclear, UnclearPolicy::Deny);
        let allow = with("unclear = \"allow\"", "").unwrap();
        assert_eq!(allow.programs().get("lakeside").unwrap().unclear, UnclearPolicy::Allow);
        for bad in ["\"maybe\"", "\"Deny\"", "true"] {
            let err = with(&format!("unclear = {bad}"), "").unwrap_err();
            assert_eq!(err.field, "programs[0].unclear", "{bad}: {err}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let config = Config::from_toml(GOOD).unwrap();
        assert!(!format!("{config:?}").contains("\"abc\""));
    }
}

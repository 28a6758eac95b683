//! One module per SMS provider, each exposing one type built once from its
//! config section (keys and secrets decoded there, so a bad one stops the
//! start with its field named) that implements [`Provider`]: verify a
//! request exactly as that provider signs it, read it into the domain's
//! `InboundMessage`, and answer in the provider's own format. This layer
//! imports only `domain`; the clock, the secrets and the network (SNS) are
//! handed in. The registration table is at the end of this file.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, Method};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use time::OffsetDateTime;

pub use crate::domain::inbound::{InboundMessage, ProviderBlock, ReplyStyle};
use crate::domain::PhoneNumber;
pub use secret::Secret;
pub use send::{OutboundMessage, SendError, Sent};

pub mod aws_sns;
pub mod bandwidth;
pub mod bird;
pub mod plivo;
mod secret;
pub mod send;
pub mod sinch;
pub mod standard_webhooks;
pub mod telnyx;
pub mod twilio;
pub mod vonage;

/// How far a signed timestamp may be from now, either way, for every scheme
/// that has one (Vonage's SMS API allows more into the past: see there).
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// A provider, as the webhook route sees it: built once at start from its
/// config section by [`Configured::from_config`], then shared by every
/// request.
///
/// Outbound, `send` delivers a reply through the provider's own API when
/// its `[providers.<section>.send]` table is configured (see `send`).
#[async_trait]
pub trait Provider: Send + Sync {
    /// Its route and reply style.
    fn profile(&self) -> Profile;

    /// The route name: the provider is served at `/webhooks/<name>`.
    fn name(&self) -> &'static str {
        self.profile().name
    }

    /// The HTTP methods its webhook arrives with.
    fn methods(&self) -> &'static [Method] {
        self.profile().methods
    }

    /// Whether its answer can carry the confirmation, and what its own
    /// auto-responder answers.
    fn reply_style(&self) -> ReplyStyle {
        self.profile().reply_style
    }

    /// Verifies the request (signature, freshness, credentials) and reads
    /// it. Nothing is read from a request that does not verify.
    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection>;

    /// The webhook's answer once the delivery is durably recorded: a JSON
    /// acknowledgement unless the provider takes its reply inline.
    fn answer(&self, outcome: &Outcome<'_>) -> Answer {
        Answer::json(outcome)
    }

    /// Whether it can send through its own API (its `send` table is set).
    fn sends(&self) -> bool {
        false
    }

    /// Sends one message through the provider's API and reads its answer:
    /// its message id, or why not (`SendError`: temporary, refused, or the
    /// provider's opt-out code).
    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        let _ = message;
        Err(SendError::NotConfigured("the provider has no send table"))
    }
}

/// What is known of a provider before any request.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// The route name: `/webhooks/<name>`.
    pub name: &'static str,
    /// The HTTP methods its webhook arrives with.
    pub methods: &'static [Method],
    pub reply_style: ReplyStyle,
}

/// How a provider is built from its `[providers.<section>]`.
pub trait Configured: Provider + Sized + 'static {
    type Config: serde::de::DeserializeOwned + Clone + std::fmt::Debug;

    /// Decodes and checks every key and secret; an error names the field
    /// within the section (`public_keys[0]`).
    fn from_config(config: &Self::Config, outside: &Outside) -> Result<Self, ProviderConfigError>;
}

/// What providers reach beyond the request: SNS fetches certificates and
/// confirms subscriptions.
#[derive(Clone)]
pub struct Outside {
    pub sns_network: Arc<dyn aws_sns::SnsNetwork>,
}

pub const POST: &[Method] = &[Method::POST];
pub const GET_AND_POST: &[Method] = &[Method::GET, Method::POST];

/// A webhook request as the provider sent it.
pub struct WebhookRequest<'a> {
    pub method: &'a str,
    /// The URL the provider called and signed: `public_base_url` + path +
    /// query, never the Host header.
    pub url: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub now: OffsetDateTime,
}

impl WebhookRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The query string of the signed URL, if any.
    pub fn query(&self) -> &str {
        self.url.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or(q)).unwrap_or("")
    }

    /// The query's parameters, decoded.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_pairs(self.query().as_bytes())
    }
}

/// What a verified request turned out to be.
#[derive(Debug)]
pub enum Received {
    Message(InboundMessage),
    /// A callback carrying several events (Bandwidth batches them): each
    /// message is recorded under its own message id, and each opt-out the
    /// provider reports under the id of the message it refused.
    Batch {
        messages: Vec<InboundMessage>,
        opt_outs: Vec<ProviderBlock>,
    },
    /// A delivery-status callback or other event with no patient text:
    /// acknowledged, nothing recorded.
    Ignored(&'static str),
    /// An SNS subscription for an allowed topic, now confirmed.
    SubscriptionConfirmed,
    /// A status callback or delivery receipt carrying the provider's
    /// opt-out or block code: the number is recorded as opted out.
    ProviderOptOut(ProviderBlock),
}

impl Received {
    /// The messages and provider opt-outs to record, in order; none for the
    /// other kinds.
    pub fn into_events(self) -> (Vec<InboundMessage>, Vec<ProviderBlock>) {
        match self {
            Received::Message(message) => (vec![message], Vec::new()),
            Received::ProviderOptOut(block) => (Vec::new(), vec![block]),
            Received::Batch { messages, opt_outs } => (messages, opt_outs),
            Received::Ignored(_) | Received::SubscriptionConfirmed => (Vec::new(), Vec::new()),
        }
    }
}

/// What the ledger made of a delivery, for the provider's answer.
#[derive(Debug, serde::Serialize)]
pub struct Outcome<'a> {
    /// `recorded`, `recorded_reply_queued`, `duplicate`, `ignored` or
    /// `subscription_confirmed`.
    pub status: &'static str,
    /// The confirmation of a delivery that carried one message, with that
    /// message (Plivo replies from the number it was sent to).
    #[serde(rename = "reply", skip_serializing_if = "Option::is_none", serialize_with = "reply_text")]
    pub reply: Option<(&'a str, &'a InboundMessage)>,
}

fn reply_text<S: serde::Serializer>(reply: &Option<(&str, &InboundMessage)>, s: S) -> Result<S::Ok, S::Error> {
    match reply {
        Some((text, _)) => s.serialize_str(text),
        None => s.serialize_none(),
    }
}

/// A webhook's answer: its body and content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    /// `{"status": ..., "reply": ...}`, `reply` only when there is one.
    pub fn json(outcome: &Outcome<'_>) -> Self {
        let body = serde_json::to_string(outcome).unwrap_or_else(|_| String::from("{}"));
        Answer { content_type: "application/json", body }
    }

    pub fn xml(body: String) -> Self {
        Answer { content_type: "text/xml; charset=utf-8", body }
    }
}

/// Why a provider's request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// An SNS message from a topic config does not list.
    #[error("topic is not on the allow-list")]
    TopicNotAllowed,
    /// The provider's side could not be reached (a certificate, a
    /// subscription confirmation): the provider should retry.
    #[error("{0}")]
    Upstream(String),
}

/// A provider section that cannot be used, naming the field within it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ProviderConfigError {
    /// Within the section (`public_keys[0]`), or empty for the section.
    pub field: String,
    pub message: String,
}

pub(crate) fn bad(field: impl Into<String>, message: impl Into<String>) -> ProviderConfigError {
    ProviderConfigError { field: field.into(), message: message.into() }
}

/// At least one entry.
pub(crate) fn non_empty<T>(list: &[T], field: &str) -> Result<(), ProviderConfigError> {
    if list.is_empty() {
        Err(bad(field, "needs at least one entry"))
    } else {
        Ok(())
    }
}

/// At least one secret, none empty.
pub(crate) fn secrets(list: &[Secret], field: &str) -> Result<(), ProviderConfigError> {
    non_empty(list, field)?;
    match list.iter().position(|s| s.expose().is_empty()) {
        Some(j) => Err(bad(format!("{field}[{j}]"), "must not be empty")),
        None => Ok(()),
    }
}

/// Checks a unix-seconds timestamp against the window: at most `past`
/// seconds old, at most `TOLERANCE_SECONDS` ahead.
pub(crate) fn within_window(seconds: i64, now: OffsetDateTime, past: i64) -> Result<(), SignatureError> {
    let now = now.unix_timestamp();
    if seconds < now - past {
        return Err(SignatureError::TimestampTooOld);
    }
    if seconds > now + TOLERANCE_SECONDS {
        return Err(SignatureError::FutureTimestamp);
    }
    Ok(())
}

/// Parses a unix-seconds timestamp header and checks it within `past`
/// seconds back and `TOLERANCE_SECONDS` ahead.
pub(crate) fn check_window(
    value: &str,
    header: &'static str,
    now: OffsetDateTime,
    past: i64,
) -> Result<i64, SignatureError> {
    let seconds: i64 = value.trim().parse().map_err(|_| SignatureError::MalformedHeader(header))?;
    within_window(seconds, now, past)?;
    Ok(seconds)
}

/// Checks a unix-seconds timestamp header against the tolerance.
pub(crate) fn check_timestamp(value: &str, header: &'static str, now: OffsetDateTime) -> Result<i64, SignatureError> {
    check_window(value, header, now, TOLERANCE_SECONDS)
}

/// Decodes an HMAC-signed JWT with the first key that verifies it, allowing
/// only `algorithms` (never `none`, never a public-key one). Registered
/// claims are left to the caller, which knows what its provider puts there.
pub(crate) fn decode_hmac_jwt<C: serde::de::DeserializeOwned>(
    token: &str,
    keys: &[Secret],
    algorithms: &[Algorithm],
) -> Result<C, SignatureError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = algorithms.to_vec();
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    keys.iter()
        .find_map(|k| {
            jsonwebtoken::decode::<C>(token, &DecodingKey::from_secret(k.expose().as_bytes()), &validation).ok()
        })
        .map(|data| data.claims)
        .ok_or(SignatureError::InvalidSignature)
}

/// The credentials after `<scheme> ` in an `Authorization` value (`Bearer`,
/// `Basic`; the scheme capitalised or lower-case), trimmed.
pub fn authorization<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, credentials) = value.split_once(' ')?;
    (given == scheme || given == scheme.to_ascii_lowercase()).then_some(credentials.trim())
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(value: &str) -> Option<&str> {
    authorization(value, "Bearer")
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes.as_ref()))
}

/// Decoded `key=value` pairs of a form body or a query string, in order.
pub fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

/// The same pairs, borrowed from `bytes` where nothing needed decoding (most
/// of a form's keys and values): a pair without `+` or `%` (found with
/// `memchr`'s vector search) is split in place, the others are decoded by
/// `form_urlencoded`. Exactly `form_urlencoded::parse`'s pairs (a proptest
/// compares them on any bytes), at about half its time on a Twilio form.
pub fn form_fields(bytes: &[u8]) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    let mut start = 0;
    let ends = memchr::memchr_iter(b'&', bytes).chain([bytes.len()]);
    ends.filter_map(|end| {
        let pair = &bytes[start..end];
        start = end + 1;
        match std::str::from_utf8(pair) {
            _ if pair.is_empty() => None,
            Ok(text) if memchr::memchr2(b'+', b'%', pair).is_none() => {
                let (key, value) = text.split_once('=').unwrap_or((text, ""));
                Some((Cow::Borrowed(key), Cow::Borrowed(value)))
            }
            _ => form_urlencoded::parse(pair).next(),
        }
    })
    .collect()
}

/// The first value of `name` in decoded pairs.
pub(crate) fn param<'a, K: AsRef<str>, V: AsRef<str>>(params: &'a [(K, V)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k.as_ref() == name).map(|(_, v)| v.as_ref())
}

/// Text for an XML element or attribute: the runs between the five special
/// characters copied whole.
pub(crate) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&apos;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out
}

pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(body).map_err(|e| PayloadError(format!("body is not the expected JSON: {e}")))
}

/// The years an event time may fall in, in UTC. A provider's payload time
/// outside them is refused with a 400 before it reaches the ledger (whose
/// records carry RFC 3339 times, which cannot hold other years).
pub const EVENT_YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// Refuses an event time outside `EVENT_YEARS` (taken in UTC): every time a
/// provider's payload carries goes through here.
pub(crate) fn event_time(at: OffsetDateTime, field: &str) -> Result<OffsetDateTime, PayloadError> {
    // `checked_`: converting a time at the edge of the representable range
    // to UTC would otherwise panic.
    match at.checked_to_offset(time::UtcOffset::UTC) {
        Some(utc) if EVENT_YEARS.contains(&utc.year()) => Ok(utc),
        _ => Err(PayloadError(format!(
            "{field}: the time must fall between the years {} and {}",
            EVENT_YEARS.start(),
            EVENT_YEARS.end()
        ))),
    }
}

pub(crate) fn parse_rfc3339(value: &str, field: &str) -> Result<OffsetDateTime, PayloadError> {
    let at = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| PayloadError(format!("{field}: not an RFC 3339 time")))?;
    event_time(at, field)
}

/// Why a request was not accepted as coming from the provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    #[error("signature does not match")]
    InvalidSignature,
    #[error("timestamp is too old")]
    TimestampTooOld,
    #[error("timestamp is in the future")]
    FutureTimestamp,
    #[error("body does not match its signed hash")]
    BodyHashMismatch,
    #[error("token refused: {0}")]
    InvalidToken(&'static str),
    #[error("credentials do not match")]
    InvalidCredentials,
    #[error("signature scheme not accepted: {0}")]
    SchemeDisabled(&'static str),
}

/// A verified request whose content could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

pub(crate) fn required<'a>(value: Option<&'a str>, field: &str) -> Result<&'a str, PayloadError> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| PayloadError(format!("missing field {field}")))
}

pub(crate) fn phone(value: &str, field: &str) -> Result<PhoneNumber, PayloadError> {
    PhoneNumber::parse(value).map_err(|e| PayloadError(format!("{field}: {e}")))
}

/// Numbers some providers send without the `+` (`14155550100`).
pub(crate) fn digits_phone(value: &str, field: &str) -> Result<PhoneNumber, PayloadError> {
    PhoneNumber::parse_digits(value).map_err(|e| PayloadError(format!("{field}: {e}")))
}

/// Constant-time equality of two byte strings (length is not secret).
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// The registration table: one line per provider, `<config section>:
/// <module>::<type>`. It declares the `[providers]` config (each section
/// optional) and builds the configured providers in this order.
macro_rules! providers {
    ($($section:ident: $module:ident :: $provider:ident,)*) => {
        /// The `[providers.*]` sections: a provider is served only when its
        /// section is present.
        #[derive(Debug, Clone, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ProvidersConfig {
            $(pub $section: Option<<$module::$provider as Configured>::Config>,)*
        }

        /// Builds every configured provider, once, at start; an error names
        /// the field (`providers.telnyx.public_keys[0]`).
        pub fn build_all(
            config: &ProvidersConfig,
            outside: &Outside,
        ) -> Result<Vec<Arc<dyn Provider>>, ProviderConfigError> {
            let mut built: Vec<Arc<dyn Provider>> = Vec::new();
            $(if let Some(section) = &config.$section {
                let provider = $module::$provider::from_config(section, outside)
                    .map_err(|e| within(stringify!($section), e))?;
                built.push(Arc::new(provider));
            })*
            Ok(built)
        }
    };
}

providers! {
    twilio: twilio::Twilio,
    standard_webhooks: standard_webhooks::StandardWebhooks,
    telnyx: telnyx::Telnyx,
    plivo: plivo::Plivo,
    vonage: vonage::Vonage,
    sinch: sinch::Sinch,
    bandwidth: bandwidth::Bandwidth,
    bird: bird::Bird,
    aws_sns: aws_sns::AwsSns,
}

/// Names the field from the top of the config file.
fn within(section: &str, e: ProviderConfigError) -> ProviderConfigError {
    let field = match e.field.as_str() {
        "" => format!("providers.{section}"),
        field => format!("providers.{section}.{field}"),
    };
    ProviderConfigError { field, message: e.message }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every provider's section, valid.
    pub(crate) const ALL_NINE: &str = r#"
[twilio]
auth_tokens = ["t"]
[standard_webhooks]
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
[telnyx]
public_keys = ["jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs="]
[plivo]
auth_tokens = ["t"]
[vonage]
signature_secrets = ["s"]
[sinch]
secrets = ["s"]
[bandwidth]
credentials = [{ username = "u", password = "p" }]
[bird]
signing_keys = ["k"]
[aws_sns]
topic_arns = ["arn:aws:sns:us-east-1:123456789012:inbound"]
"#;

    pub(crate) fn outside() -> Outside {
        Outside { sns_network: Arc::new(aws_sns::HttpSnsNetwork::new()) }
    }

    /// Builds one provider from a TOML section, as the table does.
    pub(crate) fn build<P: Configured>(section: &str) -> Result<P, ProviderConfigError> {
        P::from_config(&toml::from_str(section).expect("section parses"), &outside())
    }

    #[test]
    fn the_table_builds_all_nine_providers_with_their_routes_and_methods() {
        let config: ProvidersConfig = toml::from_str(ALL_NINE).unwrap();
        let built = build_all(&config, &outside()).unwrap();
        let routes: Vec<(&str, &[Method])> = built.iter().map(|p| (p.name(), p.methods())).collect();
        assert_eq!(
            routes,
            [
                ("twilio", POST),
                ("standard-webhooks", POST),
                ("telnyx", POST),
                ("plivo", GET_AND_POST),
                ("vonage", GET_AND_POST),
                ("sinch", POST),
                ("bandwidth", POST),
                ("bird", GET_AND_POST),
                ("aws-sns", POST),
            ]
        );
        assert!(build_all(&ProvidersConfig::default(), &outside()).unwrap().is_empty(), "none configured, no route");
    }

    #[test]
    fn a_bad_section_is_named_from_the_top_of_the_file() {
        let config: ProvidersConfig =
            toml::from_str(&ALL_NINE.replace("jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs=", "not a key")).unwrap();
        let error = build_all(&config, &outside()).err().unwrap();
        assert_eq!(error.field, "providers.telnyx.public_keys[0]");
        let config: ProvidersConfig = toml::from_str("[vonage]\napi_key = \"k\"").unwrap();
        assert_eq!(build_all(&config, &outside()).err().unwrap().field, "providers.vonage");
    }

    #[test]
    fn shared_helpers_parse_authorization_and_windows() {
        assert_eq!(bearer("Bearer  abc "), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(authorization("Basic dTpw", "Basic"), Some("dTpw"));
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        assert_eq!(check_timestamp("1000300", "t", now), Ok(1_000_300));
        assert_eq!(check_timestamp("1000301", "t", now), Err(SignatureError::FutureTimestamp));
        assert_eq!(check_timestamp("999699", "t", now), Err(SignatureError::TimestampTooOld));
        assert_eq!(check_window("990000", "t", now, 86_400), Ok(990_000));
        assert_eq!(check_timestamp("soon", "t", now), Err(SignatureError::MalformedHeader("t")));
        assert_eq!(xml_escape("<a & 'b'>"), "&lt;a &amp; &apos;b&apos;&gt;");
    }

    #[test]
    fn event_times_outside_1970_to_9999_are_refused() {
        assert!(parse_rfc3339("2026-01-01T00:00:00Z", "t").is_ok());
        assert!(parse_rfc3339("1970-01-01T00:00:00Z", "t").is_ok());
        assert!(parse_rfc3339("9999-12-31T23:59:59Z", "t").is_ok());
        for bad in
            ["1969-12-31T23:59:59Z", "0000-01-01T00:00:00Z", "0000-01-01T00:00:00+23:59", "1970-01-01T00:30:00+01:00"]
        {
            assert!(parse_rfc3339(bad, "t").is_err(), "{bad}");
        }
        assert!(parse_rfc3339("9999-12-31T23:59:59-01:00", "t").is_err(), "year 10000 in UTC");
    }

    proptest::proptest! {
        /// `form_fields` takes a shortcut for pairs with nothing to decode:
        /// on any bytes, and on form-like text, it answers what the crate does.
        #[test]
        fn form_fields_are_the_crates_pairs(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            form in "([a-zA-Z0-9+%=&._~-]|%[0-9A-Fa-f]{2}|%[2-7][0-9A-F]){0,40}",
            utf8 in "[a-z=&éü😀]{0,20}",
        ) {
            for input in [&bytes[..], form.as_bytes(), utf8.as_bytes()] {
                let ours = form_fields(input);
                let theirs: Vec<_> = form_urlencoded::parse(input).collect();
                proptest::prop_assert_eq!(ours, theirs);
            }
        }

        /// The run-copying escape answers what escaping each character would.
        #[test]
        fn xml_escape_escapes_each_special_character(text in "[a-z &<>\"'é😀]{0,40}") {
            let each: String = text
                .chars()
                .map(|c| match c {
                    '&' => "&amp;".to_owned(),
                    '<' => "&lt;".to_owned(),
                    '>' => "&gt;".to_owned(),
                    '"' => "&quot;".to_owned(),
                    '\'' => "&apos;".to_owned(),
                    c => c.to_string(),
                })
                .collect();
            proptest::prop_assert_eq!(xml_escape(&text), each);
        }
    }
}

//! One module per SMS provider. Each verifies a request exactly as that
//! provider signs it, parses it into the common `InboundMessage`, and renders
//! replies in the provider's own format. No I/O here: the clock and secrets
//! are passed in.

use http::HeaderMap;
use time::OffsetDateTime;

use crate::domain::PhoneNumber;

pub mod aws_sns;
pub mod bandwidth;
pub mod bird;
pub mod plivo;
pub mod sinch;
pub mod standard_webhooks;
pub mod telnyx;
pub mod twilio;
pub mod vonage;

/// How far a signed timestamp may be from now, either way, for every scheme
/// that has one and does not define its own.
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 5 * 60;

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
}

/// Why a provider's request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// What the system knows about a provider's replies.
#[derive(Debug, Clone, Copy)]
pub struct ReplyStyle {
    /// The webhook's answer can carry the confirmation (TwiML, Plivo XML,
    /// a JSON `reply`); otherwise it goes to the outbox.
    pub inline: bool,
    /// Exactly what the provider's own auto-responder answers, for programs
    /// with `reply_mode = "provider"`.
    pub auto_reply_keywords: &'static [&'static str],
}

/// Checks a unix-seconds timestamp header against the tolerance.
pub(crate) fn check_timestamp(value: &str, header: &'static str, now: OffsetDateTime) -> Result<i64, SignatureError> {
    let seconds: i64 = value.trim().parse().map_err(|_| SignatureError::MalformedHeader(header))?;
    let now = now.unix_timestamp();
    if seconds < now - TIMESTAMP_TOLERANCE_SECONDS {
        return Err(SignatureError::TimestampTooOld);
    }
    if seconds > now + TIMESTAMP_TOLERANCE_SECONDS {
        return Err(SignatureError::FutureTimestamp);
    }
    Ok(seconds)
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

/// A message from a patient, as every provider reduces to it.
#[derive(Clone)]
pub struct InboundMessage {
    /// Route name of the provider (`twilio`, `standard-webhooks`, ...).
    pub provider: &'static str,
    /// The provider's own id for the message: the event's identity.
    pub message_id: String,
    pub from: PhoneNumber,
    /// The clinic number it was sent to; `None` when the provider names only
    /// a channel or app (a STOP then counts for every program).
    pub to: Option<PhoneNumber>,
    pub text: String,
    /// The provider's timestamp, when its payload has one.
    pub occurred_at: Option<OffsetDateTime>,
    /// A second identity the delivery must be new under, for schemes whose
    /// signature covers only part of the request (Plivo V2 signs the URL and
    /// a nonce, not the body): `plivo-v2-nonce:<nonce>`, so one signed nonce
    /// is accepted once. `None` for every other scheme.
    pub replay_key: Option<String>,
}

/// Never prints the numbers or the text.
impl std::fmt::Debug for InboundMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundMessage")
            .field("provider", &self.provider)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

/// What a verified request turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Message(InboundMessage),
    /// A callback carrying several messages (Bandwidth batches its events):
    /// each is recorded under its own message id.
    Messages(Vec<InboundMessage>),
    /// A delivery-status callback or other event with no patient text:
    /// acknowledged, nothing recorded.
    Ignored(&'static str),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

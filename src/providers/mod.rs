//! One module per SMS provider. Each verifies a request exactly as that
//! provider signs it, parses it into the common `InboundMessage`, and renders
//! replies in the provider's own format. No I/O here: the clock and secrets
//! are passed in.

use time::OffsetDateTime;

use crate::domain::PhoneNumber;

pub mod standard_webhooks;
pub mod twilio;

/// A message from a patient, as every provider reduces to it.
#[derive(Clone)]
pub struct InboundMessage {
    /// Route name of the provider (`twilio`, `standard-webhooks`, ...).
    pub provider: &'static str,
    /// The provider's own id for the message: the event's identity.
    pub message_id: String,
    pub from: PhoneNumber,
    pub to: PhoneNumber,
    pub text: String,
    /// The provider's timestamp, when its payload has one.
    pub occurred_at: Option<OffsetDateTime>,
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

/// Constant-time equality of two byte strings (length is not secret).
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

//! A reply on its way out through a provider's own API: what the outbox
//! worker hands a provider and what comes back. The providers implement the
//! sending (`providers::send`); the service decides what to do with the
//! outcome.

use std::time::Duration;

use super::PhoneNumber;

/// A reply to deliver. It holds the numbers, so it never prints.
pub struct OutboundMessage<'a> {
    /// The patient.
    pub to: &'a PhoneNumber,
    /// The clinic number to send from; `None` when the provider named only a
    /// channel or app (a provider that needs a number then refuses).
    pub from: Option<&'a PhoneNumber>,
    /// The rendered reply (templates carry no PHI).
    pub body: &'a str,
    /// Our id for this reply (the event it confirms), unique per reply: an
    /// idempotency key or client reference where the API takes one.
    pub reference: &'a str,
}

/// The provider accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The provider's id of the message, when its answer carries one.
    pub message_id: Option<String>,
}

/// Why a send did not go out. No variant holds a number or the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// 408, 429, 5xx or the network: try again later, not before
    /// `retry_after` when the provider said.
    #[error("temporary failure: {reason}")]
    Temporary { reason: String, retry_after: Option<Duration> },
    /// A refusal that will not change on retry (bad credentials, a number
    /// the provider cannot reach, a malformed request): the reply fails.
    #[error("refused: {reason}")]
    Refused { reason: String },
    /// The provider refused because the recipient opted out or is blocked:
    /// `code` is its own code; the number is recorded as opted out.
    #[error("recipient opted out or blocked ({code}): {reason}")]
    OptedOut { code: String, reason: String },
    /// This provider has no `send` table, or cannot send this message
    /// (no sender number known): the reply waits or fails, by the caller.
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
}

impl SendError {
    pub fn refused(reason: impl Into<String>) -> Self {
        SendError::Refused { reason: reason.into() }
    }
}

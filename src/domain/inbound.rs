//! What a patient's message is once its provider has verified and read it,
//! and what the service needs to know about that provider's replies. The
//! providers produce these; the service consumes them.

use time::OffsetDateTime;

use super::PhoneNumber;

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

/// A provider's word that a number will not take messages: a status
/// callback or delivery receipt carrying its opt-out or block code, or an
/// error answer to one of our sends. It becomes an opt-out event with
/// source `provider_block`.
#[derive(Clone)]
pub struct ProviderBlock {
    /// Route name of the provider (`twilio`, `telnyx`, ...).
    pub provider: String,
    /// The provider's id of the message it could not deliver (a status
    /// callback's message id, or our reply's event id for a send error):
    /// the event's identity, so a repeated callback is applied once.
    pub message_id: String,
    /// The patient the provider will not deliver to.
    pub number: PhoneNumber,
    /// The clinic number the message was sent from, when the provider names
    /// it: the opt-out is then scoped to the program owning it, otherwise to
    /// every program.
    pub clinic: Option<PhoneNumber>,
    /// The provider's own code, as it wrote it (`21610`, `40300`, ...).
    pub code: String,
    /// The provider's timestamp, when its payload has one.
    pub occurred_at: Option<OffsetDateTime>,
}

/// Never prints the numbers.
impl std::fmt::Debug for ProviderBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderBlock")
            .field("provider", &self.provider)
            .field("message_id", &self.message_id)
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

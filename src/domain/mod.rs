//! Pure rules, no I/O: phone numbers, keywords, consent and its merge rule,
//! reply templates, and the sending rules (where a recipient is, their
//! allowed hours, caps on volume).

pub mod consent;
pub mod inbound;
pub mod keywords;
pub mod outbound;
pub mod phone;
pub mod program;
pub mod recipient;
pub mod replies;
pub mod rules;
pub mod volume;
pub mod window;

pub use consent::{Consent, ConsentChange, ConsentState, Decision, DefaultConsent, Mark, Reason, Scope};
pub use inbound::{InboundMessage, ProviderBlock, ReplyStyle};
pub use keywords::Intent;
pub use phone::{PhoneError, PhoneNumber};
pub use program::{Program, Programs, ReplyMode};
pub use replies::{Letterhead, ReplyKind, ReplyTemplates};

/// The name serde gives a unit variant (`rename_all` applied): one source
/// for the strings stored, logged and shown, instead of hand-written maps.
pub fn serde_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

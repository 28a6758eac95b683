//! Pure rules, no I/O: phone numbers, keywords, consent and its merge rule,
//! reply templates.

pub mod consent;
pub mod inbound;
pub mod keywords;
pub mod phone;
pub mod program;
pub mod replies;

pub use consent::{Consent, ConsentChange, ConsentState, Decision, DefaultConsent, Mark, Reason, Scope};
pub use inbound::{InboundMessage, ReplyStyle};
pub use keywords::Intent;
pub use phone::{PhoneError, PhoneNumber};
pub use program::{Program, Programs, ReplyMode};
pub use replies::{Letterhead, ReplyKind, ReplyTemplates};

//! Evidence bundles: everything the ledger holds of one number, in one
//! document signed by a key the organisation can publish, so a third party
//! can check that it came from the ledger unaltered.
//!
//! **What is signed.** The bundle is serialised once, as compact JSON
//! (UTF-8); those exact bytes are signed with Ed25519 and handed out
//! base64-encoded beside the signature. A verifier decodes them, checks the
//! signature over them with the published public key, and reads the bundle
//! from them: no canonicalisation is needed. (`format` and `signed_by` are
//! inside the signed bytes, so neither can be swapped.)
//!
//! **What is in it.** The number masked (never in full: the requester knows
//! which number it asked for) and its blind index (what `verify-ledger`
//! reports); every event oldest first (by event time) with its link `seq`,
//! opened text and evidence reference; each outboxed confirmation with its
//! body as sent and its delivery; the programs the events name with their
//! wording **as configured at export time** (the ledger keeps no history of
//! templates: the body actually sent is in `reply.body` where the reply went
//! through the outbox); and the chain verification of the number, done at
//! export (`intact`, or each break). A broken chain is exported too, with
//! its breaks, and raises the integrity alarm.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::ledger::verify_number;
use super::{ConsentService, ServiceError};
use crate::crypto::CryptoError;
use crate::domain::{PhoneNumber, ReplyKind};
use crate::ports::keys::phone_pk;
use crate::ports::{DeliveryStatus, EventItem, OutboxItem};

/// What `format` says: the layout of this bundle.
pub const BUNDLE_FORMAT: &str = "sms-consent/evidence-bundle/v1";
/// The signature algorithm.
pub const SIGNATURE_ALG: &str = "Ed25519";

/// The contents of an evidence bundle (what the signed bytes decode to).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvidenceBundle {
    /// `sms-consent/evidence-bundle/v1`.
    pub format: String,
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    /// The API caller who asked for it (the export is in the ledger too).
    pub generated_by: String,
    /// The id of the key that signed it (`ed25519-<hex>`).
    pub signed_by: String,
    pub number: NumberReference,
    /// The organisations of the programs below.
    pub organization: String,
    pub programs: Vec<ProgramWording>,
    /// What the program wording is: the configuration at export time.
    pub wording_note: String,
    pub verification: ChainVerification,
    /// Every event of the number, oldest first (by event time).
    pub events: Vec<EvidenceEvent>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NumberReference {
    /// `(•••) •••-5309` for a North American number, else the last four
    /// digits: the full number is in no bundle.
    pub masked: String,
    /// The number's blind index: what `verify-ledger` and the logs name.
    pub blind_index: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgramWording {
    pub id: String,
    pub name: String,
    pub organization: String,
    pub help_contact: String,
    pub frequency: String,
    /// The confirmations per language, as configured at export time.
    pub replies: Vec<LanguageWording>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LanguageWording {
    pub language: String,
    pub opt_out: String,
    pub opt_in: String,
    pub help: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChainVerification {
    /// `intact` or `broken`.
    pub result: String,
    /// Each break found (empty when intact).
    pub breaks: Vec<String>,
    pub events_verified: usize,
}

impl ChainVerification {
    pub fn intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvidenceEvent {
    pub event_id: String,
    /// Its place in the number's chain (by arrival); null for an event from
    /// before the chain.
    pub seq: Option<u64>,
    pub kind: String,
    pub source: String,
    pub caller: Option<String>,
    pub program: Option<String>,
    pub categories: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub signature_verified: bool,
    pub code: Option<String>,
    /// The evidence reference of consent captured elsewhere.
    pub evidence: Option<String>,
    /// The patient's message as written; null once erased.
    pub text: Option<String>,
    /// A sealed value that no longer opens (named here instead of shown).
    pub unreadable: Vec<String>,
    pub reply: Option<EvidenceReply>,
}

/// A confirmation sent through a provider's API, and what became of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EvidenceReply {
    pub provider: String,
    /// The text sent (a template: no PHI).
    pub body: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub provider_message_id: Option<String>,
    pub error: Option<String>,
}

impl From<OutboxItem> for EvidenceReply {
    fn from(item: OutboxItem) -> Self {
        let d = item.delivery;
        EvidenceReply {
            provider: item.provider,
            body: item.body,
            status: d.status,
            attempts: d.attempts,
            finished_at: d.finished_at,
            provider_message_id: d.provider_message_id,
            error: d.error,
        }
    }
}

/// The signature over a bundle's bytes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BundleSignature {
    /// `Ed25519`.
    pub alg: String,
    pub key_id: String,
    /// The 64-byte signature, base64.
    pub value: String,
}

/// A signed bundle: `bytes` are exactly what was signed.
#[derive(Debug, Clone)]
pub struct SignedBundle {
    pub bundle: EvidenceBundle,
    pub bytes: Vec<u8>,
    pub signature: BundleSignature,
}

/// `(•••) •••-5309` for a North American number, else `•••• 1234`.
pub fn mask_number(number: &PhoneNumber) -> String {
    let digits = number.as_e164().trim_start_matches('+');
    let last4 = &digits[digits.len().saturating_sub(4)..];
    if digits.len() == 11 && digits.starts_with('1') {
        format!("(•••) •••-{last4}")
    } else {
        format!("•••• {last4}")
    }
}

const WORDING_NOTE: &str = "Program names and reply wording are the configuration at the time of export; the ledger \
     keeps no history of templates. Where a confirmation went through a provider's API, reply.body is the text \
     actually sent.";

impl ConsentService {
    /// The evidence bundle of a number, signed. The export is recorded with
    /// the caller first (it is then the bundle's last event): nothing is
    /// disclosed unaudited.
    pub async fn evidence(&self, to: &str, caller: &str) -> Result<SignedBundle, ServiceError> {
        let number = PhoneNumber::parse(to).map_err(|e| ServiceError::Invalid(format!("to: {e}")))?;
        // Unwrapped (once per process) before anything is recorded: a
        // deployment without the key refuses without an audit entry.
        let signer = self.crypto.evidence_signer().await?;
        let pid = self.crypto.blind_index(&number);
        self.audit(&pid, "evidence_export", caller).await?;
        let ledger = self.store.number_ledger(&pid).await?;
        let breaks: Vec<String> = verify_number(&self.crypto, &ledger).iter().map(ToString::to_string).collect();
        if !breaks.is_empty() {
            self.integrity_alarm(&pid, "the event chain is broken");
        }
        let mut events: Vec<&EventItem> = ledger.events.iter().filter_map(|(_, e)| e.as_ref().ok()).collect();
        // By event time (not the sort key's text: RFC 3339 with a varying
        // number of fractional digits does not sort as time), then arrival.
        events.sort_by(|a, b| {
            (a.occurred_at, a.link.as_ref().map(|l| l.seq), &a.event_id).cmp(&(
                b.occurred_at,
                b.link.as_ref().map(|l| l.seq),
                &b.event_id,
            ))
        });
        let mut replies: std::collections::HashMap<String, OutboxItem> =
            self.store.outbox(&pid).await?.into_iter().map(|item| (item.event_id.clone(), item)).collect();
        let pk = phone_pk(&pid);
        let mut opened = Vec::with_capacity(events.len());
        for event in &events {
            let sk = event.sort_key();
            let mut unreadable = Vec::new();
            let text = self.open_sealed(&event.text, &pk, &sk, "text", &mut unreadable).await?;
            let evidence = self.open_sealed(&event.evidence, &pk, &sk, "evidence", &mut unreadable).await?;
            opened.push(EvidenceEvent {
                event_id: event.event_id.clone(),
                seq: event.link.as_ref().map(|l| l.seq),
                kind: event.kind.clone(),
                source: event.source.clone(),
                caller: event.caller.clone(),
                program: event.program.clone(),
                categories: event.categories.clone(),
                occurred_at: event.occurred_at,
                received_at: event.received_at,
                signature_verified: event.signature_verified,
                code: event.code.clone(),
                evidence,
                text,
                unreadable,
                reply: replies.remove(&event.event_id).map(EvidenceReply::from),
            });
        }
        let programs = self.programs_named(&events);
        let mut organizations: Vec<String> = programs.iter().map(|p| p.organization.clone()).collect();
        organizations.sort();
        organizations.dedup();
        let bundle = EvidenceBundle {
            format: BUNDLE_FORMAT.into(),
            generated_at: self.now(),
            generated_by: caller.to_owned(),
            signed_by: signer.key_id().to_owned(),
            number: NumberReference { masked: mask_number(&number), blind_index: pid.clone() },
            organization: organizations.join(", "),
            programs,
            wording_note: WORDING_NOTE.into(),
            verification: ChainVerification {
                result: if breaks.is_empty() { "intact" } else { "broken" }.into(),
                breaks,
                events_verified: ledger.events.len(),
            },
            events: opened,
        };
        let bytes = serde_json::to_vec(&bundle).map_err(|e| crate::crypto::CryptoError::Serialise(e.to_string()))?;
        let signature = BundleSignature {
            alg: SIGNATURE_ALG.into(),
            key_id: signer.key_id().to_owned(),
            value: STANDARD.encode(signer.sign(&bytes)),
        };
        tracing::info!(pid = %pid, caller, events = bundle.events.len(), "evidence exported");
        Ok(SignedBundle { bundle, bytes, signature })
    }

    /// A sealed value opened; one that does not open for its record (damaged
    /// or moved) is named in `unreadable` and shown as null, but a key
    /// service failure fails the export (503): a signed bundle must not call
    /// a text unreadable because KMS was busy.
    async fn open_sealed(
        &self,
        sealed: &Option<String>,
        pk: &str,
        sk: &str,
        attribute: &str,
        unreadable: &mut Vec<String>,
    ) -> Result<Option<String>, ServiceError> {
        let Some(sealed) = sealed else { return Ok(None) };
        match self.crypto.open(sealed, pk, sk, attribute).await {
            Ok(value) => Ok(Some(value)),
            Err(CryptoError::Malformed | CryptoError::Mismatch) => {
                unreadable.push(attribute.to_owned());
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The programs the events name, with their wording now; every
    /// configured program when no event names one.
    fn programs_named(&self, events: &[&EventItem]) -> Vec<ProgramWording> {
        let all = self.programs.sorted();
        let any_unnamed = events.iter().all(|e| e.program.is_none());
        all.into_iter()
            .filter(|p| any_unnamed || events.iter().any(|e| e.program.as_deref() == Some(p.id.as_str())))
            .map(|p| ProgramWording {
                id: p.id.clone(),
                name: p.letterhead.program.clone(),
                organization: p.letterhead.organization.clone(),
                help_contact: p.letterhead.help_contact.clone(),
                frequency: p.letterhead.frequency.clone(),
                replies: p
                    .replies
                    .languages()
                    .map(|language| LanguageWording {
                        language: language.code().to_owned(),
                        opt_out: p.reply(ReplyKind::OptOut, language),
                        opt_in: p.reply(ReplyKind::OptIn, language),
                        help: p.reply(ReplyKind::Help, language),
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_masked_to_its_last_four_digits() {
        let nanp = PhoneNumber::parse("+14158675309").unwrap();
        assert_eq!(mask_number(&nanp), "(•••) •••-5309");
        let uk = PhoneNumber::parse("+447700900123").unwrap();
        assert_eq!(mask_number(&uk), "•••• 0123");
    }
}

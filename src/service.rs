//! Use cases over the ports: record what a patient texted, and decide
//! whether a program may send. Authorization fails closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::config::{Config, ProgramConfig, ReplyMode};
use crate::crypto::{Crypto, CryptoError};
use crate::domain::replies::UNOWNED_OPT_OUT_REPLY;
use crate::domain::keywords::is_exact_keyword;
use crate::domain::{Consent, ConsentChange, ConsentState, Decision, Intent, PhoneNumber, Reason, ReplyKind, Scope};
use crate::ports::{
    event_sort_key, Clock, CommitOutcome, ConsentStore, EventItem, LedgerWrite, OutboxItem, StateItem, StoreError,
};
use crate::providers::{InboundMessage, ReplyStyle};

/// How long an idempotency marker is kept: longer than any provider retries.
pub const DEDUP_TTL: Duration = Duration::days(30);
/// Attempts at a write that keeps losing the version race before giving up
/// (the provider then retries the delivery).
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("stored state failed its integrity check")]
    Integrity,
    #[error("gave up after {MAX_ATTEMPTS} concurrent updates")]
    Contention,
}

/// What happened to an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutcome {
    /// Stored durably; `reply` is the confirmation for the webhook's answer,
    /// if any; `outboxed` when it was written to the outbox instead.
    Recorded { intent: Intent, reply: Option<String>, outboxed: bool },
    /// Already recorded under this message id: nothing changed, no second
    /// confirmation.
    Duplicate,
    /// Not a keyword (or nothing to act on): not stored, only counted.
    Ignored,
}

/// Counters a dashboard can read; no PHI.
#[derive(Debug, Default)]
pub struct Counters {
    pub ignored_messages: AtomicU64,
    pub integrity_alarms: AtomicU64,
}

pub struct ConsentService {
    store: Arc<dyn ConsentStore>,
    crypto: Arc<Crypto>,
    clock: Arc<dyn Clock>,
    programs: HashMap<String, ProgramConfig>,
    owners: HashMap<String, String>,
    pub counters: Counters,
}

pub struct AuthorizationQuery<'a> {
    pub to: &'a str,
    pub program: &'a str,
    pub category: &'a str,
}

impl ConsentService {
    pub fn new(config: &Config, store: Arc<dyn ConsentStore>, crypto: Arc<Crypto>, clock: Arc<dyn Clock>) -> Self {
        let mut owners = HashMap::new();
        for program in &config.programs {
            for number in &program.numbers {
                if let Ok(n) = PhoneNumber::parse(number) {
                    owners.insert(n.as_e164().to_owned(), program.id.clone());
                }
            }
        }
        ConsentService {
            store,
            crypto,
            clock,
            programs: config.programs.iter().map(|p| (p.id.clone(), p.clone())).collect(),
            owners,
            counters: Counters::default(),
        }
    }

    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn owner_of(&self, number: Option<&PhoneNumber>) -> Option<&ProgramConfig> {
        self.owners.get(number?.as_e164()).and_then(|id| self.programs.get(id))
    }

    /// The confirmation due, if this system is the one to send it: with
    /// `reply_mode = "provider"` the provider's auto-responder answers its
    /// own exact keywords, so a patient gets one confirmation, not two.
    fn confirmation(&self, kind: ReplyKind, program: Option<&ProgramConfig>, text: &str, style: ReplyStyle) -> Option<String> {
        match program {
            Some(p) if p.reply_mode == ReplyMode::Provider && is_exact_keyword(text, style.auto_reply_keywords) => None,
            Some(p) => Some(p.replies.render(kind, &p.letterhead())),
            None => Some(UNOWNED_OPT_OUT_REPLY.to_owned()),
        }
    }

    /// Records an opt-out, opt-in or help request, idempotently on the
    /// provider's message id, and returns the confirmation that is due (or
    /// writes it to the outbox, in the same transaction, when the provider's
    /// webhook cannot carry it).
    #[tracing::instrument(skip_all, fields(provider = message.provider, message_id = %message.message_id))]
    pub async fn handle_inbound(&self, message: &InboundMessage, style: ReplyStyle) -> Result<InboundOutcome, ServiceError> {
        let intent = Intent::classify(&message.text);
        let program = self.owner_of(message.to.as_ref());
        let (scope, reply_kind) = match (intent, program) {
            (Intent::None, _) => return Ok(self.ignore("no keyword")),
            (Intent::OptOut, Some(p)) => (Some(Scope::Program { program: p.id.clone() }), Some(ReplyKind::OptOut)),
            (Intent::OptOutAll, _) | (Intent::OptOut, None) => {
                if program.is_none() {
                    tracing::warn!("opt-out sent to a number no program owns; recorded for every program");
                }
                (Some(Scope::All), Some(ReplyKind::OptOut))
            }
            (Intent::OptIn, Some(p)) => (Some(Scope::Program { program: p.id.clone() }), Some(ReplyKind::OptIn)),
            (Intent::Help, Some(_)) => (None, Some(ReplyKind::Help)),
            (Intent::OptIn | Intent::Help, None) => return Ok(self.ignore("opt-in or help to a number no program owns")),
        };

        let now = self.clock.now();
        let event_id = format!("{}:{}", message.provider, message.message_id);
        // A provider's clock may run ahead; an event cannot happen after it
        // arrived, and a future time must not outrank later real events.
        let occurred_at = message.occurred_at.map_or(now, |at| at.min(now));
        let pid = self.crypto.blind_index(&message.from);
        let pk = format!("PHONE#{pid}");
        let change = scope.clone().map(|scope| ConsentChange {
            event_id: event_id.clone(),
            occurred_at,
            consent: if intent.is_opt_out() { Consent::OptOut } else { Consent::OptIn },
            scope,
        });
        let sk = event_sort_key(occurred_at, &event_id);
        let event = EventItem {
            pid: pid.clone(),
            event_id: event_id.clone(),
            kind: intent_name(intent).to_owned(),
            source: message.provider.to_owned(),
            program: program.map(|p| p.id.clone()),
            categories: Vec::new(),
            text: Some(self.crypto.seal(&message.text, &pk, &sk, "text").await?),
            signature_verified: true,
            occurred_at,
            received_at: now,
        };
        let reply = reply_kind.and_then(|kind| self.confirmation(kind, program, &message.text, style));
        let outbox = match (&reply, style.inline) {
            (Some(body), false) => {
                let sk = format!("OUTBOX#{event_id}");
                let from = match &message.to {
                    Some(clinic) => Some(self.crypto.seal(clinic.as_e164(), &pk, &sk, "from").await?),
                    None => None,
                };
                Some(OutboxItem {
                    pid: pid.clone(),
                    event_id: event_id.clone(),
                    provider: message.provider.to_owned(),
                    body: body.clone(),
                    to: self.crypto.seal(message.from.as_e164(), &pk, &sk, "to").await?,
                    from,
                    due_at: now,
                })
            }
            _ => None,
        };

        for _ in 0..MAX_ATTEMPTS {
            let current = self.read_state(&pid).await?;
            let mut consent = current.as_ref().map(|s| s.consent.clone()).unwrap_or_default();
            let changed = change.as_ref().is_some_and(|c| consent.apply(c));
            let state = if changed {
                let version = current.as_ref().map_or(1, |s| s.version + 1);
                let phone = match current.as_ref().and_then(|s| s.phone.clone()) {
                    Some(sealed) => sealed,
                    None => self.crypto.seal(message.from.as_e164(), &pk, "STATE", "phone").await?,
                };
                Some(StateItem {
                    pid: pid.clone(),
                    version,
                    tag: self.crypto.tag(&pid, version, &consent),
                    consent,
                    phone: Some(phone),
                    updated_at: now,
                })
            } else {
                None
            };
            let write = LedgerWrite {
                dedup_key: format!("DEDUP#{}#{}", message.provider, message.message_id),
                dedup_expires_at: now + DEDUP_TTL,
                event: event.clone(),
                outbox: outbox.clone(),
                state,
                expected_version: current.as_ref().map(|s| s.version),
            };
            match self.store.commit(write).await? {
                CommitOutcome::Committed => {
                    tracing::info!(pid = %pid, intent = intent_name(intent), changed, "consent event recorded");
                    return Ok(InboundOutcome::Recorded {
                        intent,
                        outboxed: outbox.is_some(),
                        reply: if style.inline { reply } else { None },
                    });
                }
                CommitOutcome::Duplicate => {
                    tracing::info!(pid = %pid, "duplicate delivery; already recorded");
                    return Ok(InboundOutcome::Duplicate);
                }
                CommitOutcome::VersionConflict => continue,
            }
        }
        Err(ServiceError::Contention)
    }

    fn ignore(&self, why: &'static str) -> InboundOutcome {
        self.counters.ignored_messages.fetch_add(1, Ordering::Relaxed);
        tracing::info!(reason = why, "message not stored");
        InboundOutcome::Ignored
    }

    /// Reads one state and checks its integrity tag; a bad tag is an alarm.
    async fn read_state(&self, pid: &str) -> Result<Option<StateItem>, ServiceError> {
        let Some(state) = self.store.get_state(pid).await? else {
            return Ok(None);
        };
        if !self.crypto.verify_tag(pid, state.version, &state.consent, &state.tag) {
            self.counters.integrity_alarms.fetch_add(1, Ordering::Relaxed);
            tracing::error!(pid = %pid, alarm = "integrity", "STATE item failed its integrity check");
            return Err(ServiceError::Integrity);
        }
        Ok(Some(state))
    }

    /// May this program send this category to this number now? Any failure
    /// denies, with a reason.
    pub async fn authorize(&self, query: &AuthorizationQuery<'_>) -> Decision {
        let Some(program) = self.programs.get(query.program) else {
            return Decision::deny(Reason::UnknownProgram);
        };
        if !program.categories.iter().any(|c| c == query.category) {
            return Decision::deny(Reason::UnknownCategory);
        }
        let Ok(number) = PhoneNumber::parse(query.to) else {
            return Decision::deny(Reason::InvalidNumber);
        };
        let pid = self.crypto.blind_index(&number);
        match self.read_state(&pid).await {
            Ok(state) => state
                .map(|s| s.consent)
                .unwrap_or_else(ConsentState::default)
                .decide(&program.id, query.category, program.default),
            Err(error) => {
                tracing::error!(pid = %pid, %error, "authorization denied: state unavailable");
                Decision::deny(Reason::Unavailable)
            }
        }
    }

    /// Replies waiting in the outbox for one number.
    pub async fn outbox(&self, number: &PhoneNumber) -> Result<Vec<OutboxItem>, ServiceError> {
        Ok(self.store.outbox(&self.crypto.blind_index(number)).await?)
    }

    /// The ledger of one number, oldest first (texts stay sealed).
    pub async fn events(&self, number: &PhoneNumber) -> Result<Vec<EventItem>, ServiceError> {
        Ok(self.store.events(&self.crypto.blind_index(number)).await?)
    }
}

fn intent_name(intent: Intent) -> &'static str {
    match intent {
        Intent::OptOut => "opt_out",
        Intent::OptOutAll => "opt_out_all",
        Intent::OptIn => "opt_in",
        Intent::Help => "help",
        Intent::None => "none",
    }
}

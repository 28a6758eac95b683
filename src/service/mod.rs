//! Use cases over the ports: record what a patient texted, and decide
//! whether a program may send. Authorization fails closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use time::OffsetDateTime;

use crate::crypto::{Crypto, CryptoError};
use crate::domain::consent::PendingReview;
use crate::domain::inbound::{InboundMessage, ReplyStyle};
use crate::domain::keywords::{is_conditional_opt_in, is_exact_keyword, read, Language, Reading};
use crate::domain::program::UnclearPolicy;
use crate::domain::replies::UNOWNED_OPT_OUT_REPLY;
use crate::domain::serde_name;
use crate::domain::{
    Consent, ConsentChange, ConsentState, Decision, DefaultConsent, Intent, PhoneNumber, Program, Programs, Reason,
    ReplyKind, ReplyMode, Scope,
};
use crate::ports::keys::{dedup_pk, event_dedup_pk, event_sk, outbox_sk, phone_pk, STATE_SK};
use crate::ports::{
    AuditEntry, ChainHead, Clock, CommitOutcome, ConsentStore, EventItem, LedgerWrite, OutboxItem, ReviewItem,
    ReviewWrite, StateItem, StateRead, StoreError, UsageItem,
};

pub mod audit;
pub mod evidence;
pub mod gate;
pub mod import;
pub mod ledger;
pub mod outbox;
pub mod preferences;
pub mod records;
pub mod reviews;

/// The earliest and latest event times the ledger takes (RFC 3339 can
/// write nothing outside them).
pub const EARLIEST_YEAR: i32 = 1970;
pub const LATEST_YEAR: i32 = 9999;
/// Open review items one number may hold (see `Effect::OpenReview`).
pub const MAX_OPEN_REVIEWS: usize = 10;
/// Attempts at a write that keeps losing the version race before giving up
/// (the provider then retries the delivery). Every event of a number takes
/// the next link of its chain, so concurrent deliveries for one number
/// serialise on its `STATE` version: each lost race waits a short random
/// while (`RETRY_JITTER_MS` per attempt so far, at most `MAX_RETRY_WAIT_MS`).
const MAX_ATTEMPTS: usize = 32;
const RETRY_JITTER_MS: u64 = 3;
const MAX_RETRY_WAIT_MS: u64 = 60;

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
    /// The request itself is wrong (a 400, with this message).
    #[error("{0}")]
    Invalid(String),
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
    programs: Programs,
    pub counters: Counters,
    /// Woken when a reply is written to the outbox (the local worker waits
    /// on it between polls).
    pub outbox_ready: tokio::sync::Notify,
}

/// What an event does to the number's state.
#[derive(Clone, Copy)]
pub(crate) enum Effect<'a> {
    None,
    /// Nothing changes, but the number is sealed into the state if it is not
    /// there yet: a preference link was made, and its page shows the number
    /// (masked) from the state, so erasure ends every link of the number.
    KeepNumber,
    Apply(&'a ConsentChange),
    /// Erasure: records the opt-out of every program (`Scope::All`, at the
    /// erasure's time, decided by the erasure's event), removes the sealed
    /// number and closes every open review of the number.
    Erase(&'a ConsentChange),
    /// An unclear message awaits review.
    OpenReview(&'a ReviewItem),
    /// A staff decision on one: the revocation it was found to be, if it was.
    Resolve {
        review: &'a ReviewItem,
        change: Option<&'a ConsentChange>,
    },
    /// `verify-ledger` found the number's events broken: its state is
    /// marked so that authorization denies (see `ledger`).
    Quarantine(&'a str),
}

/// An event on its way to the store.
pub(crate) struct Pending<'a> {
    /// The number, sealed into the state when the state is first written.
    pub phone: Option<&'a PhoneNumber>,
    pub dedup_key: String,
    /// Further replay keys of the same delivery (`DEDUP#...`), e.g. a
    /// provider's signed nonce: any of them already known is a duplicate.
    pub extra_dedup_keys: Vec<String>,
    pub event: EventItem,
    pub outbox: Option<OutboxItem>,
    pub effect: Effect<'a>,
    /// The review queue entry it adds or removes.
    pub review: Option<ReviewWrite>,
}

impl<'a> Pending<'a> {
    /// An event whose id is its own replay key (`DEDUP#<event id>`): one
    /// recorded by the service or an API caller, with no number to seal,
    /// no reply and no queue entry unless set after.
    pub fn own(event: EventItem, effect: Effect<'a>) -> Self {
        Pending {
            phone: None,
            dedup_key: event_dedup_pk(&event.event_id),
            extra_dedup_keys: Vec::new(),
            event,
            outbox: None,
            effect,
            review: None,
        }
    }
}

pub struct AuthorizationQuery<'a> {
    pub to: &'a str,
    pub program: &'a str,
    pub category: &'a str,
}

impl ConsentService {
    pub fn new(programs: Programs, store: Arc<dyn ConsentStore>, crypto: Arc<Crypto>, clock: Arc<dyn Clock>) -> Self {
        ConsentService {
            store,
            crypto,
            clock,
            programs,
            counters: Counters::default(),
            outbox_ready: tokio::sync::Notify::new(),
        }
    }

    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn owner_of(&self, number: Option<&PhoneNumber>) -> Option<&Program> {
        self.programs.owner_of(number?)
    }

    /// The confirmation due, if this system is the one to send it: with
    /// `reply_mode = "provider"` the provider's auto-responder answers its
    /// own exact keywords, so a patient gets one confirmation, not two.
    fn confirmation(
        &self,
        kind: ReplyKind,
        program: Option<&Program>,
        text: &str,
        language: Language,
        style: ReplyStyle,
    ) -> Option<String> {
        match program {
            Some(p) if p.reply_mode == ReplyMode::Provider && is_exact_keyword(text, style.auto_reply_keywords) => None,
            Some(p) => Some(p.reply(kind, language)),
            None => Some(UNOWNED_OPT_OUT_REPLY.to_owned()),
        }
    }

    /// Records an opt-out, opt-in or help request, idempotently on the
    /// provider's message id, and returns the confirmation that is due (or
    /// writes it to the outbox, in the same transaction, when the provider's
    /// webhook cannot carry it).
    #[tracing::instrument(skip_all, fields(provider = message.provider, message_id = %message.message_id))]
    pub async fn handle_inbound(
        &self,
        message: &InboundMessage,
        style: ReplyStyle,
    ) -> Result<InboundOutcome, ServiceError> {
        let Reading { intent, language } = read(&message.text);
        let program = self.owner_of(message.to.as_ref());
        let (scope, reply_kind) = match (intent, program) {
            (Intent::None, _) => return Ok(self.ignore(message.provider, "no keyword")),
            // Kept for staff to decide, unanswered (see `reviews`).
            (Intent::Unclear, _) => (None, None),
            (Intent::OptOut, Some(p)) => (Some(Scope::Program { program: p.id.clone() }), Some(ReplyKind::OptOut)),
            (Intent::OptOutAll, _) | (Intent::OptOut, None) => {
                if program.is_none() {
                    tracing::warn!("opt-out sent to a number no program owns; recorded for every program");
                }
                (Some(Scope::All), Some(ReplyKind::OptOut))
            }
            (Intent::OptIn, Some(p)) => (Some(Scope::Program { program: p.id.clone() }), Some(ReplyKind::OptIn)),
            (Intent::Help, Some(_)) => (None, Some(ReplyKind::Help)),
            (Intent::OptIn | Intent::Help, None) => {
                return Ok(self.ignore(message.provider, "opt-in or help to a number no program owns"))
            }
        };

        let now = self.clock.now();
        if let Some(at) = message.occurred_at {
            check_event_time(at, "the message's time")?;
        }
        let pid = self.crypto.blind_index(&message.from);
        // "Yes" / "Sí" opt in only a number that is opted out of the program:
        // otherwise it answers a reminder ("reply YES to confirm").
        if let (Intent::OptIn, Some(p)) = (intent, program) {
            if is_conditional_opt_in(&message.text) {
                let opted_out = self.read_state(&pid).await?.is_some_and(|s| s.consent.program_opted_out(&p.id));
                if !opted_out {
                    return Ok(self.ignore(message.provider, "yes from a number that is not opted out"));
                }
            }
        }
        let event_id = format!("{}:{}", message.provider, message.message_id);
        // A provider's clock may run ahead; an event cannot happen after it
        // arrived, and a future time must not outrank later real events.
        let occurred_at = message.occurred_at.map_or(now, |at| at.min(now));
        let pk = phone_pk(&pid);
        let change = scope.clone().map(|scope| ConsentChange {
            event_id: event_id.clone(),
            occurred_at,
            consent: if intent.is_opt_out() { Consent::OptOut } else { Consent::OptIn },
            scope,
        });
        let sk = event_sk(occurred_at, &event_id);
        let event = EventItem {
            pid: pid.clone(),
            event_id: event_id.clone(),
            kind: serde_name(&intent),
            source: message.provider.to_owned(),
            program: program.map(|p| p.id.clone()),
            categories: Vec::new(),
            text: Some(self.crypto.seal(&message.text, &pk, &sk, "text").await?),
            evidence: None,
            caller: None,
            code: None,
            signature_verified: true,
            occurred_at,
            received_at: now,
            link: None,
        };
        let review = (intent == Intent::Unclear).then(|| ReviewItem {
            pid: pid.clone(),
            event_id: event_id.clone(),
            program: program.map(|p| p.id.clone()),
            occurred_at,
        });
        let reply = reply_kind.and_then(|kind| self.confirmation(kind, program, &message.text, language, style));
        let outbox = match (&reply, style.inline) {
            (Some(body), false) => {
                let sk = outbox_sk(&event_id);
                let from = match &message.to {
                    Some(clinic) => Some(self.crypto.seal(clinic.as_e164(), &pk, &sk, "from").await?),
                    None => None,
                };
                Some(OutboxItem {
                    pid: pid.clone(),
                    event_id: event_id.clone(),
                    provider: message.provider.to_owned(),
                    body: body.clone(),
                    to: Some(self.crypto.seal(message.from.as_e164(), &pk, &sk, "to").await?),
                    from,
                    due_at: now,
                    kind: reply_kind,
                    program: program.map(|p| p.id.clone()),
                    event_at: Some(occurred_at),
                    delivery: Default::default(),
                })
            }
            _ => None,
        };
        let outboxed = outbox.is_some();
        let pending = Pending {
            phone: Some(&message.from),
            dedup_key: dedup_pk(message.provider, &message.message_id),
            // A second key for a signature that covers no body (Plivo V2's
            // nonce): the same signed pair with another body is a replay.
            extra_dedup_keys: message.replay_key.iter().map(|key| dedup_pk(message.provider, key)).collect(),
            event,
            outbox,
            effect: match (&change, &review) {
                (Some(change), _) => Effect::Apply(change),
                (None, Some(review)) => Effect::OpenReview(review),
                (None, None) => Effect::None,
            },
            review: review.clone().map(ReviewWrite::Open),
        };
        if self.commit_event(pending).await? {
            tracing::info!(pid = %pid, intent = %serde_name(&intent), "consent event recorded");
            crate::metrics::event_recorded(serde_name(&intent), message.provider);
            if outboxed {
                self.outbox_ready.notify_one();
            }
            Ok(InboundOutcome::Recorded { intent, outboxed, reply: if style.inline { reply } else { None } })
        } else {
            tracing::info!(pid = %pid, "duplicate delivery; already recorded");
            crate::metrics::duplicate(message.provider);
            Ok(InboundOutcome::Duplicate)
        }
    }

    /// Writes one event with its dedup marker, outbox item and new state in
    /// one transaction, re-reading and retrying a lost version race.
    /// Returns false when the dedup marker was already there.
    ///
    /// Every event is a link of its number's chain (`ledger`), so every
    /// commit reads the `STATE` (its head) and writes the next version with
    /// the new head, even where consent does not change (HELP, an audit
    /// entry). A quarantined state is carried forward: a STOP to such a
    /// number is still recorded.
    pub(crate) async fn commit_event(&self, pending: Pending<'_>) -> Result<bool, ServiceError> {
        let pid = pending.event.pid.clone();
        let now = self.clock.now();
        for attempt in 0..MAX_ATTEMPTS as u64 {
            if attempt > 0 {
                let most = (attempt * RETRY_JITTER_MS).min(MAX_RETRY_WAIT_MS);
                let wait = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=most);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            let current = self.read_state_unchecked_quarantine(&pid).await?;
            let write = self.ledger_write(&pending, current.as_ref(), now).await?;
            match self.store.commit(write).await? {
                CommitOutcome::Committed => return Ok(true),
                CommitOutcome::Duplicate => return Ok(false),
                CommitOutcome::VersionConflict => continue,
                CommitOutcome::Tampered => {
                    self.integrity_alarm(&pid, "the state was rolled back or deleted");
                    return Err(ServiceError::Integrity);
                }
            }
        }
        Err(ServiceError::Contention)
    }

    /// The write one event makes on top of `current` (the number's state as
    /// read, a quarantine carried forward): the new consent, the next link
    /// of the chain, the new state under its tag, the queue changes and the
    /// access report's entry. What `commit_event` commits, and what an
    /// import commits in batches (`import`).
    pub(crate) async fn ledger_write(
        &self,
        pending: &Pending<'_>,
        current: Option<&StateItem>,
        now: OffsetDateTime,
    ) -> Result<LedgerWrite, ServiceError> {
        let pid = pending.event.pid.clone();
        let pk = phone_pk(&pid);
        let current = current.cloned();
        let mut consent = current.as_ref().map(|s| s.consent.clone()).unwrap_or_default();
        let mut phone = current.as_ref().and_then(|s| s.phone.clone());
        let mut quarantine = current.as_ref().and_then(|s| s.quarantine.clone());
        let mut closed_reviews = Vec::new();
        let mut queued = pending.review.clone();
        let changed = match pending.effect {
            Effect::None | Effect::KeepNumber => false,
            Effect::Apply(change) => consent.apply(change),
            Effect::Erase(change) => {
                phone = None;
                let revoked = consent.apply(change);
                let reviews = std::mem::take(&mut consent.reviews);
                closed_reviews = reviews
                    .into_iter()
                    .map(|(event_id, review)| ReviewItem {
                        pid: pid.clone(),
                        event_id,
                        program: review.program,
                        occurred_at: review.occurred_at,
                    })
                    .collect();
                revoked || !closed_reviews.is_empty()
            }
            // A number holds at most MAX_OPEN_REVIEWS open items (its
            // STATE and an erasure's transaction stay bounded); beyond
            // them an unclear message is kept in the ledger only, and the
            // hold its earlier ones make stands.
            Effect::OpenReview(_) if consent.reviews.len() >= MAX_OPEN_REVIEWS => {
                queued = None;
                false
            }
            Effect::OpenReview(review) => {
                let pending = PendingReview { program: review.program.clone(), occurred_at: review.occurred_at };
                consent.reviews.insert(review.event_id.clone(), pending).is_none()
            }
            Effect::Resolve { review, change } => {
                let revoked = change.is_some_and(|change| consent.apply(change));
                consent.reviews.remove(&review.event_id).is_some() || revoked
            }
            Effect::Quarantine(reason) => {
                quarantine.get_or_insert_with(|| reason.to_owned());
                false
            }
        };
        // The next link: after the head, or the start of the chain (a
        // state without a head was written before the chain).
        let (seq, prev) = match current.as_ref().map(|s| s.head.as_ref()) {
            Some(Some(head)) => (head.seq + 1, head.mac.clone()),
            Some(None) => (1, ledger::LEGACY_START.to_owned()),
            None => (1, String::new()),
        };
        let mut event = pending.event.clone();
        let link = ledger::link(&self.crypto, &event, seq, prev)?;
        let head = ChainHead { seq, mac: link.mac.clone() };
        event.link = Some(link);
        let version = current.as_ref().map_or(1, |s| s.version + 1);
        let keeps_number = changed || matches!(pending.effect, Effect::KeepNumber);
        if keeps_number && phone.is_none() && !matches!(pending.effect, Effect::Erase(_)) {
            if let Some(number) = pending.phone {
                phone = Some(self.crypto.seal(number.as_e164(), &pk, STATE_SK, "phone").await?);
            }
        }
        let mut state = StateItem {
            pid: pid.clone(),
            version,
            tag: String::new(),
            consent,
            phone,
            updated_at: now,
            head: Some(head),
            quarantine,
        };
        state.tag = self.crypto.state_tag(&state)?;
        // What a caller did goes to the access report, in the same
        // transaction.
        let audit = event.caller.as_ref().map(|caller| AuditEntry {
            pid: pid.clone(),
            kind: event.kind.clone(),
            caller: caller.clone(),
            at: event.received_at,
            event_id: event.event_id.clone(),
            program: event.program.clone(),
        });
        Ok(LedgerWrite {
            dedup_key: pending.dedup_key.clone(),
            extra_dedup_keys: pending.extra_dedup_keys.clone(),
            event,
            outbox: pending.outbox.clone(),
            state: Some(state),
            expected_version: current.as_ref().map(|s| s.version),
            initial_state: None,
            review: queued,
            close_reviews: closed_reviews,
            audit,
        })
    }

    /// An event the service makes, with no text: `<source>:<kind>:<random>`,
    /// now, by `caller` when a person or an API key caused it.
    pub(crate) fn service_event(&self, pid: &str, kind: &str, source: &str, caller: Option<&str>) -> EventItem {
        let now = self.now();
        EventItem {
            pid: pid.to_owned(),
            event_id: format!("{source}:{kind}:{}", random_id()),
            kind: kind.to_owned(),
            source: source.to_owned(),
            program: None,
            categories: Vec::new(),
            text: None,
            evidence: None,
            caller: caller.map(str::to_owned),
            code: None,
            signature_verified: false,
            occurred_at: now,
            received_at: now,
            link: None,
        }
    }

    fn ignore(&self, provider: &'static str, why: &'static str) -> InboundOutcome {
        self.counters.ignored_messages.fetch_add(1, Ordering::Relaxed);
        crate::metrics::ignored(provider);
        tracing::info!(reason = why, "message not stored");
        InboundOutcome::Ignored
    }

    fn integrity_alarm(&self, pid: &str, what: &'static str) {
        self.counters.integrity_alarms.fetch_add(1, Ordering::Relaxed);
        crate::metrics::integrity_alarm();
        tracing::error!(pid = %pid, alarm = "integrity", what, "the state item failed its integrity check");
    }

    /// A store read: a malformed item (a key that disagrees with its data,
    /// a version attribute that disagrees with the data) is an alarm too.
    fn stored<T>(&self, pid: &str, read: Result<T, StoreError>) -> Result<T, ServiceError> {
        match read {
            Err(StoreError::Corrupt(why)) => {
                self.integrity_alarm(pid, "malformed item");
                Err(ServiceError::Store(StoreError::Corrupt(why)))
            }
            other => Ok(other?),
        }
    }

    /// Reads one state (one store read) and checks its integrity tag. A
    /// missing STATE of a number that has other items was deleted, and a
    /// quarantined one has a broken chain: an alarm, never the default.
    async fn read_state(&self, pid: &str) -> Result<Option<StateItem>, ServiceError> {
        let state = self.read_state_unchecked_quarantine(pid).await?;
        self.unquarantined(pid, state)
    }

    /// As `read_state`, but a quarantined state is returned (a commit
    /// carries the quarantine forward).
    pub(crate) async fn read_state_unchecked_quarantine(&self, pid: &str) -> Result<Option<StateItem>, ServiceError> {
        let read = self.store.read_state(pid).await;
        self.checked(pid, read).await
    }

    /// A state `verify-ledger` quarantined (its events disagree with their
    /// chain) decides nothing: an alarm.
    fn unquarantined(&self, pid: &str, state: Option<StateItem>) -> Result<Option<StateItem>, ServiceError> {
        if state.as_ref().is_some_and(|s| s.quarantine.is_some()) {
            self.integrity_alarm(pid, "the number is quarantined: its event chain is broken");
            return Err(ServiceError::Integrity);
        }
        Ok(state)
    }

    /// Checks what a state read found. Only where a STATE is missing beside
    /// other items is the number read once more before the alarm: a store
    /// whose query may show part of a concurrent first write (an event
    /// before its STATE) then shows all of it.
    async fn checked(&self, pid: &str, read: Result<StateRead, StoreError>) -> Result<Option<StateItem>, ServiceError> {
        match self.stored(pid, read)? {
            StateRead::Found(state) => self.verified(pid, state).map(Some),
            StateRead::Absent => Ok(None),
            StateRead::MissingWithHistory => match self.stored(pid, self.store.read_state(pid).await)? {
                StateRead::Found(state) => self.verified(pid, state).map(Some),
                _ => {
                    self.integrity_alarm(pid, "the state was deleted while the number has events");
                    Err(ServiceError::Integrity)
                }
            },
        }
    }

    /// A state whose integrity tag fails, or that is stored under another
    /// number's key, is an alarm, never a decision. The tag is checked with
    /// the pid that was asked for (the key the item is stored under).
    fn verified(&self, pid: &str, state: StateItem) -> Result<StateItem, ServiceError> {
        if state.pid != pid || !self.crypto.verify_state_tag(pid, &state) {
            self.integrity_alarm(pid, "tag or key mismatch");
            return Err(ServiceError::Integrity);
        }
        Ok(state)
    }

    /// Checks what can be checked without the store: the program, the
    /// category, the number. Returns the number's blind index.
    fn validate_query(&self, query: &AuthorizationQuery<'_>) -> Result<(String, &Program), Decision> {
        let program = self.programs.get(query.program).ok_or(Decision::deny(Reason::UnknownProgram))?;
        if !program.has_category(query.category) {
            return Err(Decision::deny(Reason::UnknownCategory));
        }
        let number = PhoneNumber::parse(query.to).map_err(|_| Decision::deny(Reason::InvalidNumber))?;
        Ok((self.crypto.blind_index(&number), program))
    }

    /// Decides from a state read, after checking its integrity tag.
    async fn decide(
        &self,
        pid: &str,
        read: Result<StateRead, StoreError>,
        program: &Program,
        category: &str,
    ) -> Decision {
        match self.checked(pid, read).await.and_then(|state| self.unquarantined(pid, state)) {
            Ok(state) => consent_decision(&state.map(|s| s.consent).unwrap_or_default(), program, category),
            Err(error) => {
                tracing::error!(pid = %pid, %error, "authorization denied: state unavailable");
                Decision::deny(Reason::Unavailable)
            }
        }
    }

    /// May this program send this category to this number now? One
    /// consistent store read whatever the number's state (and, when the
    /// program caps volume, one of its usage), no key service call; any
    /// failure denies, with a reason. See `gate` for the time and volume
    /// rules and reservations.
    pub async fn authorize(&self, query: &AuthorizationQuery<'_>) -> Decision {
        self.authorize_send(query, &gate::SendPlan::default()).await
    }

    /// A batch's answer for one number: a STATE it found, or where it found
    /// none and the program's default allows, one more read to tell a new
    /// number from a deleted STATE (a default that denies needs none).
    async fn batch_read(
        &self,
        pid: &str,
        state: Option<StateItem>,
        program: &Program,
    ) -> Result<StateRead, StoreError> {
        match state {
            Some(state) => Ok(StateRead::Found(state)),
            None if program.default == DefaultConsent::OptedIn => self.store.read_state(pid).await,
            None => Ok(StateRead::Absent),
        }
    }

    /// Many decisions with one store read: a batch of up to 100 requests.
    /// Requests that fail on their own (unknown program, bad number) are
    /// denied with their reason; a store failure denies the rest as
    /// `unavailable`.
    pub async fn authorize_many(&self, queries: &[AuthorizationQuery<'_>]) -> Vec<Decision> {
        let plans = vec![gate::SendPlan::default(); queries.len()];
        self.authorize_batch(queries, &plans).await
    }

    /// A batch with each request's plan: consent for all in one read, then
    /// the time and volume rules; the usage of the numbers whose program
    /// can cap, or whose send is reserved, in one more batch read; the
    /// reservations written together (`gate::reserve_many`).
    pub async fn authorize_batch(
        &self,
        queries: &[AuthorizationQuery<'_>],
        plans: &[gate::SendPlan<'_>],
    ) -> Vec<Decision> {
        let consents = self.consent_many(queries).await;
        // The usage of every number whose program can cap, or whose send is
        // reserved: one more batch read.
        let needs: Vec<bool> = consents
            .iter()
            .zip(plans)
            .map(|((consent, found), plan)| {
                consent.allowed
                    && found
                        .as_ref()
                        .is_some_and(|(_, p)| plan.reserve || !crate::domain::rules::caps_none(&p.send_rules))
            })
            .collect();
        let mut pids: Vec<String> = consents
            .iter()
            .zip(&needs)
            .filter(|(_, needed)| **needed)
            .filter_map(|((_, found), _)| found.as_ref().map(|(pid, _)| pid.clone()))
            .collect();
        pids.sort();
        pids.dedup();
        let read = if pids.is_empty() { Ok(Vec::new()) } else { self.store.usages(&pids).await };
        let usages: Option<HashMap<String, Option<UsageItem>>> = match read {
            Ok(found) => Some(pids.into_iter().zip(found).collect()),
            Err(error) => {
                tracing::error!(%error, "batch authorization: usage unavailable; capped and reserved requests denied");
                None
            }
        };
        let mut decisions: Vec<Option<Decision>> = vec![None; queries.len()];
        let mut reservations = Vec::new();
        for (i, (consent, found)) in consents.into_iter().enumerate() {
            decisions[i] = Some(match found {
                Some(_) if needs[i] && usages.is_none() => Decision::deny(Reason::Unavailable),
                Some((pid, program)) if consent.allowed && plans[i].reserve => {
                    let (query, plan) = (&queries[i], &plans[i]);
                    reservations.push(gate::Reservation { index: i, pid, program, query, plan, consent });
                    continue;
                }
                Some((pid, program)) if consent.allowed => {
                    let usage = if needs[i] { usages.as_ref().and_then(|u| u.get(&pid).cloned()) } else { None };
                    self.after_consent(&pid, program, &queries[i], &plans[i], consent, usage).await
                }
                _ => consent,
            });
        }
        if !reservations.is_empty() {
            let usages = usages.unwrap_or_default();
            for (i, decision) in self.reserve_many(reservations, usages).await {
                decisions[i] = Some(decision);
            }
        }
        decisions.into_iter().map(|d| d.unwrap_or_else(|| Decision::deny(Reason::Unavailable))).collect()
    }

    /// Consent for a batch, with each request's number and program where
    /// they were valid.
    async fn consent_many(&self, queries: &[AuthorizationQuery<'_>]) -> Vec<(Decision, Option<(String, &Program)>)> {
        let mut found: Vec<Option<(String, &Program)>> = Vec::with_capacity(queries.len());
        let mut decisions: Vec<Option<Decision>> = Vec::with_capacity(queries.len());
        let mut lookups: Vec<(usize, String, &Program)> = Vec::new();
        for (i, query) in queries.iter().enumerate() {
            match self.validate_query(query) {
                Ok((pid, program)) => {
                    found.push(Some((pid.clone(), program)));
                    lookups.push((i, pid, program));
                    decisions.push(None);
                }
                Err(denied) => {
                    found.push(None);
                    decisions.push(Some(denied));
                }
            }
        }
        let pids: Vec<String> = lookups.iter().map(|(_, pid, _)| pid.clone()).collect();
        let states = if pids.is_empty() { Ok(Vec::new()) } else { self.store.get_states(&pids).await };
        match states {
            Ok(states) => {
                // Concurrently: only a missing STATE in an opted-in program
                // makes a further read.
                let decided = futures::future::join_all(lookups.iter().zip(states).map(
                    |((i, pid, program), state)| async move {
                        let read = self.batch_read(pid, state, program).await;
                        self.decide(pid, read, program, queries[*i].category).await
                    },
                ))
                .await;
                for ((i, _, _), decision) in lookups.iter().zip(decided) {
                    decisions[*i] = Some(decision);
                }
            }
            Err(error) => {
                tracing::error!(%error, "batch authorization denied: store unavailable");
                for (i, _, _) in lookups {
                    decisions[i] = Some(Decision::deny(Reason::Unavailable));
                }
            }
        }
        decisions.into_iter().map(|d| d.unwrap_or_else(|| Decision::deny(Reason::Unavailable))).zip(found).collect()
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

/// An event time the ledger can write and order: 1970 to 9999.
/// A program's answer from a number's consent: its default where there is
/// no record, and its `unclear` policy where a message awaits review.
pub(crate) fn consent_decision(state: &ConsentState, program: &Program, category: &str) -> Decision {
    let decision = state.decide(&program.id, category, program.default);
    if program.unclear == UnclearPolicy::Deny {
        state.hold_for_review(decision, &program.id, category)
    } else {
        decision
    }
}

/// 96 random bits, hex: the unique part of ids the service makes.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}

pub(crate) fn check_event_time(at: OffsetDateTime, what: &str) -> Result<(), ServiceError> {
    if (EARLIEST_YEAR..=LATEST_YEAR).contains(&at.year()) {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!("{what} must be between {EARLIEST_YEAR} and {LATEST_YEAR}")))
    }
}

//! Replies on their way out, and opt-outs the providers report.
//!
//! A reply that the webhook's answer could not carry is an `OUTBOX` item,
//! written in the same transaction as its event. A worker (a loop in the
//! local process; on AWS the `outbox` function fed by the table's stream)
//! delivers it: claim it with a lease (compare and set on its revision, so
//! two workers never send one item at once), check that it is still due
//! (not too old, not superseded by a later opt-out), send it through the
//! provider's API, and record the outcome. Delivery is at least once: a
//! crash between the provider's acceptance and the `sent` mark may repeat a
//! confirmation, nothing worse.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use time::OffsetDateTime;

use super::{check_event_time, ConsentService, Effect, Pending, ServiceError};
use crate::domain::outbound::{OutboundMessage, SendError, Sent};
use crate::domain::{Consent, ConsentChange, PhoneNumber, Program, ProviderBlock, ReplyKind, Scope};
use crate::ports::keys::{dedup_pk, outbox_sk, phone_pk};
use crate::ports::{DeliveryStatus, EventItem, OutboxItem};

/// The source of the opt-outs providers report.
pub const PROVIDER_BLOCK: &str = "provider_block";

/// How replies are delivered (`[outbox]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxSettings {
    /// A reply not sent within this long of its event is not sent at all
    /// (`expired`): the FCC presumes an opt-out confirmation sent within 5
    /// minutes reasonable.
    pub max_age: Duration,
    /// Attempts before a reply that keeps failing temporarily is `failed`.
    pub max_attempts: u32,
    /// How long a worker holds an item it claimed; a crashed worker's item
    /// is taken over after this.
    pub lease: Duration,
    /// The first retry's delay; it doubles per attempt up to `retry_max`,
    /// each with jitter (half to all of it), and never sooner than the
    /// provider's `Retry-After`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            max_age: Duration::from_secs(300),
            max_attempts: 6,
            lease: Duration::from_secs(60),
            retry_initial: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// The providers' send APIs, by provider route name.
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Whether this provider has a send table (else its replies wait).
    fn can_send(&self, provider: &str) -> bool;
    async fn send(&self, provider: &str, message: &OutboundMessage<'_>) -> Result<Sent, SendError>;
}

/// What one delivery attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This worker brought the item to a final status.
    Finished(DeliveryStatus),
    /// A temporary failure: pending, to be tried again at this time.
    Retry { at: OffsetDateTime },
    /// Nothing to do now (see `Skip`).
    Skipped(Skip),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// No such item (erased, or never written).
    Gone,
    /// Already final.
    Done(DeliveryStatus),
    /// Another worker holds it, or changed it first; free again at `until`.
    Busy { until: Option<OffsetDateTime> },
    /// Waiting for its next attempt.
    NotDue { at: OffsetDateTime },
    /// Its provider has no send table: it waits in the outbox.
    NoSender,
}

/// One worker. Several may run over one store.
pub struct OutboxWorker {
    service: Arc<ConsentService>,
    dispatch: Arc<dyn Dispatch>,
    settings: OutboxSettings,
    /// Names this worker's leases.
    owner: String,
}

fn span(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

impl OutboxWorker {
    pub fn new(service: Arc<ConsentService>, dispatch: Arc<dyn Dispatch>, settings: OutboxSettings) -> Self {
        let owner = format!("worker-{:016x}", rand::rngs::OsRng.gen::<u64>());
        OutboxWorker { service, dispatch, settings, owner }
    }

    pub fn service(&self) -> &Arc<ConsentService> {
        &self.service
    }

    /// One pass over the replies that are due: each is attempted once.
    /// Returns how many were attempted.
    pub async fn run_due(&self, limit: usize) -> Result<usize, ServiceError> {
        let due = self.service.store.due_outbox(self.service.now(), limit).await?;
        let mut attempted = 0;
        for (pid, event_id) in due {
            match self.deliver(&pid, &event_id).await {
                Ok(Attempt::Skipped(_)) => {}
                Ok(_) => attempted += 1,
                Err(error) => tracing::error!(pid = %pid, %error, "outbox delivery failed; it stays pending"),
            }
        }
        Ok(attempted)
    }

    /// Delivers one item, retrying temporary failures in place until it is
    /// final or `deadline` would pass first (a Lambda invocation's budget).
    /// A `Retry` or `Busy` result means: ask again later.
    pub async fn deliver_until(
        &self,
        pid: &str,
        event_id: &str,
        deadline: OffsetDateTime,
    ) -> Result<Attempt, ServiceError> {
        loop {
            let attempt = self.deliver(pid, event_id).await?;
            let wake = match &attempt {
                Attempt::Retry { at } | Attempt::Skipped(Skip::NotDue { at }) => *at,
                Attempt::Skipped(Skip::Busy { until: Some(until) }) => *until,
                _ => return Ok(attempt),
            };
            let now = self.service.now();
            if wake >= deadline {
                return Ok(attempt);
            }
            tokio::time::sleep(Duration::try_from(wake - now).unwrap_or(Duration::ZERO)).await;
        }
    }

    /// One attempt at one item: claim, check, send, record.
    #[tracing::instrument(skip_all, fields(pid = %pid, event_id = %event_id))]
    pub async fn deliver(&self, pid: &str, event_id: &str) -> Result<Attempt, ServiceError> {
        let store = &self.service.store;
        let now = self.service.now();
        let Some(item) = store.outbox_item(pid, event_id).await? else {
            return Ok(Attempt::Skipped(Skip::Gone));
        };
        let d = &item.delivery;
        if d.status != DeliveryStatus::Pending {
            return Ok(Attempt::Skipped(Skip::Done(d.status)));
        }
        if d.lease_until.is_some_and(|until| until > now) {
            return Ok(Attempt::Skipped(Skip::Busy { until: d.lease_until }));
        }
        if let Some(at) = d.next_attempt_at.filter(|at| *at > now) {
            return Ok(Attempt::Skipped(Skip::NotDue { at }));
        }
        if !self.dispatch.can_send(&item.provider) {
            return Ok(Attempt::Skipped(Skip::NoSender));
        }
        let mut claimed = item.clone();
        claimed.delivery.revision += 1;
        claimed.delivery.lease_owner = Some(self.owner.clone());
        claimed.delivery.lease_until = Some(now + span(self.settings.lease));
        if !store.update_outbox(&claimed, item.delivery.revision).await? {
            return Ok(Attempt::Skipped(Skip::Busy { until: None }));
        }

        if now - item.due_at > span(self.settings.max_age) {
            let why = format!("not sent within {} s of the event", self.settings.max_age.as_secs());
            return self.finish(claimed, DeliveryStatus::Expired, None, Some(why)).await;
        }
        if item.kind != Some(ReplyKind::OptOut) {
            match self.superseded(&item).await {
                Ok(false) => {}
                Ok(true) => {
                    let why = "a later opt-out arrived before it was sent".to_owned();
                    return self.finish(claimed, DeliveryStatus::Superseded, None, Some(why)).await;
                }
                // The state cannot be read or fails its check: do not send
                // on doubt; try again later (this counts as an attempt).
                Err(error) => {
                    claimed.delivery.attempts += 1;
                    return self.retry(claimed, format!("consent unreadable: {error}"), None).await;
                }
            }
        }

        let (to, from) = self.open_numbers(&item).await?;
        let Some(to) = to else {
            return self.finish(claimed, DeliveryStatus::Failed, None, Some("the number was erased".into())).await;
        };
        let message = OutboundMessage { to: &to, from: from.as_ref(), body: &item.body, reference: &item.event_id };
        let result = self.dispatch.send(&item.provider, &message).await;
        if !matches!(result, Err(SendError::NotConfigured(_))) {
            claimed.delivery.attempts += 1;
        }
        match result {
            Ok(sent) => {
                tracing::info!(provider = %item.provider, "reply sent");
                self.finish(claimed, DeliveryStatus::Sent, sent.message_id, None).await
            }
            Err(SendError::Temporary { reason, retry_after }) => self.retry(claimed, reason, retry_after).await,
            Err(SendError::Refused { reason }) => {
                tracing::warn!(provider = %item.provider, %reason, "reply refused by the provider");
                self.finish(claimed, DeliveryStatus::Failed, None, Some(reason)).await
            }
            Err(SendError::OptedOut { code, reason }) => {
                tracing::warn!(provider = %item.provider, %code, "the provider reports the number opted out");
                let block = ProviderBlock {
                    provider: item.provider.clone(),
                    message_id: item.event_id.clone(),
                    number: to.clone(),
                    clinic: from.clone(),
                    code: code.clone(),
                    occurred_at: None,
                };
                let program = item.program.as_deref().and_then(|id| self.service.programs.get(id));
                self.service.record_block(&block, program, false).await?;
                let why = format!("the provider reports the number opted out or blocked ({code}): {reason}");
                self.finish(claimed, DeliveryStatus::Failed, None, Some(why)).await
            }
            Err(SendError::NotConfigured(why)) => {
                let mut released = claimed.clone();
                released.delivery.revision += 1;
                released.delivery.lease_owner = None;
                released.delivery.lease_until = None;
                released.delivery.error = Some(why.to_owned());
                store.update_outbox(&released, claimed.delivery.revision).await?;
                Ok(Attempt::Skipped(Skip::NoSender))
            }
        }
    }

    /// Whether an opt-out at or after the reply's event covers its program.
    async fn superseded(&self, item: &OutboxItem) -> Result<bool, ServiceError> {
        let state = self.service.read_state(&item.pid).await?;
        let at = item.event_at.unwrap_or(item.due_at);
        Ok(state.is_some_and(|s| s.consent.opted_out_since(item.program.as_deref(), at)))
    }

    async fn open_numbers(
        &self,
        item: &OutboxItem,
    ) -> Result<(Option<PhoneNumber>, Option<PhoneNumber>), ServiceError> {
        let (pk, sk) = (phone_pk(&item.pid), outbox_sk(&item.event_id));
        let mut numbers = [None, None];
        for (slot, (sealed, attribute)) in numbers.iter_mut().zip([(&item.to, "to"), (&item.from, "from")]) {
            if let Some(sealed) = sealed {
                let e164 = self.service.crypto.open(sealed, &pk, &sk, attribute).await?;
                *slot = Some(PhoneNumber::parse(&e164).map_err(|_| ServiceError::Integrity)?);
            }
        }
        let [to, from] = numbers;
        Ok((to, from))
    }

    /// Records a final status, if this worker still holds the item.
    async fn finish(
        &self,
        claimed: OutboxItem,
        status: DeliveryStatus,
        provider_message_id: Option<String>,
        error: Option<String>,
    ) -> Result<Attempt, ServiceError> {
        let mut done = claimed.clone();
        let d = &mut done.delivery;
        d.revision += 1;
        d.status = status;
        d.lease_owner = None;
        d.lease_until = None;
        d.next_attempt_at = None;
        d.finished_at = Some(self.service.now());
        d.provider_message_id = provider_message_id;
        d.error = error;
        if !self.service.store.update_outbox(&done, claimed.delivery.revision).await? {
            // Erased meanwhile, or the lease lapsed and another worker took
            // over: its record stands.
            tracing::warn!(status = ?status, "the reply's record changed while it was being sent");
        }
        tracing::info!(provider = %done.provider, status = ?status, "reply finished");
        crate::metrics::reply(Some(status));
        Ok(Attempt::Finished(status))
    }

    /// A temporary failure (already counted in `attempts`): tried again
    /// after the backoff, or `failed` once the attempts are spent.
    async fn retry(
        &self,
        claimed: OutboxItem,
        reason: String,
        retry_after: Option<Duration>,
    ) -> Result<Attempt, ServiceError> {
        let attempts = claimed.delivery.attempts;
        if attempts >= self.settings.max_attempts {
            let why = format!("gave up after {attempts} attempts: {reason}");
            return self.finish(claimed, DeliveryStatus::Failed, None, Some(why)).await;
        }
        let at = self.service.now() + span(self.backoff(attempts).max(retry_after.unwrap_or_default()));
        let mut later = claimed.clone();
        let d = &mut later.delivery;
        d.revision += 1;
        d.next_attempt_at = Some(at);
        d.lease_owner = None;
        d.lease_until = None;
        d.error = Some(reason.clone());
        self.service.store.update_outbox(&later, claimed.delivery.revision).await?;
        tracing::warn!(provider = %later.provider, attempts, %reason, "reply not sent; will retry");
        crate::metrics::reply(None);
        Ok(Attempt::Retry { at })
    }

    /// `retry_initial` doubled per attempt already made, capped at
    /// `retry_max`, then jittered to between half and all of it.
    fn backoff(&self, attempts: u32) -> Duration {
        let doubled = self.settings.retry_initial.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let full = doubled.min(self.settings.retry_max);
        full.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

impl ConsentService {
    /// Records what a provider reported in a signed status callback: the
    /// number opted out (or is blocked) with that provider. Idempotent on
    /// the provider's message id. Returns false for a repeated callback.
    pub async fn handle_provider_block(&self, block: &ProviderBlock) -> Result<bool, ServiceError> {
        let program = block.clinic.as_ref().and_then(|clinic| self.programs.owner_of(clinic));
        self.record_block(block, program, true).await
    }

    /// An opt-out event with source `provider_block` and the provider's
    /// code, for `program` (every program when none is known).
    pub(crate) async fn record_block(
        &self,
        block: &ProviderBlock,
        program: Option<&Program>,
        signature_verified: bool,
    ) -> Result<bool, ServiceError> {
        if let Some(at) = block.occurred_at {
            check_event_time(at, "the callback's time")?;
        }
        let now = self.now();
        let occurred_at = block.occurred_at.map_or(now, |at| at.min(now));
        let id = format!("{}:{}", block.provider, block.message_id);
        let event_id = format!("{PROVIDER_BLOCK}:{id}");
        let pid = self.crypto.blind_index(&block.number);
        let scope = match program {
            Some(p) => Scope::Program { program: p.id.clone() },
            None => Scope::All,
        };
        let change = ConsentChange { event_id: event_id.clone(), occurred_at, consent: Consent::OptOut, scope };
        let event = EventItem {
            pid: pid.clone(),
            event_id,
            kind: "opt_out".into(),
            source: PROVIDER_BLOCK.into(),
            program: program.map(|p| p.id.clone()),
            categories: Vec::new(),
            text: None,
            evidence: None,
            caller: None,
            code: Some(format!("{}:{}", block.provider, block.code)),
            signature_verified,
            occurred_at,
            received_at: now,
            link: None,
        };
        let pending = Pending {
            phone: Some(&block.number),
            dedup_key: dedup_pk(PROVIDER_BLOCK, &id),
            extra_dedup_keys: Vec::new(),
            event,
            outbox: None,
            effect: Effect::Apply(&change),
            review: None,
        };
        let recorded = self.commit_event(pending).await?;
        crate::metrics::block_recorded(&block.provider, recorded);
        if recorded {
            tracing::info!(pid = %pid, provider = %block.provider, code = %block.code, "provider opt-out recorded");
        }
        Ok(recorded)
    }
}

//! The review queue: messages the classifier could not decide but that use
//! revocation vocabulary ("Stop?", "no more please???"). Each is recorded as
//! an `unclear` event (its text sealed like every text) and queued; staff list
//! the queue and decide. A revocation takes effect at the message's own time,
//! so it is ordered with everything else the patient said; either decision
//! takes the item off the queue and lifts the hold on sends that a program
//! with `unclear = "deny"` keeps meanwhile.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{ConsentService, Effect, Pending, ServiceError};
use crate::domain::{Consent, ConsentChange, Scope};
use crate::ports::keys::{is_review_sk, phone_pk, STATE_SK};
use crate::ports::{EventItem, ReviewItem, ReviewWrite};

/// Items in one page of the queue.
pub const REVIEW_PAGE: usize = 50;

/// What staff found an unclear message to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// The patient meant to stop: an opt-out of the program (of every
    /// program, if none owns the number it was sent to), as of the message.
    Revocation,
    /// An ordinary message: consent is unchanged.
    NotRevocation,
}

/// One queued message, opened for staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedReview {
    pub review: ReviewItem,
    /// The patient's number, E.164; `None` once erased.
    pub to: Option<String>,
    /// The message; `None` once erased.
    pub text: Option<String>,
    /// The provider it came through, and when it arrived.
    pub source: Option<String>,
    pub received_at: Option<OffsetDateTime>,
}

impl ConsentService {
    /// One page of open reviews, newest first, opened. Each number shown is
    /// recorded first (`review_read`, with the caller), as a history read is.
    pub async fn reviews(
        &self,
        before: Option<&str>,
        caller: &str,
    ) -> Result<(Vec<OpenedReview>, Option<String>), ServiceError> {
        if before.is_some_and(|b| !is_review_sk(b)) {
            return Err(ServiceError::Invalid("page_token: not a token this service gave".into()));
        }
        let (items, next) = self.store.reviews_page(before, REVIEW_PAGE).await?;
        // Each number is recorded as read before it is shown. A number whose
        // state fails its integrity check cannot be recorded: its items are
        // listed undisclosed (no number, no text), so one broken number never
        // hides the rest of the queue.
        let mut audited: Vec<&str> = Vec::new();
        let mut undisclosed: Vec<&str> = Vec::new();
        for item in &items {
            if audited.contains(&item.pid.as_str()) || undisclosed.contains(&item.pid.as_str()) {
                continue;
            }
            match self.audit(&item.pid, "review_read", caller).await {
                Ok(()) => audited.push(&item.pid),
                Err(ServiceError::Integrity) => undisclosed.push(&item.pid),
                Err(error) => return Err(error),
            }
        }
        let undisclosed: Vec<String> = undisclosed.into_iter().map(str::to_owned).collect();
        let mut opened = Vec::with_capacity(items.len());
        for review in items {
            let event: Option<EventItem> = self.store.event(&review.pid, &review.event_sort_key()).await?;
            let (source, received_at) = event.as_ref().map(|e| (e.source.clone(), e.received_at)).unzip();
            let (to, text) = if undisclosed.contains(&review.pid) {
                (None, None)
            } else {
                self.disclose(&review, event.as_ref()).await?
            };
            opened.push(OpenedReview { review, to, text, source, received_at });
        }
        tracing::info!(caller, items = opened.len(), "review queue read");
        Ok((opened, next))
    }

    /// The number (from its state, quarantined or not: a quarantine is about
    /// consent, not about who wrote) and the text of one queued message.
    async fn disclose(
        &self,
        review: &ReviewItem,
        event: Option<&EventItem>,
    ) -> Result<(Option<String>, Option<String>), ServiceError> {
        let pk = phone_pk(&review.pid);
        let sk = review.event_sort_key();
        let text = match event.and_then(|e| e.text.as_ref()) {
            Some(sealed) => Some(self.crypto.open(sealed, &pk, &sk, "text").await?),
            None => None,
        };
        let to = match self.read_state_unchecked_quarantine(&review.pid).await?.and_then(|s| s.phone) {
            Some(sealed) => Some(self.crypto.open(&sealed, &pk, STATE_SK, "phone").await?),
            None => None,
        };
        Ok((to, text))
    }

    /// Records a staff decision on one queued message, with the caller.
    /// `None` when no review of that event is open (never queued, or
    /// decided already); otherwise the id of the decision's event.
    pub async fn resolve_review(
        &self,
        event_id: &str,
        decision: ReviewDecision,
        caller: &str,
    ) -> Result<Option<String>, ServiceError> {
        if event_id.is_empty() || event_id.len() > 512 {
            return Err(ServiceError::Invalid("event_id: 1 to 512 characters".into()));
        }
        let Some(review) = self.store.review(event_id).await? else {
            return Ok(None);
        };
        let now = self.now();
        let decision_id = format!("review:{event_id}");
        let change = (decision == ReviewDecision::Revocation).then(|| ConsentChange {
            event_id: decision_id.clone(),
            occurred_at: review.occurred_at,
            consent: Consent::OptOut,
            scope: match &review.program {
                Some(program) => Scope::Program { program: program.clone() },
                None => Scope::All,
            },
        });
        let event = EventItem {
            pid: review.pid.clone(),
            event_id: decision_id.clone(),
            kind: match decision {
                ReviewDecision::Revocation => "revocation",
                ReviewDecision::NotRevocation => "not_revocation",
            }
            .into(),
            source: "review".into(),
            program: review.program.clone(),
            categories: Vec::new(),
            text: None,
            evidence: None,
            caller: Some(caller.to_owned()),
            code: None,
            signature_verified: false,
            occurred_at: change.as_ref().map_or(now, |c| c.occurred_at),
            received_at: now,
            link: None,
        };
        let pending = Pending {
            review: Some(ReviewWrite::Close(review.clone())),
            ..Pending::own(event, Effect::Resolve { review: &review, change: change.as_ref() })
        };
        if !self.commit_event(pending).await? {
            // Decided concurrently by someone else.
            return Ok(None);
        }
        tracing::info!(pid = %review.pid, caller, decision = %crate::domain::serde_name(&decision), "review resolved");
        Ok(Some(decision_id))
    }
}

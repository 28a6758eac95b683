//! Use cases for senders and staff: consent captured outside SMS, the
//! current state and history of a number, and erasure on request.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use super::ledger::ERASURE;
use super::{check_event_time, consent_decision, random_id, ConsentService, Effect, Pending, ServiceError};
use crate::domain::serde_name;
use crate::domain::{Consent, ConsentChange, Decision, PhoneNumber, Scope};
use crate::ports::keys::{event_sk, is_event_sk, phone_pk};
use crate::ports::{EventItem, OutboxItem};

/// How far ahead of the server's clock a `captured_at` may be (clock skew).
const CAPTURE_SKEW: Duration = Duration::minutes(5);
/// Events in one page of history.
pub const HISTORY_PAGE: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Prior express written consent (a signed form, a checkbox with disclosure).
    ExpressWritten,
    /// Prior express consent (the number given for this purpose).
    Express,
    /// Consent withdrawn outside SMS (a call, an email, the front desk).
    Revocation,
}

impl RecordKind {
    fn event_kind(self) -> &'static str {
        match self {
            RecordKind::ExpressWritten => "consent_express_written",
            RecordKind::Express => "consent_express",
            RecordKind::Revocation => "revocation",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaptureSource {
    WebForm,
    FrontDesk,
    Ehr,
    Import,
    PhoneCall,
    Email,
    Portal,
}

pub struct ConsentRecord<'a> {
    pub to: &'a str,
    pub program: &'a str,
    /// `None`: every category of the program.
    pub categories: Option<&'a [String]>,
    pub kind: RecordKind,
    pub source: CaptureSource,
    pub captured_at: OffsetDateTime,
    pub evidence: Option<&'a str>,
    /// The caller's own id for this record: a retry with it is a no-op.
    pub id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Recorded { event_id: String },
    Duplicate { event_id: String },
}

/// One category's consent, and the event that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryState {
    pub program: String,
    pub category: String,
    pub decision: Decision,
    pub decided_by: Option<String>,
}

/// A ledger entry opened for a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedEvent {
    pub event: EventItem,
    pub text: Option<String>,
    pub evidence: Option<String>,
    /// The confirmation that went through the outbox, if one did.
    pub reply: Option<OutboxItem>,
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(message.into())
}

impl ConsentService {
    pub(super) fn parse_number(&self, to: &str) -> Result<PhoneNumber, ServiceError> {
        PhoneNumber::parse(to).map_err(|e| invalid(format!("to: {e}")))
    }

    /// Records that `caller` read (`kind`) what the ledger holds of a number,
    /// before anything is disclosed.
    pub(crate) async fn audit(&self, pid: &str, kind: &str, caller: &str) -> Result<(), ServiceError> {
        self.commit_event(Pending::own(self.service_event(pid, kind, "api", Some(caller)), Effect::None)).await?;
        Ok(())
    }

    /// Records consent or a revocation captured outside SMS. It is ordered
    /// by `captured_at` with every other event, so a revocation by phone
    /// captured before a later START loses to it, and one after wins.
    pub async fn record_consent(
        &self,
        record: &ConsentRecord<'_>,
        caller: &str,
    ) -> Result<RecordOutcome, ServiceError> {
        let number = self.parse_number(record.to)?;
        let program = self
            .programs
            .get(record.program)
            .ok_or_else(|| invalid(format!("program: {:?} is not configured", record.program)))?;
        let scope = match record.categories {
            None => Scope::Program { program: program.id.clone() },
            Some([]) => return Err(invalid("categories: give at least one, or omit it for all of the program's")),
            Some(categories) => {
                if let Some(unknown) = categories.iter().find(|c| !program.has_category(c)) {
                    return Err(invalid(format!("categories: {unknown:?} is not a category of {:?}", program.id)));
                }
                let mut categories = categories.to_vec();
                categories.sort();
                categories.dedup();
                Scope::Categories { program: program.id.clone(), categories }
            }
        };
        if let Some(id) = record.id {
            if id.is_empty() || id.len() > 128 {
                return Err(invalid("id: 1 to 128 characters"));
            }
        }
        if record.evidence.is_some_and(|e| e.len() > 1024) {
            return Err(invalid("evidence: at most 1024 characters"));
        }
        let now = self.now();
        check_event_time(record.captured_at, "captured_at")?;
        if record.captured_at > now + CAPTURE_SKEW {
            return Err(invalid("captured_at: in the future"));
        }
        let occurred_at = record.captured_at.min(now);
        let event_id = match record.id {
            Some(id) => format!("api:{caller}:{id}"),
            None => format!("api:{caller}:{}", random_id()),
        };
        let pid = self.crypto.blind_index(&number);
        let pk = phone_pk(&pid);
        let sk = event_sk(occurred_at, &event_id);
        let evidence = match record.evidence {
            Some(e) => Some(self.crypto.seal(e, &pk, &sk, "evidence").await?),
            None => None,
        };
        let change = ConsentChange {
            event_id: event_id.clone(),
            occurred_at,
            consent: if record.kind == RecordKind::Revocation { Consent::OptOut } else { Consent::OptIn },
            scope: scope.clone(),
        };
        let event = EventItem {
            pid: pid.clone(),
            event_id: event_id.clone(),
            kind: record.kind.event_kind().to_owned(),
            source: serde_name(&record.source),
            program: Some(program.id.clone()),
            categories: match &scope {
                Scope::Categories { categories, .. } => categories.clone(),
                _ => Vec::new(),
            },
            text: None,
            evidence,
            caller: Some(caller.to_owned()),
            code: None,
            signature_verified: false,
            occurred_at,
            received_at: now,
            link: None,
        };
        let pending = Pending { phone: Some(&number), ..Pending::own(event, Effect::Apply(&change)) };
        if self.commit_event(pending).await? {
            tracing::info!(pid = %pid, caller, kind = record.kind.event_kind(), "consent recorded through the API");
            Ok(RecordOutcome::Recorded { event_id })
        } else {
            Ok(RecordOutcome::Duplicate { event_id })
        }
    }

    /// Current consent per program and category, with the deciding event.
    /// The read is recorded first (`state_read`, with the caller), as a
    /// history read is: a staff read, never an authorization.
    pub async fn consent_state(&self, to: &str, caller: &str) -> Result<Vec<CategoryState>, ServiceError> {
        let number = self.parse_number(to)?;
        let pid = self.crypto.blind_index(&number);
        self.audit(&pid, "state_read", caller).await?;
        let state = self.read_state(&pid).await?.map(|s| s.consent).unwrap_or_default();
        Ok(self
            .programs
            .sorted()
            .into_iter()
            .flat_map(|p| {
                let state = &state;
                p.categories.iter().map(move |c| CategoryState {
                    program: p.id.clone(),
                    category: c.clone(),
                    decision: consent_decision(state, p, c),
                    decided_by: state.deciding_mark(&p.id, c).map(|m| m.event_id.clone()),
                })
            })
            .collect())
    }

    /// One page of a number's ledger, newest first, opened. The read itself
    /// is recorded first, with the caller: nothing is disclosed unaudited.
    pub async fn history(
        &self,
        to: &str,
        before: Option<&str>,
        caller: &str,
    ) -> Result<(Vec<OpenedEvent>, Option<String>), ServiceError> {
        let number = self.parse_number(to)?;
        if before.is_some_and(|b| !is_event_sk(b)) {
            return Err(invalid("page_token: not a token this service gave"));
        }
        let pid = self.crypto.blind_index(&number);
        self.audit(&pid, "history_read", caller).await?;
        let (events, next) = self.store.events_page(&pid, before, HISTORY_PAGE).await?;
        self.check_links(&pid, &events)?;
        let mut replies: std::collections::HashMap<String, OutboxItem> =
            self.store.outbox(&pid).await?.into_iter().map(|item| (item.event_id.clone(), item)).collect();
        let pk = phone_pk(&pid);
        let mut opened = Vec::with_capacity(events.len());
        for event in events {
            let sk = event.sort_key();
            let text = match &event.text {
                Some(sealed) => Some(self.crypto.open(sealed, &pk, &sk, "text").await?),
                None => None,
            };
            let evidence = match &event.evidence {
                Some(sealed) => Some(self.crypto.open(sealed, &pk, &sk, "evidence").await?),
                None => None,
            };
            let reply = replies.remove(&event.event_id);
            opened.push(OpenedEvent { event, text, evidence, reply });
        }
        tracing::info!(pid = %pid, caller, "history read");
        Ok((opened, next))
    }

    /// Erasure on a data-subject request: no consent remains, and no text.
    /// In one commit, the erasure (recorded with the caller) revokes every
    /// consent of the number (an opt-out of every program, at the erasure's
    /// time, decided by the erasure's event: without its evidence a send
    /// could not be defended), removes the sealed number and closes every
    /// open review of it (their texts are about to go). Then every text and
    /// evidence reference goes; each event's kind and time stay. The number
    /// denies `opted_out` until the person opts in again. Returns how many
    /// events were scrubbed.
    pub async fn erase(&self, to: &str, caller: &str) -> Result<usize, ServiceError> {
        let number = self.parse_number(to)?;
        let pid = self.crypto.blind_index(&number);
        let audit = self.service_event(&pid, ERASURE, "api", Some(caller));
        let revocation = ConsentChange {
            event_id: audit.event_id.clone(),
            occurred_at: audit.occurred_at,
            consent: Consent::OptOut,
            scope: Scope::All,
        };
        self.commit_event(Pending::own(audit, Effect::Erase(&revocation))).await?;
        let scrubbed = self.store.scrub(&pid).await?;
        tracing::info!(pid = %pid, caller, scrubbed, "number erased");
        Ok(scrubbed)
    }
}

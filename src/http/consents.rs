//! Consent captured outside SMS, and a number's state, history and erasure.
//! Numbers travel only in request bodies.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::{ApiError, ProblemResponses};
use super::extract::{scope, Caller, JsonBody};
use super::AppState;
use crate::domain::Reason;
use crate::ports::{DeliveryStatus, OutboxItem};
use crate::service::records::{CaptureSource, ConsentRecord, RecordKind, RecordOutcome};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRecordRequest {
    /// The patient's number, E.164.
    #[schema(pattern = r"^\+[1-9][0-9]{6,14}$", example = "+14155550123")]
    pub to: String,
    pub program: String,
    /// Omitted: every category of the program.
    pub categories: Option<Vec<String>>,
    pub kind: RecordKind,
    pub source: CaptureSource,
    /// When the consent or revocation was given (RFC 3339); it is ordered
    /// with SMS events by this time.
    #[serde(with = "time::serde::rfc3339")]
    pub captured_at: OffsetDateTime,
    /// A reference to the evidence: a form, document or call id.
    pub evidence: Option<String>,
    /// The caller's id for this record; a retry with the same id is a no-op.
    pub id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentRecordAnswer {
    pub event_id: String,
    /// `recorded`, or `duplicate` for a retry with the same id.
    pub status: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NumberRequest {
    /// The number, E.164.
    #[schema(pattern = r"^\+[1-9][0-9]{6,14}$", example = "+14155550123")]
    pub to: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryConsent {
    pub program: String,
    pub category: String,
    pub allowed: bool,
    pub reason: Reason,
    #[serde(with = "time::serde::rfc3339::option")]
    pub as_of: Option<OffsetDateTime>,
    /// The event that decided it, if any.
    pub decided_by: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentStateAnswer {
    pub consents: Vec<CategoryConsent>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryRequest {
    /// The number, E.164.
    #[schema(pattern = r"^\+[1-9][0-9]{6,14}$", example = "+14155550123")]
    pub to: String,
    /// From the previous page's `next_page_token`.
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEvent {
    pub event_id: String,
    /// `opt_out`, `opt_out_all`, `opt_in`, `help`, `unclear`,
    /// `consent_express_written`, `consent_express`, `revocation`,
    /// `not_revocation`, `provider_block`, `history_read`, `state_read`,
    /// `review_read`, `erasure`, `evidence_export`, `purge`.
    pub kind: String,
    /// The provider, the capture source, `review` (a staff decision on an
    /// unclear message), or `api`.
    pub source: String,
    pub caller: Option<String>,
    pub program: Option<String>,
    pub categories: Vec<String>,
    /// The message as the patient wrote it; null once erased.
    pub text: Option<String>,
    pub evidence: Option<String>,
    pub signature_verified: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// For a `provider_block` event: the provider and its code (`telnyx:40300`).
    pub code: Option<String>,
    /// For an event whose confirmation went through the outbox (the
    /// provider's webhook answer could not carry it): what became of it.
    pub reply: Option<ReplyRecord>,
}

/// What became of a confirmation sent through a provider's API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplyRecord {
    pub status: DeliveryStatus,
    /// The provider it goes through.
    pub provider: String,
    /// The confirmation's text (a template: no PHI).
    pub body: String,
    /// Send attempts made.
    pub attempts: u32,
    /// When it was sent, failed, expired or was superseded; null while pending.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The provider's id of the message sent.
    pub provider_message_id: Option<String>,
    /// Why it failed, expired or was superseded, or the last temporary error.
    pub error: Option<String>,
    /// While pending after a temporary failure: the next attempt.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
}

impl From<OutboxItem> for ReplyRecord {
    fn from(item: OutboxItem) -> Self {
        let d = item.delivery;
        ReplyRecord {
            status: d.status,
            provider: item.provider,
            body: item.body,
            attempts: d.attempts,
            finished_at: d.finished_at,
            provider_message_id: d.provider_message_id,
            error: d.error,
            next_attempt_at: d.next_attempt_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryAnswer {
    /// Newest first.
    pub events: Vec<LedgerEvent>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureAnswer {
    pub status: String,
    /// Events whose text or evidence was removed.
    pub events_scrubbed: usize,
}

/// The `page_token` handed out for the page after `sort_key`: the event's
/// sort key, base64url (an opaque cursor, nothing to do with API keys).
pub(super) fn page_cursor(sort_key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sort_key)
}

/// The sort key a `page_token` stands for.
pub(super) fn cursor_position(page_token: &str) -> Result<String, ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(page_token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::BadRequest("page_token: not a token this service gave".into()))
}

/// Record consent or a revocation captured outside SMS.
#[utoipa::path(
    post, path = "/v1/consents", tag = "consents", request_body = ConsentRecordRequest,
    responses(
        (status = 201, description = "Recorded", body = ConsentRecordAnswer),
        (status = 200, description = "Already recorded under this id", body = ConsentRecordAnswer),
        ProblemResponses,
    ),
    security(("api_key" = []))
)]
pub async fn record(
    State(state): State<AppState>,
    caller: Caller<scope::Record>,
    JsonBody(r): JsonBody<ConsentRecordRequest>,
) -> Result<(StatusCode, Json<ConsentRecordAnswer>), ApiError> {
    let record = ConsentRecord {
        to: &r.to,
        program: &r.program,
        categories: r.categories.as_deref(),
        kind: r.kind,
        source: r.source,
        captured_at: r.captured_at,
        evidence: r.evidence.as_deref(),
        id: r.id.as_deref(),
    };
    Ok(match state.service.record_consent(&record, &caller.name).await? {
        RecordOutcome::Recorded { event_id } => {
            (StatusCode::CREATED, Json(ConsentRecordAnswer { event_id, status: "recorded".into() }))
        }
        RecordOutcome::Duplicate { event_id } => {
            (StatusCode::OK, Json(ConsentRecordAnswer { event_id, status: "duplicate".into() }))
        }
    })
}

/// Current consent of a number, per program and category. The read is recorded.
#[utoipa::path(
    post, path = "/v1/consents/state", tag = "consents", request_body = NumberRequest,
    responses(
        (status = 200, description = "Consent per program and category", body = ConsentStateAnswer),
        ProblemResponses,
    ),
    security(("api_key" = []))
)]
pub async fn consent_state(
    State(state): State<AppState>,
    caller: Caller<scope::ReadHistory>,
    JsonBody(r): JsonBody<NumberRequest>,
) -> Result<Json<ConsentStateAnswer>, ApiError> {
    let consents = state
        .service
        .consent_state(&r.to, &caller.name)
        .await?
        .into_iter()
        .map(|c| CategoryConsent {
            program: c.program,
            category: c.category,
            allowed: c.decision.allowed,
            reason: c.decision.reason,
            as_of: c.decision.as_of,
            decided_by: c.decided_by,
        })
        .collect();
    Ok(Json(ConsentStateAnswer { consents }))
}

/// The ledger of a number, newest first, 50 a page. The read is recorded.
#[utoipa::path(
    post, path = "/v1/consents/events", tag = "consents", request_body = HistoryRequest,
    responses(
        (status = 200, description = "One page of the ledger", body = HistoryAnswer),
        ProblemResponses,
    ),
    security(("api_key" = []))
)]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller<scope::ReadHistory>,
    JsonBody(r): JsonBody<HistoryRequest>,
) -> Result<Json<HistoryAnswer>, ApiError> {
    let before = r.page_token.as_deref().map(cursor_position).transpose()?;
    let (events, next) = state.service.history(&r.to, before.as_deref(), &caller.name).await?;
    let events = events
        .into_iter()
        .map(|o| LedgerEvent {
            event_id: o.event.event_id,
            kind: o.event.kind,
            source: o.event.source,
            caller: o.event.caller,
            program: o.event.program,
            categories: o.event.categories,
            text: o.text,
            evidence: o.evidence,
            signature_verified: o.event.signature_verified,
            occurred_at: o.event.occurred_at,
            received_at: o.event.received_at,
            code: o.event.code,
            reply: o.reply.map(ReplyRecord::from),
        })
        .collect();
    Ok(Json(HistoryAnswer { events, next_page_token: next.as_deref().map(page_cursor) }))
}

/// Erase a number on a data-subject request: every consent is revoked with it
/// (it denies `opted_out` until a new opt-in).
#[utoipa::path(
    post, path = "/v1/consents/erasure", tag = "consents", request_body = NumberRequest,
    responses(
        (status = 200, description = "Erased (safe to repeat)", body = ErasureAnswer),
        ProblemResponses,
    ),
    security(("api_key" = []))
)]
pub async fn erasure(
    State(state): State<AppState>,
    caller: Caller<scope::Erase>,
    JsonBody(r): JsonBody<NumberRequest>,
) -> Result<Json<ErasureAnswer>, ApiError> {
    let events_scrubbed = state.service.erase(&r.to, &caller.name).await?;
    Ok(Json(ErasureAnswer { status: "erased".into(), events_scrubbed }))
}

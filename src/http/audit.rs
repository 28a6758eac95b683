//! The access report a privacy officer runs: who read, recorded, erased,
//! exported or purged what, by blind index and caller. No PHI: no number,
//! no text.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::consents::{cursor_position, page_cursor};
use super::error::{ApiError, ProblemResponses};
use super::extract::{scope, Caller, JsonBody};
use super::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditRequest {
    /// The start of the range (RFC 3339), included.
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// The end of the range (RFC 3339), excluded: after `from`, at most 31
    /// days after it.
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    /// From the previous page's `next_page_token`.
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRecord {
    /// When it was done.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The API key's name, or the IAM principal (on Lambda), or the
    /// operator of a purge.
    pub caller: String,
    /// `state_read`, `history_read`, `review_read`, `consent_express_written`,
    /// `consent_express`, `revocation`, `not_revocation`, `erasure`,
    /// `evidence_export`, `purge`.
    pub kind: String,
    /// The number's blind index (never the number).
    pub pid: String,
    /// The ledger event that records it.
    pub event_id: String,
    pub program: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditAnswer {
    /// Oldest first, at most 100.
    pub entries: Vec<AuditRecord>,
    pub next_page_token: Option<String>,
}

/// The access report over a time range of at most 31 days, oldest first,
/// 100 a page.
#[utoipa::path(
    post, path = "/v1/audit", tag = "audit", request_body = AuditRequest,
    responses(
        (status = 200, description = "One page of the access report", body = AuditAnswer),
        ProblemResponses,
    ),
    security(("api_key" = []))
)]
pub async fn access_report(
    State(state): State<AppState>,
    caller: Caller<scope::Audit>,
    JsonBody(r): JsonBody<AuditRequest>,
) -> Result<Json<AuditAnswer>, ApiError> {
    let after = r.page_token.as_deref().map(cursor_position).transpose()?;
    let (entries, next) = state.service.access_report(r.from, r.to, after.as_deref()).await?;
    tracing::info!(caller = %caller.name, entries = entries.len(), "access report read");
    let entries = entries
        .into_iter()
        .map(|e| AuditRecord {
            at: e.at,
            caller: e.caller,
            kind: e.kind,
            pid: e.pid,
            event_id: e.event_id,
            program: e.program,
        })
        .collect();
    Ok(Json(AuditAnswer { entries, next_page_token: next.as_deref().map(page_cursor) }))
}

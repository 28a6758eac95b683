//! `POST /v1/authorizations`: may program P send category C to number N at
//! time T? Consent, the recipient's hours and the program's caps, with
//! reservations. One request or a batch of up to 100. A valid request
//! always gets 200 with a decision per number; failures deny.
//! `POST /v1/reservations/release` gives back a reserved send.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::{ApiError, Problem, ProblemResponses};
use super::extract::{invalid_body, scope, Caller, JsonBody};
use super::AppState;
use crate::domain::{Decision, Reason};
use crate::service::gate::SendPlan;
use crate::service::AuthorizationQuery;

/// The largest batch, as one `BatchGetItem` can read.
pub const MAX_BATCH: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRequest {
    /// The recipient, E.164. Anything else is answered with `invalid_number`.
    #[schema(example = "+14155550123")]
    pub to: String,
    /// A program id from config.
    pub program: String,
    /// One of the program's categories.
    pub category: String,
    /// What the clinic knows of where the patient is; beats the
    /// presumption from the number.
    #[serde(default)]
    pub recipient: Option<Recipient>,
    /// When the send will happen, RFC 3339 (default now; up to 14 days ahead).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub send_at: Option<OffsetDateTime>,
    /// Count the send if it is allowed, and return a `reservation_id`.
    #[serde(default)]
    pub reserve: bool,
    /// The message's segments, for the healthcare exemption (one at most).
    pub segments: Option<u32>,
    /// The message's length in characters, for the healthcare exemption (160 at most).
    pub length: Option<u32>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    /// IANA time zone, e.g. `America/Chicago`.
    pub time_zone: Option<String>,
    /// Two-letter US state or territory, e.g. `FL`.
    pub state: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationBatch {
    /// 1 to 100 requests, answered in the same order.
    #[schema(min_items = 1, max_items = 100)]
    pub requests: Vec<AuthorizationRequest>,
}

/// One request, or a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AuthorizationBody {
    Batch(AuthorizationBatch),
    Single(AuthorizationRequest),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationAnswer {
    pub allowed: bool,
    pub reason: Reason,
    /// Time of the deciding event; null when no event decided it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub as_of: Option<OffsetDateTime>,
    /// When a time or volume rule denies: the first moment it would allow.
    #[serde(with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_allowed_at: Option<OffsetDateTime>,
    /// With `reserve`: the id that releases the reserved send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub to: String,
    #[serde(flatten)]
    pub decision: AuthorizationAnswer,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// A `reservation_id` an authorization returned.
    pub reservation_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseAnswer {
    /// `released`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    pub results: Vec<BatchResult>,
}

impl From<Decision> for AuthorizationAnswer {
    fn from(d: Decision) -> Self {
        AuthorizationAnswer {
            allowed: d.allowed,
            reason: d.reason,
            as_of: d.as_of,
            next_allowed_at: d.next_allowed_at,
            reservation_id: d.reservation_id,
        }
    }
}

/// The program as logs may name it: a configured id, or `unknown`. The
/// caller's string reaches the logs only when it is a configured program
/// (the service answers `unknown_program` for anything else, before it
/// looks at the number), so a number or text sent as `program` never does.
fn logged_program<'a>(program: &'a str, decision: &Decision) -> &'a str {
    let id_like = !program.is_empty() && program.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if decision.reason == Reason::UnknownProgram || !id_like {
        "unknown"
    } else {
        program
    }
}

fn query(r: &AuthorizationRequest) -> AuthorizationQuery<'_> {
    AuthorizationQuery { to: &r.to, program: &r.program, category: &r.category }
}

fn plan(r: &AuthorizationRequest) -> SendPlan<'_> {
    let recipient = r.recipient.as_ref();
    SendPlan {
        time_zone: recipient.and_then(|p| p.time_zone.as_deref()),
        state: recipient.and_then(|p| p.state.as_deref()),
        send_at: r.send_at,
        reserve: r.reserve,
        segments: r.segments,
        length: r.length,
    }
}

/// Decide whether a program may send a category of message to a number.
#[utoipa::path(
    post,
    path = "/v1/authorizations",
    tag = "authorization",
    request_body = AuthorizationBody,
    responses(
        (status = 200, description = "A decision (single request) or a decision per request, in order (batch)", body = inline(AuthorizationResponse)),
        ProblemResponses,
    ),
    security(("api_key" = []))
)]
pub async fn authorize(
    State(state): State<AppState>,
    caller: Caller<scope::Authorize>,
    JsonBody(request): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    if request.get("requests").is_none() {
        let single: AuthorizationRequest = serde_json::from_value(request).map_err(invalid_body)?;
        state.service.check_plan(&query(&single), &plan(&single))?;
        let decision = state.service.authorize_send(&query(&single), &plan(&single)).await;
        let program = logged_program(&single.program, &decision);
        tracing::info!(caller = %caller.name, program, allowed = decision.allowed, reason = ?decision.reason, "authorization");
        crate::metrics::authorization(&decision.reason);
        return Ok(Json(AuthorizationAnswer::from(decision)).into_response());
    }
    let batch: AuthorizationBatch = serde_json::from_value(request).map_err(invalid_body)?;
    if batch.requests.is_empty() || batch.requests.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "a batch holds 1 to {MAX_BATCH} requests, not {}",
            batch.requests.len()
        )));
    }
    let queries: Vec<_> = batch.requests.iter().map(query).collect();
    let plans: Vec<_> = batch.requests.iter().map(plan).collect();
    for (i, (q, p)) in queries.iter().zip(&plans).enumerate() {
        state.service.check_plan(q, p).map_err(|e| ApiError::BadRequest(format!("requests[{i}].{e}")))?;
    }
    let decisions = state.service.authorize_batch(&queries, &plans).await;
    let allowed = decisions.iter().filter(|d| d.allowed).count();
    decisions.iter().for_each(|d| crate::metrics::authorization(&d.reason));
    tracing::info!(caller = %caller.name, requests = decisions.len(), allowed, "batch authorization");
    let results =
        batch.requests.into_iter().zip(decisions).map(|(r, d)| BatchResult { to: r.to, decision: d.into() }).collect();
    Ok(Json(BatchAnswer { results }).into_response())
}

/// Give back a reserved send that did not happen, so it does not count.
#[utoipa::path(
    post,
    path = "/v1/reservations/release",
    tag = "authorization",
    request_body = ReleaseRequest,
    responses(
        (status = 200, description = "Released", body = ReleaseAnswer),
        (status = 404, description = "No such reservation (never made, or released already)", body = Problem,
            content_type = "application/problem+json"),
        ProblemResponses,
    ),
    security(("api_key" = []))
)]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller<scope::Authorize>,
    JsonBody(request): JsonBody<ReleaseRequest>,
) -> Result<Json<ReleaseAnswer>, ApiError> {
    if state.service.release(&request.reservation_id).await? {
        tracing::info!(caller = %caller.name, "reservation released");
        Ok(Json(ReleaseAnswer { status: "released".into() }))
    } else {
        Err(ApiError::NoSuchReservation)
    }
}

/// The answer: one decision, or the batch's.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum AuthorizationResponse {
    Single(AuthorizationAnswer),
    Batch(BatchAnswer),
}

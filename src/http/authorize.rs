//! `POST /v1/authorizations`: may program P send category C to number N now?
//! One request or a batch of up to 100. A valid request always gets 200
//! with a decision per number; failures deny.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::{ApiError, ProblemResponses};
use super::extract::{invalid_body, scope, Caller, JsonBody};
use super::AppState;
use crate::domain::{Decision, Reason};
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
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub to: String,
    pub allowed: bool,
    pub reason: Reason,
    #[serde(with = "time::serde::rfc3339::option")]
    pub as_of: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    pub results: Vec<BatchResult>,
}

impl From<Decision> for AuthorizationAnswer {
    fn from(d: Decision) -> Self {
        AuthorizationAnswer { allowed: d.allowed, reason: d.reason, as_of: d.as_of }
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
        let decision = state.service.authorize(&query(&single)).await;
        let program = logged_program(&single.program, &decision);
        tracing::info!(caller = %caller.name, program, allowed = decision.allowed, reason = ?decision.reason, "authorization");
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
    let decisions = state.service.authorize_many(&queries).await;
    let allowed = decisions.iter().filter(|d| d.allowed).count();
    tracing::info!(caller = %caller.name, requests = decisions.len(), allowed, "batch authorization");
    let results = batch
        .requests
        .into_iter()
        .zip(decisions)
        .map(|(r, d)| BatchResult { to: r.to, allowed: d.allowed, reason: d.reason, as_of: d.as_of })
        .collect();
    Ok(Json(BatchAnswer { results }).into_response())
}

/// The answer: one decision, or the batch's.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum AuthorizationResponse {
    Single(AuthorizationAnswer),
    Batch(BatchAnswer),
}

//! The review queue for staff: unclear messages, newest first, and the
//! decision on each. Numbers and texts travel only in bodies.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::consents::{cursor_position, page_cursor};
use super::error::{ApiError, Problem, ProblemResponses};
use super::extract::{scope, Caller, JsonBody};
use super::AppState;
use crate::service::reviews::ReviewDecision;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewsRequest {
    /// From the previous page's `next_page_token`.
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenReview {
    /// The unclear message's event: what `/v1/reviews/resolve` takes.
    pub event_id: String,
    /// The patient's number, E.164; null once erased.
    pub to: Option<String>,
    /// The program whose number received it; null when no program owns it
    /// (a revocation then covers every program).
    pub program: Option<String>,
    /// The message as the patient wrote it; null once erased.
    pub text: Option<String>,
    /// The provider it came through.
    pub source: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub received_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewsAnswer {
    /// Newest first, at most 50.
    pub reviews: Vec<OpenReview>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub event_id: String,
    pub decision: ReviewDecision,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResolveAnswer {
    /// The event that records the decision.
    pub event_id: String,
    pub decision: ReviewDecision,
}

/// Unclear messages awaiting a decision, newest first, 50 a page. Each number shown is recorded as read.
#[utoipa::path(
    post, path = "/v1/reviews", tag = "reviews", request_body = ReviewsRequest,
    responses(
        (status = 200, description = "One page of the queue", body = ReviewsAnswer),
        ProblemResponses,
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller<scope::Review>,
    JsonBody(r): JsonBody<ReviewsRequest>,
) -> Result<Json<ReviewsAnswer>, ApiError> {
    let before = r.page_token.as_deref().map(cursor_position).transpose()?;
    let (items, next) = state.service.reviews(before.as_deref(), &caller.name).await?;
    let reviews = items
        .into_iter()
        .map(|o| OpenReview {
            event_id: o.review.event_id,
            to: o.to,
            program: o.review.program,
            text: o.text,
            source: o.source,
            occurred_at: o.review.occurred_at,
            received_at: o.received_at,
        })
        .collect();
    Ok(Json(ReviewsAnswer { reviews, next_page_token: next.as_deref().map(page_cursor) }))
}

/// Decide an unclear message: a revocation takes effect at the message's own time.
#[utoipa::path(
    post, path = "/v1/reviews/resolve", tag = "reviews", request_body = ResolveRequest,
    responses(
        (status = 200, description = "Recorded, with the caller", body = ResolveAnswer),
        (status = 404, description = "No open review of this event (never queued, or decided already)", body = Problem,
            content_type = "application/problem+json"),
        ProblemResponses,
    ),
    security(("api_key" = []))
)]
pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller<scope::Review>,
    JsonBody(r): JsonBody<ResolveRequest>,
) -> Result<Json<ResolveAnswer>, ApiError> {
    match state.service.resolve_review(&r.event_id, r.decision, &caller.name).await? {
        Some(event_id) => Ok(Json(ResolveAnswer { event_id, decision: r.decision })),
        None => Err(ApiError::NoSuchReview),
    }
}

//! `POST /v1/authorizations`: may program P send category C to number N now?
//! A valid request always gets 200 with a decision; failures deny.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::auth::authenticate;
use super::error::ApiError;
use super::{read_body, AppState};
use crate::config::ApiScope;
use crate::domain::{Decision, Reason};
use crate::service::AuthorizationQuery;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRequest {
    pub to: String,
    pub program: String,
    pub category: String,
}

#[derive(Serialize)]
pub struct AuthorizationAnswer {
    pub allowed: bool,
    pub reason: Reason,
    #[serde(with = "time::serde::rfc3339::option")]
    pub as_of: Option<OffsetDateTime>,
}

impl From<Decision> for AuthorizationAnswer {
    fn from(d: Decision) -> Self {
        AuthorizationAnswer { allowed: d.allowed, reason: d.reason, as_of: d.as_of }
    }
}

pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body is not valid: {e}")))
}

pub async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AuthorizationAnswer>, ApiError> {
    let caller = authenticate(&state.api_keys, &headers, ApiScope::Authorize)?;
    let body = read_body(&headers, body).await?;
    let request: AuthorizationRequest = parse_json(&body)?;
    let decision = state
        .service
        .authorize(&AuthorizationQuery { to: &request.to, program: &request.program, category: &request.category })
        .await;
    tracing::info!(caller = caller.name, program = %request.program, allowed = decision.allowed, reason = ?decision.reason, "authorization");
    Ok(Json(decision.into()))
}

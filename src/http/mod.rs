//! The HTTP surface: one axum Router, served locally by `axum::serve` and on
//! Lambda by `lambda_http`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::Router;

use crate::config::{Config, ProvidersConfig};
use crate::providers::aws_sns::{SnsNetwork, SnsVerifier};
use crate::service::ConsentService;

pub mod auth;
pub mod authorize;
pub mod consents;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod webhooks;

use auth::Authenticator;
use error::ApiError;

/// Bodies larger than this are refused with 413 before any parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub service: ConsentService,
    /// The URL providers sign, without a trailing slash; when config has
    /// none (on Lambda behind the API's own URL), it is taken from the API
    /// Gateway request context of each request.
    pub public_base_url: Option<String>,
    pub providers: ProvidersConfig,
    pub sns: SnsVerifier,
    pub auth: Authenticator,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        config: &Config,
        service: ConsentService,
        sns_network: Arc<dyn SnsNetwork>,
        auth: Authenticator,
    ) -> Self {
        AppState(Arc::new(Inner {
            service,
            public_base_url: config.server.public_base_url.as_deref().map(|u| u.trim_end_matches('/').to_owned()),
            providers: config.providers.clone(),
            sns: SnsVerifier::new(sns_network),
            auth,
        }))
    }
}

/// Which routes a process serves: everything locally; on Lambda one role per
/// function, so each function holds only its own permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    /// The provider webhooks.
    Webhook,
    /// `POST /v1/authorizations` and `GET /openapi.json`.
    Authorize,
    /// `/v1/consents*`.
    Consents,
}

pub fn router(state: AppState) -> Router {
    router_for(state, Role::All)
}

pub fn router_for(state: AppState, role: Role) -> Router {
    let serves = |r: Role| role == Role::All || role == r;
    let mut app = Router::new().route("/healthz", get(healthz));
    if serves(Role::Webhook) {
        app = app
            .route("/webhooks/twilio", post(webhooks::twilio))
            .route("/webhooks/standard-webhooks", post(webhooks::standard_webhooks))
            .route("/webhooks/telnyx", post(webhooks::telnyx))
            .route("/webhooks/plivo", post(webhooks::plivo).get(webhooks::plivo))
            .route("/webhooks/vonage", post(webhooks::vonage).get(webhooks::vonage))
            .route("/webhooks/sinch", post(webhooks::sinch))
            .route("/webhooks/bandwidth", post(webhooks::bandwidth))
            .route("/webhooks/bird", post(webhooks::bird).get(webhooks::bird))
            .route("/webhooks/aws-sns", post(webhooks::aws_sns));
    }
    if serves(Role::Authorize) {
        app = app.route("/v1/authorizations", post(authorize::authorize)).route("/openapi.json", get(openapi_json));
    }
    if serves(Role::Consents) {
        app = app
            .route("/v1/consents", post(consents::record))
            .route("/v1/consents/state", post(consents::consent_state))
            .route("/v1/consents/events", post(consents::history))
            .route("/v1/consents/erasure", post(consents::erasure));
    }
    app.fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: String,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into() })
}

async fn openapi_json() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi::document())
}

/// Reads the whole body, refusing with 413 past the limit (by the declared
/// length first, so an oversized body is never buffered).
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| ApiError::PayloadTooLarge(MAX_BODY_BYTES))
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

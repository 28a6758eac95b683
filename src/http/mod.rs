//! The HTTP surface: one axum Router, served locally by `axum::serve` and on
//! Lambda by `lambda_http`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::Router;

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;

use crate::config::Config;
use crate::providers::Provider;
use crate::service::ConsentService;

pub mod audit;
pub mod auth;
pub mod authorize;
pub mod consents;
pub mod error;
pub mod evidence;
pub mod extract;
pub mod openapi;
pub mod portal;
pub mod reviews;
pub mod webhooks;

use auth::Authenticator;
use error::ApiError;

/// Bodies larger than this are refused with 413 before any parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares: cheap to clone, each part behind an `Arc`.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<ConsentService>,
    /// The URL providers sign, without a trailing slash; when config has
    /// none (on Lambda behind the API's own URL), it is taken from the API
    /// Gateway request context of each request.
    pub public_base_url: Option<Arc<str>>,
    /// The configured providers, built once: each has a webhook route.
    pub providers: Arc<[Arc<dyn Provider>]>,
    pub auth: Arc<Authenticator>,
    /// The patient preference page (`[preferences]`), when enabled.
    pub portal: Option<Arc<portal::Portal>>,
}

impl AppState {
    /// Over a validated config and the providers it names, built once
    /// (`runtime::build`).
    pub fn new(
        config: &Config,
        service: ConsentService,
        providers: Vec<Arc<dyn Provider>>,
        auth: Authenticator,
    ) -> Self {
        AppState {
            service: Arc::new(service),
            public_base_url: config.server.public_base_url.as_deref().map(|u| u.trim_end_matches('/').into()),
            providers: providers.into(),
            auth: Arc::new(auth),
            portal: portal::Portal::from_config(config).map(Arc::new),
        }
    }
}

/// Which routes a process serves: everything locally; on Lambda one role per
/// function, so each function holds only its own permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    /// The provider webhooks.
    Webhook,
    /// `POST /v1/authorizations`, `POST /v1/reservations/release` and
    /// `GET /openapi.json`.
    Authorize,
    /// `/v1/consents*`, `/v1/reviews*` and `/v1/audit`.
    Consents,
}

impl Role {
    /// Whether its routes (or the outbox worker, built as `Webhook`) use the
    /// providers, and so read their secrets: `authorize` and `consents`
    /// never do.
    pub fn uses_providers(self) -> bool {
        matches!(self, Role::All | Role::Webhook)
    }
}

pub fn router_for(state: AppState, role: Role) -> Router {
    let serves = |r: Role| role == Role::All || role == r;
    let mut app = Router::new().route("/healthz", get(healthz));
    if serves(Role::Webhook) {
        // One route per configured provider; an unconfigured one has none
        // (the fallback's 404).
        for provider in state.providers.iter() {
            app = app.route(&format!("/webhooks/{}", provider.name()), webhooks::route(provider.clone()));
        }
    }
    if serves(Role::Authorize) {
        app = app
            .route("/v1/authorizations", post(authorize::authorize))
            .route("/v1/reservations/release", post(authorize::release))
            .route("/openapi.json", get(openapi_json));
    }
    if serves(Role::Consents) {
        app = app
            .route("/v1/consents", post(consents::record))
            .route("/v1/consents/state", post(consents::consent_state))
            .route("/v1/consents/events", post(consents::history))
            .route("/v1/consents/erasure", post(consents::erasure))
            .route("/v1/consents/evidence", post(evidence::export))
            .route("/v1/reviews", post(reviews::list))
            .route("/v1/reviews/resolve", post(reviews::resolve))
            .route("/v1/audit", post(audit::access_report));
    }
    if role == Role::All {
        // Lambda functions report through EMF log lines instead.
        app = app.route("/metrics", get(metrics_text));
    }
    if state.portal.is_some() {
        // The preference page is public (its signed link is the credential),
        // as the webhooks are; its links are made by senders and staff.
        if serves(Role::Webhook) {
            app = app.route("/p/{token}", get(portal::page).post(portal::submit));
        }
        if serves(Role::Consents) {
            app = app.route("/v1/preference-links", post(portal::make_link));
        }
    }
    app.fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn(traced))
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

/// The service's counters and histograms, in Prometheus text format 0.0.4.
///
/// API key scope `metrics`; served by the local server only (the Lambda
/// functions write the same counts as CloudWatch EMF log lines).
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4; no label holds a number, a text or a token", content_type = "text/plain", body = String),
        (status = 401, description = "No API key, or an unknown one", content_type = "application/problem+json", body = error::Problem),
        (status = 403, description = "The key lacks the scope `metrics`", content_type = "application/problem+json", body = error::Problem),
        (status = 404, description = "Metrics are off (`[metrics] enabled = false`)", content_type = "application/problem+json", body = error::Problem),
    ),
    security(("api_key" = []))
)]
async fn metrics_text(_caller: extract::Caller<extract::scope::Metrics>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let text = crate::metrics::render().ok_or(ApiError::NotFound)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

/// Every request in a span with its route's template (never the path, the
/// query or the body: no PHI), answered with its status and duration in a
/// log line and in `metrics::HTTP_REQUESTS`.
async fn traced(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument;
    let route = request.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let span = tracing::info_span!("request", method = %request.method(), route = %route);
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let took = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| tracing::info!(route = %route, status, duration_ms = took.as_secs_f64() * 1e3, "request"));
    crate::metrics::request(route, status, took);
    response
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

/// What API Gateway wrote in the request context (Lambda only): read here
/// and nowhere else; locally there is none.
pub struct GatewayContext<'a>(Option<&'a ApiGatewayV2httpRequestContext>);

impl<'a> GatewayContext<'a> {
    pub fn of(extensions: &'a axum::http::Extensions) -> Self {
        match extensions.get::<lambda_http::request::RequestContext>() {
            Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) => GatewayContext(Some(context)),
            _ => GatewayContext(None),
        }
    }

    /// The API's own URL (its domain name and stage), never the client's
    /// Host header.
    pub fn api_url(&self) -> Option<String> {
        let context = self.0?;
        let domain = context.domain_name.as_deref()?;
        match context.stage.as_deref() {
            None | Some("$default") => Some(format!("https://{domain}")),
            Some(stage) => Some(format!("https://{domain}/{stage}")),
        }
    }

    /// The IAM principal the `AWS_IAM` authorizer identified.
    pub fn principal_arn(&self) -> Option<&'a str> {
        self.0?.authorizer.as_ref()?.iam.as_ref()?.user_arn.as_deref()
    }
}

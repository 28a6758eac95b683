//! The one mapping from errors to HTTP statuses. Every error body is RFC 9457
//! problem details; 4xx say what was wrong, 5xx say nothing of the cause
//! (which is logged).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::ApiScope;
use crate::domain::serde_name;
use crate::providers::{PayloadError, SignatureError};
use crate::service::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or unknown API key")]
    Unauthenticated,
    #[error("the caller lacks the {} scope", serde_name(.0))]
    Forbidden(ApiScope),
    #[error("this IAM principal is not mapped to any scope in [[iam_principals]]")]
    UnmappedPrincipal,
    #[error("webhook signature refused: {0}")]
    BadSignature(#[from] SignatureError),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request was not completed within {0} seconds")]
    RequestTimeout(u64),
    #[error("no such route")]
    NotFound,
    /// A release of a reservation that is not there.
    #[error("no such reservation (never made, or released already)")]
    NoSuchReservation,
    /// A decision on a review that is not open.
    #[error("no open review of this event (never queued, or decided already)")]
    NoSuchReview,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("the topic is not on this endpoint's allow-list")]
    TopicNotAllowed,
    #[error("an upstream call failed")]
    Upstream(String),
    /// A setting the request needs is missing: 503, so the provider retries
    /// once the deployment is fixed.
    #[error("{0} is not configured")]
    Misconfigured(&'static str),
    #[error("service unavailable")]
    Unavailable(ServiceError),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(message) => ApiError::BadRequest(message),
            other => ApiError::Unavailable(other),
        }
    }
}

impl From<PayloadError> for ApiError {
    fn from(e: PayloadError) -> Self {
        ApiError::BadRequest(e.0)
    }
}

/// RFC 9457 problem details.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What was wrong, for a 4xx; nothing of the cause, for a 5xx.
    pub detail: String,
}

/// The problem answers every `/v1` route can give, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ProblemResponses {
    /// Malformed request: unreadable JSON, a missing or unknown field, an invalid value.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No caller identified (API key missing or unknown; no IAM principal).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(Problem),
    /// The caller lacks this route's scope (or its IAM principal is not mapped).
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// The body is over 64 KiB.
    #[response(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Problem),
    /// The store or a key could not be reached; nothing was changed or shown. Retry.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

impl ApiError {
    fn status_and_slug(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden(_) | ApiError::UnmappedPrincipal => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadSignature(_) => (StatusCode::UNAUTHORIZED, "invalid-signature"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
            ApiError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request-timeout"),
            ApiError::NotFound | ApiError::NoSuchReservation | ApiError::NoSuchReview => {
                (StatusCode::NOT_FOUND, "not-found")
            }
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed"),
            ApiError::TopicNotAllowed => (StatusCode::FORBIDDEN, "topic-not-allowed"),
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream-failed"),
            ApiError::Misconfigured(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug) = self.status_and_slug();
        let detail = match &self {
            ApiError::Unavailable(cause) => {
                tracing::error!(error = %cause, "request failed; answering 503 so the caller retries");
                "The service could not complete the request; retry later.".to_owned()
            }
            ApiError::Misconfigured(setting) => {
                tracing::error!(setting, "request refused: a required setting is missing");
                "The service could not complete the request; retry later.".to_owned()
            }
            ApiError::Upstream(cause) => {
                tracing::error!(error = %cause, "upstream call failed; answering 502 so the caller retries");
                "An upstream call failed; retry later.".to_owned()
            }
            ApiError::BadSignature(cause) => {
                tracing::warn!(alarm = "signature", reason = %cause, "webhook signature refused");
                self.to_string()
            }
            other => other.to_string(),
        };
        let problem = Problem {
            kind: format!("https://sms-consent.dev/problems/{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
        };
        let mut response = (status, serde_json::to_vec(&problem).expect("problem serialises")).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::REQUEST_TIMEOUT {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNAUTHORIZED && matches!(self, ApiError::Unauthenticated) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

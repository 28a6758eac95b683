//! Provider webhooks: verify, parse, record, answer in the provider's format.
//! A 2xx goes out only after the event is durably stored.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use super::{header_str, read_body, AppState};
use crate::providers::{standard_webhooks, twilio, Parsed};
use crate::service::InboundOutcome;

/// The URL the provider called, rebuilt from `public_base_url` and never
/// from the request's Host header.
fn signed_url(state: &AppState, uri: &Uri) -> String {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
    format!("{}{}", state.public_base_url, path_and_query)
}

pub async fn twilio(State(state): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let config = state.twilio.as_ref().ok_or(ApiError::NotFound)?;
    let body = read_body(&headers, body).await?;
    let params = twilio::form_params(&body);
    twilio::verify(
        &config.auth_tokens,
        &signed_url(&state, &uri),
        &params,
        &body,
        header_str(&headers, twilio::SIGNATURE_HEADER),
    )?;
    let reply = match twilio::parse(&params)? {
        Parsed::Ignored(_) => None,
        Parsed::Message(message) => match state.service.handle_inbound(&message).await? {
            InboundOutcome::Recorded { reply, .. } => reply,
            InboundOutcome::Duplicate | InboundOutcome::Ignored => None,
        },
    };
    Ok(([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], twilio::reply(reply.as_deref())).into_response())
}

#[derive(Serialize)]
struct StandardReply {
    status: &'static str,
    /// The confirmation for the gateway to send back to the patient.
    reply: Option<String>,
}

pub async fn standard_webhooks(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let config = state.standard_webhooks.as_ref().ok_or(ApiError::NotFound)?;
    let body = read_body(&headers, body).await?;
    let signed = standard_webhooks::Headers {
        id: header_str(&headers, standard_webhooks::ID_HEADER),
        timestamp: header_str(&headers, standard_webhooks::TIMESTAMP_HEADER),
        signature: header_str(&headers, standard_webhooks::SIGNATURE_HEADER),
    };
    standard_webhooks::verify(&config.secrets, &signed, &body, state.service.now())?;
    let answer = match standard_webhooks::parse(&body)? {
        Parsed::Ignored(_) => StandardReply { status: "ignored", reply: None },
        Parsed::Message(message) => match state.service.handle_inbound(&message).await? {
            InboundOutcome::Recorded { reply, .. } => StandardReply { status: "recorded", reply },
            InboundOutcome::Duplicate => StandardReply { status: "duplicate", reply: None },
            InboundOutcome::Ignored => StandardReply { status: "ignored", reply: None },
        },
    };
    Ok(axum::Json(answer).into_response())
}

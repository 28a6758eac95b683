//! Provider webhooks: verify, parse, record, answer in the provider's format.
//! A 2xx goes out only after the event is durably stored.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use super::{read_body, AppState};
use crate::providers::aws_sns::{self, SnsError, SnsOutcome};
use crate::providers::{
    bandwidth, bird, plivo, sinch, standard_webhooks, telnyx, twilio, vonage, InboundMessage, Parsed, Rejection,
    ReplyStyle, WebhookRequest,
};
use crate::service::InboundOutcome;

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Signature(e) => ApiError::BadSignature(e),
            Rejection::Payload(e) => e.into(),
        }
    }
}

/// A request read off the wire, before its provider has checked it.
struct Delivery {
    method: Method,
    /// The URL the provider called, rebuilt from `public_base_url` and never
    /// from the request's Host header.
    url: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Delivery {
    async fn read(state: &AppState, request: Request) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let base = match &state.public_base_url {
            Some(base) => base.clone(),
            None => api_gateway_url(&parts.extensions).ok_or(ApiError::Misconfigured("server.public_base_url"))?,
        };
        let body = read_body(&parts.headers, body).await?;
        let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(parts.uri.path());
        Ok(Delivery { method: parts.method, url: format!("{base}{path_and_query}"), headers: parts.headers, body })
    }

    fn request(&self, state: &AppState) -> WebhookRequest<'_> {
        WebhookRequest {
            method: self.method.as_str(),
            url: &self.url,
            headers: &self.headers,
            body: &self.body,
            now: state.service.now(),
        }
    }
}

/// The API's own URL, from the request context API Gateway wrote (its
/// domain name and stage), never from the client's Host header.
fn api_gateway_url(extensions: &axum::http::Extensions) -> Option<String> {
    match extensions.get::<lambda_http::request::RequestContext>()? {
        lambda_http::request::RequestContext::ApiGatewayV2(context) => {
            let domain = context.domain_name.as_deref()?;
            match context.stage.as_deref() {
                None | Some("$default") => Some(format!("https://{domain}")),
                Some(stage) => Some(format!("https://{domain}/{stage}")),
            }
        }
        _ => None,
    }
}

/// Records every verified message of a delivery, in order; empty when there
/// was nothing to record. Any failure fails the whole delivery (5xx), so the
/// provider retries it; the messages already stored are then duplicates.
async fn record(
    state: &AppState,
    parsed: Parsed,
    style: ReplyStyle,
) -> Result<Vec<(InboundMessage, InboundOutcome)>, ApiError> {
    let messages = match parsed {
        Parsed::Ignored(what) => {
            tracing::debug!(what, "webhook acknowledged; nothing to record");
            return Ok(Vec::new());
        }
        Parsed::Message(message) => vec![message],
        Parsed::Messages(messages) => messages,
    };
    let mut recorded = Vec::with_capacity(messages.len());
    for message in messages {
        let outcome = state.service.handle_inbound(&message, style).await?;
        recorded.push((message, outcome));
    }
    Ok(recorded)
}

/// The inline confirmation: providers that answer inline deliver one
/// message per request.
fn inline_reply(recorded: &[(InboundMessage, InboundOutcome)]) -> Option<(&str, &InboundMessage)> {
    match recorded {
        [(message, InboundOutcome::Recorded { reply: Some(reply), .. })] => Some((reply.as_str(), message)),
        _ => None,
    }
}

#[derive(Serialize)]
struct Acknowledgement {
    status: &'static str,
    /// The confirmation, for gateways that send it themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<String>,
}

/// One status for the delivery: `recorded` (or `recorded_reply_queued`) if
/// any message was new, `duplicate` if all were replays, else `ignored`.
fn acknowledgement(recorded: Vec<(InboundMessage, InboundOutcome)>) -> Acknowledgement {
    let single = recorded.len() == 1;
    let (mut any_recorded, mut any_outboxed, mut any_duplicate, mut reply) = (false, false, false, None);
    for (_, outcome) in recorded {
        match outcome {
            InboundOutcome::Recorded { reply: r, outboxed, .. } => {
                any_recorded = true;
                any_outboxed |= outboxed;
                if single {
                    reply = r;
                }
            }
            InboundOutcome::Duplicate => any_duplicate = true,
            InboundOutcome::Ignored => {}
        }
    }
    let status = match (any_recorded, any_outboxed, any_duplicate) {
        (true, true, _) => "recorded_reply_queued",
        (true, false, _) => "recorded",
        (false, _, true) => "duplicate",
        (false, _, false) => "ignored",
    };
    Acknowledgement { status, reply }
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

pub async fn twilio(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let config = state.providers.twilio.as_ref().ok_or(ApiError::NotFound)?;
    let delivery = Delivery::read(&state, request).await?;
    let params = twilio::form_params(&delivery.body);
    twilio::verify(
        &config.auth_tokens,
        &delivery.url,
        &params,
        &delivery.body,
        delivery.request(&state).header(twilio::SIGNATURE_HEADER),
    )?;
    let recorded = record(&state, twilio::parse(&params)?, twilio::REPLY_STYLE).await?;
    Ok(xml(twilio::reply(inline_reply(&recorded).map(|(text, _)| text))))
}

pub async fn plivo(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let config = state.providers.plivo.as_ref().ok_or(ApiError::NotFound)?;
    let delivery = Delivery::read(&state, request).await?;
    let parsed = plivo::receive(&config.auth_tokens, config.accept_v2_signatures, &delivery.request(&state))?;
    let recorded = record(&state, parsed, plivo::REPLY_STYLE).await?;
    Ok(xml(plivo::reply(inline_reply(&recorded))))
}

pub async fn standard_webhooks(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let config = state.providers.standard_webhooks.as_ref().ok_or(ApiError::NotFound)?;
    let delivery = Delivery::read(&state, request).await?;
    let request = delivery.request(&state);
    let signed = standard_webhooks::Headers {
        id: request.header(standard_webhooks::ID_HEADER),
        timestamp: request.header(standard_webhooks::TIMESTAMP_HEADER),
        signature: request.header(standard_webhooks::SIGNATURE_HEADER),
    };
    standard_webhooks::verify(&config.secrets, &signed, request.body, request.now)?;
    let recorded = record(&state, standard_webhooks::parse(request.body)?, standard_webhooks::REPLY_STYLE).await?;
    Ok(axum::Json(acknowledgement(recorded)).into_response())
}

/// The providers whose answer carries no reply: verify, record (the reply
/// goes to the outbox), acknowledge with 200.
macro_rules! outbox_provider {
    ($name:ident, $module:ident, $config:ident, |$c:ident, $r:ident| $receive:expr) => {
        pub async fn $name(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
            let $c = state.providers.$config.as_ref().ok_or(ApiError::NotFound)?;
            let delivery = Delivery::read(&state, request).await?;
            let $r = delivery.request(&state);
            let parsed = $receive?;
            let recorded = record(&state, parsed, $module::REPLY_STYLE).await?;
            Ok(axum::Json(acknowledgement(recorded)).into_response())
        }
    };
}

outbox_provider!(telnyx, telnyx, telnyx, |c, r| telnyx::receive(&c.public_keys, &r));
outbox_provider!(sinch, sinch, sinch, |c, r| sinch::receive(&c.secrets, &r));
outbox_provider!(bandwidth, bandwidth, bandwidth, |c, r| bandwidth::receive(&c.credentials, &r));
outbox_provider!(bird, bird, bird, |c, r| bird::receive(&c.signing_keys, &r));
outbox_provider!(vonage, vonage, vonage, |c, r| vonage::receive(
    &vonage::Secrets {
        method: c.signature_method,
        signature_secrets: &c.signature_secrets,
        jwt_secrets: &c.jwt_secrets,
        expected: vonage::Expected { api_key: c.api_key.as_deref(), application_ids: &c.application_ids },
    },
    &r
));

pub async fn aws_sns(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let config = state.providers.aws_sns.as_ref().ok_or(ApiError::NotFound)?;
    let delivery = Delivery::read(&state, request).await?;
    let outcome =
        aws_sns::receive(&state.sns, &config.topic_arns, &delivery.request(&state)).await.map_err(|e| match e {
            SnsError::Rejected(r) => r.into(),
            SnsError::TopicNotAllowed => ApiError::TopicNotAllowed,
            SnsError::ConfirmationFailed(cause) => ApiError::Upstream(cause),
            SnsError::CertificateUnavailable(cause) => ApiError::Upstream(cause.to_string()),
        })?;
    let recorded = match outcome {
        SnsOutcome::Confirmed => {
            tracing::info!("SNS subscription confirmed");
            return Ok(axum::Json(Acknowledgement { status: "subscription_confirmed", reply: None }).into_response());
        }
        SnsOutcome::Parsed(parsed) => record(&state, parsed, aws_sns::REPLY_STYLE).await?,
    };
    Ok(axum::Json(acknowledgement(recorded)).into_response())
}

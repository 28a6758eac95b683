//! Provider webhooks, one handler for all: read the request, let its
//! provider verify and read it, record every message, answer in the
//! provider's format. A 2xx goes out only after the event is durably stored.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};

use super::error::ApiError;
use super::{read_body, AppState, GatewayContext};
use crate::providers::{InboundMessage, Outcome, Provider, Received, Rejection, WebhookRequest};
use crate::service::InboundOutcome;

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Signature(e) => ApiError::BadSignature(e),
            Rejection::Payload(e) => e.into(),
            Rejection::TopicNotAllowed => ApiError::TopicNotAllowed,
            Rejection::Upstream(cause) => ApiError::Upstream(cause),
        }
    }
}

/// The route of one provider: its methods, all to `handle`.
pub fn route(provider: Arc<dyn Provider>) -> MethodRouter<AppState> {
    let mut methods: Option<MethodRouter<AppState>> = None;
    for method in provider.methods() {
        let Ok(filter) = MethodFilter::try_from(method.clone()) else { continue };
        let provider = provider.clone();
        let handler = move |State(state): State<AppState>, request: Request| handle(state, provider, request);
        methods = Some(match methods {
            Some(router) => router.on(filter, handler),
            None => on(filter, handler),
        });
    }
    methods.unwrap_or_default()
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
            Some(base) => base.to_string(),
            None => GatewayContext::of(&parts.extensions)
                .api_url()
                .ok_or(ApiError::Misconfigured("server.public_base_url"))?,
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

async fn handle(state: AppState, provider: Arc<dyn Provider>, request: Request) -> Result<Response, ApiError> {
    let delivery = Delivery::read(&state, request).await?;
    let received = provider.receive(&delivery.request(&state)).await.inspect_err(|rejection| {
        if matches!(rejection, Rejection::Signature(_)) {
            crate::metrics::signature_failure(provider.name());
        }
    })?;
    let answer = match received {
        Received::SubscriptionConfirmed => provider.answer(&Outcome { status: "subscription_confirmed", reply: None }),
        Received::Ignored(what) => {
            tracing::debug!(what, "webhook acknowledged; nothing to record");
            provider.answer(&outcome(&[], &[]))
        }
        received => {
            let (messages, opt_outs) = received.into_events();
            let recorded = record(&state, provider.as_ref(), messages).await?;
            let mut blocked = Vec::with_capacity(opt_outs.len());
            for block in &opt_outs {
                blocked.push(state.service.handle_provider_block(block).await?);
            }
            provider.answer(&outcome(&recorded, &blocked))
        }
    };
    Ok(([(header::CONTENT_TYPE, answer.content_type)], answer.body).into_response())
}

/// Records every verified message of a delivery, in order (then the
/// provider's opt-outs it carries). Any failure
/// fails the whole delivery (5xx), so the provider retries it; the messages
/// already stored are then duplicates.
async fn record(
    state: &AppState,
    provider: &dyn Provider,
    messages: Vec<InboundMessage>,
) -> Result<Vec<(InboundMessage, InboundOutcome)>, ApiError> {
    let style = provider.reply_style();
    let mut recorded = Vec::with_capacity(messages.len());
    for message in messages {
        let outcome = state.service.handle_inbound(&message, style).await?;
        recorded.push((message, outcome));
    }
    Ok(recorded)
}

/// One status for the delivery: `recorded` (or `recorded_reply_queued`) if
/// any message or provider opt-out was new, `duplicate` if all were
/// replays, else `ignored`; the confirmation when the delivery carried one
/// message that got one.
fn outcome<'a>(recorded: &'a [(InboundMessage, InboundOutcome)], blocked: &[bool]) -> Outcome<'a> {
    let any_block = |new: bool| blocked.contains(&new);
    let (mut any_recorded, mut any_outboxed, mut any_duplicate) = (any_block(true), false, any_block(false));
    for (_, outcome) in recorded {
        match outcome {
            InboundOutcome::Recorded { outboxed, .. } => {
                any_recorded = true;
                any_outboxed |= outboxed;
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
    let reply = match recorded {
        [(message, InboundOutcome::Recorded { reply: Some(reply), .. })] => Some((reply.as_str(), message)),
        _ => None,
    };
    Outcome { status, reply }
}

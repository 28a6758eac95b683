//! The outbox worker's wiring: the configured providers as its `Dispatch`,
//! and the local process's loop (on Lambda the stream handler in `lambda`
//! drives the same worker).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::config::Config;
use crate::domain::outbound::{OutboundMessage, SendError, Sent};
use crate::http::AppState;
use crate::providers::Provider;
use crate::service::outbox::{Dispatch, OutboxWorker};

/// Due replies taken per pass of the local loop.
const BATCH: usize = 100;

/// The configured providers, by route name.
pub struct ProviderDispatch {
    providers: HashMap<&'static str, Arc<dyn Provider>>,
}

impl ProviderDispatch {
    pub fn new(providers: &[Arc<dyn Provider>]) -> Self {
        ProviderDispatch { providers: providers.iter().map(|p| (p.name(), p.clone())).collect() }
    }
}

#[async_trait]
impl Dispatch for ProviderDispatch {
    fn can_send(&self, provider: &str) -> bool {
        self.providers.get(provider).is_some_and(|p| p.sends())
    }

    async fn send(&self, provider: &str, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        match self.providers.get(provider) {
            Some(p) => p.send(message).await,
            None => Err(SendError::NotConfigured("the provider is not configured")),
        }
    }
}

/// The providers whose replies will wait in the outbox: their webhook
/// answer cannot carry a reply and they have no `send` table.
pub fn unsent_providers(providers: &[Arc<dyn Provider>]) -> Vec<&'static str> {
    providers.iter().filter(|p| !p.reply_style().inline && !p.sends()).map(|p| p.name()).collect()
}

/// The worker over a process's state, with one warning per provider whose
/// replies will wait.
pub fn worker(state: &AppState, config: &Config) -> OutboxWorker {
    for provider in unsent_providers(&state.providers) {
        tracing::warn!(provider, "no send table: this provider's replies will wait in the outbox");
    }
    let dispatch = Arc::new(ProviderDispatch::new(&state.providers));
    OutboxWorker::new(state.service.clone(), dispatch, config.outbox.settings())
}

/// The local loop: a pass over due replies whenever one is written, and
/// every `poll` otherwise (retries, and replies left by a previous run),
/// until `stop` turns true or its sender is dropped. A pass in progress
/// finishes first.
pub async fn run_local(worker: OutboxWorker, poll: Duration, mut stop: watch::Receiver<bool>) {
    let service = worker.service().clone();
    loop {
        if *stop.borrow() {
            return;
        }
        if let Err(error) = worker.run_due(BATCH).await {
            tracing::error!(%error, "outbox pass failed; retrying at the next poll");
        }
        tokio::select! {
            _ = service.outbox_ready.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

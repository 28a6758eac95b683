//! The runtime wiring: one assembly (`build`) shared by the local server
//! (`local`) and the Lambda functions (`lambda`), over the store and key
//! service chosen by config (`backends`).

use std::sync::Arc;

use axum::Router;

use crate::config::{Config, ConfigError};
use crate::crypto::Crypto;
use crate::http::auth::Authenticator;
use crate::http::{router_for, AppState, Role};
use crate::ports::{Clock, ConsentStore};
use crate::providers::aws_sns::SnsNetwork;
use crate::service::ConsentService;

pub mod backends;
pub mod import;
pub mod lambda;
pub mod local;
pub mod outbox;
pub mod timed_store;
pub mod verify;

/// Why a process did not start; the message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

impl StartError {
    pub(crate) fn other(e: impl std::fmt::Display) -> Self {
        StartError::Other(e.to_string())
    }
}

/// What a process brings to the assembly: its store and keys (from
/// `backends`), its clock, the network SNS uses, and how `/v1` callers
/// prove who they are (API keys locally, IAM on Lambda).
pub struct Parts {
    pub store: Arc<dyn ConsentStore>,
    pub crypto: Crypto,
    pub clock: Arc<dyn Clock>,
    pub sns_network: Arc<dyn SnsNetwork>,
    pub auth: Authenticator,
}

/// The one assembly: builds the providers from config (a key that does not
/// decode stops the start, its field named), the service over the parts,
/// the shared state, and the Router serving `role`.
pub fn build(config: &Config, role: Role, parts: Parts) -> Result<(AppState, Router), StartError> {
    let providers = config.providers(parts.sns_network)?;
    // Every store call timed (`metrics::STORE_LATENCY`).
    let store: Arc<dyn ConsentStore> = Arc::new(timed_store::TimedStore::new(parts.store));
    let service = ConsentService::new(config.programs(), store, Arc::new(parts.crypto), parts.clock);
    let state = AppState::new(config, service, providers, parts.auth);
    Ok((state.clone(), router_for(state, role)))
}

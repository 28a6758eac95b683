//! sms-consent: the consent ledger for healthcare SMS.
//!
//! Layers, as the README's Layout draws them: `domain` (pure rules) ←
//! `providers` (webhook formats); `domain` ← `service` (use cases) ←
//! `ports` and `crypto`; `adapters` implement the ports; `http`, `config`
//! and the runtime wiring (`runtime`: one assembly, the local server, the
//! Lambda functions, the backends chosen by config) put them together;
//! `metrics` is what the running service reports about itself.

pub mod adapters;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod ports;
pub mod providers;
pub mod runtime;
pub mod service;

//! sms-consent: the consent ledger for healthcare SMS.
//!
//! Layers, as the README's Layout draws them: `domain` (pure rules) ←
//! `providers` (webhook formats); `domain` ← `service` (use cases) ←
//! `ports` and `crypto`; `adapters` implement the ports; `http`, `config`
//! and the runtime wiring (`local`, `lambda`, `backends`) put them together.

pub mod adapters;
pub mod backends;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod lambda;
pub mod local;
pub mod ports;
pub mod providers;
pub mod service;

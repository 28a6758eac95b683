//! sms-consent: the consent ledger for healthcare SMS.
//!
//! Layers point inward: `domain` (pure rules) ← `providers` (webhook formats)
//! ← `service` (use cases over the `ports`) ← `adapters` and `http`.

pub mod adapters;
pub mod crypto;
pub mod domain;
pub mod ports;
pub mod config;
pub mod providers;
pub mod service;
pub mod http;
pub mod local;
pub mod backends;
pub mod lambda;

//! sms-consent: the consent ledger for healthcare SMS.
//!
//! Layers point inward: `domain` (pure rules) ← `providers` (webhook formats)
//! ← `service` (use cases over the `ports`) ← `adapters` and `http`.

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

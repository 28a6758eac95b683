//! Integration tests: the real server on port 0, spoken to over HTTP.

mod audit;
mod authorization;
mod connections;
mod consents;
mod durability;
mod evidence;
mod helpers;
mod metrics;
mod portal;
mod providers;
mod replies;
mod reviews;
mod robustness;
mod security_providers;
mod standard_webhooks;
mod twilio;

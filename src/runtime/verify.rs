//! `sms-consent verify-ledger`: opens the store and keys the config names
//! (as `serve` and `provision` do) and walks every number's event chain
//! (see `service::ledger`); `sms-consent purge` opens them the same way and
//! applies `[retention]` (see `service::audit`).

use std::path::Path;
use std::sync::Arc;

use crate::adapters::embedded::{ledger_file, LedgerFile, DATABASE_FILE};
use crate::config::Config;
use crate::config::StorageBackend;
use crate::ports::{Clock, ScanOptions, SystemClock};
use crate::runtime::backends::Backends;
use crate::runtime::local::load_config;
use crate::runtime::StartError;
use crate::service::audit::{years_before, PurgeReport};
use crate::service::ledger::LedgerReport;
use crate::service::ConsentService;

/// Read capacity units per second a DynamoDB scan uses unless told.
pub const DEFAULT_RATE: f64 = 100.0;

/// Verifies the ledger the config names. `progress` is called with
/// (numbers, events) so far. An error: the verification could not run.
pub async fn verify_ledger(
    config: &Path,
    rate: f64,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<LedgerReport, StartError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(StartError::Other("--rate: give a number of read units per second above 0".into()));
    }
    let config = load_config(config)?;
    let service = open_service(&config, "verify", Arc::new(SystemClock)).await?;
    service.verify_ledger(ScanOptions { rate }, progress).await.map_err(StartError::other)
}

/// The service over the store and keys `config` names, which must exist:
/// never creates a ledger (nor keys) to `what` it.
pub(crate) async fn open_service(
    config: &Config,
    what: &str,
    clock: Arc<dyn Clock>,
) -> Result<ConsentService, StartError> {
    if config.storage.backend == StorageBackend::Embedded
        && ledger_file(&config.server.data_dir).map_err(StartError::other)? != LedgerFile::Present
    {
        return Err(StartError::Other(format!(
            "no ledger to {what} at {}",
            config.server.data_dir.join(DATABASE_FILE).display()
        )));
    }
    let backends = Backends::open(config).await.map_err(StartError::other)?;
    let crypto = backends.crypto(config).await.map_err(StartError::other)?;
    Ok(ConsentService::new(config.programs(), backends.store.clone(), Arc::new(crypto), clock))
}

/// How `purge` runs.
#[derive(Debug, Clone)]
pub struct PurgeOptions {
    /// Count what would go; change nothing.
    pub dry_run: bool,
    /// Recorded as the caller of each `purge` event (the access report's).
    pub operator: String,
    /// DynamoDB read capacity units per second its scan may use.
    pub rate: f64,
}

/// Applies `[retention] events_years` to the ledger the config names, as of
/// `clock`'s now. An error: the purge could not run (no retention set, no
/// ledger, store unavailable).
pub async fn purge(config: &Path, options: &PurgeOptions, clock: Arc<dyn Clock>) -> Result<PurgeReport, StartError> {
    if !(options.rate.is_finite() && options.rate > 0.0) {
        return Err(StartError::Other("--rate: give a number of read units per second above 0".into()));
    }
    let operator = options.operator.trim();
    if operator.is_empty() || operator.len() > 128 {
        return Err(StartError::Other("--operator: 1 to 128 characters".into()));
    }
    let config = load_config(config)?;
    let Some(years) = config.retention.events_years else {
        return Err(StartError::Other(
            "retention.events_years is not set: events are kept for ever, nothing to purge".into(),
        ));
    };
    let cutoff = years_before(clock.now(), years);
    let service = open_service(&config, "purge", clock).await?;
    service
        .purge(cutoff, operator, options.dry_run, ScanOptions { rate: options.rate })
        .await
        .map_err(StartError::other)
}

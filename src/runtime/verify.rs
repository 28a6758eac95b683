//! `sms-consent verify-ledger`: opens the store and keys the config names
//! (as `serve` and `provision` do) and walks every number's event chain
//! (see `service::ledger`).

use std::path::Path;
use std::sync::Arc;

use crate::adapters::embedded::{ledger_file, LedgerFile, DATABASE_FILE};
use crate::config::StorageBackend;
use crate::ports::{ScanOptions, SystemClock};
use crate::runtime::backends::Backends;
use crate::runtime::local::load_config;
use crate::runtime::StartError;
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
    if config.storage.backend == StorageBackend::Embedded
        && ledger_file(&config.server.data_dir).map_err(StartError::other)? != LedgerFile::Present
    {
        // Never create a ledger (nor keys) to verify.
        return Err(StartError::Other(format!(
            "no ledger to verify at {}",
            config.server.data_dir.join(DATABASE_FILE).display()
        )));
    }
    let backends = Backends::open(&config).await.map_err(StartError::other)?;
    let crypto = backends.crypto(&config).await.map_err(StartError::other)?;
    let service =
        ConsentService::new(config.programs(), backends.store.clone(), Arc::new(crypto), Arc::new(SystemClock));
    service.verify_ledger(ScanOptions { rate }, progress).await.map_err(StartError::other)
}

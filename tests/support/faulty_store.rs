//! A consent store that fails on purpose (test-only): wraps any store and
//! makes a configurable fraction of calls fail, as a real store does under
//! load or a partition:
//! - `Error`: the call is refused (nothing done);
//! - `Timeout`: the call waits a while, then fails; a write may or may not
//!   have landed (half the time it did, as with a timed-out request);
//! - `Lost`: a write is done, then its answer is lost (an error comes back:
//!   "committed but the answer was lost");
//! - `Hang`: the call waits past the caller's deadline, then is done (the
//!   caller gave up long before: the write lands late).
//!
//! The faults follow a seeded RNG (`FAULT_SEED` in the environment, random
//! otherwise, printed), so a failing run's fault sequence can be replayed
//! (with concurrency the interleaving still varies). Every method of the
//! trait is delegated explicitly.
#![allow(dead_code)] // shared by several test binaries, each using a part

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sms_consent::ports::{
    AuditEntry, CommitOutcome, ConsentStore, EventItem, LedgerWrite, NumberLedger, OutboxItem, ReviewItem, ScanOptions,
    StateItem, StateRead, StoreError, UsageItem, WrappedEvidenceKey, WrappedKeys,
};
use time::OffsetDateTime;

/// How often and how a `FaultyStore` fails.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// Fraction of calls that fail (0.0 to 1.0).
    pub rate: f64,
    /// Of the failing calls, the relative weights of each kind.
    pub error: u32,
    pub timeout: u32,
    pub lost: u32,
    pub hang: u32,
    /// How long a `Timeout` waits (up to), and a `Hang` waits (exactly).
    pub timeout_wait: Duration,
    pub hang_wait: Duration,
}

impl FaultPlan {
    /// No faults: the wrapper only counts.
    pub fn none() -> Self {
        FaultPlan { rate: 0.0, ..Self::mixed(0.0) }
    }

    /// `rate` of the calls fail: mostly refusals, then timeouts and lost
    /// answers, and a few hangs.
    pub fn mixed(rate: f64) -> Self {
        FaultPlan {
            rate,
            error: 50,
            timeout: 20,
            lost: 28,
            hang: 2,
            timeout_wait: Duration::from_millis(20),
            hang_wait: Duration::from_millis(1500),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Error,
    Timeout { applied: bool },
    Lost,
    Hang,
}

/// What the wrapper did, for the test's report.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub lost: AtomicU64,
    pub hangs: AtomicU64,
    /// Writes that reached the inner store and succeeded (whatever the
    /// caller was told).
    pub writes: AtomicU64,
    /// Calls in progress (a hung one stays until it lands).
    pub in_flight: AtomicU64,
}

pub struct FaultyStore {
    inner: Arc<dyn ConsentStore>,
    plan: Mutex<FaultPlan>,
    rng: Mutex<StdRng>,
    enabled: AtomicBool,
    pub seed: u64,
    pub counts: FaultCounts,
}

fn injected(what: &str) -> StoreError {
    StoreError::Unavailable(format!("injected fault: {what}"))
}

/// Decrements the in-flight count however the call ends (even dropped).
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FaultyStore {
    /// Wraps `inner`; the seed is `FAULT_SEED` if set, else random. The seed
    /// is printed (a failing run names it).
    pub fn new(inner: Arc<dyn ConsentStore>, plan: FaultPlan) -> Arc<Self> {
        let seed = std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
        Self::with_seed(inner, plan, seed)
    }

    pub fn with_seed(inner: Arc<dyn ConsentStore>, plan: FaultPlan, seed: u64) -> Arc<Self> {
        if plan.rate > 0.0 {
            eprintln!("faulty store: FAULT_SEED={seed} rate={}", plan.rate);
        }
        Arc::new(FaultyStore {
            inner,
            plan: Mutex::new(plan),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            enabled: AtomicBool::new(true),
            seed,
            counts: FaultCounts::default(),
        })
    }

    /// Turns the faults on or off (off: a plain pass-through that counts).
    pub fn set_faults(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    pub fn set_plan(&self, plan: FaultPlan) {
        *self.plan.lock().unwrap() = plan;
    }

    pub fn inner(&self) -> &Arc<dyn ConsentStore> {
        &self.inner
    }

    pub fn writes(&self) -> u64 {
        self.counts.writes.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> u64 {
        self.counts.in_flight.load(Ordering::SeqCst)
    }

    fn draw(&self) -> Option<(Fault, FaultPlan)> {
        self.counts.calls.fetch_add(1, Ordering::Relaxed);
        if !self.enabled.load(Ordering::SeqCst) {
            return None;
        }
        let plan = *self.plan.lock().unwrap();
        let mut rng = self.rng.lock().unwrap();
        if plan.rate <= 0.0 || !rng.gen_bool(plan.rate.min(1.0)) {
            return None;
        }
        let total = plan.error + plan.timeout + plan.lost + plan.hang;
        let pick = rng.gen_range(0..total.max(1));
        let fault = if pick < plan.error {
            Fault::Error
        } else if pick < plan.error + plan.timeout {
            Fault::Timeout { applied: rng.gen_bool(0.5) }
        } else if pick < plan.error + plan.timeout + plan.lost {
            Fault::Lost
        } else {
            Fault::Hang
        };
        Some((fault, plan))
    }

    /// A read: refused, or slow then refused, or late.
    async fn read<T>(&self, call: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.counts.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&self.counts.in_flight);
        match self.draw() {
            None => call.await,
            Some((Fault::Error, _)) => {
                self.counts.errors.fetch_add(1, Ordering::Relaxed);
                Err(injected("refused"))
            }
            Some((Fault::Timeout { .. } | Fault::Lost, plan)) => {
                self.counts.timeouts.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(plan.timeout_wait).await;
                Err(injected("timed out"))
            }
            Some((Fault::Hang, plan)) => {
                self.counts.hangs.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(plan.hang_wait).await;
                call.await
            }
        }
    }

    /// A write: refused before it is done, or done and its answer lost, or
    /// timed out either way, or done late.
    async fn write<T>(&self, call: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.counts.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&self.counts.in_flight);
        let counted = |result: Result<T, StoreError>| {
            if result.is_ok() {
                self.counts.writes.fetch_add(1, Ordering::SeqCst);
            }
            result
        };
        match self.draw() {
            None => counted(call.await),
            Some((Fault::Error, _)) => {
                self.counts.errors.fetch_add(1, Ordering::Relaxed);
                Err(injected("refused"))
            }
            Some((Fault::Timeout { applied }, plan)) => {
                self.counts.timeouts.fetch_add(1, Ordering::Relaxed);
                if applied {
                    let _ = counted(call.await);
                }
                tokio::time::sleep(plan.timeout_wait).await;
                Err(injected("timed out"))
            }
            Some((Fault::Lost, _)) => {
                self.counts.lost.fetch_add(1, Ordering::Relaxed);
                let _ = counted(call.await);
                Err(injected("the answer was lost"))
            }
            Some((Fault::Hang, plan)) => {
                self.counts.hangs.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(plan.hang_wait).await;
                counted(call.await)
            }
        }
    }
}

#[async_trait]
impl ConsentStore for FaultyStore {
    async fn read_state(&self, pid: &str) -> Result<StateRead, StoreError> {
        self.read(self.inner.read_state(pid)).await
    }
    async fn get_states(&self, pids: &[String]) -> Result<Vec<Option<StateItem>>, StoreError> {
        self.read(self.inner.get_states(pids)).await
    }
    async fn commit(&self, write: LedgerWrite) -> Result<CommitOutcome, StoreError> {
        self.write(self.inner.commit(write)).await
    }
    async fn events(&self, pid: &str) -> Result<Vec<EventItem>, StoreError> {
        self.read(self.inner.events(pid)).await
    }
    async fn outbox(&self, pid: &str) -> Result<Vec<OutboxItem>, StoreError> {
        self.read(self.inner.outbox(pid)).await
    }
    async fn outbox_item(&self, pid: &str, event_id: &str) -> Result<Option<OutboxItem>, StoreError> {
        self.read(self.inner.outbox_item(pid, event_id)).await
    }
    async fn update_outbox(&self, item: &OutboxItem, expected: u64) -> Result<bool, StoreError> {
        self.write(self.inner.update_outbox(item, expected)).await
    }
    async fn due_outbox(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        self.read(self.inner.due_outbox(now, limit)).await
    }
    async fn events_page(
        &self,
        pid: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<EventItem>, Option<String>), StoreError> {
        self.read(self.inner.events_page(pid, before, limit)).await
    }
    async fn scrub(&self, pid: &str) -> Result<usize, StoreError> {
        self.write(self.inner.scrub(pid)).await
    }
    async fn usage(&self, pid: &str) -> Result<Option<UsageItem>, StoreError> {
        self.read(self.inner.usage(pid)).await
    }
    async fn read_state_with_usage(&self, pid: &str) -> Result<(StateRead, Option<UsageItem>), StoreError> {
        self.read(self.inner.read_state_with_usage(pid)).await
    }
    async fn usages(&self, pids: &[String]) -> Result<Vec<Option<UsageItem>>, StoreError> {
        self.read(self.inner.usages(pids)).await
    }
    async fn put_usage(&self, item: &UsageItem, expected: Option<u64>) -> Result<bool, StoreError> {
        self.write(self.inner.put_usage(item, expected)).await
    }
    async fn put_usages(&self, items: &[(UsageItem, Option<u64>)]) -> Result<Vec<bool>, StoreError> {
        self.write(self.inner.put_usages(items)).await
    }
    async fn event(&self, pid: &str, sk: &str) -> Result<Option<EventItem>, StoreError> {
        self.read(self.inner.event(pid, sk)).await
    }
    async fn reviews_page(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ReviewItem>, Option<String>), StoreError> {
        self.read(self.inner.reviews_page(before, limit)).await
    }
    async fn review(&self, event_id: &str) -> Result<Option<ReviewItem>, StoreError> {
        self.read(self.inner.review(event_id)).await
    }
    async fn audit_page(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<String>), StoreError> {
        self.read(self.inner.audit_page(from, to, after, limit)).await
    }
    async fn delete_events(&self, pid: &str, sort_keys: &[String]) -> Result<usize, StoreError> {
        self.write(self.inner.delete_events(pid, sort_keys)).await
    }
    async fn reclaim(&self) -> Result<(), StoreError> {
        self.write(self.inner.reclaim()).await
    }
    async fn commit_batch(
        &self,
        writes: Vec<sms_consent::ports::LedgerWrite>,
    ) -> Result<Vec<sms_consent::ports::CommitOutcome>, StoreError> {
        self.write(self.inner.commit_batch(writes)).await
    }
    async fn link(&self, hash: &str) -> Result<Option<sms_consent::ports::LinkItem>, StoreError> {
        self.read(self.inner.link(hash)).await
    }
    async fn put_link(&self, item: &sms_consent::ports::LinkItem) -> Result<bool, StoreError> {
        self.write(self.inner.put_link(item)).await
    }
    async fn wrapped_keys(&self) -> Result<Option<WrappedKeys>, StoreError> {
        self.read(self.inner.wrapped_keys()).await
    }
    async fn put_wrapped_keys_if_absent(&self, keys: &WrappedKeys) -> Result<WrappedKeys, StoreError> {
        self.write(self.inner.put_wrapped_keys_if_absent(keys)).await
    }
    async fn add_evidence_key_if_absent(&self, key: &WrappedEvidenceKey) -> Result<WrappedKeys, StoreError> {
        self.write(self.inner.add_evidence_key_if_absent(key)).await
    }
    async fn scan_ledger(
        &self,
        options: ScanOptions,
        each: &mut (dyn FnMut(NumberLedger) + Send),
    ) -> Result<(), StoreError> {
        self.read(self.inner.scan_ledger(options, each)).await
    }
    async fn number_ledger(&self, pid: &str) -> Result<NumberLedger, StoreError> {
        self.read(self.inner.number_ledger(pid)).await
    }
    fn table(&self) -> &str {
        self.inner.table()
    }
}

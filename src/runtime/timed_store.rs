//! A `ConsentStore` that times every call (`metrics::STORE_LATENCY`, by
//! operation and outcome) and otherwise passes it through unchanged. Every
//! method is delegated by name, the defaulted ones too: a method the trait
//! gains must be added here, or the wrapped store's own is never called.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::ports::{
    AuditEntry, CommitOutcome, ConsentStore, EventItem, LedgerWrite, LinkItem, NumberLedger, OutboxItem, ReviewItem,
    ScanOptions, StateItem, StateRead, StoreError, UsageItem, WrappedEvidenceKey, WrappedKeys,
};

pub struct TimedStore {
    inner: Arc<dyn ConsentStore>,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn ConsentStore>) -> Self {
        TimedStore { inner }
    }
}

async fn timed<T>(operation: &'static str, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = call.await;
    crate::metrics::store_call(operation, result.is_ok(), started.elapsed());
    result
}

#[async_trait]
impl ConsentStore for TimedStore {
    async fn read_state(&self, pid: &str) -> Result<StateRead, StoreError> {
        timed("read_state", self.inner.read_state(pid)).await
    }

    async fn get_states(&self, pids: &[String]) -> Result<Vec<Option<StateItem>>, StoreError> {
        timed("get_states", self.inner.get_states(pids)).await
    }

    async fn commit(&self, write: LedgerWrite) -> Result<CommitOutcome, StoreError> {
        timed("commit", self.inner.commit(write)).await
    }

    async fn events(&self, pid: &str) -> Result<Vec<EventItem>, StoreError> {
        timed("events", self.inner.events(pid)).await
    }

    async fn outbox(&self, pid: &str) -> Result<Vec<OutboxItem>, StoreError> {
        timed("outbox", self.inner.outbox(pid)).await
    }

    async fn outbox_item(&self, pid: &str, event_id: &str) -> Result<Option<OutboxItem>, StoreError> {
        timed("outbox_item", self.inner.outbox_item(pid, event_id)).await
    }

    async fn update_outbox(&self, item: &OutboxItem, expected: u64) -> Result<bool, StoreError> {
        timed("update_outbox", self.inner.update_outbox(item, expected)).await
    }

    async fn due_outbox(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        timed("due_outbox", self.inner.due_outbox(now, limit)).await
    }

    async fn events_page(
        &self,
        pid: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<EventItem>, Option<String>), StoreError> {
        timed("events_page", self.inner.events_page(pid, before, limit)).await
    }

    async fn scrub(&self, pid: &str) -> Result<usize, StoreError> {
        timed("scrub", self.inner.scrub(pid)).await
    }

    async fn usage(&self, pid: &str) -> Result<Option<UsageItem>, StoreError> {
        timed("usage", self.inner.usage(pid)).await
    }

    async fn read_state_with_usage(&self, pid: &str) -> Result<(StateRead, Option<UsageItem>), StoreError> {
        timed("read_state_with_usage", self.inner.read_state_with_usage(pid)).await
    }

    async fn usages(&self, pids: &[String]) -> Result<Vec<Option<UsageItem>>, StoreError> {
        timed("usages", self.inner.usages(pids)).await
    }

    async fn put_usage(&self, item: &UsageItem, expected: Option<u64>) -> Result<bool, StoreError> {
        timed("put_usage", self.inner.put_usage(item, expected)).await
    }

    async fn put_usages(&self, items: &[(UsageItem, Option<u64>)]) -> Result<Vec<bool>, StoreError> {
        timed("put_usages", self.inner.put_usages(items)).await
    }

    async fn event(&self, pid: &str, sk: &str) -> Result<Option<EventItem>, StoreError> {
        timed("event", self.inner.event(pid, sk)).await
    }

    async fn reviews_page(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ReviewItem>, Option<String>), StoreError> {
        timed("reviews_page", self.inner.reviews_page(before, limit)).await
    }

    async fn review(&self, event_id: &str) -> Result<Option<ReviewItem>, StoreError> {
        timed("review", self.inner.review(event_id)).await
    }

    async fn audit_page(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<String>), StoreError> {
        timed("audit_page", self.inner.audit_page(from, to, after, limit)).await
    }

    async fn delete_events(&self, pid: &str, sort_keys: &[String]) -> Result<usize, StoreError> {
        timed("delete_events", self.inner.delete_events(pid, sort_keys)).await
    }

    async fn reclaim(&self) -> Result<(), StoreError> {
        timed("reclaim", self.inner.reclaim()).await
    }

    async fn commit_batch(&self, writes: Vec<LedgerWrite>) -> Result<Vec<CommitOutcome>, StoreError> {
        timed("commit_batch", self.inner.commit_batch(writes)).await
    }

    async fn link(&self, hash: &str) -> Result<Option<LinkItem>, StoreError> {
        timed("link", self.inner.link(hash)).await
    }

    async fn put_link(&self, item: &LinkItem) -> Result<bool, StoreError> {
        timed("put_link", self.inner.put_link(item)).await
    }

    async fn wrapped_keys(&self) -> Result<Option<WrappedKeys>, StoreError> {
        timed("wrapped_keys", self.inner.wrapped_keys()).await
    }

    async fn put_wrapped_keys_if_absent(&self, keys: &WrappedKeys) -> Result<WrappedKeys, StoreError> {
        timed("put_wrapped_keys_if_absent", self.inner.put_wrapped_keys_if_absent(keys)).await
    }

    async fn add_evidence_key_if_absent(&self, key: &WrappedEvidenceKey) -> Result<WrappedKeys, StoreError> {
        timed("add_evidence_key_if_absent", self.inner.add_evidence_key_if_absent(key)).await
    }

    async fn scan_ledger(
        &self,
        options: ScanOptions,
        each: &mut (dyn FnMut(NumberLedger) + Send),
    ) -> Result<(), StoreError> {
        timed("scan_ledger", self.inner.scan_ledger(options, each)).await
    }

    async fn number_ledger(&self, pid: &str) -> Result<NumberLedger, StoreError> {
        timed("number_ledger", self.inner.number_ledger(pid)).await
    }

    fn table(&self) -> &str {
        self.inner.table()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::StateRead;

    /// A store whose reads fail and whose other calls are never made (they
    /// answer an error too, naming the test double).
    struct Failing;

    fn unused<T>() -> Result<T, StoreError> {
        Err(StoreError::Unavailable("not used by this test".into()))
    }

    #[async_trait]
    impl ConsentStore for Failing {
        async fn read_state(&self, _: &str) -> Result<StateRead, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn get_states(&self, _: &[String]) -> Result<Vec<Option<StateItem>>, StoreError> {
            Ok(vec![None])
        }
        async fn commit(&self, _: LedgerWrite) -> Result<CommitOutcome, StoreError> {
            unused()
        }
        async fn events(&self, _: &str) -> Result<Vec<EventItem>, StoreError> {
            unused()
        }
        async fn outbox(&self, _: &str) -> Result<Vec<OutboxItem>, StoreError> {
            unused()
        }
        async fn outbox_item(&self, _: &str, _: &str) -> Result<Option<OutboxItem>, StoreError> {
            unused()
        }
        async fn update_outbox(&self, _: &OutboxItem, _: u64) -> Result<bool, StoreError> {
            unused()
        }
        async fn due_outbox(&self, _: OffsetDateTime, _: usize) -> Result<Vec<(String, String)>, StoreError> {
            unused()
        }
        async fn events_page(
            &self,
            _: &str,
            _: Option<&str>,
            _: usize,
        ) -> Result<(Vec<EventItem>, Option<String>), StoreError> {
            unused()
        }
        async fn scrub(&self, _: &str) -> Result<usize, StoreError> {
            unused()
        }
        async fn usage(&self, _: &str) -> Result<Option<UsageItem>, StoreError> {
            unused()
        }
        async fn read_state_with_usage(&self, _: &str) -> Result<(StateRead, Option<UsageItem>), StoreError> {
            unused()
        }
        async fn usages(&self, _: &[String]) -> Result<Vec<Option<UsageItem>>, StoreError> {
            unused()
        }
        async fn put_usage(&self, _: &UsageItem, _: Option<u64>) -> Result<bool, StoreError> {
            unused()
        }
        async fn put_usages(&self, _: &[(UsageItem, Option<u64>)]) -> Result<Vec<bool>, StoreError> {
            unused()
        }
        async fn event(&self, _: &str, _: &str) -> Result<Option<EventItem>, StoreError> {
            unused()
        }
        async fn reviews_page(
            &self,
            _: Option<&str>,
            _: usize,
        ) -> Result<(Vec<ReviewItem>, Option<String>), StoreError> {
            unused()
        }
        async fn review(&self, _: &str) -> Result<Option<ReviewItem>, StoreError> {
            unused()
        }
        async fn commit_batch(&self, _: Vec<LedgerWrite>) -> Result<Vec<CommitOutcome>, StoreError> {
            unused()
        }
        async fn link(&self, _: &str) -> Result<Option<LinkItem>, StoreError> {
            unused()
        }
        async fn put_link(&self, _: &LinkItem) -> Result<bool, StoreError> {
            unused()
        }
        async fn wrapped_keys(&self) -> Result<Option<WrappedKeys>, StoreError> {
            unused()
        }
        async fn put_wrapped_keys_if_absent(&self, _: &WrappedKeys) -> Result<WrappedKeys, StoreError> {
            unused()
        }
        fn table(&self) -> &str {
            "failing"
        }
    }

    #[tokio::test]
    async fn each_call_is_timed_by_operation_and_outcome_and_its_answer_passed_through() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let store = TimedStore::new(Arc::new(Failing));
        let _guard = metrics::set_default_local_recorder(&recorder);
        assert!(matches!(store.read_state("p").await, Err(StoreError::Unavailable(_))));
        assert!(store.get_states(&["p".into()]).await.unwrap()[0].is_none());
        assert_eq!(store.table(), "failing");
        let text = handle.render();
        assert!(
            text.contains(r#"sms_consent_store_latency_seconds_count{operation="read_state",outcome="error"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sms_consent_store_latency_seconds_count{operation="get_states",outcome="ok"} 1"#),
            "{text}"
        );
        // A defaulted method reaches the wrapped store's (here the default's) answer.
        assert!(store.delete_events("p", &[]).await.is_err());
    }
}

//! The embedded consent store: the data model's items in one `redb` table,
//! keyed by (PK, SK). Every commit is one ACID write transaction, durable
//! (fsync) before it returns, so an acknowledged STOP survives a crash.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use time::OffsetDateTime;

use crate::crypto::WrappedKeys;
use crate::ports::{CommitOutcome, ConsentStore, EventItem, LedgerWrite, OutboxItem, StateItem, StoreError};

pub const DATABASE_FILE: &str = "ledger.redb";
const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");
const STATE_SK: &str = "STATE";
const DEDUP_SK: &str = "-";
/// Where the wrapped index and integrity keys are kept.
pub const KEYRING_PK: &str = "KEYRING";
pub const KEYRING_SK: &str = "v1";

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

#[derive(Serialize, Deserialize)]
struct DedupItem {
    event_id: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub fn phone_pk(pid: &str) -> String {
    format!("PHONE#{pid}")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(item: &T) -> Vec<u8> {
    serde_json::to_vec(item).expect("items serialise")
}

impl EmbeddedStore {
    /// Opens `dir/ledger.redb`, creating it on first run, and drops idempotency
    /// markers whose time is up.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DATABASE_FILE);
        let db = Database::create(&path).map_err(unavailable)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(unavailable)?;
        }
        let txn = db.begin_write().map_err(unavailable)?;
        {
            let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
            let now = OffsetDateTime::now_utc();
            let expired: Vec<String> = table
                .range(("DEDUP#", "")..("DEDUP$", ""))
                .map_err(unavailable)?
                .filter_map(Result::ok)
                .filter(|(_, v)| decode::<DedupItem>(v.value()).map(|d| d.expires_at < now).unwrap_or(false))
                .map(|(k, _)| k.value().0.to_owned())
                .collect();
            for pk in expired {
                table.remove((pk.as_str(), DEDUP_SK)).map_err(unavailable)?;
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(EmbeddedStore { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(unavailable)?
    }
}

impl EmbeddedStore {
    /// Every item of one number whose sort key starts with `prefix` (which
    /// ends in '#'; '$' is the next byte), in sort-key order.
    async fn items<T: DeserializeOwned + Send + 'static>(
        &self,
        pid: &str,
        prefix: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let pk = phone_pk(pid);
        let end = format!("{}$", prefix.trim_end_matches('#'));
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let range = table.range((pk.as_str(), prefix)..(pk.as_str(), end.as_str())).map_err(unavailable)?;
            range.map(|entry| decode(entry.map_err(unavailable)?.1.value())).collect()
        })
        .await
    }
}

fn read_state(db: &Database, pid: &str) -> Result<Option<StateItem>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(ITEMS).map_err(unavailable)?;
    let pk = phone_pk(pid);
    let item = table.get((pk.as_str(), STATE_SK)).map_err(unavailable)?;
    item.map(|v| decode(v.value())).transpose()
}

#[async_trait]
impl ConsentStore for EmbeddedStore {
    async fn get_state(&self, pid: &str) -> Result<Option<StateItem>, StoreError> {
        let pid = pid.to_owned();
        self.blocking(move |db| read_state(db, &pid)).await
    }

    async fn get_states(&self, pids: &[String]) -> Result<Vec<Option<StateItem>>, StoreError> {
        let pids = pids.to_vec();
        self.blocking(move |db| pids.iter().map(|pid| read_state(db, pid)).collect()).await
    }

    async fn wrapped_keys(&self) -> Result<Option<WrappedKeys>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let item = table.get((KEYRING_PK, KEYRING_SK)).map_err(unavailable)?;
            item.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    async fn put_wrapped_keys_if_absent(&self, keys: &WrappedKeys) -> Result<WrappedKeys, StoreError> {
        let keys = keys.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let kept = {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                let existing = table.get((KEYRING_PK, KEYRING_SK)).map_err(unavailable)?.map(|v| decode(v.value()));
                match existing {
                    Some(kept) => kept?,
                    None => {
                        table.insert((KEYRING_PK, KEYRING_SK), encode(&keys).as_slice()).map_err(unavailable)?;
                        keys
                    }
                }
            };
            txn.commit().map_err(unavailable)?;
            Ok(kept)
        })
        .await
    }

    async fn commit(&self, write: LedgerWrite) -> Result<CommitOutcome, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let pk = phone_pk(&write.event.pid);
            {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                if table.get((write.dedup_key.as_str(), DEDUP_SK)).map_err(unavailable)?.is_some() {
                    return Ok(CommitOutcome::Duplicate);
                }
                let stored_version = table
                    .get((pk.as_str(), STATE_SK))
                    .map_err(unavailable)?
                    .map(|v| decode::<StateItem>(v.value()).map(|s| s.version))
                    .transpose()?;
                if write.state.is_some() && stored_version != write.expected_version {
                    return Ok(CommitOutcome::VersionConflict);
                }
                let dedup = DedupItem { event_id: write.event.event_id.clone(), expires_at: write.dedup_expires_at };
                table.insert((write.dedup_key.as_str(), DEDUP_SK), encode(&dedup).as_slice()).map_err(unavailable)?;
                table
                    .insert((pk.as_str(), write.event.sort_key().as_str()), encode(&write.event).as_slice())
                    .map_err(unavailable)?;
                if let Some(outbox) = &write.outbox {
                    let sk = format!("OUTBOX#{}", outbox.event_id);
                    table.insert((pk.as_str(), sk.as_str()), encode(outbox).as_slice()).map_err(unavailable)?;
                }
                if let Some(state) = &write.state {
                    table.insert((pk.as_str(), STATE_SK), encode(state).as_slice()).map_err(unavailable)?;
                }
            }
            // redb's default durability fsyncs before commit returns.
            txn.commit().map_err(unavailable)?;
            Ok(CommitOutcome::Committed)
        })
        .await
    }

    async fn events(&self, pid: &str) -> Result<Vec<EventItem>, StoreError> {
        self.items(pid, "EVENT#").await
    }

    async fn outbox(&self, pid: &str) -> Result<Vec<OutboxItem>, StoreError> {
        self.items(pid, "OUTBOX#").await
    }

    async fn events_page(
        &self,
        pid: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<EventItem>, Option<String>), StoreError> {
        let pk = phone_pk(pid);
        let end = before.unwrap_or("EVENT$").to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ITEMS).map_err(unavailable)?;
            let range = table.range((pk.as_str(), "EVENT#")..(pk.as_str(), end.as_str())).map_err(unavailable)?;
            let mut page = Vec::new();
            for entry in range.rev().take(limit) {
                page.push(decode::<EventItem>(entry.map_err(unavailable)?.1.value())?);
            }
            let next = (page.len() == limit).then(|| page.last().map(EventItem::sort_key)).flatten();
            Ok((page, next))
        })
        .await
    }

    async fn scrub(&self, pid: &str) -> Result<usize, StoreError> {
        let pk = phone_pk(pid);
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let mut changed = 0;
            {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                let events: Vec<EventItem> = table
                    .range((pk.as_str(), "EVENT#")..(pk.as_str(), "EVENT$"))
                    .map_err(unavailable)?
                    .map(|entry| decode(entry.map_err(unavailable)?.1.value()))
                    .collect::<Result<_, _>>()?;
                for mut event in events {
                    if event.text.take().is_some() | event.evidence.take().is_some() {
                        table
                            .insert((pk.as_str(), event.sort_key().as_str()), encode(&event).as_slice())
                            .map_err(unavailable)?;
                        changed += 1;
                    }
                }
                let outbox: Vec<String> = table
                    .range((pk.as_str(), "OUTBOX#")..(pk.as_str(), "OUTBOX$"))
                    .map_err(unavailable)?
                    .map(|entry| entry.map(|(k, _)| k.value().1.to_owned()).map_err(unavailable))
                    .collect::<Result<_, _>>()?;
                for sk in outbox {
                    table.remove((pk.as_str(), sk.as_str())).map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)?;
            Ok(changed)
        })
        .await
    }

    fn table(&self) -> &str {
        "embedded"
    }
}

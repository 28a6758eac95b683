//! The DynamoDB consent store: the single-table items of ARCHITECTURE.md.
//! An inbound event is one `TransactWriteItems` (dedup markers, event,
//! outbox, state with a version condition and its version marker, or the
//! default state created if absent); authorization is one consistent
//! `Query` (`Limit 1`), a batch one `BatchGetItem`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, KeysAndAttributes, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ports::keys::{
    audit_pk, audit_sk_bound, audit_sk_time, link_pk, outbox_sk, phone_pk, pid_of, review_by_event_pk,
    state_version_sk, DEDUP_SK, EVENT_PREFIX, KEYRING_PK, KEYRING_SK, LINK_SK, OUTBOX_PREFIX, REVIEW_PK, STATE_SK,
    USAGE_SK,
};
use crate::ports::{
    distinct_usages, AuditEntry, CommitOutcome, ConsentStore, DeliveryStatus, EventItem, LedgerWrite, LinkItem,
    NumberLedger, OutboxItem, ReviewItem, ScanOptions, StateItem, StateRead, StoreError, UsageItem, WrappedEvidenceKey,
    WrappedKeys,
};

const PK: &str = "PK";
const SK: &str = "SK";
const DATA: &str = "data";
const VERSION: &str = "version";
/// A usage item's version: an attribute of its own name, so the authorize
/// function's IAM policy can allow `PutItem` with exactly the attributes
/// of a usage item (`dynamodb:Attributes`): a `STATE` it wrote would lack
/// `version`, read as corrupt, and deny.
const USAGE_VERSION: &str = "usage_version";
/// An outbox item's delivery revision, status and next attempt (epoch
/// seconds), as their own attributes: the compare-and-set conditions on the
/// first, and a polling worker's scan filters on the other two.
const REVISION: &str = "revision";
const OUTBOX_STATUS: &str = "outbox_status";
const NEXT_ATTEMPT: &str = "next_attempt";
/// The table's TTL attribute (epoch seconds). Only preference-page links
/// carry it (`LINK_GRACE` after they expire, so an expired link still
/// answers 410 for a while): idempotency markers are kept for ever, as
/// events are, so a replay of a captured delivery at any age is a duplicate.
pub const TTL_ATTRIBUTE: &str = "expires_at";
const LINK_GRACE: time::Duration = time::Duration::days(30);
/// How often `UnprocessedKeys` of a batch read are asked for again.
const BATCH_ATTEMPTS: u32 = 5;
pub const MAX_BATCH: usize = 100;

/// Items in one `TransactWriteItems` (DynamoDB's limit).
const MAX_TRANSACT_ITEMS: usize = 100;
/// An import's transactions in flight at once.
const IMPORT_CONCURRENCY: usize = 4;
/// Times one import chunk is sent (refused writes leave it each time).
const MAX_TRANSACT_ROUNDS: usize = 32;
/// Throttled sends retried before giving up, with exponential backoff.
const MAX_THROTTLED: u32 = 10;
const THROTTLED: [&str; 3] = ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"];
const THROTTLED_REASONS: [&str; 3] = ["ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"];

/// Where one write's conditions sit among its transaction's items.
struct Places {
    dedup_count: usize,
    state_index: Option<usize>,
    marker_index: Option<usize>,
}

impl Places {
    /// The outcome its items' cancellation reasons give, if a condition of
    /// its own failed.
    fn outcome(&self, reasons: &[String]) -> Option<CommitOutcome> {
        let failed = |i: usize| reasons.get(i).is_some_and(|r| r == "ConditionalCheckFailed");
        if (0..self.dedup_count).any(failed) {
            Some(CommitOutcome::Duplicate)
        } else if self.state_index.is_some_and(failed) || reasons.iter().any(|r| r == "TransactionConflict") {
            Some(CommitOutcome::VersionConflict)
        } else if self.marker_index.is_some_and(failed) {
            Some(CommitOutcome::Tampered)
        } else {
            None
        }
    }
}

/// Waits before the next throttled attempt (50 ms doubling, with jitter,
/// at most 5 s); an error after `MAX_THROTTLED` attempts.
async fn backoff(attempts: u32) -> Result<u32, StoreError> {
    if attempts >= MAX_THROTTLED {
        return Err(StoreError::Unavailable("throttled: the table's write capacity is exhausted".into()));
    }
    let most = (50u64 << attempts).min(5_000);
    let wait = rand::Rng::gen_range(&mut rand::thread_rng(), most / 2..=most);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    Ok(attempts + 1)
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn unavailable<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(&e).to_string())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

fn json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("item does not serialise: {e}")))
}

fn item<T: Serialize>(pk: &str, sk: &str, value: &T) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut item = key(pk, sk);
    item.insert(DATA.to_owned(), s(json(value)?));
    Ok(item)
}

/// The pid of a `PHONE#<pid>` key attribute.
fn pid_of_item(item: &HashMap<String, AttributeValue>) -> Result<String, StoreError> {
    item.get(PK)
        .and_then(|v| v.as_s().ok())
        .and_then(|pk| pid_of(pk))
        .map(str::to_owned)
        .ok_or_else(|| StoreError::Corrupt("a state item has no PHONE# key".into()))
}

fn decode<T: DeserializeOwned>(item: &HashMap<String, AttributeValue>) -> Result<T, StoreError> {
    let data = item
        .get(DATA)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt("item has no data attribute".into()))?;
    serde_json::from_str(data).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A STATE item's version is its own attribute, so the transaction can
/// condition on it; it must agree with the one inside the data.
fn decode_state(item: &HashMap<String, AttributeValue>) -> Result<StateItem, StoreError> {
    let state: StateItem = decode(item)?;
    let version = item.get(VERSION).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok());
    if version != Some(state.version) {
        return Err(StoreError::Corrupt("a state's version attribute disagrees with its data".into()));
    }
    Ok(state)
}

/// A usage item with its version as its own attribute (the compare-and-set
/// condition), as on `STATE`.
fn usage_attributes(usage: &UsageItem) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut attributes = item(&phone_pk(&usage.pid), USAGE_SK, usage)?;
    attributes.insert(USAGE_VERSION.into(), AttributeValue::N(usage.version.to_string()));
    Ok(attributes)
}

/// A usage item whose version attribute agrees with its data.
fn decode_usage(item: &HashMap<String, AttributeValue>) -> Result<UsageItem, StoreError> {
    let usage: UsageItem = decode(item)?;
    let version = item.get(USAGE_VERSION).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok());
    if version != Some(usage.version) {
        return Err(StoreError::Corrupt("a usage item's version attribute disagrees with its data".into()));
    }
    Ok(usage)
}

/// A put of `usage` only if the stored version is still `expected`.
fn guarded_usage(
    table: &str,
    usage: &UsageItem,
    expected: Option<u64>,
) -> Result<aws_sdk_dynamodb::types::builders::PutBuilder, StoreError> {
    let put = put(table, usage_attributes(usage)?);
    Ok(match expected {
        Some(version) => put
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", USAGE_VERSION)
            .expression_attribute_values(":expected", AttributeValue::N(version.to_string())),
        None => put.condition_expression("attribute_not_exists(PK)"),
    })
}

/// An outbox item with its revision, status and next attempt attributes.
fn outbox_item(item: &OutboxItem) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut attributes = self::item(&phone_pk(&item.pid), &outbox_sk(&item.event_id), item)?;
    attributes.insert(REVISION.into(), AttributeValue::N(item.delivery.revision.to_string()));
    let status = serde_json::to_value(item.delivery.status).ok().and_then(|v| v.as_str().map(str::to_owned));
    attributes.insert(OUTBOX_STATUS.into(), s(status.unwrap_or_default()));
    let next = item.delivery.next_attempt_at.map_or(0, |at| at.unix_timestamp());
    attributes.insert(NEXT_ATTEMPT.into(), AttributeValue::N(next.to_string()));
    Ok(attributes)
}

/// An outbox item whose revision attribute agrees with its data.
fn decode_outbox(attributes: &HashMap<String, AttributeValue>) -> Result<OutboxItem, StoreError> {
    let item: OutboxItem = decode(attributes)?;
    let revision = attributes.get(REVISION).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok());
    if revision.unwrap_or(0) != item.delivery.revision {
        return Err(StoreError::Corrupt("an outbox item's revision attribute disagrees with its data".into()));
    }
    Ok(item)
}

/// Items of a ledger scan per page: small pages keep the pacing smooth.
const SCAN_PAGE: i32 = 100;

/// Gathers one number's `STATE` and events from items in key order (a
/// `Scan` returns the items of one partition key together, in sort-key
/// order), handing each finished number on. A number seen again after it
/// was handed on is an error, not a second, partial ledger.
struct LedgerGrouper<'a> {
    current: Option<NumberLedger>,
    done: std::collections::HashSet<String>,
    each: &'a mut (dyn FnMut(NumberLedger) + Send),
}

impl LedgerGrouper<'_> {
    fn item(&mut self, attributes: &HashMap<String, AttributeValue>) -> Result<(), StoreError> {
        let Some(pk) = attributes.get(PK).and_then(|v| v.as_s().ok()) else { return Ok(()) };
        let Some(pid) = pid_of(pk) else { return Ok(()) };
        if self.current.as_ref().is_none_or(|c| c.pid != pid) {
            self.flush();
            if self.done.contains(pid) {
                return Err(StoreError::Unavailable("the scan returned a number's items apart".into()));
            }
            self.current = Some(NumberLedger { pid: pid.to_owned(), state: None, events: Vec::new() });
        }
        let Some(current) = self.current.as_mut() else { return Ok(()) };
        let sk = attributes.get(SK).and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or_default();
        let text = |e: StoreError| e.to_string();
        if sk == STATE_SK {
            current.state = Some(decode_state(attributes).map_err(text));
        } else if sk.starts_with(EVENT_PREFIX) {
            current.events.push((sk.to_owned(), decode::<EventItem>(attributes).map_err(text)));
        }
        Ok(())
    }

    fn flush(&mut self) {
        if let Some(done) = self.current.take() {
            self.done.insert(done.pid.clone());
            (self.each)(done);
        }
    }
}

fn put(table: &str, item: HashMap<String, AttributeValue>) -> aws_sdk_dynamodb::types::builders::PutBuilder {
    Put::builder().table_name(table).set_item(Some(item))
}

fn build(put: aws_sdk_dynamodb::types::builders::PutBuilder) -> Result<TransactWriteItem, StoreError> {
    let put = put.build().map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore { client, table: table.into() }
    }

    /// One consistent `BatchGetItem` of the `sk` item of each pid (at most
    /// `MAX_BATCH`), unprocessed keys asked again; keyed by the pid of the
    /// key each item is stored under.
    async fn batch_get(
        &self,
        pids: &[String],
        sk: &str,
    ) -> Result<HashMap<String, HashMap<String, AttributeValue>>, StoreError> {
        if pids.len() > MAX_BATCH {
            return Err(StoreError::Unavailable(format!("a batch holds at most {MAX_BATCH} keys")));
        }
        let mut unique: Vec<&String> = pids.iter().collect();
        unique.sort();
        unique.dedup();
        let mut found = HashMap::new();
        if unique.is_empty() {
            return Ok(found);
        }
        let keys = unique.iter().map(|pid| key(&phone_pk(pid), sk)).collect();
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        for attempt in 0..BATCH_ATTEMPTS {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request.clone())
                .send()
                .await
                .map_err(unavailable)?;
            for item in out.responses().and_then(|r| r.get(&self.table)).into_iter().flatten() {
                found.insert(pid_of_item(item)?, item.clone());
            }
            match out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                Some(rest) if !rest.keys().is_empty() => {
                    request = rest.clone();
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                }
                _ => return Ok(found),
            }
        }
        Err(StoreError::Unavailable("batch read left keys unprocessed".into()))
    }

    /// The items of one ledger write's transaction, and where its
    /// conditions sit among them.
    fn transact_items(&self, write: &LedgerWrite) -> Result<(Vec<TransactWriteItem>, Places), StoreError> {
        let pk = phone_pk(&write.event.pid);
        let mut items = Vec::new();
        // Idempotency markers: no TTL, kept for ever.
        for dedup_key in std::iter::once(&write.dedup_key).chain(&write.extra_dedup_keys) {
            let mut dedup = key(dedup_key, DEDUP_SK);
            dedup.insert("event_id".into(), s(&write.event.event_id));
            items.push(build(put(&self.table, dedup).condition_expression("attribute_not_exists(PK)"))?);
        }
        let dedup_count = items.len();
        items.push(build(put(&self.table, item(&pk, &write.event.sort_key(), &write.event)?))?);
        if let Some(outbox) = &write.outbox {
            items.push(build(put(&self.table, outbox_item(outbox)?))?);
        }
        let state_index = items.len();
        let mut marker_index = None;
        if let Some(state) = &write.state {
            let mut state_item = item(&pk, STATE_SK, state)?;
            state_item.insert(VERSION.into(), AttributeValue::N(state.version.to_string()));
            let guarded = match write.expected_version {
                Some(version) => put(&self.table, state_item)
                    .condition_expression("#v = :expected")
                    .expression_attribute_names("#v", VERSION)
                    .expression_attribute_values(":expected", AttributeValue::N(version.to_string())),
                None => put(&self.table, state_item).condition_expression("attribute_not_exists(PK)"),
            };
            items.push(build(guarded)?);
            // A version is written once: its marker already there means the
            // STATE was put back to an older version.
            marker_index = Some(items.len());
            let marker = key(&pk, &state_version_sk(state.version));
            items.push(build(put(&self.table, marker).condition_expression("attribute_not_exists(PK)"))?);
        } else if let Some(initial) = &write.initial_state {
            // Every number with an event has a STATE: create the default one
            // if absent, without a read (a no-op where one exists).
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(&pk, STATE_SK)))
                .update_expression("SET #d = if_not_exists(#d, :d), #v = if_not_exists(#v, :v)")
                .expression_attribute_names("#d", DATA)
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":d", s(json(initial)?))
                .expression_attribute_values(":v", AttributeValue::N(initial.version.to_string()))
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        let (opened, closed) = write.review_changes();
        if let Some(review) = opened {
            for (pk, sk) in review.keys() {
                items.push(build(put(&self.table, item(&pk, &sk, review)?))?);
            }
        }
        for review in closed {
            for (pk, sk) in review.keys() {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(&pk, &sk)))
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                items.push(TransactWriteItem::builder().delete(delete).build());
            }
        }
        if let Some(audit) = &write.audit {
            items.push(build(put(&self.table, item(&audit.partition_key(), &audit.sort_key(), audit)?))?);
        }
        Ok((items, Places { dedup_count, state_index: write.state.is_some().then_some(state_index), marker_index }))
    }

    /// Sends one chunk of an import's writes (indexes into `prepared`) until
    /// each is committed or refused: a write whose condition failed gets
    /// its outcome and leaves the chunk (a transaction conflict on its items
    /// is a version conflict: the service re-reads it), the rest is sent
    /// again; throttling waits with exponential
    /// backoff and jitter.
    async fn send_chunk(
        &self,
        prepared: &[(Vec<TransactWriteItem>, Places)],
        mut chunk: Vec<usize>,
    ) -> Result<Vec<(usize, CommitOutcome)>, StoreError> {
        let mut done = Vec::with_capacity(chunk.len());
        let mut throttled = 0u32;
        let mut rounds = 0usize;
        while !chunk.is_empty() {
            rounds += 1;
            if rounds > MAX_TRANSACT_ROUNDS {
                return Err(StoreError::Unavailable("an import transaction kept being cancelled".into()));
            }
            let items: Vec<TransactWriteItem> = chunk.iter().flat_map(|&i| prepared[i].0.iter().cloned()).collect();
            let error = match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
                Ok(_) => {
                    done.extend(chunk.drain(..).map(|i| (i, CommitOutcome::Committed)));
                    continue;
                }
                Err(error) => error,
            };
            let code = error.as_service_error().and_then(|e| e.code()).unwrap_or_default().to_owned();
            let reasons: Vec<String> = match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                    e.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect()
                }
                _ if THROTTLED.contains(&code.as_str()) => {
                    throttled = backoff(throttled).await?;
                    continue;
                }
                _ => return Err(unavailable(error)),
            };
            if reasons.iter().any(|r| THROTTLED_REASONS.contains(&r.as_str())) {
                throttled = backoff(throttled).await?;
                continue;
            }
            // Each write's own slice of the reasons.
            let mut offset = 0;
            let mut rest = Vec::with_capacity(chunk.len());
            for &i in &chunk {
                let (items, places) = &prepared[i];
                let own = reasons.get(offset..offset + items.len()).unwrap_or_default();
                offset += items.len();
                match places.outcome(own) {
                    Some(outcome) => done.push((i, outcome)),
                    None if own.iter().all(|r| r == "None") => rest.push(i),
                    None => return Err(StoreError::Unavailable(format!("transaction cancelled: {own:?}"))),
                }
            }
            if rest.len() == chunk.len() {
                return Err(StoreError::Unavailable(format!("transaction cancelled: {reasons:?}")));
            }
            chunk = rest;
        }
        Ok(done)
    }

    /// One `TransactWriteItems` of guarded usage puts (at most 100): true
    /// when written, false when any version had changed (nothing written).
    async fn put_usage_chunk(&self, chunk: &[(UsageItem, Option<u64>)]) -> Result<bool, StoreError> {
        let items = chunk
            .iter()
            .map(|(usage, expected)| build(guarded_usage(&self.table, usage, *expected)?))
            .collect::<Result<Vec<_>, _>>()?;
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(error) => {
                let reasons: Vec<String> = match error.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                        e.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect()
                    }
                    _ => return Err(unavailable(error)),
                };
                if reasons.iter().any(|r| r == "ConditionalCheckFailed" || r == "TransactionConflict") {
                    return Ok(false);
                }
                Err(StoreError::Unavailable(format!("transaction cancelled: {reasons:?}")))
            }
        }
    }

    /// `BatchWriteItem`s of 25 requests, unprocessed ones sent again.
    async fn batch_write(&self, requests: Vec<WriteRequest>, what: &str) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            for attempt in 0..BATCH_ATTEMPTS {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(unavailable)?;
                match out.unprocessed_items().and_then(|u| u.get(&self.table)) {
                    Some(rest) if !rest.is_empty() => {
                        pending = rest.clone();
                        tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                    }
                    _ => {
                        pending = Vec::new();
                        break;
                    }
                }
            }
            if !pending.is_empty() {
                return Err(StoreError::Unavailable(format!("{what} left writes unprocessed")));
            }
        }
        Ok(())
    }

    /// One page, newest first: up to `limit` items of `pk` whose sort key
    /// starts with `prefix` (any, with none), continued below `before`; and the cursor of the
    /// next page when there may be one. One consistent `Query`.
    async fn page_back<T: DeserializeOwned>(
        &self,
        pk: &str,
        prefix: Option<&str>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<T>, Option<String>), StoreError> {
        let limit = limit.clamp(1, 1000);
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .scan_index_forward(false)
            .limit(limit as i32)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(pk))
            .set_exclusive_start_key(before.map(|sk| key(pk, sk)));
        query = match prefix {
            Some(prefix) => query
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":prefix", s(prefix)),
            None => query.key_condition_expression("#pk = :pk"),
        };
        let out = query.send().await.map_err(unavailable)?;
        let page: Vec<T> = out.items().iter().map(decode).collect::<Result<_, _>>()?;
        let next = out.last_evaluated_key().and_then(|k| k.get(SK)).and_then(|v| v.as_s().ok()).cloned();
        Ok((page, next))
    }

    /// One item by its key, strongly consistent.
    async fn get<T: DeserializeOwned>(&self, pk: &str, sk: &str) -> Result<Option<T>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item().map(decode).transpose()
    }

    async fn query_prefix<T: DeserializeOwned>(&self, pid: &str, prefix: &str) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(phone_pk(pid)))
            .expression_attribute_values(":prefix", s(prefix))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            out.push(decode(&item.map_err(unavailable)?)?);
        }
        Ok(out)
    }
}

#[async_trait]
impl ConsentStore for DynamoStore {
    /// One consistent `Query`, newest first, for the first item at or below
    /// `STATE`: the `STATE` itself if there is one, else the newest event or
    /// outbox item, which proves the number has history.
    async fn read_state(&self, pid: &str) -> Result<StateRead, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .scan_index_forward(false)
            .limit(1)
            .key_condition_expression("#pk = :pk AND #sk <= :state")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(phone_pk(pid)))
            .expression_attribute_values(":state", s(STATE_SK))
            .send()
            .await
            .map_err(unavailable)?;
        match out.items().first() {
            None => Ok(StateRead::Absent),
            Some(item) if item.get(SK).and_then(|v| v.as_s().ok()).is_some_and(|sk| sk == STATE_SK) => {
                Ok(StateRead::Found(decode_state(item)?))
            }
            Some(_) => Ok(StateRead::MissingWithHistory),
        }
    }

    /// One `BatchGetItem` (unprocessed keys retried), keyed by the key each
    /// item is stored under, never by the pid inside its data: the service
    /// checks that the two agree.
    async fn get_states(&self, pids: &[String]) -> Result<Vec<Option<StateItem>>, StoreError> {
        let found = self.batch_get(pids, STATE_SK).await?;
        pids.iter().map(|pid| found.get(pid).map(decode_state).transpose()).collect()
    }

    async fn commit(&self, write: LedgerWrite) -> Result<CommitOutcome, StoreError> {
        let (items, places) = self.transact_items(&write)?;
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(CommitOutcome::Committed),
            Err(error) => {
                let reasons: Vec<String> = match error.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                        e.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect()
                    }
                    _ => return Err(unavailable(error)),
                };
                match places.outcome(&reasons) {
                    Some(outcome) => Ok(outcome),
                    None => Err(StoreError::Unavailable(format!("transaction cancelled: {reasons:?}"))),
                }
            }
        }
    }

    /// `TransactWriteItems` of at most 100 items, each write whole in one
    /// (every write here is of another number), up to `IMPORT_CONCURRENCY`
    /// at a time; a write a condition refuses leaves its transaction and the
    /// rest is sent again; throttling backs off (see `send_chunk`).
    async fn commit_batch(&self, writes: Vec<LedgerWrite>) -> Result<Vec<CommitOutcome>, StoreError> {
        use futures::StreamExt;
        let mut prepared = Vec::with_capacity(writes.len());
        for write in &writes {
            prepared.push(self.transact_items(write)?);
        }
        // Greedy chunks of whole writes, at most MAX_TRANSACT_ITEMS items each.
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        let mut size = 0;
        for (i, (items, _)) in prepared.iter().enumerate() {
            if chunks.is_empty() || size + items.len() > MAX_TRANSACT_ITEMS {
                chunks.push(Vec::new());
                size = 0;
            }
            size += items.len();
            if let Some(chunk) = chunks.last_mut() {
                chunk.push(i);
            }
        }
        let prepared = &prepared;
        let results: Vec<Result<Vec<(usize, CommitOutcome)>, StoreError>> = futures::stream::iter(chunks)
            .map(|chunk| self.send_chunk(prepared, chunk))
            .buffer_unordered(IMPORT_CONCURRENCY)
            .collect()
            .await;
        let mut outcomes = vec![CommitOutcome::VersionConflict; writes.len()];
        for result in results {
            for (i, outcome) in result? {
                outcomes[i] = outcome;
            }
        }
        Ok(outcomes)
    }

    async fn events(&self, pid: &str) -> Result<Vec<EventItem>, StoreError> {
        self.query_prefix(pid, EVENT_PREFIX).await
    }

    async fn outbox(&self, pid: &str) -> Result<Vec<OutboxItem>, StoreError> {
        self.query_prefix(pid, OUTBOX_PREFIX).await
    }

    async fn outbox_item(&self, pid: &str, event_id: &str) -> Result<Option<OutboxItem>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&phone_pk(pid), &outbox_sk(event_id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item().map(decode_outbox).transpose()
    }

    async fn update_outbox(&self, item: &OutboxItem, expected: u64) -> Result<bool, StoreError> {
        // Items written before revisions were kept have no attribute: 0.
        let condition = if expected == 0 {
            "attribute_exists(PK) AND (attribute_not_exists(#r) OR #r = :expected)"
        } else {
            "#r = :expected"
        };
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(outbox_item(item)?))
            .condition_expression(condition)
            .expression_attribute_names("#r", REVISION)
            .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A consistent `Scan` filtered to pending outbox items that are due:
    /// for a worker polling the table outside Lambda (on AWS the stream
    /// feeds the outbox function and nothing scans).
    async fn due_outbox(&self, now: time::OffsetDateTime, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        let pending = serde_json::to_value(DeliveryStatus::Pending)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .filter_expression("begins_with(#sk, :prefix) AND #st = :pending AND #next <= :now")
            .expression_attribute_names("#sk", SK)
            .expression_attribute_names("#st", OUTBOX_STATUS)
            .expression_attribute_names("#next", NEXT_ATTEMPT)
            .expression_attribute_values(":prefix", s(OUTBOX_PREFIX))
            .expression_attribute_values(":pending", s(pending))
            .expression_attribute_values(":now", AttributeValue::N(now.unix_timestamp().to_string()))
            .projection_expression("#sk, PK")
            .into_paginator()
            .items()
            .send();
        let mut due = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(unavailable)?;
            let pid = pid_of_item(&item)?;
            let sk = item.get(SK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            if let Some(event_id) = sk.strip_prefix(OUTBOX_PREFIX) {
                due.push((pid, event_id.to_owned()));
            }
            if due.len() >= limit {
                break;
            }
        }
        Ok(due)
    }

    async fn event(&self, pid: &str, sk: &str) -> Result<Option<EventItem>, StoreError> {
        self.get(&phone_pk(pid), sk).await
    }

    async fn reviews_page(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ReviewItem>, Option<String>), StoreError> {
        self.page_back(REVIEW_PK, None, before, limit).await
    }

    async fn review(&self, event_id: &str) -> Result<Option<ReviewItem>, StoreError> {
        self.get(&review_by_event_pk(event_id), DEDUP_SK).await
    }

    async fn events_page(
        &self,
        pid: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<EventItem>, Option<String>), StoreError> {
        self.page_back(&phone_pk(pid), Some(EVENT_PREFIX), before, limit).await
    }

    async fn scrub(&self, pid: &str) -> Result<usize, StoreError> {
        let pk = phone_pk(pid);
        let mut requests = Vec::new();
        let mut changed = 0;
        for mut event in self.query_prefix::<EventItem>(pid, EVENT_PREFIX).await? {
            if event.text.take().is_some() | event.evidence.take().is_some() {
                let put = PutRequest::builder()
                    .set_item(Some(item(&pk, &event.sort_key(), &event)?))
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                requests.push(WriteRequest::builder().put_request(put).build());
                changed += 1;
            }
        }
        // Pending replies are deleted; the others keep their status but
        // not the numbers.
        for mut outbox in self.query_prefix::<OutboxItem>(pid, OUTBOX_PREFIX).await? {
            let request = if outbox.delivery.status == DeliveryStatus::Pending {
                let delete = DeleteRequest::builder()
                    .set_key(Some(key(&pk, &outbox_sk(&outbox.event_id))))
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                WriteRequest::builder().delete_request(delete).build()
            } else if outbox.to.take().is_some() | outbox.from.take().is_some() {
                let put = PutRequest::builder()
                    .set_item(Some(outbox_item(&outbox)?))
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                WriteRequest::builder().put_request(put).build()
            } else {
                continue;
            };
            requests.push(request);
        }
        self.batch_write(requests, "erasure").await?;
        Ok(changed)
    }

    /// A `Query` per UTC day partition (`PK = AUDIT#<day> AND SK BETWEEN`),
    /// each continued from the cursor or the previous page.
    async fn audit_page(
        &self,
        from: time::OffsetDateTime,
        to: time::OffsetDateTime,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<String>), StoreError> {
        let limit = limit.clamp(1, 1000);
        let start = after.and_then(audit_sk_time).map_or(from, |at| at.max(from));
        let (low, high) = (audit_sk_bound(from), audit_sk_bound(to));
        let mut page: Vec<AuditEntry> = Vec::new();
        let mut day = start;
        let mut resume = after.map(|sk| key(&audit_pk(start), sk));
        while audit_pk(day) <= audit_pk(to) && page.len() < limit {
            let pk = audit_pk(day);
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .consistent_read(true)
                    .limit((limit - page.len()) as i32)
                    .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
                    .expression_attribute_names("#pk", PK)
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":pk", s(&pk))
                    .expression_attribute_values(":low", s(&low))
                    .expression_attribute_values(":high", s(&high))
                    .set_exclusive_start_key(resume.take())
                    .send()
                    .await
                    .map_err(unavailable)?;
                for attributes in out.items() {
                    page.push(decode(attributes)?);
                }
                match out.last_evaluated_key() {
                    Some(last) if !last.is_empty() && page.len() < limit => resume = Some(last.clone()),
                    _ => break,
                }
            }
            day += time::Duration::days(1);
        }
        let next = (page.len() == limit).then(|| page.last().map(AuditEntry::sort_key)).flatten();
        Ok((page, next))
    }

    /// `BatchWriteItem` deletions, 25 a request, unprocessed ones retried.
    async fn delete_events(&self, pid: &str, sort_keys: &[String]) -> Result<usize, StoreError> {
        let pk = phone_pk(pid);
        let mut requests = Vec::new();
        for sk in sort_keys.iter().filter(|sk| sk.starts_with(EVENT_PREFIX)) {
            let delete = DeleteRequest::builder()
                .set_key(Some(key(&pk, sk)))
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        let count = requests.len();
        self.batch_write(requests, "purge").await?;
        Ok(count)
    }

    async fn usage(&self, pid: &str) -> Result<Option<UsageItem>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&phone_pk(pid), USAGE_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item().map(decode_usage).transpose()
    }

    /// One consistent `Query`, newest first, `Limit 2`, of the items at or
    /// below `STATE#USAGE`: the usage (if any), then the `STATE` or the
    /// newest other item, as `read_state` reads it.
    async fn read_state_with_usage(&self, pid: &str) -> Result<(StateRead, Option<UsageItem>), StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .scan_index_forward(false)
            .limit(2)
            .key_condition_expression("#pk = :pk AND #sk <= :usage")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(phone_pk(pid)))
            .expression_attribute_values(":usage", s(USAGE_SK))
            .send()
            .await
            .map_err(unavailable)?;
        let sk_of = |item: &HashMap<String, AttributeValue>| item.get(SK).and_then(|v| v.as_s().ok()).cloned();
        let mut items = out.items().iter().peekable();
        let usage = match items.peek() {
            Some(item) if sk_of(item).as_deref() == Some(USAGE_SK) => Some(decode_usage(items.next().unwrap())?),
            _ => None,
        };
        let state = match items.next() {
            None => StateRead::Absent,
            Some(item) if sk_of(item).as_deref() == Some(STATE_SK) => StateRead::Found(decode_state(item)?),
            Some(_) => StateRead::MissingWithHistory,
        };
        Ok((state, usage))
    }

    async fn usages(&self, pids: &[String]) -> Result<Vec<Option<UsageItem>>, StoreError> {
        let found = self.batch_get(pids, USAGE_SK).await?;
        pids.iter().map(|pid| found.get(pid).map(decode_usage).transpose()).collect()
    }

    async fn put_usage(&self, item: &UsageItem, expected: Option<u64>) -> Result<bool, StoreError> {
        let put =
            guarded_usage(&self.table, item, expected)?.build().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(put.item))
            .set_condition_expression(put.condition_expression)
            .set_expression_attribute_names(put.expression_attribute_names)
            .set_expression_attribute_values(put.expression_attribute_values)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().is_some_and(|s| {
                    s.is_conditional_check_failed_exception() || s.is_transaction_conflict_exception()
                }) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Chunks of at most 100, one `TransactWriteItems` each: all or nothing
    /// within a chunk, not across chunks.
    async fn put_usages(&self, items: &[(UsageItem, Option<u64>)]) -> Result<Vec<bool>, StoreError> {
        distinct_usages(items)?;
        let mut written = Vec::with_capacity(items.len());
        for chunk in items.chunks(MAX_BATCH) {
            let ok = self.put_usage_chunk(chunk).await?;
            written.extend(std::iter::repeat_n(ok, chunk.len()));
        }
        Ok(written)
    }

    async fn link(&self, hash: &str) -> Result<Option<LinkItem>, StoreError> {
        self.get(&link_pk(hash), LINK_SK).await
    }

    /// One conditional `PutItem`, with the table's TTL attribute set past
    /// the link's expiry (DynamoDB then deletes the item, sealed number and
    /// all).
    async fn put_link(&self, link: &LinkItem) -> Result<bool, StoreError> {
        let mut attributes = item(&link.partition_key(), LINK_SK, link)?;
        let ttl = (link.expires_at + LINK_GRACE).unix_timestamp();
        attributes.insert(TTL_ATTRIBUTE.to_owned(), AttributeValue::N(ttl.to_string()));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attributes))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn wrapped_keys(&self) -> Result<Option<WrappedKeys>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(KEYRING_PK, KEYRING_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item().map(decode).transpose()
    }

    async fn add_evidence_key_if_absent(&self, evidence: &WrappedEvidenceKey) -> Result<WrappedKeys, StoreError> {
        // Conditioned on the keyring's data as read: a concurrent change
        // (another `provision` adding its key first) is read again and kept.
        for _ in 0..5 {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key(KEYRING_PK, KEYRING_SK)))
                .consistent_read(true)
                .send()
                .await
                .map_err(unavailable)?;
            let stored = out.item().ok_or_else(|| StoreError::Unavailable("no keyring to add to".into()))?;
            let mut keys: WrappedKeys = decode(stored)?;
            if !keys.evidence_keys.is_empty() {
                return Ok(keys);
            }
            let read = stored.get(DATA).cloned().ok_or_else(|| StoreError::Corrupt("keyring has no data".into()))?;
            keys.evidence_keys.push(evidence.clone());
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item(KEYRING_PK, KEYRING_SK, &keys)?))
                .condition_expression("#data = :read")
                .expression_attribute_names("#data", DATA)
                .expression_attribute_values(":read", read)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(keys),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Unavailable("the keyring kept changing".into()))
    }

    async fn put_wrapped_keys_if_absent(&self, keys: &WrappedKeys) -> Result<WrappedKeys, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(KEYRING_PK, KEYRING_SK, keys)?))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(keys.clone()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                self.wrapped_keys().await?.ok_or_else(|| StoreError::Unavailable("keyring vanished".into()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A consistent `Scan`, page by page (`SCAN_PAGE` items), paced to
    /// `options.rate` read capacity units per second: after each page it
    /// waits as long as that page's consumed capacity allows (as the table
    /// reports it; where it reports none, one unit per item read, the cost
    /// of a consistent read of an item under 4 KB).
    async fn scan_ledger(
        &self,
        options: ScanOptions,
        each: &mut (dyn FnMut(NumberLedger) + Send),
    ) -> Result<(), StoreError> {
        let rate = if options.rate.is_finite() && options.rate > 0.0 { options.rate } else { 1.0 };
        let mut grouper = LedgerGrouper { current: None, done: Default::default(), each };
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .limit(SCAN_PAGE)
                .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for attributes in out.items() {
                grouper.item(attributes)?;
            }
            let consumed = out
                .consumed_capacity()
                .and_then(|c| c.capacity_units())
                .filter(|units| *units > 0.0)
                .unwrap_or(out.scanned_count().max(1) as f64);
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
            tokio::time::sleep(Duration::from_secs_f64(consumed / rate)).await;
        }
        grouper.flush();
        Ok(())
    }

    /// A consistent, paginated `Query` of the number's partition.
    async fn number_ledger(&self, pid: &str) -> Result<NumberLedger, StoreError> {
        let mut found = None;
        let mut each = |ledger: NumberLedger| found = Some(ledger);
        let mut grouper = LedgerGrouper { current: None, done: Default::default(), each: &mut each };
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(phone_pk(pid)))
            .into_paginator()
            .items()
            .send();
        while let Some(attributes) = pages.next().await {
            grouper.item(&attributes.map_err(unavailable)?)?;
        }
        grouper.flush();
        drop(grouper);
        Ok(found.unwrap_or(NumberLedger { pid: pid.to_owned(), state: None, events: Vec::new() }))
    }

    fn table(&self) -> &str {
        &self.table
    }
}

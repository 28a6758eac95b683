//! Chooses the store and the key service from config (embedded or DynamoDB,
//! local keyring or KMS), builds each AWS client once, and provisions what
//! the config names.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, SseSpecification,
    TimeToLiveSpecification,
};

use crate::adapters::aws::{sdk_config, CallCounter};
use crate::adapters::dynamodb::{DynamoStore, TTL_ATTRIBUTE};
use crate::adapters::embedded::{ledger_file, EmbeddedStore, LedgerFile, DATABASE_FILE, RECOVERY};
use crate::adapters::kms::KmsKeyService;
use crate::adapters::local_keyring::{LocalKeyring, KEYRING_FILE};
use crate::config::{Config, KeysBackend, StorageBackend};
use crate::crypto::{CacheLimits, Crypto};
use crate::ports::{ConsentStore, KeyService, WrappedKeys};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

fn err(context: &str) -> impl Fn(String) -> BackendError + '_ {
    move |e| BackendError(format!("{context}: {e}"))
}

/// How many calls each AWS client has started: metrics, and how tests prove
/// the authorization path's cost.
#[derive(Debug, Clone, Default)]
pub struct Calls {
    pub dynamodb: CallCounter,
    pub kms: CallCounter,
}

pub struct Backends {
    pub store: Arc<dyn ConsentStore>,
    pub keys: Arc<dyn KeyService>,
    pub calls: Calls,
    dynamodb: Option<aws_sdk_dynamodb::Client>,
    kms: Option<aws_sdk_kms::Client>,
    /// The embedded ledger did not exist (nor, with the local keyring, the
    /// keyring): the only start that may make index and integrity keys.
    first_start: bool,
}

/// Decides, before any file is created, whether the data directory is a
/// first start (nothing there), a normal start (both there), or damaged
/// (one without the other, or an empty ledger): then nothing is created.
fn check_data_dir(config: &Config) -> Result<bool, BackendError> {
    let dir = &config.server.data_dir;
    let ledger_path = dir.join(DATABASE_FILE);
    let keyring_path = dir.join(KEYRING_FILE);
    let ledger = ledger_file(dir).map_err(|e| BackendError(e.to_string()))?;
    let local_keyring = config.keys.backend == KeysBackend::Local;
    let keyring = local_keyring && keyring_path.exists();
    let refuse = |what: String| {
        Err(BackendError(format!("{what}; refusing to start rather than start with an empty ledger: {RECOVERY}")))
    };
    match (ledger, keyring) {
        (LedgerFile::Missing, false) => Ok(true),
        (LedgerFile::Present, true) => Ok(false),
        (LedgerFile::Present, false) if !local_keyring => Ok(false),
        (LedgerFile::Present, false) => refuse(format!(
            "the ledger {} is there but its keyring {} is missing",
            ledger_path.display(),
            keyring_path.display()
        )),
        (LedgerFile::Missing, true) => refuse(format!(
            "the keyring {} is there but its ledger {} is missing",
            keyring_path.display(),
            ledger_path.display()
        )),
        (LedgerFile::Empty, _) => refuse(format!("the ledger {} is empty (0 bytes)", ledger_path.display())),
    }
}

impl Backends {
    /// Builds the configured store and key service; `server.data_dir` holds
    /// the embedded store and the local keyring.
    pub async fn open(config: &Config) -> Result<Self, BackendError> {
        Self::open_with(config, None).await
    }

    /// As `open`, reusing an SDK config already loaded (on Lambda, one per
    /// process) for any AWS backend that names no endpoint or region of its own.
    pub async fn open_with(config: &Config, shared: Option<&aws_config::SdkConfig>) -> Result<Self, BackendError> {
        let calls = Calls::default();
        let dir = &config.server.data_dir;
        let storage = &config.storage;
        let keys_config = &config.keys;
        let same_endpoint = storage.region == keys_config.region && storage.endpoint_url == keys_config.endpoint_url;
        let load = |region: Option<String>, endpoint: Option<String>| async move {
            match (shared, &region, &endpoint) {
                (Some(sdk), None, None) => sdk.clone(),
                _ => sdk_config(region.as_deref(), endpoint.as_deref()).await,
            }
        };
        let storage_sdk = match storage.backend {
            StorageBackend::Dynamodb => Some(load(storage.region.clone(), storage.endpoint_url.clone()).await),
            StorageBackend::Embedded => None,
        };
        let keys_sdk = match (keys_config.backend, &storage_sdk) {
            (KeysBackend::Kms, Some(shared)) if same_endpoint => Some(shared.clone()),
            (KeysBackend::Kms, _) => Some(load(keys_config.region.clone(), keys_config.endpoint_url.clone()).await),
            (KeysBackend::Local, _) => None,
        };
        let first_start = match storage.backend {
            StorageBackend::Embedded => check_data_dir(config)?,
            StorageBackend::Dynamodb => false,
        };
        let (store, dynamodb): (Arc<dyn ConsentStore>, _) = match storage_sdk {
            Some(sdk) => {
                let client_config =
                    aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(calls.dynamodb.clone()).build();
                let client = aws_sdk_dynamodb::Client::from_conf(client_config);
                let table = storage.table.clone().expect("validated");
                (Arc::new(DynamoStore::new(client.clone(), table)), Some(client))
            }
            None => {
                (Arc::new(EmbeddedStore::open(dir).map_err(|e| err(&dir.display().to_string())(e.to_string()))?), None)
            }
        };
        let local_keys = |first: bool| {
            let opened = if first { LocalKeyring::open_or_create(dir) } else { LocalKeyring::open(dir) };
            opened.map_err(|e| BackendError(e.to_string()))
        };
        let (keys, kms): (Arc<dyn KeyService>, _) = match keys_sdk {
            Some(sdk) => {
                let client_config = aws_sdk_kms::config::Builder::from(&sdk).interceptor(calls.kms.clone()).build();
                let client = aws_sdk_kms::Client::from_conf(client_config);
                let key_id = keys_config.key_id.clone().expect("validated");
                (Arc::new(KmsKeyService::new(client.clone(), key_id)), Some(client))
            }
            // On DynamoDB `provision` makes the keyring; on the embedded store
            // only a first start does.
            None if storage.backend == StorageBackend::Dynamodb => (Arc::new(local_keys(true)?), None),
            None => match local_keys(first_start) {
                Ok(keys) => (Arc::new(keys), None),
                Err(e) => {
                    if first_start {
                        // Leave the directory as it was.
                        drop(store);
                        let _ = std::fs::remove_file(dir.join(DATABASE_FILE));
                    }
                    return Err(e);
                }
            },
        };
        Ok(Backends { store, keys, calls, dynamodb, kms, first_start })
    }

    /// Reads the wrapped index and integrity keys from the store; where
    /// there are none and `create` allows, makes them and stores them (the
    /// first ones stored win a race). `None`: none there, none made.
    async fn wrapped_keys(&self, create: bool) -> Result<Option<WrappedKeys>, BackendError> {
        let store = |e: crate::ports::StoreError| BackendError(format!("keys: {e}"));
        match self.store.wrapped_keys().await.map_err(store)? {
            Some(wrapped) => Ok(Some(wrapped)),
            None if create => {
                let fresh =
                    Crypto::generate_keys(self.keys.as_ref()).await.map_err(|e| BackendError(format!("keys: {e}")))?;
                Ok(Some(self.store.put_wrapped_keys_if_absent(&fresh).await.map_err(store)?))
            }
            None => Ok(None),
        }
    }

    /// Unwraps the index and integrity keys. Only a local box makes them,
    /// and only on its first start (no ledger, no keyring); on DynamoDB that
    /// is `provision`'s job, so a missing keyring item can never silently
    /// re-key (and orphan) the ledger.
    pub async fn crypto(&self, config: &Config) -> Result<Crypto, BackendError> {
        let embedded = config.storage.backend == StorageBackend::Embedded;
        let Some(wrapped) = self.wrapped_keys(embedded && self.first_start).await? else {
            return Err(BackendError(if embedded {
                format!(
                    "the ledger {} holds no index and integrity keys (no KEYRING item) although this is not its \
                     first start; refusing to start rather than start with an empty ledger: {RECOVERY}",
                    config.server.data_dir.join(DATABASE_FILE).display()
                )
            } else {
                "keys: the store holds no index and integrity keys: run `sms-consent provision` first".into()
            }));
        };
        // A local ledger from before evidence bundles gets its signing key
        // here (one process owns the embedded store); on DynamoDB only
        // `provision` adds it, so Lambda starts never write the keyring.
        let wrapped = if embedded { self.with_evidence_key(wrapped).await?.0 } else { wrapped };
        self.start_crypto(&wrapped).await
    }

    /// The keyring with an evidence signing key: where it has none, makes
    /// one and adds it by compare and set (a concurrent `provision` adding
    /// its own first wins; this one's is dropped). True when one was added.
    async fn with_evidence_key(&self, wrapped: WrappedKeys) -> Result<(WrappedKeys, bool), BackendError> {
        if !wrapped.evidence_keys.is_empty() {
            return Ok((wrapped, false));
        }
        let fresh = Crypto::generate_evidence_key(self.keys.as_ref())
            .await
            .map_err(|e| BackendError(format!("evidence key: {e}")))?;
        let kept = self
            .store
            .add_evidence_key_if_absent(&fresh)
            .await
            .map_err(|e| BackendError(format!("evidence key: {e}")))?;
        let added = kept.evidence_keys.last() == Some(&fresh);
        Ok((kept, added))
    }

    /// The unwrapped evidence signing key of the keyring the config names
    /// (`sms-consent evidence-public-key`); never makes keys.
    pub async fn evidence_signer(&self) -> Result<crate::crypto::EvidenceSigner, BackendError> {
        let wrapped = self.wrapped_keys(false).await?.ok_or_else(|| {
            BackendError("keys: the store holds no keyring: run `sms-consent provision` (or `serve`) first".into())
        })?;
        let crypto = self.start_crypto(&wrapped).await?;
        crypto.take_evidence_signer().await.map_err(|e| BackendError(format!("evidence key: {e}")))
    }

    async fn start_crypto(&self, wrapped: &WrappedKeys) -> Result<Crypto, BackendError> {
        Crypto::start(self.keys.clone(), wrapped, self.store.table(), CacheLimits::default())
            .await
            .map_err(|e| BackendError(format!("keys: {e}")))
    }

    /// Creates what the config names when it is missing: the table (TTL
    /// enabled on an attribute no item carries today: idempotency markers
    /// never expire), the KMS key and alias when an endpoint is set
    /// (a local emulator), and the wrapped index and integrity keys.
    /// Returns what it did, one line each.
    pub async fn provision(&self, config: &Config) -> Result<Vec<String>, BackendError> {
        let mut report = Vec::new();
        if let (Some(client), Some(table)) = (&self.dynamodb, &config.storage.table) {
            report.push(ensure_table(client, table).await?);
        }
        if let (Some(client), Some(key_id), Some(_)) = (&self.kms, &config.keys.key_id, &config.keys.endpoint_url) {
            report.push(ensure_key(client, key_id).await?);
        }
        let created = self.store.wrapped_keys().await.map_err(|e| BackendError(e.to_string()))?.is_none();
        // Made only where none are stored.
        let wrapped = self.wrapped_keys(true).await?.ok_or_else(|| BackendError("keys: none stored".into()))?;
        report.push(if created {
            "created the wrapped index and integrity keys".into()
        } else {
            "index and integrity keys already present".into()
        });
        let (wrapped, added) = self.with_evidence_key(wrapped).await?;
        // Either way they must unwrap: the index and integrity keys, and the
        // evidence key.
        let crypto = self.start_crypto(&wrapped).await?;
        let signer = crypto.evidence_signer().await.map_err(|e| BackendError(format!("evidence key: {e}")))?;
        report.push(if created || added {
            format!("created the evidence signing key {}", signer.key_id())
        } else {
            format!("evidence signing key {} already present", signer.key_id())
        });
        Ok(report)
    }
}

async fn ensure_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<String, BackendError> {
    let exists = match client.describe_table().table_name(table).send().await {
        Ok(_) => true,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => false,
        Err(e) => {
            return Err(BackendError(format!(
                "describe table {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            )))
        }
    };
    if exists {
        return Ok(format!("table {table} already exists"));
    }
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("complete")
    };
    let key =
        |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().expect("complete");
    client
        .create_table()
        .table_name(table)
        .attribute_definitions(attribute("PK"))
        .attribute_definitions(attribute("SK"))
        .key_schema(key("PK", KeyType::Hash))
        .key_schema(key("SK", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .sse_specification(SseSpecification::builder().enabled(true).build())
        .deletion_protection_enabled(true)
        .send()
        .await
        .map_err(|e| {
            BackendError(format!("create table {table}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)))
        })?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().enabled(true).attribute_name(TTL_ATTRIBUTE).build().expect("complete"),
        )
        .send()
        .await
        .map_err(|e| {
            BackendError(format!("enable TTL on {table}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)))
        })?;
    Ok(format!("created table {table} (TTL on {TTL_ATTRIBUTE})"))
}

async fn ensure_key(client: &aws_sdk_kms::Client, key_id: &str) -> Result<String, BackendError> {
    match client.describe_key().key_id(key_id).send().await {
        Ok(_) => return Ok(format!("KMS key {key_id} already exists")),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found_exception()) => {}
        Err(e) => {
            return Err(BackendError(format!("describe key {key_id}: {}", aws_sdk_kms::error::DisplayErrorContext(&e))))
        }
    }
    let Some(alias) = key_id.strip_prefix("alias/").map(|_| key_id) else {
        return Err(BackendError(format!("KMS key {key_id} does not exist; name an alias/... to have it created")));
    };
    let key = client
        .create_key()
        .description("sms-consent data keys")
        .send()
        .await
        .map_err(|e| BackendError(format!("create key: {}", aws_sdk_kms::error::DisplayErrorContext(&e))))?;
    let id = key
        .key_metadata()
        .map(|m| m.key_id().to_owned())
        .ok_or_else(|| BackendError("create key returned no id".into()))?;
    client
        .create_alias()
        .alias_name(alias)
        .target_key_id(&id)
        .send()
        .await
        .map_err(|e| BackendError(format!("create alias {alias}: {}", aws_sdk_kms::error::DisplayErrorContext(&e))))?;
    Ok(format!("created KMS key {id} as {alias}"))
}

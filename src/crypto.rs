//! Envelope encryption, the blind index and the integrity tag.
//!
//! Values are sealed with AES-256-GCM under a data key from the `KeyService`;
//! the record (table, key, attribute) is the AAD, so a ciphertext moved to
//! another record fails to open. Data keys are cached with bounds on age and
//! uses, as the AWS Encryption SDK's caching materials manager does. The
//! index and integrity keys are unwrapped once at start, so authorization
//! needs no key service call. The evidence signing key (Ed25519, its seed a
//! data key of the key service) is unwrapped at the first evidence export,
//! so a start makes no extra key service call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::domain::{ConsentState, PhoneNumber};
use crate::ports::keys::{phone_pk, STATE_SK};
use crate::ports::{
    ChainHead, EncryptionContext, KeyError, KeyService, StateItem, WrappedEvidenceKey, WrappedIntegrityKey, WrappedKeys,
};

const SEALED_VERSION: &str = "v1";
const TAG_VERSION: &str = "t1";
/// The version of a chain link's MAC (`c1.<key id>.<HMAC>`).
const LINK_VERSION: &str = "c1";
/// What a link's HMAC input starts with: never the start of a state tag's
/// (`PHONE#...`), so one integrity key serves both without confusion.
const LINK_DOMAIN: &str = "sms-consent/chain-link";
const APPLICATION: &str = "sms-consent";

/// How long and how often one cached data key may be used.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    pub max_age: Duration,
    pub max_uses: u64,
    pub max_entries: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits { max_age: Duration::from_secs(300), max_uses: 10_000, max_entries: 1_000 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not open for this record")]
    Mismatch,
    #[error("a value could not be serialised: {0}")]
    Serialise(String),
    #[error("no evidence signing key in the keyring: run `sms-consent provision`")]
    NoEvidenceKey,
    #[error("the evidence signing key does not match its id")]
    EvidenceKeyMismatch,
}

fn purpose_context(purpose: &str) -> EncryptionContext {
    EncryptionContext::from([
        ("application".to_owned(), APPLICATION.to_owned()),
        ("purpose".to_owned(), purpose.to_owned()),
    ])
}

/// Everything needed to seal, open, index and tag, built once per process.
pub struct Crypto {
    keys: Arc<dyn KeyService>,
    table: String,
    index_key: Zeroizing<[u8; 32]>,
    integrity_keys: Vec<(String, Zeroizing<[u8; 32]>)>,
    limits: CacheLimits,
    encrypt_cache: Mutex<Option<CachedKey>>,
    decrypt_cache: Mutex<HashMap<Vec<u8>, (Zeroizing<[u8; 32]>, Instant)>>,
    /// The newest evidence signing key, wrapped; unwrapped at first use.
    evidence_key: Option<WrappedEvidenceKey>,
    evidence_signer: tokio::sync::OnceCell<EvidenceSigner>,
}

/// The evidence signing key, unwrapped: signs evidence bundles (Ed25519).
pub struct EvidenceSigner {
    key_id: String,
    key: ed25519_dalek::SigningKey,
}

impl EvidenceSigner {
    fn from_seed(seed: &[u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        EvidenceSigner { key_id: evidence_key_id(&key.verifying_key()), key }
    }

    /// `ed25519-<first 8 bytes of SHA-256(public key), hex>`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as PEM (SubjectPublicKeyInfo, RFC 8410).
    pub fn public_key_pem(&self) -> Result<String, CryptoError> {
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        use ed25519_dalek::pkcs8::EncodePublicKey;
        self.public_key().to_public_key_pem(LineEnding::LF).map_err(|e| CryptoError::Serialise(e.to_string()))
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.key.sign(message).to_bytes()
    }
}

/// The id of an evidence key: what a verifier matches to a published key.
fn evidence_key_id(public: &ed25519_dalek::VerifyingKey) -> String {
    use sha2::Digest;
    format!("ed25519-{}", hex::encode(&Sha256::digest(public.as_bytes())[..8]))
}

struct CachedKey {
    plaintext: Zeroizing<[u8; 32]>,
    wrapped: Vec<u8>,
    created: Instant,
    uses: u64,
}

impl Crypto {
    /// Makes fresh index and integrity keys through the key service, wrapped
    /// for the store. (Whether to make them is the wiring's decision: new
    /// keys would orphan every record sealed under the old ones.)
    pub async fn generate_keys(keys: &dyn KeyService) -> Result<WrappedKeys, KeyError> {
        let index = keys.generate_data_key(&purpose_context("blind-index")).await?;
        let integrity = keys.generate_data_key(&purpose_context("integrity")).await?;
        Ok(WrappedKeys {
            index_key: STANDARD.encode(&index.wrapped),
            integrity_keys: vec![WrappedIntegrityKey { id: "i1".into(), wrapped: STANDARD.encode(&integrity.wrapped) }],
            evidence_keys: vec![Self::generate_evidence_key(keys).await?],
        })
    }

    /// Makes a fresh evidence signing key: a data key of the key service
    /// (purpose `evidence-signing`) is its Ed25519 seed.
    pub async fn generate_evidence_key(keys: &dyn KeyService) -> Result<WrappedEvidenceKey, KeyError> {
        let seed = keys.generate_data_key(&purpose_context("evidence-signing")).await?;
        let signer = EvidenceSigner::from_seed(&seed.plaintext);
        Ok(WrappedEvidenceKey { id: signer.key_id, wrapped: STANDARD.encode(&seed.wrapped) })
    }

    /// The evidence signing key, unwrapped at its first use (one key service
    /// call per process) and checked against its id.
    pub async fn evidence_signer(&self) -> Result<&EvidenceSigner, CryptoError> {
        self.evidence_signer
            .get_or_try_init(|| async {
                let wrapped = self.evidence_key.as_ref().ok_or(CryptoError::NoEvidenceKey)?;
                let bytes = STANDARD.decode(&wrapped.wrapped).map_err(|_| CryptoError::Malformed)?;
                let seed = self.keys.decrypt_data_key(&bytes, &purpose_context("evidence-signing")).await?;
                let signer = EvidenceSigner::from_seed(&seed);
                if signer.key_id != wrapped.id {
                    return Err(CryptoError::EvidenceKeyMismatch);
                }
                Ok(signer)
            })
            .await
    }

    /// Unwraps the index and integrity keys (concurrently) and is ready.
    pub async fn start(
        keys: Arc<dyn KeyService>,
        wrapped: &WrappedKeys,
        table: &str,
        limits: CacheLimits,
    ) -> Result<Self, CryptoError> {
        let decode = |s: &str| STANDARD.decode(s).map_err(|_| CryptoError::Malformed);
        let index_wrapped = decode(&wrapped.index_key)?;
        let index_ctx = purpose_context("blind-index");
        let integrity_ctx = purpose_context("integrity");
        let index = keys.decrypt_data_key(&index_wrapped, &index_ctx);
        let mut integrity_futures = Vec::new();
        for key in &wrapped.integrity_keys {
            let bytes = decode(&key.wrapped)?;
            let keys = keys.clone();
            let ctx = integrity_ctx.clone();
            let id = key.id.clone();
            integrity_futures.push(async move { keys.decrypt_data_key(&bytes, &ctx).await.map(|k| (id, k)) });
        }
        let (index_key, integrity_keys) = tokio::join!(index, futures::future::try_join_all(integrity_futures));
        let integrity_keys = integrity_keys?;
        if integrity_keys.is_empty() {
            return Err(CryptoError::Malformed);
        }
        Ok(Crypto {
            keys,
            table: table.to_owned(),
            index_key: index_key?,
            integrity_keys,
            limits,
            encrypt_cache: Mutex::new(None),
            decrypt_cache: Mutex::new(HashMap::new()),
            evidence_key: wrapped.evidence_keys.last().cloned(),
            evidence_signer: tokio::sync::OnceCell::new(),
        })
    }

    /// The evidence signing key, unwrapped, for a process that needs only it.
    pub async fn take_evidence_signer(self) -> Result<EvidenceSigner, CryptoError> {
        self.evidence_signer().await?;
        self.evidence_signer.into_inner().ok_or(CryptoError::NoEvidenceKey)
    }

    /// `base64url(HMAC-SHA256(index_key, e164))`: the only form in which a
    /// number is ever looked up or logged.
    pub fn blind_index(&self, phone: &PhoneNumber) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.index_key.as_ref()).expect("any key length");
        mac.update(phone.as_e164().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn data_context(&self) -> EncryptionContext {
        let mut ctx = purpose_context("record");
        ctx.insert("table".into(), self.table.clone());
        ctx
    }

    fn aad(&self, pk: &str, sk: &str, attribute: &str) -> Vec<u8> {
        format!("{APPLICATION}\u{1f}{}\u{1f}{pk}\u{1f}{sk}\u{1f}{attribute}", self.table).into_bytes()
    }

    async fn encryption_key(&self) -> Result<(Zeroizing<[u8; 32]>, Vec<u8>), CryptoError> {
        {
            let mut cache = self.encrypt_cache.lock().expect("cache lock");
            if let Some(key) = cache.as_mut() {
                if key.created.elapsed() < self.limits.max_age && key.uses < self.limits.max_uses {
                    key.uses += 1;
                    return Ok((key.plaintext.clone(), key.wrapped.clone()));
                }
            }
        }
        let fresh = self.keys.generate_data_key(&self.data_context()).await?;
        let out = (fresh.plaintext.clone(), fresh.wrapped.clone());
        *self.encrypt_cache.lock().expect("cache lock") =
            Some(CachedKey { plaintext: fresh.plaintext, wrapped: fresh.wrapped, created: Instant::now(), uses: 1 });
        Ok(out)
    }

    async fn decryption_key(&self, wrapped: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        {
            let cache = self.decrypt_cache.lock().expect("cache lock");
            if let Some((key, at)) = cache.get(wrapped) {
                if at.elapsed() < self.limits.max_age {
                    return Ok(key.clone());
                }
            }
        }
        let key = self.keys.decrypt_data_key(wrapped, &self.data_context()).await?;
        let mut cache = self.decrypt_cache.lock().expect("cache lock");
        if cache.len() >= self.limits.max_entries {
            cache.retain(|_, (_, at)| at.elapsed() < self.limits.max_age);
            if cache.len() >= self.limits.max_entries {
                cache.clear();
            }
        }
        cache.insert(wrapped.to_vec(), (key.clone(), Instant::now()));
        Ok(key)
    }

    /// Seals `plaintext` for one attribute of one record:
    /// `v1.<wrapped data key>.<nonce ‖ ciphertext>`, base64url.
    pub async fn seal(&self, plaintext: &str, pk: &str, sk: &str, attribute: &str) -> Result<String, CryptoError> {
        let (key, wrapped) = self.encryption_key().await?;
        let cipher = Aes256Gcm::new_from_slice(key.as_ref()).expect("32-byte key");
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = self.aad(pk, sk, attribute);
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: &aad })
            .map_err(|_| CryptoError::Mismatch)?;
        let mut body = nonce.to_vec();
        body.extend_from_slice(&ciphertext);
        Ok(format!("{SEALED_VERSION}.{}.{}", URL_SAFE_NO_PAD.encode(wrapped), URL_SAFE_NO_PAD.encode(body)))
    }

    pub async fn open(&self, sealed: &str, pk: &str, sk: &str, attribute: &str) -> Result<String, CryptoError> {
        let mut parts = sealed.split('.');
        let (Some(SEALED_VERSION), Some(wrapped), Some(body), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Malformed);
        };
        let wrapped = URL_SAFE_NO_PAD.decode(wrapped).map_err(|_| CryptoError::Malformed)?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| CryptoError::Malformed)?;
        if body.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let key = self.decryption_key(&wrapped).await?;
        let cipher = Aes256Gcm::new_from_slice(key.as_ref()).expect("32-byte key");
        let (nonce, ciphertext) = body.split_at(12);
        let aad = self.aad(pk, sk, attribute);
        let plaintext = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| CryptoError::Mismatch)?;
        String::from_utf8(plaintext).map_err(|_| CryptoError::Malformed)
    }

    /// The HMAC binds the key the item is stored under (`PHONE#<pid>` /
    /// `STATE`, with the pid that was asked for), its version and its consent;
    /// and, when the state has them, its chain head and quarantine (appended
    /// after a separator that a serialised consent never holds, so a state
    /// written before the chain keeps the tag it has).
    fn tag_with(key: &[u8; 32], pid: &str, version: u64, consent: &ConsentState, chain: &Chain<'_>) -> Tagged {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
        // A time outside what RFC 3339 can write (year < 0 or > 9999) does
        // not serialise: an error, never a panic.
        let consent = serde_json::to_vec(consent).map_err(|e| CryptoError::Serialise(e.to_string()))?;
        mac.update(format!("{}\u{1f}{STATE_SK}\u{1f}{version}\u{1f}", phone_pk(pid)).as_bytes());
        mac.update(&consent);
        if chain.head.is_some() || chain.quarantine.is_some() {
            let chain = serde_json::to_vec(chain).map_err(|e| CryptoError::Serialise(e.to_string()))?;
            mac.update(b"\x1fchain\x1f");
            mac.update(&chain);
        }
        Ok(mac.finalize().into_bytes().to_vec())
    }

    /// `<version>.<key id>.<HMAC>` with the newest integrity key.
    fn sign(&self, version: &str, mac: impl FnOnce(&[u8; 32]) -> Tagged) -> Result<String, CryptoError> {
        let (id, key) = self.integrity_keys.last().ok_or(CryptoError::Malformed)?;
        Ok(format!("{version}.{id}.{}", URL_SAFE_NO_PAD.encode(mac(key)?)))
    }

    /// Constant-time check of a `<version>.<key id>.<HMAC>`, with whichever
    /// key made it (rotation keeps old tags and links verifiable).
    fn check(&self, version: &str, tag: &str, mac: impl FnOnce(&[u8; 32]) -> Tagged) -> bool {
        use subtle::ConstantTimeEq;
        let mut parts = tag.splitn(3, '.');
        let (Some(found), Some(id), Some(given)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let Ok(given) = URL_SAFE_NO_PAD.decode(given) else {
            return false;
        };
        let Some((_, key)) = self.integrity_keys.iter().find(|(k, _)| k == id) else {
            return false;
        };
        match mac(key) {
            Ok(expected) => found == version && bool::from(expected.ct_eq(&given)),
            Err(_) => false,
        }
    }

    /// `t1.<key id>.<HMAC>` over the record's key, version and consent fields.
    pub fn tag(&self, pid: &str, version: u64, consent: &ConsentState) -> Result<String, CryptoError> {
        self.sign(TAG_VERSION, |key| Self::tag_with(key, pid, version, consent, &Chain::default()))
    }

    /// Constant-time check of a stored tag, with whichever key made it.
    pub fn verify_tag(&self, pid: &str, version: u64, consent: &ConsentState, tag: &str) -> bool {
        self.check(TAG_VERSION, tag, |key| Self::tag_with(key, pid, version, consent, &Chain::default()))
    }

    /// The tag of a state (its `tag` field aside): key, version, consent,
    /// chain head and quarantine.
    pub fn state_tag(&self, state: &StateItem) -> Result<String, CryptoError> {
        let chain = Chain::of(state);
        self.sign(TAG_VERSION, |key| Self::tag_with(key, &state.pid, state.version, &state.consent, &chain))
    }

    /// Checks a stored state's tag against the pid it was asked for.
    pub fn verify_state_tag(&self, pid: &str, state: &StateItem) -> bool {
        let chain = Chain::of(state);
        self.check(TAG_VERSION, &state.tag, |key| Self::tag_with(key, pid, state.version, &state.consent, &chain))
    }

    fn link_with(key: &[u8; 32], pid: &str, body: &[u8]) -> Tagged {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
        mac.update(format!("{LINK_DOMAIN}\u{1f}{}\u{1f}", phone_pk(pid)).as_bytes());
        mac.update(body);
        Ok(mac.finalize().into_bytes().to_vec())
    }

    /// `c1.<key id>.<HMAC>` of a chain link's canonical body (built by
    /// `service::ledger`), bound to the number's partition key.
    pub fn link_mac(&self, pid: &str, body: &[u8]) -> Result<String, CryptoError> {
        self.sign(LINK_VERSION, |key| Self::link_with(key, pid, body))
    }

    /// Constant-time check of a link's MAC, with whichever key made it.
    pub fn verify_link_mac(&self, pid: &str, body: &[u8], mac: &str) -> bool {
        self.check(LINK_VERSION, mac, |key| Self::link_with(key, pid, body))
    }

    /// Keys derived for one `purpose` (e.g. signing preference-page links),
    /// one per integrity key, newest first: HMAC-SHA256 of the integrity key
    /// over a domain that no tag or chain link starts with. A token signed
    /// under an older key still verifies after a rotation.
    pub fn purpose_keys(&self, purpose: &str) -> Vec<Zeroizing<[u8; 32]>> {
        self.integrity_keys
            .iter()
            .rev()
            .map(|(_, key)| {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).expect("any key length");
                mac.update(format!("{APPLICATION}/derived\u{1f}{purpose}").as_bytes());
                Zeroizing::new(mac.finalize().into_bytes().into())
            })
            .collect()
    }

    /// SHA-256 of a sealed value, base64url: what a link keeps of it (a
    /// digest of an AEAD ciphertext reveals nothing of the plaintext).
    pub fn digest(sealed: &str) -> String {
        use sha2::Digest;
        URL_SAFE_NO_PAD.encode(Sha256::digest(sealed.as_bytes()))
    }
}

type Tagged = Result<Vec<u8>, CryptoError>;

/// What a state's tag covers of the chain, when the state has it.
#[derive(Default, serde::Serialize)]
struct Chain<'a> {
    head: Option<&'a ChainHead>,
    quarantine: Option<&'a str>,
}

impl<'a> Chain<'a> {
    fn of(state: &'a StateItem) -> Self {
        Chain { head: state.head.as_ref(), quarantine: state.quarantine.as_deref() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local_keyring::LocalKeyring;
    use crate::domain::{Consent, ConsentChange, ConsentState, PhoneNumber, Scope};
    use std::path::Path;

    async fn crypto_in(dir: &Path, wrapped: Option<&WrappedKeys>) -> (Crypto, WrappedKeys) {
        let keyring = LocalKeyring::open_or_create(dir).unwrap();
        let wrapped = match wrapped {
            Some(wrapped) => wrapped.clone(),
            None => Crypto::generate_keys(&keyring).await.unwrap(),
        };
        (Crypto::start(Arc::new(keyring), &wrapped, "embedded", CacheLimits::default()).await.unwrap(), wrapped)
    }

    #[tokio::test]
    async fn the_same_wrapped_keys_reopen_to_the_same_index_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let (first, wrapped) = crypto_in(dir.path(), None).await;
        let sealed = first.seal("STOP", "PHONE#x", "EVENT#1", "text").await.unwrap();
        let (second, _) = crypto_in(dir.path(), Some(&wrapped)).await;
        let phone = PhoneNumber::parse("+14158675309").unwrap();
        assert_eq!(first.blind_index(&phone), second.blind_index(&phone));
        assert_eq!(second.open(&sealed, "PHONE#x", "EVENT#1", "text").await.unwrap(), "STOP");
    }

    #[tokio::test]
    async fn the_evidence_key_signs_under_its_id_and_a_swapped_key_is_refused() {
        use ed25519_dalek::Verifier;
        let dir = tempfile::tempdir().unwrap();
        let (crypto, wrapped) = crypto_in(dir.path(), None).await;
        let signer = crypto.evidence_signer().await.unwrap();
        assert_eq!(signer.key_id(), wrapped.evidence_keys[0].id);
        let signature = ed25519_dalek::Signature::from_bytes(&signer.sign(b"bundle"));
        assert!(signer.public_key().verify(b"bundle", &signature).is_ok());
        assert!(signer.public_key().verify(b"bundlf", &signature).is_err());
        let mut swapped = wrapped.clone();
        swapped.evidence_keys[0].id = "ed25519-0000000000000000".into();
        let (other, _) = crypto_in(dir.path(), Some(&swapped)).await;
        assert!(matches!(other.evidence_signer().await, Err(CryptoError::EvidenceKeyMismatch)));
        let mut none = wrapped.clone();
        none.evidence_keys.clear();
        let (without, _) = crypto_in(dir.path(), Some(&none)).await;
        assert!(matches!(without.evidence_signer().await, Err(CryptoError::NoEvidenceKey)));
    }

    #[tokio::test]
    async fn a_ciphertext_moved_to_another_record_fails_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (crypto, _) = crypto_in(dir.path(), None).await;
        let sealed = crypto.seal("+14158675309", "PHONE#a", "STATE", "phone").await.unwrap();
        assert!(crypto.open(&sealed, "PHONE#b", "STATE", "phone").await.is_err());
        assert!(crypto.open(&sealed, "PHONE#a", "STATE", "text").await.is_err());
        assert_eq!(crypto.open(&sealed, "PHONE#a", "STATE", "phone").await.unwrap(), "+14158675309");
    }

    #[tokio::test]
    async fn a_changed_consent_breaks_the_integrity_tag() {
        let dir = tempfile::tempdir().unwrap();
        let (crypto, _) = crypto_in(dir.path(), None).await;
        let mut state = ConsentState::default();
        state.apply(&ConsentChange {
            event_id: "e".into(),
            occurred_at: time::macros::datetime!(2026-01-01 0:00 UTC),
            consent: Consent::OptOut,
            scope: Scope::All,
        });
        let tag = crypto.tag("pid", 1, &state).unwrap();
        assert!(crypto.verify_tag("pid", 1, &state, &tag));
        assert!(!crypto.verify_tag("pid", 2, &state, &tag));
        assert!(!crypto.verify_tag("other", 1, &state, &tag));
        let mut flipped = state.clone();
        flipped.marks.values_mut().for_each(|m| m.consent = Consent::OptIn);
        assert!(!crypto.verify_tag("pid", 1, &flipped, &tag));
    }

    #[tokio::test]
    async fn a_state_holding_an_unwritable_time_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (crypto, _) = crypto_in(dir.path(), None).await;
        let mut state = ConsentState::default();
        state.apply(&ConsentChange {
            event_id: "e".into(),
            occurred_at: time::macros::datetime!(-0001-06-01 0:00 UTC),
            consent: Consent::OptOut,
            scope: Scope::All,
        });
        assert!(matches!(crypto.tag("pid", 1, &state), Err(CryptoError::Serialise(_))));
        assert!(!crypto.verify_tag("pid", 1, &state, "t1.i1.AAAA"));
    }

    #[tokio::test]
    async fn a_state_from_before_the_chain_keeps_its_tag_and_the_head_is_covered() {
        let dir = tempfile::tempdir().unwrap();
        let (crypto, _) = crypto_in(dir.path(), None).await;
        let consent = ConsentState::default();
        let mut state = StateItem {
            pid: "pid".into(),
            version: 3,
            consent: consent.clone(),
            phone: None,
            tag: crypto.tag("pid", 3, &consent).unwrap(),
            updated_at: time::macros::datetime!(2026-01-01 0:00 UTC),
            head: None,
            quarantine: None,
        };
        assert!(crypto.verify_state_tag("pid", &state), "a legacy tag verifies");
        state.head = Some(ChainHead { seq: 2, mac: "c1.i1.x".into() });
        assert!(!crypto.verify_state_tag("pid", &state), "a head added to a legacy state");
        state.tag = crypto.state_tag(&state).unwrap();
        assert!(crypto.verify_state_tag("pid", &state));
        let mut moved = state.clone();
        moved.head = Some(ChainHead { seq: 1, mac: "c1.i1.x".into() });
        assert!(!crypto.verify_state_tag("pid", &moved), "a head put back");
        let mut freed = state.clone();
        freed.quarantine = Some("broken".into());
        assert!(!crypto.verify_state_tag("pid", &freed));
        freed.tag = crypto.state_tag(&freed).unwrap();
        freed.quarantine = None;
        assert!(!crypto.verify_state_tag("pid", &freed), "a quarantine removed");
        let link = crypto.link_mac("pid", b"body").unwrap();
        assert!(link.starts_with("c1.i1.") && crypto.verify_link_mac("pid", b"body", &link));
        assert!(!crypto.verify_link_mac("pid", b"bodz", &link) && !crypto.verify_link_mac("other", b"body", &link));
        assert!(!crypto.verify_tag("pid", 3, &consent, &link), "a link MAC is no state tag");
    }
}

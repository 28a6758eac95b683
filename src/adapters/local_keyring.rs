//! The local key service: a keyring file (mode 0600) holding a master key
//! that wraps data keys with AES-256-GCM, the encryption context as AAD, as
//! KMS would. (The wrapped index and integrity keys live in the store, as
//! they do on DynamoDB.)

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ports::{DataKey, EncryptionContext, KeyError, KeyService};

pub const KEYRING_FILE: &str = "keyring.json";

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    format: u32,
    /// Master keys by id; the last one wraps new data keys.
    master_keys: Vec<MasterKey>,
}

#[derive(Serialize, Deserialize)]
struct MasterKey {
    id: String,
    key: String,
}

pub struct LocalKeyring {
    master_keys: Vec<(String, Zeroizing<[u8; 32]>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("keyring {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("keyring {path} is not a valid keyring: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl LocalKeyring {
    /// Opens `dir/keyring.json`, which must be there.
    pub fn open(dir: &Path) -> Result<Self, KeyringError> {
        let path = dir.join(KEYRING_FILE);
        let bytes = std::fs::read(&path).map_err(|source| KeyringError::Io { path: path.clone(), source })?;
        Self::parse(&path, &bytes)
    }

    /// Opens `dir/keyring.json`, creating it (mode 0600) on first run.
    pub fn open_or_create(dir: &Path) -> Result<Self, KeyringError> {
        let path = dir.join(KEYRING_FILE);
        let io = |source| KeyringError::Io { path: path.clone(), source };
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut master = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(master.as_mut());
                let file = KeyringFile {
                    format: 1,
                    master_keys: vec![MasterKey { id: "local-1".into(), key: STANDARD.encode(master.as_ref()) }],
                };
                let json = Zeroizing::new(
                    serde_json::to_vec_pretty(&file)
                        .map_err(|e| KeyringError::Invalid { path: path.clone(), reason: e.to_string() })?,
                );
                write_private(&path, &json).map_err(io)?;
                Ok(LocalKeyring { master_keys: vec![("local-1".into(), master)] })
            }
            Err(e) => Err(io(e)),
        }
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self, KeyringError> {
        let invalid = |reason: String| KeyringError::Invalid { path: path.to_owned(), reason };
        let file: KeyringFile = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let mut master_keys = Vec::new();
        for key in &file.master_keys {
            let bytes = Zeroizing::new(STANDARD.decode(&key.key).map_err(|e| invalid(e.to_string()))?);
            let key_bytes: [u8; 32] =
                bytes.as_slice().try_into().map_err(|_| invalid(format!("master key {} is not 32 bytes", key.id)))?;
            master_keys.push((key.id.clone(), Zeroizing::new(key_bytes)));
        }
        if master_keys.is_empty() {
            return Err(invalid("no master key".into()));
        }
        Ok(LocalKeyring { master_keys })
    }
}

/// Creates the file with mode 0600 before any secret is written to it.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn context_aad(context: &EncryptionContext) -> Vec<u8> {
    serde_json::to_vec(context).expect("context serialises")
}

#[async_trait]
impl KeyService for LocalKeyring {
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyError> {
        let (id, master) = self.master_keys.last().expect("keyring has a master key");
        let mut plaintext = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(plaintext.as_mut());
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new_from_slice(master.as_ref()).expect("32-byte key");
        let aad = context_aad(context);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_ref(), aad: &aad })
            .map_err(|_| KeyError::Unavailable("local keyring could not wrap".into()))?;
        // id ‖ 0 ‖ nonce ‖ ciphertext: the id names the master key, as a KMS
        // ciphertext blob names its key.
        let mut wrapped = id.as_bytes().to_vec();
        wrapped.push(0);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&sealed);
        Ok(DataKey { plaintext, wrapped })
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let refused = |why: &str| KeyError::Refused(why.to_owned());
        let split = wrapped.iter().position(|b| *b == 0).ok_or_else(|| refused("no key id"))?;
        let (id, rest) = (&wrapped[..split], &wrapped[split + 1..]);
        let (_, master) =
            self.master_keys.iter().find(|(k, _)| k.as_bytes() == id).ok_or_else(|| refused("unknown master key"))?;
        if rest.len() < 12 {
            return Err(refused("truncated"));
        }
        let (nonce, sealed) = rest.split_at(12);
        let cipher = Aes256Gcm::new_from_slice(master.as_ref()).expect("32-byte key");
        let aad = context_aad(context);
        let plaintext = Zeroizing::new(
            cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
                .map_err(|_| refused("wrong context or key"))?,
        );
        let key: [u8; 32] = plaintext.as_slice().try_into().map_err(|_| refused("not a 256-bit key"))?;
        Ok(Zeroizing::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_keyring_file_is_private_and_reopens_to_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalKeyring::open_or_create(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEYRING_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let context = EncryptionContext::from([("purpose".to_owned(), "test".to_owned())]);
        let key = first.generate_data_key(&context).await.unwrap();
        let second = LocalKeyring::open(dir.path()).unwrap();
        assert_eq!(*second.decrypt_data_key(&key.wrapped, &context).await.unwrap(), *key.plaintext);
        let other = EncryptionContext::from([("purpose".to_owned(), "other".to_owned())]);
        assert!(second.decrypt_data_key(&key.wrapped, &other).await.is_err());
    }
}

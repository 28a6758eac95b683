//! The KMS key service: data keys from `GenerateDataKey` (AES_256) and
//! `Decrypt`, both bound to the encryption context, under one
//! customer-managed key named by ARN or `alias/...`.

use async_trait::async_trait;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_kms::Client;
use zeroize::Zeroizing;

use crate::ports::{DataKey, EncryptionContext, KeyError, KeyService};

pub struct KmsKeyService {
    client: Client,
    key_id: String,
}

impl KmsKeyService {
    pub fn new(client: Client, key_id: impl Into<String>) -> Self {
        KmsKeyService { client, key_id: key_id.into() }
    }
}

/// Refusals (wrong key, wrong context, disabled key) are final; anything
/// else may pass and is reported as unavailable.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(error: aws_sdk_kms::error::SdkError<E>) -> KeyError {
    let code = error.as_service_error().and_then(|e| e.code()).unwrap_or("").to_owned();
    match code.as_str() {
        "InvalidCiphertextException"
        | "IncorrectKeyException"
        | "NotFoundException"
        | "DisabledException"
        | "AccessDeniedException"
        | "KMSInvalidStateException" => KeyError::Refused(code),
        _ => KeyError::Unavailable(format!("{code} {}", aws_sdk_kms::error::DisplayErrorContext(&error))),
    }
}

fn context_map(context: &EncryptionContext) -> std::collections::HashMap<String, String> {
    context.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn key_bytes(blob: Option<&Blob>) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let bytes = blob.ok_or_else(|| KeyError::Unavailable("KMS returned no plaintext".into()))?.as_ref();
    let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Refused("not a 256-bit key".into()))?;
    Ok(Zeroizing::new(key))
}

#[async_trait]
impl KeyService for KmsKeyService {
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(classify)?;
        let wrapped =
            out.ciphertext_blob().ok_or_else(|| KeyError::Unavailable("KMS returned no ciphertext".into()))?;
        Ok(DataKey { plaintext: key_bytes(out.plaintext())?, wrapped: wrapped.as_ref().to_vec() })
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(classify)?;
        key_bytes(out.plaintext())
    }
}

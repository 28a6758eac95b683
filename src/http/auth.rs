//! API keys for internal callers: kept as SHA-256 hashes, compared in
//! constant time, each with its scopes.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::config::{ApiKeyConfig, ApiScope};

pub struct ApiKey {
    pub name: String,
    hash: [u8; 32],
    scopes: Vec<ApiScope>,
}

pub fn scope_name(scope: ApiScope) -> &'static str {
    match scope {
        ApiScope::Authorize => "authorize",
        ApiScope::Record => "record",
        ApiScope::ReadHistory => "read_history",
        ApiScope::Erase => "erase",
    }
}

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl ApiKey {
    /// Built from validated config: a plain `token` is hashed here and only
    /// here, with a warning.
    pub fn from_config(index: usize, config: &ApiKeyConfig) -> Self {
        let hash_hex = match (&config.token_sha256, &config.token) {
            (Some(hash), _) => hash.to_ascii_lowercase(),
            (None, Some(token)) => {
                tracing::warn!(api_key = index, "api_keys[{index}] has a plain token: for local development only; use token_sha256");
                sha256_hex(token.expose())
            }
            (None, None) => unreachable!("config validation requires a token"),
        };
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hash_hex, &mut hash).expect("validated hex");
        ApiKey {
            name: config.name.clone().unwrap_or_else(|| format!("api_keys[{index}]")),
            hash,
            scopes: config.scopes.clone(),
        }
    }
}

/// The caller of a request, once its key has been checked.
pub struct Caller<'a> {
    pub name: &'a str,
}

/// Finds the key presented as `Authorization: Bearer <key>` and checks that
/// it holds `scope`: 401 for no or an unknown key, 403 for a missing scope.
pub fn authenticate<'a>(keys: &'a [ApiKey], headers: &HeaderMap, scope: ApiScope) -> Result<Caller<'a>, ApiError> {
    use subtle::ConstantTimeEq;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthenticated)?;
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let key = keys
        .iter()
        .fold(None, |found, key| if bool::from(key.hash.ct_eq(&presented)) { Some(key) } else { found })
        .ok_or(ApiError::Unauthenticated)?;
    if !key.scopes.contains(&scope) {
        return Err(ApiError::Forbidden(scope_name(scope)));
    }
    Ok(Caller { name: &key.name })
}

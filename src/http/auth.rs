//! Who is calling `/v1`: an API key (kept as a SHA-256 hash, compared in
//! constant time) on the local server, or the IAM principal that API Gateway
//! authenticated on Lambda; each mapped to scopes by config.

use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::GatewayContext;
use crate::config::{ApiKeyConfig, ApiScope, IamPrincipalConfig};
use crate::providers::bearer;
pub use crate::providers::sha256_hex;

pub struct ApiKey {
    pub name: String,
    hash: [u8; 32],
    scopes: Vec<ApiScope>,
}

impl ApiKey {
    /// Built from validated config: a plain `token` is hashed here and only
    /// here, with a warning.
    pub fn from_config(index: usize, config: &ApiKeyConfig) -> Self {
        let hash_hex = match (&config.token_sha256, &config.token) {
            (Some(hash), _) => hash.to_ascii_lowercase(),
            (None, Some(token)) => {
                tracing::warn!(
                    api_key = index,
                    "api_keys[{index}] has a plain token: for local development only; use token_sha256"
                );
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

/// The caller of a request, once identified and allowed.
pub struct Caller<'a> {
    pub name: &'a str,
}

/// An IAM principal allowed on `/v1`, by ARN.
pub struct IamPrincipal {
    arn: String,
    scopes: Vec<ApiScope>,
}

/// How `/v1` callers prove who they are.
pub enum Authenticator {
    /// `Authorization: Bearer <key>` (the local server).
    ApiKeys(Vec<ApiKey>),
    /// API Gateway's `AWS_IAM` authorizer (Lambda): the principal ARN from
    /// the request context.
    Iam(Vec<IamPrincipal>),
}

impl Authenticator {
    pub fn api_keys(config: &[ApiKeyConfig]) -> Self {
        Authenticator::ApiKeys(config.iter().enumerate().map(|(i, k)| ApiKey::from_config(i, k)).collect())
    }

    pub fn iam(config: &[IamPrincipalConfig]) -> Self {
        Authenticator::Iam(
            config.iter().map(|p| IamPrincipal { arn: p.arn.clone(), scopes: p.scopes.clone() }).collect(),
        )
    }

    /// 401 when the caller is not identified, 403 when it is but may not
    /// use `scope` (an IAM principal that config does not map is a 403).
    pub fn authenticate<'a>(&'a self, parts: &Parts, scope: ApiScope) -> Result<Caller<'a>, ApiError> {
        match self {
            Authenticator::ApiKeys(keys) => authenticate(keys, &parts.headers, scope),
            Authenticator::Iam(principals) => {
                let arn = GatewayContext::of(&parts.extensions).principal_arn().ok_or(ApiError::Unauthenticated)?;
                let principal =
                    principals.iter().find(|p| principal_matches(&p.arn, arn)).ok_or(ApiError::UnmappedPrincipal)?;
                if !principal.scopes.contains(&scope) {
                    return Err(ApiError::Forbidden(scope));
                }
                Ok(Caller { name: &principal.arn })
            }
        }
    }
}

/// The parts of an ARN: partition, service, account, resource.
fn arn_parts(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = arn.strip_prefix("arn:")?.splitn(5, ':');
    let (partition, service, _region, account, resource) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some((partition, service, account, resource))
}

/// `arn:aws:sts::123:assumed-role/Name/session` is the role named `Name` in
/// account 123 acting: `(partition, account, Name)`.
fn assumed_role(arn: &str) -> Option<(&str, &str, &str)> {
    let (partition, service, account, resource) = arn_parts(arn)?;
    let role = resource.strip_prefix("assumed-role/")?.split('/').next()?;
    (service == "sts" && !account.is_empty() && !role.is_empty()).then_some((partition, account, role))
}

/// `arn:aws:iam::123:role/some/path/Name` is the role `Name` in account 123
/// (a role name is unique in its account, whatever its path; the session
/// ARN carries the name only): `(partition, account, Name)`.
fn configured_role(arn: &str) -> Option<(&str, &str, &str)> {
    let (partition, service, account, resource) = arn_parts(arn)?;
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    (service == "iam" && !account.is_empty() && !name.is_empty()).then_some((partition, account, name))
}

/// Whether the caller is the configured principal: the same ARN, or a
/// session of the configured role (same partition, account and role name).
fn principal_matches(configured: &str, caller: &str) -> bool {
    configured == caller
        || matches!((configured_role(configured), assumed_role(caller)), (Some(role), Some(session)) if role == session)
}

/// Finds the key presented as `Authorization: Bearer <key>` and checks that
/// it holds `scope`: 401 for no or an unknown key, 403 for a missing scope.
fn authenticate<'a>(keys: &'a [ApiKey], headers: &HeaderMap, scope: ApiScope) -> Result<Caller<'a>, ApiError> {
    use subtle::ConstantTimeEq;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthenticated)?;
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let key = keys
        .iter()
        .fold(None, |found, key| if bool::from(key.hash.ct_eq(&presented)) { Some(key) } else { found })
        .ok_or(ApiError::Unauthenticated)?;
    if !key.scopes.contains(&scope) {
        return Err(ApiError::Forbidden(scope));
    }
    Ok(Caller { name: &key.name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assumed_role_session_is_its_role() {
        let session = "arn:aws:sts::123456789012:assumed-role/reminders/i-0abc";
        assert!(principal_matches("arn:aws:iam::123456789012:role/reminders", session));
        assert!(principal_matches("arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice"));
        assert!(!principal_matches("arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/bob"));
        assert!(!principal_matches("arn:aws:iam::123456789012:user/reminders", session));
        assert!(!principal_matches("arn:aws:iam::123456789012:role/reminders", "garbage"));
        assert!(!principal_matches("garbage", session));
    }

    #[test]
    fn a_role_with_a_path_matches_its_sessions_by_account_and_name() {
        let configured = "arn:aws:iam::123456789012:role/service/app-role";
        assert!(principal_matches(configured, "arn:aws:sts::123456789012:assumed-role/app-role/session"));
        assert!(principal_matches(
            "arn:aws:iam::123456789012:role/a/b/c/app-role",
            "arn:aws:sts::123456789012:assumed-role/app-role/i-0abc"
        ));
        assert!(!principal_matches(configured, "arn:aws:sts::210987654321:assumed-role/app-role/session"), "account");
        assert!(!principal_matches(configured, "arn:aws:sts::123456789012:assumed-role/other-role/session"), "name");
        assert!(!principal_matches(configured, "arn:aws:sts::123456789012:assumed-role/service/app-role"), "path");
        assert!(!principal_matches(configured, "arn:aws-cn:sts::123456789012:assumed-role/app-role/s"), "partition");
        assert!(!principal_matches(configured, "arn:aws:iam::123456789012:assumed-role/app-role/s"), "service");
    }
}

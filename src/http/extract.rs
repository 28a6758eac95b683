//! The `/v1` prologue, written once: who is calling (with the route's
//! scope) and the JSON body (capped at 64 KiB, problem details on error).
//! Handlers name them as arguments, as axum's own examples do.

use std::marker::PhantomData;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::{read_body, AppState};
use crate::config::ApiScope;

/// A scope a route requires, as a type.
pub trait RequiredScope: Send + Sync {
    const SCOPE: ApiScope;
}

/// The scopes of `/v1`, one type each.
pub mod scope {
    use super::{ApiScope, RequiredScope};

    macro_rules! scopes {
        ($($name:ident),* $(,)?) => {$(
            pub struct $name;
            impl RequiredScope for $name {
                const SCOPE: ApiScope = ApiScope::$name;
            }
        )*};
    }

    scopes!(Authorize, Record, ReadHistory, Erase, Review, Audit, Metrics);
}

/// The caller, identified (401 otherwise) and holding scope `S` (403
/// otherwise).
pub struct Caller<S> {
    pub name: String,
    scope: PhantomData<S>,
}

impl<S: RequiredScope> FromRequestParts<AppState> for Caller<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = state.auth.authenticate(parts, S::SCOPE)?;
        Ok(Caller { name: caller.name.to_owned(), scope: PhantomData })
    }
}

/// A JSON body of type `T`: 413 past 64 KiB (before buffering when the
/// length is declared), 400 with the parser's message when it does not fit.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = read_body(&parts.headers, body).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(invalid_body)
}

/// A 400 that says what did not fit, but never echoes a value the caller
/// sent (a number sent as a JSON integer would otherwise come back in the
/// answer, and land in whatever logs it).
pub fn invalid_body(error: serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!("body is not valid: {}", without_values(&error.to_string())))
}

/// serde's messages quote the offending value in backticks or double
/// quotes (`invalid type: integer `14155550123`, expected a string`,
/// `unknown variant `x`, expected ...`); the quoted values of `invalid
/// type`, `invalid value` and `unknown variant` are dropped.
fn without_values(message: &str) -> String {
    let mut out = message.to_owned();
    for lead in ["invalid type: ", "invalid value: ", "unknown variant "] {
        let Some(start) = out.find(lead).map(|i| i + lead.len()) else {
            continue;
        };
        let end = out[start..].find(", expected").map_or(out.len(), |i| start + i);
        let kind = out[start..end].split([' ', '`', '"']).next().unwrap_or_default().to_owned();
        out.replace_range(start..end, &kind);
        if lead == "unknown variant " {
            out.replace_range(start - 1..start + kind.len(), "");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        match parse_json::<T>(json.as_bytes()).unwrap_err() {
            ApiError::BadRequest(message) => message,
            other => panic!("{other:?}"),
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Request {
        to: String,
        kind: Kind,
    }

    #[derive(Debug, serde::Deserialize)]
    enum Kind {
        A,
    }

    #[test]
    fn a_value_the_caller_sent_is_never_echoed() {
        for (json, expected) in [
            (r#"{"to": 14155550123, "kind": "A"}"#, "invalid type: integer, expected a string"),
            (r#"{"to": "x", "kind": "+14155550123 STOP"}"#, "unknown variant, expected `A`"),
            (r#"{"to": 4.155550123e10, "kind": "A"}"#, "invalid type: floating, expected a string"),
        ] {
            let message = message::<Request>(json);
            assert!(!message.contains("4155550123"), "{message}");
            assert!(message.contains(expected), "{message}");
        }
        assert!(message::<Request>(r#"{"kind": "A"}"#).contains("missing field `to`"));
    }
}

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

    scopes!(Authorize, Record, ReadHistory, Erase);
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
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body is not valid: {e}")))
}

//! Extractors whose rejections use museum's JSON error body, and the auth extractor.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;
use crate::db;

/// JSON body extractor. The body is read as JSON whatever its `Content-Type`, as
/// Ente's server does: its web app reports uploads with fetch's default
/// `text/plain;charset=UTF-8`. A body that is not JSON is a 400 `INVALID_JSON`
/// naming the problem; one over the limit is a 413.
#[derive(Debug)]
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_rejection(&rejection))?;
        let mut json = serde_json::Deserializer::from_slice(&body);
        let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
            let at = e.path().to_string();
            let why = e.into_inner();
            let message = if at == "." {
                format!("the body is not valid JSON for this request: {why}")
            } else {
                format!("`{at}` in the body: {why}")
            };
            ApiError::bad_request("INVALID_JSON", message)
        })?;
        json.end().map_err(|e| {
            ApiError::bad_request(
                "INVALID_JSON",
                format!("trailing data after the JSON body: {e}"),
            )
        })?;
        Ok(Self(value))
    }
}

fn body_rejection(rejection: &BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::BodyTooLarge;
    }
    ApiError::bad_request("INVALID_BODY", rejection.body_text())
}

/// Query-string extractor; a bad query is a 400 `INVALID_QUERY`.
#[derive(Debug)]
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_request("INVALID_QUERY", rejection.body_text())
}

/// The authenticated user, from `X-Auth-Token` or `Authorization: Bearer`.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub i64);

/// The SHA-256 hex digest under which a token is stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let token = header("x-auth-token")
            .map(str::trim)
            .or_else(|| {
                header("authorization").and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                        .map(str::trim)
                })
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "missing token: send X-Auth-Token or Authorization: Bearer".to_owned(),
                )
            })?;
        if token.len() > 512 {
            return Err(ApiError::Unauthorized("unknown token".to_owned()));
        }
        let hash = hash_token(token);
        // The cache is keyed by the hash, so its lookup time reveals nothing usable
        // about a token.
        if let Some(user) = state.tokens.get(&hash) {
            return Ok(Self(user));
        }
        match db::tokens::find_token(&state.db, &hash).await? {
            Some((stored, user)) if bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) => {
                state.tokens.put(hash, user);
                Ok(Self(user))
            }
            _ => Err(ApiError::Unauthorized("unknown token".to_owned())),
        }
    }
}

//! Extractors whose rejections use museum's JSON error body, the auth extractor, and
//! the reading of JSON integers as JSON Schema defines them.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;
use crate::accounts::jwt::looks_like_jwt;
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

/// Reads a JSON integer for a `#[serde(deserialize_with)]` field. Besides `12`, takes
/// `12.0` and `1.2e1`: JSON Schema, and so the OpenAPI document, counts a number
/// without a fraction as an integer whatever its spelling. A fraction, or a value
/// out of `i64`'s range, is an error.
pub fn whole_i64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(WholeI64)
}

/// [`whole_i64`] for an optional field (give it `#[serde(default)]` too); `null` is
/// `None`.
pub fn optional_whole_i64<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptionalWholeI64)
}

struct WholeI64;

impl serde::de::Visitor<'_> for WholeI64 {
    type Value = i64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
        // 2^63 is exact as an f64; every whole f64 in [-2^63, 2^63) is an i64.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
            #[allow(clippy::cast_possible_truncation)] // Whole and in range, checked above.
            Ok(v as i64)
        } else {
            Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
        }
    }
}

struct OptionalWholeI64;

impl<'de> serde::de::Visitor<'de> for OptionalWholeI64 {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an integer or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<i64>, D::Error> {
        whole_i64(d).map(Some)
    }
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

pub use crate::accounts::hash_token;

/// Longest token read: a JWT signed with a 4096-bit RSA key is under 1 KiB.
const MAX_TOKEN_LEN: usize = 4096;

/// The answer to a request refused by a rate limit, counted under `limit`.
pub fn rate_limited(state: &AppState, limit: &str, wait: std::time::Duration) -> ApiError {
    state.metrics.rate_limited(limit);
    ApiError::RateLimited {
        retry_after: wait.as_secs().saturating_add(1),
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    /// Refuses at once (429) a client address whose failed authentications used up
    /// `rate-limit.failed-auth-per-minute`, before any token check; every failed
    /// authentication takes from that budget.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = state.limits.client_ip(parts);
        if let Err(wait) = state.limits.failed_auth.check(&ip) {
            return Err(rate_limited(state, "failed_auth", wait));
        }
        let result = authenticate(parts, state).await;
        if matches!(result, Err(ApiError::Unauthorized(_))) {
            let _ = state.limits.failed_auth.take(&ip);
            if let Some(wait) = state.limits.failed_auth.newly_exhausted(&ip) {
                tracing::warn!(
                    client.address = %ip,
                    retry_after_s = wait.as_secs().saturating_add(1),
                    "a client address used up its failed-authentication budget; it is refused until the budget refills"
                );
            }
        }
        result
    }
}

/// The user a request's token or JWT speaks for.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<AuthUser, ApiError> {
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
    if token.len() > MAX_TOKEN_LEN {
        return Err(ApiError::Unauthorized("unknown token".to_owned()));
    }
    if let Some(jwt) = &state.jwt
        && looks_like_jwt(token)
    {
        return jwt
            .verify(token)
            .map(AuthUser)
            .map_err(|e| ApiError::Unauthorized(e.to_string()));
    }
    let hash = hash_token(token);
    let now = db::now_millis();
    // The cache is keyed by the hash, so its lookup time reveals nothing usable
    // about a token.
    if let Some(user) = state.tokens.get(&hash, now) {
        return Ok(AuthUser(user));
    }
    match db::tokens::find_token(&state.db, &hash).await? {
        Some(stored) if bool::from(stored.token_hash.as_bytes().ct_eq(hash.as_bytes())) => {
            if stored.expires_at.is_some_and(|at| at <= now) {
                return Err(ApiError::Unauthorized("the token has expired".to_owned()));
            }
            state.tokens.put(hash, stored.user_id, stored.expires_at);
            Ok(AuthUser(stored.user_id))
        }
        _ => Err(ApiError::Unauthorized("unknown token".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[serde(deserialize_with = "whole_i64")]
        n: i64,
        #[serde(default, deserialize_with = "optional_whole_i64")]
        o: Option<i64>,
    }

    fn read(json: &str) -> Result<Body, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn integers_may_be_spelled_as_whole_floats() {
        for (json, n) in [
            (r#"{"n": 12}"#, 12),
            (r#"{"n": -12}"#, -12),
            (r#"{"n": 12.0}"#, 12),
            (r#"{"n": 1.2e1}"#, 12),
            (r#"{"n": -0.0}"#, 0),
            (r#"{"n": 9223372036854775807}"#, i64::MAX),
            (r#"{"n": -9.223372036854775808e18}"#, i64::MIN),
        ] {
            assert_eq!(read(json).map(|b| b.n), Ok(n), "{json}");
        }
    }

    #[test]
    fn fractions_and_out_of_range_numbers_are_refused() {
        for json in [
            r#"{"n": 1.5}"#,
            r#"{"n": 9223372036854775808}"#,
            r#"{"n": 9.223372036854775808e18}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "12"}"#,
            r#"{"n": null}"#,
            r#"{"n": 1, "o": 0.5}"#,
        ] {
            assert!(read(json).is_err(), "{json}");
        }
    }

    #[test]
    fn optional_integers_may_be_missing_null_or_whole() {
        assert_eq!(read(r#"{"n": 1}"#).map(|b| b.o), Ok(None));
        assert_eq!(read(r#"{"n": 1, "o": null}"#).map(|b| b.o), Ok(None));
        assert_eq!(read(r#"{"n": 1, "o": 3.0}"#).map(|b| b.o), Ok(Some(3)));
    }
}

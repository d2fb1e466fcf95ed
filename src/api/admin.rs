//! The admin API, on its own listener (`http.admin-port`): tokens, quotas and usage
//! for the app's own server. Every route wants `Authorization: Bearer <admin.key>`;
//! anything else is a 401 that says nothing more.

use axum::Json;
use axum::Router;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::extract::{AppJson, optional_whole_i64, whole_i64};
use super::state::AppState;
use crate::accounts::{self, UserInfo};

/// The admin key, kept only as its SHA-256 digest, so the key itself is not held in
/// memory past start-up and comparisons take the same time whatever they match.
#[derive(Clone)]
pub struct AdminKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(..)")
    }
}

impl AdminKey {
    /// The key from `admin.key`, if one is set and not empty.
    pub fn from_config(key: Option<&SecretString>) -> Option<Self> {
        let key = key
            .map(ExposeSecret::expose_secret)
            .filter(|k| !k.is_empty())?;
        Some(Self {
            digest: Sha256::digest(key.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the key, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(digest.ct_eq(&self.digest))
    }
}

#[derive(Clone)]
struct AdminState {
    app: AppState,
    key: AdminKey,
}

/// The admin router: its routes, the key check in front of all of them (unknown
/// routes included), and one log line per call naming the route template, never
/// the path (it may hold a token) nor any header.
pub fn router(app: AppState, key: AdminKey) -> Router {
    let state = AdminState { app, key };
    Router::new()
        .route("/admin/tokens", post(create_token))
        .route("/admin/tokens/{token}", delete(revoke_token))
        .route("/admin/users/{id}/tokens", delete(revoke_user_tokens))
        .route("/admin/users/{id}/quota", put(set_quota))
        .route("/admin/users/{id}", get(show_user))
        .route("/admin/users", get(list_users))
        .fallback(|| async { ApiError::NotFound("no such admin route".to_owned()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .route_layer(middleware::from_fn(log_call))
        .layer(middleware::from_fn_with_state(state.clone(), require_key))
        .with_state(state)
}

async fn require_key(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(key) if state.key.matches(key) => next.run(request).await,
        _ => {
            tracing::info!(method = %request.method(), "admin call refused: missing or wrong key");
            ApiError::Unauthorized("admin key required".to_owned()).into_response()
        }
    }
}

async fn log_call(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    tracing::info!(%method, route, status = response.status().as_u16(), "admin call");
    response
}

fn parse_user(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request("INVALID_USER_ID", "the user ID must be a positive integer")
    })
}

/// `POST /admin/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    #[serde(rename = "userID", deserialize_with = "whole_i64")]
    user_id: i64,
    /// RFC 3339, e.g. `2030-01-01T00:00:00Z`; absent or null: until revoked.
    #[serde(rename = "expiresAt", default)]
    expires_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct TokenCreated {
    token: String,
}

async fn create_token(
    State(s): State<AdminState>,
    AppJson(req): AppJson<CreateToken>,
) -> Result<Json<TokenCreated>, ApiError> {
    let expires_at = req
        .expires_at
        .as_deref()
        .map(|raw| {
            raw.parse::<jiff::Timestamp>().map_err(|_| {
                ApiError::bad_request(
                    "INVALID_EXPIRY",
                    "expiresAt must be an RFC 3339 time with an offset, e.g. 2030-01-01T00:00:00Z",
                )
            })
        })
        .transpose()?;
    let token = accounts::create_token(&s.app.db, req.user_id, expires_at).await?;
    s.app.metrics.token_issued();
    Ok(Json(TokenCreated { token }))
}

#[derive(Debug, Serialize)]
struct Revoked {
    revoked: u64,
}

async fn revoke_token(
    State(s): State<AdminState>,
    Path(token): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    accounts::revoke_token(&s.app.db, &token).await?;
    s.app.tokens.forget(&accounts::hash_token(token.trim()));
    s.app.metrics.tokens_revoked(1);
    Ok(Json(Revoked { revoked: 1 }))
}

async fn revoke_user_tokens(
    State(s): State<AdminState>,
    Path(raw): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    let user = parse_user(&raw)?;
    let revoked = accounts::revoke_user_tokens(&s.app.db, user).await?;
    s.app.tokens.forget_user(user);
    s.app.metrics.tokens_revoked(revoked);
    Ok(Json(Revoked { revoked }))
}

/// `PUT /admin/users/{id}/quota` body: bytes, or null for the default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetQuota {
    #[serde(deserialize_with = "optional_whole_i64")]
    bytes: Option<i64>,
}

async fn set_quota(
    State(s): State<AdminState>,
    Path(raw): Path<String>,
    AppJson(req): AppJson<SetQuota>,
) -> Result<Json<UserInfo>, ApiError> {
    let user = parse_user(&raw)?;
    Ok(Json(
        accounts::set_quota(&s.app.db, &s.app.quota, user, req.bytes).await?,
    ))
}

async fn show_user(
    State(s): State<AdminState>,
    Path(raw): Path<String>,
) -> Result<Json<UserInfo>, ApiError> {
    let user = parse_user(&raw)?;
    Ok(Json(
        accounts::show_user(&s.app.db, &s.app.quota, user).await?,
    ))
}

#[derive(Debug, Serialize)]
struct Users {
    users: Vec<UserInfo>,
}

async fn list_users(State(s): State<AdminState>) -> Result<Json<Users>, ApiError> {
    Ok(Json(Users {
        users: accounts::list_users(&s.app.db, &s.app.quota).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_matches_itself_only() {
        let key = AdminKey::from_config(Some(&SecretString::from("an-admin-key-0123"))).unwrap();
        assert!(key.matches("an-admin-key-0123"));
        assert!(!key.matches("an-admin-key-0124"));
        assert!(!key.matches(""));
        assert!(AdminKey::from_config(Some(&SecretString::from(""))).is_none());
        assert!(!format!("{key:?}").contains("an-admin"));
    }
}

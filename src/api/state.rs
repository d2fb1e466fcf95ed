//! `AppState`: what every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::ratelimit::RateLimits;
use crate::accounts::QuotaRule;
use crate::accounts::jwt::JwtVerifier;
use crate::config::ServeMode;
use crate::db::Db;
use crate::db::uploads::TempObjectWriter;
use crate::observe::metrics::Metrics;
use crate::storage::Buckets;

/// Limits and lifetimes applied to uploads.
#[derive(Debug, Clone, Copy)]
pub struct UploadPolicy {
    /// How long presigned URLs stay valid.
    pub presign_ttl: Duration,
    /// How long after its URL expires an unreported key is kept before cleanup.
    pub temp_grace: Duration,
    /// Largest object a report may commit, in bytes.
    pub max_file_size: u64,
    /// How downloads are served.
    pub serve_mode: ServeMode,
    /// Most keys a user may hold issued and unreported (`quota.max-unreported-keys`);
    /// 0: no cap.
    pub max_unreported_keys: u64,
}

/// Shared handler state. One allocation behind a reference count: axum clones the
/// state for every extractor and middleware of every request, and a clone of the
/// fields themselves (metrics, buckets, limits) cost a tenth of an upload-URL
/// request's time in allocations and reference counts.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every handler can reach, through [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub db: Db,
    pub buckets: Buckets,
    pub metrics: Metrics,
    pub policy: UploadPolicy,
    /// Signalled when new copies are queued, so replication starts at once.
    pub replication_wakeup: Arc<Notify>,
    /// Group-commits the keys that upload-URL requests issue.
    pub temp_writer: TempObjectWriter,
    /// Recently seen token hashes and their users.
    pub tokens: TokenCache,
    /// The quota settings every upload is checked against.
    pub quota: QuotaRule,
    /// Verifies JWTs from the app's auth server, when `auth.jwt.*` is set.
    pub jwt: Option<JwtVerifier>,
    /// Per-user and per-address request limits.
    pub limits: RateLimits,
    /// Serializes each user's key issuing, so the unreported-key cap holds under
    /// parallel requests.
    pub issuing: IssueLocks,
}

/// One lock per group of users, taken from counting a user's unreported keys until
/// the new ones are recorded. A fixed number of locks: users share one now and then,
/// and only wait a little longer for it.
#[derive(Debug)]
pub struct IssueLocks(Vec<tokio::sync::Mutex<()>>);

impl Default for IssueLocks {
    fn default() -> Self {
        Self((0..64).map(|_| tokio::sync::Mutex::new(())).collect())
    }
}

impl IssueLocks {
    /// Waits for `user`'s lock.
    pub async fn lock(&self, user: i64) -> tokio::sync::MutexGuard<'_, ()> {
        let shard = usize::try_from(user.rem_euclid(64)).unwrap_or(0);
        self.0[shard % self.0.len()].lock().await
    }
}

/// Token hashes seen recently, so most requests skip the database lookup. Entries
/// live `TOKEN_CACHE_TTL`, and never past the token's own expiry. A token revoked
/// through this process's admin API stops working at once; one revoked by the command
/// line or another instance, within `TOKEN_CACHE_TTL`.
#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    inner: Arc<std::sync::Mutex<std::collections::HashMap<String, CachedToken>>>,
}

#[derive(Debug, Clone, Copy)]
struct CachedToken {
    user: i64,
    /// The token's own expiry, ms since the epoch.
    expires_at: Option<i64>,
    seen: std::time::Instant,
}

/// How long a verified token is trusted without asking the database again.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);
const TOKEN_CACHE_MAX: usize = 10_000;

impl TokenCache {
    /// The user of a recently verified token hash that has not expired by `now_ms`.
    pub fn get(&self, hash: &str, now_ms: i64) -> Option<i64> {
        let map = self.inner.lock().ok()?;
        map.get(hash)
            .filter(|t| t.seen.elapsed() < TOKEN_CACHE_TTL)
            .filter(|t| t.expires_at.is_none_or(|at| at > now_ms))
            .map(|t| t.user)
    }

    /// Remembers a verified token hash, its user and its expiry.
    pub fn put(&self, hash: String, user: i64, expires_at: Option<i64>) {
        if let Ok(mut map) = self.inner.lock() {
            if map.len() >= TOKEN_CACHE_MAX {
                map.retain(|_, t| t.seen.elapsed() < TOKEN_CACHE_TTL);
                if map.len() >= TOKEN_CACHE_MAX {
                    map.clear();
                }
            }
            let seen = std::time::Instant::now();
            map.insert(
                hash,
                CachedToken {
                    user,
                    expires_at,
                    seen,
                },
            );
        }
    }

    /// Forgets one token hash (it was revoked).
    pub fn forget(&self, hash: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(hash);
        }
    }

    /// Forgets every token of `user` (they were revoked).
    pub fn forget_user(&self, user: i64) {
        if let Ok(mut map) = self.inner.lock() {
            map.retain(|_, t| t.user != user);
        }
    }
}

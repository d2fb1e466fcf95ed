//! `AppState`: what every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::ServeMode;
use crate::db::Db;
use crate::db::uploads::TempObjectWriter;
use crate::metrics::Metrics;
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
}

/// Shared handler state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
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
}

/// Token hashes seen recently, so most requests skip the database lookup. Entries
/// live `TOKEN_CACHE_TTL`; a revoked token stops working within that time.
#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    inner: Arc<std::sync::Mutex<std::collections::HashMap<String, (i64, std::time::Instant)>>>,
}

/// How long a verified token is trusted without asking the database again.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);
const TOKEN_CACHE_MAX: usize = 10_000;

impl TokenCache {
    /// The user of a recently verified token hash.
    pub fn get(&self, hash: &str) -> Option<i64> {
        let map = self.inner.lock().ok()?;
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(user, _)| *user)
    }

    /// Remembers a verified token hash.
    pub fn put(&self, hash: String, user: i64) {
        if let Ok(mut map) = self.inner.lock() {
            if map.len() >= TOKEN_CACHE_MAX {
                map.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
                if map.len() >= TOKEN_CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(hash, (user, std::time::Instant::now()));
        }
    }
}

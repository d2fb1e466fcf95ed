//! `AppState`: what every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::ServeMode;
use crate::db::Db;
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
}

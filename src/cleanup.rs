//! The cleanup job: deletes the bytes (or aborts the multipart upload) of issued keys
//! that were never reported before they expired, then forgets the keys.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::uploads::{claim_expired_temp_object, list_expired_temp_objects};
use crate::db::{Db, DbError, now_millis};
use crate::storage::Buckets;

/// Keys handled per database round trip.
const BATCH: i64 = 100;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanupReport {
    /// Keys whose bytes were deleted (or upload aborted) and row removed.
    pub removed: u64,
    /// Keys whose storage call failed; their bytes may remain, to be found by a
    /// later sweep of the bucket, but their rows are gone.
    pub failed: u64,
}

/// Sweeps expired, unreported upload keys.
#[derive(Debug, Clone)]
pub struct CleanupJob {
    db: Db,
    buckets: Buckets,
}

impl CleanupJob {
    pub fn new(db: Db, buckets: Buckets) -> Self {
        Self { db, buckets }
    }

    /// One pass over every key expired at `now` (milliseconds). Each row is claimed
    /// (deleted) first, so a report racing with the sweep either commits the object
    /// or finds the key gone, never a recorded object without bytes.
    pub async fn run_once(&self, now: i64) -> Result<CleanupReport, DbError> {
        let mut report = CleanupReport::default();
        loop {
            let expired = list_expired_temp_objects(&self.db, now, BATCH).await?;
            if expired.is_empty() {
                return Ok(report);
            }
            for temp in expired {
                if !claim_expired_temp_object(&self.db, &temp.object_key, now).await? {
                    continue;
                }
                let Some(bucket) = self.buckets.get(&temp.bucket_id) else {
                    report.failed += 1;
                    continue;
                };
                let result = match &temp.upload_id {
                    Some(upload_id) => {
                        bucket
                            .abort_multipart_upload(&temp.object_key, upload_id)
                            .await
                    }
                    None => bucket.delete(&temp.object_key).await,
                };
                match result {
                    Ok(()) => report.removed += 1,
                    Err(e) => {
                        report.failed += 1;
                        tracing::warn!(bucket = bucket.id(), error.message = %e, "cleanup: could not remove an expired upload");
                    }
                }
            }
        }
    }

    /// Runs a pass every `interval` until `cancel` fires.
    pub async fn run(self, interval: Duration, cancel: CancellationToken) {
        loop {
            match self.run_once(now_millis()).await {
                Ok(r) if r.removed + r.failed > 0 => {
                    tracing::info!(
                        removed = r.removed,
                        failed = r.failed,
                        "cleanup: expired upload keys swept"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error.message = %e, error.cause_chain = ?e, "cleanup pass failed")
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

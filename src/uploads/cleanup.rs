//! The cleanup job: deletes the bytes (aborting the multipart upload first, for
//! multipart keys) of issued keys that were never reported before they expired, then
//! forgets the keys.

use std::collections::HashSet;
use std::time::Duration;

use crate::db::uploads::{
    TempObject, forget_swept_temp_object, list_expired_temp_objects, mark_swept,
};
use crate::db::{Db, DbError, now_millis};
use crate::jobs::{Job, Step};
use crate::storage::{BucketClient, Buckets, StorageError};

/// Keys handled per database round trip.
const BATCH: i64 = 100;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanupReport {
    /// Keys whose bytes the bucket confirmed gone, and whose rows were then removed.
    pub removed: u64,
    /// Keys whose bytes could not be removed (bucket down, refused, or no longer
    /// configured). Their rows stay, taken by the sweep so no report can commit them,
    /// and the next pass tries again.
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

    /// One pass over every key expired at `now` (milliseconds). Each key is first
    /// marked as the sweep's, so a report racing with the sweep either commits the
    /// object first or finds the key gone, never a recorded object without bytes.
    /// The row is removed only once the bucket confirms the bytes are gone, so a key
    /// the bucket could not be asked about is retried by the next pass. A bucket that
    /// is unreachable is not asked again within the pass.
    pub async fn run_once(&self, now: i64) -> Result<CleanupReport, DbError> {
        let mut report = CleanupReport::default();
        let mut unreachable: HashSet<&'static str> = HashSet::new();
        let mut after: Option<(i64, String)> = None;
        loop {
            let cursor = after.as_ref().map(|(at, key)| (*at, key.as_str()));
            let expired = list_expired_temp_objects(&self.db, now, cursor, BATCH).await?;
            let Some(last) = expired.last() else {
                return Ok(report);
            };
            after = Some((last.expires_at, last.object_key.clone()));
            for temp in expired {
                if !mark_swept(&self.db, &temp.object_key, now).await? {
                    continue;
                }
                let Some(bucket) = self.buckets.get(&temp.bucket_id) else {
                    report.failed += 1;
                    tracing::warn!(bucket = %temp.bucket_id, "cleanup: an expired upload is in a bucket no longer configured; its bytes stay");
                    continue;
                };
                if unreachable.contains(bucket.id()) {
                    report.failed += 1;
                    continue;
                }
                match remove_upload(bucket, &temp).await {
                    Ok(()) => {
                        forget_swept_temp_object(&self.db, &temp.object_key).await?;
                        report.removed += 1;
                    }
                    Err(e) => {
                        report.failed += 1;
                        if matches!(e, StorageError::Unavailable { .. }) {
                            unreachable.insert(bucket.id());
                        }
                        tracing::warn!(bucket = bucket.id(), error.message = %e, "cleanup: could not remove an expired upload; the next pass retries it");
                    }
                }
            }
        }
    }

    /// This cleanup as a background job: a pass every `interval`.
    pub fn every(self, interval: Duration) -> CleanupPasses {
        CleanupPasses {
            job: self,
            interval,
        }
    }
}

/// The cleanup on the job runner: one pass a step, then `interval` idle.
#[derive(Debug)]
pub struct CleanupPasses {
    job: CleanupJob,
    interval: Duration,
}

impl Job for CleanupPasses {
    fn name(&self) -> &'static str {
        "cleanup"
    }

    async fn step(&mut self) -> anyhow::Result<Step> {
        let r = self.job.run_once(now_millis()).await?;
        if r.removed + r.failed > 0 {
            tracing::info!(
                removed = r.removed,
                failed = r.failed,
                "cleanup: expired upload keys swept"
            );
        }
        Ok(Step::Idle(self.interval))
    }
}

/// Removes an expired upload's bytes: aborts its multipart upload, if it is one, then
/// deletes the object, since a client may have completed the upload without reporting
/// it. `Ok` means the bucket confirmed the object is gone.
async fn remove_upload(bucket: &BucketClient, temp: &TempObject) -> Result<(), StorageError> {
    if let Some(upload_id) = &temp.upload_id {
        match bucket
            .abort_multipart_upload(&temp.object_key, upload_id)
            .await
        {
            Ok(()) => {}
            // Some servers refuse to abort an upload that is already complete. The
            // object's DELETE below decides; parts of an upload that was neither
            // completed nor aborted are left to the bucket's lifecycle rule.
            Err(e @ StorageError::Refused { .. }) => {
                tracing::info!(bucket = bucket.id(), error.message = %e, "cleanup: abort of an expired multipart upload refused; deleting its object");
            }
            Err(e) => return Err(e),
        }
    }
    match bucket.delete(&temp.object_key).await {
        Ok(()) | Err(StorageError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

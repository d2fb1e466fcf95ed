//! The purger: once `replication.delete-delay` has passed since `DELETE /files/{id}`,
//! removes the object from every bucket that may hold it, then forgets it.

use std::time::Duration;

use crate::db::copies::list_copies;
use crate::db::uploads::{delete_object_rows, list_purgeable};
use crate::db::{Db, DbError, now_millis};
use crate::jobs::{Job, Step};
use crate::storage::Buckets;
use crate::time::millis;

/// Objects handled per database round trip.
const BATCH: i64 = 100;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeReport {
    /// Objects removed from every bucket and forgotten.
    pub purged: u64,
    /// Objects kept for a later pass because a bucket refused or was unreachable.
    pub deferred: u64,
}

/// Removes deleted objects after the delay.
#[derive(Debug, Clone)]
pub struct Purger {
    db: Db,
    buckets: Buckets,
    delay: Duration,
}

impl Purger {
    pub fn new(db: Db, buckets: Buckets, delay: Duration) -> Self {
        Self { db, buckets, delay }
    }

    /// One pass at time `now` (milliseconds). An object whose copy is being written
    /// is left for a later pass, so no copy lands after its purge.
    pub async fn run_once(&self, now: i64) -> Result<PurgeReport, DbError> {
        let before = now.saturating_sub(millis(self.delay));
        let mut report = PurgeReport::default();
        let mut seen = std::collections::HashSet::new();
        loop {
            let batch = list_purgeable(&self.db, before, now, BATCH).await?;
            let fresh: Vec<_> = batch.into_iter().filter(|o| seen.insert(o.id)).collect();
            if fresh.is_empty() {
                return Ok(report);
            }
            for object in fresh {
                // Every present bucket, not only those with a copy row: an attempt
                // that failed verification may still have left bytes behind.
                let mut complete = true;
                for bucket in self.buckets.all() {
                    if let Err(e) = bucket.delete(&object.object_key).await {
                        complete = false;
                        tracing::warn!(bucket = bucket.id(), object_id = object.id, error.message = %e, "purge: delete failed; will retry");
                    }
                }
                for copy in list_copies(&self.db, object.id).await? {
                    if self.buckets.get(&copy.bucket_id).is_none() {
                        tracing::warn!(bucket = %copy.bucket_id, object_id = object.id, "purge: bucket not configured any more; its copy stays");
                    }
                }
                if complete {
                    delete_object_rows(&self.db, object.id).await?;
                    report.purged += 1;
                } else {
                    report.deferred += 1;
                }
            }
        }
    }

    /// This purger as a background job: a pass every `interval`.
    pub fn every(self, interval: Duration) -> PurgePasses {
        PurgePasses {
            purger: self,
            interval,
        }
    }
}

/// The purge on the job runner: one pass a step, then `interval` idle.
#[derive(Debug)]
pub struct PurgePasses {
    purger: Purger,
    interval: Duration,
}

impl Job for PurgePasses {
    fn name(&self) -> &'static str {
        "purge"
    }

    async fn step(&mut self) -> anyhow::Result<Step> {
        let r = self.purger.run_once(now_millis()).await?;
        if r.purged + r.deferred > 0 {
            tracing::info!(
                purged = r.purged,
                deferred = r.deferred,
                "purge: deleted objects removed"
            );
        }
        Ok(Step::Idle(self.interval))
    }
}

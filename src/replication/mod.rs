//! Replication: workers that copy each recorded object from the bucket holding it to
//! every other present bucket, verify each copy, and retry with backoff; and the
//! purger that removes deleted objects from every bucket after a delay.

pub mod copy;
pub mod purge;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::copy::{CopyError, CopyJob, copy_object};
use crate::db::replication::{self as queue, ClaimedCopy, CopySource};
use crate::db::{Db, DbError, now_millis};
use crate::metrics::Metrics;
use crate::storage::presign::looks_like_md5_etag;
use crate::storage::{BucketClient, Buckets};

/// Errors that stop a worker's pass (copy failures are recorded, not returned).
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("replication queue unavailable")]
    Db(#[from] DbError),
}

/// Worker tuning, from `replication.*`.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    pub multipart_threshold: u64,
    pub part_size: u64,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub lease: Duration,
    pub poll_interval: Duration,
}

impl From<&crate::config::ReplicationConfig> for WorkerConfig {
    fn from(r: &crate::config::ReplicationConfig) -> Self {
        Self {
            multipart_threshold: r.multipart_threshold,
            part_size: r.part_size,
            retry_initial: r.retry.initial.get(),
            retry_max: r.retry.max.get(),
            lease: r.lease.get(),
            poll_interval: r.poll_interval.get(),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Copies of one object were attempted: how many were verified, and how many failed.
    Copied {
        object_id: i64,
        done: usize,
        failed: usize,
    },
    /// Nothing was due.
    Idle,
}

/// The delay before attempt `attempts + 1`: `initial` doubled per attempt, capped at `max`.
pub fn backoff(initial: Duration, max: Duration, attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    initial
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(max)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Stops the lease heartbeat when the pass ends, however it ends (also when the
/// pass itself is dropped mid-copy, so an abandoned copy's lease lapses).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One copy worker. Cheap to clone; each clone should get its own `owner`.
#[derive(Debug, Clone)]
pub struct ReplicationWorker {
    db: Db,
    buckets: Buckets,
    metrics: Metrics,
    config: WorkerConfig,
    owner: String,
}

impl ReplicationWorker {
    /// A worker that claims copies as `owner` (unique per worker, across processes).
    pub fn new(
        db: Db,
        buckets: Buckets,
        metrics: Metrics,
        config: WorkerConfig,
        owner: String,
    ) -> Self {
        Self {
            db,
            buckets,
            metrics,
            config,
            owner,
        }
    }

    /// Claims the longest-due copy and every other due copy of the same object,
    /// copies them with one read of the source, verifies each, and records the
    /// results. The lease is renewed while the copy runs, so a long copy is not
    /// taken over; if the process dies, the lease lapses and another worker retries.
    pub async fn run_once(&self) -> Result<Outcome, ReplicationError> {
        let now = now_millis();
        let lease_until = now + millis(self.config.lease);
        let Some(first) = queue::claim_next(&self.db, &self.owner, now, lease_until).await? else {
            return Ok(Outcome::Idle);
        };
        let object_id = first.object_id;
        let mut claimed = vec![first];
        claimed.extend(
            queue::claim_siblings(&self.db, object_id, &self.owner, now, lease_until).await?,
        );

        let _heartbeat = AbortOnDrop(self.spawn_heartbeat(object_id));
        self.copy_claimed(object_id, &claimed).await
    }

    fn spawn_heartbeat(&self, object_id: i64) -> tokio::task::JoinHandle<()> {
        let db = self.db.clone();
        let owner = self.owner.clone();
        let lease = self.config.lease;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let until = now_millis() + millis(lease);
                if let Err(e) = queue::renew_leases(&db, object_id, &owner, until).await {
                    tracing::warn!(error.message = %e, "could not renew a copy lease");
                }
            }
        })
    }

    async fn copy_claimed(
        &self,
        object_id: i64,
        claimed: &[ClaimedCopy],
    ) -> Result<Outcome, ReplicationError> {
        let Some(source) = queue::find_source(&self.db, object_id).await? else {
            for c in claimed {
                queue::mark_attempt_failed(
                    &self.db,
                    object_id,
                    &c.bucket_id,
                    &self.owner,
                    None,
                    "the object is gone",
                )
                .await?;
            }
            return Ok(Outcome::Copied {
                object_id,
                done: 0,
                failed: claimed.len(),
            });
        };

        let mut targets = Vec::new();
        let mut failed = 0;
        for c in claimed {
            match self.buckets.get(&c.bucket_id) {
                Some(b) => targets.push(Arc::clone(b)),
                None => {
                    failed += 1;
                    self.record_failure(
                        &source,
                        c,
                        true,
                        &format!("bucket {} is not configured any more", c.bucket_id),
                    )
                    .await?;
                }
            }
        }
        if targets.is_empty() {
            return Ok(Outcome::Copied {
                object_id,
                done: 0,
                failed,
            });
        }

        let outcome = self.copy_from_any_source(&source, &targets).await?;
        let mut done = 0;
        match outcome {
            Ok(report) => {
                if source.md5.is_none()
                    && queue::record_md5(&self.db, object_id, &report.md5).await?
                {
                    tracing::debug!(object_id, "recorded the MD5 computed while copying");
                }
                for (bucket_id, result) in report.results {
                    let Some(c) = claimed.iter().find(|c| c.bucket_id == bucket_id) else {
                        continue;
                    };
                    match result {
                        Ok(v) => {
                            let size = i64::try_from(v.size).unwrap_or(i64::MAX);
                            let now = now_millis();
                            if queue::mark_done(
                                &self.db,
                                object_id,
                                &bucket_id,
                                &self.owner,
                                now,
                                size,
                                v.etag.as_deref(),
                            )
                            .await?
                            {
                                done += 1;
                                let lag = (now - source.created_at).max(0) as f64 / 1000.0;
                                self.metrics.copy_done(&bucket_id, v.size, lag);
                            }
                        }
                        Err(e) => {
                            failed += 1;
                            self.record_failure(&source, c, e.is_permanent(), &e.to_string())
                                .await?;
                        }
                    }
                }
            }
            Err(e) => {
                for c in claimed
                    .iter()
                    .filter(|c| targets.iter().any(|t| t.id() == c.bucket_id))
                {
                    failed += 1;
                    self.record_failure(&source, c, e.is_permanent(), &e.to_string())
                        .await?;
                }
            }
        }
        Ok(Outcome::Copied {
            object_id,
            done,
            failed,
        })
    }

    /// Copies from the bucket that holds the object; if the object is missing there,
    /// from a verified replica instead.
    async fn copy_from_any_source(
        &self,
        source: &CopySource,
        targets: &[Arc<BucketClient>],
    ) -> Result<Result<copy::CopyReport, CopyError>, ReplicationError> {
        let mut ids = vec![source.bucket_id.clone()];
        for row in queue::list_copies(&self.db, source.object_id).await? {
            if row.state == queue::state::DONE && !ids.contains(&row.bucket_id) {
                ids.push(row.bucket_id);
            }
        }
        let candidates: Vec<Arc<BucketClient>> = self
            .buckets
            .read_order(ids)
            .iter()
            .filter_map(|id| self.buckets.get(id).cloned())
            .collect();
        let expected_md5 = source.md5.clone().or_else(|| {
            source
                .etag
                .clone()
                .filter(|e| looks_like_md5_etag(e) && !e.contains('-'))
        });
        let job = CopyJob {
            key: &source.object_key,
            size: u64::try_from(source.size).unwrap_or(0),
            expected_md5: expected_md5.as_deref(),
            multipart_threshold: self.config.multipart_threshold,
            part_size: self.config.part_size,
        };
        let mut last = None;
        for candidate in candidates {
            match copy_object(&candidate, targets, &job).await {
                Err(e) if e.is_source_missing() => last = Some(e),
                other => return Ok(other),
            }
        }
        Ok(Err(last.unwrap_or_else(|| CopyError::SourceMismatch {
            bucket: source.bucket_id.clone(),
            detail: "no configured bucket holds the object".to_owned(),
        })))
    }

    async fn record_failure(
        &self,
        source: &CopySource,
        copy: &ClaimedCopy,
        permanent: bool,
        error: &str,
    ) -> Result<(), ReplicationError> {
        let next = (!permanent).then(|| {
            now_millis()
                + millis(backoff(
                    self.config.retry_initial,
                    self.config.retry_max,
                    copy.attempts,
                ))
        });
        tracing::warn!(
            object_id = source.object_id,
            destination = %copy.bucket_id,
            attempts = copy.attempts,
            permanent,
            error.message = %error,
            "copy failed"
        );
        self.metrics.copy_failed(&copy.bucket_id, permanent);
        queue::mark_attempt_failed(
            &self.db,
            source.object_id,
            &copy.bucket_id,
            &self.owner,
            next,
            error,
        )
        .await?;
        Ok(())
    }

    /// Runs passes until `cancel` fires. Between passes it waits for `wakeup` or the
    /// poll interval; on a database error it backs off. Cancellation is checked only
    /// between passes, so a copy in hand is finished, never cut off.
    pub async fn run(self, wakeup: Arc<Notify>, cancel: CancellationToken) {
        let mut errors = 0u32;
        while !cancel.is_cancelled() {
            let pause = match self.run_once().await {
                Ok(Outcome::Copied { .. }) => {
                    errors = 0;
                    continue;
                }
                Ok(Outcome::Idle) => {
                    errors = 0;
                    self.config.poll_interval
                }
                Err(e) => {
                    errors = errors.saturating_add(1);
                    tracing::warn!(error.message = %e, error.cause_chain = ?e, "replication pass failed");
                    backoff(
                        Duration::from_millis(500),
                        Duration::from_secs(30),
                        i64::from(errors),
                    )
                }
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = wakeup.notified() => {},
                () = tokio::time::sleep(pause) => {},
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(5), s(3600), 1), s(5));
        assert_eq!(backoff(s(5), s(3600), 2), s(10));
        assert_eq!(backoff(s(5), s(3600), 4), s(40));
        assert_eq!(backoff(s(5), s(3600), 20), s(3600));
        assert_eq!(backoff(s(5), s(3600), i64::MAX), s(3600));
        assert_eq!(backoff(s(5), s(3600), 0), s(5));
    }
}

//! Replication: workers that copy each recorded object from the bucket holding it to
//! every other present bucket, verify each copy, and retry with backoff; the
//! instance heartbeat that hands a dead process's copies to the others; and the
//! purger that removes deleted objects from every bucket after a delay.

pub mod copy;
pub mod instance;
pub mod late;
pub mod purge;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use tokio::task::{JoinError, JoinSet};

use self::copy::{CopyError, CopyJob, Memory, Target, copy_object};
use crate::db::copies::{self, ClaimedCopy, CopyRow, CopySource, DoneMark, priority};
use crate::db::{Db, DbError, now_millis};
use crate::observe::events::{self, FoundBy};
use crate::observe::metrics::Metrics;
use crate::storage::presign::looks_like_md5_etag;
use crate::storage::watch::Activity;
use crate::storage::{BucketClient, Buckets, StorageError, error_chain};
use crate::throttle::Throttle;
use crate::time::millis;

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
    /// Objects one worker claims and copies at once.
    pub batch_size: u32,
    /// Bytes the copies of a process may hold in memory at once.
    pub memory_limit: u64,
    /// A copy verified later than this after its report is a `copy_late` event.
    pub late_after: Duration,
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
            batch_size: r.batch_size.max(1),
            memory_limit: r.memory_limit,
            late_after: r.late_after.get(),
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

/// What reading an object's verified tiers gave: the copy's report, or why no tier
/// could be read; and the tiers passed over as damaged or missing, with why, to be
/// restored once a verified tier has been read.
struct SourceRead {
    result: Result<copy::CopyReport, CopyError>,
    broken: Vec<(String, String)>,
}

/// How readying one target for a copy went.
enum Prepared {
    Ready(Target),
    /// The copy cannot go ahead this time; its failure is recorded.
    Failed,
    /// Another worker holds the copy now.
    Lost,
}

/// Stops the lease heartbeat when the pass ends, however it ends (also when the
/// pass itself is dropped mid-copy, so an abandoned copy's lease lapses).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

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
    memory: Memory,
    throttle: Option<Arc<Throttle>>,
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
            memory: Memory::new(config.memory_limit),
            config,
            owner,
            throttle: None,
        }
    }

    /// The same worker, holding its copies' bytes within `memory`, a budget shared
    /// with the other workers of the process.
    pub fn sharing_memory(mut self, memory: Memory) -> Self {
        self.memory = memory;
        self
    }

    /// The same worker, reading its sources no faster than `throttle` lets it, a
    /// rate shared with the other workers of the process
    /// (`replication.max-bytes-per-second`); `None`: no limit.
    pub fn sharing_throttle(mut self, throttle: Option<Arc<Throttle>>) -> Self {
        self.throttle = throttle;
        self
    }

    /// Claims every due copy of the object due longest, copies them with one read of
    /// the source, verifies each, and records the results: one pass of [`Self::run`]
    /// with a batch of one. The lease is renewed while the copy's bytes move, so a
    /// slow copy is not taken over and a stalled one is; if the process dies, its
    /// instance's heartbeat stops and another instance retries (see [`instance`]).
    pub async fn run_once(&self) -> Result<Outcome, ReplicationError> {
        let mut batch = self.claim(1).await?;
        let Some(object) = batch.pop() else {
            return Ok(Outcome::Idle);
        };
        let object_id = object.object_id;
        let copied = self.copy_one(object).await?;
        let done = self.commit_done(std::slice::from_ref(&copied)).await?;
        Ok(Outcome::Copied {
            object_id,
            done,
            failed: copied.failed,
        })
    }

    /// Claims every due copy of up to `objects` objects, and looks their objects and
    /// all their copies up; one statement each for the whole batch.
    async fn claim(&self, objects: u32) -> Result<Vec<ClaimedObject>, ReplicationError> {
        let now = now_millis();
        let lease_until = now + millis(self.config.lease);
        let claimed = copies::claim_batch(&self.db, &self.owner, now, lease_until, objects).await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<i64> = claimed.iter().map(|c| c.object_id).collect();
        ids.dedup();
        let mut sources = copies::find_sources(&self.db, &ids).await?;
        let mut copies = copies::list_copies_of(&self.db, &ids).await?;
        let mut batch: Vec<ClaimedObject> = Vec::with_capacity(ids.len());
        for c in claimed {
            match batch.last_mut() {
                Some(object) if object.object_id == c.object_id => object.claimed.push(c),
                _ => batch.push(ClaimedObject {
                    object_id: c.object_id,
                    source: sources.remove(&c.object_id),
                    copies: copies.remove(&c.object_id).unwrap_or_default(),
                    claimed: vec![c],
                }),
            }
        }
        Ok(batch)
    }

    /// Copies one claimed object to the targets of its claimed copies, with the
    /// lease heartbeat running for as long as the copy does. Failures are recorded
    /// here; the verified copies are returned, to be marked done with others in one
    /// transaction by [`Self::commit_done`].
    /// A copy whose lease another worker took stops at the next renewal: its sends
    /// are dropped mid-flight and nothing of it is recorded (the new holder aborts
    /// the upload it left open).
    async fn copy_one(&self, object: ClaimedObject) -> Result<Copied, ReplicationError> {
        let activity = Activity::new();
        let lost = CancellationToken::new();
        let _heartbeat =
            AbortOnDrop(self.spawn_heartbeat(object.object_id, activity.clone(), lost.clone()));
        tokio::select! {
            copied = self.copy_claimed(&object, &activity) => copied,
            () = lost.cancelled() => Ok(Copied {
                verified: Vec::new(),
                failed: 0,
            }),
        }
    }

    /// Marks the verified copies of `batch` done in one transaction, and counts each
    /// that this worker still held. Returns how many were.
    async fn commit_done(&self, batch: &[Copied]) -> Result<usize, ReplicationError> {
        let marks: Vec<DoneMark> = batch
            .iter()
            .flat_map(|c| c.verified.iter().cloned())
            .collect();
        let now = now_millis();
        let held = copies::mark_done_many(&self.db, &self.owner, now, &marks).await?;
        let mut done = 0;
        let mut held = held.into_iter();
        for mark in batch.iter().flat_map(|c| &c.verified) {
            let Some(Some(copy)) = held.next() else {
                continue;
            };
            done += 1;
            let size = u64::try_from(mark.size).unwrap_or(0);
            // Lag and lateness are a live copy's: background work (backfill, scrub,
            // a primary move) waits its turn by design.
            let lag = (copy.priority == priority::LIVE)
                .then(|| (now - copy.queued_at).max(0) as f64 / 1000.0);
            self.metrics.copy_done(&mark.bucket_id, size, lag);
            if let Some(lag) = lag
                && lag > self.config.late_after.as_secs_f64()
                && copy.late_at.is_none()
            {
                events::copy_late(
                    Some(&self.metrics),
                    mark.object_id,
                    &mark.bucket_id,
                    lag,
                    true,
                );
            }
        }
        Ok(done)
    }

    /// Renews the leases on `object_id`'s copies every third of a lease, but only if
    /// a byte of the copy moved since the last renewal (or the copy waits on a
    /// bounded request, the throttle or memory). A copy that stops moving loses its
    /// lease. A renewal that finds no copy still held means another worker took
    /// them: `lost` is cancelled and the copy stops, rather than write on as a
    /// second writer beside the new holder.
    fn spawn_heartbeat(
        &self,
        object_id: i64,
        activity: Activity,
        lost: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let db = self.db.clone();
        let owner = self.owner.clone();
        let lease = self.config.lease;
        tokio::spawn(async move {
            let mut seen = activity.progress();
            loop {
                tokio::time::sleep(lease / 3).await;
                let progress = activity.progress();
                if progress == seen && !activity.is_waiting() {
                    tracing::debug!(
                        object_id,
                        "no byte of the copy moved since its lease was last renewed; letting it run down"
                    );
                    continue;
                }
                seen = progress;
                let until = now_millis() + millis(lease);
                match copies::renew_leases(&db, object_id, &owner, until).await {
                    Ok(0) => {
                        tracing::warn!(
                            object_id,
                            "another worker holds this object's copies now; stopping this copy"
                        );
                        lost.cancel();
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error.message = %e, "could not renew a copy lease"),
                }
            }
        })
    }

    async fn copy_claimed(
        &self,
        object: &ClaimedObject,
        activity: &Activity,
    ) -> Result<Copied, ReplicationError> {
        let (object_id, claimed) = (object.object_id, object.claimed.as_slice());
        let Some(source) = &object.source else {
            for c in claimed {
                copies::mark_attempt_failed(
                    &self.db,
                    object_id,
                    &c.bucket_id,
                    &self.owner,
                    None,
                    copies::ErrorCode::SourceMissing,
                    "the object is gone",
                )
                .await?;
            }
            return Ok(Copied {
                verified: Vec::new(),
                failed: claimed.len(),
            });
        };

        let (targets, mut failed) = self.prepare_targets(source, claimed, activity).await?;
        let mut copied = Copied {
            verified: Vec::new(),
            failed: 0,
        };
        if targets.is_empty() {
            copied.failed = failed;
            return Ok(copied);
        }

        let read = self
            .copy_from_any_source(source, &object.copies, &targets, activity)
            .await?;
        match read.result {
            Ok(report) => {
                if source.md5.is_none()
                    && copies::record_md5(&self.db, object_id, &report.md5).await?
                {
                    tracing::debug!(object_id, "recorded the MD5 computed while copying");
                }
                for (bucket_id, result) in report.results {
                    let Some(c) = claimed.iter().find(|c| c.bucket_id == bucket_id) else {
                        continue;
                    };
                    match result {
                        Ok(v) => copied.verified.push(DoneMark {
                            object_id,
                            bucket_id,
                            size: i64::try_from(v.size).unwrap_or(i64::MAX),
                            etag: v.etag,
                        }),
                        Err(e) => {
                            failed += 1;
                            self.record_failure(
                                source,
                                c,
                                e.is_permanent(),
                                e.code(),
                                &error_chain(&e),
                            )
                            .await?;
                        }
                    }
                }
                // A verified tier was read: the damaged or missing ones are
                // restored from it by copies of their own.
                for (bucket_id, reason) in &read.broken {
                    if copies::queue_restore(
                        &self.db,
                        object_id,
                        bucket_id,
                        reason,
                        now_millis(),
                        copies::priority::LIVE,
                    )
                    .await?
                    {
                        tracing::info!(object_id, bucket = %bucket_id, "restore queued");
                    }
                }
            }
            Err(e) => {
                for c in claimed
                    .iter()
                    .filter(|c| targets.iter().any(|t| t.bucket.id() == c.bucket_id))
                {
                    failed += 1;
                    self.record_failure(source, c, e.is_permanent(), e.code(), &error_chain(&e))
                        .await?;
                }
            }
        }
        copied.failed = failed;
        Ok(copied)
    }

    /// The buckets the claimed copies go to, each counting its bytes in `activity`
    /// (see [`Self::prepare_target`]), and how many copies failed on the way.
    async fn prepare_targets(
        &self,
        source: &CopySource,
        claimed: &[ClaimedCopy],
        activity: &Activity,
    ) -> Result<(Vec<Target>, usize), ReplicationError> {
        let mut targets = Vec::new();
        let mut failed = 0;
        for c in claimed {
            let Some(bucket) = self.buckets.get(&c.bucket_id) else {
                failed += 1;
                self.record_failure(
                    source,
                    c,
                    true,
                    copies::ErrorCode::TargetRefused,
                    &format!("bucket {} is not configured any more", c.bucket_id),
                )
                .await?;
                continue;
            };
            let bucket = Arc::new(bucket.reporting_to(activity));
            match self.prepare_target(source, c, bucket).await? {
                Prepared::Ready(target) => targets.push(target),
                Prepared::Failed => failed += 1,
                Prepared::Lost => {}
            }
        }
        Ok((targets, failed))
    }

    /// Readies `bucket` for copy `c`: aborts the multipart upload an earlier attempt
    /// left open, and for a multipart copy starts a new one and records it with the
    /// copy before any part is sent, so that a crash leaves it to the next attempt to
    /// abort. A failure is recorded with the copy.
    async fn prepare_target(
        &self,
        source: &CopySource,
        c: &ClaimedCopy,
        bucket: Arc<BucketClient>,
    ) -> Result<Prepared, ReplicationError> {
        let key = source.object_key.as_str();
        let target_error = |e| CopyError::Target {
            bucket: c.bucket_id.clone(),
            source: e,
        };
        if let Some(old) = &c.upload_id {
            match bucket.abort_multipart_upload(key, old).await {
                Ok(()) => {}
                // Refused for good (s3s-fs refuses an upload it no longer knows):
                // there is nothing left to wait for.
                Err(e @ StorageError::Refused { .. }) => tracing::debug!(
                    object_id = source.object_id,
                    destination = %c.bucket_id,
                    error.message = %e,
                    "the upload an earlier attempt left cannot be aborted"
                ),
                Err(e) => {
                    let e = target_error(e);
                    let why = format!(
                        "aborting the multipart upload an earlier attempt left: {}",
                        error_chain(&e)
                    );
                    self.record_failure(source, c, false, e.code(), &why)
                        .await?;
                    return Ok(Prepared::Failed);
                }
            }
        }
        let multipart = u64::try_from(source.size).unwrap_or(0) > self.config.multipart_threshold;
        let upload_id = if multipart {
            match bucket.create_multipart_upload(key).await {
                Ok(id) => Some(id),
                Err(e) => {
                    let e = target_error(e);
                    self.record_failure(source, c, e.is_permanent(), e.code(), &error_chain(&e))
                        .await?;
                    return Ok(Prepared::Failed);
                }
            }
        } else {
            None
        };
        if (upload_id.is_some() || c.upload_id.is_some())
            && !copies::record_upload(
                &self.db,
                source.object_id,
                &c.bucket_id,
                &self.owner,
                upload_id.as_deref(),
            )
            .await?
        {
            // Taken over meanwhile: the copy and its uploads are its new holder's.
            if let Some(id) = &upload_id
                && let Err(e) = bucket.abort_multipart_upload(key, id).await
            {
                tracing::warn!(destination = %c.bucket_id, error.message = %e, "could not abort an upload started for a copy taken over");
            }
            return Ok(Prepared::Lost);
        }
        Ok(Prepared::Ready(Target { bucket, upload_id }))
    }

    /// Copies from the first verified tier that holds the recorded object: the bucket
    /// the report put it in, else a done copy (never one of the `targets`). Each read
    /// is conditional on the ETag recorded for its tier; a tier that holds other
    /// bytes is reported as tampered and passed over, as is one that lost the object.
    /// If every tier was passed over and one was tampered, or no tier but the targets
    /// is left, the recorded bytes are gone: that is a permanent failure, not
    /// something to retry.
    async fn copy_from_any_source(
        &self,
        source: &CopySource,
        copies: &[CopyRow],
        targets: &[Target],
        activity: &Activity,
    ) -> Result<SourceRead, ReplicationError> {
        let mut tiers = copies::verified_tiers(
            &source.bucket_id,
            source.size,
            source.etag.as_deref(),
            copies,
        );
        tiers.retain(|t| !targets.iter().any(|b| b.bucket.id() == t.bucket_id));
        if tiers.is_empty() {
            // Only a restore of the object's last tier gets here: nothing is left to
            // copy from, and waiting will not change that.
            return Ok(SourceRead {
                result: Err(CopyError::NoVerifiedSource {
                    detail: "every tier that held it is one being written".to_owned(),
                }),
                broken: Vec::new(),
            });
        }
        let order = self
            .buckets
            .read_order(tiers.iter().map(|t| t.bucket_id.clone()).collect());
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
            activity,
            memory: &self.memory,
            throttle: self.throttle.as_deref(),
        };
        let mut broken = Vec::new();
        let mut damage = None;
        let mut last_missing = None;
        for id in order {
            let (Some(bucket), Some(tier)) = (
                self.buckets.get(&id),
                tiers.iter().find(|t| t.bucket_id == id),
            ) else {
                continue;
            };
            match copy_object(bucket, tier.etag.as_deref(), targets, &job).await {
                Err(e) if e.is_source_missing() => {
                    broken.push((id, format!("restore: {e}")));
                    last_missing = Some(e);
                }
                Err(e) if e.is_source_damaged() => {
                    let detail = e.to_string();
                    events::tampered(
                        Some(&self.metrics),
                        &id,
                        source.object_id,
                        FoundBy::Copy,
                        &detail,
                    );
                    broken.push((id, format!("restore: {detail}")));
                    damage.get_or_insert(detail);
                }
                result => return Ok(SourceRead { result, broken }),
            }
        }
        let error = match (damage, last_missing) {
            (Some(detail), _) => CopyError::NoVerifiedSource { detail },
            (None, Some(missing)) => missing,
            (None, None) => CopyError::SourceMismatch {
                bucket: source.bucket_id.clone(),
                detail: "no configured bucket holds a verified copy".to_owned(),
            },
        };
        Ok(SourceRead {
            result: Err(error),
            broken: Vec::new(),
        })
    }

    async fn record_failure(
        &self,
        source: &CopySource,
        copy: &ClaimedCopy,
        permanent: bool,
        code: copies::ErrorCode,
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
            error.code = %code,
            error.message = %error,
            "copy failed"
        );
        self.metrics.copy_failed(&copy.bucket_id, permanent);
        if permanent {
            events::copy_failed(
                Some(&self.metrics),
                source.object_id,
                &copy.bucket_id,
                copy.attempts,
                error,
            );
        }
        copies::mark_attempt_failed(
            &self.db,
            source.object_id,
            &copy.bucket_id,
            &self.owner,
            next,
            code,
            error,
        )
        .await?;
        Ok(())
    }

    /// Copies until `cancel` fires, keeping up to `replication.batch-size` objects in
    /// flight, each copy a task of its own. Claims come in batches (one statement for
    /// as many objects as there is room for, once half the room is free or nothing
    /// is in flight), and the copies that ended together are marked done in one
    /// transaction. When nothing is due it waits for `wakeup` or the poll interval; on
    /// a database error it backs off. Once `cancel` fires it claims nothing more, and
    /// the copies in hand are finished, never cut off.
    pub async fn run(self, wakeup: Arc<Notify>, cancel: CancellationToken) {
        let batch = usize::try_from(self.config.batch_size.max(1)).unwrap_or(1);
        let mut in_flight: JoinSet<Result<Copied, ReplicationError>> = JoinSet::new();
        let mut errors = 0u32;
        // How long to wait when nothing is in flight: the poll interval, or a backoff
        // after a database error.
        let mut pause = self.config.poll_interval;
        loop {
            let room = batch.saturating_sub(in_flight.len());
            if !cancel.is_cancelled() && room > 0 && (in_flight.is_empty() || 2 * room >= batch) {
                match self.claim(u32::try_from(room).unwrap_or(1)).await {
                    Ok(claimed) => {
                        errors = 0;
                        pause = self.config.poll_interval;
                        for object in claimed {
                            let worker = self.clone();
                            in_flight.spawn(async move { worker.copy_one(object).await });
                        }
                    }
                    Err(e) => {
                        errors = errors.saturating_add(1);
                        tracing::warn!(error.message = %e, error.cause_chain = ?e, "replication pass failed");
                        pause = backoff(
                            Duration::from_millis(500),
                            Duration::from_secs(30),
                            i64::from(errors),
                        );
                    }
                }
            }
            if in_flight.is_empty() {
                if cancel.is_cancelled() {
                    break;
                }
                tokio::select! {
                    () = cancel.cancelled() => {},
                    () = wakeup.notified() => {},
                    () = tokio::time::sleep(pause) => {},
                }
                continue;
            }
            // Room for more: a report's wake-up or the poll interval claims again.
            let can_claim = in_flight.len() < batch && !cancel.is_cancelled();
            tokio::select! {
                first = in_flight.join_next() => {
                    let mut ended = Vec::new();
                    ended.extend(first);
                    while let Some(next) = in_flight.try_join_next() {
                        ended.push(next);
                    }
                    self.finish(ended).await;
                }
                () = wakeup.notified(), if can_claim => {},
                () = tokio::time::sleep(self.config.poll_interval), if can_claim => {},
            }
        }
    }

    /// Records what the copies that just ended did: their done marks in one
    /// transaction (retried with backoff while the database is away, since the bytes
    /// are already verified), and the errors of any that failed to run.
    async fn finish(&self, ended: Vec<Result<Result<Copied, ReplicationError>, JoinError>>) {
        let mut copied = Vec::with_capacity(ended.len());
        for result in ended {
            match result {
                Ok(Ok(c)) => copied.push(c),
                Ok(Err(e)) => {
                    tracing::warn!(error.message = %e, error.cause_chain = ?e, "a copy could not record its outcome; its lease will run out and it will be retried");
                }
                Err(e) => {
                    tracing::warn!(error.message = %e, "a copy task ended abnormally; its lease will run out and it will be retried");
                }
            }
        }
        for attempt in 1..=5 {
            match self.commit_done(&copied).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error.message = %e, attempt, "could not mark verified copies done; retrying");
                    tokio::time::sleep(backoff(
                        Duration::from_millis(200),
                        Duration::from_secs(5),
                        attempt,
                    ))
                    .await;
                }
            }
        }
        tracing::warn!(
            copies = copied.iter().map(|c| c.verified.len()).sum::<usize>(),
            "verified copies could not be marked done; their leases will run out and they will be copied again"
        );
    }
}

/// A claimed object: its claimed copies, the object (if it still exists), and every
/// copy row it had when claimed (the claimed ones included).
#[derive(Debug)]
struct ClaimedObject {
    object_id: i64,
    claimed: Vec<ClaimedCopy>,
    source: Option<CopySource>,
    copies: Vec<CopyRow>,
}

/// What copying one object gave, before the done marks are committed.
#[derive(Debug)]
struct Copied {
    verified: Vec<DoneMark>,
    /// Copies whose failure was recorded.
    failed: usize,
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

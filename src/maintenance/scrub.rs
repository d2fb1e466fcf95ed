//! The scrub: checks every tier of every live object, the bucket the report put it
//! in included, by HEAD (size and ETag against what was verified for that tier), and
//! a sample of tiers by a full read with MD5. A tier found missing or damaged is
//! queued for a copy from an intact one; an object with no intact tier left is
//! recorded and reported as lost, never dropped. Each intact tier gets its
//! `verified_at`.
//!
//! A pass keeps its place and its lease in the `jobs` row `scrub`, so it can be
//! stopped at any point (kill -9 included) and resumed by the next holder, and no
//! two run at once. `museum scrub` runs a pass to the end; the background job starts
//! one every `scrub.interval`; `museum replicate verify` is a one-shot run of the
//! same checks, HEADs only, with no job row.

use std::time::Duration;

use futures_util::StreamExt;
use md5::{Digest, Md5};
use tokio_util::sync::CancellationToken;

use crate::config::ScrubConfig;
use crate::db::copies::{self, CopyState, priority};
use crate::db::scrub::{Intact, Job, ObjectToScrub, Progress};
use crate::db::{self, Db, DbError, now_millis};
use crate::jobs::Step;
use crate::observe::events::{self, FoundBy};
use crate::observe::metrics::Metrics;
use crate::storage::presign::looks_like_md5_etag;
use crate::storage::{BucketClient, Buckets, StorageError};
use crate::throttle::Throttle;
use crate::time::millis;

/// The `jobs` row of the scrub.
pub const JOB: &str = "scrub";
/// Objects checked between two saves of a pass's place (about a second's worth at
/// the default rate).
const BATCH: i64 = 20;

/// How hard a scrub may work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScrubLimits {
    /// Objects checked per second at most; `None`: no limit.
    pub objects_per_second: Option<u32>,
    /// Bytes read in full per second at most; `None`: no limit.
    pub bytes_per_second: Option<u64>,
    /// The share of tiers read in full (0 to 1).
    pub read_sample: f64,
}

impl ScrubLimits {
    pub fn from_config(c: &ScrubConfig) -> Self {
        Self {
            objects_per_second: Some(c.objects_per_second),
            bytes_per_second: Some(c.bytes_per_second),
            read_sample: c.read_sample,
        }
    }

    /// HEADs only, as fast as the buckets answer: `replicate verify`.
    pub fn heads_only() -> Self {
        Self {
            objects_per_second: None,
            bytes_per_second: None,
            read_sample: 0.0,
        }
    }
}

/// What a scrub (or a stretch of one) found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScrubReport {
    /// Objects checked.
    pub objects: u64,
    /// Tiers checked: each object's own bucket and each done copy.
    pub checked: u64,
    /// Tiers read in full and checked by MD5, and their bytes.
    pub read: u64,
    pub bytes_read: u64,
    /// Tiers found intact.
    pub intact: u64,
    /// Tiers that lost the object.
    pub missing: u64,
    /// Tiers holding other bytes than the record (each also logged as tampered).
    pub tampered: u64,
    /// Tiers queued for a copy from an intact tier.
    pub requeued: u64,
    /// Tiers whose bucket could not be asked; checked again on the next pass.
    pub unreachable: u64,
    /// Objects with no intact tier left.
    pub lost: u64,
}

impl ScrubReport {
    fn add(&mut self, other: &Self) {
        self.objects += other.objects;
        self.checked += other.checked;
        self.read += other.read;
        self.bytes_read += other.bytes_read;
        self.intact += other.intact;
        self.missing += other.missing;
        self.tampered += other.tampered;
        self.requeued += other.requeued;
        self.unreachable += other.unreachable;
        self.lost += other.lost;
    }
}

impl std::fmt::Display for ScrubReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} objects, {} tiers checked ({} read in full, {} bytes): {} intact, {} missing, {} tampered, \
             {} restores queued, {} could not be checked; {} objects lost",
            self.objects,
            self.checked,
            self.read,
            self.bytes_read,
            self.intact,
            self.missing,
            self.tampered,
            self.requeued,
            self.unreachable,
            self.lost
        )
    }
}

/// What one check of one tier found.
enum TierState {
    Intact {
        read: Option<u64>,
    },
    Missing(String),
    /// Other bytes: why, and their size when a HEAD found it.
    Damaged(String, Option<u64>),
    Unreachable,
}

/// Checks objects' tiers and queues what they need.
#[derive(Debug)]
pub struct Scrubber {
    db: Db,
    buckets: Buckets,
    metrics: Option<Metrics>,
    objects: Option<Throttle>,
    bytes: Option<Throttle>,
    read_sample: f64,
    found_by: FoundBy,
}

/// How a run of a pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassEnd {
    /// The pass checked its last object.
    Finished,
    /// Asked to stop; the pass's place is saved for the next run.
    Stopped,
    /// Another holder took the job over (this one was too slow to renew its lease).
    Lost,
}

impl Scrubber {
    /// `metrics` is `None` for a one-shot command that nobody scrapes; `found_by`
    /// names the scrub in tampered events (`Verify` for `replicate verify`).
    pub fn new(
        db: Db,
        buckets: Buckets,
        metrics: Option<Metrics>,
        limits: ScrubLimits,
        found_by: FoundBy,
    ) -> Self {
        Self {
            db,
            buckets,
            metrics,
            objects: limits
                .objects_per_second
                .map(|n| Throttle::new(u64::from(n))),
            bytes: limits.bytes_per_second.map(Throttle::new),
            read_sample: limits.read_sample.clamp(0.0, 1.0),
            found_by,
        }
    }

    /// Checks every tier of each of `objects` (reading in full those `pass` picks),
    /// queues restores, records lost objects and stamps the intact tiers.
    pub async fn scrub_objects(
        &self,
        objects: &[ObjectToScrub],
        pass: i64,
    ) -> Result<ScrubReport, DbError> {
        let mut report = ScrubReport::default();
        let mut intact = Vec::new();
        for object in objects {
            if let Some(t) = &self.objects {
                t.take(1).await;
            }
            self.scrub_object(object, pass, &mut report, &mut intact)
                .await?;
        }
        if !intact.is_empty() {
            db::scrub::mark_verified(&self.db, &intact, now_millis()).await?;
        }
        Ok(report)
    }

    async fn scrub_object(
        &self,
        object: &ObjectToScrub,
        pass: i64,
        report: &mut ScrubReport,
        intact: &mut Vec<Intact>,
    ) -> Result<(), DbError> {
        report.objects += 1;
        let tiers = copies::verified_tiers(
            &object.bucket_id,
            object.size,
            object.etag.as_deref(),
            &object.copies,
        );
        let mut good = 0;
        let mut unreachable = 0;
        let mut broken: Vec<(String, String)> = Vec::new();
        for tier in &tiers {
            report.checked += 1;
            let read = self.read_sample > 0.0
                && picked(object.id, &tier.bucket_id, pass, self.read_sample);
            let found = self.check_tier(object, tier, read).await;
            let label = match &found {
                TierState::Intact { read } => {
                    good += 1;
                    report.intact += 1;
                    if let Some(bytes) = read {
                        report.read += 1;
                        report.bytes_read += bytes;
                    }
                    intact.push(Intact {
                        object_id: object.id,
                        bucket_id: tier.bucket_id.clone(),
                        copy: object
                            .copies
                            .iter()
                            .any(|c| c.bucket_id == tier.bucket_id && c.state == CopyState::Done),
                    });
                    "intact"
                }
                TierState::Missing(reason) => {
                    report.missing += 1;
                    broken.push((tier.bucket_id.clone(), reason.clone()));
                    "missing"
                }
                TierState::Damaged(detail, found_size) => {
                    report.tampered += 1;
                    if let Some(found_size) = *found_size {
                        self.charge(object, &tier.bucket_id, found_size).await;
                    }
                    events::tampered(
                        self.metrics.as_ref(),
                        &tier.bucket_id,
                        object.id,
                        self.found_by,
                        detail,
                    );
                    broken.push((
                        tier.bucket_id.clone(),
                        format!("{}: {} {detail}", self.verb(), tier.bucket_id),
                    ));
                    "damaged"
                }
                TierState::Unreachable => {
                    unreachable += 1;
                    report.unreachable += 1;
                    "unreachable"
                }
            };
            if let Some(m) = &self.metrics {
                m.scrub_tier(label);
            }
        }
        if good > 0 {
            for (bucket_id, reason) in &broken {
                if copies::queue_restore(
                    &self.db,
                    object.id,
                    bucket_id,
                    reason,
                    now_millis(),
                    priority::BACKGROUND,
                )
                .await?
                {
                    report.requeued += 1;
                }
            }
        } else if unreachable == 0 && !broken.is_empty() {
            report.lost += 1;
            if db::scrub::mark_lost(&self.db, object.id, now_millis()).await? {
                let detail = broken
                    .iter()
                    .map(|(_, reason)| reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                events::lost(self.metrics.as_ref(), object.id, &detail);
            }
        }
        Ok(())
    }

    fn verb(&self) -> &'static str {
        match self.found_by {
            FoundBy::Verify => "verify",
            _ => "scrub",
        }
    }

    /// Charges `object`'s user for the bytes past its record that `bucket` was found
    /// holding (see [`crate::db::uploads::charge_overwrite`]). Best effort: the scrub
    /// goes on either way, and finds them again on its next pass.
    async fn charge(&self, object: &ObjectToScrub, bucket: &str, found_size: u64) {
        match crate::db::uploads::charge_overwrite(&self.db, object.id, bucket, found_size).await {
            Ok(0) => {}
            Ok(bytes) => tracing::info!(
                object_id = object.id,
                bucket,
                bytes,
                "an overwrite past the recorded size was charged to the user's usage"
            ),
            Err(e) => {
                tracing::warn!(object_id = object.id, bucket, error.message = %e, "could not charge an overwrite to the user's usage");
            }
        }
    }

    /// HEADs one tier and compares it with the record; with `read`, then reads it in
    /// full (conditional on its ETag) and checks the MD5 of what came. GLACIER tiers
    /// are never read: their bytes cannot be read without a restore.
    async fn check_tier(
        &self,
        object: &ObjectToScrub,
        tier: &copies::VerifiedTier,
        read: bool,
    ) -> TierState {
        let Some(bucket) = self.buckets.get(&tier.bucket_id) else {
            tracing::warn!(bucket = %tier.bucket_id, object_id = object.id, "a tier's bucket is not configured any more; it cannot be checked");
            return TierState::Unreachable;
        };
        let size = u64::try_from(tier.size).unwrap_or(0);
        match bucket.head(&object.key).await {
            Ok(meta) => {
                if let Some(detail) = meta.differs_from(size, tier.etag.as_deref()) {
                    return TierState::Damaged(detail, Some(meta.size));
                }
            }
            Err(StorageError::NotFound { .. }) => {
                return TierState::Missing(format!(
                    "{}: the copy in {} is missing",
                    self.verb(),
                    tier.bucket_id
                ));
            }
            Err(e) => {
                tracing::warn!(bucket = %tier.bucket_id, object_id = object.id, error.message = %e, "a tier cannot be checked");
                return TierState::Unreachable;
            }
        }
        let archived = bucket
            .storage_class()
            .is_some_and(|c| matches!(c, "GLACIER" | "DEEP_ARCHIVE"));
        if !read || archived {
            return TierState::Intact { read: None };
        }
        let expected = object.md5.clone().or_else(|| {
            tier.etag
                .clone()
                .filter(|e| looks_like_md5_etag(e) && !e.contains('-'))
        });
        match self
            .read_md5(bucket, &object.key, tier.etag.as_deref())
            .await
        {
            Ok((bytes, _)) if bytes != size => TierState::Damaged(
                format!("a full read gave {bytes} bytes, the record says {size}"),
                Some(bytes),
            ),
            Ok((bytes, md5)) => match expected {
                Some(want) if !want.eq_ignore_ascii_case(&md5) => TierState::Damaged(
                    format!("a full read has MD5 {md5}, the record says {want}"),
                    None,
                ),
                _ => TierState::Intact { read: Some(bytes) },
            },
            Err(StorageError::NotFound { .. }) => TierState::Missing(format!(
                "{}: the copy in {} is missing",
                self.verb(),
                tier.bucket_id
            )),
            Err(StorageError::Changed { detail, .. }) => TierState::Damaged(detail, None),
            Err(e) => {
                tracing::warn!(bucket = %tier.bucket_id, object_id = object.id, error.message = %e, "a tier cannot be read");
                TierState::Unreachable
            }
        }
    }

    /// Reads `key` in full at the byte limit; its length and hex MD5.
    async fn read_md5(
        &self,
        bucket: &BucketClient,
        key: &str,
        etag: Option<&str>,
    ) -> Result<(u64, String), StorageError> {
        let (_, mut body) = bucket.get_stream_if_match(key, etag).await?;
        let mut md5 = Md5::new();
        let mut total = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            let n = chunk.len() as u64;
            if let Some(t) = &self.bytes {
                t.take(n).await;
            }
            md5.update(&chunk);
            total += n;
            if let Some(m) = &self.metrics {
                m.scrub_bytes_read(n);
            }
        }
        Ok((total, hex::encode(md5.finalize())))
    }

    /// Checks every live object, or `sample` chosen at random, HEADs only unless the
    /// limits say otherwise, without a job row: `museum replicate verify`.
    pub async fn one_shot(
        &self,
        sample: Option<i64>,
        bar: &indicatif::ProgressBar,
    ) -> Result<ScrubReport, DbError> {
        let mut report = ScrubReport::default();
        let pass = now_millis();
        if let Some(n) = sample {
            let objects = db::scrub::sample_objects(&self.db, n).await?;
            report = self.scrub_objects(&objects, pass).await?;
            bar.inc(report.objects);
            return Ok(report);
        }
        let mut after = 0;
        loop {
            let objects = db::scrub::objects_after(&self.db, after, BATCH).await?;
            let Some(last) = objects.last() else { break };
            after = last.id;
            let part = self.scrub_objects(&objects, pass).await?;
            bar.inc(part.objects);
            report.add(&part);
        }
        Ok(report)
    }

    /// Takes the scrub job for `owner` for a `lease`. `Err` holds the job as its
    /// other holder left it.
    pub async fn take(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Result<Job, Option<Job>>, DbError> {
        let now = now_millis();
        match db::scrub::take_job(&self.db, JOB, owner, now, now + millis(lease)).await? {
            Some(job) => Ok(Ok(job)),
            None => Ok(Err(db::scrub::find_job(&self.db, JOB).await?)),
        }
    }

    /// Runs the pass `job` holds from its place to its end (starting a new one if
    /// it holds none), saving its place after every batch, until `cancel` fires.
    /// The lease is renewed while it runs, and given back when it ends.
    pub async fn run_pass(
        &self,
        owner: &str,
        lease: Duration,
        job: &Job,
        cancel: &CancellationToken,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<(PassEnd, ScrubReport), DbError> {
        let mut report = ScrubReport::default();
        let (mut cursor, pass) = match (job.in_pass(), job.pass_started_at) {
            (true, Some(started)) => (job.cursor, started),
            _ => {
                let now = now_millis();
                if !db::scrub::start_pass(&self.db, JOB, owner, now).await? {
                    return Ok((PassEnd::Lost, report));
                }
                (0, now)
            }
        };
        let _renewal = crate::replication::AbortOnDrop(self.spawn_renewal(owner, lease));
        let end = loop {
            if cancel.is_cancelled() {
                break PassEnd::Stopped;
            }
            let objects = db::scrub::objects_after(&self.db, cursor, BATCH).await?;
            let finished = objects.is_empty().then(now_millis);
            let part = if objects.is_empty() {
                ScrubReport::default()
            } else {
                tokio::select! {
                    part = self.scrub_objects(&objects, pass) => part?,
                    () = cancel.cancelled() => break PassEnd::Stopped,
                }
            };
            if let Some(last) = objects.last() {
                cursor = last.id;
            }
            let progress = Progress {
                cursor,
                checked: i64::try_from(part.checked).unwrap_or(i64::MAX),
                healed: i64::try_from(part.requeued).unwrap_or(i64::MAX),
                lost: i64::try_from(part.lost).unwrap_or(i64::MAX),
            };
            let until = now_millis() + millis(lease);
            if !db::scrub::save_progress(&self.db, JOB, owner, progress, until, finished).await? {
                break PassEnd::Lost;
            }
            report.add(&part);
            if let Some(bar) = bar {
                bar.inc(part.objects);
            }
            if let Some(m) = &self.metrics {
                m.set_lost(db::scrub::count_lost(&self.db).await?);
            }
            if finished.is_some() {
                break PassEnd::Finished;
            }
        };
        db::scrub::release_job(&self.db, JOB, owner).await?;
        Ok((end, report))
    }

    fn spawn_renewal(&self, owner: &str, lease: Duration) -> tokio::task::JoinHandle<()> {
        let db = self.db.clone();
        let owner = owner.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let until = now_millis() + millis(lease);
                if let Err(e) = db::scrub::renew_job(&db, JOB, &owner, until).await {
                    tracing::warn!(error.message = %e, "could not renew the scrub's lease");
                }
            }
        })
    }

    /// This scrubber as the background scrub: a pass every `interval` (from the end
    /// of the last), by whichever instance holds the job as `owner`; a pass stops at
    /// the end of a batch when `cancel` fires.
    pub fn background(
        self,
        owner: String,
        interval: Duration,
        cancel: CancellationToken,
    ) -> BackgroundScrub {
        BackgroundScrub {
            scrubber: self,
            owner,
            interval,
            cancel,
        }
    }

    /// Runs a due or unfinished pass if this instance can take the job; returns how
    /// long to wait before looking again.
    async fn background_step(
        &self,
        owner: &str,
        lease: Duration,
        interval: Duration,
        cancel: &CancellationToken,
    ) -> Result<Duration, DbError> {
        let job = match self.take(owner, lease).await? {
            Ok(job) => job,
            Err(_) => return Ok(lease),
        };
        if !job.in_pass() {
            let due = job
                .pass_finished_at
                .map_or(0, |at| at.saturating_add(millis(interval)));
            let now = now_millis();
            if due > now {
                db::scrub::release_job(&self.db, JOB, owner).await?;
                return Ok(Duration::from_millis(u64::try_from(due - now).unwrap_or(0)));
            }
        }
        let (end, report) = self.run_pass(owner, lease, &job, cancel, None).await?;
        if end == PassEnd::Finished {
            tracing::info!(
                objects = report.objects,
                tiers = report.checked,
                read = report.read,
                requeued = report.requeued,
                tampered = report.tampered,
                missing = report.missing,
                lost = report.lost,
                "scrub pass finished"
            );
        }
        Ok(Duration::ZERO)
    }
}

/// The background scrub on the job runner. A step runs a due or unfinished pass if
/// this instance can take the job (saving its place after every batch, so a pass cut
/// short, kill -9 included, goes on from there), then the job is idle until the next
/// pass is due or the job may be free, a minute at most. When stopped it gives the
/// job's lease back.
#[derive(Debug)]
pub struct BackgroundScrub {
    scrubber: Scrubber,
    owner: String,
    interval: Duration,
    cancel: CancellationToken,
}

impl BackgroundScrub {
    /// How long the job is held without a renewal.
    const LEASE: Duration = Duration::from_secs(60);
    /// The longest wait between looks at the job.
    const IDLE: Duration = Duration::from_secs(60);
}

impl crate::jobs::Job for BackgroundScrub {
    fn name(&self) -> &'static str {
        "scrub"
    }

    async fn step(&mut self) -> anyhow::Result<Step> {
        let wait = self
            .scrubber
            .background_step(&self.owner, Self::LEASE, self.interval, &self.cancel)
            .await?;
        Ok(if wait.is_zero() {
            Step::Busy
        } else {
            Step::Idle(wait.min(Self::IDLE))
        })
    }

    async fn stop(&mut self) {
        if let Err(e) = db::scrub::release_job(&self.scrubber.db, JOB, &self.owner).await {
            tracing::warn!(error.message = %e, "could not give back the scrub's lease; it runs out within a minute");
        }
    }
}

/// Whether pass `pass` reads tier `bucket` of `object_id` in full: a hash of the
/// three, so each pass picks a different `share` of tiers, spread evenly.
fn picked(object_id: i64, bucket: &str, pass: i64, share: f64) -> bool {
    if share >= 1.0 {
        return true;
    }
    let mut h = (object_id as u64) ^ (pass as u64).rotate_left(32);
    for b in bucket.bytes() {
        h = h.rotate_left(5) ^ u64::from(b);
    }
    // splitmix64's finaliser.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h as f64) < share * (u64::MAX as f64)
}

#[cfg(test)]
mod tests {
    use super::picked;

    #[test]
    fn a_pass_reads_about_its_share_of_tiers_and_the_next_pass_others() {
        let tiers = |pass| {
            (1..=10_000)
                .filter(|id| picked(*id, "b2-eu-cen", pass, 0.05))
                .collect::<Vec<i64>>()
        };
        let (first, second) = (tiers(1_700_000_000_000), tiers(1_700_002_592_000));
        for n in [first.len(), second.len()] {
            assert!((400..=600).contains(&n), "{n} of 10000 at 5%");
        }
        let shared = first.iter().filter(|id| second.contains(id)).count();
        assert!(shared < 100, "{shared} tiers read by both passes");
        assert!(!picked(7, "b2-eu-cen", 1, 0.0));
        assert!(picked(7, "b2-eu-cen", 1, 1.0));
    }
}

//! Operator commands on the replication queue: status, backfill, verify, retry.
//! Each is resumable and idempotent, and long runs show a progress bar.

use std::fmt::Write as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::db::replication as queue;
use crate::db::{Db, DbError, now_millis};
use crate::events::{self, FoundBy};
use crate::storage::{Buckets, StorageError};

/// Rows handled per database round trip.
const BATCH: i64 = 500;

fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what} · {{per_sec}} · ETA {{eta}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn age(millis: i64) -> String {
    let secs = millis.max(0) / 1000;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// `museum replicate status`: copies per bucket and state, the oldest waiting copy,
/// and the latest errors.
pub async fn status(db: &Db, buckets: &Buckets) -> Result<String, DbError> {
    let counts = queue::state_counts(db).await?;
    let states = [
        queue::state::PENDING,
        queue::state::COPYING,
        queue::state::DONE,
        queue::state::FAILED,
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:>9} {:>9} {:>9}",
        "bucket", "pending", "copying", "done", "failed"
    );
    let mut ids: Vec<String> = buckets.all().map(|b| b.id().to_owned()).collect();
    for (id, _, _) in &counts {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    for id in ids {
        let n = |state: &str| {
            counts
                .iter()
                .find(|(b, s, _)| *b == id && s == state)
                .map_or(0, |(_, _, n)| *n)
        };
        let _ = writeln!(
            out,
            "{id:<24} {:>9} {:>9} {:>9} {:>9}",
            n(states[0]),
            n(states[1]),
            n(states[2]),
            n(states[3])
        );
    }
    match queue::oldest_waiting(db).await? {
        Some(at) => {
            let _ = writeln!(
                out,
                "oldest waiting copy: queued {} ago",
                age(now_millis() - at)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "oldest waiting copy: none, every copy is done or failed"
            );
        }
    }
    let errors = queue::recent_errors(db, 5).await?;
    if errors.is_empty() {
        let _ = writeln!(out, "last errors: none");
    } else {
        let _ = writeln!(out, "last errors:");
        for e in errors {
            let _ = writeln!(
                out,
                "  {} object {} ({}, attempt {}): {}",
                e.bucket_id,
                e.object_id,
                e.state,
                e.attempts,
                e.last_error.unwrap_or_default()
            );
        }
    }
    Ok(out)
}

/// What a backfill did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackfillReport {
    pub objects: u64,
    pub queued: u64,
}

/// `museum replicate backfill`: queues a copy for every live object that lacks one
/// in a present bucket (after a tier is added). Safe to stop and run again.
pub async fn backfill(db: &Db, buckets: &Buckets) -> Result<BackfillReport, DbError> {
    let targets: Vec<String> = buckets.all().map(|b| b.id().to_owned()).collect();
    let total = queue::count_live_objects(db).await?;
    let bar = progress(u64::try_from(total).unwrap_or(0), "objects");
    let mut report = BackfillReport::default();
    let mut after = 0;
    loop {
        let (last, queued, seen) =
            queue::backfill_batch(db, after, BATCH, &targets, now_millis()).await?;
        report.objects += seen as u64;
        report.queued += queued;
        bar.inc(seen as u64);
        match last {
            Some(id) => after = id,
            None => break,
        }
    }
    bar.finish_and_clear();
    Ok(report)
}

/// What a verify run found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Tiers checked: each object's own bucket, and each done copy.
    pub checked: u64,
    /// Tiers queued for a copy from a verified tier, because they lost the object
    /// or hold other bytes.
    pub requeued: u64,
    /// Tiers holding other bytes than the record (each also logged as tampered).
    pub tampered: u64,
    /// Tiers whose bucket could not be asked; checked again on the next run.
    pub unreachable: u64,
}

/// `museum replicate verify`: HEADs every verified tier of every live object (or
/// `sample` random ones) — the bucket the report put it in as well as each done
/// copy — and compares size and ETag with what was recorded for that tier. A tier
/// that lost the object or holds other bytes is queued for a copy from a verified
/// tier; other bytes are also logged as tampered.
pub async fn verify(
    db: &Db,
    buckets: &Buckets,
    sample: Option<i64>,
) -> Result<VerifyReport, DbError> {
    let total = match sample {
        Some(n) => n.min(queue::count_verified_tiers(db).await?),
        None => queue::count_verified_tiers(db).await?,
    };
    let bar = progress(u64::try_from(total).unwrap_or(0), "tiers");
    let mut report = VerifyReport::default();
    let mut after = (0, String::new());
    loop {
        let batch = match sample {
            Some(n) => queue::sample_verified_tiers(db, n).await?,
            None => queue::verified_tiers_after(db, after.0, &after.1, BATCH).await?,
        };
        if batch.is_empty() {
            break;
        }
        for item in batch {
            after = (item.object_id, item.tier.bucket_id.clone());
            report.checked += 1;
            bar.inc(1);
            verify_tier(db, buckets, &item, &mut report).await?;
        }
        if sample.is_some() {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(report)
}

async fn verify_tier(
    db: &Db,
    buckets: &Buckets,
    item: &queue::TierOfObject,
    report: &mut VerifyReport,
) -> Result<(), DbError> {
    let tier = &item.tier;
    let Some(bucket) = buckets.get(&tier.bucket_id) else {
        report.unreachable += 1;
        return Ok(());
    };
    let size = u64::try_from(tier.size).unwrap_or(0);
    let problem = match bucket.head(&item.object_key).await {
        Ok(meta) => meta.differs_from(size, tier.etag.as_deref()).map(|detail| {
            report.tampered += 1;
            events::tampered(
                None,
                &tier.bucket_id,
                item.object_id,
                FoundBy::Verify,
                &detail,
            );
            format!("verify: {} {detail}", tier.bucket_id)
        }),
        Err(StorageError::NotFound { .. }) => {
            Some(format!("verify: the copy in {} is missing", tier.bucket_id))
        }
        Err(e) => {
            report.unreachable += 1;
            tracing::warn!(bucket = %tier.bucket_id, error.message = %e, "verify: cannot check a copy");
            None
        }
    };
    if let Some(reason) = problem
        && queue::queue_restore(db, item.object_id, &tier.bucket_id, &reason, now_millis()).await?
    {
        report.requeued += 1;
    }
    Ok(())
}

/// `museum replicate retry`: re-queues every `failed` copy, e.g. after fixing the
/// bucket configuration that made them fail.
pub async fn retry_failed(db: &Db) -> Result<u64, DbError> {
    queue::requeue_failed(db, now_millis()).await
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_read_in_the_largest_sensible_unit() {
        assert_eq!(age(5_000), "5s");
        assert_eq!(age(600_000), "10m");
        assert_eq!(age(3 * 3_600_000), "3h");
        assert_eq!(age(3 * 86_400_000), "3d");
        assert_eq!(age(-5), "0s");
    }
}

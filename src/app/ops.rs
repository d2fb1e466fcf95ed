//! Operator commands on the replication queue: status, backfill, verify, scrub, retry.
//! Each is resumable and idempotent, and long runs show a progress bar.

use std::fmt::Write as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use tokio_util::sync::CancellationToken;

use crate::db::copies::{self, CopyState};
use crate::db::{self, Db, DbError, now_millis};
use crate::maintenance::scrub::{PassEnd, ScrubLimits, ScrubReport, Scrubber};
use crate::observe::events::FoundBy;
use crate::storage::Buckets;

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
/// the latest errors, the scrub's progress, and objects known lost.
pub async fn status(db: &Db, buckets: &Buckets) -> Result<String, DbError> {
    let counts = copies::state_counts(db).await?;
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
        let n = |state: CopyState| {
            counts
                .iter()
                .find(|(b, s, _)| *b == id && *s == state)
                .map_or(0, |(_, _, n)| *n)
        };
        let _ = writeln!(
            out,
            "{id:<24} {:>9} {:>9} {:>9} {:>9}",
            n(CopyState::Pending),
            n(CopyState::Copying),
            n(CopyState::Done),
            n(CopyState::Failed)
        );
    }
    match copies::oldest_waiting(db).await? {
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
    let errors = copies::recent_errors(db, 5).await?;
    if errors.is_empty() {
        let _ = writeln!(out, "last errors: none");
    } else {
        let _ = writeln!(out, "last errors:");
        for e in errors {
            let _ = writeln!(
                out,
                "  {} object {} ({}, attempt {}): {}: {}",
                e.bucket_id,
                e.object_id,
                e.state,
                e.attempts,
                e.error_code.unwrap_or(copies::ErrorCode::Other),
                e.last_error.unwrap_or_default()
            );
        }
    }
    match db::scrub::find_job(db, crate::maintenance::scrub::JOB).await? {
        Some(job) if job.in_pass() => {
            let _ = writeln!(
                out,
                "scrub: a pass started {} ago is past object {} ({} tiers checked, {} restores queued, {} lost){}",
                age(now_millis() - job.pass_started_at.unwrap_or_default()),
                job.cursor,
                job.checked,
                job.healed,
                job.lost,
                match &job.lease_owner {
                    Some(owner) => format!("; {owner} runs it"),
                    None => "; nobody runs it now".to_owned(),
                }
            );
        }
        Some(job) if job.pass_finished_at.is_some() => {
            let _ = writeln!(
                out,
                "scrub: the last pass finished {} ago ({} tiers checked, {} restores queued, {} lost)",
                age(now_millis() - job.pass_finished_at.unwrap_or_default()),
                job.checked,
                job.healed,
                job.lost
            );
        }
        _ => {
            let _ = writeln!(out, "scrub: no pass yet");
        }
    }
    let (lost, ids) = db::scrub::lost_objects(db, 20).await?;
    if lost == 0 {
        let _ = writeln!(out, "lost objects: none");
    } else {
        let list = ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let more = if lost > 20 { ", …" } else { "" };
        let _ = writeln!(
            out,
            "lost objects: {lost}, no tier holds their recorded bytes (IDs {list}{more})"
        );
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
    let total = copies::count_live_objects(db).await?;
    let bar = progress(u64::try_from(total).unwrap_or(0), "objects");
    let mut report = BackfillReport::default();
    let mut after = 0;
    loop {
        let (last, queued, seen) =
            copies::backfill_batch(db, after, BATCH, &targets, now_millis()).await?;
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

/// `museum replicate verify`: HEADs every verified tier of every live object (or of
/// `sample` random objects) — the bucket the report put it in as well as each done
/// copy — and compares size and ETag with what was recorded for that tier: a
/// one-shot run of the scrub's checks, without its rate limits, full reads or job
/// row. A tier that lost the object or holds other bytes is queued for a copy from
/// an intact tier; other bytes are also logged as tampered; an object with no intact
/// tier left is recorded and logged as lost.
pub async fn verify(
    db: &Db,
    buckets: &Buckets,
    sample: Option<i64>,
) -> Result<ScrubReport, DbError> {
    let total = match sample {
        Some(n) => n.min(copies::count_live_objects(db).await?),
        None => copies::count_live_objects(db).await?,
    };
    let bar = progress(u64::try_from(total).unwrap_or(0), "objects");
    let scrubber = Scrubber::new(
        db.clone(),
        buckets.clone(),
        None,
        ScrubLimits::heads_only(),
        FoundBy::Verify,
    );
    let report = scrubber.one_shot(sample, &bar).await;
    bar.finish_and_clear();
    report
}

/// What `museum scrub` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrubRun {
    /// Another process runs the pass: its holder and how far it is.
    Busy { holder: String, cursor: i64 },
    /// This run ended the pass, or was stopped and saved its place.
    Ran {
        end: PassEnd,
        resumed_from: i64,
        report: ScrubReport,
    },
}

/// `museum scrub`: runs the scrub's current pass to its end (or a new pass, if none
/// is under way or `restart` is given), at `limits`, with a progress bar. It holds
/// the pass for a `lease`, renewed while it runs: a run that dies (kill -9) leaves
/// the pass to the next one once that lapses. Stopping it (`cancel`) saves its
/// place and gives the pass back at once; the next run resumes there.
pub async fn scrub(
    db: &Db,
    buckets: &Buckets,
    limits: ScrubLimits,
    restart: bool,
    lease: Duration,
    cancel: &CancellationToken,
) -> Result<ScrubRun, DbError> {
    // Each run its own holder, so that no run takes over a pass another still holds.
    let owner = format!(
        "scrub-cli:{}:{}",
        std::process::id(),
        crate::replication::instance::fresh_id()
    );
    let scrubber = Scrubber::new(db.clone(), buckets.clone(), None, limits, FoundBy::Scrub);
    let mut job = match scrubber.take(&owner, lease).await? {
        Ok(job) => job,
        Err(other) => {
            return Ok(ScrubRun::Busy {
                holder: other
                    .as_ref()
                    .and_then(|j| j.lease_owner.clone())
                    .unwrap_or_default(),
                cursor: other.map_or(0, |j| j.cursor),
            });
        }
    };
    if restart {
        job.pass_started_at = None;
    }
    let resumed_from = if job.in_pass() { job.cursor } else { 0 };
    let total = copies::count_live_objects(db).await?;
    let bar = progress(u64::try_from(total).unwrap_or(0), "objects");
    bar.set_position(
        u64::try_from(db::scrub::count_objects_upto(db, resumed_from).await?).unwrap_or(0),
    );
    let (end, report) = scrubber
        .run_pass(&owner, lease, &job, cancel, Some(&bar))
        .await?;
    bar.finish_and_clear();
    Ok(ScrubRun::Ran {
        end,
        resumed_from,
        report,
    })
}

/// `museum replicate retry`: re-queues every `failed` copy, e.g. after fixing the
/// bucket configuration that made them fail.
pub async fn retry_failed(db: &Db) -> Result<u64, DbError> {
    copies::requeue_failed(db, now_millis()).await
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

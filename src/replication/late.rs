//! The late watch: finds live copies still unverified `replication.late-after` after
//! they were queued and reports each once (`event = "copy_late"`), while it is
//! stuck rather than only when it is verified at last. The mark is in the database,
//! so a copy is reported once whichever instance finds it, restarts included.

use std::time::Duration;

use crate::db::copies::flag_late;
use crate::db::{Db, DbError, now_millis};
use crate::jobs::{Job, Step};
use crate::observe::events;
use crate::observe::metrics::Metrics;
use crate::time::millis;

/// Copies reported per round; more wait for the next round.
const ROUND: i64 = 100;

/// How often the watch looks: twice per `late_after`, within 1 s to 30 s.
pub fn period(late_after: Duration) -> Duration {
    (late_after / 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// One round at `now` (milliseconds): reports up to 100 copies queued more than
/// `late_after` ago and not verified yet. Returns how many it reported.
pub async fn report_late(
    db: &Db,
    metrics: Option<&Metrics>,
    late_after: Duration,
    now: i64,
) -> Result<usize, DbError> {
    let cutoff = now.saturating_sub(millis(late_after));
    let late = flag_late(db, cutoff, now, ROUND).await?;
    for copy in &late {
        let waited = (now - copy.queued_at).max(0) as f64 / 1000.0;
        events::copy_late(metrics, copy.object_id, &copy.bucket_id, waited, false);
    }
    Ok(late.len())
}

/// The late watch on the job runner: a round of [`report_late`] a step, then
/// [`period`] idle.
#[derive(Debug)]
pub struct LateWatch {
    db: Db,
    metrics: Metrics,
    late_after: Duration,
}

impl LateWatch {
    pub fn new(db: Db, metrics: Metrics, late_after: Duration) -> Self {
        Self {
            db,
            metrics,
            late_after,
        }
    }
}

impl Job for LateWatch {
    fn name(&self) -> &'static str {
        "late_watch"
    }

    async fn step(&mut self) -> anyhow::Result<Step> {
        report_late(&self.db, Some(&self.metrics), self.late_after, now_millis()).await?;
        Ok(Step::Idle(period(self.late_after)))
    }
}

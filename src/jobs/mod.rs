//! The one shape of background work. A [`Job`] does one unit of work per
//! [`Job::step`], never interrupted, and says what comes next: more work now
//! ([`Step::Busy`]), nothing until a while has passed ([`Step::Idle`]), or the end
//! ([`Step::Done`]). The runner, written once here, owns the rest: stopping between
//! steps when cancelled, backing off after an error, and counting each job's errors
//! (`museum_job_errors_total{job}`). The shutdown deadline is the caller's: it waits
//! for the runners' tasks until then, and a step in flight at that moment is dropped
//! like any other task.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::observe::metrics::Metrics;

/// What a job does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More work is waiting: step again at once.
    Busy,
    /// Nothing to do for this long.
    Idle(Duration),
    /// The job has finished.
    Done,
}

/// One kind of background work.
pub trait Job: Send + 'static {
    /// The job's name, as its logs and the `job` label of its metrics show it:
    /// short, fixed, and never carrying a key, a user or a URL.
    fn name(&self) -> &'static str;

    /// Does one unit of work. An error is counted and logged by the runner, which
    /// steps again after its backoff; the job keeps its own place across errors.
    fn step(&mut self) -> impl Future<Output = anyhow::Result<Step>> + Send;

    /// The wait after failed steps; a job whose work must recur within a bound (a
    /// heartbeat) caps it there.
    fn backoff(&self) -> Backoff {
        Backoff::DEFAULT
    }

    /// Runs once when the runner stops the job, cancelled or done: gives back what
    /// the job holds (a lease) so another instance need not wait for it to run out.
    fn stop(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The wait after an error: doubling from [`Backoff::initial`] with each error in a
/// row, never past [`Backoff::max`]. A step that succeeds starts it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// One second, doubling up to a minute: soon enough to recover from a restart
    /// of the database, slow enough not to flood the log while it is down.
    pub const DEFAULT: Self = Self {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    /// The wait after the `errors`-th error in a row (the first is 1).
    pub fn after(&self, errors: u32) -> Duration {
        let doublings = errors.saturating_sub(1).min(31);
        self.initial
            .saturating_mul(1_u32 << doublings)
            .min(self.max)
    }
}

/// Starts jobs on one task tracker, counting their errors in one set of metrics and
/// stopping them all with one cancellation; the caller waits for the tracker, up to
/// its shutdown deadline.
#[derive(Debug, Clone)]
pub struct Runner {
    tracker: TaskTracker,
    metrics: Option<Metrics>,
    cancel: CancellationToken,
}

impl Runner {
    pub fn new(tracker: TaskTracker, metrics: Option<Metrics>, cancel: CancellationToken) -> Self {
        Self {
            tracker,
            metrics,
            cancel,
        }
    }

    /// Runs `job` (see [`run`]) on a task of the tracker.
    pub fn spawn<J: Job>(&self, job: J) {
        self.tracker
            .spawn(run(job, self.metrics.clone(), self.cancel.clone()));
    }
}

/// Runs `job` until it is done or `cancel` fires, which stops it between steps and
/// during its waits, then calls [`Job::stop`]. Each error counts in `metrics` (when
/// given), is logged with the job's name and its cause chain, and waits the job's
/// [`Backoff`] before the next step.
pub async fn run<J: Job>(mut job: J, metrics: Option<Metrics>, cancel: CancellationToken) {
    steps(&mut job, metrics, &cancel).await;
    job.stop().await;
}

/// The runner's loop: steps `job` until it is done or `cancel` fires.
async fn steps<J: Job>(job: &mut J, metrics: Option<Metrics>, cancel: &CancellationToken) {
    let backoff = job.backoff();
    let mut errors = 0_u32;
    while !cancel.is_cancelled() {
        let wait = match job.step().await {
            Ok(Step::Busy) => {
                errors = 0;
                // Another task of the runtime may run before the next step.
                tokio::task::yield_now().await;
                continue;
            }
            Ok(Step::Idle(wait)) => {
                errors = 0;
                wait
            }
            Ok(Step::Done) => return,
            Err(e) => {
                errors = errors.saturating_add(1);
                if let Some(m) = &metrics {
                    m.job_error(job.name());
                }
                let wait = backoff.after(errors);
                tracing::warn!(
                    job = job.name(),
                    errors_in_a_row = errors,
                    retry_in_ms = crate::time::millis(wait),
                    error.message = %e,
                    error.cause_chain = ?e,
                    "background job step failed; retrying"
                );
                wait
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    /// A job that answers a script of steps and records when each step ran.
    struct Scripted {
        script: VecDeque<Result<Step, &'static str>>,
        ran: Arc<Mutex<Vec<Duration>>>,
        start: Instant,
        cancel_at_step: Option<(usize, CancellationToken)>,
        stopped: Arc<Mutex<usize>>,
    }

    impl Job for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }

        async fn step(&mut self) -> anyhow::Result<Step> {
            let n = {
                let mut ran = self.ran.lock().unwrap();
                ran.push(self.start.elapsed());
                ran.len()
            };
            if let Some((at, cancel)) = &self.cancel_at_step
                && *at == n
            {
                cancel.cancel();
                // The step goes on to its end after the cancellation.
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            match self.script.pop_front() {
                Some(Ok(step)) => Ok(step),
                Some(Err(e)) => Err(anyhow::anyhow!(e)),
                None => Ok(Step::Done),
            }
        }

        async fn stop(&mut self) {
            *self.stopped.lock().unwrap() += 1;
        }

        fn backoff(&self) -> Backoff {
            BACKOFF
        }
    }

    fn scripted(script: Vec<Result<Step, &'static str>>) -> (Scripted, Arc<Mutex<Vec<Duration>>>) {
        let ran = Arc::new(Mutex::new(Vec::new()));
        let job = Scripted {
            script: script.into(),
            ran: Arc::clone(&ran),
            start: Instant::now(),
            cancel_at_step: None,
            stopped: Arc::new(Mutex::new(0)),
        };
        (job, ran)
    }

    const BACKOFF: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(4),
    };

    #[test]
    fn the_backoff_doubles_from_its_start_and_stops_at_its_cap() {
        let waits: Vec<u64> = (1..=5).map(|n| BACKOFF.after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 4, 4]);
        assert_eq!(BACKOFF.after(u32::MAX), Duration::from_secs(4));
        assert_eq!(Backoff::DEFAULT.after(100), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn busy_steps_run_at_once_idle_ones_wait_and_done_ends_the_job() {
        let (job, ran) = scripted(vec![
            Ok(Step::Busy),
            Ok(Step::Idle(Duration::from_secs(10))),
            Ok(Step::Busy),
            Ok(Step::Done),
            Ok(Step::Busy),
        ]);
        let stopped = Arc::clone(&job.stopped);
        run(job, None, CancellationToken::new()).await;
        let secs: Vec<u64> = ran.lock().unwrap().iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 0, 10, 10]);
        assert_eq!(*stopped.lock().unwrap(), 1, "stopped once, when done");
    }

    #[tokio::test(start_paused = true)]
    async fn errors_back_off_count_in_the_metric_and_a_success_starts_the_backoff_again() {
        let metrics = Metrics::new().unwrap();
        let (job, ran) = scripted(vec![
            Err("first"),
            Err("second"),
            Err("third"),
            Ok(Step::Busy),
            Err("again"),
            Ok(Step::Done),
        ]);
        run(job, Some(metrics.clone()), CancellationToken::new()).await;
        let secs: Vec<u64> = ran.lock().unwrap().iter().map(Duration::as_secs).collect();
        // Errors wait 1, 2 and 4 s; after the success the next error waits 1 s again.
        assert_eq!(secs, [0, 1, 3, 7, 7, 8]);
        assert!(
            metrics
                .render()
                .contains("museum_job_errors_total{job=\"scripted\"} 4"),
            "{}",
            metrics.render()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancellation_lets_the_step_in_hand_finish_and_starts_no_other() {
        let cancel = CancellationToken::new();
        let (mut job, ran) = scripted(vec![Ok(Step::Busy), Ok(Step::Busy), Ok(Step::Busy)]);
        job.cancel_at_step = Some((2, cancel.clone()));
        let started = Instant::now();
        run(job, None, cancel).await;
        assert_eq!(
            ran.lock().unwrap().len(),
            2,
            "no step after the cancellation"
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "the step ran to its end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancellation_ends_an_idle_wait_at_once() {
        let cancel = CancellationToken::new();
        let (job, ran) = scripted(vec![Ok(Step::Idle(Duration::from_secs(3600)))]);
        let stopped = Arc::clone(&job.stopped);
        let task = tokio::spawn(run(job, None, cancel.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(ran.lock().unwrap().len(), 1);
        assert_eq!(*stopped.lock().unwrap(), 1, "stopped once, when cancelled");
    }
}

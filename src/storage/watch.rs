//! Limits on the requests that carry an object's bytes: an idle timeout (no byte
//! moving for that long fails a GET's body) and an overall one (a budget for the
//! time museum spends waiting on the bucket over the whole request, which also
//! bounds each PUT). Also [`Activity`],
//! which tells a copy's lease heartbeat whether the copy's bytes still move.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::{ByteStream, StorageError};

/// The timeouts of every request to a bucket, from `s3.idle-timeout`,
/// `s3.request-timeout` and `s3.min-bytes-per-second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// No byte moving, either way, for this long fails a request.
    pub idle: Duration,
    /// What one request may spend waiting on the bucket, besides the time its bytes
    /// take at `min_bytes_per_second`.
    pub request: Duration,
    /// The slowest transfer waited for.
    pub min_bytes_per_second: u64,
}

impl Timeouts {
    /// The waiting a request that carries `len` bytes may do in all.
    pub fn budget(&self, len: u64) -> Duration {
        let rate = self.min_bytes_per_second.max(1);
        let millis = u64::try_from(u128::from(len) * 1000 / u128::from(rate)).unwrap_or(u64::MAX);
        self.request.saturating_add(Duration::from_millis(millis))
    }
}

/// Why a request was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stall {
    /// No byte moved for the idle timeout.
    #[error("no byte moved for {0:?} (s3.idle-timeout)")]
    Idle(Duration),
    /// The request spent its whole budget waiting on the bucket.
    #[error(
        "the request waited {0:?} on the bucket in all (s3.request-timeout, plus its bytes at s3.min-bytes-per-second)"
    )]
    Budget(Duration),
}

/// The time one request spends waiting on its bucket: the wait under way, if any,
/// and the waits before it. Time the bucket spends waiting on museum (a slow source
/// feeding a PUT, a slow client reading a download) is not counted.
#[derive(Debug, Clone)]
pub(crate) struct PeerClock {
    idle: Duration,
    budget: Duration,
    spent: Duration,
    waiting_since: Option<Instant>,
}

impl PeerClock {
    pub(crate) fn new(idle: Duration, budget: Duration) -> Self {
        Self {
            idle,
            budget,
            spent: Duration::ZERO,
            waiting_since: None,
        }
    }

    /// The bucket's turn: museum waits on it from `now`, unless it already does.
    pub(crate) fn wait(&mut self, now: Instant) {
        if self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
    }

    /// Museum's turn: the bucket moved bytes at `now`, and the wait is over.
    pub(crate) fn stop(&mut self, now: Instant) {
        if let Some(since) = self.waiting_since.take() {
            self.spent = self
                .spent
                .saturating_add(now.saturating_duration_since(since));
        }
    }

    /// When the wait under way fails the request; `None` if museum is not waiting.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let since = self.waiting_since?;
        Some(since + self.idle.min(self.budget.saturating_sub(self.spent)))
    }

    /// Why the request must be given up at `now`, if it must.
    pub(crate) fn check(&self, now: Instant) -> Option<Stall> {
        let waited = now.saturating_duration_since(self.waiting_since?);
        if self.spent.saturating_add(waited) >= self.budget {
            Some(Stall::Budget(self.budget))
        } else if waited >= self.idle {
            Some(Stall::Idle(self.idle))
        } else {
            None
        }
    }
}

/// A shared clock, locked: the transport and the watchdog both go through here.
pub(crate) fn lock(clock: &Mutex<PeerClock>) -> MutexGuard<'_, PeerClock> {
    // The clock holds plain numbers: one left by a panicking holder is still usable.
    clock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a copy's requests are doing, for its lease heartbeat: a count that grows
/// whenever a byte moves, and how many requests that stream nothing (starting or
/// completing a multipart upload) await their answer. Clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct Activity(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    moved: AtomicU64,
    waiting: AtomicUsize,
}

impl Activity {
    /// A new, silent activity.
    pub fn new() -> Self {
        Self::default()
    }

    /// Grows whenever a byte moves: two readings differ if any did in between.
    pub fn progress(&self) -> u64 {
        self.0.moved.load(Ordering::Relaxed)
    }

    /// Whether a request that streams nothing awaits its answer. Such a wait is
    /// bounded by `s3.request-timeout`.
    pub fn is_waiting(&self) -> bool {
        self.0.waiting.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn moved(&self) {
        self.0.moved.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn waiting(&self) -> Waiting {
        self.0.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(self.clone())
    }
}

/// A request awaiting its answer, until dropped.
pub(crate) struct Waiting(Activity);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that fails once the bucket stops sending (the idle timeout) or
/// has been waited on too long in all (the request's budget).
pub(crate) struct WatchedResponse {
    inner: ByteStream,
    clock: PeerClock,
    timer: Pin<Box<Sleep>>,
    bucket: &'static str,
    activity: Option<Activity>,
    done: bool,
}

impl WatchedResponse {
    /// Watches `body`; `clock` holds the waiting done so far (the headers).
    pub(crate) fn new(
        body: ByteStream,
        clock: PeerClock,
        bucket: &'static str,
        activity: Option<Activity>,
    ) -> Self {
        Self {
            inner: body,
            clock,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            bucket,
            activity,
            done: false,
        }
    }
}

impl Stream for WatchedResponse {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.clock.stop(Instant::now());
                if let Some(a) = &this.activity {
                    a.moved();
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.clock.deadline().is_none() {
                    this.clock.wait(Instant::now());
                    if let Some(at) = this.clock.deadline() {
                        this.timer.as_mut().reset(at);
                    }
                }
                // A timer fires at its deadline or after it, so the second look holds.
                for _ in 0..2 {
                    if let Some(stall) = this.clock.check(Instant::now()) {
                        this.done = true;
                        return Poll::Ready(Some(Err(stalled(this.bucket, stall))));
                    }
                    if this.timer.as_mut().poll(cx).is_pending() {
                        break;
                    }
                }
                Poll::Pending
            }
        }
    }
}

/// Resolves with the reason to give a call up once the bucket stalls it, as
/// `clock` tells (see [`super::transport`]).
pub(crate) async fn watchdog(clock: Arc<Mutex<PeerClock>>, idle: Duration) -> Stall {
    loop {
        let (stall, deadline) = {
            let c = lock(&clock);
            (c.check(Instant::now()), c.deadline())
        };
        if let Some(stall) = stall {
            return stall;
        }
        tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + idle)).await;
    }
}

/// A request given up for `stall`, as the error a caller sees.
pub(crate) fn stalled(bucket: &str, stall: Stall) -> StorageError {
    StorageError::Unavailable {
        bucket: bucket.to_owned(),
        source: Box::new(stall),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_request_fails_after_the_idle_timeout_of_silence() {
        let t0 = Instant::now();
        let mut clock = PeerClock::new(s(30), s(600));
        assert_eq!(clock.check(t0 + s(1000)), None, "not waiting, never late");
        clock.wait(t0);
        assert_eq!(clock.deadline(), Some(t0 + s(30)));
        assert_eq!(clock.check(t0 + s(29)), None);
        assert_eq!(clock.check(t0 + s(30)), Some(Stall::Idle(s(30))));
        clock.wait(t0 + s(10));
        assert_eq!(
            clock.deadline(),
            Some(t0 + s(30)),
            "a wait under way goes on"
        );
    }

    #[test]
    fn bytes_moving_restart_the_idle_timeout_but_not_the_budget() {
        let t0 = Instant::now();
        let mut clock = PeerClock::new(s(30), s(100));
        // A bucket that sends a byte every 25 s never trips the idle timeout...
        for i in 0..3 {
            clock.wait(t0 + s(25 * i));
            assert_eq!(clock.check(t0 + s(25 * i + 24)), None);
            clock.stop(t0 + s(25 * i + 25));
        }
        // ...but spends its budget: 75 s of 100 are gone, 25 s are left.
        clock.wait(t0 + s(75));
        assert_eq!(clock.deadline(), Some(t0 + s(100)));
        assert_eq!(clock.check(t0 + s(99)), None);
        assert_eq!(clock.check(t0 + s(100)), Some(Stall::Budget(s(100))));
    }

    #[test]
    fn time_spent_waiting_on_museum_is_not_counted() {
        let t0 = Instant::now();
        let mut clock = PeerClock::new(s(30), s(40));
        clock.wait(t0);
        clock.stop(t0 + s(20));
        // An hour of museum's own slowness, then the bucket answers at once.
        clock.wait(t0 + s(3600));
        assert_eq!(clock.check(t0 + s(3619)), None);
        assert_eq!(clock.check(t0 + s(3620)), Some(Stall::Budget(s(40))));
    }

    #[test]
    fn the_budget_grows_with_the_bytes_at_the_slowest_rate() {
        let t = Timeouts {
            idle: s(30),
            request: s(300),
            min_bytes_per_second: 1024,
        };
        assert_eq!(t.budget(0), s(300));
        assert_eq!(t.budget(10 * 1024), s(310));
        assert_eq!(t.budget(512), Duration::from_millis(300_500));
        assert_eq!(
            Timeouts {
                min_bytes_per_second: 0,
                ..t
            }
            .budget(u64::MAX),
            Duration::from_secs(300).saturating_add(Duration::from_millis(u64::MAX))
        );
    }

    #[test]
    fn activity_counts_moves_and_waits() {
        let a = Activity::new();
        let before = a.progress();
        a.clone().moved();
        assert_ne!(a.progress(), before);
        assert!(!a.is_waiting());
        let w = a.waiting();
        assert!(a.clone().is_waiting());
        drop(w);
        assert!(!a.is_waiting());
    }
}

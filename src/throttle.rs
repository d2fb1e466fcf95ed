//! Pacing shared by every task of a process: bytes per second for copies and scrub
//! reads, objects per second for the scrub.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Lets bytes through at no more than a set rate, however many tasks take from it.
/// Each `take` books its bytes after those booked before it and sleeps until their
/// turn comes, so the rate holds on average over any second and no task starves.
#[derive(Debug)]
pub struct Throttle {
    per_second: f64,
    /// When the bytes booked so far have all had their turn.
    free_at: Mutex<Instant>,
}

impl Throttle {
    /// A throttle at `per_second` (bytes, or whatever unit `take` counts); at least 1.
    pub fn new(per_second: u64) -> Self {
        Self {
            per_second: per_second.max(1) as f64,
            free_at: Mutex::new(Instant::now()),
        }
    }

    /// How long `n` more units must wait, booking them.
    fn book(&self, n: u64, now: Instant) -> Duration {
        let cost = Duration::from_secs_f64(n as f64 / self.per_second);
        let mut free_at = match self.free_at.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Idle time is not saved up: a throttle idle for an hour does not then let an
        // hour's bytes through at once.
        let start = (*free_at).max(now);
        *free_at = start + cost;
        start - now
    }

    /// Waits until `n` units may go.
    pub async fn take(&self, n: u64) {
        let wait = self.book(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookings_queue_behind_each_other_at_the_rate() {
        let t = Throttle::new(1000);
        let now = Instant::now();
        assert_eq!(
            t.book(500, now),
            Duration::ZERO,
            "the first bytes go at once"
        );
        assert_eq!(t.book(500, now), Duration::from_millis(500));
        assert_eq!(t.book(1000, now), Duration::from_secs(1));
        // A second later the first two bookings have had their turn.
        assert_eq!(
            t.book(1, now + Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn idle_time_is_not_saved_up() {
        let t = Throttle::new(1000);
        let now = Instant::now();
        t.book(1000, now);
        let later = now + Duration::from_secs(10);
        assert_eq!(t.book(1000, later), Duration::ZERO);
        assert_eq!(t.book(1000, later), Duration::from_secs(1));
    }
}

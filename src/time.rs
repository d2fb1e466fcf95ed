//! Durations in milliseconds, the unit of every timestamp column: one conversion for
//! the leases, delays, lifetimes and cutoffs reckoned against
//! [`db::now_millis`](crate::db::now_millis) (the database's clock). It imports nothing.

use std::time::Duration;

/// `d` in whole milliseconds; a duration past `i64::MAX` ms (292 million years)
/// saturates.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_is_whole_milliseconds_and_saturates() {
        assert_eq!(millis(Duration::from_micros(1_999)), 1);
        assert_eq!(millis(Duration::from_secs(30)), 30_000);
        assert_eq!(millis(Duration::MAX), i64::MAX);
    }
}

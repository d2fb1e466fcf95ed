//! The one clock of every timestamp museum writes or compares: the database's. Every
//! instance of a scale-out judges the others' heartbeats and leases by it, so a host
//! whose own clock is seconds off neither takes a live instance's copies nor keeps a
//! dead one's. [`now_millis`](super::now_millis) is this host's clock plus the offset
//! measured here; [`sync`] measures it again (at start and at every heartbeat). On
//! SQLite the database lives on this host, and the offset stays 0.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Db, Engine, Result};
use crate::time::millis;

/// The database's clock minus this host's, in milliseconds.
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// An offset past which start-up warns: leases are seconds long.
const WARN_MS: i64 = 1000;

/// This host's clock, in milliseconds since the Unix epoch.
pub(super) fn host_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// The offset [`now_millis`](super::now_millis) adds to this host's clock.
pub fn offset_ms() -> i64 {
    OFFSET_MS.load(Ordering::Relaxed)
}

/// Measures the database's clock against this host's (the midpoint of the query's
/// round trip), keeps the offset, and returns it. Logs a warning when it first passes
/// a second.
pub async fn sync(db: &Db) -> Result<i64> {
    if db.engine() != Engine::Postgres {
        return Ok(0);
    }
    let before = host_millis();
    let server: i64 =
        sqlx::query_scalar("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
            .fetch_one(db.pool())
            .await?;
    let after = host_millis();
    let offset = server - before / 2 - after / 2;
    let previous = OFFSET_MS.swap(offset, Ordering::Relaxed);
    if offset.abs() > WARN_MS && previous.abs() <= WARN_MS {
        tracing::warn!(
            offset_ms = offset,
            "this host's clock is more than a second off the database server's; museum times heartbeats and leases by the database's clock, but check NTP on both"
        );
    }
    Ok(offset)
}

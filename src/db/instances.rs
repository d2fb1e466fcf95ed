//! `instances`: one row per running museum process and its heartbeat, so that the
//! copies a dead process held go back to the queue in seconds.

use sqlx::Row;

use super::{Db, Result};

/// Records `name` as running, beating at `now` (a restart of the same instance
/// replaces its row).
pub async fn register(db: &Db, name: &str, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO instances (name, started_at, heartbeat_at) VALUES ($1, $2, $2) \
         ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
    )
    .bind(name)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Moves `name`'s heartbeat to `now`. Returns false if it has no row (it was counted
/// dead and removed).
pub async fn beat(db: &Db, name: &str, now: i64) -> Result<bool> {
    let n = sqlx::query("UPDATE instances SET heartbeat_at = $1 WHERE name = $2")
        .bind(now)
        .bind(name)
        .execute(&db.pool)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Instances whose last heartbeat is older than `cutoff`.
pub async fn silent_since(db: &Db, cutoff: i64) -> Result<Vec<String>> {
    sqlx::query("SELECT name FROM instances WHERE heartbeat_at < $1 ORDER BY name")
        .bind(cutoff)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get("name")?))
        .collect()
}

/// Removes `name`'s row if its heartbeat is still older than `cutoff` (it did not come
/// back meanwhile). Returns whether it did.
pub async fn remove_silent(db: &Db, name: &str, cutoff: i64) -> Result<bool> {
    let n = sqlx::query("DELETE FROM instances WHERE name = $1 AND heartbeat_at < $2")
        .bind(name)
        .bind(cutoff)
        .execute(&db.pool)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Removes `name`'s row (a clean shutdown).
pub async fn remove(db: &Db, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM instances WHERE name = $1")
        .bind(name)
        .execute(&db.pool)
        .await?;
    Ok(())
}

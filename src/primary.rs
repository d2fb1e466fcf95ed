//! `museum primary move --to <bucket>`: moves the hot primary online. The switch is
//! a row in `museum_settings` that every instance follows within seconds, so new
//! uploads go to the new primary; then each object held by the old primary is
//! moved once its copy in the new one is verified: the object's source becomes the
//! new bucket, in one transaction per object, and the old bucket becomes one of its
//! replica tiers or is emptied of it. Reads keep working throughout, from whichever
//! tier is verified. Every step is idempotent: a move cut short (kill -9 included)
//! is finished by running it again.

use std::time::Duration;

use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::db::replication::priority;
use crate::db::{Db, DbError, now_millis};
use crate::storage::Buckets;

/// The `museum_settings` row of the primary.
const SETTING: &str = "primary";
/// Objects moved per transaction round.
const BATCH: i64 = 200;

/// What becomes of the old primary's copy of each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OldPrimary {
    /// It stays, as a verified replica tier.
    Replica,
    /// It is deleted once the object is moved (to retire the bucket).
    Empty,
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("{0}")]
    Unfit(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for MoveError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::from(e))
    }
}

/// The primary a move switched to, if one did.
pub async fn stored_primary(db: &Db) -> Result<Option<String>, DbError> {
    setting(db, SETTING).await
}

/// Makes the stored primary, if any, the primary of `buckets`. Returns it when it
/// differs from the one configured; a stored primary that is not fit any more (its
/// bucket was removed from the configuration) is ignored and logged.
pub async fn follow(db: &Db, buckets: &Buckets) -> Result<Option<String>, DbError> {
    let Some(id) = stored_primary(db).await? else {
        return Ok(None);
    };
    if id == buckets.primary().id() {
        return Ok(None);
    }
    if buckets.set_primary(&id) {
        tracing::info!(primary = %id, "the primary was moved with museum primary move; new uploads go there");
        Ok(Some(id))
    } else {
        tracing::warn!(stored = %id, primary = buckets.primary().id(), "the primary a move switched to is not fit any more; keeping s3.hot_storage.primary");
        Ok(None)
    }
}

/// Follows the stored primary every `every` until `cancel` fires: how every
/// instance learns of a move.
pub async fn follow_until(db: Db, buckets: Buckets, every: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(e) = follow(&db, &buckets).await {
            tracing::debug!(error.message = %e, "could not read the stored primary");
        }
    }
}

/// Switches the primary to `to`: stored for every instance, and set in `buckets`.
/// Returns the primary it replaces.
pub async fn switch(db: &Db, buckets: &Buckets, to: &str) -> Result<String, MoveError> {
    if let Some(why) = buckets.unfit_primary(to) {
        return Err(MoveError::Unfit(why));
    }
    let from = buckets.primary().id().to_owned();
    set_setting(db, SETTING, to).await?;
    buckets.set_primary(to);
    Ok(from)
}

/// The `museum_settings` row naming the primary an unfinished move leaves.
const MOVE_FROM: &str = "move-from";

async fn setting(db: &Db, name: &str) -> Result<Option<String>, DbError> {
    Ok(
        sqlx::query("SELECT value FROM museum_settings WHERE name = $1")
            .bind(name)
            .fetch_optional(db.pool())
            .await?
            .map(|r| r.try_get(0))
            .transpose()?,
    )
}

async fn set_setting(db: &Db, name: &str, value: &str) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO museum_settings (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = $2",
    )
    .bind(name)
    .bind(value)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The primary an unfinished move leaves, if a move is unfinished.
pub async fn stored_move_source(db: &Db) -> Result<Option<String>, DbError> {
    setting(db, MOVE_FROM).await
}

/// Records that a move from `from` is under way, so that a run cut short is
/// resumed from the same bucket.
pub async fn remember_move_source(db: &Db, from: &str) -> Result<(), DbError> {
    set_setting(db, MOVE_FROM, from).await
}

/// Records that no move is under way.
pub async fn forget_move_source(db: &Db) -> Result<(), DbError> {
    sqlx::query("DELETE FROM museum_settings WHERE name = $1")
        .bind(MOVE_FROM)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// How far a move stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MoveProgress {
    /// Objects moved by this step.
    pub moved: u64,
    /// Live objects still held by the old primary (waiting for their copy).
    pub left: u64,
    /// Copies to the new primary this step queued.
    pub queued: u64,
    /// Of those left, objects whose copy to the new primary failed for good: they
    /// wait for `museum replicate retry` after the cause is fixed.
    pub failed: u64,
}

/// Queues a background copy to `to` for each live object on `from` that lacks one
/// (uploads issued before the switch can still be reported onto `from`). Returns how
/// many it queued. One scan of `from`'s objects: run it now and then, not every step.
pub async fn queue_copies(db: &Db, from: &str, to: &str) -> Result<u64, MoveError> {
    let now = now_millis();
    Ok(sqlx::query(
        "INSERT INTO object_copies (object_id, bucket_id, state, attempts, next_attempt_at, created_at, priority) \
         SELECT o.id, $2, 'pending', 0, $3, $3, $4 FROM objects o \
         WHERE o.bucket_id = $1 AND o.deleted_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM object_copies c WHERE c.object_id = o.id AND c.bucket_id = $2)",
    )
    .bind(from)
    .bind(to)
    .bind(now)
    .bind(priority::BACKGROUND)
    .execute(db.pool())
    .await?
    .rows_affected())
}

/// One step of moving every live object from `from` to `to`: [`queue_copies`], then
/// [`advance`]. Returns how far the move stands.
pub async fn step(
    db: &Db,
    buckets: &Buckets,
    from: &str,
    to: &str,
    old: OldPrimary,
) -> Result<MoveProgress, MoveError> {
    let queued = queue_copies(db, from, to).await?;
    let progress = advance(db, buckets, from, to, old).await?;
    Ok(MoveProgress { queued, ..progress })
}

/// Moves up to 200 objects whose copy in `to` is verified. When `from` is to be
/// emptied, an object's bytes there are deleted before it moves: a run killed in
/// between leaves it on `from`, read from its verified replicas, and the next run
/// deletes again (nothing) and moves it, so no byte is left behind.
pub async fn advance(
    db: &Db,
    buckets: &Buckets,
    from: &str,
    to: &str,
    old: OldPrimary,
) -> Result<MoveProgress, MoveError> {
    let ready = sqlx::query(
        "SELECT o.id, o.object_key FROM objects o JOIN object_copies c ON c.object_id = o.id AND c.bucket_id = $2 \
         WHERE o.bucket_id = $1 AND o.deleted_at IS NULL AND c.state = 'done' ORDER BY o.id LIMIT $3",
    )
    .bind(from)
    .bind(to)
    .bind(BATCH)
    .fetch_all(db.pool())
    .await?;
    let mut moved = 0;
    for row in &ready {
        let id: i64 = row.try_get(0)?;
        let key: String = row.try_get(1)?;
        if old == OldPrimary::Empty
            && let Some(bucket) = buckets.get(from)
            && let Err(e) = bucket.delete(&key).await
        {
            // Left on the old primary, whole, for the next step.
            tracing::warn!(object_id = id, bucket = from, error.message = %e, "could not delete an object from the old primary; it moves once that works");
            continue;
        }
        if move_one(db, id, from, to, old).await? {
            moved += 1;
        }
    }
    let left: i64 =
        sqlx::query("SELECT COUNT(*) FROM objects WHERE bucket_id = $1 AND deleted_at IS NULL")
            .bind(from)
            .fetch_one(db.pool())
            .await?
            .try_get(0)?;
    let failed: i64 = sqlx::query(
        "SELECT COUNT(*) FROM objects o JOIN object_copies c ON c.object_id = o.id AND c.bucket_id = $2 \
         WHERE o.bucket_id = $1 AND o.deleted_at IS NULL AND c.state = 'failed'",
    )
    .bind(from)
    .bind(to)
    .fetch_one(db.pool())
    .await?
    .try_get(0)?;
    Ok(MoveProgress {
        moved,
        left: u64::try_from(left).unwrap_or(0),
        queued: 0,
        failed: u64::try_from(failed).unwrap_or(0),
    })
}

/// Moves one object in one transaction: its source becomes `to` (whose verified
/// copy row stays and speaks for it), and `from` becomes a done replica row with the
/// size and ETag its report verified, or (emptied) has no row. False if it moved
/// meanwhile.
async fn move_one(
    db: &Db,
    id: i64,
    from: &str,
    to: &str,
    old: OldPrimary,
) -> Result<bool, MoveError> {
    let mut tx = db.begin_write().await?;
    let n = sqlx::query(
        "UPDATE objects SET bucket_id = $2 WHERE id = $1 AND bucket_id = $3 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(to)
    .bind(from)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    match old {
        OldPrimary::Replica => {
            sqlx::query(
                "INSERT INTO object_copies (object_id, bucket_id, state, attempts, next_attempt_at, created_at, \
                 copied_at, verified_size, verified_etag, verified_at, priority) \
                 SELECT id, $2, 'done', 0, created_at, created_at, created_at, size, etag, verified_at, 0 \
                 FROM objects WHERE id = $1 \
                 ON CONFLICT (object_id, bucket_id) DO NOTHING",
            )
            .bind(id)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        }
        OldPrimary::Empty => {
            sqlx::query("DELETE FROM object_copies WHERE object_id = $1 AND bucket_id = $2")
                .bind(id)
                .bind(from)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

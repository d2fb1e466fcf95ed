//! `museum primary move --to <bucket>`: moves the hot primary online. The switch is
//! a row in `museum_settings` that every instance follows within seconds, so new
//! uploads go to the new primary; then each object held by the old primary is
//! moved once its copy in the new one is verified: the object's source becomes the
//! new bucket, in one transaction per object, and the old bucket becomes one of its
//! replica tiers or is emptied of it. Reads keep working throughout, from whichever
//! tier is verified. Every step is idempotent: a move cut short (kill -9 included)
//! is finished by running it again.

use std::time::Duration;

use anyhow::Context as _;

use crate::db::copies::priority;
use crate::db::{Db, DbError, copies, now_millis, objects, settings, uploads};
use crate::jobs::{Job, Step};
use crate::storage::Buckets;

/// The `museum_settings` row of the primary.
const SETTING: &str = "primary";
/// Objects moved per transaction round.
const BATCH: i64 = 200;

/// What becomes of the old primary's copy of each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The primary a move switched to, if one did.
pub async fn stored_primary(db: &Db) -> Result<Option<String>, DbError> {
    settings::find_setting(db, SETTING).await
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

/// Following the stored primary on the job runner, a read every `every`: how every
/// instance learns of a move.
#[derive(Debug)]
pub struct FollowPrimary {
    db: Db,
    buckets: Buckets,
    every: Duration,
}

impl FollowPrimary {
    pub fn new(db: Db, buckets: Buckets, every: Duration) -> Self {
        Self { db, buckets, every }
    }
}

impl Job for FollowPrimary {
    fn name(&self) -> &'static str {
        "primary_follow"
    }

    async fn step(&mut self) -> anyhow::Result<Step> {
        follow(&self.db, &self.buckets)
            .await
            .context("reading the stored primary")?;
        Ok(Step::Idle(self.every))
    }
}

/// Switches the primary to `to`: stored for every instance, and set in `buckets`.
/// Returns the primary it replaces.
pub async fn switch(db: &Db, buckets: &Buckets, to: &str) -> Result<String, MoveError> {
    if let Some(why) = buckets.unfit_primary(to) {
        return Err(MoveError::Unfit(why));
    }
    let from = buckets.primary().id().to_owned();
    settings::set_setting(db, SETTING, to).await?;
    buckets.set_primary(to);
    Ok(from)
}

/// The `museum_settings` row naming the primary an unfinished move leaves.
const MOVE_FROM: &str = "move-from";

/// The primary an unfinished move leaves, if a move is unfinished.
pub async fn stored_move_source(db: &Db) -> Result<Option<String>, DbError> {
    settings::find_setting(db, MOVE_FROM).await
}

/// Records that a move from `from` is under way, so that a run cut short is
/// resumed from the same bucket.
pub async fn remember_move_source(db: &Db, from: &str) -> Result<(), DbError> {
    settings::set_setting(db, MOVE_FROM, from).await
}

/// Records that no move is under way.
pub async fn forget_move_source(db: &Db) -> Result<(), DbError> {
    settings::delete_setting(db, MOVE_FROM).await
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
    Ok(copies::queue_copies_of_bucket(db, from, to, now, priority::BACKGROUND).await?)
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
/// emptied, the new copy is looked at afresh (a HEAD, its size and ETag against
/// what its copy verified) just before the object moves, the move re-checks in its
/// transaction that the copy is still verified, and only then are the bytes on
/// `from` deleted. A run killed between the move and the delete leaves bytes on
/// `from` that no record points to any more: [`sweep_moved`] removes them at the end.
pub async fn advance(
    db: &Db,
    buckets: &Buckets,
    from: &str,
    to: &str,
    old: OldPrimary,
) -> Result<MoveProgress, MoveError> {
    let ready = objects::copied_objects(db, from, to, BATCH).await?;
    let mut moved = 0;
    for object in ready {
        let objects::CopiedObject {
            id,
            object_key: key,
            verified_size: size,
            verified_etag: etag,
        } = object;
        if old == OldPrimary::Empty
            && !still_verified(db, buckets, id, to, &key, size, &etag).await?
        {
            continue;
        }
        if !move_one(db, id, from, to, old, size, etag.as_deref()).await? {
            continue;
        }
        moved += 1;
        if old == OldPrimary::Empty
            && let Some(bucket) = buckets.get(from)
            && let Err(e) = bucket.delete(&key).await
        {
            // Moved, and read from `to` from now on; the end of the move sweeps it.
            tracing::warn!(object_id = id, bucket = from, error.message = %e, "could not delete a moved object from the old primary; the end of the move sweeps it");
        }
    }
    let left = objects::count_live_in_bucket(db.pool(), from).await?;
    let failed = objects::count_failed_copies(db, from, to).await?;
    Ok(MoveProgress {
        moved,
        left: u64::try_from(left).unwrap_or(0),
        queued: 0,
        failed: u64::try_from(failed).unwrap_or(0),
    })
}

/// Whether `to` still holds the copy of object `id` its row verified (size and
/// ETag), by a HEAD made now. A copy found gone or changed is queued again (the
/// object stays on the old primary until it is verified anew); a HEAD that fails
/// leaves it for the next step.
async fn still_verified(
    db: &Db,
    buckets: &Buckets,
    id: i64,
    to: &str,
    key: &str,
    size: Option<i64>,
    etag: &Option<String>,
) -> Result<bool, MoveError> {
    let Some(bucket) = buckets.get(to) else {
        return Ok(false);
    };
    let fits = match bucket.head(key).await {
        Ok(meta) => {
            size.and_then(|s| u64::try_from(s).ok()) == Some(meta.size)
                && (etag.is_none() || *etag == meta.etag)
        }
        Err(crate::storage::StorageError::NotFound { .. }) => false,
        Err(e) => {
            tracing::warn!(object_id = id, bucket = to, error.message = %e, "could not check the new primary's copy; the object moves once that works");
            return Ok(false);
        }
    };
    if !fits {
        tracing::warn!(
            object_id = id,
            bucket = to,
            "the new primary's copy is gone or changed since it was verified; copying it again before the object moves"
        );
        copies::reopen_done_copy(db, id, to, now_millis()).await?;
    }
    Ok(fits)
}

/// Moves one object in one transaction: its source becomes `to` (whose verified
/// copy row stays and speaks for it), and `from` becomes a done replica row with the
/// size and ETag its report verified, or (emptied) has no row. The object moves only
/// if `to`'s copy is still the verified one (`size`, `etag`) at that moment. False
/// if it did not move.
async fn move_one(
    db: &Db,
    id: i64,
    from: &str,
    to: &str,
    old: OldPrimary,
    size: Option<i64>,
    etag: Option<&str>,
) -> Result<bool, MoveError> {
    let mut tx = db.begin_write().await?;
    if !objects::move_source(&mut tx, id, from, to, size, etag).await? {
        tx.rollback().await.map_err(DbError::from)?;
        return Ok(false);
    }
    match old {
        OldPrimary::Replica => copies::insert_reported_copy(&mut tx, id, from).await?,
        OldPrimary::Empty => copies::delete_copy(&mut tx, id, from).await?,
    }
    tx.commit().await.map_err(DbError::from)?;
    Ok(true)
}

/// Ends the uploads still open on `from`: every key issued there and not yet
/// reported is marked swept, so that its report is refused (the app uploads the file
/// again, to the new primary) and the cleanup sweep deletes its bytes once its URL
/// expires. Returns how many it ended, and how many live objects `from` still holds,
/// counted in the same transaction: once both are 0 no record can land on `from`.
pub async fn close_uploads(db: &Db, from: &str) -> Result<(u64, u64), MoveError> {
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    let closed = uploads::mark_bucket_swept(&mut tx, from, now).await?;
    let left = objects::count_live_in_bucket(&mut *tx, from).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok((closed, u64::try_from(left).unwrap_or(0)))
}

/// What one sweep of the emptied old primary found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Bytes of moved objects found there and deleted (left by a run killed after a
    /// move, or written back by a copy or heal that raced the move).
    pub deleted: u64,
    /// Objects there that no record knows (uploads the move ended, strays): left for
    /// the cleanup sweep and `museum reconcile`.
    pub unknown: u64,
}

/// Lists `from` and deletes every object whose record lives elsewhere now and keeps
/// no copy on `from`: what a move to empty `from` must not leave behind.
pub async fn sweep_moved(db: &Db, buckets: &Buckets, from: &str) -> Result<Sweep, MoveError> {
    use futures_util::StreamExt;
    let Some(bucket) = buckets.get(from) else {
        return Ok(Sweep::default());
    };
    let mut sweep = Sweep::default();
    let mut pages = bucket.list().chunks(500);
    while let Some(page) = pages.next().await {
        let keys: Vec<String> = page
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MoveError::Unfit(format!("listing {from} failed: {e}")))?
            .into_iter()
            .map(|l| l.key)
            .collect();
        let moved: std::collections::HashSet<String> = objects::keys_moved_off(db, from, &keys)
            .await?
            .into_iter()
            .collect();
        let known = objects::count_keys(db, &keys).await?;
        sweep.unknown += (keys.len() as u64).saturating_sub(u64::try_from(known).unwrap_or(0));
        for key in moved {
            match bucket.delete(&key).await {
                Ok(()) => sweep.deleted += 1,
                Err(e) => {
                    return Err(MoveError::Unfit(format!(
                        "could not delete the moved object {key} from {from}: {e}; run the move again"
                    )));
                }
            }
        }
    }
    Ok(sweep)
}

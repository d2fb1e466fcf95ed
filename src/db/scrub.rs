//! The scrub's records: the `jobs` row that carries a pass's progress and lease,
//! when each tier of an object was last found intact, and objects found lost.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::copies::{CopyRow, list_copies_of};
use super::{Db, Result};

/// One long background job: its pass, its holder, and what the pass found so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    /// The last object ID the current pass finished with.
    pub cursor: i64,
    pub pass_started_at: Option<i64>,
    pub pass_finished_at: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub checked: i64,
    pub healed: i64,
    pub lost: i64,
}

impl Job {
    /// Whether a pass was started and has not finished.
    pub fn in_pass(&self) -> bool {
        self.pass_started_at.is_some() && self.pass_finished_at.is_none()
    }
}

const JOB_COLUMNS: &str = "name, cursor, pass_started_at, pass_finished_at, lease_owner, lease_until, checked, healed, lost";

fn job_from_row(r: &AnyRow) -> Result<Job> {
    Ok(Job {
        name: r.try_get("name")?,
        cursor: r.try_get("cursor")?,
        pass_started_at: r.try_get("pass_started_at")?,
        pass_finished_at: r.try_get("pass_finished_at")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_until: r.try_get("lease_until")?,
        checked: r.try_get("checked")?,
        healed: r.try_get("healed")?,
        lost: r.try_get("lost")?,
    })
}

/// The job's row as it stands, if it was ever run.
pub async fn find_job(db: &Db, name: &str) -> Result<Option<Job>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE name = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(job_from_row)
        .transpose()
}

/// Takes (or keeps) the job's lease for `owner` until `lease_until`, if nobody else
/// holds it at `now`. Returns the job as it stands, or `None` if another holds it.
pub async fn take_job(
    db: &Db,
    name: &str,
    owner: &str,
    now: i64,
    lease_until: i64,
) -> Result<Option<Job>> {
    sqlx::query("INSERT INTO jobs (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&db.pool)
        .await?;
    let sql = format!(
        "UPDATE jobs SET lease_owner = $2, lease_until = $3 \
         WHERE name = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < $4) \
         RETURNING {JOB_COLUMNS}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .fetch_optional(&db.pool)
        .await?
        .as_ref()
        .map(job_from_row)
        .transpose()
}

/// Gives the lease back, so that the next holder need not wait for it to lapse.
pub async fn release_job(db: &Db, name: &str, owner: &str) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE name = $1 AND lease_owner = $2",
    )
    .bind(name)
    .bind(owner)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Extends `owner`'s lease on the job while a long check runs.
pub async fn renew_job(db: &Db, name: &str, owner: &str, lease_until: i64) -> Result<()> {
    sqlx::query("UPDATE jobs SET lease_until = $3 WHERE name = $1 AND lease_owner = $2")
        .bind(name)
        .bind(owner)
        .bind(lease_until)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Live objects with IDs up to `cursor`: how far a pass that stands there has come.
pub async fn count_objects_upto(db: &Db, cursor: i64) -> Result<i64> {
    Ok(
        sqlx::query(
            "SELECT COUNT(*) AS objects FROM objects WHERE id <= $1 AND deleted_at IS NULL",
        )
        .bind(cursor)
        .fetch_one(&db.pool)
        .await?
        .try_get("objects")?,
    )
}

/// Starts a new pass from the first object, its counts at zero. False if `owner`
/// no longer holds the job.
pub async fn start_pass(db: &Db, name: &str, owner: &str, now: i64) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE jobs SET cursor = 0, pass_started_at = $3, pass_finished_at = NULL, checked = 0, healed = 0, lost = 0 \
         WHERE name = $1 AND lease_owner = $2",
    )
    .bind(name)
    .bind(owner)
    .bind(now)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// What a stretch of a pass found, added to the pass's counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub cursor: i64,
    pub checked: i64,
    pub healed: i64,
    pub lost: i64,
}

/// Moves the pass on to `progress.cursor`, adds its counts, renews the lease, and
/// with `finished_at` ends the pass. False if `owner` no longer holds the job: the
/// stretch's results are then its new holder's to find again.
pub async fn save_progress(
    db: &Db,
    name: &str,
    owner: &str,
    progress: Progress,
    lease_until: i64,
    finished_at: Option<i64>,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE jobs SET cursor = $3, checked = checked + $4, healed = healed + $5, lost = lost + $6, \
         lease_until = $7, pass_finished_at = $8 \
         WHERE name = $1 AND lease_owner = $2",
    )
    .bind(name)
    .bind(owner)
    .bind(progress.cursor)
    .bind(progress.checked)
    .bind(progress.healed)
    .bind(progress.lost)
    .bind(lease_until)
    .bind(finished_at)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// A live object with every copy row it has, for a scrub to check each tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectToScrub {
    pub id: i64,
    pub key: String,
    /// The bucket the report put it in.
    pub bucket_id: String,
    pub size: i64,
    pub md5: Option<String>,
    pub etag: Option<String>,
    pub lost_at: Option<i64>,
    pub copies: Vec<CopyRow>,
}

async fn with_copies(db: &Db, rows: Vec<AnyRow>) -> Result<Vec<ObjectToScrub>> {
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<std::result::Result<_, _>>()?;
    let mut copies: HashMap<i64, Vec<CopyRow>> = list_copies_of(db, &ids).await?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get("id")?;
            Ok(ObjectToScrub {
                id,
                key: r.try_get("object_key")?,
                bucket_id: r.try_get("bucket_id")?,
                size: r.try_get("size")?,
                md5: r.try_get("md5")?,
                etag: r.try_get("etag")?,
                lost_at: r.try_get("lost_at")?,
                copies: copies.remove(&id).unwrap_or_default(),
            })
        })
        .collect()
}

const OBJECT_COLUMNS: &str = "id, object_key, bucket_id, size, md5, etag, lost_at";

/// Up to `limit` live objects with IDs above `after`, in ID order, with their copies.
pub async fn objects_after(db: &Db, after: i64, limit: i64) -> Result<Vec<ObjectToScrub>> {
    let sql = format!(
        "SELECT {OBJECT_COLUMNS} FROM objects WHERE id > $1 AND deleted_at IS NULL ORDER BY id LIMIT $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    with_copies(db, rows).await
}

/// `n` live objects chosen at random, with their copies.
pub async fn sample_objects(db: &Db, n: i64) -> Result<Vec<ObjectToScrub>> {
    let sql = format!(
        "SELECT {OBJECT_COLUMNS} FROM objects WHERE deleted_at IS NULL ORDER BY RANDOM() LIMIT $1"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(n)
        .fetch_all(&db.pool)
        .await?;
    with_copies(db, rows).await
}

/// One object by ID, live or not, with its copies.
pub async fn object(db: &Db, id: i64) -> Result<Option<ObjectToScrub>> {
    let sql = format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE id = $1");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_all(&db.pool)
        .await?;
    Ok(with_copies(db, rows).await?.pop())
}

/// A tier found intact: the object's own bucket (`copy` false: its date is kept with
/// the object) or a done copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intact {
    pub object_id: i64,
    pub bucket_id: String,
    pub copy: bool,
}

/// Records that each of `tiers` was found intact at `now`, and that their objects
/// are not lost; one statement per 100 tiers of each kind.
pub async fn mark_verified(db: &Db, tiers: &[Intact], now: i64) -> Result<()> {
    let (copies, sources): (Vec<&Intact>, Vec<&Intact>) = tiers.iter().partition(|t| t.copy);
    let mut objects: Vec<i64> = tiers.iter().map(|t| t.object_id).collect();
    objects.sort_unstable();
    objects.dedup();
    let mut tx = db.begin_write().await?;
    for chunk in copies.chunks(100) {
        let rows = super::values_rows(2, chunk.len(), 2);
        // The VALUES columns are column1 and column2 on both engines. Only numbered
        // placeholders are spliced in; every value is bound.
        let sql = format!(
            "UPDATE object_copies SET verified_at = $1 FROM (VALUES {rows}) AS v \
             WHERE object_copies.object_id = v.column1 AND object_copies.bucket_id = v.column2 \
             AND object_copies.state = 'done'"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for t in chunk {
            query = query.bind(t.object_id).bind(t.bucket_id.as_str());
        }
        query.execute(&mut *tx).await?;
    }
    let source_ids: Vec<i64> = sources.iter().map(|t| t.object_id).collect();
    for (ids, set) in [
        (&source_ids, "verified_at = $1, lost_at = NULL"),
        (&objects, "lost_at = NULL"),
    ] {
        for chunk in ids.chunks(500) {
            let list = super::placeholders(2, chunk.len());
            let sql = format!("UPDATE objects SET {set} WHERE id IN ({list})");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Records that no tier of `object_id` holds its bytes any more. Returns whether it
/// was news (the object was not already known lost).
pub async fn mark_lost(db: &Db, object_id: i64, now: i64) -> Result<bool> {
    let n = sqlx::query("UPDATE objects SET lost_at = $2 WHERE id = $1 AND lost_at IS NULL")
        .bind(object_id)
        .bind(now)
        .execute(&db.pool)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Live objects known lost.
pub async fn count_lost(db: &Db) -> Result<i64> {
    Ok(sqlx::query(
        "SELECT COUNT(*) AS objects FROM objects WHERE lost_at IS NOT NULL AND deleted_at IS NULL",
    )
    .fetch_one(&db.pool)
    .await?
    .try_get("objects")?)
}

/// Live objects known lost: how many, and the IDs of the first `limit`.
pub async fn lost_objects(db: &Db, limit: i64) -> Result<(i64, Vec<i64>)> {
    let count = count_lost(db).await?;
    let ids = sqlx::query(
        "SELECT id FROM objects WHERE lost_at IS NOT NULL AND deleted_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect::<std::result::Result<_, _>>()?;
    Ok((count, ids))
}

//! `object_copies`: the replication queue. Claims are leases held by a worker of an
//! instance (`lease_owner` is `<instance>/<worker>`), so a dead instance's copies can
//! be returned to the queue at once, a stalled worker's copy is taken over once its
//! lease runs out, and no copy is worked on by two workers at once while its lease is
//! kept alive.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, Engine, Result};

/// Where a copy stands, as stored in `object_copies.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    /// Waiting for its next attempt.
    Pending,
    /// Leased to a worker, which is writing it.
    Copying,
    /// Written and verified against the recorded size and ETag.
    Done,
    /// Given up on; `museum replicate retry` queues it again.
    Failed,
}

impl CopyState {
    /// Every state, in the order above.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Copying, Self::Done, Self::Failed];

    /// The state as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Copying => "copying",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// A stored state. One this build does not know (written by a newer museum, or
    /// by hand) is an error, never read as some other state: a copy must not count
    /// as done, or as given up on, by a guess.
    pub fn from_stored(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| DbError::UnknownValue {
                column: "object_copies.state",
                value: s.to_owned(),
            })
    }
}

impl std::fmt::Display for CopyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a copy's last attempt failed, or why it was queued again: a stable code from
/// a small fixed set. The full error is kept for operators only.
// Stored in `error_code`, beside the full error chain in `last_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No tier holds the recorded bytes to copy from.
    SourceMissing,
    /// The tier copied from holds other bytes than the recorded ones.
    SourceChanged,
    /// The target refused the copy (credentials, permissions, a missing bucket, a
    /// storage class it does not take, a bucket no longer configured).
    TargetRefused,
    /// A bucket could not be reached, timed out, or failed on its side.
    Unavailable,
    /// The target holds other bytes than were sent.
    ChecksumMismatch,
    /// The process copying it stopped; the copy is retried.
    Interrupted,
    /// The tier was found missing or damaged and is being restored.
    Restoring,
    /// Anything else.
    Other,
}

impl ErrorCode {
    /// Every code, in the order above.
    pub const ALL: [Self; 8] = [
        Self::SourceMissing,
        Self::SourceChanged,
        Self::TargetRefused,
        Self::Unavailable,
        Self::ChecksumMismatch,
        Self::Interrupted,
        Self::Restoring,
        Self::Other,
    ];

    /// The code as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SourceMissing => "source_missing",
            Self::SourceChanged => "source_changed",
            Self::TargetRefused => "target_refused",
            Self::Unavailable => "unavailable",
            Self::ChecksumMismatch => "checksum_mismatch",
            Self::Interrupted => "interrupted",
            Self::Restoring => "restoring",
            Self::Other => "other",
        }
    }

    /// A stored code; one this build does not know reads as `Other`.
    pub fn from_stored(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or(Self::Other)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A claimed copy: which object goes to which bucket, and what the object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedCopy {
    pub object_id: i64,
    /// The target bucket ID.
    pub bucket_id: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// The multipart upload an earlier attempt started on the target and may have
    /// left open.
    pub upload_id: Option<String>,
}

/// What a copy needs to know about its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    pub object_id: i64,
    pub object_key: String,
    /// The bucket that holds the source copy.
    pub bucket_id: String,
    pub size: i64,
    /// Hex MD5 of the whole object, when known.
    pub md5: Option<String>,
    /// The source's ETag at report time.
    pub etag: Option<String>,
    /// When the report was recorded (milliseconds).
    pub created_at: i64,
}

/// One row of `object_copies`, for status and reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRow {
    pub object_id: i64,
    pub bucket_id: String,
    pub state: CopyState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_until: Option<i64>,
    pub lease_owner: Option<String>,
    pub copied_at: Option<i64>,
    pub verified_size: Option<i64>,
    pub verified_etag: Option<String>,
    pub last_error: Option<String>,
    /// When a scrub last found this copy intact (milliseconds).
    pub verified_at: Option<i64>,
    /// The reason code of `last_error` (absent on rows from before codes).
    pub error_code: Option<ErrorCode>,
}

/// Copy priorities, as stored: live copies are claimed before any background one.
pub mod priority {
    /// A copy a report queued, or a restore a read found it needed.
    pub const LIVE: i64 = 0;
    /// A copy queued by backfill, a scrub or a primary move.
    pub const BACKGROUND: i64 = 1;
}

/// Queues a pending copy of `object_id` to each of `targets` that has no row yet,
/// inside `tx`, at `priority`. Returns how many were queued.
pub(crate) async fn insert_copies<'a>(
    tx: &mut sqlx::AnyConnection,
    object_id: i64,
    targets: impl IntoIterator<Item = &'a String>,
    now: i64,
    priority: i64,
) -> Result<u64> {
    let mut queued = 0;
    for target in targets {
        queued += sqlx::query(
            "INSERT INTO object_copies (object_id, bucket_id, state, attempts, next_attempt_at, created_at, priority) \
             VALUES ($1, $2, 'pending', 0, $3, $3, $4) ON CONFLICT (object_id, bucket_id) DO NOTHING",
        )
        .bind(object_id)
        .bind(target)
        .bind(now)
        .bind(priority)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    Ok(queued)
}

fn claimed_from_row(r: &AnyRow) -> Result<ClaimedCopy> {
    Ok(ClaimedCopy {
        object_id: r.try_get("object_id")?,
        bucket_id: r.try_get("bucket_id")?,
        attempts: r.try_get("attempts")?,
        upload_id: r.try_get("upload_id")?,
    })
}

/// The due test for one `object_copies` row: pending and due, or copying with a lapsed
/// lease. A CASE, so that the planner looks an object's copies up by its key instead
/// of scanning the whole due index (an OR here made SQLite do that).
macro_rules! due_case {
    () => {
        "CASE WHEN state = 'pending' THEN next_attempt_at <= $3 WHEN state = 'copying' THEN lease_until < $3 ELSE false END"
    };
}

/// Copies whose lease lapsed (their worker died) come first, then pending live copies,
/// then pending background ones (backfill, scrub, a primary move), each kind in the
/// order it fell due; each kind is a range scan of its own index, so the cost of a
/// claim does not grow with the backlog, and no backlog of background copies delays
/// a live one.
const SQLITE_CLAIM: &str = concat!(
    "UPDATE object_copies SET state = 'copying', attempts = attempts + 1, lease_until = $1, lease_owner = $2 \
     WHERE object_id IN (SELECT object_id FROM ( \
       SELECT object_id, 0 AS kind, lease_until AS due FROM (SELECT c.object_id, c.lease_until FROM object_copies c \
         JOIN objects o ON o.id = c.object_id WHERE o.deleted_at IS NULL AND c.state = 'copying' AND c.lease_until < $3 \
         ORDER BY c.lease_until LIMIT $4) \
       UNION ALL \
       SELECT object_id, 1, next_attempt_at FROM (SELECT c.object_id, c.next_attempt_at FROM object_copies c \
         JOIN objects o ON o.id = c.object_id WHERE o.deleted_at IS NULL AND c.state = 'pending' AND c.priority = 0 \
         AND c.next_attempt_at <= $3 ORDER BY c.next_attempt_at LIMIT $4) \
       UNION ALL \
       SELECT object_id, 2, next_attempt_at FROM (SELECT c.object_id, c.next_attempt_at FROM object_copies c \
         JOIN objects o ON o.id = c.object_id WHERE o.deleted_at IS NULL AND c.state = 'pending' AND c.priority = 1 \
         AND c.next_attempt_at <= $3 ORDER BY c.next_attempt_at LIMIT $4) \
     ) GROUP BY object_id ORDER BY MIN(kind), MIN(due) LIMIT $4) AND ",
    due_case!(),
    " RETURNING object_id, bucket_id, attempts, upload_id"
);

/// As [`SQLITE_CLAIM`]; the objects are locked (`SKIP LOCKED`) rather than their
/// copies, so two claims never split one object's copies between them.
const POSTGRES_CLAIM: &str = concat!(
    "WITH lapsed AS (SELECT o.id AS object_id, 0 AS kind, c.lease_until AS due FROM object_copies c \
       JOIN objects o ON o.id = c.object_id WHERE o.deleted_at IS NULL AND c.state = 'copying' AND c.lease_until < $3 \
       ORDER BY c.lease_until LIMIT $4 FOR NO KEY UPDATE OF o SKIP LOCKED), \
     live AS (SELECT o.id AS object_id, 1 AS kind, c.next_attempt_at AS due FROM object_copies c \
       JOIN objects o ON o.id = c.object_id WHERE o.deleted_at IS NULL AND c.state = 'pending' AND c.priority = 0 \
       AND c.next_attempt_at <= $3 ORDER BY c.next_attempt_at LIMIT $4 FOR NO KEY UPDATE OF o SKIP LOCKED), \
     background AS (SELECT o.id AS object_id, 2 AS kind, c.next_attempt_at AS due FROM object_copies c \
       JOIN objects o ON o.id = c.object_id WHERE o.deleted_at IS NULL AND c.state = 'pending' AND c.priority = 1 \
       AND c.next_attempt_at <= $3 ORDER BY c.next_attempt_at LIMIT $4 FOR NO KEY UPDATE OF o SKIP LOCKED), \
     picked AS (SELECT object_id FROM (SELECT * FROM lapsed UNION ALL SELECT * FROM live UNION ALL SELECT * FROM background) x \
       GROUP BY object_id ORDER BY MIN(kind), MIN(due) LIMIT $4) \
     UPDATE object_copies SET state = 'copying', attempts = attempts + 1, lease_until = $1, lease_owner = $2 \
     FROM picked WHERE object_copies.object_id = picked.object_id AND ",
    due_case!(),
    " RETURNING object_copies.object_id, object_copies.bucket_id, object_copies.attempts, object_copies.upload_id"
);

/// Claims for `owner`, until `lease_until`, every due copy of up to `objects`
/// objects, in one statement: all of an object's due copies go to one claim, so one
/// read of its source can feed them all. Copies of deleted objects are never
/// claimed. The copies come back grouped by object, in no particular order of
/// objects.
pub async fn claim_batch(
    db: &Db,
    owner: &str,
    now: i64,
    lease_until: i64,
    objects: u32,
) -> Result<Vec<ClaimedCopy>> {
    let sql = match db.engine {
        Engine::Sqlite => SQLITE_CLAIM,
        Engine::Postgres => POSTGRES_CLAIM,
    };
    let mut claimed = sqlx::query(sql)
        .bind(lease_until)
        .bind(owner)
        .bind(now)
        .bind(i64::from(objects.max(1)))
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(claimed_from_row)
        .collect::<Result<Vec<_>>>()?;
    claimed.sort_by(|a, b| (a.object_id, &a.bucket_id).cmp(&(b.object_id, &b.bucket_id)));
    Ok(claimed)
}

/// The objects behind claimed copies, by id; one query for a whole batch. A deleted
/// or vanished object is missing from the map.
pub async fn find_sources(
    db: &Db,
    object_ids: &[i64],
) -> Result<std::collections::HashMap<i64, CopySource>> {
    let mut sources = std::collections::HashMap::with_capacity(object_ids.len());
    // Within every engine's limit on bound parameters.
    for ids in object_ids.chunks(500) {
        let list = super::placeholders(1, ids.len());
        let sql = format!(
            "SELECT id, object_key, bucket_id, size, md5, etag, created_at FROM objects WHERE id IN ({list})"
        );
        // Only numbered placeholders are spliced in; every id is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(*id);
        }
        for r in query.fetch_all(&db.pool).await? {
            let source = CopySource {
                object_id: r.try_get("id")?,
                object_key: r.try_get("object_key")?,
                bucket_id: r.try_get("bucket_id")?,
                size: r.try_get("size")?,
                md5: r.try_get("md5")?,
                etag: r.try_get("etag")?,
                created_at: r.try_get("created_at")?,
            };
            sources.insert(source.object_id, source);
        }
    }
    Ok(sources)
}

/// Extends the leases `owner` holds on `object_id`'s copies. Returns how many it kept.
pub async fn renew_leases(db: &Db, object_id: i64, owner: &str, lease_until: i64) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE object_copies SET lease_until = $1 WHERE object_id = $2 AND lease_owner = $3 AND state = 'copying'",
    )
    .bind(lease_until)
    .bind(object_id)
    .bind(owner)
    .execute(&db.pool)
    .await?
    .rows_affected())
}

/// A verified copy, to be marked done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneMark {
    pub object_id: i64,
    pub bucket_id: String,
    pub size: i64,
    pub etag: Option<String>,
}

/// A copy a done mark found held, as it was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoneCopy {
    /// When the copy was last queued (milliseconds): by the report, for a live copy.
    pub queued_at: i64,
    pub priority: i64,
    /// When it was reported late, if it was.
    pub late_at: Option<i64>,
}

/// Marks verified copies done, in one statement per 100 marks (one commit, and on
/// SQLite one sync, for a whole batch of a typical size). For each mark, the copy if
/// `owner` still held it: one it lost meanwhile is left to its new holder.
pub async fn mark_done_many(
    db: &Db,
    owner: &str,
    now: i64,
    marks: &[DoneMark],
) -> Result<Vec<Option<DoneCopy>>> {
    let mut held = std::collections::HashMap::with_capacity(marks.len());
    // 4 values a mark: within every engine's limit on bound parameters.
    for chunk in marks.chunks(100) {
        // The VALUES columns are column1…column4 on both engines.
        let rows = super::values_rows(3, chunk.len(), 4);
        let sql = format!(
            "UPDATE object_copies SET state = 'done', copied_at = $1, verified_at = $1, verified_size = v.column3, \
             verified_etag = v.column4, last_error = NULL, error_code = NULL, lease_until = NULL, lease_owner = NULL, upload_id = NULL \
             FROM (VALUES {rows}) AS v \
             WHERE object_copies.object_id = v.column1 AND object_copies.bucket_id = v.column2 \
             AND object_copies.lease_owner = $2 AND object_copies.state = 'copying' \
             RETURNING object_copies.object_id, object_copies.bucket_id, object_copies.created_at, \
             object_copies.priority, object_copies.late_at"
        );
        // Only numbered placeholders are spliced in; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(owner);
        for m in chunk {
            query = query
                .bind(m.object_id)
                .bind(m.bucket_id.as_str())
                .bind(m.size)
                .bind(m.etag.as_deref());
        }
        for r in query.fetch_all(&db.pool).await? {
            held.insert(
                (
                    r.try_get::<i64, _>("object_id")?,
                    r.try_get::<String, _>("bucket_id")?,
                ),
                DoneCopy {
                    queued_at: r.try_get("created_at")?,
                    priority: r.try_get("priority")?,
                    late_at: r.try_get("late_at")?,
                },
            );
        }
    }
    Ok(marks
        .iter()
        .map(|m| held.get(&(m.object_id, m.bucket_id.clone())).copied())
        .collect())
}

/// A live copy found unverified past its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateCopy {
    pub object_id: i64,
    pub bucket_id: String,
    pub queued_at: i64,
    pub attempts: i64,
}

/// Marks up to `limit` live copies of live objects that are still waiting or in
/// progress and were queued before `cutoff` as reported late at `now`, and returns
/// them: each is returned once, by whichever process marks it. A deleted object's
/// copies are never late.
pub async fn flag_late(db: &Db, cutoff: i64, now: i64, limit: i64) -> Result<Vec<LateCopy>> {
    sqlx::query(
        "UPDATE object_copies SET late_at = $1 WHERE (object_id, bucket_id) IN ( \
         SELECT object_id, bucket_id FROM object_copies \
         WHERE state IN ('pending', 'copying') AND priority = $2 AND late_at IS NULL AND created_at < $3 \
         AND EXISTS (SELECT 1 FROM objects o WHERE o.id = object_copies.object_id AND o.deleted_at IS NULL) \
         LIMIT $4) AND late_at IS NULL \
         RETURNING object_id, bucket_id, created_at, attempts",
    )
    .bind(now)
    .bind(priority::LIVE)
    .bind(cutoff)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(LateCopy {
            object_id: r.try_get("object_id")?,
            bucket_id: r.try_get("bucket_id")?,
            queued_at: r.try_get("created_at")?,
            attempts: r.try_get("attempts")?,
        })
    })
    .collect()
}

/// Records the multipart upload `owner` started on the target for its attempt (or
/// that none is open, with `None`), before any part is sent, so that the next
/// attempt can abort it if this one dies. Returns false if `owner` no longer holds
/// the copy.
pub async fn record_upload(
    db: &Db,
    object_id: i64,
    bucket_id: &str,
    owner: &str,
    upload_id: Option<&str>,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE object_copies SET upload_id = $1 \
         WHERE object_id = $2 AND bucket_id = $3 AND lease_owner = $4 AND state = 'copying'",
    )
    .bind(upload_id)
    .bind(object_id)
    .bind(bucket_id)
    .bind(owner)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Puts a copy back in the queue for `next_attempt_at`, recording why it failed:
/// its reason `code` and the full `error`. A `next_attempt_at` of `None` marks it
/// `failed`: an error that will not heal.
pub async fn mark_attempt_failed(
    db: &Db,
    object_id: i64,
    bucket_id: &str,
    owner: &str,
    next_attempt_at: Option<i64>,
    code: ErrorCode,
    error: &str,
) -> Result<bool> {
    let (state, next) = match next_attempt_at {
        Some(at) => (CopyState::Pending, at),
        None => (CopyState::Failed, 0),
    };
    let n = sqlx::query(
        "UPDATE object_copies SET state = $1, next_attempt_at = CASE WHEN $1 = 'failed' THEN next_attempt_at ELSE $2 END, \
         last_error = $3, error_code = $7, lease_until = NULL, lease_owner = NULL \
         WHERE object_id = $4 AND bucket_id = $5 AND lease_owner = $6 AND state = 'copying'",
    )
    .bind(state.as_str())
    .bind(next)
    .bind(truncate_error(error))
    .bind(object_id)
    .bind(bucket_id)
    .bind(owner)
    .bind(code.as_str())
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

fn truncate_error(error: &str) -> String {
    const MAX: usize = 1000;
    if error.len() <= MAX {
        return error.to_owned();
    }
    let cut = (0..=MAX)
        .rev()
        .find(|i| error.is_char_boundary(*i))
        .unwrap_or(0);
    error[..cut].to_owned()
}

/// Returns every copy whose lease belongs to an owner starting with `owner_prefix`
/// to the queue, due at once, without counting the interrupted attempt (a clean
/// shutdown interrupted it, not the copy).
pub async fn release_leases(db: &Db, owner_prefix: &str, now: i64) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE object_copies SET state = 'pending', next_attempt_at = $1, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
         lease_until = NULL, lease_owner = NULL \
         WHERE state = 'copying' AND substr(lease_owner, 1, length($2)) = $2",
    )
    .bind(now)
    .bind(owner_prefix)
    .execute(&db.pool)
    .await?
    .rows_affected())
}

/// Returns every copy whose lease belongs to an owner starting with `owner_prefix`
/// (the workers of an instance that died) to the queue, due at once, with `reason`
/// as its error. The interrupted attempt counts, so a copy that keeps killing its
/// process backs off.
pub async fn reclaim_leases(db: &Db, owner_prefix: &str, now: i64, reason: &str) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE object_copies SET state = 'pending', next_attempt_at = $1, last_error = $3, error_code = $4, \
         lease_until = NULL, lease_owner = NULL \
         WHERE state = 'copying' AND substr(lease_owner, 1, length($2)) = $2",
    )
    .bind(now)
    .bind(owner_prefix)
    .bind(reason)
    .bind(ErrorCode::Interrupted.as_str())
    .execute(&db.pool)
    .await?
    .rows_affected())
}

/// Records the MD5 computed while copying, for objects reported without one.
/// Returns false if the object already had one.
pub async fn record_md5(db: &Db, object_id: i64, md5: &str) -> Result<bool> {
    let n = sqlx::query("UPDATE objects SET md5 = $1 WHERE id = $2 AND md5 IS NULL")
        .bind(md5)
        .bind(object_id)
        .execute(&db.pool)
        .await?
        .rows_affected();
    Ok(n == 1)
}

fn copy_from_row(r: &AnyRow) -> Result<CopyRow> {
    Ok(CopyRow {
        object_id: r.try_get("object_id")?,
        bucket_id: r.try_get("bucket_id")?,
        state: CopyState::from_stored(&r.try_get::<String, _>("state")?)?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        lease_until: r.try_get("lease_until")?,
        lease_owner: r.try_get("lease_owner")?,
        copied_at: r.try_get("copied_at")?,
        verified_size: r.try_get("verified_size")?,
        verified_etag: r.try_get("verified_etag")?,
        last_error: r.try_get("last_error")?,
        verified_at: r.try_get("verified_at")?,
        error_code: r
            .try_get::<Option<String>, _>("error_code")?
            .map(|c| ErrorCode::from_stored(&c)),
    })
}

macro_rules! copy_columns {
    () => {
        "object_id, bucket_id, state, attempts, next_attempt_at, lease_until, lease_owner, copied_at, verified_size, verified_etag, last_error, verified_at, error_code"
    };
}

/// Every copy row of `object_id`.
pub async fn list_copies(db: &Db, object_id: i64) -> Result<Vec<CopyRow>> {
    sqlx::query(concat!(
        "SELECT ",
        copy_columns!(),
        " FROM object_copies WHERE object_id = $1 ORDER BY bucket_id"
    ))
    .bind(object_id)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(copy_from_row)
    .collect()
}

/// Every copy row of each of `object_ids`, by object; one query for a whole batch.
pub async fn list_copies_of(
    db: &Db,
    object_ids: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<CopyRow>>> {
    let mut copies: std::collections::HashMap<i64, Vec<CopyRow>> =
        std::collections::HashMap::with_capacity(object_ids.len());
    for ids in object_ids.chunks(500) {
        let list = super::placeholders(1, ids.len());
        let sql = format!(
            "SELECT {} FROM object_copies WHERE object_id IN ({list}) ORDER BY object_id, bucket_id",
            copy_columns!()
        );
        // Only numbered placeholders are spliced in; every id is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(*id);
        }
        for r in query.fetch_all(&db.pool).await? {
            let row = copy_from_row(&r)?;
            copies.entry(row.object_id).or_default().push(row);
        }
    }
    Ok(copies)
}

/// Copies not yet done (pending or in progress), per target bucket.
pub async fn pending_counts(db: &Db) -> Result<Vec<(String, i64)>> {
    sqlx::query(
        "SELECT bucket_id, COUNT(*) AS copies FROM object_copies WHERE state IN ('pending', 'copying') GROUP BY bucket_id",
    )
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("bucket_id")?, r.try_get("copies")?)))
    .collect()
}

/// Copy counts per (target bucket, state).
pub async fn state_counts(db: &Db) -> Result<Vec<(String, CopyState, i64)>> {
    sqlx::query("SELECT bucket_id, state, COUNT(*) AS copies FROM object_copies GROUP BY bucket_id, state ORDER BY bucket_id, state")
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| {
            let state = CopyState::from_stored(&r.try_get::<String, _>("state")?)?;
            Ok((r.try_get("bucket_id")?, state, r.try_get("copies")?))
        })
        .collect()
}

/// When the oldest copy still waiting was queued (milliseconds), if any waits.
pub async fn oldest_waiting(db: &Db) -> Result<Option<i64>> {
    let row = sqlx::query(
        "SELECT MIN(created_at) AS oldest FROM object_copies WHERE state IN ('pending', 'copying')",
    )
    .fetch_one(&db.pool)
    .await?;
    Ok(row.try_get::<Option<i64>, _>("oldest")?)
}

/// The `limit` most recently scheduled copies that carry an error.
pub async fn recent_errors(db: &Db, limit: i64) -> Result<Vec<CopyRow>> {
    sqlx::query(concat!(
        "SELECT ",
        copy_columns!(),
        " FROM object_copies WHERE last_error IS NOT NULL ORDER BY next_attempt_at DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(copy_from_row)
    .collect()
}

/// Live (not deleted) objects, for progress totals.
pub async fn count_live_objects(db: &Db) -> Result<i64> {
    let row = sqlx::query("SELECT COUNT(*) AS objects FROM objects WHERE deleted_at IS NULL")
        .fetch_one(&db.pool)
        .await?;
    Ok(row.try_get("objects")?)
}

/// Queues the copies missing for up to `limit` live objects with IDs above
/// `after_id`: one per bucket in `buckets` other than the object's own. Returns the
/// last object ID seen (to resume from) and how many copies were queued. Idempotent.
pub async fn backfill_batch(
    db: &Db,
    after_id: i64,
    limit: i64,
    buckets: &[String],
    now: i64,
) -> Result<(Option<i64>, u64, usize)> {
    let mut tx = db.begin_write().await?;
    let rows = sqlx::query("SELECT id, bucket_id FROM objects WHERE id > $1 AND deleted_at IS NULL ORDER BY id LIMIT $2")
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    let mut last = None;
    let mut queued = 0;
    for row in &rows {
        let id: i64 = row.try_get("id")?;
        let source: String = row.try_get("bucket_id")?;
        queued += insert_copies(
            &mut tx,
            id,
            buckets.iter().filter(|b| **b != source),
            now,
            priority::BACKGROUND,
        )
        .await?;
        last = Some(id);
    }
    tx.commit().await?;
    Ok((last, queued, rows.len()))
}

/// Puts a done copy of a live object back in the queue, due now, with the reason.
pub async fn requeue_copy(
    db: &Db,
    object_id: i64,
    bucket_id: &str,
    reason: &str,
    now: i64,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE object_copies SET state = 'pending', next_attempt_at = $1, last_error = $2, error_code = 'restoring' \
         WHERE object_id = $3 AND bucket_id = $4 AND state = 'done' \
         AND EXISTS (SELECT 1 FROM objects WHERE id = $3 AND deleted_at IS NULL)",
    )
    .bind(now)
    .bind(reason)
    .bind(object_id)
    .bind(bucket_id)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Puts every `failed` copy back in the queue, due now. Returns how many.
pub async fn requeue_failed(db: &Db, now: i64) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE object_copies SET state = 'pending', next_attempt_at = $1 WHERE state = 'failed'",
    )
    .bind(now)
    .execute(&db.pool)
    .await?
    .rows_affected())
}

/// Queues a pending copy into `to`, due at `now`, at `priority`, of every live
/// object whose source is `from` and that has no row for `to` yet. Returns how many
/// it queued. One scan of `from`'s objects.
pub async fn queue_copies_of_bucket(
    db: &Db,
    from: &str,
    to: &str,
    now: i64,
    priority: i64,
) -> Result<u64> {
    Ok(sqlx::query(
        "INSERT INTO object_copies (object_id, bucket_id, state, attempts, next_attempt_at, created_at, priority) \
         SELECT o.id, $2, 'pending', 0, $3, $3, $4 FROM objects o \
         WHERE o.bucket_id = $1 AND o.deleted_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM object_copies c WHERE c.object_id = o.id AND c.bucket_id = $2)",
    )
    .bind(from)
    .bind(to)
    .bind(now)
    .bind(priority)
    .execute(&db.pool)
    .await?
    .rows_affected())
}

/// Puts the done copy of `object_id` in `bucket_id` back in the queue, due at
/// `now`, its lease cleared and its error left as it was; a copy not done is left
/// as it is.
pub async fn reopen_done_copy(db: &Db, object_id: i64, bucket_id: &str, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE object_copies SET state = 'pending', next_attempt_at = $3, lease_owner = NULL \
         WHERE object_id = $1 AND bucket_id = $2 AND state = 'done'",
    )
    .bind(object_id)
    .bind(bucket_id)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Records inside `tx` that `bucket_id` holds object `object_id` as its report
/// verified it: a done copy row with the object's size, ETag and dates. A row that
/// exists is left as it is.
pub async fn insert_reported_copy(
    tx: &mut sqlx::AnyConnection,
    object_id: i64,
    bucket_id: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO object_copies (object_id, bucket_id, state, attempts, next_attempt_at, created_at, \
         copied_at, verified_size, verified_etag, verified_at, priority) \
         SELECT id, $2, 'done', 0, created_at, created_at, created_at, size, etag, verified_at, 0 \
         FROM objects WHERE id = $1 \
         ON CONFLICT (object_id, bucket_id) DO NOTHING",
    )
    .bind(object_id)
    .bind(bucket_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Deletes inside `tx` the copy row of `object_id` in `bucket_id`, if there is one.
pub async fn delete_copy(
    tx: &mut sqlx::AnyConnection,
    object_id: i64,
    bucket_id: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM object_copies WHERE object_id = $1 AND bucket_id = $2")
        .bind(object_id)
        .bind(bucket_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A bucket that holds a verified copy of an object, with the size and ETag it was
/// verified with: every read of it must find them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTier {
    pub bucket_id: String,
    pub size: i64,
    pub etag: Option<String>,
}

/// The buckets holding a verified copy of an object that its report recorded in
/// `source_bucket` with `size` and `etag`: that bucket first, as the report found it
/// (or as a restore left it, once one is done), then every other bucket whose copy
/// is done.
pub fn verified_tiers(
    source_bucket: &str,
    size: i64,
    etag: Option<&str>,
    copies: &[CopyRow],
) -> Vec<VerifiedTier> {
    let done = |c: &&CopyRow| c.state == CopyState::Done;
    let restored = copies
        .iter()
        .filter(done)
        .find(|c| c.bucket_id == source_bucket);
    let source = VerifiedTier {
        bucket_id: source_bucket.to_owned(),
        size: restored.and_then(|c| c.verified_size).unwrap_or(size),
        etag: match restored {
            Some(c) => c.verified_etag.clone(),
            None => etag.map(str::to_owned),
        },
    };
    std::iter::once(source)
        .chain(
            copies
                .iter()
                .filter(done)
                .filter(|c| c.bucket_id != source_bucket)
                .map(|c| VerifiedTier {
                    bucket_id: c.bucket_id.clone(),
                    size: c.verified_size.unwrap_or(size),
                    etag: c.verified_etag.clone(),
                }),
        )
        .collect()
}

/// The restore query of [`queue_restore`]; `$lock` locks the object's row on
/// PostgreSQL, so that a delete or purge waits for the restore's commit (and then
/// clears the copy it queued) or the restore sees the object gone. On SQLite one
/// writer at a time does the same.
macro_rules! queue_restore_sql {
    ($lock:literal) => {
        concat!(
            "INSERT INTO object_copies (object_id, bucket_id, state, attempts, next_attempt_at, last_error, error_code, created_at, priority) \
             SELECT $1, $2, 'pending', 0, $3, $4, 'restoring', $3, $5 \
             WHERE EXISTS (SELECT 1 FROM objects WHERE id = $1 AND deleted_at IS NULL",
            $lock,
            ") ON CONFLICT (object_id, bucket_id) DO UPDATE SET state = 'pending', next_attempt_at = $3, last_error = $4, error_code = 'restoring', priority = $5, \
             created_at = $3, late_at = NULL \
             WHERE object_copies.state IN ('done', 'failed')"
        )
    };
}

/// Queues a copy of `object_id` into `bucket_id`, due now at `priority`, to replace
/// what that bucket holds from a verified tier: a new row when the bucket is the
/// object's own (its source, which has no copy row until a first restore), or a done
/// or failed row put back, queued anew (its lag and lateness count from now). A copy
/// already waiting or in progress is left as it is, and so is an object deleted or
/// purged since its caller read it: nothing is queued for it, whoever asks.
/// Returns whether a copy was queued.
pub async fn queue_restore(
    db: &Db,
    object_id: i64,
    bucket_id: &str,
    reason: &str,
    now: i64,
    priority: i64,
) -> Result<bool> {
    let sql = match db.engine {
        Engine::Sqlite => queue_restore_sql!(""),
        Engine::Postgres => queue_restore_sql!(" FOR SHARE"),
    };
    let queued = sqlx::query(sql)
        .bind(object_id)
        .bind(bucket_id)
        .bind(now)
        .bind(truncate_error(reason))
        .bind(priority)
        .execute(&db.pool)
        .await;
    match queued {
        Ok(done) => Ok(done.rows_affected() == 1),
        // Purged between the check and the insert: nothing to restore.
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// One verified tier of a live object, for `replicate verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierOfObject {
    pub object_id: i64,
    pub object_key: String,
    pub tier: VerifiedTier,
}

/// Every verified tier of live objects, as [`verified_tiers`] defines them: the
/// source bucket of each object (checked against its report until a restore is
/// done there), and each done copy, each arm narrowed by its own condition.
macro_rules! verified_tiers_sql {
    ($after_source:literal, $after_copy:literal) => {
        concat!(
            "SELECT o.id, o.object_key, o.bucket_id, o.size, o.etag FROM objects o \
             WHERE o.deleted_at IS NULL ",
            $after_source,
            " AND NOT EXISTS (SELECT 1 FROM object_copies r WHERE r.object_id = o.id AND r.bucket_id = o.bucket_id AND r.state = 'done') \
             UNION ALL \
             SELECT c.object_id, o.object_key, c.bucket_id, COALESCE(c.verified_size, o.size), c.verified_etag \
             FROM object_copies c JOIN objects o ON o.id = c.object_id \
             WHERE c.state = 'done' AND o.deleted_at IS NULL ",
            $after_copy
        )
    };
}

fn tier_from_row(r: &AnyRow) -> Result<TierOfObject> {
    Ok(TierOfObject {
        object_id: r.try_get("id")?,
        object_key: r.try_get("object_key")?,
        tier: VerifiedTier {
            bucket_id: r.try_get("bucket_id")?,
            size: r.try_get("size")?,
            etag: r.try_get("etag")?,
        },
    })
}

/// Up to `limit` verified tiers after (`after_object`, `after_bucket`), in that order.
pub async fn verified_tiers_after(
    db: &Db,
    after_object: i64,
    after_bucket: &str,
    limit: i64,
) -> Result<Vec<TierOfObject>> {
    sqlx::query(concat!(
        "SELECT * FROM (",
        verified_tiers_sql!(
            "AND (o.id > $1 OR (o.id = $1 AND o.bucket_id > $2))",
            "AND (c.object_id > $1 OR (c.object_id = $1 AND c.bucket_id > $2))"
        ),
        ") t ORDER BY 1, 3 LIMIT $3"
    ))
    .bind(after_object)
    .bind(after_bucket)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(tier_from_row)
    .collect()
}

/// `n` verified tiers chosen at random.
pub async fn sample_verified_tiers(db: &Db, n: i64) -> Result<Vec<TierOfObject>> {
    sqlx::query(concat!(
        "SELECT * FROM (",
        verified_tiers_sql!("", ""),
        ") t ORDER BY RANDOM() LIMIT $1"
    ))
    .bind(n)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(tier_from_row)
    .collect()
}

/// Verified tiers of live objects in total.
pub async fn count_verified_tiers(db: &Db) -> Result<i64> {
    let row = sqlx::query(concat!(
        "SELECT COUNT(*) AS tiers FROM (",
        verified_tiers_sql!("", ""),
        ") t"
    ))
    .fetch_one(&db.pool)
    .await?;
    Ok(row.try_get("tiers")?)
}

//! `temp_objects` (issued, unreported keys), `objects` (verified, reported ones) and
//! `files` (a client's record over a file object and its thumbnail).

use std::collections::HashSet;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, Result, users};

/// A key handed out for upload, awaiting its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempObject {
    pub object_key: String,
    pub user_id: i64,
    pub bucket_id: String,
    /// Size the client declared when asking for the URL, if it did.
    pub declared_size: Option<i64>,
    /// Base64 MD5 the client declared, if any (single-part uploads).
    pub declared_md5: Option<String>,
    /// The ETag the finished object must carry, when known from declared MD5s.
    pub expected_etag: Option<String>,
    /// The multipart upload ID, for multipart keys.
    pub upload_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A verified object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub id: i64,
    pub object_key: String,
    pub user_id: i64,
    pub bucket_id: String,
    pub size: i64,
    pub md5: Option<String>,
    pub etag: Option<String>,
    pub created_at: i64,
    /// When `DELETE /files/{id}` marked it, if it did.
    pub deleted_at: Option<i64>,
}

/// What a verified report records.
#[derive(Debug, Clone)]
pub struct NewObject {
    pub object_key: String,
    pub user_id: i64,
    pub bucket_id: String,
    pub size: i64,
    pub md5: Option<String>,
    pub etag: Option<String>,
    pub created_at: i64,
    /// Buckets a copy is queued for, in the same transaction.
    pub copy_targets: Vec<String>,
}

/// A client's file record: the file object (whose id it shares), its thumbnail
/// object, and the opaque fields of the client's report.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FileRecord {
    pub id: i64,
    pub owner_id: i64,
    pub thumbnail_id: Option<i64>,
    /// The client's opaque fields, as JSON text.
    pub attributes: String,
    /// When the record was made, in microseconds since the epoch.
    pub updation_time: i64,
}

/// What a report records about the file beyond its objects.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// The client's opaque fields, as JSON text.
    pub attributes: String,
    /// Microseconds since the epoch.
    pub updation_time: i64,
}

/// Outcome of committing one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Newly recorded.
    New(StoredObject),
    /// Already recorded before this call (by an earlier or concurrent report).
    Existing(StoredObject),
    /// Neither issued nor recorded any more: expired and cleaned up.
    Gone(String),
}

/// Outcome of committing one report; `R` is the quota rule's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCommit<R> {
    /// Each object's outcome, and the file record (none when a key is gone, and then
    /// nothing was recorded).
    Recorded {
        objects: Vec<Committed>,
        record: Option<FileRecord>,
    },
    /// The user's quota refused the new bytes; nothing was recorded.
    OverQuota(R),
}

/// The bytes `out` records anew, per user.
fn new_bytes(out: &[Committed]) -> Vec<(i64, i64)> {
    let mut per_user: Vec<(i64, i64)> = Vec::new();
    for c in out {
        if let Committed::New(o) = c {
            match per_user.iter_mut().find(|(u, _)| *u == o.user_id) {
                Some((_, n)) => *n = n.saturating_add(o.size),
                None => per_user.push((o.user_id, o.size)),
            }
        }
    }
    per_user
}

macro_rules! temp_columns {
    () => {
        "object_key, user_id, bucket_id, declared_size, declared_md5, expected_etag, upload_id, created_at, expires_at"
    };
}
macro_rules! object_columns {
    () => {
        "id, object_key, user_id, bucket_id, size, md5, etag, created_at, deleted_at"
    };
}

fn temp_from_row(r: &AnyRow) -> Result<TempObject> {
    Ok(TempObject {
        object_key: r.try_get("object_key")?,
        user_id: r.try_get("user_id")?,
        bucket_id: r.try_get("bucket_id")?,
        declared_size: r.try_get("declared_size")?,
        declared_md5: r.try_get("declared_md5")?,
        expected_etag: r.try_get("expected_etag")?,
        upload_id: r.try_get("upload_id")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

fn object_from_row(r: &AnyRow) -> Result<StoredObject> {
    Ok(StoredObject {
        id: r.try_get("id")?,
        object_key: r.try_get("object_key")?,
        user_id: r.try_get("user_id")?,
        bucket_id: r.try_get("bucket_id")?,
        size: r.try_get("size")?,
        md5: r.try_get("md5")?,
        etag: r.try_get("etag")?,
        created_at: r.try_get("created_at")?,
        deleted_at: r.try_get("deleted_at")?,
    })
}

/// Records issued keys, all or none, in one multi-row statement per 100 rows.
pub async fn insert_temp_objects(db: &Db, rows: &[TempObject]) -> Result<()> {
    let mut conn = db.pool.acquire().await?;
    insert_temp_objects_on(&mut conn, rows).await
}

async fn insert_temp_objects_on(conn: &mut sqlx::AnyConnection, rows: &[TempObject]) -> Result<()> {
    if rows.len() <= TEMP_ROWS_PER_STATEMENT {
        // One statement is atomic on its own: no transaction round trips needed.
        return insert_temp_rows(conn, rows).await;
    }
    let mut tx = sqlx::Connection::begin(conn).await?;
    insert_temp_rows(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(())
}

/// Rows per multi-row INSERT (9 parameters each, well under every engine's limit).
const TEMP_ROWS_PER_STATEMENT: usize = 100;

async fn insert_temp_rows(tx: &mut sqlx::AnyConnection, rows: &[TempObject]) -> Result<()> {
    for chunk in rows.chunks(TEMP_ROWS_PER_STATEMENT) {
        let placeholders: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", super::placeholders(i * 9 + 1, 9)))
            .collect();
        // Only numbered placeholders are formatted in; every value is bound.
        let sql = format!(
            concat!("INSERT INTO temp_objects (", temp_columns!(), ") VALUES {}"),
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in chunk {
            query = query
                .bind(t.object_key.clone())
                .bind(t.user_id)
                .bind(t.bucket_id.clone())
                .bind(t.declared_size)
                .bind(t.declared_md5.clone())
                .bind(t.expected_etag.clone())
                .bind(t.upload_id.clone())
                .bind(t.created_at)
                .bind(t.expires_at);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

type Pending = (Vec<TempObject>, tokio::sync::oneshot::Sender<Result<()>>);

/// Records issued keys for many concurrent requests at once: each call waits for the
/// transaction that holds its rows, and one transaction carries every call queued
/// meanwhile (group commit), so the database sees one write instead of dozens.
#[derive(Debug, Clone)]
pub struct TempObjectWriter {
    queue: tokio::sync::mpsc::Sender<Pending>,
}

/// Most calls folded into one transaction.
const GROUP_MAX: usize = 128;

impl TempObjectWriter {
    /// Starts the writer task on `db`. It ends when every handle is dropped.
    pub fn spawn(db: Db) -> Self {
        let (queue, mut rx) = tokio::sync::mpsc::channel::<Pending>(4 * GROUP_MAX);
        tokio::spawn(async move {
            let mut own = OwnConnection(None);
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                // Let the handlers that are ready run first, so their rows join this group.
                tokio::task::yield_now().await;
                while group.len() < GROUP_MAX {
                    match rx.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let rows: Vec<TempObject> =
                    group.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
                let result = own.insert(&db, &rows).await;
                for (_, reply) in group {
                    let answer = match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(e.duplicate()),
                    };
                    let _ = reply.send(answer);
                }
            }
        });
        Self { queue }
    }

    /// Records `rows`, all or none, once the transaction carrying them commits.
    pub async fn insert(&self, rows: Vec<TempObject>) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let closed = || super::DbError::Unavailable {
            source: sqlx::Error::PoolClosed,
        };
        self.queue.send((rows, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// The writer's own connection on SQLite, outside the pool. A pooled one would be a
/// different connection from call to call, and each would find that another had
/// written since its last use and drop its page cache; one connection that does
/// every insert keeps its cache warm.
/// On PostgreSQL, where a held connection could be closed by the server while idle,
/// each group takes a pooled (and pinged) one.
struct OwnConnection(Option<sqlx::AnyConnection>);

impl OwnConnection {
    async fn insert(&mut self, db: &Db, rows: &[TempObject]) -> Result<()> {
        if db.engine() != super::Engine::Sqlite {
            return insert_temp_objects(db, rows).await;
        }
        let conn = match &mut self.0 {
            Some(conn) => conn,
            // Detached, it no longer counts against `db.max-connections`.
            None => self.0.insert(db.pool.acquire().await?.detach()),
        };
        let result = insert_temp_objects_on(conn, rows).await;
        if result.is_err() {
            // Start afresh next time rather than trust a connection that failed.
            self.0 = None;
        }
        result
    }
}

/// How many keys issued to `user` are unreported and not yet expired at `now`, and
/// the soonest of their expiries (ms since the epoch).
pub async fn count_unreported(db: &Db, user: i64, now: i64) -> Result<(i64, Option<i64>)> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS keys, MIN(expires_at) AS soonest FROM temp_objects WHERE user_id = $1 AND expires_at >= $2",
    )
    .bind(user)
    .bind(now)
    .fetch_one(&db.pool)
    .await?;
    Ok((row.try_get("keys")?, row.try_get("soonest")?))
}

/// The issued, unreported key `object_key`, if any.
pub async fn find_temp_object(db: &Db, object_key: &str) -> Result<Option<TempObject>> {
    sqlx::query(concat!(
        "SELECT ",
        temp_columns!(),
        " FROM temp_objects WHERE object_key = $1"
    ))
    .bind(object_key)
    .fetch_optional(&db.pool)
    .await?
    .as_ref()
    .map(temp_from_row)
    .transpose()
}

/// The recorded object `object_key`, deleted or not.
pub async fn find_object_by_key(db: &Db, object_key: &str) -> Result<Option<StoredObject>> {
    sqlx::query(concat!(
        "SELECT ",
        object_columns!(),
        " FROM objects WHERE object_key = $1"
    ))
    .bind(object_key)
    .fetch_optional(&db.pool)
    .await?
    .as_ref()
    .map(object_from_row)
    .transpose()
}

/// Records every object and removes its `temp_objects` row, in one transaction,
/// all or none. A key already recorded is returned as [`Committed::Existing`] and
/// left as it is, so a repeated report creates no second row. A key whose issued row
/// is gone or taken by the cleanup sweep (after expiry) is [`Committed::Gone`], and
/// then nothing is recorded: the sweep may have deleted its bytes.
pub async fn commit_objects(db: &Db, objects: &[NewObject]) -> Result<Vec<Committed>> {
    let mut tx = db.begin_write().await?;
    let out = insert_objects(&mut tx, objects).await?;
    if out.iter().any(|c| matches!(c, Committed::Gone(_))) {
        tx.rollback().await?;
    } else {
        for (user, bytes) in new_bytes(&out) {
            users::ensure_user(&mut tx, user).await?;
            users::add_usage(&mut tx, user, bytes).await?;
        }
        tx.commit().await?;
    }
    Ok(out)
}

/// [`commit_objects`] for one report, with the file record over its objects:
/// `objects[0]` is the file and `objects[1]`, if any, its thumbnail, all in one
/// transaction. When the file was already recorded, the record returned is the one
/// recorded first; when a key is gone, nothing is recorded and there is no record.
/// The new bytes are added to the user's usage in the same transaction, after
/// `allow(usage, own quota, new bytes)` has allowed them against the usage read
/// under the user's row lock; when it refuses, nothing is recorded. The rule is the
/// caller's: the database layer knows no quota.
pub async fn commit_file<R>(
    db: &Db,
    objects: &[NewObject],
    file: &NewFile,
    allow: impl Fn(i64, Option<i64>, i64) -> std::result::Result<(), R>,
) -> Result<FileCommit<R>> {
    let mut tx = db.begin_write().await?;
    // The user's row is locked first, so that one user's reports check and raise
    // the usage one at a time and cannot together pass the quota.
    let locked = match objects.first() {
        Some(o) => Some(users::lock_user(&mut tx, db.engine, o.user_id).await?),
        None => None,
    };
    let out = insert_objects(&mut tx, objects).await?;
    if out.iter().any(|c| matches!(c, Committed::Gone(_))) {
        tx.rollback().await?;
        return Ok(FileCommit::Recorded {
            objects: out,
            record: None,
        });
    }
    for (user, bytes) in new_bytes(&out) {
        if let Some(row) = locked.filter(|r| r.user_id == user)
            && let Err(refusal) = allow(row.usage_bytes, row.quota_bytes, bytes)
        {
            tx.rollback().await?;
            return Ok(FileCommit::OverQuota(refusal));
        }
        users::ensure_user(&mut tx, user).await?;
        users::add_usage(&mut tx, user, bytes).await?;
    }
    let stored = |c: &Committed| match c {
        Committed::New(o) | Committed::Existing(o) => Some((o.id, o.user_id)),
        Committed::Gone(_) => None,
    };
    let record = match out.first().and_then(stored) {
        Some((id, owner)) => {
            let thumbnail = out.get(1).and_then(stored).map(|(id, _)| id);
            Some(upsert_file(&mut tx, id, owner, thumbnail, file).await?)
        }
        None => None,
    };
    tx.commit().await?;
    Ok(FileCommit::Recorded {
        objects: out,
        record,
    })
}

/// Claims each object's issued key and records it, queueing its copies; see
/// [`commit_objects`] for the outcomes.
async fn insert_objects(
    tx: &mut sqlx::AnyConnection,
    objects: &[NewObject],
) -> Result<Vec<Committed>> {
    let mut out = Vec::with_capacity(objects.len());
    for o in objects {
        let claimed = sqlx::query(
            "DELETE FROM temp_objects WHERE object_key = $1 AND user_id = $2 AND swept_at IS NULL",
        )
        .bind(&o.object_key)
        .bind(o.user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let inserted = if claimed == 1 {
            sqlx::query(concat!("INSERT INTO objects (object_key, user_id, bucket_id, size, md5, etag, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (object_key) DO NOTHING RETURNING ", object_columns!()))
            .bind(&o.object_key)
            .bind(o.user_id)
            .bind(&o.bucket_id)
            .bind(o.size)
            .bind(&o.md5)
            .bind(&o.etag)
            .bind(o.created_at)
            .fetch_optional(&mut *tx)
            .await?
        } else {
            None
        };
        let committed = match inserted {
            Some(row) => {
                let object = object_from_row(&row)?;
                super::copies::insert_copies(
                    &mut *tx,
                    object.id,
                    &o.copy_targets,
                    o.created_at,
                    super::copies::priority::LIVE,
                )
                .await?;
                Committed::New(object)
            }
            None => {
                let existing = sqlx::query(concat!(
                    "SELECT ",
                    object_columns!(),
                    " FROM objects WHERE object_key = $1"
                ))
                .bind(&o.object_key)
                .fetch_optional(&mut *tx)
                .await?;
                match existing {
                    Some(row) => Committed::Existing(object_from_row(&row)?),
                    None => Committed::Gone(o.object_key.clone()),
                }
            }
        };
        out.push(committed);
    }
    Ok(out)
}

/// The file record of file object `id`, made from `file` if there is none yet (a file
/// recorded before file records existed). An existing record is returned unchanged.
pub async fn ensure_file(
    db: &Db,
    id: i64,
    owner_id: i64,
    thumbnail_id: Option<i64>,
    file: &NewFile,
) -> Result<FileRecord> {
    let mut tx = db.begin_write().await?;
    let record = upsert_file(&mut tx, id, owner_id, thumbnail_id, file).await?;
    tx.commit().await?;
    Ok(record)
}

async fn upsert_file(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    owner_id: i64,
    thumbnail_id: Option<i64>,
    file: &NewFile,
) -> Result<FileRecord> {
    sqlx::query(
        "INSERT INTO files (id, owner_id, thumbnail_id, attributes, updation_time) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(owner_id)
    .bind(thumbnail_id)
    .bind(&file.attributes)
    .bind(file.updation_time)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_as::<_, FileRecord>(
        "SELECT id, owner_id, thumbnail_id, attributes, updation_time FROM files WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?)
}

/// Marks an expired issued key as taken by the cleanup sweep at `now`, unless a report
/// recorded it first. Returns whether the key is the sweep's (now or from an earlier
/// sweep whose removal failed); only then may its bytes be deleted. From here on no
/// report can commit the key, and its row stays until [`forget_swept_temp_object`].
pub async fn mark_swept(db: &Db, object_key: &str, now: i64) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE temp_objects SET swept_at = COALESCE(swept_at, $2) \
         WHERE object_key = $1 AND expires_at < $2",
    )
    .bind(object_key)
    .bind(now)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Records on the issued key `object_key` the multipart upload now open on it (None:
/// none is), so that whoever sweeps the key aborts it. False if the key is gone or
/// already swept.
pub async fn set_upload_id(db: &Db, object_key: &str, upload_id: Option<&str>) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE temp_objects SET upload_id = $2 WHERE object_key = $1 AND swept_at IS NULL",
    )
    .bind(object_key)
    .bind(upload_id)
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Marks inside `tx` every issued key in `bucket_id` not yet swept as swept at
/// `now`, so that no report can commit it any more. Returns how many it marked.
pub async fn mark_bucket_swept(
    tx: &mut sqlx::AnyConnection,
    bucket_id: &str,
    now: i64,
) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE temp_objects SET swept_at = $2 WHERE bucket_id = $1 AND swept_at IS NULL",
    )
    .bind(bucket_id)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}

/// Which of `keys` are issued and not yet reported (swept or not); one query per
/// 500 keys.
pub async fn issued_keys(db: &Db, keys: &[&str]) -> Result<HashSet<String>> {
    let mut issued = HashSet::new();
    for chunk in keys.chunks(500) {
        let list = super::placeholders(1, chunk.len());
        // Only numbered placeholders are spliced in; every key is bound.
        let sql = format!("SELECT object_key FROM temp_objects WHERE object_key IN ({list})");
        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for key in chunk {
            query = query.bind(*key);
        }
        issued.extend(query.fetch_all(&db.pool).await?);
    }
    Ok(issued)
}

/// Forgets a swept key once its bucket has confirmed that the bytes are gone.
pub async fn forget_swept_temp_object(db: &Db, object_key: &str) -> Result<()> {
    sqlx::query("DELETE FROM temp_objects WHERE object_key = $1 AND swept_at IS NOT NULL")
        .bind(object_key)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Up to `limit` issued keys whose expiry is before `now`, swept or not, in order of
/// (expiry, key) and after `after` in that order when given, so a pass can page past
/// keys it could not remove.
pub async fn list_expired_temp_objects(
    db: &Db,
    now: i64,
    after: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<TempObject>> {
    let query = match after {
        None => sqlx::query(concat!(
            "SELECT ",
            temp_columns!(),
            " FROM temp_objects WHERE expires_at < $1 ORDER BY expires_at, object_key LIMIT $2"
        ))
        .bind(now)
        .bind(limit),
        Some((expires_at, object_key)) => sqlx::query(concat!(
            "SELECT ",
            temp_columns!(),
            " FROM temp_objects WHERE expires_at < $1 \
             AND (expires_at > $2 OR (expires_at = $2 AND object_key > $3)) \
             ORDER BY expires_at, object_key LIMIT $4"
        ))
        .bind(now)
        .bind(expires_at)
        .bind(object_key)
        .bind(limit),
    };
    query
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(temp_from_row)
        .collect()
}

/// The recorded object with ID `id`, deleted or not.
pub async fn find_object(db: &Db, id: i64) -> Result<Option<StoredObject>> {
    sqlx::query(concat!(
        "SELECT ",
        object_columns!(),
        " FROM objects WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .as_ref()
    .map(object_from_row)
    .transpose()
}

/// Charges the user of object `object_id` for the bytes past its recorded size that
/// `bucket_id`, the bucket its report put it in, was found holding (`found_size`):
/// an overwrite through its still-valid upload URL. Each object is charged its
/// largest overwrite once, however often it is found, until it is deleted (the
/// deletion takes the charge off with the object). Returns the bytes newly charged.
pub async fn charge_overwrite(
    db: &Db,
    object_id: i64,
    bucket_id: &str,
    found_size: u64,
) -> Result<i64> {
    let found = i64::try_from(found_size).unwrap_or(i64::MAX);
    let mut tx = db.begin_write().await?;
    let row: Option<(i64, i64, i64)> = sqlx::query_as(
        "SELECT user_id, size, overwrite_bytes FROM objects \
         WHERE id = $1 AND bucket_id = $2 AND deleted_at IS NULL",
    )
    .bind(object_id)
    .bind(bucket_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user, size, charged)) = row else {
        tx.rollback().await?;
        return Ok(0);
    };
    let over = found.saturating_sub(size);
    if over <= charged {
        tx.rollback().await?;
        return Ok(0);
    }
    users::lock_user(&mut tx, db.engine(), user).await?;
    sqlx::query("UPDATE objects SET overwrite_bytes = $1 WHERE id = $2")
        .bind(over)
        .bind(object_id)
        .execute(&mut *tx)
        .await?;
    users::add_usage(&mut tx, user, over - charged).await?;
    tx.commit().await?;
    Ok(over - charged)
}

/// Marks `user`'s object `id` deleted at `now`, unless it already is, with the
/// thumbnail of the file it is, and drops their copies that were only queued (the
/// purge later removes them from every bucket), and takes their sizes off the user's
/// usage in the same transaction. Returns the object as it now stands,
/// or `None` if `user` has no such object.
pub async fn mark_deleted(db: &Db, id: i64, user: i64, now: i64) -> Result<Option<StoredObject>> {
    let mut tx = db.begin_write().await?;
    let thumbnail: Option<Option<i64>> =
        sqlx::query_scalar("SELECT thumbnail_id FROM files WHERE id = $1 AND owner_id = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
    for object in std::iter::once(id).chain(thumbnail.flatten()) {
        let marked: Option<i64> = sqlx::query_scalar(
            "UPDATE objects SET deleted_at = $1 WHERE id = $2 AND user_id = $3 AND deleted_at IS NULL RETURNING size + overwrite_bytes",
        )
        .bind(now)
        .bind(object)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(size) = marked {
            users::add_usage(&mut tx, user, -size).await?;
            sqlx::query(
                "DELETE FROM object_copies WHERE object_id = $1 AND state IN ('pending', 'failed')",
            )
            .bind(object)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(find_object(db, id).await?.filter(|o| o.user_id == user))
}

/// Up to `limit` objects deleted before `before` whose copies nobody is writing at `now`.
pub async fn list_purgeable(
    db: &Db,
    before: i64,
    now: i64,
    limit: i64,
) -> Result<Vec<StoredObject>> {
    sqlx::query(concat!(
        "SELECT ",
        object_columns!(),
        " FROM objects o WHERE deleted_at IS NOT NULL AND deleted_at <= $1 AND NOT EXISTS \
         (SELECT 1 FROM object_copies c WHERE c.object_id = o.id AND c.state = 'copying' AND c.lease_until >= $2) \
         ORDER BY deleted_at LIMIT $3"
    ))
    .bind(before)
    .bind(now)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(object_from_row)
    .collect()
}

/// Forgets a purged object, its copies, and the file record it heads or is the
/// thumbnail of.
pub async fn delete_object_rows(db: &Db, id: i64) -> Result<()> {
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM files WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE files SET thumbnail_id = NULL WHERE thumbnail_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM object_copies WHERE object_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM objects WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

//! `objects`, as the passes over every object read and move them: per-object
//! status, reconcile and the primary move. Recording, deleting and purging objects
//! is in `uploads`.

use std::collections::HashMap;

use super::{Db, Result, placeholders};

/// A live object's source and dates, for its status.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveObject {
    pub user_id: i64,
    pub bucket_id: String,
    pub created_at: i64,
    pub verified_at: Option<i64>,
    pub lost_at: Option<i64>,
}

/// Object `id`, if it exists and is not deleted.
pub async fn find_live_object(db: &Db, id: i64) -> Result<Option<LiveObject>> {
    Ok(sqlx::query_as::<_, LiveObject>(
        "SELECT user_id, bucket_id, created_at, verified_at, lost_at FROM objects WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?)
}

/// The highest object ID, deleted or not; `None` if no object was ever recorded.
pub async fn max_object_id(db: &Db) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM objects")
            .fetch_one(db.pool())
            .await?,
    )
}

/// A recorded object's ID, key and size.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ObjectEntry {
    pub id: i64,
    pub object_key: String,
    pub size: i64,
}

/// Up to `limit` live objects with IDs above `after` that were created before
/// `created_before`, in ID order.
pub async fn live_objects_after(
    db: &Db,
    after: i64,
    created_before: i64,
    limit: i64,
) -> Result<Vec<ObjectEntry>> {
    Ok(sqlx::query_as::<_, ObjectEntry>(
        "SELECT id, object_key, size FROM objects WHERE id > $1 AND deleted_at IS NULL AND created_at < $2 \
         ORDER BY id LIMIT $3",
    )
    .bind(after)
    .bind(created_before)
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// The ID of each of `keys` that is recorded, deleted or not; one query per 500 keys.
pub async fn ids_by_key(db: &Db, keys: &[&str]) -> Result<HashMap<String, i64>> {
    let mut known = HashMap::new();
    for chunk in keys.chunks(500) {
        let list = placeholders(1, chunk.len());
        // Only numbered placeholders are spliced in; every key is bound.
        let sql = format!("SELECT object_key, id FROM objects WHERE object_key IN ({list})");
        let mut query = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql));
        for key in chunk {
            query = query.bind(*key);
        }
        known.extend(query.fetch_all(db.pool()).await?);
    }
    Ok(known)
}

/// Live objects whose source is `bucket_id`, counted on `conn` (a pool or a
/// transaction).
pub async fn count_live_in_bucket<'c>(
    conn: impl sqlx::AnyExecutor<'c>,
    bucket_id: &str,
) -> Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM objects WHERE bucket_id = $1 AND deleted_at IS NULL",
    )
    .bind(bucket_id)
    .fetch_one(conn)
    .await?)
}

/// A live object whose copy in another bucket is done, with the size and ETag that
/// copy was verified with.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CopiedObject {
    pub id: i64,
    pub object_key: String,
    pub verified_size: Option<i64>,
    pub verified_etag: Option<String>,
}

/// Up to `limit` live objects whose source is `from` and whose copy in `to` is done,
/// in ID order.
pub async fn copied_objects(
    db: &Db,
    from: &str,
    to: &str,
    limit: i64,
) -> Result<Vec<CopiedObject>> {
    Ok(sqlx::query_as::<_, CopiedObject>(
        "SELECT o.id, o.object_key, c.verified_size, c.verified_etag FROM objects o \
         JOIN object_copies c ON c.object_id = o.id AND c.bucket_id = $2 \
         WHERE o.bucket_id = $1 AND o.deleted_at IS NULL AND c.state = 'done' ORDER BY o.id LIMIT $3",
    )
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// Live objects whose source is `from` and whose copy in `to` failed for good.
pub async fn count_failed_copies(db: &Db, from: &str, to: &str) -> Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM objects o JOIN object_copies c ON c.object_id = o.id AND c.bucket_id = $2 \
         WHERE o.bucket_id = $1 AND o.deleted_at IS NULL AND c.state = 'failed'",
    )
    .bind(from)
    .bind(to)
    .fetch_one(db.pool())
    .await?)
}

/// Makes `to` the source of live object `id`, inside `tx`, if its source is `from`
/// and its copy in `to` is done and was verified with `size` and `etag` (no ETag
/// matches no ETag). Returns whether it moved.
pub async fn move_source(
    tx: &mut sqlx::AnyConnection,
    id: i64,
    from: &str,
    to: &str,
    size: Option<i64>,
    etag: Option<&str>,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE objects SET bucket_id = $2 WHERE id = $1 AND bucket_id = $3 AND deleted_at IS NULL \
         AND EXISTS (SELECT 1 FROM object_copies c WHERE c.object_id = $1 AND c.bucket_id = $2 \
         AND c.state = 'done' AND c.verified_size = $4 AND COALESCE(c.verified_etag, '') = COALESCE($5, ''))",
    )
    .bind(id)
    .bind(to)
    .bind(from)
    .bind(size)
    .bind(etag)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Of `keys` (at most 500), those recorded with a source other than `bucket_id` and
/// no copy row for it: objects that have moved off `bucket_id` and keep nothing
/// there.
pub async fn keys_moved_off(db: &Db, bucket_id: &str, keys: &[String]) -> Result<Vec<String>> {
    let list = placeholders(2, keys.len());
    // Only numbered placeholders are spliced in; every key is bound.
    let sql = format!(
        "SELECT o.object_key FROM objects o WHERE o.object_key IN ({list}) AND o.bucket_id <> $1 \
         AND NOT EXISTS (SELECT 1 FROM object_copies c WHERE c.object_id = o.id AND c.bucket_id = $1)"
    );
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(bucket_id);
    for key in keys {
        query = query.bind(key);
    }
    Ok(query.fetch_all(db.pool()).await?)
}

/// How many of `keys` (at most 500) are recorded, deleted or not.
pub async fn count_keys(db: &Db, keys: &[String]) -> Result<i64> {
    let list = placeholders(1, keys.len());
    // Only numbered placeholders are spliced in; every key is bound.
    let sql = format!("SELECT COUNT(*) FROM objects WHERE object_key IN ({list})");
    let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
    for key in keys {
        query = query.bind(key);
    }
    Ok(query.fetch_one(db.pool()).await?)
}

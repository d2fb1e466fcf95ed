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

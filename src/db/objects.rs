//! `objects`, as the passes over every object read and move them: per-object
//! status, reconcile and the primary move. Recording, deleting and purging objects
//! is in `uploads`.

use super::{Db, Result};

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

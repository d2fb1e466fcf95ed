//! `imports`: which files `museum import` brought in, so that a second run skips
//! them and a run cut short resumes without recording any file twice.

use sqlx::Row;

use super::uploads::{TempObject, insert_temp_objects};
use super::{Db, Result};

/// A file's row: the file as it was when imported, and where it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub size: i64,
    pub mtime: i64,
    pub object_key: String,
    pub object_id: Option<i64>,
}

/// The row of `user`'s file at `path`, if one was ever started.
pub async fn find(db: &Db, user: i64, path: &str) -> Result<Option<Imported>> {
    sqlx::query(
        "SELECT size, mtime, object_key, object_id FROM imports WHERE user_id = $1 AND path = $2",
    )
    .bind(user)
    .bind(path)
    .fetch_optional(db.pool())
    .await?
    .map(|r| {
        Ok(Imported {
            size: r.try_get("size")?,
            mtime: r.try_get("mtime")?,
            object_key: r.try_get("object_key")?,
            object_id: r.try_get("object_id")?,
        })
    })
    .transpose()
}

/// Issues `temp.object_key` for the file at `path`, then records that its import
/// started: a run cut short in between or later leaves an issued key, which the
/// cleanup sweep removes from the bucket once it expires.
pub async fn start(db: &Db, path: &str, mtime: i64, temp: &TempObject) -> Result<()> {
    insert_temp_objects(db, std::slice::from_ref(temp)).await?;
    sqlx::query(
        "INSERT INTO imports (user_id, path, size, mtime, object_key, object_id) VALUES ($1, $2, $3, $4, $5, NULL) \
         ON CONFLICT (user_id, path) DO UPDATE SET size = $3, mtime = $4, object_key = $5, object_id = NULL",
    )
    .bind(temp.user_id)
    .bind(path)
    .bind(temp.declared_size.unwrap_or(0))
    .bind(mtime)
    .bind(&temp.object_key)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Links the file at `path` to the object recorded for it.
pub async fn finish(db: &Db, user: i64, path: &str, object_id: i64) -> Result<()> {
    sqlx::query("UPDATE imports SET object_id = $3 WHERE user_id = $1 AND path = $2")
        .bind(user)
        .bind(path)
        .bind(object_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

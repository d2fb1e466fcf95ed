//! `tokens`: API tokens, stored as SHA-256 hashes.

use sqlx::Row;

use super::{Db, Result, now_millis};

/// Records a token hash for `user_id`.
pub async fn insert_token(db: &Db, token_hash: &str, user_id: i64) -> Result<()> {
    sqlx::query("INSERT INTO tokens (token_hash, user_id, created_at) VALUES ($1, $2, $3)")
        .bind(token_hash)
        .bind(user_id)
        .bind(now_millis())
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The user a token hash belongs to, with the stored hash for a constant-time check.
pub async fn find_token(db: &Db, token_hash: &str) -> Result<Option<(String, i64)>> {
    let row = sqlx::query("SELECT token_hash, user_id FROM tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .transpose()
}

//! `tokens`: API tokens, stored as SHA-256 hashes, each with an optional expiry.

use super::{Db, Result, now_millis};

/// A stored token: its hash, its user and when it expires (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredToken {
    pub token_hash: String,
    pub user_id: i64,
    pub expires_at: Option<i64>,
}

/// Records a token hash for `user_id`, valid until `expires_at` (ms; `None`: never),
/// and makes sure the user has a row in `users`, in one transaction.
pub async fn insert_token(
    db: &Db,
    token_hash: &str,
    user_id: i64,
    expires_at: Option<i64>,
) -> Result<()> {
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO tokens (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(now_millis())
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    super::users::ensure_user(&mut tx, user_id).await?;
    tx.commit().await?;
    Ok(())
}

/// The stored token with this hash, expired or not.
pub async fn find_token(db: &Db, token_hash: &str) -> Result<Option<StoredToken>> {
    Ok(sqlx::query_as::<_, StoredToken>(
        "SELECT token_hash, user_id, expires_at FROM tokens WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(&db.pool)
    .await?)
}

/// Deletes the token with this hash; returns its user, or `None` if there was none.
pub async fn delete_token(db: &Db, token_hash: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("DELETE FROM tokens WHERE token_hash = $1 RETURNING user_id")
            .bind(token_hash)
            .fetch_optional(&db.pool)
            .await?,
    )
}

/// Deletes every token of `user_id`; returns how many there were.
pub async fn delete_user_tokens(db: &Db, user_id: i64) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM tokens WHERE user_id = $1")
        .bind(user_id)
        .execute(&db.pool)
        .await?
        .rows_affected())
}

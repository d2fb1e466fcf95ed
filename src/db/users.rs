//! `users`: each user's recorded bytes (usage) and own storage quota.

use super::{Db, Engine, Result};

/// A user's usage and own quota (`None`: the configured default applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: i64,
    pub usage_bytes: i64,
    pub quota_bytes: Option<i64>,
}

/// Makes sure `user_id` has a row (usage 0, default quota) without changing one
/// that exists.
pub async fn ensure_user(conn: &mut sqlx::AnyConnection, user_id: i64) -> Result<()> {
    sqlx::query("INSERT INTO users (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The row of `user_id`, locked until the transaction ends, created if missing. On
/// PostgreSQL the lock is a row lock (`FOR UPDATE`), so two reports by one user
/// check and raise the usage one after the other; on SQLite every writing
/// transaction already holds the database's write lock (`Db::begin_write`).
pub async fn lock_user(
    conn: &mut sqlx::AnyConnection,
    engine: Engine,
    user_id: i64,
) -> Result<UserRow> {
    ensure_user(conn, user_id).await?;
    let sql = match engine {
        Engine::Postgres => {
            "SELECT user_id, usage_bytes, quota_bytes FROM users WHERE user_id = $1 FOR UPDATE"
        }
        Engine::Sqlite => "SELECT user_id, usage_bytes, quota_bytes FROM users WHERE user_id = $1",
    };
    Ok(sqlx::query_as::<_, UserRow>(sql)
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?)
}

/// Adds `delta` bytes (negative to remove) to the usage of `user_id`, which has a row.
pub async fn add_usage(conn: &mut sqlx::AnyConnection, user_id: i64, delta: i64) -> Result<()> {
    sqlx::query("UPDATE users SET usage_bytes = usage_bytes + $1 WHERE user_id = $2")
        .bind(delta)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The row of `user_id`, if museum knows the user.
pub async fn find_user(db: &Db, user_id: i64) -> Result<Option<UserRow>> {
    Ok(sqlx::query_as::<_, UserRow>(
        "SELECT user_id, usage_bytes, quota_bytes FROM users WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&db.pool)
    .await?)
}

/// Every known user, by id.
pub async fn list_users(db: &Db) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_as::<_, UserRow>(
        "SELECT user_id, usage_bytes, quota_bytes FROM users ORDER BY user_id",
    )
    .fetch_all(&db.pool)
    .await?)
}

/// Sets the own quota of `user_id` (`None`: back to the default), creating the row
/// if missing; returns the row as it now stands.
pub async fn set_quota(db: &Db, user_id: i64, quota_bytes: Option<i64>) -> Result<UserRow> {
    let mut tx = db.begin_write().await?;
    ensure_user(&mut tx, user_id).await?;
    let row = sqlx::query_as::<_, UserRow>(
        "UPDATE users SET quota_bytes = $1 WHERE user_id = $2 \
         RETURNING user_id, usage_bytes, quota_bytes",
    )
    .bind(quota_bytes)
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// The usage of every user together, in bytes.
pub async fn total_usage(db: &Db) -> Result<i64> {
    let sum: Option<i64> = sqlx::query_scalar("SELECT CAST(SUM(usage_bytes) AS BIGINT) FROM users")
        .fetch_one(&db.pool)
        .await?;
    Ok(sum.unwrap_or(0))
}

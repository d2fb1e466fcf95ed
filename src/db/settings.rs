//! `museum_settings`: named values that every instance reads, such as the primary a
//! move switched to.

use super::{Db, Result};

/// The value of setting `name`, if it is set.
pub async fn find_setting(db: &Db, name: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar::<_, String>("SELECT value FROM museum_settings WHERE name = $1")
            .bind(name)
            .fetch_optional(db.pool())
            .await?,
    )
}

/// Sets `name` to `value`, replacing what it was.
pub async fn set_setting(db: &Db, name: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO museum_settings (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = $2",
    )
    .bind(name)
    .bind(value)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Unsets `name`; nothing happens if it is not set.
pub async fn delete_setting(db: &Db, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM museum_settings WHERE name = $1")
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(())
}

//! Accounts: API tokens (create, revoke), per-user storage quotas and usage. The
//! admin API and the command line both call these functions, so they cannot disagree.

pub mod jwt;
pub mod quota;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::config::MAX_QUOTA_BYTES;
use crate::db::{self, Db, DbError};
pub use quota::{QuotaRefusal, QuotaRule};

/// Why an account operation failed, by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The input is wrong; the message says how.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// No such user or token.
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbError),
    /// The system has no randomness to make a token from.
    #[error("no system randomness to make a token from")]
    NoRandomness,
}

/// Result alias for account functions.
pub type Result<T, E = AccountsError> = std::result::Result<T, E>;

/// The SHA-256 hex digest under which a token is stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A user as the admin API shows it: its recorded bytes and the quota that applies
/// (its own, else the default; `None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UserInfo {
    #[serde(rename = "userID")]
    pub user_id: i64,
    pub usage: i64,
    pub quota: Option<i64>,
}

fn user_info(row: db::users::UserRow, rule: &QuotaRule) -> UserInfo {
    UserInfo {
        user_id: row.user_id,
        usage: row.usage_bytes,
        quota: rule.limit(row.quota_bytes),
    }
}

/// Checks that `user` is a user ID: a positive integer.
pub fn check_user_id(user: i64) -> Result<i64> {
    if user > 0 {
        Ok(user)
    } else {
        Err(AccountsError::Invalid {
            code: "INVALID_USER_ID",
            message: format!("the user ID must be a positive integer, got {user}"),
        })
    }
}

/// Makes a token for `user`, valid until `expires_at` (`None`: until revoked), and
/// stores only its hash. Returns the token: it is shown once and cannot be recovered.
/// An expiry that is not in the future is refused.
pub async fn create_token(
    db: &Db,
    user: i64,
    expires_at: Option<jiff::Timestamp>,
) -> Result<String> {
    check_user_id(user)?;
    if let Some(at) = expires_at
        && at <= jiff::Timestamp::now()
    {
        return Err(AccountsError::Invalid {
            code: "INVALID_EXPIRY",
            message: format!("expiresAt {at} is not in the future"),
        });
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|_| AccountsError::NoRandomness)?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    db::tokens::insert_token(
        db,
        &hash_token(&token),
        user,
        expires_at.map(|t| t.as_millisecond()),
    )
    .await?;
    Ok(token)
}

/// Revokes one token; returns its user. An unknown token is `NotFound`.
pub async fn revoke_token(db: &Db, token: &str) -> Result<i64> {
    db::tokens::delete_token(db, &hash_token(token.trim()))
        .await?
        .ok_or_else(|| AccountsError::NotFound("no such token".to_owned()))
}

/// Revokes every token of `user`; returns how many there were.
pub async fn revoke_user_tokens(db: &Db, user: i64) -> Result<u64> {
    check_user_id(user)?;
    Ok(db::tokens::delete_user_tokens(db, user).await?)
}

/// Sets `user`'s own quota in bytes (`None`: back to the default). Negative values
/// and values over 1 EiB are refused. A user museum has not seen yet is created, so
/// quotas can be set before a first upload.
pub async fn set_quota(
    db: &Db,
    rule: &QuotaRule,
    user: i64,
    bytes: Option<i64>,
) -> Result<UserInfo> {
    check_user_id(user)?;
    if let Some(b) = bytes
        && !(0..=MAX_QUOTA_BYTES as i64).contains(&b)
    {
        return Err(AccountsError::Invalid {
            code: "INVALID_QUOTA",
            message: format!(
                "the quota must be from 0 to {MAX_QUOTA_BYTES} bytes (1 EiB), got {b}; 0 allows no uploads"
            ),
        });
    }
    Ok(user_info(
        db::users::set_quota(db, user, bytes).await?,
        rule,
    ))
}

/// `user`'s usage and quota. A user museum has never seen is `NotFound`.
pub async fn show_user(db: &Db, rule: &QuotaRule, user: i64) -> Result<UserInfo> {
    check_user_id(user)?;
    db::users::find_user(db, user)
        .await?
        .map(|row| user_info(row, rule))
        .ok_or_else(|| AccountsError::NotFound(format!("no user {user}")))
}

/// Every user museum knows, by ID, with usage and quota.
pub async fn list_users(db: &Db, rule: &QuotaRule) -> Result<Vec<UserInfo>> {
    Ok(db::users::list_users(db)
        .await?
        .into_iter()
        .map(|row| user_info(row, rule))
        .collect())
}

/// Whether `user` may store `size` more bytes now, by its recorded usage. The
/// presign check and `upload-eligibility` use it; the report checks again in the
/// transaction that records the bytes, so this is advisory and reserves nothing.
pub async fn check_upload(
    db: &Db,
    rule: &QuotaRule,
    user: i64,
    size: i64,
) -> Result<Result<(), QuotaRefusal>> {
    let row = db::users::find_user(db, user).await?;
    let (usage, own) = row.map_or((0, None), |r| (r.usage_bytes, r.quota_bytes));
    Ok(rule.check(usage, own, size))
}

//! `ApiError`: the one place that chooses status codes and error bodies.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::accounts::{AccountsError, QuotaRefusal};
use crate::db::DbError;
use crate::storage::StorageError;

/// Every way a request can fail, with what the client needs to know.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The reported object was recorded and then deleted: it is no longer stored, and
    /// the purge removes its bytes. 410 rather than 404, so a client retrying a report
    /// can tell "deleted since" from "never issued" and not believe the file is kept.
    #[error(
        "this object was deleted after it was reported and will be purged from every bucket; to keep the file, upload it again under a new upload URL"
    )]
    FileDeleted,
    #[error("reported size is {expected} bytes but the stored object has {actual} bytes")]
    SizeMismatch { expected: i64, actual: u64 },
    #[error("declared MD5 gives ETag {expected} but the stored object has ETag {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    /// A recorded object's bytes were replaced after its report (a repeated report
    /// found them so).
    #[error("{0}")]
    Tampered(String),
    /// As `Tampered`, found by a download, and the only verified copy left is in an
    /// archive tier that cannot be read until it is restored.
    #[error("{0}")]
    TamperedUnreadable(String),
    /// As `Tampered`, found by a download, and no verified copy is left at all.
    #[error("{0}")]
    TamperedLost(String),
    #[error(
        "the request body is over the limit of {} bytes",
        crate::api::MAX_BODY_BYTES
    )]
    BodyTooLarge,
    #[error("object is {size} bytes, over the limit of {max} bytes (max-file-size)")]
    TooLarge { size: u64, max: u64 },
    #[error("could not read the object's size from the hot bucket")]
    ObjectSizeFetchFailed(#[source] StorageError),
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error("the request took too long; retry it")]
    Timeout,
    #[error("object storage is unavailable")]
    StorageUnavailable(#[source] StorageError),
    #[error("database is unavailable")]
    DbUnavailable(#[source] DbError),
    /// Too many requests; retry after the given number of seconds.
    #[error("too many requests; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// The user holds too many issued, unreported keys for more.
    #[error(
        "{held} upload keys issued to you are not reported yet, and {asked} more would pass quota.max-unreported-keys ({max}); report finished uploads (POST /files), ask for fewer, or retry in {retry_after} s when the oldest expire"
    )]
    TooManyUnreported {
        held: i64,
        asked: u32,
        max: u64,
        retry_after: u64,
    },
    /// The user's quota refuses the upload (402 or 426, as Ente answers).
    #[error("{0}")]
    Quota(QuotaRefusal),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// Stable, for programs: `INVALID_COUNT`, `SIZE_MISMATCH`, `NOT_FOUND`, …
    #[schema(example = "INVALID_COUNT")]
    code: &'a str,
    /// What went wrong and how to fix it, for people.
    #[schema(example = "count must be an integer from 1 to 50, got `0`")]
    message: String,
    /// Quota refusals only: the bytes the user's recorded objects hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<i64>,
    /// Quota refusals only: the user's quota in bytes (uploads may go
    /// `quota.overflow-bytes` past it).
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<i64>,
    /// Quota refusals only: the bytes the refused request asked to store.
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<i64>,
}

impl ApiError {
    /// A 400 with a specific code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "ALREADY_COMMITTED"),
            Self::FileDeleted => (StatusCode::GONE, "FILE_DELETED"),
            Self::SizeMismatch { .. } => (StatusCode::BAD_REQUEST, "SIZE_MISMATCH"),
            Self::ChecksumMismatch { .. } => (StatusCode::BAD_REQUEST, "CHECKSUM_MISMATCH"),
            Self::Tampered(_) => (StatusCode::CONFLICT, "OBJECT_TAMPERED"),
            Self::TamperedUnreadable(_) => (StatusCode::SERVICE_UNAVAILABLE, "OBJECT_TAMPERED"),
            Self::TamperedLost(_) => (StatusCode::GONE, "OBJECT_TAMPERED"),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "FILE_TOO_LARGE"),
            Self::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE"),
            Self::ObjectSizeFetchFailed(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "OBJECT_SIZE_FETCH_FAILED")
            }
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            Self::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "TIMEOUT"),
            Self::StorageUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "STORAGE_UNAVAILABLE"),
            Self::DbUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "DB_UNAVAILABLE"),
            Self::Quota(r @ QuotaRefusal::NoActiveSubscription { .. }) => {
                (StatusCode::PAYMENT_REQUIRED, r.code())
            }
            Self::Quota(r @ QuotaRefusal::StorageLimitExceeded { .. }) => {
                (StatusCode::UPGRADE_REQUIRED, r.code())
            }
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            Self::TooManyUnreported { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_UNREPORTED_KEYS")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error.code = code, error.message = %self, error.cause_chain = ?self, "request failed");
        } else if matches!(self, Self::RateLimited { .. }) {
            // A flood must not become a flood of log lines: the limiter warns once a
            // minute per address or user, and museum_rate_limited_total counts them.
            tracing::debug!(error.code = code, "request refused by a rate limit");
        } else {
            tracing::info!(error.code = code, error.message = %self, "request refused");
        }
        let message = match &self {
            Self::Internal(_) => "internal error; the server log has the details".to_owned(),
            other => other.to_string(),
        };
        let (usage, limit, size) = match &self {
            Self::Quota(r) => {
                let (usage, limit, size) = r.figures();
                (Some(usage), Some(limit), Some(size))
            }
            _ => (None, None, None),
        };
        let body = ErrorBody {
            code,
            message,
            usage,
            limit,
            size,
        };
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited { retry_after } | Self::TooManyUnreported { retry_after, .. } =
            self
        {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(retry_after),
            );
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable { .. } => Self::DbUnavailable(e),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable { .. } => Self::StorageUnavailable(e),
            StorageError::Changed { .. } => Self::Tampered(e.to_string()),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> Self {
        match e {
            AccountsError::Invalid { code, message } => Self::BadRequest { code, message },
            AccountsError::NotFound(message) => Self::NotFound(message),
            AccountsError::Db(e) => e.into(),
            other @ AccountsError::NoRandomness => Self::Internal(Box::new(other)),
        }
    }
}

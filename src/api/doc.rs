//! The OpenAPI types the handlers share: the responses every endpoint shares (401,
//! 503) and the answers that have no type of their own in the handlers. Handlers name
//! them in their `#[utoipa::path]` attributes and `openapi.rs` gathers them into the
//! document, so no handler imports `openapi.rs`.

use serde::Serialize;
use utoipa::{ToResponse, ToSchema};

use super::error::ErrorBody;

/// The answer to `GET /ping`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pong {
    /// Always `pong`.
    #[schema(example = "pong")]
    message: String,
    /// museum's version.
    #[schema(example = "0.1.0")]
    id: String,
}

/// The answer to `GET /files/upload-eligibility` when the user may upload: an empty
/// object.
#[derive(Debug, Serialize, ToSchema)]
#[schema(max_properties = 0)]
pub struct Eligibility {}

/// An MD5 digest: 16 bytes as base64 (as a `Content-MD5` header carries it) or as
/// 32 hex digits.
#[derive(Debug, ToSchema)]
#[schema(
    pattern = "^([A-Za-z0-9+/]{21}[AQgw]==|[0-9A-Fa-f]{32})$",
    example = "1B2M2Y8AsgTpgAmY7PhCfg=="
)]
#[allow(dead_code)] // Only its OpenAPI schema is used.
pub struct Md5(String);

/// An object's bytes, exactly as uploaded.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // Only its OpenAPI schema is used.
pub struct Bytes(Vec<u8>);

/// No token, or one museum does not know (`UNAUTHORIZED`).
#[derive(ToResponse)]
#[response(description = "No token, or one museum does not know: `UNAUTHORIZED`.")]
#[allow(dead_code)] // Only its OpenAPI description is used.
pub struct Unauthorized(ErrorBody<'static>);

/// The database or object storage cannot be reached, or the request ran too long.
#[derive(ToResponse)]
#[response(
    description = "The database or object storage cannot be reached, or the request ran \
                   past its time limit: `DB_UNAVAILABLE`, `STORAGE_UNAVAILABLE`, `TIMEOUT`. \
                   Retry later."
)]
#[allow(dead_code)] // Only its OpenAPI description is used.
pub struct Unavailable(ErrorBody<'static>);

/// The user's quota is 0 (`NO_ACTIVE_SUBSCRIPTION`).
#[derive(ToResponse)]
#[response(
    description = "The user's storage quota is 0: `NO_ACTIVE_SUBSCRIPTION`. The body names `usage`, `limit` and `size` (bytes)."
)]
#[allow(dead_code)] // Only its OpenAPI description is used.
pub struct NoSubscription(ErrorBody<'static>);

/// The upload would pass the user's quota (`STORAGE_LIMIT_EXCEEDED`).
#[derive(ToResponse)]
#[response(
    description = "The upload would take the user's usage past its quota and `quota.overflow-bytes`: `STORAGE_LIMIT_EXCEEDED`. The body names `usage`, `limit` and `size` (bytes)."
)]
#[allow(dead_code)] // Only its OpenAPI description is used.
pub struct StorageFull(ErrorBody<'static>);

/// Too many requests (`RATE_LIMITED`).
#[derive(ToResponse)]
#[response(
    description = "Too many failed authentications from this address, or (upload-URL routes) more URLs than this user's budget holds now, each URL and part counted: `RATE_LIMITED`; or (upload-URL routes) more unreported keys than `quota.max-unreported-keys`: `TOO_MANY_UNREPORTED_KEYS`. `Retry-After` says how many seconds to wait.",
    headers(("Retry-After" = u64, description = "Seconds until a retry may succeed."))
)]
#[allow(dead_code)] // Only its OpenAPI description is used.
pub struct TooManyRequests(ErrorBody<'static>);

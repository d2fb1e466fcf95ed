//! The OpenAPI document of the HTTP API: assembled from the handlers' `#[utoipa::path]`
//! attributes, served at `/openapi.json`, printed by `museum openapi`, and committed as
//! `openapi.json`. Also the responses every endpoint shares (401, 503) and the answers
//! that have no type of their own in the handlers.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use super::error::ErrorBody;
use super::{files, health, uploads};

/// The document's description: what it covers, how to authenticate, and what it
/// leaves out.
const DESCRIPTION: &str = "\
museum keeps every uploaded object in three S3-compatible buckets. Clients ask it for \
presigned upload URLs, upload straight to the hot bucket, and report the upload; museum \
verifies and records it and copies it to the other buckets.

Every endpoint under `/files` needs a token, sent as `X-Auth-Token: <token>` (Ente's \
header) or `Authorization: Bearer <token>`. Tokens are made with \
`museum token create --user <id>`.

Every error is JSON `{\"code\", \"message\"}`: `code` is stable and meant for programs, \
`message` is for people. Any request may also answer 503 `TIMEOUT` when it runs past \
`http.request-timeout`, 413 `BODY_TOO_LARGE` when its body is over 2 MiB, and 405 \
`METHOD_NOT_ALLOWED` for a method its path does not take; unknown paths answer 404.

Prometheus metrics are not part of this API: they are served at `/metrics` on the \
separate metrics listener (`http.metrics-port`, default 2112, on `http.metrics-host`, \
default 127.0.0.1).";

#[derive(OpenApi)]
#[openapi(
    info(title = "museum", description = DESCRIPTION),
    paths(
        health::ping,
        document,
        uploads::upload_urls,
        uploads::upload_url,
        uploads::multipart_upload_urls,
        uploads::multipart_upload_url,
        uploads::report,
        uploads::upload_eligibility,
        files::download,
        files::status,
        files::delete,
    ),
    components(
        schemas(ErrorBody, Md5, Pong, Eligibility, Bytes),
        responses(Unauthorized, Unavailable, NoSubscription, StorageFull, TooManyRequests)
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "Liveness and the API's own description."),
        (name = "uploads", description = "Presigned upload URLs and the report that records an upload."),
        (name = "files", description = "Recorded files: download, replication status and delete."),
    )
)]
struct ApiDoc;

/// Adds the two ways to send a token as security schemes: `authToken`
/// (`X-Auth-Token`) and `bearer` (`Authorization: Bearer`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "authToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "A token from `museum token create`, as Ente's apps send it.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The same token as `Authorization: Bearer <token>`; \
                         `X-Auth-Token` wins when both are sent.",
                    ))
                    .build(),
            ),
        );
    }
}

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

/// The document as pretty-printed JSON, built once.
pub fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        // A document of plain strings and maps always serializes.
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
    })
}

/// `GET /openapi.json`: this API's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    summary = "This document",
    description = "The OpenAPI document of this API, as committed in museum's repository as `openapi.json`. Needs no token.",
    tag = "health",
    responses(
        (status = 200, description = "This document.", content_type = "application/json", body = Object),
    )
)]
pub async fn document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

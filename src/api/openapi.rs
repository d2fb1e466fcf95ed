//! The OpenAPI document of the HTTP API: assembled from the handlers' `#[utoipa::path]`
//! attributes and the shared types of [`super::doc`], served at `/openapi.json`,
//! printed by `museum openapi`, and committed as `openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::doc::{
    Bytes, Eligibility, Md5, NoSubscription, Pong, StorageFull, TooManyRequests, Unauthorized,
    Unavailable,
};
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

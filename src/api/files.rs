//! Recorded objects: download (redirect or proxy, checked against the record, with
//! replica failover), replication status, and delete.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Serialize;
use std::time::Duration;

use super::error::ApiError;
use super::extract::AuthUser;
use super::integrity::{self, Found, Tier};
use super::state::AppState;
use crate::config::ServeMode;
use crate::db::now_millis;
use crate::db::uploads::{StoredObject, find_object, mark_deleted};
use crate::maintenance::status::ObjectStatus;
use crate::observe::events::FoundBy;
use crate::storage::StorageError;

/// Longest lifetime of a download redirect.
const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(3600);

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request("INVALID_ID", "the file ID must be a positive integer")
    })
}

async fn owned_object(state: &AppState, user: i64, id: i64) -> Result<StoredObject, ApiError> {
    find_object(&state.db, id)
        .await?
        .filter(|o| o.user_id == user && o.deleted_at.is_none())
        .ok_or_else(|| ApiError::NotFound("no such file".to_owned()))
}

/// `GET /files/{id}/status`: where each tier of one of the user's objects stands.
#[utoipa::path(
    get,
    path = "/files/{id}/status",
    operation_id = "fileStatus",
    summary = "Where each copy of a recorded object stands",
    description = "Each tier of the object: the bucket the upload went to (`SOURCE`) and each replica (`REPLICA`), with its state (`PENDING`, `COPYING`, `COMPLETED`, `FAILED`), when it was last proved to hold the recorded bytes, and why it failed. `replicationStatus` sums them up as AWS does for a source object.",
    tag = "files",
    params(
        ("id" = i64, Path, minimum = 1, description = "The object's id, as `file.id` or `thumbnail.id` in the report's answer."),
    ),
    security(("authToken" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The object's tiers.", body = crate::maintenance::status::ObjectStatus),
        (status = 400, description = "The id is not a positive integer: `INVALID_ID`.", body = crate::api::error::ErrorBody),
        (status = 401, response = crate::api::doc::Unauthorized),
        (status = 404, description = "The user has no such file, or it was deleted: `NOT_FOUND`.", body = crate::api::error::ErrorBody),
        (status = 429, response = crate::api::doc::TooManyRequests),
        (status = 503, response = crate::api::doc::Unavailable),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(raw_id): Path<String>,
) -> Result<Json<ObjectStatus>, ApiError> {
    let id = parse_id(&raw_id)?;
    match crate::maintenance::status::object_status(&state.db, id).await? {
        Some((owner, status)) if owner == user => Ok(Json(status)),
        _ => Err(ApiError::NotFound("no such file".to_owned())),
    }
}

/// `GET /files/{id}/download`: the bytes of one of the user's objects, from the
/// first verified tier that still holds exactly what was recorded for it (the bucket
/// it was uploaded to, else a replica that can be read directly, not one in an
/// archive storage class). Each tier is HEADed and its size and ETag compared with
/// the record first; a proxied read is also conditional on that ETag. A tier holding
/// other bytes is counted and logged as tampered, never served, and restored from
/// the tier that serves. With no verified tier left, the answer is 410
/// `OBJECT_TAMPERED`, never the replaced bytes.
#[utoipa::path(
    get,
    path = "/files/{id}/download",
    operation_id = "downloadFile",
    summary = "Download a recorded object",
    description = "Serves the object from the first tier that still holds exactly the recorded bytes (size and ETag compared first): the bucket that holds it, else a verified replica that can be read directly (not one in an archive storage class); as a redirect to a presigned GET, or streamed through museum, as `s3.serve_mode` says. A tier holding other bytes is never served, and is restored from the tier that serves.",
    tag = "files",
    params(
        ("id" = i64, Path, minimum = 1, description = "The object's id, as `file.id` or `thumbnail.id` in the report's answer."),
    ),
    security(("authToken" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The bytes, streamed through museum (`s3.serve_mode: proxy`).", content_type = "application/octet-stream", body = crate::api::doc::Bytes),
        (status = 307, description = "A presigned GET of a readable copy, valid for at most an hour (`s3.serve_mode: redirect`, the default).", headers(("Location" = String, description = "The presigned URL."))),
        (status = 400, description = "The id is not a positive integer: `INVALID_ID`.", body = crate::api::error::ErrorBody),
        (status = 401, response = crate::api::doc::Unauthorized),
        (status = 404, description = "The user has no such file, it was deleted, or no copy is left: `NOT_FOUND`.", body = crate::api::error::ErrorBody),
        (status = 410, description = "Every tier holds other bytes than the recorded ones, and none is left to restore them from: `OBJECT_TAMPERED`.", body = crate::api::error::ErrorBody),
        (status = 429, response = crate::api::doc::TooManyRequests),
        (status = 503, response = crate::api::doc::Unavailable),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw_id)?;
    let object = owned_object(&state, user, id).await?;
    let key = object.object_key.as_str();
    let mut broken = Vec::new();
    let mut tampered = false;
    let mut archived = false;
    let mut unavailable = None;
    for tier in integrity::tiers_of(&state, &object).await? {
        let bucket_id = tier.bucket.id();
        let damage = match integrity::check(&tier, key).await {
            Found::Intact => match serve(&state, &tier, key).await {
                Ok(response) => {
                    integrity::restore(&state, object.id, &broken).await;
                    return Ok(response);
                }
                Err(e) => e,
            },
            Found::Archived => {
                archived = true;
                continue;
            }
            Found::Missing => StorageError::NotFound {
                bucket: bucket_id.to_owned(),
            },
            Found::Tampered(detail, found_size) => {
                integrity::charge(&state, &object, bucket_id, found_size).await;
                StorageError::Changed {
                    bucket: bucket_id.to_owned(),
                    detail,
                }
            }
            Found::Unavailable(e) => e,
        };
        match damage {
            StorageError::NotFound { .. } => {
                tracing::warn!(
                    bucket = bucket_id,
                    object_id = object.id,
                    "a recorded copy is missing"
                );
                broken.push((
                    bucket_id.to_owned(),
                    "restore: missing at a download".to_owned(),
                ));
            }
            StorageError::Changed { detail, .. } => {
                integrity::tampered(&state, object.id, bucket_id, FoundBy::Download, &detail);
                broken.push((bucket_id.to_owned(), format!("restore: {detail}")));
                tampered = true;
            }
            e => unavailable = Some(e),
        }
    }
    Err(match (unavailable, tampered) {
        (Some(e), _) => ApiError::StorageUnavailable(e),
        (None, true) if archived => ApiError::TamperedUnreadable(
            "this file's bytes were replaced after it was recorded; its only verified copy is in an archive tier, which must be restored before it can be read".to_owned(),
        ),
        (None, true) => ApiError::TamperedLost(
            "this file's bytes were replaced after it was recorded, and no verified copy of them exists; upload it again".to_owned(),
        ),
        (None, false) => ApiError::NotFound("no readable copy of this file is left".to_owned()),
    })
}

/// Serves `key` from a tier whose HEAD matched its record: a redirect to a
/// presigned GET, or the bytes streamed through by a GET conditional on the
/// recorded ETag (refused as [`StorageError::Changed`] if the object was replaced
/// since the HEAD).
async fn serve(state: &AppState, tier: &Tier, key: &str) -> Result<Response, StorageError> {
    // An SSE-C tier can only be read with its key, which clients never get.
    let mode = if tier.bucket.sse_c() {
        ServeMode::Proxy
    } else {
        state.policy.serve_mode
    };
    match mode {
        ServeMode::Redirect => {
            let ttl = state.policy.presign_ttl.min(DOWNLOAD_URL_TTL);
            let url = tier.bucket.presign_get(key, ttl);
            Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, url.to_string())],
            )
                .into_response())
        }
        ServeMode::Proxy => {
            let (len, stream) = tier.bucket.get_stream_if_match(key, tier.etag()).await?;
            if len != tier.size() {
                return Err(StorageError::Changed {
                    bucket: tier.bucket.id().to_owned(),
                    detail: format!("it answered {len} bytes, the record says {}", tier.size()),
                });
            }
            Ok((
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_LENGTH, len.to_string()),
                ],
                Body::from_stream(stream),
            )
                .into_response())
        }
    }
}

/// A deleted object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    id: i64,
    /// When it was deleted, in milliseconds since the Unix epoch.
    deleted_at: i64,
}

/// `DELETE /files/{id}`: marks the object deleted. Its copies leave every bucket
/// after `replication.delete-delay`. Deleting twice answers the same.
#[utoipa::path(
    delete,
    path = "/files/{id}",
    operation_id = "deleteFile",
    summary = "Delete a recorded object",
    description = "Marks the object deleted at once; its copies leave every bucket after `replication.delete-delay`. Deleting twice answers the same.",
    tag = "files",
    params(
        ("id" = i64, Path, minimum = 1, description = "The object's id, as `file.id` or `thumbnail.id` in the report's answer."),
    ),
    security(("authToken" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Deleted (now or by an earlier request).", body = Deleted),
        (status = 400, description = "The id is not a positive integer: `INVALID_ID`.", body = crate::api::error::ErrorBody),
        (status = 401, response = crate::api::doc::Unauthorized),
        (status = 404, description = "The user has no such file: `NOT_FOUND`.", body = crate::api::error::ErrorBody),
        (status = 429, response = crate::api::doc::TooManyRequests),
        (status = 503, response = crate::api::doc::Unavailable),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(raw_id): Path<String>,
) -> Result<axum::Json<Deleted>, ApiError> {
    let id = parse_id(&raw_id)?;
    let object = mark_deleted(&state.db, id, user, now_millis())
        .await?
        .ok_or_else(|| ApiError::NotFound("no such file".to_owned()))?;
    Ok(axum::Json(Deleted {
        id: object.id,
        deleted_at: object.deleted_at.unwrap_or_default(),
    }))
}

//! Recorded objects: download (redirect or proxy, with replica failover) and delete.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

use super::error::ApiError;
use super::extract::AuthUser;
use super::state::AppState;
use crate::config::ServeMode;
use crate::db::now_millis;
use crate::db::replication::{list_copies, state};
use crate::db::uploads::{StoredObject, find_object, mark_deleted};
use crate::storage::{BucketClient, StorageError};

/// Longest lifetime of a download redirect.
const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(3600);

/// Storage classes whose objects must be restored before they can be read.
const ARCHIVE_CLASSES: [&str; 2] = ["GLACIER", "DEEP_ARCHIVE"];

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

/// `GET /files/{id}/download`: the bytes of one of the user's objects, from the
/// bucket that holds it or, if the object is missing there, from a verified replica
/// that can be read directly (not one in an archive storage class).
pub async fn download(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&raw_id)?;
    let object = owned_object(&state, user, id).await?;
    let bucket = readable_copy(&state, &object).await?;
    match state.policy.serve_mode {
        ServeMode::Redirect => {
            let ttl = state.policy.presign_ttl.min(DOWNLOAD_URL_TTL);
            let url = bucket.presign_get(&object.object_key, ttl);
            Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, url.to_string())],
            )
                .into_response())
        }
        ServeMode::Proxy => {
            let (len, stream) = bucket.get_stream(&object.object_key).await?;
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

async fn readable_copy(
    state: &AppState,
    object: &StoredObject,
) -> Result<Arc<BucketClient>, ApiError> {
    let mut candidates = vec![object.bucket_id.clone()];
    for copy in list_copies(&state.db, object.id).await? {
        if copy.state == state::DONE {
            candidates.push(copy.bucket_id);
        }
    }
    let mut unavailable = None;
    for id in state.buckets.read_order(candidates) {
        let Some(bucket) = state.buckets.get(&id) else {
            continue;
        };
        match bucket.head(&object.object_key).await {
            Ok(meta)
                if meta
                    .storage_class
                    .as_deref()
                    .is_some_and(|c| ARCHIVE_CLASSES.contains(&c)) => {}
            Ok(_) => return Ok(Arc::clone(bucket)),
            Err(StorageError::NotFound { .. }) => {
                tracing::warn!(bucket = %id, object_id = object.id, "a recorded copy is missing");
            }
            Err(e) => unavailable = Some(e),
        }
    }
    Err(match unavailable {
        Some(e) => ApiError::StorageUnavailable(e),
        None => ApiError::NotFound("no readable copy of this file is left".to_owned()),
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    id: i64,
    deleted_at: i64,
}

/// `DELETE /files/{id}`: marks the object deleted. Its copies leave every bucket
/// after `replication.delete-delay`. Deleting twice answers the same.
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

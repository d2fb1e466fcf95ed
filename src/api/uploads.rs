//! Upload endpoints: presigned URLs for the hot primary, and the report that verifies
//! an upload and records it.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::extract::{AppJson, AppQuery, AuthUser, optional_whole_i64, whole_i64};
use super::state::AppState;
use crate::accounts::{self, QuotaRefusal};
use crate::db::uploads::{
    Committed, FileCommit, FileRecord, NewFile, NewObject, StoredObject, TempObject,
};
use crate::db::{self, now_millis};
use crate::storage::presign::{
    content_md5, decode_md5, is_key_of_user, looks_like_md5_etag, multipart_etag, new_object_key,
    single_part_etag,
};
use crate::storage::{ObjectMeta, StorageError, limits::MAX_PARTS};
use crate::time::millis;

/// Most single-part URLs one request may ask for.
pub const MAX_UPLOAD_URLS: u32 = 50;
/// Smallest part S3 accepts, except for the last one.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Longest object key accepted in a report (S3's limit).
const MAX_KEY_LEN: usize = 1024;
/// Pauses between HEAD attempts while verifying a report.
const HEAD_RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];

#[derive(Debug, Deserialize)]
pub struct CountQuery {
    count: Option<String>,
}

fn parse_count(raw: Option<&str>, max: u32) -> Result<u32, ApiError> {
    let raw = raw.ok_or_else(|| {
        ApiError::bad_request("INVALID_COUNT", format!("count is required (1..={max})"))
    })?;
    match raw.trim().parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(
            "INVALID_COUNT",
            format!(
                "count must be an integer from 1 to {max}, got `{}`",
                truncate(raw, 40)
            ),
        )),
    }
}

/// The most parts of an unsized multipart upload: as many as an object of
/// `max_file_size` makes in parts of [`MIN_PART_SIZE`] (the least a sized upload may
/// use), and never more than S3's [`MAX_PARTS`].
fn max_unsized_parts(max_file_size: u64) -> u32 {
    let parts = max_file_size.div_ceil(MIN_PART_SIZE).clamp(1, MAX_PARTS);
    u32::try_from(parts).unwrap_or(u32::MAX)
}

/// `count` of `GET /files/multipart-upload-urls`, within [`max_unsized_parts`].
fn parse_multipart_count(raw: Option<&str>, max_file_size: u64) -> Result<u32, ApiError> {
    let max = max_unsized_parts(max_file_size);
    let count = parse_count(raw, u32::try_from(MAX_PARTS).unwrap_or(u32::MAX))?;
    if count > max {
        return Err(ApiError::bad_request(
            "INVALID_COUNT",
            format!(
                "count must be an integer from 1 to {max}: max-file-size ({max_file_size} bytes) in parts of at least {MIN_PART_SIZE} bytes; got {count}"
            ),
        ));
    }
    Ok(count)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_owned()
    } else {
        let cut = (0..=max)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}…", &s[..cut])
    }
}

/// A fresh object key and the presigned URL to PUT its bytes to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadUrl {
    /// `<userID>/<uuid>`: report it in `POST /files` once the bytes are uploaded.
    #[schema(example = "42/0b9f0a64-1f6e-4a39-9d0c-3c1f2f7f3c51")]
    object_key: String,
    /// A presigned S3 PUT URL, valid for `s3.presign-ttl`.
    url: String,
}

/// Presigned single-part upload URLs, one per key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadUrls {
    urls: Vec<UploadUrl>,
}

/// A multipart upload: one presigned URL per part, and the URL that completes it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultipartUrls {
    /// `<userID>/<uuid>`: report it in `POST /files` once the upload is complete.
    object_key: String,
    /// Presigned PUT URLs of parts 1, 2, … in order.
    #[serde(rename = "partURLs")]
    part_urls: Vec<String>,
    /// The presigned POST that completes the upload (S3's CompleteMultipartUpload).
    #[serde(rename = "completeURL")]
    complete_url: String,
}

/// The v1 multipart answer, wrapped in `urls` (the v2 one is bare, as in Ente).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MultipartUrlsResponse {
    urls: MultipartUrls,
}

fn temp_object(state: &AppState, user: i64, key: String) -> TempObject {
    let now = now_millis();
    let lifetime = state.policy.presign_ttl + state.policy.temp_grace;
    TempObject {
        object_key: key,
        user_id: user,
        bucket_id: state.buckets.primary().id().to_owned(),
        declared_size: None,
        declared_md5: None,
        expected_etag: None,
        upload_id: None,
        created_at: now,
        expires_at: now.saturating_add(millis(lifetime)),
    }
}

/// `GET /files/upload-urls?count=N`: N presigned PUT URLs, each for a fresh key.
#[utoipa::path(
    get,
    path = "/files/upload-urls",
    operation_id = "uploadUrls",
    summary = "Presigned URLs for single-part uploads",
    description = "Issues `count` fresh object keys, each with a presigned PUT URL on the hot bucket. The URLs sign neither length nor checksum; the report checks the size. The user's quota is checked as `GET /files/upload-eligibility` checks it. Unreported keys are cleaned up after the URL expires and a grace period.",
    tag = "uploads",
    params(
        ("count" = u32, Query, minimum = 1, maximum = 50, description = "How many URLs, 1 to 50."),
    ),
    security(("authToken" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "One URL per key; the URLs sign no length or checksum.", body = UploadUrls),
        (status = 400, description = "`count` is missing or out of range, or asks for more URLs than `rate-limit.upload-urls-per-minute` allows in a minute: `INVALID_COUNT`, `INVALID_QUERY`.", body = crate::api::error::ErrorBody),
        (status = 401, response = crate::api::doc::Unauthorized),
        (status = 402, response = crate::api::doc::NoSubscription),
        (status = 426, response = crate::api::doc::StorageFull),
        (status = 429, response = crate::api::doc::TooManyRequests),
        (status = 503, response = crate::api::doc::Unavailable),
    )
)]
pub async fn upload_urls(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppQuery(q): AppQuery<CountQuery>,
) -> Result<Json<UploadUrls>, ApiError> {
    let count = parse_count(q.count.as_deref(), MAX_UPLOAD_URLS)?;
    limit_upload_urls(&state, user, count, "INVALID_COUNT")?;
    // The size is unknown until the report: refuse as the eligibility check does.
    check_quota(&state, user, 1).await?;
    let issuing = check_unreported(&state, user, count).await?;
    let primary = state.buckets.primary();
    let rows: Vec<TempObject> = (0..count)
        .map(|_| temp_object(&state, user, new_object_key(user)))
        .collect();
    state.temp_writer.insert(rows.clone()).await?;
    drop(issuing);
    let urls = rows
        .into_iter()
        .map(|t| UploadUrl {
            url: primary
                .presign_put(&t.object_key, None, None, state.policy.presign_ttl)
                .to_string(),
            object_key: t.object_key,
        })
        .collect();
    state.metrics.upload_urls_issued("single", u64::from(count));
    Ok(Json(UploadUrls { urls }))
}

/// The object to upload: its exact length and MD5, both signed into the URL.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadUrlRequest {
    /// The object's length in bytes; at most `max-file-size` (10 GiB by default).
    #[schema(minimum = 0, maximum = 10_737_418_240_i64)]
    #[serde(deserialize_with = "whole_i64")]
    content_length: i64,
    /// The object's MD5.
    #[serde(rename = "contentMD5")]
    #[schema(value_type = crate::api::doc::Md5)]
    content_md5: String,
}

fn check_size(state: &AppState, field: &str, size: i64) -> Result<u64, ApiError> {
    let size = u64::try_from(size).map_err(|_| {
        ApiError::bad_request(
            "INVALID_SIZE",
            format!("{field} must not be negative, got {size}"),
        )
    })?;
    if size > state.policy.max_file_size {
        return Err(ApiError::TooLarge {
            size,
            max: state.policy.max_file_size,
        });
    }
    Ok(size)
}

fn check_md5(field: &str, b64: &str) -> Result<[u8; 16], ApiError> {
    decode_md5(b64).map_err(|why| {
        ApiError::bad_request("INVALID_MD5", format!("{field}: {}", truncate(&why, 120)))
    })
}

/// `POST /files/upload-url`: one presigned PUT with Content-Length and Content-MD5
/// signed in, so the bucket itself refuses any other bytes.
#[utoipa::path(
    post,
    path = "/files/upload-url",
    operation_id = "uploadUrl",
    summary = "A presigned URL with the length and MD5 signed in",
    description = "Issues one fresh object key with a presigned PUT URL whose Content-Length and Content-MD5 are signed, so the bucket itself refuses any other bytes.",
    tag = "uploads",
    request_body(content = UploadUrlRequest, description = "Read as JSON whatever its Content-Type."),
    security(("authToken" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The URL; PUT the bytes with `Content-MD5` set to the base64 MD5.", body = UploadUrl),
        (status = 400, description = "The body is not this JSON, or a field is wrong: `INVALID_JSON`, `INVALID_BODY`, `INVALID_SIZE`, `INVALID_MD5`.", body = crate::api::error::ErrorBody),
        (status = 401, response = crate::api::doc::Unauthorized),
        (status = 402, response = crate::api::doc::NoSubscription),
        (status = 413, description = "`contentLength` is over `max-file-size`: `FILE_TOO_LARGE`; or the body is over 2 MiB: `BODY_TOO_LARGE`.", body = crate::api::error::ErrorBody),
        (status = 426, response = crate::api::doc::StorageFull),
        (status = 429, response = crate::api::doc::TooManyRequests),
        (status = 503, response = crate::api::doc::Unavailable),
    )
)]
pub async fn upload_url(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppJson(req): AppJson<UploadUrlRequest>,
) -> Result<Json<UploadUrl>, ApiError> {
    limit_upload_urls(&state, user, 1, "INVALID_BODY")?;
    let size = check_size(&state, "contentLength", req.content_length)?;
    let md5 = check_md5("contentMD5", &req.content_md5)?;
    check_quota(&state, user, req.content_length).await?;
    let issuing = check_unreported(&state, user, 1).await?;
    // Signed as the base64 a Content-MD5 header carries, however it was declared.
    let md5_header = content_md5(&md5);
    let mut row = temp_object(&state, user, new_object_key(user));
    row.declared_size = Some(req.content_length);
    row.declared_md5 = Some(md5_header.clone());
    row.expected_etag = Some(single_part_etag(&md5));
    state.temp_writer.insert(vec![row.clone()]).await?;
    drop(issuing);
    let url = state.buckets.primary().presign_put(
        &row.object_key,
        Some(size),
        Some(&md5_header),
        state.policy.presign_ttl,
    );
    state.metrics.upload_urls_issued("single", 1);
    Ok(Json(UploadUrl {
        object_key: row.object_key,
        url: url.to_string(),
    }))
}

/// Starts a multipart upload on the primary and presigns its parts and completion.
async fn issue_multipart(
    state: &AppState,
    mut row: TempObject,
    parts: &[(Option<u64>, Option<String>)],
) -> Result<MultipartUrls, ApiError> {
    let primary = state.buckets.primary();
    let upload_id = primary.create_multipart_upload(&row.object_key).await?;
    row.upload_id = Some(upload_id.clone());
    state.temp_writer.insert(vec![row.clone()]).await?;
    let ttl = state.policy.presign_ttl;
    let part_urls = parts
        .iter()
        .zip(1u16..)
        .map(|((len, md5), n)| {
            primary
                .presign_upload_part(&row.object_key, &upload_id, n, *len, md5.as_deref(), ttl)
                .to_string()
        })
        .collect();
    let complete_url = primary
        .presign_complete(&row.object_key, &upload_id, ttl)
        .to_string();
    state.metrics.upload_urls_issued("multipart", 1);
    Ok(MultipartUrls {
        object_key: row.object_key,
        part_urls,
        complete_url,
    })
}

/// `GET /files/multipart-upload-urls?count=P`: a multipart upload of P parts.
#[utoipa::path(
    get,
    path = "/files/multipart-upload-urls",
    operation_id = "multipartUploadUrls",
    summary = "A multipart upload of `count` parts (v1)",
    description = "Starts a multipart upload on the hot bucket and presigns `count` part URLs and the completion URL. The part URLs sign neither length nor checksum. The user's quota is checked as `GET /files/upload-eligibility` checks it.",
    tag = "uploads",
    params(
        ("count" = u32, Query, minimum = 1, maximum = 2048, description = "How many parts: 1 to as many as `max-file-size` makes in parts of 5 MiB. The maximum shown is the default max-file-size's (10 GiB); a larger max-file-size allows more, up to 10,000."),
    ),
    security(("authToken" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The upload's URLs, wrapped in `urls`; the part URLs sign no length or checksum.", body = MultipartUrlsResponse),
        (status = 400, description = "`count` is missing or out of range, or asks for more URLs than `rate-limit.upload-urls-per-minute` allows in a minute: `INVALID_COUNT`, `INVALID_QUERY`.", body = crate::api::error::ErrorBody),
        (status = 401, response = crate::api::doc::Unauthorized),
        (status = 402, response = crate::api::doc::NoSubscription),
        (status = 426, response = crate::api::doc::StorageFull),
        (status = 429, response = crate::api::doc::TooManyRequests),
        (status = 503, response = crate::api::doc::Unavailable),
    )
)]
pub async fn multipart_upload_urls(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppQuery(q): AppQuery<CountQuery>,
) -> Result<Json<MultipartUrlsResponse>, ApiError> {
    let count = parse_multipart_count(q.count.as_deref(), state.policy.max_file_size)?;
    // Every part's URL and the completion's.
    limit_upload_urls(&state, user, count.saturating_add(1), "INVALID_COUNT")?;
    check_quota(&state, user, 1).await?;
    let issuing = check_unreported(&state, user, 1).await?;
    let row = temp_object(&state, user, new_object_key(user));
    let parts = vec![(None, None); count as usize];
    let urls = issue_multipart(&state, row, &parts).await?;
    drop(issuing);
    Ok(Json(MultipartUrlsResponse { urls }))
}

/// The object to upload in parts: its length, the length of every part but the
/// last, and each part's MD5. `partMd5s` must list exactly
/// ⌈contentLength / partLength⌉ parts (one for an empty object), and parts other
/// than the last must be at least 5 MiB.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MultipartUploadUrlRequest {
    /// The object's length in bytes; at most `max-file-size` (10 GiB by default).
    #[schema(minimum = 0, maximum = 10_737_418_240_i64)]
    #[serde(deserialize_with = "whole_i64")]
    content_length: i64,
    /// The length of every part but the last, in bytes.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "whole_i64")]
    part_length: i64,
    /// Each part's MD5, in part order.
    // At most MAX_PARTS: the attribute takes only a literal, and a test holds it to
    // the constant. A doc comment here would land in the OpenAPI document.
    #[schema(value_type = Vec<crate::api::doc::Md5>, min_items = 1, max_items = 10000)]
    part_md5s: Vec<String>,
}

/// `POST /files/multipart-upload-url`: a multipart upload whose every part has its
/// length and MD5 signed in. The answer is the bare object, as Ente's.
#[utoipa::path(
    post,
    path = "/files/multipart-upload-url",
    operation_id = "multipartUploadUrl",
    summary = "A multipart upload with each part's length and MD5 signed in (v2)",
    description = "Starts a multipart upload on the hot bucket and presigns one URL per part, each with its Content-Length and Content-MD5 signed, and the completion URL. The answer is the bare object, not wrapped in `urls`.",
    tag = "uploads",
    request_body(content = MultipartUploadUrlRequest, description = "Read as JSON whatever its Content-Type."),
    security(("authToken" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The upload's URLs, bare; PUT each part with `Content-MD5` set to its base64 MD5.", body = MultipartUrls),
        (status = 400, description = "The body is not this JSON, or its fields disagree, or it lists more parts than `rate-limit.upload-urls-per-minute` allows URLs in a minute: `INVALID_JSON`, `INVALID_BODY`, `INVALID_SIZE`, `INVALID_PARTS`, `INVALID_MD5`.", body = crate::api::error::ErrorBody),
        (status = 401, response = crate::api::doc::Unauthorized),
        (status = 402, response = crate::api::doc::NoSubscription),
        (status = 413, description = "`contentLength` is over `max-file-size`: `FILE_TOO_LARGE`; or the body is over 2 MiB: `BODY_TOO_LARGE`.", body = crate::api::error::ErrorBody),
        (status = 426, response = crate::api::doc::StorageFull),
        (status = 429, response = crate::api::doc::TooManyRequests),
        (status = 503, response = crate::api::doc::Unavailable),
    )
)]
pub async fn multipart_upload_url(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppJson(req): AppJson<MultipartUploadUrlRequest>,
) -> Result<Json<MultipartUrls>, ApiError> {
    let size = check_size(&state, "contentLength", req.content_length)?;
    let part_count = req.part_md5s.len();
    if part_count == 0 || part_count > MAX_PARTS as usize {
        return Err(ApiError::bad_request(
            "INVALID_PARTS",
            format!("partMd5s must list 1 to {MAX_PARTS} parts, got {part_count}"),
        ));
    }
    let part_length = u64::try_from(req.part_length)
        .ok()
        .filter(|l| *l > 0)
        .ok_or_else(|| ApiError::bad_request("INVALID_PARTS", "partLength must be positive"))?;
    if part_count > 1 && part_length < MIN_PART_SIZE {
        return Err(ApiError::bad_request(
            "INVALID_PARTS",
            format!(
                "partLength must be at least {MIN_PART_SIZE} bytes when there is more than one part"
            ),
        ));
    }
    let expected_parts = size.div_ceil(part_length).max(1);
    if expected_parts != part_count as u64 {
        return Err(ApiError::bad_request(
            "INVALID_PARTS",
            format!(
                "contentLength {size} in parts of {part_length} makes {expected_parts} parts, but partMd5s lists {part_count}"
            ),
        ));
    }
    let mut digests = Vec::with_capacity(part_count);
    for (i, md5) in req.part_md5s.iter().enumerate() {
        digests.push(check_md5(&format!("partMd5s[{i}]"), md5)?);
    }
    let last_len = size - part_length * (part_count as u64 - 1);
    let parts: Vec<(Option<u64>, Option<String>)> = digests
        .iter()
        .enumerate()
        .map(|(i, md5)| {
            let len = if i + 1 == part_count {
                last_len
            } else {
                part_length
            };
            (Some(len), Some(content_md5(md5)))
        })
        .collect();
    // Every part's URL and the completion's.
    let urls = u32::try_from(part_count).map_or(u32::MAX, |n| n.saturating_add(1));
    limit_upload_urls(&state, user, urls, "INVALID_PARTS")?;
    check_quota(&state, user, req.content_length).await?;
    let issuing = check_unreported(&state, user, 1).await?;
    let mut row = temp_object(&state, user, new_object_key(user));
    row.declared_size = Some(req.content_length);
    row.expected_etag = Some(multipart_etag(&digests));
    let urls = issue_multipart(&state, row, &parts).await?;
    drop(issuing);
    Ok(Json(urls))
}

/// Takes the `urls` a request signs from `user`'s `rate-limit.upload-urls-per-minute`,
/// all or none: 429 while the budget holds fewer, 400 with `code` when the request
/// signs more than a whole minute's budget (it could never pass).
fn limit_upload_urls(
    state: &AppState,
    user: i64,
    urls: u32,
    code: &'static str,
) -> Result<(), ApiError> {
    let limiter = &state.limits.upload_urls;
    if !limiter.fits(urls) {
        return Err(ApiError::bad_request(
            code,
            format!(
                "this request would sign {urls} URLs, more than rate-limit.upload-urls-per-minute ({}) allows in a minute; ask for fewer (larger parts, or fewer keys at a time)",
                limiter.per_minute()
            ),
        ));
    }
    limiter.take_n(&user, urls).map_err(|wait| {
        if limiter.newly_exhausted(&user).is_some() {
            tracing::warn!(
                user_id = user,
                "a user used up its upload-URL budget (rate-limit.upload-urls-per-minute); it is refused until the budget refills"
            );
        }
        super::extract::rate_limited(state, "upload_urls", wait)
    })
}

/// Refuses `asked` more keys when `user` would then hold more issued, unreported,
/// unexpired keys than `quota.max-unreported-keys` (429, `Retry-After` when the
/// soonest expires). Otherwise holds `user`'s issuing lock: keep it until the new
/// keys are recorded, so parallel requests cannot pass the cap together.
async fn check_unreported(
    state: &AppState,
    user: i64,
    asked: u32,
) -> Result<tokio::sync::MutexGuard<'_, ()>, ApiError> {
    let guard = state.issuing.lock(user).await;
    let max = state.policy.max_unreported_keys;
    if max == 0 {
        return Ok(guard);
    }
    let now = now_millis();
    let (held, soonest) = db::uploads::count_unreported(&state.db, user, now).await?;
    let after = u64::try_from(held)
        .unwrap_or(0)
        .saturating_add(u64::from(asked));
    if after <= max {
        return Ok(guard);
    }
    let wait_ms = soonest.map_or(0, |at| at.saturating_sub(now)).max(0);
    state.metrics.rate_limited("unreported_keys");
    Err(ApiError::TooManyUnreported {
        held,
        asked,
        max,
        retry_after: u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1),
    })
}

/// Counts a quota refusal and makes it the answer.
fn refused(state: &AppState, refusal: QuotaRefusal) -> ApiError {
    state.metrics.quota_refused(refusal.code());
    ApiError::Quota(refusal)
}

/// Refuses an upload of `size` bytes that `user`'s quota does not allow now (402 or
/// 426, as Ente answers). Advisory: the report checks again as it records the bytes.
async fn check_quota(state: &AppState, user: i64, size: i64) -> Result<(), ApiError> {
    accounts::check_upload(&state.db, &state.quota, user, size)
        .await?
        .map_err(|refusal| refused(state, refusal))
}

/// `GET /files/upload-eligibility`: whether the user may upload now, by the same
/// check as the uploads: 402 with a quota of 0, 426 once the usage has reached the
/// quota and its overflow. Ente's mobile app asks before each batch.
#[utoipa::path(
    get,
    path = "/files/upload-eligibility",
    operation_id = "uploadEligibility",
    summary = "Whether the user may upload now",
    description = "Answers from the user's quota, as the upload routes check it: 200 while at least one more byte fits within the quota and `quota.overflow-bytes`; 402 `NO_ACTIVE_SUBSCRIPTION` when the quota is 0; 426 `STORAGE_LIMIT_EXCEEDED` when the usage has reached it. Ente's mobile app asks before each batch.",
    tag = "uploads",
    security(("authToken" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The user may upload.", body = crate::api::doc::Eligibility),
        (status = 401, response = crate::api::doc::Unauthorized),
        (status = 402, response = crate::api::doc::NoSubscription),
        (status = 426, response = crate::api::doc::StorageFull),
        (status = 429, response = crate::api::doc::TooManyRequests),
        (status = 503, response = crate::api::doc::Unavailable),
    )
)]
pub async fn upload_eligibility(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    check_quota(&state, user, 1).await?;
    Ok(Json(Value::Object(Map::new())))
}

/// One uploaded object of a report.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportedObject {
    /// A key museum issued to this user and that is not yet reported in another file.
    #[schema(min_length = 1, max_length = 1024)]
    object_key: String,
    /// The uploaded length in bytes, if the client wants it checked.
    #[schema(minimum = 0, maximum = 10_737_418_240_i64)]
    #[serde(default, deserialize_with = "optional_whole_i64")]
    size: Option<i64>,
    /// Opaque to museum: kept and returned as sent.
    decryption_header: Option<String>,
}

/// `POST /files`: the objects to record, and the client's opaque fields (Ente's File
/// body). Only `file.objectKey` is required.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReportRequest {
    file: ReportedObject,
    thumbnail: Option<ReportedObject>,
    #[serde(flatten)]
    fields: ClientFields,
}

/// The fields of Ente's File that museum keeps without reading them. Objects are kept
/// as JSON; strings byte for byte, since the client decrypts them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientFields {
    #[serde(
        rename = "collectionID",
        default,
        deserialize_with = "optional_whole_i64",
        skip_serializing_if = "Option::is_none"
    )]
    collection_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encrypted_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_decryption_nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    magic_metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub_magic_metadata: Option<Map<String, Value>>,
}

/// What a file record keeps of a report, as JSON in `files.attributes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredFields {
    #[serde(flatten)]
    fields: ClientFields,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_decryption_header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thumbnail_decryption_header: Option<String>,
}

/// The answer to `POST /files`: the recorded File in Ente's shape, with `id`,
/// `ownerID`, `info` and `updationTime` (µs) filled in. `file.id` and `thumbnail.id`
/// are museum's own: the object ids `/files/{id}` takes (`file.id` equals `id`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnteFile {
    id: i64,
    #[serde(rename = "ownerID")]
    owner_id: i64,
    #[serde(flatten)]
    fields: ClientFields,
    file: FileObject,
    #[serde(skip_serializing_if = "Option::is_none")]
    thumbnail: Option<FileObject>,
    is_deleted: bool,
    updation_time: i64,
    info: FileInfo,
}

/// A recorded object of a File.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileObject {
    id: i64,
    object_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    decryption_header: Option<String>,
    size: i64,
}

/// The recorded sizes, in bytes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    file_size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    thumb_size: Option<i64>,
}

/// What checking one reported key found.
enum Checked {
    /// Verified and ready to record.
    Fresh(NewObject),
    /// Recorded earlier by an identical report.
    Already(StoredObject),
}

/// `POST /files`: verifies each reported object with a HEAD (size, and MD5 where
/// declared) and records them all in one transaction with the client's fields.
/// Repeating an identical report returns the same File and records nothing new.
#[utoipa::path(
    post,
    path = "/files",
    operation_id = "reportUpload",
    summary = "Report an upload, which records it",
    description = "Verifies each reported object with a HEAD on the hot bucket (its size, and its MD5 where one was declared) and records the objects and the client's fields (Ente's File) in one transaction; copies to the other buckets are then queued. Fields museum does not read are kept and returned as sent. Repeating an identical report answers the same File and records nothing new.",
    tag = "uploads",
    request_body(content = ReportRequest, description = "Read as JSON whatever its Content-Type."),
    security(("authToken" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Recorded (or already recorded by an identical report); copies to the other buckets are queued.", body = EnteFile),
        (status = 400, description = "The body is not this JSON, a field is wrong, or the uploaded object is not what was declared: `INVALID_JSON`, `INVALID_BODY`, `INVALID_REPORT`, `INVALID_OBJECT_KEY`, `INVALID_SIZE`, `SIZE_MISMATCH`, `CHECKSUM_MISMATCH`.", body = crate::api::error::ErrorBody),
        (status = 401, response = crate::api::doc::Unauthorized),
        (status = 404, description = "No upload URL was issued to this user for the key, it expired, or nothing was uploaded at it: `NOT_FOUND`.", body = crate::api::error::ErrorBody),
        (status = 409, description = "An object was already reported in another file, or with other fields: `ALREADY_COMMITTED`; or it was recorded, and its bucket now holds other bytes: `OBJECT_TAMPERED`.", body = crate::api::error::ErrorBody),
        (status = 402, response = crate::api::doc::NoSubscription),
        (status = 410, description = "An object was recorded, then deleted (`DELETE /files/{id}`): `FILE_DELETED`.", body = crate::api::error::ErrorBody),
        (status = 413, description = "The object is over `max-file-size`: `FILE_TOO_LARGE`; or the body is over 2 MiB: `BODY_TOO_LARGE`.", body = crate::api::error::ErrorBody),
        (status = 426, response = crate::api::doc::StorageFull),
        (status = 429, response = crate::api::doc::TooManyRequests),
        (status = 503, description = "The hot bucket did not answer the HEAD that verifies the upload: `OBJECT_SIZE_FETCH_FAILED`; or the database or storage is unavailable: `DB_UNAVAILABLE`, `STORAGE_UNAVAILABLE`, `TIMEOUT`.", body = crate::api::error::ErrorBody),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    AppJson(req): AppJson<ReportRequest>,
) -> Result<Json<EnteFile>, ApiError> {
    let result = report_inner(&state, user, req).await;
    let label = match &result {
        Ok(_) => "ok",
        Err(ApiError::SizeMismatch { .. }) => "size_mismatch",
        Err(ApiError::ChecksumMismatch { .. }) => "checksum_mismatch",
        Err(ApiError::Tampered(_)) => "tampered",
        Err(ApiError::NotFound(_)) => "not_found",
        Err(ApiError::FileDeleted) => "deleted",
        Err(ApiError::Quota(_)) => "over_quota",
        Err(_) => "error",
    };
    state.metrics.upload_committed(label);
    result.map(Json)
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

async fn report_inner(
    state: &AppState,
    user: i64,
    req: ReportRequest,
) -> Result<EnteFile, ApiError> {
    if let Some(thumb) = &req.thumbnail
        && thumb.object_key == req.file.object_key
    {
        return Err(ApiError::bad_request(
            "INVALID_REPORT",
            "file and thumbnail must be different objects",
        ));
    }
    let stored_fields = StoredFields {
        fields: req.fields,
        file_decryption_header: req.file.decryption_header.clone(),
        thumbnail_decryption_header: req
            .thumbnail
            .as_ref()
            .and_then(|t| t.decryption_header.clone()),
    };
    let new_file = NewFile {
        attributes: serde_json::to_string(&stored_fields)
            .map_err(|e| ApiError::Internal(Box::new(e)))?,
        updation_time: now_micros(),
    };
    let reported: Vec<&ReportedObject> = std::iter::once(&req.file)
        .chain(req.thumbnail.as_ref())
        .collect();
    let mut checked = Vec::with_capacity(reported.len());
    for object in &reported {
        checked.push(check_reported(state, user, object).await?);
    }
    let mut fresh = Vec::new();
    let mut already = Vec::new();
    for c in checked {
        match c {
            Checked::Fresh(o) => fresh.push(o),
            Checked::Already(o) => already.push(o),
        }
    }
    let (objects, record) = match (already.first(), fresh.is_empty()) {
        (Some(file), true) => {
            let thumbnail = already.get(1).map(|t| t.id);
            let record =
                db::uploads::ensure_file(&state.db, file.id, user, thumbnail, &new_file).await?;
            (already, record)
        }
        (None, false) => commit(state, user, &fresh, &new_file).await?,
        _ => {
            return Err(ApiError::Conflict(
                "one of these objects was already reported in another file; report each object in one file only".to_owned(),
            ));
        }
    };
    let thumbnail = objects.get(1);
    if record.thumbnail_id != thumbnail.map(|t| t.id) || record.attributes != new_file.attributes {
        return Err(ApiError::Conflict(
            "this file was already reported with another thumbnail or other fields; a repeated report must be identical".to_owned(),
        ));
    }
    ente_file(&record, &objects[0], thumbnail)
}

/// Records `fresh` (file, then thumbnail) with its file record, and wakes replication.
async fn commit(
    state: &AppState,
    user: i64,
    fresh: &[NewObject],
    file: &NewFile,
) -> Result<(Vec<StoredObject>, FileRecord), ApiError> {
    let (committed, record) =
        match db::uploads::commit_file(&state.db, fresh, file, |usage, own, size| {
            state.quota.check(usage, own, size)
        })
        .await?
        {
            FileCommit::Recorded { objects, record } => (objects, record),
            FileCommit::OverQuota(refusal) => return Err(refused(state, refusal)),
        };
    if committed.iter().any(|c| matches!(c, Committed::New(_))) {
        // Copies are queued; let an idle replication worker start now.
        state.replication_wakeup.notify_one();
    }
    let mut objects = Vec::with_capacity(committed.len());
    for c in committed {
        let object = match c {
            Committed::Existing(o) if o.deleted_at.is_some() => {
                return Err(ApiError::FileDeleted);
            }
            Committed::New(o) | Committed::Existing(o) => o,
            Committed::Gone(key) => {
                return Err(ApiError::NotFound(format!(
                    "upload key {key} expired and was cleaned up; ask for a new upload URL"
                )));
            }
        };
        if object.user_id != user {
            return Err(ApiError::NotFound(
                "no upload URL was issued to you for this key".to_owned(),
            ));
        }
        objects.push(object);
    }
    let record =
        record.ok_or_else(|| ApiError::Internal("report produced no file record".into()))?;
    Ok((objects, record))
}

/// The File in Ente's shape, from its record and objects.
fn ente_file(
    record: &FileRecord,
    file: &StoredObject,
    thumbnail: Option<&StoredObject>,
) -> Result<EnteFile, ApiError> {
    let stored: StoredFields =
        serde_json::from_str(&record.attributes).map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(EnteFile {
        id: record.id,
        owner_id: record.owner_id,
        fields: stored.fields,
        file: FileObject {
            id: file.id,
            object_key: file.object_key.clone(),
            decryption_header: stored.file_decryption_header,
            size: file.size,
        },
        thumbnail: thumbnail.map(|t| FileObject {
            id: t.id,
            object_key: t.object_key.clone(),
            decryption_header: stored.thumbnail_decryption_header,
            size: t.size,
        }),
        is_deleted: file.deleted_at.is_some(),
        updation_time: record.updation_time,
        info: FileInfo {
            file_size: file.size,
            thumb_size: thumbnail.map(|t| t.size),
        },
    })
}

async fn check_reported(
    state: &AppState,
    user: i64,
    object: &ReportedObject,
) -> Result<Checked, ApiError> {
    let key = object.object_key.as_str();
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ApiError::bad_request(
            "INVALID_OBJECT_KEY",
            format!("objectKey must be 1 to {MAX_KEY_LEN} bytes"),
        ));
    }
    if let Some(size) = object.size {
        check_size(state, "size", size)?;
    }
    let not_issued =
        || ApiError::NotFound("no upload URL was issued to you for this key".to_owned());
    if !is_key_of_user(key, user) {
        return Err(not_issued());
    }
    let Some(temp) = db::uploads::find_temp_object(&state.db, key).await? else {
        return match db::uploads::find_object_by_key(&state.db, key).await? {
            Some(o) if o.user_id == user && o.deleted_at.is_some() => Err(ApiError::FileDeleted),
            Some(o) if o.user_id == user => {
                if object.size.is_none_or(|s| s == o.size) {
                    super::integrity::recheck(state, &o).await?;
                    Ok(Checked::Already(o))
                } else {
                    Err(ApiError::Conflict(format!(
                        "this key was already reported with {} bytes",
                        o.size
                    )))
                }
            }
            _ => Err(not_issued()),
        };
    };
    if temp.user_id != user {
        return Err(not_issued());
    }
    let bucket = state.buckets.get(&temp.bucket_id).ok_or_else(|| {
        ApiError::Internal(format!("bucket {} is no longer configured", temp.bucket_id).into())
    })?;
    let meta = head_with_retries(bucket, key).await?;
    if meta.size > state.policy.max_file_size {
        return Err(ApiError::TooLarge {
            size: meta.size,
            max: state.policy.max_file_size,
        });
    }
    for expected in [object.size, temp.declared_size].into_iter().flatten() {
        if u64::try_from(expected) != Ok(meta.size) {
            return Err(ApiError::SizeMismatch {
                expected,
                actual: meta.size,
            });
        }
    }
    if let Some(expected) = &temp.expected_etag {
        let actual = meta.etag.clone().unwrap_or_default();
        if !actual.eq_ignore_ascii_case(expected) {
            if looks_like_md5_etag(&actual) {
                return Err(ApiError::ChecksumMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            tracing::warn!(
                bucket = bucket.id(),
                "the bucket's ETag is not an MD5; the declared MD5 was enforced by the signed upload only"
            );
        }
    }
    let md5 = temp
        .declared_md5
        .as_deref()
        .and_then(|b64| decode_md5(b64).ok())
        .map(hex::encode);
    let copy_targets = state
        .buckets
        .all()
        .map(|b| b.id().to_owned())
        .filter(|id| *id != temp.bucket_id)
        .collect();
    Ok(Checked::Fresh(NewObject {
        copy_targets,
        object_key: key.to_owned(),
        user_id: user,
        bucket_id: temp.bucket_id,
        size: i64::try_from(meta.size).unwrap_or(i64::MAX),
        md5,
        etag: meta.etag,
        created_at: now_millis(),
    }))
}

/// HEADs the object, retrying briefly: a just-finished upload may need a moment to
/// show, and a flaky endpoint a second try.
async fn head_with_retries(
    bucket: &crate::storage::BucketClient,
    key: &str,
) -> Result<ObjectMeta, ApiError> {
    let mut delays = HEAD_RETRY_DELAYS.iter();
    loop {
        match bucket.head(key).await {
            Ok(meta) => return Ok(meta),
            Err(e @ (StorageError::NotFound { .. } | StorageError::Unavailable { .. })) => {
                match delays.next() {
                    Some(delay) => tokio::time::sleep(*delay).await,
                    None if matches!(e, StorageError::NotFound { .. }) => {
                        return Err(ApiError::NotFound(
                        "nothing was uploaded at this key; PUT the bytes to the upload URL first".to_owned(),
                    ));
                    }
                    None => return Err(ApiError::ObjectSizeFetchFailed(e)),
                }
            }
            Err(e) => return Err(ApiError::ObjectSizeFetchFailed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_most_parts_are_max_parts() {
        let schema =
            serde_json::to_value(<MultipartUploadUrlRequest as utoipa::PartialSchema>::schema())
                .unwrap();
        assert_eq!(schema["properties"]["partMd5s"]["maxItems"], MAX_PARTS);
    }

    #[test]
    fn counts_must_be_within_bounds() {
        assert_eq!(parse_count(Some("1"), 50).ok(), Some(1));
        assert_eq!(parse_count(Some("50"), 50).ok(), Some(50));
        for bad in ["0", "51", "-1", "abc", "", "1e3", "99999999999999999999"] {
            assert!(parse_count(Some(bad), 50).is_err(), "{bad}");
        }
        assert!(parse_count(None, 50).is_err());
    }

    #[test]
    fn unsized_multipart_counts_are_bounded_as_sized_uploads_are() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(max_unsized_parts(10 * 1024 * MIB), 2048);
        assert_eq!(max_unsized_parts(50 * MIB), 10);
        assert_eq!(max_unsized_parts(50 * MIB + 1), 11);
        assert_eq!(max_unsized_parts(0), 1);
        assert_eq!(u64::from(max_unsized_parts(u64::MAX)), MAX_PARTS);
        assert!(parse_multipart_count(Some("10"), 50 * MIB).is_ok());
        assert!(parse_multipart_count(Some("11"), 50 * MIB).is_err());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}

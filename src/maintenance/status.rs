//! Where each object stands: every tier's state, in AWS's replication words where
//! they fit. Served to the owner at `GET /files/{id}/status` and to operators by
//! `museum replicate status --object`; both read it here.

use serde::Serialize;
use utoipa::ToSchema;

use crate::db::copies::{self, CopyRow, CopyState, ErrorCode};
use crate::db::{Db, DbError, objects};

/// One object's replication status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// The object's id.
    pub id: i64,
    /// The object as a whole, as AWS reports a source object: `COMPLETED` once every
    /// tier is verified, `FAILED` if a copy failed for good, else `PENDING`.
    #[schema(example = "COMPLETED")]
    pub replication_status: &'static str,
    /// When a scrub found no intact tier left (RFC 3339); absent while any is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_at: Option<String>,
    /// The bucket the upload went to first, then each replica tier.
    pub tiers: Vec<TierStatus>,
}

/// One tier of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TierStatus {
    /// The bucket ID (`b2-eu-cen`, `wasabi-eu-central-2-v3`, `scw-eu-fr-v3`).
    pub bucket: String,
    /// `SOURCE` for the bucket the upload went to, `REPLICA` for a copy.
    #[schema(example = "REPLICA")]
    pub role: &'static str,
    /// `COMPLETED` (verified), `PENDING` (queued, or waiting to retry), `COPYING`
    /// (a worker holds it now) or `FAILED` (failed for good; see `reason`).
    #[schema(example = "COMPLETED")]
    pub status: &'static str,
    /// When the tier was last proved to hold the recorded bytes (RFC 3339): by the
    /// report or the copy that wrote it, or since by a scrub.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// Copy attempts so far (0 for a source never restored).
    pub attempts: i64,
    /// Why the last attempt failed, or why the tier is being restored, as a stable
    /// code: `source_missing`, `source_changed`, `target_refused`, `unavailable`,
    /// `checksum_mismatch`, `interrupted`, `restoring` or `other`. The error itself
    /// is for operators (`museum replicate status --object`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "target_refused")]
    pub reason: Option<ErrorCode>,
    /// The full error behind `reason`, never sent to the object's owner: only
    /// [`ObjectStatus::for_operators`] shows it.
    #[serde(skip)]
    #[schema(ignore)]
    pub error: Option<String>,
}

impl ObjectStatus {
    /// The status as operators see it: each tier's `error` beside its `reason`.
    pub fn for_operators(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(tiers) = value.get_mut("tiers").and_then(|t| t.as_array_mut()) {
            for (shown, tier) in tiers.iter_mut().zip(&self.tiers) {
                if let (Some(shown), Some(error)) = (shown.as_object_mut(), &tier.error) {
                    shown.insert("error".to_owned(), error.clone().into());
                }
            }
        }
        value
    }
}

/// Milliseconds since the epoch as RFC 3339, when given and in range.
pub(crate) fn rfc3339(millis: Option<i64>) -> Option<String> {
    millis
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
}

fn copy_status(c: &CopyRow) -> &'static str {
    match c.state {
        CopyState::Done => "COMPLETED",
        CopyState::Copying => "COPYING",
        CopyState::Failed => "FAILED",
        CopyState::Pending => "PENDING",
    }
}

/// A tier that has a copy row, as `role`.
fn tier_of_copy(c: &CopyRow, role: &'static str) -> TierStatus {
    let done = c.state == CopyState::Done;
    TierStatus {
        bucket: c.bucket_id.clone(),
        role,
        status: copy_status(c),
        verified_at: rfc3339(c.verified_at.max(c.copied_at).filter(|_| done)),
        attempts: c.attempts,
        // A row from before codes has an error without one.
        reason: c
            .error_code
            .or(c.last_error.as_ref().map(|_| ErrorCode::Other))
            .filter(|_| !done),
        error: c.last_error.clone().filter(|_| !done),
    }
}

/// The status of object `id` if it exists and is not deleted, with the user it
/// belongs to.
pub async fn object_status(db: &Db, id: i64) -> Result<Option<(i64, ObjectStatus)>, DbError> {
    let Some(objects::LiveObject {
        user_id: user,
        bucket_id: source,
        created_at,
        verified_at,
        lost_at,
    }) = objects::find_live_object(db, id).await?
    else {
        return Ok(None);
    };
    let copies = copies::list_copies(db, id).await?;
    let mut tiers = Vec::with_capacity(copies.len() + 1);
    // The source tier: as the report verified it, unless a restore row speaks for it.
    match copies.iter().find(|c| c.bucket_id == source) {
        Some(c) => tiers.push(tier_of_copy(c, "SOURCE")),
        None => tiers.push(TierStatus {
            bucket: source.clone(),
            role: "SOURCE",
            status: "COMPLETED",
            verified_at: rfc3339(Some(verified_at.unwrap_or(created_at))),
            attempts: 0,
            reason: None,
            error: None,
        }),
    }
    tiers.extend(
        copies
            .iter()
            .filter(|c| c.bucket_id != source)
            .map(|c| tier_of_copy(c, "REPLICA")),
    );
    let replication_status = if tiers.iter().any(|t| t.status == "FAILED") {
        "FAILED"
    } else if tiers.iter().all(|t| t.status == "COMPLETED") {
        "COMPLETED"
    } else {
        "PENDING"
    };
    Ok(Some((
        user,
        ObjectStatus {
            id,
            replication_status,
            lost_at: rfc3339(lost_at),
            tiers,
        },
    )))
}

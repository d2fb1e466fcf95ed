//! Reads of recorded objects that check what they read. Every tier a read may use
//! is HEADed and compared with the size and ETag recorded for it; a tier holding
//! other bytes is reported as tampered and never served, and once a verified tier
//! has been found, each damaged or missing tier is queued for a copy from it.

use std::sync::Arc;

use super::error::ApiError;
use super::state::AppState;
use crate::db::copies::{VerifiedTier, list_copies, priority, queue_restore, verified_tiers};
use crate::db::now_millis;
use crate::db::uploads::StoredObject;
use crate::observe::events::{self, FoundBy};
use crate::storage::{BucketClient, StorageError};

/// Storage classes whose objects must be restored before they can be read.
const ARCHIVE_CLASSES: [&str; 2] = ["GLACIER", "DEEP_ARCHIVE"];

/// A verified tier of an object and the client to reach it.
pub(super) struct Tier {
    pub bucket: Arc<BucketClient>,
    pub recorded: VerifiedTier,
}

impl Tier {
    /// The recorded size, in bytes.
    pub fn size(&self) -> u64 {
        u64::try_from(self.recorded.size).unwrap_or(0)
    }

    pub fn etag(&self) -> Option<&str> {
        self.recorded.etag.as_deref()
    }
}

/// What a HEAD found in one tier.
pub(super) enum Found {
    /// The recorded object.
    Intact,
    /// The recorded object, in an archive storage class: not readable directly.
    Archived,
    Missing,
    /// Other bytes: why they are not the recorded ones, and their size.
    Tampered(String, u64),
    Unavailable(StorageError),
}

/// The verified tiers of `object` that are configured, in the order reads try them.
pub(super) async fn tiers_of(
    state: &AppState,
    object: &StoredObject,
) -> Result<Vec<Tier>, ApiError> {
    let copies = list_copies(&state.db, object.id).await?;
    let tiers = verified_tiers(
        &object.bucket_id,
        object.size,
        object.etag.as_deref(),
        &copies,
    );
    let order = state
        .buckets
        .read_order(tiers.iter().map(|t| t.bucket_id.clone()).collect());
    Ok(order
        .iter()
        .filter_map(|id| {
            let bucket = state.buckets.get(id)?;
            let recorded = tiers.iter().find(|t| t.bucket_id == *id)?;
            Some(Tier {
                bucket: Arc::clone(bucket),
                recorded: recorded.clone(),
            })
        })
        .collect())
}

/// HEADs `key` in `tier` and compares it with the record.
pub(super) async fn check(tier: &Tier, key: &str) -> Found {
    match tier.bucket.head(key).await {
        Ok(meta) => match meta.differs_from(tier.size(), tier.etag()) {
            Some(detail) => Found::Tampered(detail, meta.size),
            None if meta
                .storage_class
                .as_deref()
                .is_some_and(|c| ARCHIVE_CLASSES.contains(&c)) =>
            {
                Found::Archived
            }
            None => Found::Intact,
        },
        Err(StorageError::NotFound { .. }) => Found::Missing,
        Err(e) => Found::Unavailable(e),
    }
}

/// Reports that `bucket` holds other bytes than object `object_id`'s record.
pub(super) fn tampered(
    state: &AppState,
    object_id: i64,
    bucket: &str,
    found_by: FoundBy,
    detail: &str,
) {
    events::tampered(Some(&state.metrics), bucket, object_id, found_by, detail);
}

/// Charges `object`'s user for the bytes past its record that `bucket`, found
/// holding `found_size` bytes, keeps (see [`charge_overwrite`]). Best effort: the
/// read that found them goes on either way.
///
/// [`charge_overwrite`]: crate::db::uploads::charge_overwrite
pub(super) async fn charge(state: &AppState, object: &StoredObject, bucket: &str, found_size: u64) {
    match crate::db::uploads::charge_overwrite(&state.db, object.id, bucket, found_size).await {
        Ok(0) => {}
        Ok(bytes) => tracing::info!(
            object_id = object.id,
            user_id = object.user_id,
            bucket,
            bytes,
            "an overwrite past the recorded size was charged to the user's usage"
        ),
        Err(e) => {
            tracing::warn!(object_id = object.id, bucket, error.message = %e, "could not charge an overwrite to the user's usage");
        }
    }
}

/// Queues a copy into each `broken` tier (bucket, reason) from a verified one, and
/// wakes the replicator. Best effort: the read that found them goes on either way,
/// and the next read or `replicate verify` finds them again.
pub(super) async fn restore(state: &AppState, object_id: i64, broken: &[(String, String)]) {
    let mut queued = false;
    for (bucket, reason) in broken {
        match queue_restore(
            &state.db,
            object_id,
            bucket,
            reason,
            now_millis(),
            priority::LIVE,
        )
        .await
        {
            Ok(q) => queued |= q,
            Err(e) => {
                tracing::warn!(object_id, bucket = %bucket, error.message = %e, "could not queue a restore");
            }
        }
    }
    if queued {
        state.replication_wakeup.notify_one();
    }
}

/// Re-checks a recorded object when its report is repeated: the bucket the report
/// put it in must still hold what the report verified (size and ETag). A tier that
/// lost it or holds other bytes is queued for restore from a verified copy; other
/// bytes are an error either way, since the repeat cannot be answered as the first
/// report was.
pub(super) async fn recheck(state: &AppState, object: &StoredObject) -> Result<(), ApiError> {
    let tiers = tiers_of(state, object).await?;
    let Some(source) = tiers
        .iter()
        .find(|t| t.recorded.bucket_id == object.bucket_id)
    else {
        return Ok(());
    };
    let replicas = tiers.len() > 1;
    let broken = |reason: String| vec![(object.bucket_id.clone(), reason)];
    match check(source, &object.object_key).await {
        Found::Intact | Found::Archived => Ok(()),
        Found::Unavailable(e) => Err(ApiError::ObjectSizeFetchFailed(e)),
        Found::Missing if replicas => {
            restore(state, object.id, &broken("restore: missing at a repeated report".to_owned())).await;
            Ok(())
        }
        Found::Missing => Err(ApiError::NotFound(
            "nothing is stored at this key any more; PUT the same bytes to its upload URL again, then report it".to_owned(),
        )),
        Found::Tampered(detail, found_size) => {
            tampered(state, object.id, &object.bucket_id, FoundBy::Report, &detail);
            charge(state, object, &object.bucket_id, found_size).await;
            if replicas {
                restore(state, object.id, &broken(format!("restore: {detail}"))).await;
                Err(ApiError::Tampered(format!(
                    "the bytes at this key were replaced after its report ({detail}); downloads keep serving the recorded bytes from a verified copy, which is being restored"
                )))
            } else {
                Err(ApiError::Tampered(format!(
                    "the bytes at this key were replaced after its report ({detail}), and no verified copy exists: the recorded bytes are lost; upload the file again under a new key"
                )))
            }
        }
    }
}

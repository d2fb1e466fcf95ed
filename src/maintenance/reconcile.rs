//! `museum reconcile`: every bucket's listing against the database. It finds objects
//! a bucket holds that no record knows (older than a grace period, and never the key
//! of an upload still under way), and records whose bytes no bucket holds. Listings
//! are read a page at a time and checked against the database a page at a time;
//! what it keeps besides is one bit per object ID (which records some bucket
//! listed), so its memory does not grow with the buckets.

use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use crate::db::{Db, DbError, now_millis, objects, uploads};
use crate::storage::{BucketClient, Buckets, Listed, StorageError};
use crate::time::millis;

/// Listed objects checked against the database in one round.
const PAGE: usize = 500;

/// What to do about what is found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileOptions {
    /// Delete the objects no record knows (older than `grace`), within `fence`.
    pub apply: bool,
    /// Objects written more recently than this are left alone, known or not.
    pub grace: Duration,
    /// How much `apply` may delete before it suspects the database, not the bucket.
    pub fence: Fence,
}

/// The limits past which `--apply` deletes nothing in a bucket: a database that is
/// not the one these buckets belong to (a wrong URL, an unset `ENVIRONMENT`, a
/// restored but empty copy) makes every object look unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    /// A bucket with at most this many unknown objects is never refused.
    pub max_unknown: u64,
    /// Past `max_unknown`, the share of a bucket's listing that may be unknown.
    pub max_unknown_share: f64,
    /// Buckets the operator named to be emptied of unknown objects whatever the
    /// count (`--allow-mass-delete`); a database with no objects at all is refused
    /// even for these.
    pub allow: Vec<String>,
}

impl Default for Fence {
    fn default() -> Self {
        Self {
            max_unknown: 10,
            max_unknown_share: 0.1,
            allow: Vec::new(),
        }
    }
}

/// Why `--apply` deleted nothing in a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Refusal {
    /// The database records no object at all.
    EmptyDatabase,
    /// More unknown objects than the fence allows.
    TooManyUnknown,
}

/// One finding, as `--json` prints it (one per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Finding {
    /// A bucket holds `key`, which no record and no upload under way knows.
    #[serde(rename_all = "camelCase")]
    Unknown {
        bucket: String,
        key: String,
        size: u64,
        last_modified: String,
        /// Whether `--apply` deleted it.
        deleted: bool,
    },
    /// No bucket lists the recorded object `object_id`.
    #[serde(rename_all = "camelCase")]
    Missing {
        object_id: i64,
        key: String,
        size: i64,
    },
}

/// One bucket's listing, summed up.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketSummary {
    pub bucket: String,
    /// Objects listed, and their bytes.
    pub listed: u64,
    pub listed_bytes: u64,
    /// Listed objects no record knows, older than the grace period, and their bytes.
    pub unknown: u64,
    pub unknown_bytes: u64,
    /// Of those, deleted by `--apply`.
    pub deleted: u64,
    /// Listed objects no record knows yet, written within the grace period.
    pub recent: u64,
    /// Listed objects that are uploads under way (their keys are issued, not reported).
    pub uploading: u64,
    /// Why `--apply` deleted nothing here, if it refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

impl BucketSummary {
    /// Whether `fence` lets `--apply` delete this bucket's unknown objects, given
    /// whether the database records any object at all.
    fn refusal(&self, fence: &Fence, database_empty: bool) -> Option<Refusal> {
        if self.unknown == 0 {
            return None;
        }
        if database_empty {
            return Some(Refusal::EmptyDatabase);
        }
        if fence.allow.contains(&self.bucket) {
            return None;
        }
        let share = self.unknown as f64 / self.listed.max(1) as f64;
        (self.unknown > fence.max_unknown && share > fence.max_unknown_share)
            .then_some(Refusal::TooManyUnknown)
    }
}

/// What a reconcile found.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub buckets: Vec<BucketSummary>,
    /// Live records checked, and those no bucket listed.
    pub records: u64,
    pub missing: u64,
    pub missing_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("listing a bucket failed; nothing was concluded about its objects")]
    Storage(#[from] StorageError),
}

/// One bit per object ID: which records some bucket listed.
struct Seen(Vec<u64>);

impl Seen {
    fn new(max_id: i64) -> Self {
        let words = usize::try_from(max_id.max(0) / 64 + 1).unwrap_or(1);
        Self(vec![0; words])
    }

    fn set(&mut self, id: i64) {
        if let Ok(i) = usize::try_from(id)
            && let Some(word) = self.0.get_mut(i / 64)
        {
            *word |= 1 << (i % 64);
        }
    }

    fn get(&self, id: i64) -> bool {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.0.get(i / 64).map(|w| w & (1 << (i % 64)) != 0))
            .unwrap_or(false)
    }
}

/// Lists every present bucket and compares it with the database; `found` sees each
/// finding as it is made. Records created after the reconcile started are not
/// judged (their bytes may have landed after their bucket was listed).
pub async fn reconcile(
    db: &Db,
    buckets: &Buckets,
    options: &ReconcileOptions,
    mut found: impl FnMut(&Finding),
    mut progress: impl FnMut(u64),
) -> Result<ReconcileReport, ReconcileError> {
    let started = now_millis();
    let max_id = objects::max_object_id(db).await?;
    let database_empty = max_id.is_none();
    let mut seen = Seen::new(max_id.unwrap_or(0));
    let mut report = ReconcileReport::default();
    let cutoff = started - millis(options.grace);
    for bucket in buckets.all() {
        // A first listing only counts; with --apply, a second one deletes what is
        // still unknown, and only where the fence lets it.
        let mut summary = BucketSummary {
            bucket: bucket.id().to_owned(),
            ..BucketSummary::default()
        };
        let mut pass = Pass {
            delete: false,
            seen: &mut seen,
            summary: &mut summary,
        };
        let mut keep = |f: &Finding| {
            if !options.apply {
                found(f);
            }
        };
        list_bucket(db, bucket, cutoff, &mut pass, &mut keep, &mut progress).await?;
        if options.apply {
            summary.refused = summary.refusal(&options.fence, database_empty);
            if summary.refused.is_none() && summary.unknown > 0 {
                let mut again = BucketSummary {
                    bucket: bucket.id().to_owned(),
                    ..BucketSummary::default()
                };
                let mut pass = Pass {
                    delete: true,
                    seen: &mut seen,
                    summary: &mut again,
                };
                list_bucket(db, bucket, cutoff, &mut pass, &mut found, &mut progress).await?;
                summary = again;
            }
        }
        report.buckets.push(summary);
    }
    // Records no listing held, in ID order, a page at a time.
    let mut after = 0i64;
    loop {
        let rows =
            objects::live_objects_after(db, after, started, i64::try_from(PAGE).unwrap_or(500))
                .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for r in rows {
            report.records += 1;
            if !seen.get(r.id) {
                report.missing += 1;
                report.missing_bytes += u64::try_from(r.size).unwrap_or(0);
                found(&Finding::Missing {
                    object_id: r.id,
                    key: r.object_key,
                    size: r.size,
                });
            }
        }
    }
    Ok(report)
}

/// One listing of a bucket: whether it deletes what it finds unknown, and where it
/// keeps what it saw.
struct Pass<'a> {
    delete: bool,
    seen: &'a mut Seen,
    summary: &'a mut BucketSummary,
}

/// Lists `bucket` page by page and sorts each page.
async fn list_bucket(
    db: &Db,
    bucket: &BucketClient,
    cutoff: i64,
    pass: &mut Pass<'_>,
    found: &mut impl FnMut(&Finding),
    progress: &mut impl FnMut(u64),
) -> Result<(), ReconcileError> {
    let mut pages = bucket.list().chunks(PAGE);
    while let Some(page) = pages.next().await {
        let page = page.into_iter().collect::<Result<Vec<Listed>, _>>()?;
        progress(page.len() as u64);
        check_page(db, bucket, &page, cutoff, pass, found).await?;
    }
    Ok(())
}

/// Sorts one page of a listing into known records, uploads under way, recent and
/// unknown objects. Issued keys are read before records, so that a report that
/// commits in between is seen as one or the other, never as neither.
async fn check_page(
    db: &Db,
    bucket: &BucketClient,
    page: &[Listed],
    cutoff: i64,
    pass: &mut Pass<'_>,
    found: &mut impl FnMut(&Finding),
) -> Result<(), ReconcileError> {
    let (seen, summary) = (&mut *pass.seen, &mut *pass.summary);
    let keys: Vec<&str> = page.iter().map(|l| l.key.as_str()).collect();
    let uploading = uploads::issued_keys(db, &keys).await?;
    let recorded = objects::ids_by_key(db, &keys).await?;
    for listed in page {
        summary.listed += 1;
        summary.listed_bytes += listed.size;
        if let Some(id) = recorded.get(&listed.key) {
            seen.set(*id);
            continue;
        }
        if uploading.contains(&listed.key) {
            summary.uploading += 1;
            continue;
        }
        if listed.last_modified_ms > cutoff {
            summary.recent += 1;
            continue;
        }
        summary.unknown += 1;
        summary.unknown_bytes += listed.size;
        let deleted = pass.delete && bucket.delete(&listed.key).await.is_ok();
        if deleted {
            summary.deleted += 1;
        }
        found(&Finding::Unknown {
            bucket: bucket.id().to_owned(),
            key: listed.key.clone(),
            size: listed.size,
            last_modified: crate::maintenance::status::rfc3339(Some(listed.last_modified_ms))
                .unwrap_or_else(|| listed.last_modified_ms.to_string()),
            deleted,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Seen;

    #[test]
    fn seen_holds_one_bit_per_id_and_ignores_ids_out_of_range() {
        let mut seen = Seen::new(130);
        for id in [0, 63, 64, 130] {
            seen.set(id);
        }
        seen.set(-1);
        seen.set(10_000);
        assert!(seen.get(63) && seen.get(64) && seen.get(130) && seen.get(0));
        assert!(!seen.get(1) && !seen.get(65) && !seen.get(10_000) && !seen.get(-1));
        assert_eq!(seen.0.len(), 3);
    }
}

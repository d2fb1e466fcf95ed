//! Operator events: one log line each, with a stable `event` field to alert on, and
//! a counter. They name buckets and object IDs, never keys, users or URLs.

use crate::metrics::Metrics;

/// Which read found a tier holding other bytes than the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    Download,
    Report,
    Copy,
    Verify,
}

impl FoundBy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Report => "report",
            Self::Copy => "copy",
            Self::Verify => "verify",
        }
    }
}

/// `event = "tampered"`: `bucket` holds other bytes under object `object_id`'s key
/// than were verified for it (`detail` says how they differ). Counted in
/// `museum_tampered_total{bucket}` when `metrics` is given; a one-shot command that
/// nobody scrapes passes `None` and counts in its own report.
pub fn tampered(
    metrics: Option<&Metrics>,
    bucket: &str,
    object_id: i64,
    found_by: FoundBy,
    detail: &str,
) {
    if let Some(m) = metrics {
        m.tampered(bucket);
    }
    tracing::error!(
        event = "tampered",
        bucket,
        object_id,
        found_by = found_by.as_str(),
        detail,
        "a bucket holds other bytes than the object's record; they are never served or copied"
    );
}

//! Operator events: one log line each, with a stable `event` field to alert on, and
//! a count in `museum_events_total{event}`. They name buckets and object IDs, never
//! keys, users or URLs. When `events.webhook-url` is set, the same lines are posted
//! there as JSON (see [`crate::observe::telemetry`]).

use crate::observe::metrics::Metrics;

/// The stable names, as they appear in the `event` field and the counter's label.
pub mod name {
    /// A bucket holds other bytes than an object's record.
    pub const TAMPERED: &str = "tampered";
    /// No tier of an object holds its recorded bytes any more.
    pub const LOST: &str = "lost";
    /// A copy failed for good (it is marked failed and waits for `replicate retry`).
    pub const COPY_FAILED: &str = "copy_failed";
    /// A live copy was not verified within `replication.late-after` of being queued.
    pub const COPY_LATE: &str = "copy_late";
}

/// Which read found a tier holding other bytes than the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    Download,
    Report,
    Copy,
    Verify,
    Scrub,
}

impl FoundBy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Report => "report",
            Self::Copy => "copy",
            Self::Verify => "verify",
            Self::Scrub => "scrub",
        }
    }
}

/// `event = "tampered"`: `bucket` holds other bytes under object `object_id`'s key
/// than were verified for it (`detail` says how they differ). Counted in
/// `museum_tampered_total{bucket}` and `museum_events_total` when `metrics` is given;
/// a one-shot command that nobody scrapes passes `None` and counts in its own report.
pub fn tampered(
    metrics: Option<&Metrics>,
    bucket: &str,
    object_id: i64,
    found_by: FoundBy,
    detail: &str,
) {
    if let Some(m) = metrics {
        m.tampered(bucket);
        m.event(name::TAMPERED);
    }
    tracing::error!(
        event = name::TAMPERED,
        bucket,
        object_id,
        found_by = found_by.as_str(),
        detail,
        "a bucket holds other bytes than the object's record; they are never served or copied"
    );
}

/// `event = "lost"`: a scrub found no tier of object `object_id` holding its
/// recorded bytes (`detail` names what each tier answered). The object stays
/// recorded and listed by `museum replicate status` until a tier is found intact
/// again or it is deleted.
pub fn lost(metrics: Option<&Metrics>, object_id: i64, detail: &str) {
    if let Some(m) = metrics {
        m.event(name::LOST);
    }
    tracing::error!(
        event = name::LOST,
        object_id,
        detail,
        "no tier holds the object's recorded bytes any more; it cannot be restored from museum's buckets"
    );
}

/// `event = "copy_failed"`: the copy of `object_id` to `destination` failed with an
/// error that retrying will not heal, and is marked failed.
pub fn copy_failed(
    metrics: Option<&Metrics>,
    object_id: i64,
    destination: &str,
    attempts: i64,
    error: &str,
) {
    if let Some(m) = metrics {
        m.event(name::COPY_FAILED);
    }
    tracing::error!(
        event = name::COPY_FAILED,
        object_id,
        destination,
        attempts,
        error.message = error,
        "a copy failed for good; fix the cause, then run `museum replicate retry`"
    );
}

/// `event = "copy_late"`: the live copy of `object_id` to `destination` is still not
/// verified `lag_seconds` after it was queued (`verified` false: found by the late
/// watch), or was verified that late (`verified` true), past
/// `replication.late-after`. Each copy is reported once.
pub fn copy_late(
    metrics: Option<&Metrics>,
    object_id: i64,
    destination: &str,
    lag_seconds: f64,
    verified: bool,
) {
    if let Some(m) = metrics {
        m.event(name::COPY_LATE);
    }
    if verified {
        tracing::warn!(
            event = name::COPY_LATE,
            object_id,
            destination,
            lag_seconds,
            verified,
            "a copy was verified later than replication.late-after allows"
        );
    } else {
        tracing::warn!(
            event = name::COPY_LATE,
            object_id,
            destination,
            lag_seconds,
            verified,
            "a copy is still not verified replication.late-after after it was queued; museum replicate status shows why"
        );
    }
}

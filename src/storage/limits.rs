//! S3's limits on a multipart upload, one copy each, for every side of the crate that
//! plans or checks parts: the upload API, the replication copy, config validation and
//! the embedded server. It imports nothing, so `config` can use it without a circle
//! through the rest of `storage`.

/// Most parts in one multipart upload; part numbers run from 1 to this.
pub const MAX_PARTS: u64 = 10_000;

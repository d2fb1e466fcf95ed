//! One streaming copy: a single GET of the source feeds a PUT (or the parts of a
//! multipart upload already started) to every target at once, computing MD5s on the
//! way; then each target is verified by the ETag it answered (or, lacking an MD5
//! one, by a HEAD). A part (the whole object, for a single PUT) is read into
//! memory, then the same chunks go to every target without copying: memory stays
//! bounded by one part per copy, whatever the size.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest, Md5};

use crate::db::copies::ErrorCode;
use crate::storage::presign::{looks_like_md5_etag, multipart_etag};
use crate::storage::watch::Activity;
use crate::storage::{BucketClient, ByteStream, StorageError, limits::MAX_PARTS};
use crate::throttle::Throttle;

/// S3's largest part.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Why a copy (or one target of it) failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source failed.
    #[error("reading the source from {bucket}: {source}")]
    Source {
        bucket: String,
        #[source]
        source: StorageError,
    },
    /// The source's bytes are not the recorded object's (its length or MD5 differ).
    #[error("the source in {bucket} does not match the recorded object: {detail}")]
    SourceMismatch { bucket: String, detail: String },
    /// Writing to the target failed.
    #[error("writing to {bucket}: {source}")]
    Target {
        bucket: String,
        #[source]
        source: StorageError,
    },
    /// The target holds something other than what was sent.
    #[error("verifying the copy in {bucket}: {detail}")]
    Verify { bucket: String, detail: String },
    /// No tier holds the recorded bytes any more (`detail` says why): each was
    /// damaged or missing, at least one damaged, or the only ones are being written.
    /// No retry can bring them back.
    #[error("no verified copy exists to copy the recorded bytes from: {detail}")]
    NoVerifiedSource { detail: String },
    /// The object is larger than S3's 10,000 parts of at most 5 GiB can carry.
    #[error("{size} bytes do not fit in {MAX_PARTS} parts of at most 5 GiB")]
    TooLarge { size: u64 },
}

impl CopyError {
    /// Errors that retrying will not heal: a missing bucket, refused credentials
    /// (any 401 or 403), a storage class the target does not support.
    pub fn is_permanent(&self) -> bool {
        let storage = match self {
            Self::Source { source, .. } | Self::Target { source, .. } => source,
            Self::NoVerifiedSource { .. } | Self::TooLarge { .. } => return true,
            _ => return false,
        };
        match storage {
            StorageError::Refused { status, code, .. } => {
                matches!(status, 401 | 403)
                    || matches!(
                        code.as_str(),
                        "NoSuchBucket"
                            | "AccessDenied"
                            | "InvalidAccessKeyId"
                            | "SignatureDoesNotMatch"
                            | "AllAccessDisabled"
                            | "InvalidBucketName"
                            | "InvalidStorageClass"
                    )
            }
            StorageError::Config { .. } => true,
            _ => false,
        }
    }

    /// The stable reason code an object's owner sees for this failure; the full
    /// chain goes to the log and to operators.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NoVerifiedSource { .. }
            | Self::Source {
                source: StorageError::NotFound { .. },
                ..
            } => ErrorCode::SourceMissing,
            Self::SourceMismatch { .. }
            | Self::Source {
                source: StorageError::Changed { .. },
                ..
            } => ErrorCode::SourceChanged,
            Self::Verify { .. }
            | Self::Target {
                source: StorageError::Changed { .. },
                ..
            } => ErrorCode::ChecksumMismatch,
            Self::Target {
                source: StorageError::Refused { .. } | StorageError::Config { .. },
                ..
            } => ErrorCode::TargetRefused,
            Self::Source {
                source: StorageError::Unavailable { .. },
                ..
            }
            | Self::Target {
                source: StorageError::Unavailable { .. },
                ..
            } => ErrorCode::Unavailable,
            Self::Source { .. } | Self::Target { .. } | Self::TooLarge { .. } => ErrorCode::Other,
        }
    }

    /// Whether the source holds other bytes than the record: its ETag, length or
    /// MD5 differ. Retrying that source will not heal it; another verified tier may.
    pub fn is_source_damaged(&self) -> bool {
        matches!(
            self,
            Self::SourceMismatch { .. }
                | Self::Source {
                    source: StorageError::Changed { .. },
                    ..
                }
        )
    }

    /// Whether the source object was not found.
    pub fn is_source_missing(&self) -> bool {
        matches!(
            self,
            Self::Source {
                source: StorageError::NotFound { .. },
                ..
            }
        )
    }
}

/// A verified copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub size: u64,
    pub etag: Option<String>,
}

/// The outcome of one source read: the MD5 computed, and each target's result.
#[derive(Debug)]
pub struct CopyReport {
    /// Hex MD5 of the bytes read.
    pub md5: String,
    /// Per target bucket ID: verified, or why not.
    pub results: Vec<(String, Result<Verified, CopyError>)>,
}

/// What to copy.
#[derive(Debug, Clone)]
pub struct CopyJob<'a> {
    pub key: &'a str,
    pub size: u64,
    /// Hex MD5 the bytes must have, when known.
    pub expected_md5: Option<&'a str>,
    /// Above this size the copy is a multipart upload.
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// Where the bytes the copy moves are counted (the lease heartbeat reads it).
    pub activity: &'a Activity,
    /// The process's budget for bytes held in memory by copies.
    pub memory: &'a Memory,
    /// The process's byte rate for reading sources, if limited.
    pub throttle: Option<&'a Throttle>,
}

/// How many bytes all copies of a process may hold in memory at once
/// (`replication.memory-limit`). A copy reserves each part before reading it and
/// gives it back once every target has it, so many small copies and a few large
/// ones share one bound. A part larger than the whole budget waits for all of it.
#[derive(Debug, Clone)]
pub struct Memory {
    permits: Arc<tokio::sync::Semaphore>,
    total: u32,
}

/// The unit of the memory budget.
const MEMORY_UNIT: u64 = 1024;

impl Memory {
    pub fn new(bytes: u64) -> Self {
        // Units are counted in a u32 (what `acquire_many` takes), far below the
        // semaphore's own limit.
        let total = u32::try_from(bytes.div_ceil(MEMORY_UNIT))
            .unwrap_or(u32::MAX)
            .max(1);
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until `len` bytes (at most the whole budget) may be held.
    async fn hold(&self, len: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let units = u32::try_from(len.div_ceil(MEMORY_UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total);
        Arc::clone(&self.permits)
            .acquire_many_owned(units)
            .await
            .ok()
    }
}

impl CopyJob<'_> {
    /// Whether each target gets a multipart upload rather than one PUT.
    pub fn is_multipart(&self) -> bool {
        self.size > self.multipart_threshold
    }
}

/// A bucket to copy to and, for a multipart copy, the upload started there for it.
#[derive(Debug, Clone)]
pub struct Target {
    pub bucket: Arc<BucketClient>,
    pub upload_id: Option<String>,
}

/// The part size of a multipart copy of `size` bytes: `configured`, doubled until the
/// object fits in S3's 10,000 parts. Start-up checks that `replication.part-size`
/// covers `max-file-size`, so doubling only happens for objects recorded under a
/// larger limit (or a smaller part size) than today's.
fn part_size_for(size: u64, configured: u64) -> Result<u64, CopyError> {
    let mut part_size = configured.max(1);
    while size.div_ceil(part_size) > MAX_PARTS {
        part_size = part_size.saturating_mul(2);
    }
    if part_size > MAX_PART_SIZE.max(configured) {
        return Err(CopyError::TooLarge { size });
    }
    Ok(part_size)
}

/// Reads a source stream in pieces of at most a given length.
struct Reader {
    stream: ByteStream,
    leftover: Option<Bytes>,
    bucket: String,
}

impl Reader {
    async fn next_up_to(&mut self, max: u64) -> Result<Bytes, CopyError> {
        let mut chunk = match self.leftover.take() {
            Some(c) => c,
            None => loop {
                match self.stream.next().await {
                    Some(Ok(c)) if c.is_empty() => continue,
                    Some(Ok(c)) => break c,
                    Some(Err(e)) => {
                        return Err(CopyError::Source {
                            bucket: self.bucket.clone(),
                            source: e,
                        });
                    }
                    // The answer promised the recorded length: a short body is a
                    // broken read, not other bytes.
                    None => {
                        return Err(CopyError::Source {
                            bucket: self.bucket.clone(),
                            source: StorageError::Unavailable {
                                bucket: self.bucket.clone(),
                                source: "the body ended before its announced length".into(),
                            },
                        });
                    }
                }
            },
        };
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if chunk.len() > max {
            self.leftover = Some(chunk.split_off(max));
        }
        Ok(chunk)
    }
}

/// One target's progress through the copy.
struct Sink {
    bucket: Arc<BucketClient>,
    upload_id: Option<String>,
    /// Each part's ETag, in order; for a single PUT, the object's.
    etags: Vec<String>,
    /// The ETag the target answered for the whole object (its PUT, or the
    /// completion of its multipart upload), if it gave one.
    answered: Option<String>,
    error: Option<CopyError>,
}

/// Copies `job.key` from `source` to every target with one read of the source, then
/// verifies each target. The read is conditional on `source_etag`, the ETag recorded
/// for that tier, so a replaced source is refused before any byte reaches a target.
/// An `Err` means the source could not be read correctly, and no target may be
/// trusted; the targets' multipart uploads are then aborted (best effort). A
/// multipart copy needs an upload started on each target beforehand.
pub async fn copy_object(
    source: &BucketClient,
    source_etag: Option<&str>,
    targets: &[Target],
    job: &CopyJob<'_>,
) -> Result<CopyReport, CopyError> {
    let source = &source.reporting_to(job.activity);
    let source_error = |e| CopyError::Source {
        bucket: source.id().to_owned(),
        source: e,
    };
    let multipart = job.is_multipart();
    let part_size = if multipart {
        part_size_for(job.size, job.part_size)?
    } else {
        job.size
    };
    let (len, stream) = source
        .get_stream_if_match(job.key, source_etag)
        .await
        .map_err(source_error)?;
    if len != job.size {
        return Err(CopyError::SourceMismatch {
            bucket: source.id().to_owned(),
            detail: format!("it is {len} bytes, the record says {}", job.size),
        });
    }
    let mut reader = Reader {
        stream,
        leftover: None,
        bucket: source.id().to_owned(),
    };
    let mut sinks: Vec<Sink> = targets
        .iter()
        .map(|t| Sink {
            bucket: Arc::clone(&t.bucket),
            upload_id: t.upload_id.clone(),
            etags: Vec::new(),
            answered: None,
            error: (multipart && t.upload_id.is_none()).then(|| CopyError::Target {
                bucket: t.bucket.id().to_owned(),
                source: StorageError::Protocol {
                    bucket: t.bucket.id().to_owned(),
                    message: "no multipart upload was started for the copy".to_owned(),
                },
            }),
        })
        .collect();

    let result = pump(&mut reader, &mut sinks, job, multipart.then_some(part_size)).await;
    let (whole_md5, part_md5s) = match result {
        Ok(digests) => digests,
        Err(e) => {
            abort_uploads(&sinks, job.key, true).await;
            return Err(e);
        }
    };
    let md5 = hex::encode(whole_md5);
    if let Some(expected) = job.expected_md5
        && !expected.eq_ignore_ascii_case(&md5)
    {
        abort_uploads(&sinks, job.key, true).await;
        return Err(CopyError::SourceMismatch {
            bucket: source.id().to_owned(),
            detail: format!("its MD5 is {md5}, the record says {expected}"),
        });
    }

    if multipart {
        for sink in sinks.iter_mut().filter(|s| s.error.is_none()) {
            let upload_id = sink.upload_id.clone().unwrap_or_default();
            match sink
                .bucket
                .complete_multipart_upload(job.key, &upload_id, &sink.etags)
                .await
            {
                Ok(etag) => sink.answered = etag,
                Err(e) => {
                    sink.error = Some(CopyError::Target {
                        bucket: sink.bucket.id().to_owned(),
                        source: e,
                    });
                }
            }
        }
        abort_uploads(&sinks, job.key, false).await;
    }

    let expected_etag = if multipart {
        multipart_etag(&part_md5s)
    } else {
        md5.clone()
    };
    let mut results = Vec::with_capacity(sinks.len());
    for sink in sinks {
        let id = sink.bucket.id().to_owned();
        let outcome = match sink.error {
            Some(e) => Err(e),
            None => {
                verify(
                    &sink.bucket,
                    job.key,
                    job.size,
                    &expected_etag,
                    sink.answered.as_deref(),
                )
                .await
            }
        };
        results.push((id, outcome));
    }
    Ok(CopyReport { md5, results })
}

/// Streams the source into every healthy sink, part by part: in parts of
/// `part_size` for a multipart copy, as one piece otherwise. Each part is read
/// whole, then sent to every target at once as the same shared bytes; the next part
/// is read while the last one is being sent, so a copy holds at most two parts.
/// Returns the whole object's MD5 and, for a multipart copy, each part's MD5.
async fn pump(
    reader: &mut Reader,
    sinks: &mut [Sink],
    job: &CopyJob<'_>,
    part_size: Option<u64>,
) -> Result<([u8; 16], Vec<[u8; 16]>), CopyError> {
    let multipart = part_size.is_some();
    let mut whole = Md5::new();
    let mut part_md5s = Vec::new();
    let parts = part_size.map_or(1, |p| job.size.div_ceil(p));
    let mut sending: Option<PartSends> = None;
    for part in 0..parts {
        let part_len = match part_size {
            Some(p) => p.min(job.size - part * p),
            None => job.size,
        };
        // At most MAX_PARTS by `part_size_for`; a number that does not fit is refused,
        // never clamped onto another part.
        let part_number = u16::try_from(part + 1)
            .ok()
            .filter(|n| u64::from(*n) <= MAX_PARTS)
            .ok_or(CopyError::TooLarge { size: job.size })?;
        let read = async {
            if let Some(throttle) = job.throttle {
                // Paced, not stalled: the lease is kept while the part waits its turn.
                let _waiting = job.activity.waiting();
                throttle.take(part_len).await;
            }
            // Waiting for memory another copy holds is waiting, not stalling: the
            // lease is kept, or another worker would take the copy over and then
            // wait for the same memory.
            let held = {
                let _waiting = job.activity.waiting();
                job.memory.hold(part_len).await
            };
            read_part(reader, part_len, &mut whole, multipart)
                .await
                .map(|(chunks, md5)| (chunks, md5, held))
        };
        let (chunks, part_md5, held) = match sending.take() {
            Some(sends) => {
                let (read, sent) = futures_util::join!(read, sends);
                record_sends(sinks, sent, multipart);
                read?
            }
            None => read.await?,
        };
        if let Some(md5) = part_md5 {
            part_md5s.push(md5);
        }
        sending = Some(send_part(sinks, job.key, part_number, chunks, held));
    }
    if let Some(sends) = sending {
        record_sends(sinks, sends.await, multipart);
    }
    Ok((whole.finalize().into(), part_md5s))
}

/// The sends of one part to every healthy target, each with its sink's index.
type PartSends = futures_util::future::JoinAll<
    std::pin::Pin<
        Box<
            dyn std::future::Future<Output = (usize, crate::storage::Result<Option<String>>)>
                + Send,
        >,
    >,
>;

/// Reads the next `len` bytes, adding them to `whole`; returns them and, for a
/// multipart copy, their own MD5 (a single PUT's part is the whole object: hashing
/// it twice would only cost).
async fn read_part(
    reader: &mut Reader,
    len: u64,
    whole: &mut Md5,
    multipart: bool,
) -> Result<(Vec<Bytes>, Option<[u8; 16]>), CopyError> {
    let mut part_md5 = multipart.then(Md5::new);
    let mut chunks = Vec::new();
    let mut remaining = len;
    while remaining > 0 {
        let chunk = reader.next_up_to(remaining).await?;
        remaining -= chunk.len() as u64;
        whole.update(&chunk);
        if let Some(p) = &mut part_md5 {
            p.update(&chunk);
        }
        chunks.push(chunk);
    }
    Ok((chunks, part_md5.map(|p| p.finalize().into())))
}

/// Starts sending `chunks` as part `part_number` (or as the whole object) to every
/// sink that has not failed; each send shares the same bytes.
fn send_part(
    sinks: &[Sink],
    key: &str,
    part_number: u16,
    chunks: Vec<Bytes>,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
) -> PartSends {
    // The part's memory is given back once every target has it (the last send to
    // end drops the last clone).
    let held = Arc::new(held);
    let sends = sinks
        .iter()
        .enumerate()
        .filter(|(_, s)| s.error.is_none())
        .map(|(i, sink)| {
            let chunks = chunks.clone();
            let bucket = Arc::clone(&sink.bucket);
            let upload_id = sink.upload_id.clone();
            let key = key.to_owned();
            let held = Arc::clone(&held);
            Box::pin(async move {
                let _held = held;
                let sent = match upload_id {
                    Some(id) => bucket.upload_part(&key, &id, part_number, chunks).await,
                    None => bucket.put_object(&key, chunks).await,
                };
                (i, sent)
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        })
        .collect::<Vec<_>>();
    futures_util::future::join_all(sends)
}

/// Files what each target answered to a part: its ETag, or why it failed.
fn record_sends(
    sinks: &mut [Sink],
    sent: Vec<(usize, crate::storage::Result<Option<String>>)>,
    multipart: bool,
) {
    for (i, sent) in sent {
        let sink = &mut sinks[i];
        match sent {
            Ok(etag) if multipart => sink.etags.push(etag.unwrap_or_default()),
            Ok(etag) => sink.answered = etag,
            Err(e) => {
                sink.error = Some(CopyError::Target {
                    bucket: sink.bucket.id().to_owned(),
                    source: e,
                });
            }
        }
    }
}

/// Aborts the multipart uploads of sinks that failed, or of every sink when `all`;
/// best effort, since the next attempt aborts the upload recorded with its copy.
async fn abort_uploads(sinks: &[Sink], key: &str, all: bool) {
    for sink in sinks.iter().filter(|s| all || s.error.is_some()) {
        if let Some(id) = &sink.upload_id
            && let Err(e) = sink.bucket.abort_multipart_upload(key, id).await
        {
            tracing::warn!(bucket = sink.bucket.id(), error.message = %e, "could not abort a failed multipart copy");
        }
    }
}

/// What the ETag a target answered to its write proves: `Ok` with it when it is
/// MD5-derived and the one the bytes sent give, `Err` with it when it is
/// MD5-derived and another, `None` when it is absent or not MD5-derived (SSE-C,
/// some providers), so a HEAD must tell.
fn proved_by_answer<'a>(
    answered: Option<&'a str>,
    expected_etag: &str,
) -> Option<Result<&'a str, &'a str>> {
    let etag = answered.filter(|e| looks_like_md5_etag(e))?;
    Some(if etag.eq_ignore_ascii_case(expected_etag) {
        Ok(etag)
    } else {
        Err(etag)
    })
}

/// Proves the target holds the bytes sent. An MD5-derived ETag answered by the PUT
/// (or the completion) that equals the one the bytes imply is the proof: a HEAD
/// would tell nothing new. Without such an ETag, the target is HEADed: its size
/// must match, and an MD5-derived ETag there must be the expected one. Any other
/// MD5-derived ETag, answered or found, fails the copy.
async fn verify(
    bucket: &BucketClient,
    key: &str,
    size: u64,
    expected_etag: &str,
    answered: Option<&str>,
) -> Result<Verified, CopyError> {
    let mismatch = |etag: &str, how: &str| CopyError::Verify {
        bucket: bucket.id().to_owned(),
        detail: format!("{how} ETag {etag}, the bytes sent give {expected_etag}"),
    };
    // Under SSE-C the ETag is the provider's own, not an MD5: the bytes were proved
    // by the SHA-256 every PUT signs, which the provider checks, and the copy by its
    // size. Its ETag is recorded, so that later reads can tell if it changes.
    let answered = answered.filter(|_| !bucket.sse_c());
    match proved_by_answer(answered, expected_etag) {
        Some(Ok(etag)) => {
            return Ok(Verified {
                size,
                etag: Some(etag.to_owned()),
            });
        }
        Some(Err(etag)) => return Err(mismatch(etag, "it answered the write with")),
        None => {}
    }
    let meta = bucket.head(key).await.map_err(|e| CopyError::Target {
        bucket: bucket.id().to_owned(),
        source: e,
    })?;
    if meta.size != size {
        return Err(CopyError::Verify {
            bucket: bucket.id().to_owned(),
            detail: format!("it holds {} bytes, {size} were sent", meta.size),
        });
    }
    if let Some(etag) = &meta.etag
        && !bucket.sse_c()
        && looks_like_md5_etag(etag)
        && !etag.eq_ignore_ascii_case(expected_etag)
    {
        return Err(mismatch(etag, "it holds"));
    }
    Ok(Verified {
        size: meta.size,
        etag: meta.etag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn each_copy_error_has_its_reason_code() {
        let b = || "t".to_owned();
        let refused = || StorageError::Refused {
            bucket: b(),
            status: 403,
            code: "AccessDenied".to_owned(),
        };
        let down = || StorageError::Unavailable {
            bucket: b(),
            source: "connection refused".into(),
        };
        let changed = || StorageError::Changed {
            bucket: b(),
            detail: "etag".to_owned(),
        };
        let cases = [
            (
                CopyError::NoVerifiedSource { detail: b() },
                ErrorCode::SourceMissing,
            ),
            (
                CopyError::Source {
                    bucket: b(),
                    source: StorageError::NotFound { bucket: b() },
                },
                ErrorCode::SourceMissing,
            ),
            (
                CopyError::SourceMismatch {
                    bucket: b(),
                    detail: b(),
                },
                ErrorCode::SourceChanged,
            ),
            (
                CopyError::Source {
                    bucket: b(),
                    source: changed(),
                },
                ErrorCode::SourceChanged,
            ),
            (
                CopyError::Target {
                    bucket: b(),
                    source: refused(),
                },
                ErrorCode::TargetRefused,
            ),
            (
                CopyError::Target {
                    bucket: b(),
                    source: down(),
                },
                ErrorCode::Unavailable,
            ),
            (
                CopyError::Source {
                    bucket: b(),
                    source: down(),
                },
                ErrorCode::Unavailable,
            ),
            (
                CopyError::Verify {
                    bucket: b(),
                    detail: b(),
                },
                ErrorCode::ChecksumMismatch,
            ),
            (CopyError::TooLarge { size: 1 }, ErrorCode::Other),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
        }
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_stored(code.as_str()), code);
        }
        assert_eq!(
            ErrorCode::from_stored("new-in-a-later-build"),
            ErrorCode::Other
        );
    }

    #[test]
    fn only_an_md5_etag_answered_to_the_write_proves_the_copy() {
        let md5 = "9e107d9d372bb6826bd81d3542a419d6";
        let multipart = "c0f8e7d6a5b4c3d2e1f0a9b8c7d6e5f4-3";
        assert_eq!(proved_by_answer(Some(md5), md5), Some(Ok(md5)));
        assert_eq!(
            proved_by_answer(Some(&md5.to_uppercase()), md5).map(|r| r.is_ok()),
            Some(true)
        );
        assert_eq!(
            proved_by_answer(Some(multipart), multipart),
            Some(Ok(multipart))
        );
        assert_eq!(proved_by_answer(Some(md5), multipart), Some(Err(md5)));
        assert_eq!(
            proved_by_answer(Some("not-an-md5"), md5),
            None,
            "a HEAD decides"
        );
        assert_eq!(proved_by_answer(None, md5), None, "a HEAD decides");
    }

    #[test]
    fn the_configured_part_size_is_kept_while_it_fits() {
        assert_eq!(part_size_for(10 * 1024 * MIB, 16 * MIB).unwrap(), 16 * MIB);
        assert_eq!(
            part_size_for(MAX_PARTS * 5 * MIB, 5 * MIB).unwrap(),
            5 * MIB
        );
    }

    #[test]
    fn the_part_size_doubles_until_the_object_fits_in_10000_parts() {
        assert_eq!(
            part_size_for(MAX_PARTS * 5 * MIB + 1, 5 * MIB).unwrap(),
            10 * MIB
        );
        assert_eq!(
            part_size_for(5 * 1024 * 1024 * MIB, 16 * MIB).unwrap(),
            1024 * MIB
        );
        assert_eq!(part_size_for(1_000_100, 100).unwrap(), 200);
        assert_eq!(
            part_size_for(10, 0).unwrap(),
            1,
            "a zero part size is not a division by zero"
        );
    }

    #[test]
    fn an_object_past_10000_parts_of_5_gib_is_refused_for_good() {
        let e = part_size_for(MAX_PARTS * MAX_PART_SIZE + 1, 16 * MIB).unwrap_err();
        assert!(matches!(e, CopyError::TooLarge { .. }));
        assert!(e.is_permanent());
    }

    proptest::proptest! {
        #[test]
        fn every_planned_copy_has_at_most_10000_parts_of_at_most_5_gib(
            size in 1u64..=5 * 1024 * 1024 * MIB,
            configured in 1u64..=5 * 1024 * MIB,
        ) {
            let part = part_size_for(size, configured).unwrap();
            proptest::prop_assert!(part >= configured);
            proptest::prop_assert!(size.div_ceil(part) <= MAX_PARTS);
            proptest::prop_assert!(part <= MAX_PART_SIZE.max(configured));
        }
    }
}

//! One streaming copy: a single GET of the source feeds a PUT (or a multipart upload)
//! to every target at once, computing MD5s on the way; then each target is verified
//! with a HEAD. Memory stays bounded by a few chunks per target, whatever the size.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use tokio::sync::mpsc;

use crate::storage::presign::multipart_etag;
use crate::storage::{BucketClient, ByteStream, StorageError};

/// Chunks buffered per target before the source read waits for it.
const CHANNEL_CHUNKS: usize = 8;

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
    /// The source's bytes are not the recorded object's.
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
}

impl CopyError {
    /// Errors that retrying will not heal: a missing bucket, refused credentials,
    /// a storage class the target does not support.
    pub fn is_permanent(&self) -> bool {
        let storage = match self {
            Self::Source { source, .. } | Self::Target { source, .. } => source,
            _ => return false,
        };
        match storage {
            StorageError::Refused { code, .. } => matches!(
                code.as_str(),
                "NoSuchBucket"
                    | "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "AllAccessDisabled"
                    | "InvalidBucketName"
                    | "InvalidStorageClass"
            ),
            StorageError::Config { .. } => true,
            _ => false,
        }
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
                            source: StorageError::Unavailable {
                                bucket: self.bucket.clone(),
                                source: Box::new(e.without_url()),
                            },
                        });
                    }
                    None => {
                        return Err(CopyError::SourceMismatch {
                            bucket: self.bucket.clone(),
                            detail: "the source ended before its recorded size".to_owned(),
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
    etags: Vec<String>,
    error: Option<CopyError>,
}

fn channel_body(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Copies `job.key` from `source` to every target with one read of the source, then
/// verifies each target. An `Err` means the source could not be read correctly, and
/// no target may be trusted.
pub async fn copy_object(
    source: &BucketClient,
    targets: &[Arc<BucketClient>],
    job: &CopyJob<'_>,
) -> Result<CopyReport, CopyError> {
    let source_error = |e| CopyError::Source {
        bucket: source.id().to_owned(),
        source: e,
    };
    let (len, stream) = source.get_stream(job.key).await.map_err(source_error)?;
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
    let multipart = job.size > job.multipart_threshold;
    let mut sinks: Vec<Sink> = targets
        .iter()
        .map(|t| Sink {
            bucket: Arc::clone(t),
            upload_id: None,
            etags: Vec::new(),
            error: None,
        })
        .collect();
    if multipart {
        for sink in &mut sinks {
            match sink.bucket.create_multipart_upload(job.key).await {
                Ok(id) => sink.upload_id = Some(id),
                Err(e) => {
                    sink.error = Some(CopyError::Target {
                        bucket: sink.bucket.id().to_owned(),
                        source: e,
                    });
                }
            }
        }
    }

    let result = pump(&mut reader, &mut sinks, job, multipart).await;
    let (whole_md5, part_md5s) = match result {
        Ok(digests) => digests,
        Err(e) => {
            abort_uploads(&sinks, job.key).await;
            return Err(e);
        }
    };
    let md5 = hex::encode(whole_md5);
    if let Some(expected) = job.expected_md5
        && !expected.eq_ignore_ascii_case(&md5)
    {
        abort_uploads(&sinks, job.key).await;
        return Err(CopyError::SourceMismatch {
            bucket: source.id().to_owned(),
            detail: format!("its MD5 is {md5}, the record says {expected}"),
        });
    }

    if multipart {
        for sink in sinks.iter_mut().filter(|s| s.error.is_none()) {
            let upload_id = sink.upload_id.clone().unwrap_or_default();
            if let Err(e) = sink
                .bucket
                .complete_multipart_upload(job.key, &upload_id, &sink.etags)
                .await
            {
                sink.error = Some(CopyError::Target {
                    bucket: sink.bucket.id().to_owned(),
                    source: e,
                });
            }
        }
        abort_uploads(&sinks, job.key).await;
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
            None => verify(&sink.bucket, job.key, job.size, &expected_etag).await,
        };
        results.push((id, outcome));
    }
    Ok(CopyReport { md5, results })
}

/// Streams the source into every healthy sink, part by part. Returns the whole
/// object's MD5 and, for a multipart copy, each part's MD5.
async fn pump(
    reader: &mut Reader,
    sinks: &mut [Sink],
    job: &CopyJob<'_>,
    multipart: bool,
) -> Result<([u8; 16], Vec<[u8; 16]>), CopyError> {
    let mut whole = Md5::new();
    let mut part_md5s = Vec::new();
    let parts = if multipart {
        job.size.div_ceil(job.part_size)
    } else {
        1
    };
    for part in 0..parts {
        let part_len = if multipart {
            job.part_size.min(job.size - part * job.part_size)
        } else {
            job.size
        };
        let part_number = u16::try_from(part + 1).unwrap_or(u16::MAX);
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for (i, sink) in sinks.iter().enumerate().filter(|(_, s)| s.error.is_none()) {
            let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
            let bucket = Arc::clone(&sink.bucket);
            let key = job.key.to_owned();
            let upload_id = sink.upload_id.clone();
            let handle = tokio::spawn(async move {
                let body = channel_body(rx);
                match upload_id {
                    Some(id) => {
                        bucket
                            .upload_part_stream(&key, &id, part_number, part_len, body)
                            .await
                    }
                    None => bucket.put_stream(&key, part_len, body).await,
                }
            });
            senders.push(Some(tx));
            handles.push((i, handle));
        }
        // A single PUT's part is the whole object: hashing it twice would only cost.
        let mut part_md5 = multipart.then(Md5::new);
        let mut remaining = part_len;
        while remaining > 0 {
            let chunk = reader.next_up_to(remaining).await?;
            remaining -= chunk.len() as u64;
            whole.update(&chunk);
            if let Some(p) = &mut part_md5 {
                p.update(&chunk);
            }
            for slot in &mut senders {
                if let Some(tx) = slot
                    && tx.send(Ok(chunk.clone())).await.is_err()
                {
                    // The request ended early; its handle tells why.
                    *slot = None;
                }
            }
        }
        drop(senders);
        for (i, handle) in handles {
            let sink = &mut sinks[i];
            let outcome = match handle.await {
                Ok(r) => r,
                Err(join) => Err(StorageError::Unavailable {
                    bucket: sink.bucket.id().to_owned(),
                    source: Box::new(join),
                }),
            };
            match outcome {
                Ok(etag) => sink.etags.push(etag.unwrap_or_default()),
                Err(e) => {
                    sink.error = Some(CopyError::Target {
                        bucket: sink.bucket.id().to_owned(),
                        source: e,
                    });
                }
            }
        }
        if let Some(p) = part_md5 {
            part_md5s.push(p.finalize().into());
        }
    }
    Ok((whole.finalize().into(), part_md5s))
}

/// Aborts the multipart uploads of sinks that failed; best effort, since a bucket's
/// lifecycle rules or the next attempt clean up what this cannot.
async fn abort_uploads(sinks: &[Sink], key: &str) {
    for sink in sinks.iter().filter(|s| s.error.is_some()) {
        if let Some(id) = &sink.upload_id
            && let Err(e) = sink.bucket.abort_multipart_upload(key, id).await
        {
            tracing::warn!(bucket = sink.bucket.id(), error.message = %e, "could not abort a failed multipart copy");
        }
    }
}

/// HEADs the target: its size must match, and an MD5-derived ETag must be the one
/// the bytes sent imply.
async fn verify(
    bucket: &BucketClient,
    key: &str,
    size: u64,
    expected_etag: &str,
) -> Result<Verified, CopyError> {
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
        && crate::storage::presign::looks_like_md5_etag(etag)
        && !etag.eq_ignore_ascii_case(expected_etag)
    {
        return Err(CopyError::Verify {
            bucket: bucket.id().to_owned(),
            detail: format!("its ETag is {etag}, the bytes sent give {expected_etag}"),
        });
    }
    Ok(Verified {
        size: meta.size,
        etag: meta.etag,
    })
}

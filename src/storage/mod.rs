//! Buckets: every server-side request for an object's bytes or metadata (HEAD, GET,
//! PUT, multipart uploads, DELETE) through `object_store`, with the timeouts,
//! retries and error classes museum keeps to; presigned client URLs
//! ([`presign`], rusty-s3); control-plane checks of a bucket ([`control`]); and the
//! embedded S3 server.

pub mod control;
pub mod embedded;
pub mod limits;
pub mod presign;
mod transport;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig,
};
use secrecy::ExposeSecret;

use self::control::ControlClient;
pub use self::control::Reachability;
use self::presign::Signer;
use self::transport::Transport;
use self::watch::{Activity, PeerClock, Stall, Timeouts, WatchedResponse, stalled, watchdog};
use crate::config::{BUCKET_IDS, GLACIER_BUCKET_ID, HOT_BUCKET_IDS, S3Config};

/// The longest a HEAD may take, retries included: a HEAD answers at once or the
/// bucket is in trouble, and the report path waits on it.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Storage failures, by what a caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist.
    #[error("object not found in bucket {bucket}")]
    NotFound { bucket: String },
    /// The request was refused (credentials, permissions, missing bucket): it will not
    /// heal by retrying.
    #[error("bucket {bucket} refused the request: HTTP {status} {code}")]
    Refused {
        bucket: String,
        status: u16,
        code: String,
    },
    /// The endpoint could not be reached, timed out, or failed on its side.
    #[error("bucket {bucket} is unavailable")]
    Unavailable {
        bucket: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The bucket configuration could not be turned into a client.
    #[error("bucket {bucket} is misconfigured: {message}")]
    Config { bucket: String, message: String },
    /// The endpoint answered something museum cannot read.
    #[error("bucket {bucket} answered unexpectedly: {message}")]
    Protocol { bucket: String, message: String },
    /// The object is not the one recorded: a read conditional on the recorded ETag
    /// was refused, or the answer carried another ETag or length.
    #[error("the object in bucket {bucket} is not the recorded one: {detail}")]
    Changed { bucket: String, detail: String },
}

/// Result alias for storage calls.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What a HEAD tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// The ETag without quotes.
    pub etag: Option<String>,
    pub storage_class: Option<String>,
}

impl ObjectMeta {
    /// Why this is not the object recorded with `size` and `etag`, or `None` if it
    /// is. Without an ETag on either side only the size can tell.
    pub fn differs_from(&self, size: u64, etag: Option<&str>) -> Option<String> {
        if self.size != size {
            return Some(format!(
                "it holds {} bytes, the record says {size}",
                self.size
            ));
        }
        match (etag, self.etag.as_deref()) {
            (Some(recorded), Some(found)) if !found.eq_ignore_ascii_case(recorded) => {
                Some(format!("its ETag is {found}, the record says {recorded}"))
            }
            _ => None,
        }
    }
}

/// One object of a bucket's listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// When the bucket last wrote it (milliseconds since the epoch).
    pub last_modified_ms: i64,
}

/// One configured bucket: where it is, how to reach it, its storage class and the
/// timeouts its requests keep to.
#[derive(Debug)]
pub struct BucketClient {
    id: &'static str,
    name: String,
    /// Requests bounded by `s3.request-timeout` each (HEAD, DELETE, starting,
    /// completing and aborting multipart uploads).
    store: Arc<AmazonS3>,
    /// Requests that carry an object's bytes (GET, PUT, part uploads): no overall
    /// timeout in the client, since their time grows with their length; museum
    /// bounds them itself (see [`watch::Timeouts`]).
    bytes_store: Arc<AmazonS3>,
    /// Signs client URLs (presigned PUT, parts, GET).
    signer: Signer,
    /// Sends the control-plane checks of [`control`].
    control: ControlClient,
    storage_class: Option<String>,
    /// Whether objects here are written and read with an SSE-C key
    /// (`s3.<id>.sse_c_key`); the key itself lives only in the stores.
    sse_c: bool,
    timeouts: Timeouts,
    /// Where the bytes this client moves are counted, if anywhere.
    activity: Option<Activity>,
}

impl BucketClient {
    /// The fixed bucket ID (`b2-eu-cen`, …).
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// The provider-side bucket name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The storage class copies written here carry, if any.
    pub fn storage_class(&self) -> Option<&str> {
        self.storage_class.as_deref()
    }

    /// Whether every object here is encrypted with an SSE-C key museum holds. Its
    /// ETags are then not MD5s, and clients cannot read it without the key, so its
    /// objects are never handed out as presigned URLs.
    pub fn sse_c(&self) -> bool {
        self.sse_c
    }

    /// The same bucket, counting every byte its requests move in `activity` (for a
    /// copy's lease heartbeat).
    pub fn reporting_to(&self, activity: &Activity) -> Self {
        Self {
            id: self.id,
            name: self.name.clone(),
            store: Arc::clone(&self.store),
            bytes_store: Arc::clone(&self.bytes_store),
            signer: self.signer.clone(),
            control: self.control.clone(),
            storage_class: self.storage_class.clone(),
            sse_c: self.sse_c,
            timeouts: self.timeouts,
            activity: Some(activity.clone()),
        }
    }

    /// `key` as an object_store path. Keys museum issues always convert; anything
    /// else (an empty segment, `..`) is refused rather than silently rewritten.
    fn path(&self, key: &str) -> Result<Path> {
        Path::parse(key).map_err(|_| StorageError::Protocol {
            bucket: self.id.to_owned(),
            message: "the object key is not a valid path".to_owned(),
        })
    }

    /// `e`, as the [`StorageError`] for this bucket, with `key` kept out of it.
    fn failed(&self, key: &str, e: object_store::Error) -> StorageError {
        classify(self.id, key, &e)
    }

    /// Runs `call` for at most `limit`; running out is [`Stall::Budget`].
    async fn bounded<T>(
        &self,
        key: &str,
        limit: Duration,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        tokio::time::timeout(limit, call)
            .await
            .map_err(|_| stalled(self.id, Stall::Budget(limit)))?
            .map_err(|e| self.failed(key, e))
    }

    /// Runs `call`, which sends `len` bytes: it fails once the bucket takes no byte
    /// (or, all sent, gives no answer) for `s3.idle-timeout`, or has kept museum
    /// waiting longer than the bytes' budget ([`Timeouts::budget`]), retries
    /// included. The copy it serves counts as waiting on the bucket meanwhile (the
    /// wait is bounded), and as having moved bytes once it succeeds.
    async fn sending<T>(
        &self,
        key: &str,
        len: u64,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        let waiting = self.activity.as_ref().map(Activity::waiting);
        let mut clock = PeerClock::new(self.timeouts.idle, self.timeouts.budget(len));
        clock.wait(tokio::time::Instant::now());
        let clock = Arc::new(std::sync::Mutex::new(clock));
        let answer = tokio::select! {
            answer = transport::watched(Arc::clone(&clock), call) => {
                answer.map_err(|e| self.failed(key, e))
            }
            stall = watchdog(clock, self.timeouts.idle) => Err(stalled(self.id, stall)),
        };
        drop(waiting);
        if answer.is_ok()
            && let Some(a) = &self.activity
        {
            a.moved();
        }
        answer
    }

    /// HEADs `key`. A missing object is [`StorageError::NotFound`]. No answer
    /// within 10 s (retries included) is [`StorageError::Unavailable`].
    ///
    /// object_store does not report the stored storage class: the one given is the
    /// class museum writes to this bucket.
    pub async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        let limit = HEAD_TIMEOUT.min(self.timeouts.request);
        let meta = self.bounded(key, limit, self.store.head(&path)).await?;
        Ok(ObjectMeta {
            size: meta.size,
            etag: meta.e_tag.as_deref().map(unquote),
            storage_class: self.storage_class.clone(),
        })
    }

    /// Deletes `key`; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self
            .bounded(key, self.timeouts.request, self.store.delete(&path))
            .await
        {
            Err(StorageError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// Every object in the bucket, as the bucket lists them a page at a time: what
    /// is held at once is one page, whatever the bucket's size. Each page is one
    /// request, bounded by `s3.request-timeout`.
    pub fn list(&self) -> impl futures_util::Stream<Item = Result<Listed>> + Send + '_ {
        use futures_util::StreamExt;
        self.store.list(None).map(move |item| {
            item.map(|meta| Listed {
                key: meta.location.to_string(),
                size: meta.size,
                last_modified_ms: meta.last_modified.timestamp_millis(),
            })
            .map_err(|e| self.failed("", e))
        })
    }

    /// Starts a GET of `key`; returns its length and the body as a stream. No answer
    /// within `s3.idle-timeout` is [`StorageError::Unavailable`].
    pub async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream)> {
        self.get_stream_if_match(key, None).await
    }

    /// Starts a GET of `key` that only reads the object whose ETag is `etag`, when
    /// given: the request carries `If-Match`, and since not every server honours it
    /// (s3s-fs ignores it on GET), the answer's own ETag is compared too. Either
    /// refusal is [`StorageError::Changed`], before any byte of the body is read.
    pub async fn get_stream_if_match(
        &self,
        key: &str,
        etag: Option<&str>,
    ) -> Result<(u64, ByteStream)> {
        let path = self.path(key)?;
        let idle = self.timeouts.idle;
        let asked = tokio::time::Instant::now();
        let options = GetOptions {
            if_match: etag.map(|e| format!("\"{e}\"")),
            ..GetOptions::default()
        };
        let answer = tokio::time::timeout(idle, self.bytes_store.get_opts(&path, options))
            .await
            .map_err(|_| stalled(self.id, Stall::Idle(idle)))?;
        let result = match answer {
            Ok(result) => result,
            Err(object_store::Error::Precondition { .. }) => {
                return Err(StorageError::Changed {
                    bucket: self.id.to_owned(),
                    detail: format!(
                        "it refused a read conditional on the recorded ETag {} (HTTP 412 to If-Match)",
                        etag.unwrap_or_default()
                    ),
                });
            }
            Err(e) => return Err(self.failed(key, e)),
        };
        let found = result.meta.e_tag.as_deref().map(unquote);
        if let (Some(recorded), Some(found)) = (etag, found.as_deref())
            && !found.eq_ignore_ascii_case(recorded)
        {
            return Err(StorageError::Changed {
                bucket: self.id.to_owned(),
                detail: format!("it answered ETag {found}, the record says {recorded}"),
            });
        }
        let len = result.range.end.saturating_sub(result.range.start);
        let mut clock = PeerClock::new(idle, self.timeouts.budget(len));
        clock.wait(asked);
        clock.stop(tokio::time::Instant::now());
        if let Some(a) = &self.activity {
            a.moved();
        }
        let bucket = self.id;
        let key = key.to_owned();
        let body = result
            .into_stream()
            .map_err(move |e| classify(bucket, &key, &e));
        let body = WatchedResponse::new(Box::pin(body), clock, self.id, self.activity.clone());
        Ok((len, Box::pin(body)))
    }

    /// PUTs `chunks` to `key` as one object, with this bucket's storage class.
    /// Returns the ETag the bucket answered, without quotes. The chunks are sent as
    /// they are (no copy); the call is bounded by their budget
    /// ([`Timeouts::budget`]).
    pub async fn put_object(&self, key: &str, chunks: Vec<Bytes>) -> Result<Option<String>> {
        let path = self.path(key)?;
        let len = total_len(&chunks);
        let payload = PutPayload::from_iter(chunks);
        let options = PutOptions {
            attributes: self.attributes(),
            ..PutOptions::default()
        };
        let put = self
            .sending(key, len, self.bytes_store.put_opts(&path, payload, options))
            .await?;
        Ok(put.e_tag.as_deref().map(unquote))
    }

    /// Starts a multipart upload of `key`, with this bucket's storage class if it has
    /// one, and returns its upload ID.
    pub async fn create_multipart_upload(&self, key: &str) -> Result<String> {
        let path = self.path(key)?;
        let options = PutMultipartOptions {
            attributes: self.attributes(),
            ..PutMultipartOptions::default()
        };
        let _waiting = self.activity.as_ref().map(Activity::waiting);
        self.bounded(
            key,
            self.timeouts.request,
            self.store.create_multipart_opts(&path, options),
        )
        .await
    }

    /// PUTs part `part_number` (from 1) of a multipart upload; returns its ETag,
    /// without quotes. Timeouts as [`Self::put_object`].
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u16,
        chunks: Vec<Bytes>,
    ) -> Result<Option<String>> {
        let path = self.path(key)?;
        let index = usize::from(part_number.max(1) - 1);
        let len = total_len(&chunks);
        let payload = PutPayload::from_iter(chunks);
        let upload_id = upload_id.to_owned();
        let part = self
            .sending(
                key,
                len,
                self.bytes_store.put_part(&path, &upload_id, index, payload),
            )
            .await?;
        Ok(Some(unquote(&part.content_id)))
    }

    /// Completes a multipart upload from its parts' ETags, in order; returns the
    /// object's ETag, without quotes. The bucket assembles the object before it
    /// answers, which may take minutes for a large one: this wait is bounded by
    /// `s3.request-timeout`.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<Option<String>> {
        let path = self.path(key)?;
        let parts = etags
            .iter()
            .map(|etag| PartId {
                content_id: etag.clone(),
            })
            .collect();
        let upload_id = upload_id.to_owned();
        let _waiting = self.activity.as_ref().map(Activity::waiting);
        let done = self
            .bounded(
                key,
                self.timeouts.request,
                self.store.complete_multipart(&path, &upload_id, parts),
            )
            .await?;
        Ok(done.e_tag.as_deref().map(unquote))
    }

    /// Aborts a multipart upload; an upload that is already gone counts as aborted.
    pub async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let path = self.path(key)?;
        let upload_id = upload_id.to_owned();
        match self
            .bounded(
                key,
                self.timeouts.request,
                self.store.abort_multipart(&path, &upload_id),
            )
            .await
        {
            Err(StorageError::NotFound { .. }) => Ok(()),
            Err(StorageError::Refused { code, .. }) if code == "NoSuchUpload" => Ok(()),
            other => other,
        }
    }

    /// The attributes every object written here carries: its storage class.
    fn attributes(&self) -> Attributes {
        let mut attributes = Attributes::new();
        if let Some(class) = &self.storage_class {
            attributes.insert(Attribute::StorageClass, class.clone().into());
        }
        attributes
    }
}

fn total_len(chunks: &[Bytes]) -> u64 {
    chunks.iter().map(|c| c.len() as u64).sum()
}

/// An ETag without its quotes.
fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

/// Sorts an object_store failure into a [`StorageError`] by its kind: the variant
/// object_store gives, the HTTP status, the transport failure. Where the crate
/// keeps the S3 error code or the status only in its message (a `Generic` error,
/// or a 404 that is a missing bucket rather than a missing object), the message is
/// read for them. The message itself names the request URL and the key; what is
/// kept of it has both taken out.
fn classify(bucket: &str, key: &str, e: &object_store::Error) -> StorageError {
    use object_store::Error as E;
    let text = error_chain(e);
    let code = control::xml_value(&text, "Code");
    let refused = |status: u16, default: &str| StorageError::Refused {
        bucket: bucket.to_owned(),
        status,
        code: code.clone().unwrap_or_else(|| default.to_owned()),
    };
    let unavailable = || StorageError::Unavailable {
        bucket: bucket.to_owned(),
        source: Box::new(Redacted(redact(&text, key))),
    };
    match e {
        E::NotFound { .. } if code.as_deref() == Some("NoSuchBucket") => {
            refused(404, "NoSuchBucket")
        }
        E::NotFound { .. } => StorageError::NotFound {
            bucket: bucket.to_owned(),
        },
        E::Precondition { .. } => StorageError::Changed {
            bucket: bucket.to_owned(),
            detail: "it refused a request conditional on the recorded ETag (HTTP 412)".to_owned(),
        },
        E::PermissionDenied { .. } => refused(403, "AccessDenied"),
        E::Unauthenticated { .. } => refused(401, "Unauthenticated"),
        E::AlreadyExists { .. } => refused(409, "Conflict"),
        E::NotModified { .. } => StorageError::Protocol {
            bucket: bucket.to_owned(),
            message: "it answered 304 Not Modified to a request that asked for none".to_owned(),
        },
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => StorageError::Config {
            bucket: bucket.to_owned(),
            message: redact(&text, key),
        },
        _ => match (transport_failed(e), answered_status(&text)) {
            (true, _) => unavailable(),
            (false, Some(status)) if status >= 500 || status == 429 || status == 408 => {
                unavailable()
            }
            (false, Some(status)) if status >= 400 => refused(status, "Refused"),
            // The answer came but could not be read (no ETag, bad XML, …).
            (false, _) => StorageError::Protocol {
                bucket: bucket.to_owned(),
                message: redact(&text, key),
            },
        },
    }
}

/// Whether the request failed on the way (connection, timeout, a broken body)
/// rather than with an answer.
fn transport_failed(e: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<object_store::client::HttpError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The HTTP status object_store quotes in its message for an error answer.
fn answered_status(text: &str) -> Option<u16> {
    let (_, rest) = text.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// `text` without URLs (they name the key and, for a presigned one, carry a
/// signature) and without `key` itself.
fn redact(text: &str, key: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        out.push_str(&rest[..at]);
        out.push_str("<url>");
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | '<' | ','))
            .map_or(rest.len(), |n| at + n);
        rest = &rest[end..];
    }
    out.push_str(rest);
    if key.is_empty() {
        out
    } else {
        out.replace(key, "<key>")
    }
}

/// A failure's description, with secrets and the key already taken out.
#[derive(Debug)]
struct Redacted(String);

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

/// An error and those of its sources its message does not already carry, joined
/// with `: `.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // Many errors already quote their cause; it is said once.
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A byte stream read from a bucket. It ends with an error if the bucket stops
/// sending for `s3.idle-timeout`, or keeps museum waiting longer than the request's
/// budget in all.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, StorageError>> + Send>>;

/// Every present bucket, and which one is the hot primary. Clones share the
/// primary: `museum primary move` switches it for every part of a process at once.
#[derive(Debug, Clone)]
pub struct Buckets {
    clients: Arc<BTreeMap<&'static str, Arc<BucketClient>>>,
    /// The primary's index in `BUCKET_IDS`.
    primary: Arc<std::sync::atomic::AtomicUsize>,
}

impl Buckets {
    /// Builds a client for every present bucket in `s3`. Assumes the configuration
    /// has been validated; anything unusable is still reported, not panicked on.
    pub fn from_config(s3: &S3Config) -> Result<Self> {
        let control = ControlClient::new()?;
        // One client, one connection pool, for every bucket's requests.
        let http = transport::shared_client().map_err(|e| StorageError::Config {
            bucket: "*".to_owned(),
            message: e.to_string(),
        })?;
        let timeouts = Timeouts {
            idle: s3.idle_timeout.get(),
            request: s3.request_timeout.get(),
            min_bytes_per_second: s3.min_bytes_per_second,
        };
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: usize::try_from(s3.retries).unwrap_or(usize::MAX),
            retry_timeout: timeouts.request,
        };
        let mut clients = BTreeMap::new();
        for id in BUCKET_IDS {
            let Some(cfg) = s3.bucket(id).filter(|b| b.is_present()) else {
                continue;
            };
            let config_error = |message: String| StorageError::Config {
                bucket: id.to_owned(),
                message,
            };
            let endpoint = cfg
                .endpoint_url(s3.are_local_buckets)
                .map_err(config_error)?;
            let public_endpoint = cfg
                .public_endpoint_url(s3.are_local_buckets)
                .map_err(config_error)?;
            let path_style = cfg.path_style(s3.use_path_style_urls, s3.are_local_buckets);
            let name = cfg.bucket.clone().unwrap_or_default();
            let region = cfg.region.clone().unwrap_or_else(|| "us-east-1".to_owned());
            let key = cfg.key.clone().unwrap_or_default();
            let secret = cfg
                .secret
                .as_ref()
                .map(|s| s.expose_secret().to_owned())
                .unwrap_or_default();
            let signer = Signer::new(
                endpoint,
                public_endpoint,
                path_style,
                &name,
                &region,
                (&key, &secret),
            )
            .map_err(config_error)?;
            // The bucket's own URL, path style or virtual host, is the endpoint
            // object_store addresses objects under.
            let bucket_url = signer.base_url().as_str().trim_end_matches('/');
            let options = ClientOptions::new().with_allow_http(bucket_url.starts_with("http://"));
            // The timeouts are the transport's: object_store's own overall timeout
            // would also cut a long GET body, and it cannot tell a stalled PUT.
            let store = |overall: Option<Duration>| {
                let builder = AmazonS3Builder::new()
                    .with_endpoint(bucket_url)
                    .with_virtual_hosted_style_request(true)
                    .with_bucket_name(&name)
                    .with_region(&region)
                    .with_access_key_id(&key)
                    .with_secret_access_key(&secret)
                    .with_client_options(options.clone())
                    .with_http_connector(Transport::new(http.clone(), overall))
                    .with_retry(retry.clone());
                // Under SSE-C the ETag proves nothing about the bytes, so each payload's
                // SHA-256 is signed for the provider to check. Elsewhere the MD5 ETag a
                // write answers is the proof, and hashing every byte twice more (once
                // per target) would only cost.
                let builder = match &cfg.sse_c_key {
                    Some(k) => builder.with_ssec_encryption(k.expose_secret().trim()),
                    None => builder.with_unsigned_payload(true),
                };
                builder
                    .build()
                    .map(Arc::new)
                    .map_err(|e| config_error(format!("cannot build its S3 client: {e}")))
            };
            let storage_class = match (&cfg.storage_class, id) {
                (Some(class), _) => Some(class.clone()),
                (None, GLACIER_BUCKET_ID) if !s3.are_local_buckets => Some("GLACIER".to_owned()),
                _ => None,
            };
            let request_store = store(Some(timeouts.request))?;
            let bytes_store = store(None)?;
            clients.insert(
                id,
                Arc::new(BucketClient {
                    id,
                    name,
                    store: request_store,
                    bytes_store,
                    signer,
                    control: control.clone(),
                    storage_class,
                    sse_c: cfg.sse_c_key.is_some(),
                    timeouts,
                    activity: None,
                }),
            );
        }
        let primary = BUCKET_IDS
            .into_iter()
            .position(|id| id == s3.hot_storage.primary)
            .filter(|i| clients.contains_key(BUCKET_IDS[*i]))
            .ok_or_else(|| StorageError::Config {
                bucket: s3.hot_storage.primary.clone(),
                message: "the hot primary is not a present bucket".to_owned(),
            })?;
        Ok(Self {
            clients: Arc::new(clients),
            primary: Arc::new(std::sync::atomic::AtomicUsize::new(primary)),
        })
    }

    /// The hot primary, where new uploads go.
    pub fn primary(&self) -> &Arc<BucketClient> {
        let i = self.primary.load(std::sync::atomic::Ordering::Relaxed);
        // `from_config` and `set_primary` only ever set a present bucket.
        #[allow(clippy::expect_used)]
        self.clients
            .get(BUCKET_IDS[i.min(BUCKET_IDS.len() - 1)])
            .expect("the primary is checked to be present when set")
    }

    /// Why `id` cannot be the hot primary, if it cannot: it must be a hot-capable
    /// bucket that is present, and clients upload to it without an SSE-C key.
    pub fn unfit_primary(&self, id: &str) -> Option<String> {
        if !HOT_BUCKET_IDS.contains(&id) {
            return Some(format!(
                "{id} cannot be the hot primary: it must be one of {}",
                HOT_BUCKET_IDS.join(", ")
            ));
        }
        match self.clients.get(id) {
            None => Some(format!("{id} is not configured (it has no bucket name)")),
            Some(b) if b.sse_c() => Some(format!(
                "{id} has an SSE-C key: clients cannot upload to it; remove s3.{id}.sse_c_key first"
            )),
            Some(_) => None,
        }
    }

    /// Makes `id` the primary for every clone of these buckets. False, and nothing
    /// changes, if it cannot be one (see [`Self::unfit_primary`]).
    pub fn set_primary(&self, id: &str) -> bool {
        if self.unfit_primary(id).is_some() {
            return false;
        }
        match BUCKET_IDS.iter().position(|b| *b == id) {
            Some(i) => {
                self.primary.store(i, std::sync::atomic::Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The bucket with ID `id`, if present.
    pub fn get(&self, id: &str) -> Option<&Arc<BucketClient>> {
        self.clients.get(id)
    }

    /// `bucket_ids` in the order reads should try them: as given, but with the glacier
    /// tier last, since its copies may need a restore before they can be read.
    pub fn read_order(&self, mut bucket_ids: Vec<String>) -> Vec<String> {
        bucket_ids.sort_by_key(|id| id == GLACIER_BUCKET_ID);
        bucket_ids
    }

    /// Every present bucket, in the fixed order of the bucket IDs.
    pub fn all(&self) -> impl Iterator<Item = &Arc<BucketClient>> {
        BUCKET_IDS.iter().filter_map(|id| self.clients.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_differs_from_its_record_by_size_or_etag() {
        let meta = |size, etag: Option<&str>| ObjectMeta {
            size,
            etag: etag.map(str::to_owned),
            storage_class: None,
        };
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(meta(5, Some(md5)).differs_from(5, Some(md5)), None);
        assert_eq!(
            meta(5, Some(&md5.to_uppercase())).differs_from(5, Some(md5)),
            None
        );
        assert_eq!(meta(5, None).differs_from(5, Some(md5)), None);
        assert_eq!(meta(5, Some(md5)).differs_from(5, None), None);
        let other = meta(5, Some("00000000000000000000000000000000"));
        assert!(other.differs_from(5, Some(md5)).unwrap().contains("ETag"));
        assert!(
            meta(6, Some(md5))
                .differs_from(5, Some(md5))
                .unwrap()
                .contains("6 bytes")
        );
    }

    fn source(text: &str) -> Box<dyn std::error::Error + Send + Sync> {
        text.to_owned().into()
    }

    #[test]
    fn object_store_errors_sort_by_kind_and_keep_no_url_or_key() {
        let key = "7/0b7b0c4e-5d8e-4a1c-9d1e-8f4b2a6c3d10";
        let url = format!("http://127.0.0.1:9/b/{key}?uploadId=x&X-Amz-Signature=abc");
        let not_found = object_store::Error::NotFound {
            path: key.to_owned(),
            source: source(&format!("Error performing HEAD {url} in 2ms - 404")),
        };
        assert!(matches!(
            classify("b", key, &not_found),
            StorageError::NotFound { .. }
        ));
        let no_bucket = object_store::Error::NotFound {
            path: key.to_owned(),
            source: source("<Error><Code>NoSuchBucket</Code></Error>"),
        };
        assert!(matches!(
            classify("b", key, &no_bucket),
            StorageError::Refused { status: 404, ref code, .. } if code == "NoSuchBucket"
        ));
        let denied = object_store::Error::PermissionDenied {
            path: key.to_owned(),
            source: source("403"),
        };
        assert!(matches!(
            classify("b", key, &denied),
            StorageError::Refused { status: 403, ref code, .. } if code == "AccessDenied"
        ));
        let class = object_store::Error::Generic {
            store: "S3",
            source: source(
                "Server returned non-2xx status code: 400 Bad Request: <Error><Code>InvalidStorageClass</Code></Error>",
            ),
        };
        assert!(matches!(
            classify("b", key, &class),
            StorageError::Refused { status: 400, ref code, .. } if code == "InvalidStorageClass"
        ));
        let busy = object_store::Error::Generic {
            store: "S3",
            source: source(&format!(
                "Error performing PUT {url} in 1s - Server returned non-2xx status code: 503 Service Unavailable: <Code>SlowDown</Code>"
            )),
        };
        let busy = classify("b", key, &busy);
        assert!(matches!(busy, StorageError::Unavailable { .. }), "{busy:?}");
        let logged = format!("{busy:?} {}", error_chain(&busy));
        assert!(
            !logged.contains("X-Amz-Signature")
                && !logged.contains(key)
                && !logged.contains("127.0.0.1"),
            "{logged}"
        );
        let unreadable = object_store::Error::Generic {
            store: "S3",
            source: source(&format!("Missing ETag for {key}")),
        };
        assert!(matches!(
            classify("b", key, &unreadable),
            StorageError::Protocol { ref message, .. } if !message.contains(key)
        ));
    }

    #[test]
    fn redacting_drops_every_url_and_the_key() {
        assert_eq!(
            redact("GET https://h/k/x?a=1 failed (http://h/k) for k/x", "k/x"),
            "GET <url> failed (<url>) for <key>"
        );
        assert_eq!(redact("nothing here", ""), "nothing here");
    }
}

//! Buckets: S3 requests (HEAD, DELETE, multipart set-up) and presigned URLs, one
//! signer (rusty-s3) for all of them, the timeouts every request keeps to, and the
//! embedded S3 server.

pub mod embedded;
pub mod presign;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rusty_s3::actions::CreateMultipartUpload;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use secrecy::ExposeSecret;

use self::watch::{Activity, PeerClock, Stall, Timeouts, WatchedResponse, stalled, watch_body};
use crate::config::{BUCKET_IDS, GLACIER_BUCKET_ID, S3Config};

/// How long a URL that museum signs for its own request stays valid.
const INTERNAL_URL_TTL: Duration = Duration::from_secs(300);

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

/// One configured bucket: where it is, how to sign for it, its storage class and
/// the timeouts its requests keep to.
#[derive(Debug)]
pub struct BucketClient {
    id: &'static str,
    bucket: Bucket,
    /// The same bucket addressed through `public_endpoint`, when one is set: what
    /// URLs handed to clients are signed for.
    public: Option<Bucket>,
    credentials: Credentials,
    storage_class: Option<String>,
    http: reqwest::Client,
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
        self.bucket.name()
    }

    /// The storage class copies written here carry, if any.
    pub fn storage_class(&self) -> Option<&str> {
        self.storage_class.as_deref()
    }

    pub(crate) fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The bucket as clients address it: through `public_endpoint` when set, else as
    /// museum does.
    pub(crate) fn client_bucket(&self) -> &Bucket {
        self.public.as_ref().unwrap_or(&self.bucket)
    }

    /// The base URL clients are sent to, when `public_endpoint` is set.
    pub fn public_base_url(&self) -> Option<&url::Url> {
        self.public.as_ref().map(Bucket::base_url)
    }

    pub(crate) fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The same bucket, counting every byte its requests move in `activity` (for a
    /// copy's lease heartbeat).
    pub fn reporting_to(&self, activity: &Activity) -> Self {
        Self {
            id: self.id,
            bucket: self.bucket.clone(),
            public: self.public.clone(),
            credentials: self.credentials.clone(),
            storage_class: self.storage_class.clone(),
            http: self.http.clone(),
            timeouts: self.timeouts,
            activity: Some(activity.clone()),
        }
    }

    /// A transport failure, with the request URL dropped: a signed URL is a
    /// credential, and errors end up in logs.
    fn transport(&self, source: reqwest::Error) -> StorageError {
        StorageError::Unavailable {
            bucket: self.id.to_owned(),
            source: Box::new(source.without_url()),
        }
    }

    /// Maps a non-success response to an error category.
    async fn error_for(&self, response: reqwest::Response) -> StorageError {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let code = xml_value(&body, "Code")
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
        if status == reqwest::StatusCode::NOT_FOUND && code != "NoSuchBucket" {
            StorageError::NotFound {
                bucket: self.id.to_owned(),
            }
        } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            StorageError::Unavailable {
                bucket: self.id.to_owned(),
                source: format!("HTTP {status} {code}").into(),
            }
        } else {
            StorageError::Refused {
                bucket: self.id.to_owned(),
                status: status.as_u16(),
                code,
            }
        }
    }

    /// HEADs `key`. A missing object is [`StorageError::NotFound`].
    pub async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let url = self
            .bucket
            .head_object(Some(&self.credentials), key)
            .sign(INTERNAL_URL_TTL);
        let response = self
            .send(self.http.head(url).timeout(Duration::from_secs(10)))
            .await?;
        let headers = response.headers();
        let size = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StorageError::Protocol {
                bucket: self.id.to_owned(),
                message: "HEAD returned no Content-Length".to_owned(),
            })?;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_matches('"').to_owned())
        };
        Ok(ObjectMeta {
            size,
            etag: header("etag"),
            storage_class: header("x-amz-storage-class"),
        })
    }

    /// Deletes `key`; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(INTERNAL_URL_TTL);
        self.send_ok(self.http.delete(url)).await
    }

    /// Aborts a multipart upload; an upload that is already gone counts as aborted.
    pub async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let url = self
            .bucket
            .abort_multipart_upload(Some(&self.credentials), key, upload_id)
            .sign(INTERNAL_URL_TTL);
        match self.send_ok(self.http.delete(url)).await {
            Err(StorageError::NotFound { .. }) => Ok(()),
            Err(StorageError::Refused { code, .. }) if code == "NoSuchUpload" => Ok(()),
            other => other,
        }
    }

    /// Creates the bucket; a bucket that already exists and is ours counts as created.
    pub async fn create_bucket(&self) -> Result<()> {
        let action = self.bucket.create_bucket(&self.credentials);
        let url = action.sign(INTERNAL_URL_TTL);
        let body = action.body();
        let request = self
            .http
            .put(url)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body);
        match self.send_ok(request).await {
            Err(StorageError::Refused { code, .. })
                if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Sends `request`; a transport failure or a non-success status becomes the
    /// matching [`StorageError`].
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| self.transport(e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.error_for(response).await)
        }
    }

    async fn send_ok(&self, request: reqwest::RequestBuilder) -> Result<()> {
        self.send(request.timeout(Duration::from_secs(30)))
            .await
            .map(drop)
    }
}

/// How a bucket's endpoint answered a plain request.
#[derive(Debug)]
pub enum Reachability {
    /// Some HTTP answer came back (any status).
    Answered,
    /// No TCP connection could be made.
    Refused(String),
    /// The TLS handshake failed.
    Tls(String),
    /// No answer in time.
    Timeout,
    /// The host name does not resolve.
    Dns(String),
}

impl BucketClient {
    /// The bucket's base URL (endpoint plus, for path style, the bucket name).
    pub fn base_url(&self) -> &url::Url {
        self.bucket.base_url()
    }

    /// Whether anything answers at the bucket's `endpoint`, or at its
    /// `public_endpoint` when `public`. The probe is a signed HEAD of the bucket, so a
    /// healthy server answers 200 and logs no error; any HTTP answer counts.
    pub async fn probe(&self, public: bool) -> Reachability {
        let target = if public {
            self.client_bucket()
        } else {
            &self.bucket
        };
        let url = target
            .head_bucket(Some(&self.credentials))
            .sign(INTERNAL_URL_TTL);
        match self
            .http
            .head(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(_) => Reachability::Answered,
            Err(e) => {
                let timeout = e.is_timeout();
                // The URL is signed: keep it out of the message.
                let chain = error_chain(&e.without_url());
                if timeout {
                    Reachability::Timeout
                } else if chain.contains("dns")
                    || chain.contains("failed to lookup")
                    || chain.contains("Name or service")
                {
                    Reachability::Dns(chain)
                } else if chain.contains("tls")
                    || chain.contains("certificate")
                    || chain.contains("handshake")
                    || chain.contains("InvalidContentType")
                    || chain.contains("corrupt message")
                {
                    Reachability::Tls(chain)
                } else {
                    Reachability::Refused(chain)
                }
            }
        }
    }

    /// A signed HEAD of the bucket: do the credentials work, and does it exist?
    pub async fn head_bucket(&self) -> Result<()> {
        let url = self
            .bucket
            .head_bucket(Some(&self.credentials))
            .sign(INTERNAL_URL_TTL);
        let response = self
            .http
            .head(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            // A HEAD has no body to carry the error code: name it from the status.
            404 => Err(StorageError::Refused {
                bucket: self.id.to_owned(),
                status: 404,
                code: "NoSuchBucket".to_owned(),
            }),
            301 | 307 => Err(StorageError::Refused {
                bucket: self.id.to_owned(),
                status: response.status().as_u16(),
                code: "PermanentRedirect".to_owned(),
            }),
            _ => Err(self.error_for(response).await),
        }
    }

    /// The bucket's CORS rules (XML), `None` if it has none.
    pub async fn bucket_cors(&self) -> Result<Option<String>> {
        let url = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            rusty_s3::Method::Get,
            self.bucket.base_url().clone(),
            self.credentials.key(),
            self.credentials.secret(),
            self.credentials.token(),
            self.bucket.region(),
            INTERNAL_URL_TTL.as_secs(),
            std::iter::once(("cors", "")),
            std::iter::empty(),
        );
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if response.status().is_success() {
            return Ok(Some(response.text().await.map_err(|e| self.transport(e))?));
        }
        match self.error_for(response).await {
            StorageError::Refused { code, .. } if code == "NoSuchCORSConfiguration" => Ok(None),
            StorageError::NotFound { .. } => Ok(None),
            other => Err(other),
        }
    }
}

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

/// A byte stream to write to a bucket.
pub type BodyStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>,
>;

impl BucketClient {
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
        let url = self.internal_get_url(key, INTERNAL_URL_TTL);
        let idle = self.timeouts.idle;
        let asked = tokio::time::Instant::now();
        let mut request = self.http.get(url);
        if let Some(etag) = etag {
            request = request.header(http::header::IF_MATCH, format!("\"{etag}\""));
        }
        let response = tokio::time::timeout(idle, request.send())
            .await
            .map_err(|_| stalled(self.id, Stall::Idle(idle)))?
            .map_err(|e| self.transport(e))?;
        if response.status() == reqwest::StatusCode::PRECONDITION_FAILED {
            return Err(StorageError::Changed {
                bucket: self.id.to_owned(),
                detail: format!(
                    "it refused a read conditional on the recorded ETag {} (HTTP 412 to If-Match)",
                    etag.unwrap_or_default()
                ),
            });
        }
        if !response.status().is_success() {
            return Err(self.error_for(response).await);
        }
        let found = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"'));
        if let (Some(recorded), Some(found)) = (etag, found)
            && !found.eq_ignore_ascii_case(recorded)
        {
            return Err(StorageError::Changed {
                bucket: self.id.to_owned(),
                detail: format!("it answered ETag {found}, the record says {recorded}"),
            });
        }
        let len = response.content_length().unwrap_or(0);
        let mut clock = PeerClock::new(idle, self.timeouts.budget(len));
        clock.wait(asked);
        clock.stop(tokio::time::Instant::now());
        if let Some(a) = &self.activity {
            a.moved();
        }
        let body = WatchedResponse::new(response, clock, self.id, self.activity.clone());
        Ok((len, Box::pin(body)))
    }

    /// PUTs `len` bytes from `body` to `key`, with this bucket's storage class.
    /// Returns the ETag the bucket answered, without quotes. The bucket not taking a
    /// byte (or not answering once all are sent) for `s3.idle-timeout` fails it.
    pub async fn put_stream(
        &self,
        key: &str,
        len: u64,
        body: BodyStream,
    ) -> Result<Option<String>> {
        self.put_stream_with_md5(key, len, None, body).await
    }

    /// As [`Self::put_stream`], with a `Content-MD5` (base64) when given, so the
    /// bucket itself refuses to store any other bytes.
    pub async fn put_stream_with_md5(
        &self,
        key: &str,
        len: u64,
        content_md5: Option<&str>,
        body: BodyStream,
    ) -> Result<Option<String>> {
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        if let Some(class) = &self.storage_class {
            action
                .headers_mut()
                .insert("x-amz-storage-class", class.clone());
        }
        if let Some(md5) = content_md5 {
            action.headers_mut().insert("content-md5", md5.to_owned());
        }
        let url = action.sign(INTERNAL_URL_TTL);
        let mut request = self.http.put(url).header(http::header::CONTENT_LENGTH, len);
        if let Some(class) = &self.storage_class {
            request = request.header("x-amz-storage-class", class);
        }
        if let Some(md5) = content_md5 {
            request = request.header("content-md5", md5);
        }
        self.send_streamed(request, len, body).await
    }

    /// Starts a multipart upload of `key`, with this bucket's storage class if it has
    /// one, and returns its upload ID.
    pub async fn create_multipart_upload(&self, key: &str) -> Result<String> {
        let mut action = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), key);
        if let Some(class) = &self.storage_class {
            action
                .headers_mut()
                .insert("x-amz-storage-class", class.clone());
        }
        let url = action.sign(INTERNAL_URL_TTL);
        let mut request = self
            .http
            .post(url)
            .timeout(self.timeouts.request.min(Duration::from_secs(30)));
        if let Some(class) = &self.storage_class {
            request = request.header("x-amz-storage-class", class);
        }
        let _waiting = self.activity.as_ref().map(Activity::waiting);
        let response = self.send(request).await?;
        let body = response.text().await.map_err(|e| self.transport(e))?;
        let parsed =
            CreateMultipartUpload::parse_response(&body).map_err(|e| StorageError::Protocol {
                bucket: self.id.to_owned(),
                message: format!("unreadable CreateMultipartUpload answer: {e}"),
            })?;
        Ok(parsed.upload_id().to_owned())
    }

    /// PUTs one part of `len` bytes; returns its ETag. Timeouts as [`Self::put_stream`].
    pub async fn upload_part_stream(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u16,
        len: u64,
        body: BodyStream,
    ) -> Result<Option<String>> {
        let url = self.internal_part_url(key, upload_id, part_number, INTERNAL_URL_TTL);
        let request = self.http.put(url).header(http::header::CONTENT_LENGTH, len);
        self.send_streamed(request, len, body).await
    }

    /// Sends `request` with `body` (`len` bytes) and returns the answer's ETag, or
    /// fails once the bucket stalls it (see [`watch::Timeouts`]).
    async fn send_streamed(
        &self,
        request: reqwest::RequestBuilder,
        len: u64,
        body: BodyStream,
    ) -> Result<Option<String>> {
        let (body, stalls) = watch_body(body, self.timeouts, len, self.activity.clone());
        tokio::select! {
            answer = self.send_for_etag(request.body(body)) => answer,
            stall = stalls => Err(stalled(self.id, stall)),
        }
    }

    /// Completes a multipart upload from its parts' ETags, in order.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<()> {
        let action = self.bucket.complete_multipart_upload(
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(INTERNAL_URL_TTL);
        let body = action.body();
        // The bucket assembles the object before it answers, which may take minutes
        // for a large one: this wait is bounded by s3.request-timeout alone.
        let _waiting = self.activity.as_ref().map(Activity::waiting);
        let response = self
            .send(
                self.http
                    .post(url)
                    .body(body)
                    .timeout(self.timeouts.request),
            )
            .await?;
        // S3 may answer 200 with an error document after a long completion.
        let text = response.text().await.map_err(|e| self.transport(e))?;
        if text.contains("<Error>") {
            return Err(StorageError::Unavailable {
                bucket: self.id.to_owned(),
                source: format!(
                    "CompleteMultipartUpload failed: {}",
                    xml_value(&text, "Code").unwrap_or_default()
                )
                .into(),
            });
        }
        Ok(())
    }

    async fn send_for_etag(&self, request: reqwest::RequestBuilder) -> Result<Option<String>> {
        let response = self.send(request).await?;
        Ok(response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned()))
    }
}

/// The text of the first `<tag>…</tag>` in an S3 XML answer.
pub(crate) fn xml_value(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&close)? + start;
    Some(body[start..end].to_owned())
}

/// Every present bucket, and which one is the hot primary.
#[derive(Debug, Clone)]
pub struct Buckets {
    clients: Arc<BTreeMap<&'static str, Arc<BucketClient>>>,
    primary: &'static str,
}

impl Buckets {
    /// Builds a client for every present bucket in `s3`. Assumes the configuration
    /// has been validated; anything unusable is still reported, not panicked on.
    pub fn from_config(s3: &S3Config) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| StorageError::Config {
                bucket: "*".to_owned(),
                message: e.to_string(),
            })?;
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
            let style = if cfg.path_style(s3.use_path_style_urls, s3.are_local_buckets) {
                UrlStyle::Path
            } else {
                UrlStyle::VirtualHost
            };
            let public_endpoint = cfg
                .public_endpoint_url(s3.are_local_buckets)
                .map_err(config_error)?;
            let name = cfg.bucket.clone().unwrap_or_default();
            let region = cfg.region.clone().unwrap_or_else(|| "us-east-1".to_owned());
            let address = |endpoint: url::Url| {
                Bucket::new(endpoint, style, name.clone(), region.clone())
                    .map_err(|e| config_error(format!("cannot address the bucket: {e}")))
            };
            let bucket = address(endpoint)?;
            let public = public_endpoint.map(address).transpose()?;
            let credentials = Credentials::new(
                cfg.key.clone().unwrap_or_default(),
                cfg.secret
                    .as_ref()
                    .map(|s| s.expose_secret().to_owned())
                    .unwrap_or_default(),
            );
            let storage_class = match (&cfg.storage_class, id) {
                (Some(class), _) => Some(class.clone()),
                (None, GLACIER_BUCKET_ID) if !s3.are_local_buckets => Some("GLACIER".to_owned()),
                _ => None,
            };
            clients.insert(
                id,
                Arc::new(BucketClient {
                    id,
                    bucket,
                    public,
                    credentials,
                    storage_class,
                    http: http.clone(),
                    timeouts: Timeouts {
                        idle: s3.idle_timeout.get(),
                        request: s3.request_timeout.get(),
                        min_bytes_per_second: s3.min_bytes_per_second,
                    },
                    activity: None,
                }),
            );
        }
        let primary = BUCKET_IDS
            .into_iter()
            .find(|id| *id == s3.hot_storage.primary)
            .filter(|id| clients.contains_key(id))
            .ok_or_else(|| StorageError::Config {
                bucket: s3.hot_storage.primary.clone(),
                message: "the hot primary is not a present bucket".to_owned(),
            })?;
        Ok(Self {
            clients: Arc::new(clients),
            primary,
        })
    }

    /// The hot primary, where new uploads go.
    pub fn primary(&self) -> &Arc<BucketClient> {
        // `from_config` guarantees the primary is in the map.
        #[allow(clippy::expect_used)]
        self.clients
            .get(self.primary)
            .expect("the primary is checked to be present at construction")
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

    #[test]
    fn reads_error_codes_from_s3_xml() {
        let body =
            "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>x</Message></Error>";
        assert_eq!(xml_value(body, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(xml_value("", "Code"), None);
    }
}

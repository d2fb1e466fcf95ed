//! Control-plane checks of a bucket, not data requests: whether its endpoint
//! answers, whether the credentials reach the bucket, its CORS rules, the storage
//! class and encryption a probe object got, and creating it. `museum doctor` and the
//! tests use them; no object's bytes pass through here.
//! They are signed with rusty-s3 (as client URLs are) and sent with their own small
//! HTTP client, since object_store has no call for a bucket itself.

use std::time::Duration;

use rusty_s3::S3Action;

use super::{BucketClient, Result, StorageError, error_chain};

/// How long a URL signed for one of these checks stays valid.
const CHECK_URL_TTL: Duration = Duration::from_secs(300);
/// The longest any of these checks waits for its answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client the checks go through.
#[derive(Debug, Clone)]
pub(crate) struct ControlClient(reqwest::Client);

impl ControlClient {
    pub(crate) fn new() -> Result<Self> {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .timeout(CHECK_TIMEOUT)
            .build()
            .map(Self)
            .map_err(|e| StorageError::Config {
                bucket: "*".to_owned(),
                message: e.to_string(),
            })
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
    fn http(&self) -> &reqwest::Client {
        &self.control.0
    }

    /// A transport failure, with the request URL dropped: a signed URL is a
    /// credential, and errors end up in logs.
    fn transport(&self, source: reqwest::Error) -> StorageError {
        StorageError::Unavailable {
            bucket: self.id().to_owned(),
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
                bucket: self.id().to_owned(),
            }
        } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            StorageError::Unavailable {
                bucket: self.id().to_owned(),
                source: format!("HTTP {status} {code}").into(),
            }
        } else {
            StorageError::Refused {
                bucket: self.id().to_owned(),
                status: status.as_u16(),
                code,
            }
        }
    }

    /// Creates the bucket; a bucket that already exists and is ours counts as created.
    pub async fn create_bucket(&self) -> Result<()> {
        let action = self.bucket().create_bucket(self.credentials());
        let url = action.sign(CHECK_URL_TTL);
        let body = action.body();
        let response = self
            .http()
            .put(url)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if response.status().is_success() {
            return Ok(());
        }
        match self.error_for(response).await {
            StorageError::Refused { code, .. }
                if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" =>
            {
                Ok(())
            }
            other => Err(other),
        }
    }

    /// Whether anything answers at the bucket's `endpoint`, or at its
    /// `public_endpoint` when `public`. The probe is a signed HEAD of the bucket, so a
    /// healthy server answers 200 and logs no error; any HTTP answer counts.
    pub async fn probe(&self, public: bool) -> Reachability {
        let target = if public {
            self.client_bucket()
        } else {
            self.bucket()
        };
        let url = target
            .head_bucket(Some(self.credentials()))
            .sign(CHECK_URL_TTL);
        match self.http().head(url).send().await {
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
            .bucket()
            .head_bucket(Some(self.credentials()))
            .sign(CHECK_URL_TTL);
        let response = self
            .http()
            .head(url)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            // A HEAD has no body to carry the error code: name it from the status.
            404 => Err(StorageError::Refused {
                bucket: self.id().to_owned(),
                status: 404,
                code: "NoSuchBucket".to_owned(),
            }),
            301 | 307 => Err(StorageError::Refused {
                bucket: self.id().to_owned(),
                status: response.status().as_u16(),
                code: "PermanentRedirect".to_owned(),
            }),
            _ => Err(self.error_for(response).await),
        }
    }

    /// The bucket's CORS rules (XML), `None` if it has none.
    pub async fn bucket_cors(&self) -> Result<Option<String>> {
        let credentials = self.credentials();
        let url = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            rusty_s3::Method::Get,
            self.bucket().base_url().clone(),
            credentials.key(),
            credentials.secret(),
            credentials.token(),
            self.bucket().region(),
            CHECK_URL_TTL.as_secs(),
            std::iter::once(("cors", "")),
            std::iter::empty(),
        );
        let response = self
            .http()
            .get(url)
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

impl BucketClient {
    /// The storage class the bucket reports for `key` (`x-amz-storage-class` on a
    /// signed HEAD), `None` when it reports none (S3 leaves it out for STANDARD).
    /// object_store's HEAD does not carry it, so doctor asks here. Not for SSE-C
    /// buckets, which refuse a HEAD without the key.
    pub async fn stored_class(&self, key: &str) -> Result<Option<String>> {
        let response = self.object_check(rusty_s3::Method::Head, key).await?;
        if !response.status().is_success() {
            return Err(self.error_for(response).await);
        }
        Ok(response
            .headers()
            .get("x-amz-storage-class")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned))
    }

    /// Whether a signed GET of `key` without an SSE-C key is refused, as it must be
    /// for an object the bucket encrypted with one. Any answer but a 2xx counts as
    /// refused; `Err` only when nothing answered.
    pub async fn refuses_read_without_key(&self, key: &str) -> Result<bool> {
        let response = self.object_check(rusty_s3::Method::Get, key).await?;
        Ok(!response.status().is_success())
    }

    /// A signed HEAD or GET of `key`, with no SSE-C key and no body read.
    async fn object_check(&self, method: rusty_s3::Method, key: &str) -> Result<reqwest::Response> {
        let request = match method {
            rusty_s3::Method::Head => self.http().head(
                self.bucket()
                    .head_object(Some(self.credentials()), key)
                    .sign(CHECK_URL_TTL),
            ),
            _ => self.http().get(
                self.bucket()
                    .get_object(Some(self.credentials()), key)
                    .sign(CHECK_URL_TTL),
            ),
        };
        request.send().await.map_err(|e| self.transport(e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_error_codes_from_s3_xml() {
        let body =
            "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>x</Message></Error>";
        assert_eq!(xml_value(body, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(xml_value("", "Code"), None);
    }
}

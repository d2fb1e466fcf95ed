//! Presigned URLs (with Content-Length and Content-MD5 signed in), the object key
//! layout, and the ETags that declared MD5s imply.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest, Md5};
use rusty_s3::actions::{CompleteMultipartUpload, UploadPart};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use url::Url;

use super::BucketClient;

/// What signs URLs for one bucket: the bucket as museum addresses it, as clients
/// do (through `public_endpoint`, when set), and the credentials.
#[derive(Debug, Clone)]
pub(crate) struct Signer {
    bucket: Bucket,
    public: Option<Bucket>,
    credentials: Credentials,
}

impl Signer {
    /// The signer for bucket `name` at `endpoint` (and `public`, when set).
    pub(crate) fn new(
        endpoint: Url,
        public: Option<Url>,
        path_style: bool,
        name: &str,
        region: &str,
        (key, secret): (&str, &str),
    ) -> Result<Self, String> {
        let style = if path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let address = |endpoint: Url| {
            Bucket::new(endpoint, style, name.to_owned(), region.to_owned())
                .map_err(|e| format!("cannot address the bucket: {e}"))
        };
        Ok(Self {
            bucket: address(endpoint)?,
            public: public.map(address).transpose()?,
            credentials: Credentials::new(key, secret),
        })
    }

    /// The bucket's URL as museum addresses it (path style or virtual host).
    pub(crate) fn base_url(&self) -> &Url {
        self.bucket.base_url()
    }
}

impl BucketClient {
    pub(crate) fn bucket(&self) -> &Bucket {
        &self.signer.bucket
    }

    /// The bucket as clients address it: through `public_endpoint` when set, else as
    /// museum does.
    pub(crate) fn client_bucket(&self) -> &Bucket {
        self.signer.public.as_ref().unwrap_or(&self.signer.bucket)
    }

    /// The base URL clients are sent to, when `public_endpoint` is set.
    pub fn public_base_url(&self) -> Option<&Url> {
        self.signer.public.as_ref().map(Bucket::base_url)
    }

    /// The bucket's base URL (endpoint plus, for path style, the bucket name).
    pub fn base_url(&self) -> &Url {
        self.signer.bucket.base_url()
    }

    pub(crate) fn credentials(&self) -> &Credentials {
        &self.signer.credentials
    }
}

/// A new object key for `user_id`: `<userID>/<uuid v4>`.
pub fn new_object_key(user_id: i64) -> String {
    format!("{user_id}/{}", uuid::Uuid::new_v4())
}

/// Whether `key` has the shape museum issues for `user_id`.
pub fn is_key_of_user(key: &str, user_id: i64) -> bool {
    key.split_once('/').is_some_and(|(user, rest)| {
        user == user_id.to_string()
            && uuid::Uuid::parse_str(rest).is_ok_and(|u| u.hyphenated().to_string() == rest)
    })
}

/// Decodes an MD5 given as base64 (the Content-MD5 form) or as 32 hex digits, as
/// Ente's server accepts both. It must be exactly 16 bytes.
pub fn decode_md5(text: &str) -> Result<[u8; 16], String> {
    if text.len() == 32 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        let mut digest = [0u8; 16];
        hex::decode_to_slice(text, &mut digest).map_err(|_| format!("`{text}` is not hex"))?;
        return Ok(digest);
    }
    let bytes = BASE64
        .decode(text)
        .map_err(|_| format!("`{text}` is neither base64 nor 32 hex digits"))?;
    <[u8; 16]>::try_from(bytes.as_slice())
        .map_err(|_| format!("`{text}` decodes to {} bytes; an MD5 is 16", bytes.len()))
}

/// An MD5 as the base64 a `Content-MD5` header carries.
pub fn content_md5(digest: &[u8; 16]) -> String {
    BASE64.encode(digest)
}

/// The ETag S3 gives a single-part object with this MD5: its lowercase hex.
pub fn single_part_etag(md5: &[u8; 16]) -> String {
    hex::encode(md5)
}

/// The ETag S3 gives a multipart object: the hex MD5 of the concatenated part MD5s,
/// then `-` and the part count.
pub fn multipart_etag(part_md5s: &[[u8; 16]]) -> String {
    let mut hasher = Md5::new();
    for part in part_md5s {
        hasher.update(part);
    }
    format!("{}-{}", hex::encode(hasher.finalize()), part_md5s.len())
}

/// Plain (`<32 hex>`) or multipart (`<32 hex>-<n>`) ETags, the forms S3 derives from MD5s.
pub fn looks_like_md5_etag(etag: &str) -> bool {
    let (digest, parts) = match etag.split_once('-') {
        Some((d, n)) => (d, Some(n)),
        None => (etag, None),
    };
    digest.len() == 32
        && digest.chars().all(|c| c.is_ascii_hexdigit())
        && parts.is_none_or(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

impl BucketClient {
    /// A presigned PUT of `key`. With a length and MD5, S3 refuses any other bytes.
    pub fn presign_put(
        &self,
        key: &str,
        content_length: Option<u64>,
        content_md5: Option<&str>,
        ttl: Duration,
    ) -> Url {
        let mut action = self
            .client_bucket()
            .put_object(Some(self.credentials()), key);
        if let Some(len) = content_length {
            action
                .headers_mut()
                .insert("content-length", len.to_string());
        }
        if let Some(md5) = content_md5 {
            action.headers_mut().insert("content-md5", md5.to_owned());
        }
        action.sign(ttl)
    }

    /// A presigned PUT of one part (numbered from 1) of a multipart upload, for a
    /// client.
    pub fn presign_upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u16,
        content_length: Option<u64>,
        content_md5: Option<&str>,
        ttl: Duration,
    ) -> Url {
        self.sign_upload_part(
            self.client_bucket(),
            (key, upload_id, part_number),
            content_length,
            content_md5,
            ttl,
        )
    }

    fn sign_upload_part(
        &self,
        bucket: &rusty_s3::Bucket,
        (key, upload_id, part_number): (&str, &str, u16),
        content_length: Option<u64>,
        content_md5: Option<&str>,
        ttl: Duration,
    ) -> Url {
        let mut action = UploadPart::new(
            bucket,
            Some(self.credentials()),
            key,
            part_number,
            upload_id,
        );
        if let Some(len) = content_length {
            action
                .headers_mut()
                .insert("content-length", len.to_string());
        }
        if let Some(md5) = content_md5 {
            action.headers_mut().insert("content-md5", md5.to_owned());
        }
        action.sign(ttl)
    }

    /// A presigned POST that completes a multipart upload; the client sends the
    /// `CompleteMultipartUpload` XML body.
    pub fn presign_complete(&self, key: &str, upload_id: &str, ttl: Duration) -> Url {
        CompleteMultipartUpload::new(
            self.client_bucket(),
            Some(self.credentials()),
            key,
            upload_id,
            std::iter::empty::<&str>(),
        )
        .sign(ttl)
    }

    /// A presigned GET of `key`, for a client.
    pub fn presign_get(&self, key: &str, ttl: Duration) -> Url {
        self.client_bucket()
            .get_object(Some(self.credentials()), key)
            .sign(ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_md5_shaped_etags() {
        assert!(looks_like_md5_etag("d41d8cd98f00b204e9800998ecf8427e"));
        assert!(looks_like_md5_etag("d41d8cd98f00b204e9800998ecf8427e-3"));
        assert!(!looks_like_md5_etag("d41d8cd98f00b204e9800998ecf8427e-"));
        assert!(!looks_like_md5_etag("abc"));
        assert!(!looks_like_md5_etag(""));
    }

    #[test]
    fn keys_belong_to_their_user_only() {
        let key = new_object_key(42);
        assert!(is_key_of_user(&key, 42));
        assert!(!is_key_of_user(&key, 4));
        assert!(!is_key_of_user("42/../43/x", 42));
        assert!(!is_key_of_user("42/not-a-uuid", 42));
        assert!(!is_key_of_user(&key.to_uppercase(), 42));
    }

    #[test]
    fn md5_must_be_sixteen_base64_bytes() {
        assert_eq!(
            decode_md5("1B2M2Y8AsgTpgAmY7PhCfg==")
                .map(|m| single_part_etag(&m))
                .as_deref(),
            Ok("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert!(decode_md5("not base64!").is_err());
        let hex_form = decode_md5("D41D8CD98F00B204E9800998ECF8427E").map(|m| content_md5(&m));
        assert_eq!(hex_form.as_deref(), Ok("1B2M2Y8AsgTpgAmY7PhCfg=="));
        assert!(decode_md5("d41d8cd98f00b204e9800998ecf8427").is_err());
        assert!(decode_md5("AAAA").unwrap_err().contains("3 bytes"));
    }

    #[test]
    fn multipart_etag_matches_s3s_formula() {
        let a: [u8; 16] = Md5::digest(b"hello").into();
        let b: [u8; 16] = Md5::digest(b"world").into();
        let mut joined = Vec::new();
        joined.extend_from_slice(&a);
        joined.extend_from_slice(&b);
        assert_eq!(
            multipart_etag(&[a, b]),
            format!("{}-2", hex::encode(Md5::digest(&joined)))
        );
    }
}

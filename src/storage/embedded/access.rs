//! What the embedded S3 server lets a signed request do: only what museum's clients
//! and museum itself ask of it. A signature proves who made a URL, not what a client
//! adds to it, so every request is checked here, after its signature and before it
//! touches the store:
//!
//! - every `x-amz-*` header it carries was signed (AWS answers an unsigned one the
//!   same way), so a client cannot turn a presigned PUT into a copy, or change its
//!   storage class or its checksum, with a header museum never signed;
//! - no server-side copy (`CopyObject`, `UploadPartCopy`): museum never asks for one,
//!   and a copy reads bytes that the URL's holder never uploaded;
//! - object keys are canonical: no leading `/`, no empty segment, no `.` or `..`, so
//!   one file is never reached under two keys.

use s3s::access::{S3Access, S3AccessContext};
use s3s::{S3Result, s3_error};

/// Operations that read another object's bytes on the server's side.
const COPIES: [&str; 2] = ["CopyObject", "UploadPartCopy"];

/// The embedded server's access rules (the module's documentation).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MuseumAccess;

#[async_trait::async_trait]
impl S3Access for MuseumAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        }
        if let Some(header) = unsigned_amz_header(cx.headers(), cx.uri().query()) {
            return Err(s3_error!(
                AccessDenied,
                "There were headers present in the request which were not signed: {header}"
            ));
        }
        let op = cx.s3_op().name();
        if COPIES.contains(&op) {
            return Err(s3_error!(
                AccessDenied,
                "server-side copy ({op}) is not available on this server"
            ));
        }
        if let Some((_, key)) = cx.s3_path().as_object()
            && let Err(why) = check_key(key)
        {
            return Err(s3_error!(InvalidArgument, "the object key {why}"));
        }
        Ok(())
    }
}

/// The first `x-amz-*` header of `headers` that the request's SigV4 signature does not
/// cover: its `SignedHeaders`, from the presigned query (`X-Amz-SignedHeaders`) or from
/// the `Authorization` header. A SigV2 signature covers every `x-amz-*` header.
fn unsigned_amz_header(headers: &http::HeaderMap, query: Option<&str>) -> Option<String> {
    let signed = signed_headers(headers, query)?;
    headers
        .keys()
        .map(http::HeaderName::as_str)
        .find(|name| name.starts_with("x-amz-") && !signed.iter().any(|s| s == name))
        .map(str::to_owned)
}

/// The lower-cased header names a SigV4 signature covers; `None` for another kind.
fn signed_headers(headers: &http::HeaderMap, query: Option<&str>) -> Option<Vec<String>> {
    let split = |list: &str| {
        list.split(';')
            .map(|name| name.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let presigned = query.and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name.eq_ignore_ascii_case("X-Amz-SignedHeaders"))
            .map(|(_, list)| split(&list))
    });
    if presigned.is_some() {
        return presigned;
    }
    let authorization = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let fields = authorization.strip_prefix("AWS4-HMAC-SHA256")?;
    fields
        .split(',')
        .find_map(|field| field.trim().strip_prefix("SignedHeaders=").map(&split))
}

/// Whether `key` names one file one way: not empty, no leading `/`, and no segment
/// that is empty, `.` or `..`. The error says what is wrong.
pub(super) fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("is empty");
    }
    if key.starts_with('/') {
        return Err("may not start with /");
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("may not have an empty segment (// or a trailing /)"),
            "." | ".." => return Err("may not have a . or .. segment"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_keys_pass() {
        for good in ["1/0f1e", "a", "3/x.y/..z", "5/..../b"] {
            assert_eq!(check_key(good), Ok(()), "{good:?}");
        }
        for bad in [
            "", "/1/x", "1//x", "1/./x", "1/../x", "1/x/", ".", "..", "1/.", "x/..",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn an_unsigned_amz_header_on_a_presigned_url_is_found() {
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=content-length%3Bhost&X-Amz-Signature=ab";
        let plain = headers(&[("host", "h"), ("content-length", "3")]);
        assert_eq!(unsigned_amz_header(&plain, Some(query)), None);
        let copy = headers(&[("host", "h"), ("x-amz-copy-source", "b/3/victim")]);
        assert_eq!(
            unsigned_amz_header(&copy, Some(query)).as_deref(),
            Some("x-amz-copy-source")
        );
        let signed = "X-Amz-SignedHeaders=host%3Bx-amz-storage-class";
        let class = headers(&[("x-amz-storage-class", "GLACIER")]);
        assert_eq!(unsigned_amz_header(&class, Some(signed)), None);
    }

    #[test]
    fn an_unsigned_amz_header_beside_an_authorization_header_is_found() {
        let auth = "AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/s3/aws4_request, \
                    SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=ab";
        let fine = headers(&[
            ("authorization", auth),
            ("x-amz-date", "20260101T000000Z"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ]);
        assert_eq!(unsigned_amz_header(&fine, None), None);
        let mut extra = fine.clone();
        extra.insert(
            "x-amz-copy-source",
            http::HeaderValue::from_static("b/3/victim"),
        );
        assert_eq!(
            unsigned_amz_header(&extra, None).as_deref(),
            Some("x-amz-copy-source")
        );
        // SigV2 signs every x-amz-* header it is sent with.
        let v2 = headers(&[("authorization", "AWS k:sig"), ("x-amz-meta-a", "1")]);
        assert_eq!(unsigned_amz_header(&v2, None), None);
    }
}

//! A request body: read into a staging file while its MD5 and checksums are taken,
//! then checked against what the request claims (its signed length, Content-MD5, and
//! checksums in headers or trailers). Nothing outside the staging folder changes.

use base64::Engine as _;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use s3s::checksum::ChecksumHasher;
use s3s::dto::{Checksum, ChecksumAlgorithm, StreamingBlob};
use s3s::{S3Error, S3ErrorCode, S3Result, TrailingHeaders, s3_error};

use super::super::disk::StagedFile;
use super::{DurableFs, failed};

impl DurableFs {
    /// Reads a request body into a staging file and checks it against what the request
    /// claims. Nothing outside the staging folder changes, whatever the outcome.
    pub(super) async fn receive(
        &self,
        body: Option<StreamingBlob>,
        claims: Claims,
        trailers: Option<TrailingHeaders>,
    ) -> S3Result<Received> {
        let mut body = body.ok_or_else(|| s3_error!(IncompleteBody))?;
        let mut checksums = claims.hasher()?;
        let mut md5 = Md5::new();
        let mut file = self
            .staging
            .create()
            .await
            .map_err(failed("create a staging file"))?;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(body_failed)?;
            md5.update(&chunk);
            checksums.update(&chunk);
            file.write(&chunk)
                .await
                .map_err(failed("write a request body"))?;
        }
        if let Some(length) = claims.length
            && u64::try_from(length).ok() != Some(file.len())
        {
            return Err(s3_error!(
                IncompleteBody,
                "received {} bytes, not the {length} of Content-Length",
                file.len()
            ));
        }
        let md5: [u8; 16] = md5.finalize().into();
        check_content_md5(claims.md5.as_deref(), &md5)?;
        let mut claimed = claims.checksum;
        if let Some(headers) = trailers.and_then(|t| t.take()) {
            claim_trailers(&mut claimed, &headers)?;
        }
        let checksum = checksums.finalize();
        check_checksums(&claimed, &checksum)?;
        Ok(Received {
            file,
            e_tag: hex::encode(md5),
            checksum,
        })
    }
}

/// What a request says its body is.
#[derive(Debug, Default)]
pub(super) struct Claims {
    /// The Content-Length (signed, in a presigned URL).
    pub(super) length: Option<i64>,
    /// The Content-MD5, base64.
    pub(super) md5: Option<String>,
    /// Checksums from the headers (trailers are read after the body).
    pub(super) checksum: Checksum,
    /// A checksum the body carries in a trailer.
    pub(super) algorithm: Option<ChecksumAlgorithm>,
}

impl Claims {
    /// Hashers for every checksum claimed.
    fn hasher(&self) -> S3Result<ChecksumHasher> {
        let c = &self.checksum;
        let algorithm = self.algorithm.as_ref().map(ChecksumAlgorithm::as_str);
        let wants =
            |claimed: &Option<String>, name: &str| claimed.is_some() || algorithm == Some(name);
        let mut hasher = ChecksumHasher::default();
        if wants(&c.checksum_crc32, ChecksumAlgorithm::CRC32) {
            hasher.crc32 = Some(Default::default());
        }
        if wants(&c.checksum_crc32c, ChecksumAlgorithm::CRC32C) {
            hasher.crc32c = Some(Default::default());
        }
        if wants(&c.checksum_sha1, ChecksumAlgorithm::SHA1) {
            hasher.sha1 = Some(Default::default());
        }
        if wants(&c.checksum_sha256, ChecksumAlgorithm::SHA256) {
            hasher.sha256 = Some(Default::default());
        }
        if wants(&c.checksum_crc64nvme, ChecksumAlgorithm::CRC64NVME) {
            hasher.crc64nvme = Some(Default::default());
        }
        let known = [
            ChecksumAlgorithm::CRC32,
            ChecksumAlgorithm::CRC32C,
            ChecksumAlgorithm::SHA1,
            ChecksumAlgorithm::SHA256,
            ChecksumAlgorithm::CRC64NVME,
        ];
        match algorithm {
            Some(name) if !known.contains(&name) => Err(s3_error!(
                NotImplemented,
                "checksum algorithm {name} is not supported"
            )),
            _ => Ok(hasher),
        }
    }
}

/// Adds to `claimed` the checksums that came in `trailers`, after the body.
fn claim_trailers(claimed: &mut Checksum, trailers: &http::HeaderMap) -> S3Result<()> {
    let fields = [
        ("x-amz-checksum-crc32", &mut claimed.checksum_crc32),
        ("x-amz-checksum-crc32c", &mut claimed.checksum_crc32c),
        ("x-amz-checksum-sha1", &mut claimed.checksum_sha1),
        ("x-amz-checksum-sha256", &mut claimed.checksum_sha256),
        ("x-amz-checksum-crc64nvme", &mut claimed.checksum_crc64nvme),
    ];
    for (name, field) in fields {
        if let Some(value) = trailers.get(name) {
            let value = value
                .to_str()
                .map_err(|_| s3_error!(InvalidArgument, "trailer {name} is not text"))?;
            *field = Some(value.to_owned());
        }
    }
    Ok(())
}

/// A body received into a staging file and checked.
pub(super) struct Received {
    pub(super) file: StagedFile,
    /// The MD5 of the bytes, hex: a single PUT's ETag, or a part's.
    pub(super) e_tag: String,
    /// The checksums computed (those claimed, or asked for).
    pub(super) checksum: Checksum,
}

/// The Content-MD5 claimed, if any, must be that of the bytes received.
fn check_content_md5(claimed: Option<&str>, actual: &[u8; 16]) -> S3Result<()> {
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let claimed = base64::engine::general_purpose::STANDARD
        .decode(claimed)
        .ok()
        .filter(|d| d.len() == 16)
        .ok_or_else(|| s3_error!(InvalidDigest, "the Content-MD5 is not a base64 MD5"))?;
    if claimed != actual {
        return Err(s3_error!(
            BadDigest,
            "the Content-MD5 you specified did not match what was received"
        ));
    }
    Ok(())
}

/// Every checksum claimed must be that of the bytes received.
fn check_checksums(claimed: &Checksum, actual: &Checksum) -> S3Result<()> {
    let pairs = [
        ("CRC32", &claimed.checksum_crc32, &actual.checksum_crc32),
        ("CRC32C", &claimed.checksum_crc32c, &actual.checksum_crc32c),
        ("SHA1", &claimed.checksum_sha1, &actual.checksum_sha1),
        ("SHA256", &claimed.checksum_sha256, &actual.checksum_sha256),
        (
            "CRC64NVME",
            &claimed.checksum_crc64nvme,
            &actual.checksum_crc64nvme,
        ),
    ];
    for (name, claimed, actual) in pairs {
        if claimed.is_some() && claimed != actual {
            return Err(s3_error!(
                BadDigest,
                "the {name} checksum you specified did not match what was received"
            ));
        }
    }
    Ok(())
}

/// A failed read of a request body: the client's error (a cut connection, a bad
/// chunk signature), answered as s3s reported it or as an incomplete body.
fn body_failed(e: s3s::StdError) -> S3Error {
    match e.downcast::<S3Error>() {
        Ok(e) => *e,
        Err(e) => S3Error::with_source(S3ErrorCode::IncompleteBody, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_content_md5_must_be_the_bytes_md5() {
        let md5: [u8; 16] = Md5::digest(b"bytes").into();
        let b64 = base64::engine::general_purpose::STANDARD.encode(md5);
        assert!(check_content_md5(None, &md5).is_ok());
        assert!(check_content_md5(Some(&b64), &md5).is_ok());
        let other: [u8; 16] = Md5::digest(b"other").into();
        let refused = check_content_md5(Some(&b64), &other).unwrap_err();
        assert_eq!(*refused.code(), S3ErrorCode::BadDigest);
        let malformed = check_content_md5(Some("not base64!"), &md5).unwrap_err();
        assert_eq!(*malformed.code(), S3ErrorCode::InvalidDigest);
    }

    #[test]
    fn only_claimed_checksums_are_compared() {
        let actual = Checksum {
            checksum_crc32: Some("AAAAAA==".to_owned()),
            ..Default::default()
        };
        assert!(check_checksums(&Checksum::default(), &actual).is_ok());
        assert!(check_checksums(&actual, &actual).is_ok());
        let claimed = Checksum {
            checksum_crc32: Some("BBBBBB==".to_owned()),
            ..Default::default()
        };
        assert!(check_checksums(&claimed, &actual).is_err());
    }
}

//! Multipart uploads on the embedded server: creation, parts and completion, each
//! staged, checked and synced like a PUT, in s3s-fs's layout so that s3s-fs can list
//! and abort them. An upload belongs to the access key and the bucket and key it was
//! begun with: a part or a completion for any other is NoSuchUpload. A completion
//! repeated after it succeeded answers as the first did, as S3 does, for clients that
//! retry one whose answer was lost.

use std::io;

use md5::{Digest, Md5};
use s3s::auth::Credentials;
use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result, s3_error};
use tokio::fs::{self, File};
use uuid::Uuid;

use super::super::disk::{StagedFile, remove_file, sync_dir};
use super::super::layout::{Attributes, FileIdentity, Internal, PartDigest, UploadKey};
use super::body::Claims;
use super::{Conditions, DurableFs, failed, read_if_exists};
use crate::storage::limits::MAX_PARTS;

/// S3's smallest part, except the last.
const MIN_PART: u64 = 5 * 1024 * 1024;

impl DurableFs {
    /// Multipart upload `id`, which must exist and have been begun with `credentials`
    /// for `key` of `bucket`.
    pub(super) async fn owned_upload(
        &self,
        id: &str,
        credentials: Option<&Credentials>,
        bucket: &str,
        key: &str,
    ) -> S3Result<Uuid> {
        let upload = Uuid::parse_str(id).map_err(|_| s3_error!(NoSuchUpload))?;
        let owner: Option<String> = match read_if_exists(&self.layout.upload(&upload)).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(S3Error::internal_error)?,
            Ok(None) => return Err(s3_error!(NoSuchUpload)),
            Err(e) => return Err(failed("read an upload's record")(e)),
        };
        if owner.as_deref() != credentials.map(|c| c.access_key.as_str()) {
            return Err(s3_error!(AccessDenied));
        }
        let begun_for: Option<UploadKey> = read_if_exists(&self.layout.upload_key(&upload))
            .await
            .map_err(failed("read an upload's key"))?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let asked = UploadKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        };
        if begun_for.as_ref() != Some(&asked) {
            return Err(s3_error!(
                NoSuchUpload,
                "the upload was not begun for this key"
            ));
        }
        Ok(upload)
    }

    /// Renames staged part `file` into place as part `number` of `upload`, with the
    /// record of its MD5 (`md5`, hex), synced. Uploads of one part are serialised, and
    /// the old record goes first: a crash part-way leaves a part with no record (hashed
    /// again at completion), never a record of other bytes.
    async fn place_part(
        &self,
        mut file: StagedFile,
        upload: &Uuid,
        number: i32,
        md5: &str,
    ) -> S3Result<()> {
        let dest = self.layout.part(upload, number);
        let record = self.layout.part_digest(upload, number);
        let _serialised = self.lock(&dest).await;
        let metadata = file
            .metadata()
            .await
            .map_err(failed("read a staged part"))?;
        remove_file(&record)
            .await
            .map_err(failed("remove a part's digest"))?;
        file.place(&dest)
            .await
            .map_err(failed("rename a part into place"))?;
        if let Some(md5) = hex::decode(md5).ok().and_then(|b| b.try_into().ok()) {
            let digest = PartDigest {
                md5,
                identity: FileIdentity::of(&metadata),
            };
            self.staging
                .write_file(&record, digest.to_line().as_bytes())
                .await
                .map_err(failed("write a part's digest"))?;
        }
        sync_dir(self.layout.root())
            .await
            .map_err(failed("sync the store"))
    }

    /// The MD5 of part `number`, opened as `file`, as recorded when it was received,
    /// if the record is for this very file.
    async fn recorded_md5(&self, upload: &Uuid, number: i32, file: &File) -> Option<[u8; 16]> {
        let line = fs::read_to_string(self.layout.part_digest(upload, number))
            .await
            .ok()?;
        let digest = PartDigest::parse(&line)?;
        let identity = FileIdentity::of(&file.metadata().await.ok()?);
        (digest.identity == identity).then_some(digest.md5)
    }

    /// Begins a multipart upload: its record (the access key that began it) and its
    /// metadata, synced.
    pub(super) async fn create_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let S3Request {
            input, credentials, ..
        } = req;
        self.target(&input.bucket, &input.key).await?;
        let upload = Uuid::new_v4();
        let owner = serde_json::to_vec(&credentials.as_ref().map(|c| c.access_key.as_str()))
            .map_err(S3Error::internal_error)?;
        let attributes = attributes_of!(input);
        if let Some(metadata) = attributes.to_json()? {
            let path = self
                .layout
                .metadata(&input.bucket, &input.key, Some(&upload));
            self.staging
                .write_file(&path, &metadata)
                .await
                .map_err(failed("write an upload's metadata"))?;
        }
        let begun_for = serde_json::to_vec(&UploadKey {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
        })
        .map_err(S3Error::internal_error)?;
        // The key first: an upload record is never without it.
        self.staging
            .write_file(&self.layout.upload_key(&upload), &begun_for)
            .await
            .map_err(failed("write an upload's key"))?;
        self.staging
            .write_file(&self.layout.upload(&upload), &owner)
            .await
            .map_err(failed("write an upload's record"))?;
        sync_dir(self.layout.root())
            .await
            .map_err(failed("sync the store"))?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload.to_string()),
            ..Default::default()
        }))
    }

    /// Receives a part, checks it like a PUT, and renames it into place, synced.
    pub(super) async fn put_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let S3Request {
            input,
            credentials,
            trailing_headers,
            ..
        } = req;
        check_part_number(input.part_number)?;
        let upload = self
            .owned_upload(
                &input.upload_id,
                credentials.as_ref(),
                &input.bucket,
                &input.key,
            )
            .await?;
        let claims = claims_of!(input);
        let received = self.receive(input.body, claims, trailing_headers).await?;
        self.place_part(received.file, &upload, input.part_number, &received.e_tag)
            .await?;
        let checksum = received.checksum;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(received.e_tag)),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    /// The ETag of object `key` of `bucket` if upload `id`'s completion wrote it and
    /// it has not been replaced since.
    async fn completed_by(&self, bucket: &str, key: &str, id: &str) -> S3Result<Option<ETag>> {
        let Ok(upload) = Uuid::parse_str(id) else {
            return Ok(None);
        };
        let record = Internal::load(&self.layout.internal(bucket, key))
            .await
            .map_err(failed("read an object's ETag"))?;
        Ok(record
            .filter(|r| r.upload() == Some(upload.to_string().as_str()))
            .and_then(|r| r.e_tag()))
    }

    /// Joins the parts listed, checking each against the ETag given for it, and puts
    /// the object in place like a PUT; the parts and records of the upload go after.
    pub(super) async fn complete_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let S3Request {
            input, credentials, ..
        } = req;
        let parts = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if parts.is_empty() {
            return Err(s3_error!(InvalidPart, "You must specify at least one part"));
        }
        if let Some(e_tag) = self
            .completed_by(&input.bucket, &input.key, &input.upload_id)
            .await?
        {
            return Ok(S3Response::new(CompleteMultipartUploadOutput {
                bucket: Some(input.bucket),
                key: Some(input.key),
                e_tag: Some(e_tag),
                ..Default::default()
            }));
        }
        let upload = self
            .owned_upload(
                &input.upload_id,
                credentials.as_ref(),
                &input.bucket,
                &input.key,
            )
            .await?;
        let target = self.target(&input.bucket, &input.key).await?;
        let conditions = Conditions {
            if_none_match: input.if_none_match,
            if_match: input.if_match,
        };
        self.check_conditions(&target, &conditions).await?;

        // Every part listed is there, in order and big enough, before a byte is copied.
        let mut files = Vec::with_capacity(parts.len());
        let mut previous = 0;
        for (i, part) in parts.iter().enumerate() {
            let number = part
                .part_number
                .ok_or_else(|| s3_error!(InvalidPart, "a part without its number"))?;
            if number <= previous {
                return Err(s3_error!(InvalidPartOrder));
            }
            previous = number;
            let path = self.layout.part(&upload, number);
            let len = match fs::metadata(&path).await {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(s3_error!(InvalidPart, "part {number} was not uploaded"));
                }
                Err(e) => return Err(failed("read a part")(e)),
            };
            if i + 1 < parts.len() && len < MIN_PART {
                return Err(s3_error!(EntityTooSmall));
            }
            files.push((path, len));
        }

        let mut file = self
            .staging
            .create()
            .await
            .map_err(failed("create a staging file"))?;
        let mut digests = Md5::new();
        // A part whose file is the one received is not hashed again: its MD5 was
        // recorded then, and its bytes are copied by the kernel. Any other (a record
        // lost to a crash, a file changed since) is read and hashed.
        for (part, (path, len)) in parts.iter().zip(&files) {
            let number = part.part_number.unwrap_or_default();
            let opened = File::open(path).await.map_err(failed("read a part"))?;
            let recorded = self.recorded_md5(&upload, number, &opened).await;
            let md5 = match recorded {
                Some(md5) => {
                    file.append(opened, *len)
                        .await
                        .map_err(failed("copy a part"))?;
                    md5
                }
                None => {
                    let mut hasher = Md5::new();
                    file.append_hashed(opened, *len, &mut hasher)
                        .await
                        .map_err(failed("copy a part"))?;
                    hasher.finalize().into()
                }
            };
            if let Some(claimed) = &part.e_tag
                && claimed.value() != hex::encode(md5)
            {
                return Err(s3_error!(
                    InvalidPart,
                    "part {number}'s ETag is not that of the part uploaded"
                ));
            }
            digests.update(md5);
        }
        let e_tag = format!("{}-{}", hex::encode(digests.finalize()), parts.len());
        let upload_metadata = self
            .layout
            .metadata(&target.bucket, &target.key, Some(&upload));
        let metadata = read_if_exists(&upload_metadata)
            .await
            .map_err(failed("read an upload's metadata"))?;
        let mut internal = Internal::new(&e_tag, &Checksum::default());
        internal.set_upload(&upload);
        self.publish(&target, file, metadata, internal, &conditions)
            .await?;

        // Done with the upload. A crash before these removals leaves them for the
        // cleanup's abort; the object is in place either way.
        for (part, (path, _)) in parts.iter().zip(&files) {
            remove_file(path).await.map_err(failed("remove a part"))?;
            let number = part.part_number.unwrap_or_default();
            remove_file(&self.layout.part_digest(&upload, number))
                .await
                .map_err(failed("remove a part's digest"))?;
        }
        remove_file(&upload_metadata)
            .await
            .map_err(failed("remove an upload's metadata"))?;
        remove_file(&self.layout.upload_key(&upload))
            .await
            .map_err(failed("remove an upload's key"))?;
        remove_file(&self.layout.upload(&upload))
            .await
            .map_err(failed("remove an upload's record"))?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(target.bucket),
            key: Some(target.key),
            e_tag: Some(ETag::Strong(e_tag)),
            ..Default::default()
        }))
    }
}

/// A part number S3 allows.
fn check_part_number(number: i32) -> S3Result<()> {
    if u64::try_from(number).is_ok_and(|n| (1..=MAX_PARTS).contains(&n)) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and {MAX_PARTS}, inclusive"
        ))
    }
}

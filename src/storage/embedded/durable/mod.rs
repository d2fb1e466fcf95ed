//! The embedded S3 server's store: s3s-fs answers reads and listings, and museum writes
//! and deletes every object and part itself (PUT, part upload, multipart creation and
//! completion, delete). Each write goes to a staging file, is checked (its signed
//! length, Content-MD5, checksums, part ETags), synced, and only then renamed into
//! place; the folders it changed are synced before the answer. So a refused request
//! changes nothing, and an acknowledged one survives a crash. A delete takes the
//! object's records (ETag, metadata) and its emptied folders with it. Server-side copy
//! is not served (`access` refuses it before it gets here).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use s3s_fs::FileSystem;
use tokio::fs::{self, File};
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, MutexGuard};

use self::body::Claims;
use super::disk::{StagedFile, Staging, create_dirs, remove_file, sync_dir};
use super::layout::{Attributes, Internal, Layout};

/// The metadata of a PUT or a multipart creation, whose fields share their names.
macro_rules! attributes_of {
    ($input:ident) => {
        Attributes {
            user_metadata: $input.metadata,
            content_encoding: $input.content_encoding,
            content_type: $input.content_type,
            content_disposition: $input.content_disposition,
            content_language: $input.content_language,
            cache_control: $input.cache_control,
            expires: Attributes::format_expires($input.expires.as_ref()),
            website_redirect_location: $input.website_redirect_location,
        }
    };
}

/// What a PUT or a part upload claims about its body, whose fields share their names.
macro_rules! claims_of {
    ($input:ident) => {
        Claims {
            length: $input.content_length,
            md5: $input.content_md5,
            checksum: Checksum {
                checksum_crc32: $input.checksum_crc32,
                checksum_crc32c: $input.checksum_crc32c,
                checksum_sha1: $input.checksum_sha1,
                checksum_sha256: $input.checksum_sha256,
                checksum_crc64nvme: $input.checksum_crc64nvme,
                checksum_type: None,
            },
            algorithm: $input.checksum_algorithm,
        }
    };
}

mod body;
mod list;
mod multipart;

/// Writes to one object are serialised by one of this many locks, chosen by its path.
const LOCKS: usize = 256;
/// Bytes read at once when copying a stored file.
const READ_BUFFER: usize = 256 * 1024;

/// s3s-fs on `root`, with museum's atomic and synced write path.
#[derive(Debug)]
pub(super) struct DurableFs {
    inner: FileSystem,
    layout: Layout,
    staging: Staging,
    locks: Vec<Mutex<()>>,
}

impl DurableFs {
    /// The store under `root`, a folder that exists. Staging files that an earlier run
    /// left behind are removed.
    pub(super) fn new(root: &Path) -> io::Result<Self> {
        let layout = Layout::new(root.canonicalize()?);
        let staging = Staging::prepare(layout.staging())?;
        let inner = FileSystem::new(layout.root())
            .map_err(|e| io::Error::other(format!("s3s-fs refused its root: {e:?}")))?;
        Ok(Self {
            inner,
            layout,
            staging,
            locks: (0..LOCKS).map(|_| Mutex::new(())).collect(),
        })
    }

    /// The lock for writes to `path`.
    async fn lock(&self, path: &Path) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        path.hash(&mut hasher);
        let index = usize::try_from(hasher.finish() % LOCKS as u64).unwrap_or(0);
        self.locks[index].lock().await
    }

    /// Where object `key` of `bucket` goes; the bucket must exist. A key that is the
    /// folder of stored objects (`a/b` beside `a/b/c`), or that has a stored object
    /// for a folder (`a/b/c` beside `a/b`), is refused: one file cannot be both.
    async fn target(&self, bucket: &str, key: &str) -> S3Result<Target> {
        let target = self.locate(bucket, key).await?;
        let bucket_dir = self.layout.bucket(bucket)?;
        let path = &target.path;
        let mut folder = path.parent();
        while let Some(dir) = folder.filter(|dir| *dir != bucket_dir) {
            if fs::symlink_metadata(dir).await.is_ok_and(|m| !m.is_dir()) {
                return Err(key_conflict("a folder of this key is a stored object"));
            }
            folder = dir.parent();
        }
        if fs::symlink_metadata(path).await.is_ok_and(|m| m.is_dir()) {
            return Err(key_conflict("this key is the folder of stored objects"));
        }
        Ok(target)
    }

    /// Object `key` of `bucket`, whose folder must exist; for a delete, where a key
    /// that is a folder of stored objects deletes nothing rather than being refused.
    async fn locate(&self, bucket: &str, key: &str) -> S3Result<Target> {
        let bucket_dir = self.layout.bucket(bucket)?;
        if !fs::metadata(&bucket_dir).await.is_ok_and(|m| m.is_dir()) {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(Target {
            path: self.layout.object(bucket, key)?,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Deletes object `target` (none there is no error, as on S3), then its records
    /// and the folders it leaves empty, synced before this returns.
    async fn remove_object(&self, target: &Target) -> S3Result<()> {
        let _guard = self.lock(&target.path).await;
        let root = self.layout.root();
        let removed = match fs::symlink_metadata(&target.path).await {
            Ok(m) if m.is_dir() => false,
            Ok(_) => remove_file(&target.path)
                .await
                .map_err(failed("remove an object"))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(failed("look for an object")(e)),
        };
        let record = remove_file(&self.layout.internal(&target.bucket, &target.key))
            .await
            .map_err(failed("remove an ETag record"))?;
        let metadata = remove_file(&self.layout.metadata(&target.bucket, &target.key, None))
            .await
            .map_err(failed("remove an object's metadata"))?;
        if !(removed || record || metadata) {
            return Ok(());
        }
        let bucket_dir = self.layout.bucket(&target.bucket)?;
        let mut folder = target.path.parent().unwrap_or(root).to_owned();
        // Emptied folders go too, or a key that was one could never be written.
        while folder != bucket_dir && folder.starts_with(&bucket_dir) {
            if fs::remove_dir(&folder).await.is_err() {
                break;
            }
            match folder.parent() {
                Some(parent) => folder = parent.to_owned(),
                None => break,
            }
        }
        tokio::try_join!(sync_dir(root), sync_dir(&folder))
            .map_err(failed("sync an object's folders"))?;
        Ok(())
    }

    /// Checks `conditions` against object `target` as it stands.
    async fn check_conditions(&self, target: &Target, conditions: &Conditions) -> S3Result<()> {
        if conditions.if_none_match.is_none() && conditions.if_match.is_none() {
            return Ok(());
        }
        let exists = fs::try_exists(&target.path)
            .await
            .map_err(failed("look for an object"))?;
        if exists
            && conditions
                .if_none_match
                .as_ref()
                .is_some_and(|c| c.is_any())
        {
            return Err(s3_error!(PreconditionFailed, "the object exists"));
        }
        if let Some(condition) = &conditions.if_match {
            if !exists {
                return Err(s3_error!(PreconditionFailed, "the object does not exist"));
            }
            if let Some(expected) = condition.as_etag() {
                let current = self
                    .e_tag_of(&target.bucket, &target.key, &target.path)
                    .await?;
                if !current.strong_cmp(expected) {
                    return Err(s3_error!(PreconditionFailed, "the object's ETag differs"));
                }
            }
        }
        Ok(())
    }

    /// Object `key`'s ETag: the recorded one, else (as s3s-fs does) its bytes' MD5.
    async fn e_tag_of(&self, bucket: &str, key: &str, path: &Path) -> S3Result<ETag> {
        let internal = Internal::load(&self.layout.internal(bucket, key))
            .await
            .map_err(failed("read an object's ETag"))?;
        if let Some(e_tag) = internal.as_ref().and_then(Internal::e_tag) {
            return Ok(e_tag);
        }
        let mut file = File::open(path)
            .await
            .map_err(|e| s3_error!(e, NoSuchKey))?;
        let mut md5 = Md5::new();
        let mut buf = vec![0; READ_BUFFER];
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(failed("read a stored file"))?;
            if n == 0 {
                return Ok(ETag::Strong(hex::encode(md5.finalize())));
            }
            md5.update(&buf[..n]);
        }
    }

    /// Puts staged `file` in place as object `target`, with its metadata (`None`:
    /// none) and its ETag record, if `conditions` still hold under the object's lock.
    /// What may fail for want of space is done first, while the old object stands;
    /// everything is synced before this returns. A crash at any point leaves the old
    /// object or the new one, each with an ETag true of its bytes: where the record was
    /// lost, s3s-fs answers their MD5 (for a completed multipart upload, not S3's
    /// multipart form; its parts stay until this returns, so a retried completion
    /// restores it).
    async fn publish(
        &self,
        target: &Target,
        mut file: StagedFile,
        metadata: Option<Vec<u8>>,
        internal: Internal,
        conditions: &Conditions,
    ) -> S3Result<()> {
        let _guard = self.lock(&target.path).await;
        self.check_conditions(target, conditions).await?;
        let root = self.layout.root();
        let folder = target.path.parent().unwrap_or(root);
        let record_path = self.layout.internal(&target.bucket, &target.key);
        let metadata_path = self.layout.metadata(&target.bucket, &target.key, None);

        let stage = |bytes: Vec<u8>| async move {
            let mut staged = self.staging.stage(&bytes).await?;
            staged.sync().await?;
            Ok::<_, io::Error>(staged)
        };
        let (record, metadata, (), ()) = tokio::try_join!(
            async {
                stage(internal.to_json()?)
                    .await
                    .map_err(failed("write an ETag record"))
            },
            async {
                match metadata {
                    Some(bytes) => stage(bytes)
                        .await
                        .map(Some)
                        .map_err(failed("write an object's metadata")),
                    None => Ok(None),
                }
            },
            async { file.sync().await.map_err(failed("sync a staging file")) },
            async {
                create_dirs(folder)
                    .await
                    .map_err(failed("create an object's folder"))
            },
        )?;

        let replacing = fs::try_exists(&target.path)
            .await
            .map_err(failed("look for an object"))?;
        // Neither old bytes with the new ETag nor new bytes with an old one (also that
        // of a deleted object, whose record s3s-fs leaves): an old record goes first,
        // for good.
        if remove_file(&record_path)
            .await
            .map_err(failed("remove an ETag record"))?
        {
            sync_dir(root).await.map_err(failed("sync the store"))?;
        }
        let mut record = Some(record);
        if !replacing && let Some(record) = record.take() {
            // Invisible until the object exists.
            record
                .place(&record_path)
                .await
                .map_err(failed("write an ETag record"))?;
        }
        match metadata {
            Some(metadata) => metadata.place(&metadata_path).await,
            None => remove_file(&metadata_path).await.map(drop),
        }
        .map_err(failed("write an object's metadata"))?;
        file.place(&target.path)
            .await
            .map_err(failed("rename an object into place"))?;
        if let Some(record) = record {
            record
                .place(&record_path)
                .await
                .map_err(failed("write an ETag record"))?;
        }
        // Until both are synced, a crash may keep the object without its record, and
        // s3s-fs then answers the MD5 of its bytes: never an ETag of other bytes.
        tokio::try_join!(sync_dir(root), sync_dir(folder))
            .map_err(failed("sync an object's folders"))?;
        Ok(())
    }
}

/// Whether folder `dir` holds a file anywhere below it (empty folders do not count).
fn holds_a_file(dir: &Path) -> io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() || holds_a_file(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An object about to be written.
#[derive(Debug)]
struct Target {
    bucket: String,
    key: String,
    path: PathBuf,
}

/// A write's conditions on the object it replaces.
#[derive(Debug, Default)]
struct Conditions {
    if_none_match: Option<ETagCondition>,
    if_match: Option<ETagCondition>,
}

/// An I/O failure while trying to `what`: logged here with its cause (never a path
/// or key), answered as an internal error.
fn failed(what: &'static str) -> impl FnOnce(io::Error) -> S3Error {
    move |e| {
        tracing::warn!(error.message = %e, "embedded S3 could not {what}");
        S3Error::internal_error(e)
    }
}

/// A write refused because its key and a stored object's are a file and its folder.
fn key_conflict(why: &str) -> S3Error {
    let mut error = S3Error::with_message(
        S3ErrorCode::Custom("ObjectKeyConflict".into()),
        format!("{why}; an object and a folder of objects cannot share a name here"),
    );
    error.set_status_code(http::StatusCode::CONFLICT);
    error
}

/// `path`'s bytes, if the file exists.
async fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait::async_trait]
impl S3 for DurableFs {
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let S3Request {
            input,
            trailing_headers,
            ..
        } = req;
        if let Some(class) = &input.storage_class
            && !["STANDARD", "REDUCED_REDUNDANCY"].contains(&class.as_str())
        {
            return Err(s3_error!(InvalidStorageClass));
        }
        let target = self.target(&input.bucket, &input.key).await?;
        let conditions = Conditions {
            if_none_match: input.if_none_match,
            if_match: input.if_match,
        };
        // Before the body is read: a refusal costs no upload.
        self.check_conditions(&target, &conditions).await?;
        if input.key.ends_with('/') {
            if input.content_length.is_some_and(|len| len > 0) {
                return Err(s3_error!(
                    UnexpectedContent,
                    "a folder object (a key ending in /) has no body"
                ));
            }
            create_dirs(&target.path)
                .await
                .map_err(failed("create a folder object"))?;
            return Ok(S3Response::new(PutObjectOutput::default()));
        }
        let claims = claims_of!(input);
        let received = self.receive(input.body, claims, trailing_headers).await?;
        let attributes = attributes_of!(input);
        let internal = Internal::new(&received.e_tag, &received.checksum);
        self.publish(
            &target,
            received.file,
            attributes.to_json()?,
            internal,
            &conditions,
        )
        .await?;
        let checksum = received.checksum;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(received.e_tag)),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.create_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.put_part(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.complete_upload(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let answer = self.inner.create_bucket(req).await?;
        sync_dir(self.layout.root())
            .await
            .map_err(failed("sync the store"))?;
        Ok(answer)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        // An upload that is gone (completed or aborted), or that is another key's, is
        // 404 NoSuchUpload, as on S3; s3s-fs answers 403 AccessDenied.
        let input = &req.input;
        self.owned_upload(
            &input.upload_id,
            req.credentials.as_ref(),
            &input.bucket,
            &input.key,
        )
        .await?;
        self.inner.abort_multipart_upload(req).await
    }

    /// Only an empty bucket is deleted (S3's BucketNotEmpty otherwise); s3s-fs
    /// removes the folder with everything in it.
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let path = self.layout.bucket(&req.input.bucket)?;
        let walked = path.clone();
        let holds = tokio::task::spawn_blocking(move || holds_a_file(&walked))
            .await
            .map_err(|_| s3_error!(InternalError, "the bucket's walk stopped"))?;
        match holds {
            Ok(true) => return Err(s3_error!(BucketNotEmpty)),
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(s3_error!(NoSuchBucket));
            }
            Err(e) => return Err(failed("look into a bucket")(e)),
        }
        fs::remove_dir_all(&path)
            .await
            .map_err(failed("remove a bucket"))?;
        sync_dir(self.layout.root())
            .await
            .map_err(failed("sync the store"))?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        let target = self.locate(&input.bucket, &input.key).await?;
        self.remove_object(&target).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    /// Each key as `delete_object` deletes it; one that cannot be is listed with its
    /// error, as on S3, and the others are still deleted.
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            let result = match self.locate(&input.bucket, &object.key).await {
                Ok(target) => self.remove_object(&target).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) if quiet => {}
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(object.key),
                    version_id: object.version_id,
                    ..Default::default()
                }),
                Err(e) if *e.code() == S3ErrorCode::NoSuchBucket => return Err(e),
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_owned()),
                    key: Some(object.key),
                    message: e.message().map(str::to_owned),
                    version_id: object.version_id,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    // s3s-fs as it is: reads and listings.

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.inner.get_bucket_location(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.inner.get_object(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.inner.head_object(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.inner.list_buckets(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        // Version 1 is version 2 with a marker for its start, as s3s-fs has it.
        let v2 = self.list_objects_v2(req.map_input(Into::into)).await?;
        Ok(v2.map_output(|v2| ListObjectsOutput {
            contents: v2.contents,
            common_prefixes: v2.common_prefixes,
            delimiter: v2.delimiter,
            encoding_type: v2.encoding_type,
            name: v2.name,
            prefix: v2.prefix,
            max_keys: v2.max_keys,
            is_truncated: v2.is_truncated,
            marker: v2.start_after,
            next_marker: v2.next_continuation_token,
            ..ListObjectsOutput::default()
        }))
    }

    /// Listed a page at a time (`list`); a delimiter other than `/` is left to s3s-fs,
    /// and an empty one means none, as on S3.
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let folders = match req.input.delimiter.as_deref() {
            None | Some("") => false,
            Some("/") => true,
            Some(_) => return self.inner.list_objects_v2(req).await,
        };
        let input = req.input;
        let root = self.layout.bucket(&input.bucket)?;
        if !fs::metadata(&root).await.is_ok_and(|m| m.is_dir()) {
            return Err(s3_error!(NoSuchBucket));
        }
        let max_keys = input.max_keys.unwrap_or(1000).clamp(0, 1000);
        let prefix = input
            .prefix
            .as_deref()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_owned();
        let after = match (
            input.continuation_token.as_deref(),
            input.start_after.as_deref(),
        ) {
            (Some(token), Some(start)) => Some(token.max(start).to_owned()),
            (token, start) => token.or(start).map(str::to_owned),
        };
        let page = tokio::task::spawn_blocking(move || {
            list::list(
                &root,
                list::Query {
                    prefix: &prefix,
                    folders,
                    after: after.as_deref(),
                    max: usize::try_from(max_keys).unwrap_or(0),
                },
            )
        })
        .await
        .map_err(|_| s3_error!(InternalError, "the listing stopped"))?
        .map_err(failed("list the bucket"))?;
        let key_count = i32::try_from(page.objects.len() + page.prefixes.len())
            .map_err(|_| s3_error!(InternalError, "too many keys"))?;
        let contents = page
            .objects
            .into_iter()
            .map(|entry| Object {
                key: Some(entry.key),
                last_modified: Some(Timestamp::from(entry.modified)),
                size: Some(i64::try_from(entry.size).unwrap_or(i64::MAX)),
                ..Object::default()
            })
            .collect::<Vec<_>>();
        let common_prefixes = page
            .prefixes
            .into_iter()
            .map(|prefix| CommonPrefix {
                prefix: Some(prefix),
            })
            .collect::<Vec<_>>();
        Ok(S3Response::new(ListObjectsV2Output {
            key_count: Some(key_count),
            max_keys: Some(max_keys),
            is_truncated: Some(page.last.is_some()),
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            continuation_token: input.continuation_token,
            next_continuation_token: page.last,
            delimiter: input.delimiter,
            encoding_type: input.encoding_type,
            name: Some(input.bucket),
            prefix: input.prefix,
            start_after: input.start_after,
            ..ListObjectsV2Output::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = &req.input;
        self.owned_upload(
            &input.upload_id,
            req.credentials.as_ref(),
            &input.bucket,
            &input.key,
        )
        .await?;
        self.inner.list_parts(req).await
    }
}

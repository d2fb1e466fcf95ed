//! `museum import DIR --user ID`: brings a folder of files into museum, following
//! symbolic links (a git-annex or `rsync --links` library) and skipping `.git`
//! folders; a link that cannot be followed is a failure of the run. Each file is
//! read and sent to the hot primary under a new key (one PUT, or a multipart upload
//! in parts of `replication.part-size` above `replication.multipart-threshold`),
//! proved by the ETag the bucket answers (the MD5 of its bytes or parts), and
//! recorded as the user's object with its copies queued, as a report would. The
//! `imports` table remembers each file by path, size and modification time: a second
//! run skips what is there, and a run cut short (kill -9 included) resumes without
//! recording any file twice, sending a file it had not recorded to the same key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest, Md5};

use crate::db::uploads::{
    Committed, NewObject, TempObject, commit_objects, find_object_by_key, find_temp_object,
    set_upload_id,
};
use crate::db::{Db, DbError, imports, now_millis};
use crate::storage::presign::{multipart_etag, new_object_key};
use crate::storage::{BucketClient, Buckets, StorageError};
use crate::time::millis;

/// Files sent at once.
const CONCURRENCY: usize = 8;
/// How long an import's issued key stays live if the run is cut short.
const KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long an issued key must still be live for a resumed run to send to it again.
const KEY_MARGIN: Duration = Duration::from_secs(3600);

/// How an import sends its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    pub user: i64,
    pub multipart_threshold: u64,
    pub part_size: u64,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Files found under the folder (links followed), the entries that could not be
    /// followed or read included.
    pub files: u64,
    /// Files sent and recorded by this run, and their bytes.
    pub imported: u64,
    pub bytes: u64,
    /// Files recorded by an earlier run, unchanged since.
    pub skipped: u64,
    /// Files that failed, with why (nothing of them is recorded).
    pub failed: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a walk of the folder found.
#[derive(Debug, Default)]
struct Found {
    /// Every file to import, as paths relative to the folder, sorted.
    files: Vec<PathBuf>,
    /// Entries that could not be followed or read (a dangling link, an unreadable
    /// folder), with why: failures of the run, named in its report.
    broken: Vec<(String, String)>,
}

/// The folder a walk skips wherever it is: git's own, whose files a library of
/// git-annex links points into (and which are imported through those links).
const SKIPPED: &str = ".git";

/// Every regular file under `root`, following symbolic links to files and folders
/// (git-annex and `rsync --links` libraries are made of them), as paths relative to
/// it. A folder is walked once however many paths lead to it, so a link back up the
/// tree ends there, and a file reached by several paths (links, hard links) is
/// imported once, under the first in sorted order. `.git` folders are skipped.
fn files_under(root: &Path) -> Result<Found, ImportError> {
    use std::collections::{HashSet, VecDeque};
    use std::os::unix::fs::MetadataExt;
    let identity = |m: &std::fs::Metadata| (m.dev(), m.ino());
    let top = std::fs::metadata(root).map_err(|source| ImportError::Folder {
        path: root.display().to_string(),
        source,
    })?;
    let mut found = Found::default();
    let mut folders_seen = HashSet::from([identity(&top)]);
    let mut files_seen = HashSet::new();
    let mut folders = VecDeque::from([root.to_owned()]);
    while let Some(folder) = folders.pop_front() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(source) if folder == root => {
                return Err(ImportError::Folder {
                    path: folder.display().to_string(),
                    source,
                });
            }
            Err(e) => {
                let name = relative_name(root, &folder);
                found
                    .broken
                    .push((name, format!("cannot read the folder: {e}")));
                continue;
            }
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            if entry.file_name() == SKIPPED {
                continue;
            }
            let path = entry.path();
            // Followed: the link's target, or the entry itself.
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) => {
                    let why = match std::fs::read_link(&path) {
                        Ok(target) => format!(
                            "a symbolic link to {} that cannot be followed: {e}",
                            target.display()
                        ),
                        Err(_) => format!("cannot read it: {e}"),
                    };
                    found.broken.push((relative_name(root, &path), why));
                    continue;
                }
            };
            if meta.is_dir() {
                if folders_seen.insert(identity(&meta)) {
                    folders.push_back(path);
                }
            } else if meta.is_file()
                && files_seen.insert(identity(&meta))
                && let Ok(relative) = path.strip_prefix(root)
            {
                found.files.push(relative.to_owned());
            }
        }
    }
    found.files.sort();
    found.broken.sort();
    Ok(found)
}

/// `path` relative to `root`, for the report.
fn relative_name(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Imports every file under `root` for `options.user`; `progress` sees the bytes of
/// each file done (sent or skipped) and the total first.
pub async fn import(
    db: &Db,
    buckets: &Buckets,
    root: &Path,
    options: ImportOptions,
    progress: impl Fn(Progress) + Send + Sync,
) -> Result<ImportReport, ImportError> {
    let Found { files, broken } = files_under(root)?;
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(root.join(f)).ok())
        .map(|m| m.len())
        .sum();
    progress(Progress::Total(total));
    let primary = Arc::clone(buckets.primary());
    let targets: Vec<String> = buckets
        .all()
        .map(|b| b.id().to_owned())
        .filter(|id| id != primary.id())
        .collect();
    let mut report = ImportReport {
        files: (files.len() + broken.len()) as u64,
        failed: broken,
        ..ImportReport::default()
    };
    let mut results = futures_util::stream::iter(files.into_iter().map(|file| {
        let (primary, targets) = (Arc::clone(&primary), targets.clone());
        async move {
            let outcome = import_one(db, &primary, &targets, root, &file, options).await;
            (file, outcome)
        }
    }))
    .buffer_unordered(CONCURRENCY);
    while let Some((file, outcome)) = results.next().await {
        match outcome {
            Ok(Outcome::Imported(bytes)) => {
                report.imported += 1;
                report.bytes += bytes;
                progress(Progress::Done(bytes));
            }
            Ok(Outcome::Skipped(bytes)) => {
                report.skipped += 1;
                progress(Progress::Done(bytes));
            }
            Err(OneError::Db(e)) => return Err(e.into()),
            Err(OneError::File(why)) => {
                report.failed.push((file.display().to_string(), why));
            }
        }
    }
    Ok(report)
}

/// What the progress callback hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Total(u64),
    Done(u64),
}

enum Outcome {
    Imported(u64),
    Skipped(u64),
}

enum OneError {
    Db(DbError),
    File(String),
}

impl From<DbError> for OneError {
    fn from(e: DbError) -> Self {
        Self::Db(e)
    }
}

async fn import_one(
    db: &Db,
    primary: &BucketClient,
    targets: &[String],
    root: &Path,
    file: &Path,
    options: ImportOptions,
) -> Result<Outcome, OneError> {
    let full = root.join(file);
    let name = file.to_string_lossy().into_owned();
    let meta = tokio::fs::metadata(&full)
        .await
        .map_err(|e| OneError::File(format!("cannot read it: {e}")))?;
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, millis);
    let size_i64 = i64::try_from(size).unwrap_or(i64::MAX);
    let now = now_millis();
    let mut resumed_key = None;
    if let Some(row) = imports::find(db, options.user, &name).await? {
        let unchanged = row.size == size_i64 && row.mtime == mtime;
        match row.object_id {
            Some(_) if unchanged => return Ok(Outcome::Skipped(size)),
            None if unchanged => {
                // Cut short: recorded after all, or to be sent again.
                if let Some(object) = find_object_by_key(db, &row.object_key).await? {
                    imports::finish(db, options.user, &name, object.id).await?;
                    return Ok(Outcome::Skipped(size));
                }
                resumed_key = resumable(db, &row.object_key, primary.id(), now).await?;
            }
            _ => {}
        }
    }
    // Sent again to the key the run cut short had while it is live, so that bytes
    // it sent are overwritten rather than left beside a new key.
    let key = match resumed_key {
        Some(issued) => {
            // The cut run's multipart upload, if it left one open, goes first; one it
            // completed is gone already. A bucket that refuses the abort keeps the
            // upload, for its lifecycle rule: the file is sent all the same.
            if let Some(upload) = &issued.upload_id {
                match primary
                    .abort_multipart_upload(&issued.object_key, upload)
                    .await
                {
                    Ok(()) => {}
                    Err(e @ StorageError::Refused { .. }) => {
                        tracing::warn!(bucket = primary.id(), error.message = %e, "import: the primary refused to abort the multipart upload a cut run left; sending the file again");
                    }
                    Err(e) => {
                        return Err(OneError::File(format!(
                            "cannot abort the multipart upload a cut run left open: {e}"
                        )));
                    }
                }
                set_upload_id(db, &issued.object_key, None).await?;
            }
            issued.object_key
        }
        None => {
            let key = new_object_key(options.user);
            let temp = TempObject {
                object_key: key.clone(),
                user_id: options.user,
                bucket_id: primary.id().to_owned(),
                declared_size: Some(size_i64),
                declared_md5: None,
                expected_etag: None,
                upload_id: None,
                created_at: now,
                expires_at: now + millis(KEY_LIFETIME),
            };
            imports::start(db, &name, mtime, &temp).await?;
            key
        }
    };
    let (md5, etag) = send(db, primary, &key, &full, size, options)
        .await
        .map_err(OneError::File)?;
    let committed = commit_objects(
        db,
        &[NewObject {
            object_key: key,
            user_id: options.user,
            bucket_id: primary.id().to_owned(),
            size: size_i64,
            md5,
            etag: Some(etag),
            created_at: now_millis(),
            copy_targets: targets.to_vec(),
        }],
    )
    .await?;
    match committed.into_iter().next() {
        Some(Committed::New(o) | Committed::Existing(o)) => {
            imports::finish(db, options.user, &name, o.id).await?;
            Ok(Outcome::Imported(size))
        }
        _ => Err(OneError::File(
            "its upload key expired before it was recorded; run the import again".to_owned(),
        )),
    }
}

/// `key`'s issued row, if it is still live on `primary` for at least `KEY_MARGIN`: the
/// cleanup sweep will not remove what is sent to it before the import records it.
async fn resumable(
    db: &Db,
    key: &str,
    primary: &str,
    now: i64,
) -> Result<Option<TempObject>, DbError> {
    Ok(find_temp_object(db, key)
        .await?
        .filter(|t| t.bucket_id == primary && t.expires_at > now + millis(KEY_MARGIN)))
}

/// Sends the file at `path` to `key`, one PUT or a multipart upload, and checks the
/// ETag the bucket answers against the bytes sent. Returns the ETag, and the hex MD5
/// of the file if it went as one PUT. A multipart upload is proved by its parts'
/// MD5s alone, as a client's is: hashing the whole file as well would read every
/// byte through MD5 twice, and the replicator records the whole MD5 when it first
/// copies the object.
async fn send(
    db: &Db,
    bucket: &BucketClient,
    key: &str,
    path: &Path,
    size: u64,
    options: ImportOptions,
) -> Result<(Option<String>, String), String> {
    let file = Arc::new(std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?);
    let storage = |e: StorageError| format!("the primary refused it: {e}");
    if size <= options.multipart_threshold {
        let (chunks, md5) = read_hashed(&file, size).await?;
        let md5 = hex::encode(md5);
        let etag = bucket.put_object(key, chunks).await.map_err(storage)?;
        let etag = proved(bucket, key, size, etag, md5.clone()).await?;
        return Ok((Some(md5), etag));
    }
    let upload = bucket.create_multipart_upload(key).await.map_err(storage)?;
    // Recorded on the key before a part is sent: if the run is cut short, the next
    // run aborts it, or the cleanup sweep does when the key expires.
    let recorded = set_upload_id(db, key, Some(&upload)).await;
    if !matches!(recorded, Ok(true)) {
        let _ = bucket.abort_multipart_upload(key, &upload).await;
        return Err(match recorded {
            Err(e) => format!("cannot record its multipart upload: {e}"),
            Ok(_) => "its upload key was swept before it was sent".to_owned(),
        });
    }
    let mut part_md5s = Vec::new();
    let mut etags = Vec::new();
    let mut left = size;
    let mut number = 1u16;
    while left > 0 {
        let len = left.min(options.part_size);
        let (chunks, part) = read_hashed(&file, len).await?;
        let etag = bucket
            .upload_part(key, &upload, number, chunks)
            .await
            .map_err(storage)?;
        let part_etag = hex::encode(part);
        match etag {
            Some(e) if !e.eq_ignore_ascii_case(&part_etag) => {
                return Err(format!(
                    "the primary answered ETag {e} for part {number}, whose ETag is {part_etag}"
                ));
            }
            Some(e) => etags.push(e),
            None => etags.push(part_etag),
        }
        part_md5s.push(part);
        left -= len;
        number = number
            .checked_add(1)
            .ok_or_else(|| "it needs more than 10,000 parts".to_owned())?;
    }
    let etag = bucket
        .complete_multipart_upload(key, &upload, &etags)
        .await
        .map_err(storage)?;
    let etag = proved(bucket, key, size, etag, multipart_etag(&part_md5s)).await?;
    Ok((None, etag))
}

/// Reads the next `len` bytes of `file` in chunks, each hashed as soon as it is read
/// while it is still in the CPU's cache, and returns them with their MD5. The chunks
/// are small enough to come from the allocator's reused memory rather than fresh
/// pages. The read runs on a blocking thread.
async fn read_hashed(
    file: &Arc<std::fs::File>,
    len: u64,
) -> Result<(Vec<Bytes>, [u8; 16]), String> {
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || read_chunks(&file, len))
        .await
        .map_err(|e| format!("its read failed: {e}"))?
        .map_err(|e| format!("it changed while it was read: {e}"))
}

/// Bytes read into each chunk.
const READ_CHUNK: u64 = 64 * 1024;

fn read_chunks(mut file: &std::fs::File, len: u64) -> std::io::Result<(Vec<Bytes>, [u8; 16])> {
    use std::io::Read;
    let mut chunks = Vec::with_capacity(usize::try_from(len.div_ceil(READ_CHUNK)).unwrap_or(0));
    let mut md5 = Md5::new();
    let mut left = len;
    while left > 0 {
        let want = left.min(READ_CHUNK);
        let mut chunk = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
        let got = file.by_ref().take(want).read_to_end(&mut chunk)?;
        if got as u64 != want {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        md5.update(&chunk);
        chunks.push(Bytes::from(chunk));
        left -= want;
    }
    Ok((chunks, md5.finalize().into()))
}

/// The object's ETag, proved: the one the bucket answered must be the one the bytes
/// sent imply; without one (a provider with ETags of its own), a HEAD must find the
/// size sent, and its ETag is the one recorded.
async fn proved(
    bucket: &BucketClient,
    key: &str,
    size: u64,
    answered: Option<String>,
    expected: String,
) -> Result<String, String> {
    match answered {
        Some(etag) if etag.eq_ignore_ascii_case(&expected) => Ok(expected),
        Some(etag) => Err(format!(
            "the primary answered ETag {etag} for bytes whose ETag is {expected}"
        )),
        None => {
            let meta = bucket
                .head(key)
                .await
                .map_err(|e| format!("it cannot be checked after it was sent: {e}"))?;
            if meta.size != size {
                return Err(format!(
                    "the primary holds {} bytes of the {size} sent",
                    meta.size
                ));
            }
            Ok(meta.etag.unwrap_or(expected))
        }
    }
}

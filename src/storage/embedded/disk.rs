//! Files the embedded S3 server writes so that a refused request or a crash leaves the
//! old state or the new one, never a mix: each file is written under a temporary name
//! in the staging folder, synced, and only then renamed into place, and every folder
//! that gains a name is synced before the request is answered.

use std::io;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};

/// Bytes gathered in memory before they are handed to the file.
const BUFFER: usize = 256 * 1024;

/// The folder where files are written before they are renamed into place. It sits
/// beside the buckets, where no listing looks, and on their file system, so a rename
/// out of it is atomic.
#[derive(Debug)]
pub(super) struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Makes `dir` an empty staging folder: whatever is in it was left by requests that
    /// a crash or a stop cut short, and no name outside points to it.
    pub(super) fn prepare(dir: PathBuf) -> io::Result<Self> {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir(&dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir_now(parent)?;
        }
        Ok(Self { dir })
    }

    /// A new, empty file in the staging folder. It is removed when dropped, unless it
    /// was placed.
    pub(super) async fn create(&self) -> io::Result<StagedFile> {
        let path = self
            .dir
            .join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(StagedFile {
            path,
            writer: BufWriter::with_capacity(BUFFER, file),
            len: 0,
            synced: true,
            placed: false,
        })
    }

    /// A staging file holding `bytes`.
    pub(super) async fn stage(&self, bytes: &[u8]) -> io::Result<StagedFile> {
        let mut file = self.create().await?;
        file.write(bytes).await?;
        Ok(file)
    }

    /// Writes `bytes` as `dest`, atomically and synced. Its folder is the caller's to
    /// sync.
    pub(super) async fn write_file(&self, dest: &Path, bytes: &[u8]) -> io::Result<()> {
        self.stage(bytes).await?.place(dest).await
    }
}

/// A file being written in the staging folder.
#[derive(Debug)]
pub(super) struct StagedFile {
    path: PathBuf,
    writer: BufWriter<File>,
    len: u64,
    synced: bool,
    placed: bool,
}

impl StagedFile {
    /// Appends `bytes`.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.len += bytes.len() as u64;
        self.synced = false;
        Ok(())
    }

    /// Appends the first `len` bytes of `source`, read from its start. The copy is
    /// the kernel's (`copy_file_range`, where the file system has it): the bytes
    /// never pass through this process, and a file system that shares blocks (XFS,
    /// Btrfs) may not copy them at all. Errs if `source` holds fewer than `len`.
    pub(super) async fn append(&mut self, source: File, len: u64) -> io::Result<()> {
        self.writer.flush().await?;
        // A second handle on the staging file shares its offset, which the copy
        // moves past what it appends.
        let dest = self.writer.get_ref().try_clone().await?.into_std().await;
        let source = source.into_std().await;
        let copied = tokio::task::spawn_blocking(move || {
            let mut dest = dest;
            std::io::copy(&mut io::Read::take(source, len), &mut dest)
        })
        .await
        .map_err(io::Error::other)??;
        if copied != len {
            return Err(ended_early(copied, len));
        }
        self.len += len;
        self.synced = false;
        Ok(())
    }

    /// Appends the next `len` bytes of `source`, each also fed to `md5`. Errs if
    /// `source` ends before them.
    pub(super) async fn append_hashed(
        &mut self,
        source: impl AsyncRead + Unpin,
        len: u64,
        md5: &mut Md5,
    ) -> io::Result<()> {
        let mut source = source.take(len);
        let mut buf = vec![0; BUFFER];
        let mut copied = 0;
        loop {
            let n = source.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
            self.write(&buf[..n]).await?;
            copied += n as u64;
        }
        if copied != len {
            return Err(ended_early(copied, len));
        }
        Ok(())
    }

    /// How many bytes were written.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Flushes what was written and returns the file's metadata, which stays the
    /// file's through its renaming.
    pub(super) async fn metadata(&mut self) -> io::Result<std::fs::Metadata> {
        self.writer.flush().await?;
        self.writer.get_ref().metadata().await
    }

    /// Flushes and syncs what was written, so it survives a crash.
    pub(super) async fn sync(&mut self) -> io::Result<()> {
        if !self.synced {
            self.writer.flush().await?;
            self.writer.get_ref().sync_all().await?;
            self.synced = true;
        }
        Ok(())
    }

    /// Syncs the file and renames it to `dest`, which then holds either its old bytes
    /// or these, whatever happens. The new name lasts once `dest`'s folder is synced.
    pub(super) async fn place(mut self, dest: &Path) -> io::Result<()> {
        self.sync().await?;
        fs::rename(&self.path, dest).await?;
        self.placed = true;
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A source that held `copied` of the `len` bytes it was to give.
fn ended_early(copied: u64, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the file ended after {copied} of its {len} bytes"),
    )
}

/// Syncs folder `dir`, so the names made, renamed or removed in it last.
pub(super) async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || sync_dir_now(&dir))
        .await
        .map_err(io::Error::other)?
}

fn sync_dir_now(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates folder `dir` and its missing parents, syncing the parent of each folder
/// made, so that every new folder lasts.
pub(super) async fn create_dirs(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    // The parent of a relative `data` is the empty path: the working folder, which
    // exists, is not created, and is synced as `.`.
    while !at.as_os_str().is_empty() && !fs::try_exists(at).await? {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    for folder in missing.into_iter().rev() {
        match fs::create_dir(folder).await {
            Ok(()) => {}
            // Made meanwhile by a request that may not have synced it yet.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match folder.parent() {
            Some(parent) if parent.as_os_str().is_empty() => sync_dir(Path::new(".")).await?,
            Some(parent) => sync_dir(parent).await?,
            None => {}
        }
    }
    Ok(())
}

/// Removes file `path`; true if it was there.
pub(super) async fn remove_file(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_staged_file_appears_only_when_placed_and_is_removed_otherwise() {
        let root = tempfile::tempdir().unwrap();
        let staging = Staging::prepare(root.path().join(".staging")).unwrap();
        let dest = root.path().join("object");
        std::fs::write(&dest, b"old").unwrap();

        let mut dropped = staging.create().await.unwrap();
        dropped.write(b"refused").await.unwrap();
        drop(dropped);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");

        let mut placed = staging.create().await.unwrap();
        placed.write(b"new").await.unwrap();
        assert_eq!(placed.len(), 3);
        placed.place(&dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(
            std::fs::read_dir(root.path().join(".staging"))
                .unwrap()
                .count(),
            0,
            "nothing is left in the staging folder"
        );
    }

    #[tokio::test]
    async fn appending_a_file_copies_its_first_bytes_after_those_written_and_refuses_a_short_one() {
        let root = tempfile::tempdir().unwrap();
        let staging = Staging::prepare(root.path().join(".staging")).unwrap();
        let part = root.path().join("part");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&part, &bytes).unwrap();

        let mut file = staging.create().await.unwrap();
        file.write(b"head:").await.unwrap();
        let opened = File::open(&part).await.unwrap();
        file.append(opened, 200_000).await.unwrap();
        file.write(b":tail").await.unwrap();
        assert_eq!(file.len(), 5 + 200_000 + 5);
        let dest = root.path().join("object");
        file.place(&dest).await.unwrap();
        let mut expected = b"head:".to_vec();
        expected.extend_from_slice(&bytes[..200_000]);
        expected.extend_from_slice(b":tail");
        assert_eq!(std::fs::read(&dest).unwrap(), expected);

        let mut short = staging.create().await.unwrap();
        let opened = File::open(&part).await.unwrap();
        let refused = short.append(opened, 300_001).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn appending_hashed_copies_and_hashes_the_bytes_asked_for_and_refuses_a_short_source() {
        let root = tempfile::tempdir().unwrap();
        let staging = Staging::prepare(root.path().join(".staging")).unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();

        let mut file = staging.create().await.unwrap();
        let mut md5 = Md5::new();
        file.append_hashed(&bytes[..], 200_000, &mut md5)
            .await
            .unwrap();
        assert_eq!(file.len(), 200_000);
        assert_eq!(md5.finalize(), Md5::digest(&bytes[..200_000]));
        let dest = root.path().join("object");
        file.place(&dest).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), &bytes[..200_000]);

        let mut short = staging.create().await.unwrap();
        let refused = short
            .append_hashed(&bytes[..], 300_001, &mut Md5::new())
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn preparing_the_staging_folder_empties_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(".staging");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("left-by-a-crash.part"), b"x").unwrap();
        Staging::prepare(dir.clone()).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn create_dirs_makes_the_missing_folders() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("bucket/a/b");
        create_dirs(&dir).await.unwrap();
        assert!(dir.is_dir());
        create_dirs(&dir).await.unwrap();
    }

    #[tokio::test]
    async fn create_dirs_makes_a_relative_folder_in_the_working_folder() {
        // `data/s3` in a fresh clone: `data` is missing and its parent is the empty path.
        let top = format!("create-dirs-test-{}", std::process::id());
        let dir = Path::new(&top).join("s3");
        create_dirs(&dir).await.unwrap();
        assert!(dir.is_dir());
        std::fs::remove_dir_all(&top).unwrap();
    }
}

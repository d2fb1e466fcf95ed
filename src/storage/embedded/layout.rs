//! Where s3s-fs 0.14.1 keeps what it stores under its root, and in what form, so that
//! what museum writes itself is where s3s-fs reads it: each object at
//! `<bucket>/<key>`; beside the buckets, per object, a `.metadata.json` (content type
//! and the like) and an `.internal.json` (ETag and checksums); per multipart upload an
//! `.upload-<id>.json` (its owner's access key), its metadata, and one file per part.
//! s3s-fs is pinned (`=0.14.1`) because this layout is its private affair.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use s3s::dto::{ETag, Timestamp, TimestampFormat};
use s3s::{S3Error, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::access::check_key;

/// The paths of one s3s-fs root.
#[derive(Debug)]
pub(super) struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root`, an absolute path.
    pub(super) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// The folder where files are written before they are renamed into place. Its
    /// name is no bucket name, so s3s-fs never lists it.
    pub(super) fn staging(&self) -> PathBuf {
        self.root.join(".museum-staging")
    }

    /// Bucket `bucket`'s folder.
    pub(super) fn bucket(&self, bucket: &str) -> S3Result<PathBuf> {
        let mut components = Path::new(bucket).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(name)), None) => Ok(self.root.join(name)),
            _ => Err(s3_error!(InvalidBucketName)),
        }
    }

    /// Object `key`'s file in `bucket`. Only a canonical key has one (`check_key`), so
    /// no file is reached under two keys, and none outside its bucket.
    pub(super) fn object(&self, bucket: &str, key: &str) -> S3Result<PathBuf> {
        if let Err(why) = check_key(key) {
            return Err(s3_error!(InvalidArgument, "the object key {why}"));
        }
        let mut path = self.bucket(bucket)?;
        let mut named = false;
        for component in Path::new(key).components() {
            match component {
                Component::Normal(name) => {
                    path.push(name);
                    named = true;
                }
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "an object key may not climb out of its bucket"
                    ));
                }
            }
        }
        if named {
            Ok(path)
        } else {
            Err(s3_error!(InvalidArgument, "the object key is empty"))
        }
    }

    /// The metadata of object `key`, or of its multipart upload `upload`.
    pub(super) fn metadata(&self, bucket: &str, key: &str, upload: Option<&Uuid>) -> PathBuf {
        let upload = upload.map(|u| format!(".upload-{u}")).unwrap_or_default();
        self.root.join(format!(
            ".bucket-{}.object-{}{upload}.metadata.json",
            encode(bucket),
            encode(key)
        ))
    }

    /// The ETag and checksums of object `key`.
    pub(super) fn internal(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(format!(
            ".bucket-{}.object-{}.internal.json",
            encode(bucket),
            encode(key)
        ))
    }

    /// The record of multipart upload `upload`: the access key that began it.
    pub(super) fn upload(&self, upload: &Uuid) -> PathBuf {
        self.root.join(format!(".upload-{upload}.json"))
    }

    /// The bucket and key multipart upload `upload` was begun for (`UploadKey`). Its
    /// name starts like the parts', so s3s-fs's abort removes it with them, and its
    /// listing of parts skips it.
    pub(super) fn upload_key(&self, upload: &Uuid) -> PathBuf {
        self.root.join(format!(".upload_id-{upload}.key.json"))
    }

    /// Part `part` of multipart upload `upload`.
    pub(super) fn part(&self, upload: &Uuid, part: i32) -> PathBuf {
        self.root.join(format!(".upload_id-{upload}.part-{part}"))
    }

    /// museum's record of part `part`'s MD5 (`PartDigest`). Its name starts like the
    /// parts', so s3s-fs's abort removes it with them, and its listing of parts skips
    /// it.
    pub(super) fn part_digest(&self, upload: &Uuid, part: i32) -> PathBuf {
        self.root.join(format!(".upload_id-{upload}.md5-{part}"))
    }
}

/// A part's MD5 as it was received, with the identity of the file it was received
/// into (inode, length, modification time). A completion trusts the MD5 only while
/// the part's file is still that file; otherwise it hashes the part again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PartDigest {
    pub md5: [u8; 16],
    pub identity: FileIdentity,
}

/// What tells one file from another, and a file from itself once written again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileIdentity {
    pub inode: u64,
    pub len: u64,
    pub modified_ns: i128,
}

impl FileIdentity {
    pub(super) fn of(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            inode: metadata.ino(),
            len: metadata.len(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        }
    }
}

impl PartDigest {
    pub(super) fn to_line(self) -> String {
        let FileIdentity {
            inode,
            len,
            modified_ns,
        } = self.identity;
        format!("{} {inode} {len} {modified_ns}", hex::encode(self.md5))
    }

    /// The record in `line`; None if it is not one.
    pub(super) fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace();
        let md5 = hex::decode(fields.next()?).ok()?.try_into().ok()?;
        let identity = FileIdentity {
            inode: fields.next()?.parse().ok()?,
            len: fields.next()?.parse().ok()?,
            modified_ns: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(Self { md5, identity })
    }
}

fn encode(name: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name)
}

/// An object's standard headers and user metadata, as its `.metadata.json` holds them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Attributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<HashMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website_redirect_location: Option<String>,
}

impl Attributes {
    /// `expires` in the form s3s-fs stores it.
    pub(super) fn format_expires(expires: Option<&Timestamp>) -> Option<String> {
        let mut out = Vec::new();
        expires?.format(TimestampFormat::DateTime, &mut out).ok()?;
        String::from_utf8(out).ok()
    }

    /// The `.metadata.json` bytes; `None` when there is nothing to keep, and so no
    /// file to write (s3s-fs reads a missing file as no metadata).
    pub(super) fn to_json(&self) -> S3Result<Option<Vec<u8>>> {
        let empty = self.user_metadata.as_ref().is_none_or(HashMap::is_empty)
            && self.content_encoding.is_none()
            && self.content_type.is_none()
            && self.content_disposition.is_none()
            && self.content_language.is_none()
            && self.cache_control.is_none()
            && self.expires.is_none()
            && self.website_redirect_location.is_none();
        if empty {
            return Ok(None);
        }
        serde_json::to_vec(self)
            .map(Some)
            .map_err(S3Error::internal_error)
    }
}

/// What a multipart upload was begun for: its parts and its completion go there only.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct UploadKey {
    pub bucket: String,
    pub key: String,
}

/// An object's ETag and checksums, as its `.internal.json` holds them.
#[derive(Debug, Default)]
pub(super) struct Internal(serde_json::Map<String, serde_json::Value>);

impl Internal {
    /// Reads the record of object `key`; `None` if it has none.
    pub(super) async fn load(path: &Path) -> std::io::Result<Option<Self>> {
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes)
            .map(|map| Some(Self(map)))
            .map_err(std::io::Error::other)
    }

    /// A record of `e_tag` and `checksum`.
    pub(super) fn new(e_tag: &str, checksum: &s3s::dto::Checksum) -> Self {
        let mut this = Self::default();
        this.set_e_tag(e_tag);
        let fields = [
            ("checksum_crc32", &checksum.checksum_crc32),
            ("checksum_crc32c", &checksum.checksum_crc32c),
            ("checksum_sha1", &checksum.checksum_sha1),
            ("checksum_sha256", &checksum.checksum_sha256),
            ("checksum_crc64nvme", &checksum.checksum_crc64nvme),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                this.0.insert(name.to_owned(), value.clone().into());
            }
        }
        this
    }

    pub(super) fn e_tag(&self) -> Option<ETag> {
        self.0
            .get("e_tag")
            .and_then(|v| v.as_str())
            .map(|v| ETag::Strong(v.to_owned()))
    }

    pub(super) fn set_e_tag(&mut self, e_tag: &str) {
        self.0.insert("e_tag".to_owned(), e_tag.into());
    }

    /// The multipart upload whose completion wrote the object, so that a repeated
    /// completion can answer as the first did. s3s-fs ignores the field.
    pub(super) fn upload(&self) -> Option<&str> {
        self.0.get("museum_upload_id").and_then(|v| v.as_str())
    }

    pub(super) fn set_upload(&mut self, upload: &Uuid) {
        self.0
            .insert("museum_upload_id".to_owned(), upload.to_string().into());
    }

    /// The `.internal.json` bytes.
    pub(super) fn to_json(&self) -> S3Result<Vec<u8>> {
        serde_json::to_vec(&self.0).map_err(S3Error::internal_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_stay_inside_their_bucket() {
        let layout = Layout::new(PathBuf::from("/data/s3"));
        assert_eq!(
            layout.object("b2-eu-cen", "5/abc").unwrap(),
            Path::new("/data/s3/b2-eu-cen/5/abc")
        );
        for key in [
            "../scw-eu-fr-v3/x",
            "5/../../x",
            "/etc/passwd",
            "",
            ".",
            "5/./abc",
            "5//abc",
            "5/abc/",
        ] {
            assert!(layout.object("b2-eu-cen", key).is_err(), "{key:?}");
        }
        assert!(layout.bucket("..").is_err());
        assert!(layout.bucket("a/b").is_err());
    }

    #[test]
    fn a_part_digest_reads_back_and_nothing_else_parses() {
        let digest = PartDigest {
            md5: [7; 16],
            identity: FileIdentity {
                inode: 42,
                len: 5 << 20,
                modified_ns: 1_700_000_000_123_456_789,
            },
        };
        assert_eq!(PartDigest::parse(&digest.to_line()), Some(digest));
        for bad in [
            "",
            "07 1 2",
            "zz 1 2 3",
            &format!("{} 1 2 3 4", "07".repeat(16)),
        ] {
            assert_eq!(PartDigest::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sidecar_names_are_those_s3s_fs_reads() {
        let layout = Layout::new(PathBuf::from("/r"));
        assert_eq!(
            layout.internal("b2-eu-cen", "5/x"),
            Path::new("/r/.bucket-YjItZXUtY2Vu.object-NS94.internal.json")
        );
        let upload = Uuid::nil();
        assert_eq!(
            layout.metadata("b2-eu-cen", "5/x", Some(&upload)),
            Path::new(
                "/r/.bucket-YjItZXUtY2Vu.object-NS94.upload-00000000-0000-0000-0000-000000000000.metadata.json"
            )
        );
        assert_eq!(
            layout.part(&upload, 2),
            Path::new("/r/.upload_id-00000000-0000-0000-0000-000000000000.part-2")
        );
    }
}

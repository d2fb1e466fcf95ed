//! The embedded server's keys. `configurations/local.yaml` ships one public key pair so
//! that a fresh checkout starts with nothing to set; a pair everyone knows must never
//! guard real data. So on its first start the embedded default makes a random pair and
//! keeps it in `<embedded-root>/.museum-keys` (mode 0600), and every bucket configured
//! with the shipped secret uses that pair instead, in every command. The server only
//! listens beyond loopback when every bucket has keys the operator set.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{BUCKET_IDS, S3Config};

/// The secret `configurations/local.yaml` ships: public, so never accepted.
pub const SHIPPED_SECRET: &str = "museum-local-secret";

/// The shortest secret the server accepts on an address other hosts can reach.
const MIN_SECRET_LEN: usize = 16;

/// The file, under the embedded root, that keeps the generated pair.
const KEYS_FILE: &str = ".museum-keys";

/// Errors adopting or checking the embedded server's keys.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot keep the embedded S3 server's keys in {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a key file museum wrote; move it away and start museum again to make new keys"
    )]
    Unreadable { path: String },
    #[error(
        "s3.embedded-address {address} is reachable from other hosts, but {keys} {are} not \
         keys you set. Set your own s3.<bucket>.key and s3.<bucket>.secret (a secret of at \
         least {MIN_SECRET_LEN} characters) for each bucket in museum.yaml or credentials.yaml, \
         or keep s3.embedded-address on 127.0.0.1"
    )]
    Exposed {
        address: String,
        keys: String,
        are: &'static str,
    },
}

/// The generated pair, as its file holds it.
#[derive(Serialize, Deserialize)]
struct Pair {
    key: String,
    secret: String,
}

/// How the embedded keys were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// No bucket uses the shipped secret: the operator's keys stand.
    OperatorKeys,
    /// The buckets that used the shipped secret now use the pair kept under the root.
    Generated,
    /// The shipped secret is configured but no pair is kept yet (`create` was false):
    /// only `museum serve` makes one, and no server can accept the shipped secret.
    Missing,
}

/// Replaces the shipped secret in every bucket of `s3` with the pair kept under
/// `s3.embedded-root`, making and keeping one first when `create` is set and
/// `s3.embedded` is on (`museum serve`). The shipped secret opens no server, so the
/// kept pair replaces it even with `s3.embedded` off (a command run against the
/// embedded server from outside it).
pub fn adopt(s3: &mut S3Config, create: bool) -> Result<Adopted, KeysError> {
    if !BUCKET_IDS.iter().any(|id| uses_shipped_secret(s3, id)) {
        return Ok(Adopted::OperatorKeys);
    }
    let path = s3.embedded_root.join(KEYS_FILE);
    let pair = match read(&path)? {
        Some(pair) => pair,
        None if create && s3.embedded => make(&path)?,
        None => return Ok(Adopted::Missing),
    };
    for id in BUCKET_IDS {
        if uses_shipped_secret(s3, id)
            && let Some(bucket) = s3.bucket_mut(id)
        {
            bucket.key = Some(pair.key.clone());
            bucket.secret = Some(SecretString::from(pair.secret.clone()));
        }
    }
    Ok(Adopted::Generated)
}

/// Refuses an `s3.embedded-address` that other hosts can reach unless every bucket
/// has keys the operator set: not the shipped secret, not the pair kept under the
/// root, and a secret of at least 16 characters.
pub fn check_exposure(s3: &S3Config) -> Result<(), KeysError> {
    let loopback = s3
        .embedded_address
        .parse::<SocketAddr>()
        .is_ok_and(|addr| addr.ip().is_loopback());
    if !s3.embedded || loopback {
        return Ok(());
    }
    let generated = read(&keys_path(s3))?.map(|pair| pair.secret);
    let weak: Vec<String> = BUCKET_IDS
        .iter()
        .filter(|id| {
            s3.bucket(id).is_some_and(|b| {
                b.is_present()
                    && b.secret.as_ref().is_none_or(|secret| {
                        let secret = secret.expose_secret();
                        secret == SHIPPED_SECRET
                            || generated.as_deref() == Some(secret)
                            || secret.len() < MIN_SECRET_LEN
                    })
            })
        })
        .map(|id| format!("s3.{id}.key/secret"))
        .collect();
    if weak.is_empty() {
        return Ok(());
    }
    Err(KeysError::Exposed {
        address: s3.embedded_address.clone(),
        are: if weak.len() == 1 { "is" } else { "are" },
        keys: weak.join(", "),
    })
}

/// Where the generated pair is kept for `s3`.
pub fn keys_path(s3: &S3Config) -> PathBuf {
    s3.embedded_root.join(KEYS_FILE)
}

fn uses_shipped_secret(s3: &S3Config, id: &str) -> bool {
    s3.bucket(id)
        .and_then(|b| b.secret.as_ref())
        .is_some_and(|s| s.expose_secret() == SHIPPED_SECRET)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeysError {
    let path = path.display().to_string();
    move |source| KeysError::Io { path, source }
}

/// The pair kept at `path`, if there is one.
fn read(path: &Path) -> Result<Option<Pair>, KeysError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Pair>(&bytes)
            .ok()
            .filter(|p| !p.key.is_empty() && p.secret.len() >= MIN_SECRET_LEN)
            .map(Some)
            .ok_or_else(|| KeysError::Unreadable {
                path: path.display().to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Makes a random pair and keeps it at `path` (0600, synced). Two processes starting
/// at once agree: the file is linked into place only if none is there, and the one
/// that loses reads the winner's.
fn make(path: &Path) -> Result<Pair, KeysError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(io_error(folder))?;
    let pair = Pair {
        key: format!("museum-{}", random_hex(10)?),
        secret: random_hex(24)?,
    };
    let staged = folder.join(format!("{KEYS_FILE}.{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged)?;
        file.write_all(&serde_json::to_vec(&pair).map_err(std::io::Error::other)?)?;
        file.sync_all()
    })();
    written.map_err(io_error(&staged))?;
    let linked = std::fs::hard_link(&staged, path);
    let _ = std::fs::remove_file(&staged);
    match linked {
        Ok(()) => {
            std::fs::File::open(folder)
                .and_then(|f| f.sync_all())
                .map_err(io_error(folder))?;
            Ok(pair)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| KeysError::Unreadable {
                path: path.display().to_string(),
            })
        }
        Err(e) => Err(io_error(path)(e)),
    }
}

fn random_hex(bytes: usize) -> Result<String, KeysError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| KeysError::Io {
        path: "the system's random source".to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BucketConfig;

    fn shipped(root: &Path, address: &str) -> S3Config {
        let mut s3 = S3Config {
            embedded: true,
            embedded_address: address.to_owned(),
            embedded_root: root.to_owned(),
            ..S3Config::default()
        };
        for id in BUCKET_IDS {
            *s3.bucket_mut(id).unwrap() = BucketConfig {
                key: Some("museum-local".to_owned()),
                secret: Some(SecretString::from(SHIPPED_SECRET)),
                endpoint: Some("localhost:3200".to_owned()),
                bucket: Some((*id).to_owned()),
                ..BucketConfig::default()
            };
        }
        s3
    }

    fn secret_of(s3: &S3Config, id: &str) -> String {
        s3.bucket(id)
            .unwrap()
            .secret
            .as_ref()
            .unwrap()
            .expose_secret()
            .to_owned()
    }

    #[test]
    fn the_shipped_secret_is_replaced_by_a_pair_kept_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let mut s3 = shipped(&dir.path().join("s3"), "127.0.0.1:3200");
        assert_eq!(adopt(&mut s3, false).unwrap(), Adopted::Missing);
        assert_eq!(secret_of(&s3, "b2-eu-cen"), SHIPPED_SECRET);
        assert_eq!(adopt(&mut s3, true).unwrap(), Adopted::Generated);
        let secret = secret_of(&s3, "b2-eu-cen");
        assert_ne!(secret, SHIPPED_SECRET);
        assert!(secret.len() >= MIN_SECRET_LEN);
        for id in BUCKET_IDS {
            assert_eq!(secret_of(&s3, id), secret, "{id}");
        }
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(keys_path(&s3))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Every later command reads the same pair.
        let mut again = shipped(&dir.path().join("s3"), "127.0.0.1:3200");
        assert_eq!(adopt(&mut again, false).unwrap(), Adopted::Generated);
        assert_eq!(secret_of(&again, "scw-eu-fr-v3"), secret);
    }

    #[test]
    fn an_operators_keys_stand_and_a_broken_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut s3 = shipped(dir.path(), "127.0.0.1:3200");
        for id in BUCKET_IDS {
            s3.bucket_mut(id).unwrap().secret = Some(SecretString::from("an-operator-secret-1"));
        }
        assert_eq!(adopt(&mut s3, true).unwrap(), Adopted::OperatorKeys);
        assert_eq!(secret_of(&s3, "b2-eu-cen"), "an-operator-secret-1");
        assert!(!keys_path(&s3).exists());

        std::fs::write(keys_path(&s3), b"{not json").unwrap();
        let mut broken = shipped(dir.path(), "127.0.0.1:3200");
        let e = adopt(&mut broken, true).unwrap_err().to_string();
        assert!(e.contains(".museum-keys"), "{e}");
    }

    #[test]
    fn only_keys_the_operator_set_open_a_non_loopback_address() {
        let dir = tempfile::tempdir().unwrap();
        for address in ["0.0.0.0:3200", "192.168.1.20:3200", "[::]:3200"] {
            let mut s3 = shipped(dir.path(), address);
            let e = check_exposure(&s3).unwrap_err().to_string();
            assert!(e.contains("s3.b2-eu-cen.key/secret"), "{e}");
            assert!(e.contains(address), "{e}");
            assert_eq!(adopt(&mut s3, true).unwrap(), Adopted::Generated);
            let e = check_exposure(&s3).unwrap_err().to_string();
            assert!(e.contains("not keys you set"), "{e}");

            let mut own = shipped(dir.path(), address);
            for id in BUCKET_IDS {
                own.bucket_mut(id).unwrap().secret = Some(SecretString::from("short"));
            }
            assert!(check_exposure(&own).is_err());
            for id in BUCKET_IDS {
                own.bucket_mut(id).unwrap().secret =
                    Some(SecretString::from("a-long-operator-secret"));
            }
            assert!(check_exposure(&own).is_ok());
        }
        for address in ["127.0.0.1:3200", "[::1]:3200"] {
            let s3 = shipped(dir.path(), address);
            assert!(check_exposure(&s3).is_ok(), "{address}");
        }
    }
}

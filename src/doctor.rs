//! `museum doctor`: checks each configured bucket and the database, one line per
//! check, with the fix when a check fails. It never starts the embedded S3 server.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::config::Settings;
use crate::db::{Db, PoolConfig};
use crate::storage::{BucketClient, Buckets, Reachability, StorageError};

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok(String),
    /// Not a failure: something worth knowing.
    Note(String),
    Fail {
        problem: String,
        fix: String,
    },
    /// Not run, because an earlier check failed.
    Skipped,
}

/// A check on one subject (a bucket ID, or `database`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub subject: String,
    pub name: &'static str,
    pub verdict: Verdict,
}

impl Check {
    fn new(subject: &str, name: &'static str, verdict: Verdict) -> Self {
        Self {
            subject: subject.to_owned(),
            name,
            verdict,
        }
    }

    /// Whether this check failed.
    pub fn failed(&self) -> bool {
        matches!(self.verdict, Verdict::Fail { .. })
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mark, detail) = match &self.verdict {
            Verdict::Ok(d) => ("ok  ", d.clone()),
            Verdict::Note(d) => ("note", d.clone()),
            Verdict::Fail { problem, .. } => ("FAIL", problem.clone()),
            Verdict::Skipped => ("skip", "an earlier check failed".to_owned()),
        };
        write!(f, "{mark}  {:<24} {:<32} {detail}", self.subject, self.name)?;
        if let Verdict::Fail { fix, .. } = &self.verdict {
            write!(f, "\n      {:<24} fix: {fix}", "")?;
        }
        Ok(())
    }
}

fn fail(problem: impl Into<String>, fix: impl Into<String>) -> Verdict {
    Verdict::Fail {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Runs every check: the database, then each present bucket in turn.
pub async fn run(settings: &Settings) -> Vec<Check> {
    let mut checks = check_database(settings).await;
    match Buckets::from_config(&settings.s3) {
        Ok(buckets) => {
            for bucket in buckets.all() {
                checks.extend(check_bucket(bucket, settings).await);
            }
        }
        Err(e) => checks.push(Check::new(
            "s3",
            "bucket configuration",
            fail(e.to_string(), "fix the s3.* keys named above"),
        )),
    }
    checks
}

async fn check_database(settings: &Settings) -> Vec<Check> {
    let pool = PoolConfig {
        max_connections: 1,
        acquire_timeout: Duration::from_secs(5),
    };
    let db = match Db::connect(&settings.db.connection_url(), pool).await {
        Ok(db) => db,
        Err(e) => {
            return vec![Check::new(
                "database",
                "connection",
                fail(
                    format!("{e}: {}", crate::storage::error_chain(&e)),
                    "check db.url (or db.host/port/name/user/password) and that the server runs",
                ),
            )];
        }
    };
    let mut checks = vec![Check::new(
        "database",
        "connection",
        Verdict::Ok(format!("{:?}", db.engine()).to_lowercase()),
    )];
    checks.push(Check::new(
        "database",
        "migrations",
        match db.pending_migrations().await {
            Ok(0) => Verdict::Ok("up to date".to_owned()),
            Ok(n) => fail(
                format!("{n} not applied"),
                "run `museum migrate` (museum serve also applies them)",
            ),
            Err(e) => fail(e.to_string(), "check the database user's rights"),
        },
    ));
    db.close().await;
    checks
}

async fn check_bucket(bucket: &BucketClient, settings: &Settings) -> Vec<Check> {
    let id = bucket.id();
    let url = bucket.base_url().clone();
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(0);
    let mut checks = Vec::new();

    let reach = match bucket.probe().await {
        Reachability::Answered => Verdict::Ok(format!("{}://{host}:{port}", url.scheme())),
        Reachability::Refused(why) => fail(
            format!("nothing answers at {host}:{port} ({why})"),
            if is_embedded_endpoint(settings, &host, port) {
                "the embedded S3 server runs inside `museum serve`: start it first (doctor does not start one)".to_owned()
            } else {
                format!(
                    "check s3.{id}.endpoint and its port, and that a firewall lets this host through"
                )
            },
        ),
        Reachability::Tls(why) => fail(
            format!("TLS handshake with {host}:{port} failed ({why})"),
            format!(
                "if the endpoint speaks plain HTTP (MinIO on a LAN), set s3.{id}.disable_ssl: true or write it as http://…; \
                 otherwise fix its certificate or trust its CA"
            ),
        ),
        Reachability::Timeout => fail(
            format!("no answer from {host}:{port} within 10 s"),
            "check the network path and firewalls between museum and the endpoint",
        ),
        Reachability::Dns(why) => fail(
            format!("{host} does not resolve ({why})"),
            format!(
                "check the spelling of s3.{id}.endpoint; with virtual-host addressing {host} includes the bucket name, \
                 so for MinIO and other local servers set s3.use_path_style_urls: true"
            ),
        ),
    };
    let reachable = matches!(reach, Verdict::Ok(_));
    checks.push(Check::new(id, "endpoint reachable", reach));

    let path_style = url.path().trim_matches('/') == bucket.name();
    let addressing = if path_style {
        Verdict::Ok("path style (endpoint/bucket/key)".to_owned())
    } else if host == "localhost" || host.parse::<IpAddr>().is_ok() {
        fail(
            format!(
                "virtual-host addressing ({}) cannot work with {host}",
                url.host_str().unwrap_or_default()
            ),
            format!("set s3.use_path_style_urls: true (or s3.{id}.use_path_style_urls: true)"),
        )
    } else {
        Verdict::Ok(format!("virtual host ({host})"))
    };
    checks.push(Check::new(id, "addressing", addressing));

    if !reachable {
        for name in [
            "credentials accepted",
            "bucket exists",
            "presigned PUT → HEAD → DELETE",
            "CORS",
        ] {
            checks.push(Check::new(id, name, Verdict::Skipped));
        }
        return checks;
    }

    let (credentials, exists) = match bucket.head_bucket().await {
        Ok(()) => (
            Verdict::Ok("HEAD bucket answered 200".to_owned()),
            Verdict::Ok(bucket.name().to_owned()),
        ),
        Err(StorageError::Refused { code, .. }) if code == "NoSuchBucket" => (
            Verdict::Ok("the endpoint knows this key".to_owned()),
            fail(
                format!("bucket {} does not exist at {host}", bucket.name()),
                format!("create it, or correct s3.{id}.bucket"),
            ),
        ),
        Err(StorageError::Refused { code, .. }) if code == "PermanentRedirect" => (
            Verdict::Ok("the endpoint knows this key".to_owned()),
            fail(
                "the bucket lives in another region".to_owned(),
                format!("set s3.{id}.region to the bucket's region"),
            ),
        ),
        Err(StorageError::Refused { status, code, .. }) => (
            fail(
                format!("the bucket refused museum's credentials (HTTP {status} {code})"),
                format!(
                    "check s3.{id}.key and s3.{id}.secret, s3.{id}.region, and this host's clock; \
                     SignatureDoesNotMatch usually means a wrong secret or region"
                ),
            ),
            Verdict::Skipped,
        ),
        Err(e) => (
            fail(
                e.to_string(),
                "retry; if it persists, check the endpoint's health",
            ),
            Verdict::Skipped,
        ),
    };
    let usable = matches!(credentials, Verdict::Ok(_)) && matches!(exists, Verdict::Ok(_));
    checks.push(Check::new(id, "credentials accepted", credentials));
    checks.push(Check::new(id, "bucket exists", exists));
    if !usable {
        checks.push(Check::new(
            id,
            "presigned PUT → HEAD → DELETE",
            Verdict::Skipped,
        ));
        checks.push(Check::new(id, "CORS", Verdict::Skipped));
        return checks;
    }

    checks.push(Check::new(
        id,
        "presigned PUT → HEAD → DELETE",
        round_trip(bucket).await,
    ));
    checks.push(Check::new(id, "CORS", check_cors(bucket).await));
    checks
}

/// Whether `host:port` is where the embedded S3 server of `museum serve` listens.
fn is_embedded_endpoint(settings: &Settings, host: &str, port: u16) -> bool {
    let Ok(addr) = settings.s3.embedded_address.parse::<std::net::SocketAddr>() else {
        return false;
    };
    settings.s3.embedded
        && addr.port() == port
        && (host == "localhost"
            || host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip == addr.ip() || ip.is_loopback()))
}

/// Uploads a small probe object through a presigned URL signed like a client's
/// (length and MD5), reads its size back, and deletes it.
async fn round_trip(bucket: &BucketClient) -> Verdict {
    use base64::Engine as _;
    use md5::{Digest, Md5};

    let key = format!("museum-doctor/{}", uuid::Uuid::new_v4());
    let body = b"museum doctor probe".to_vec();
    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
    let url = bucket.presign_put(
        &key,
        Some(body.len() as u64),
        Some(&md5),
        Duration::from_secs(300),
    );
    let put = reqwest::Client::new()
        .put(url)
        .header("content-md5", &md5)
        .body(body.clone())
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    match put {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            let code = text
                .split("<Code>")
                .nth(1)
                .and_then(|rest| rest.split("</Code>").next())
                .unwrap_or_default()
                .to_owned();
            return fail(
                format!("the presigned PUT was refused: HTTP {status} {code}"),
                "a 403 SignatureDoesNotMatch on a presigned URL means a wrong secret or region, a clock off by \
                 minutes, or a proxy that rewrites the Host header; clients would hit the same error",
            );
        }
        Err(e) => {
            return fail(
                format!("the presigned PUT failed: {}", e.without_url()),
                "check the endpoint from this host",
            );
        }
    }
    let verdict = match bucket.head(&key).await {
        Ok(meta) if meta.size == body.len() as u64 => {
            Verdict::Ok(format!("{} bytes round-tripped", body.len()))
        }
        Ok(meta) => fail(
            format!(
                "HEAD reported {} bytes for a {}-byte upload",
                meta.size,
                body.len()
            ),
            "the endpoint does not store what it is sent; check any proxy in front of it",
        ),
        Err(e) => fail(
            format!("HEAD after PUT failed: {e}"),
            "check the key's read permission",
        ),
    };
    if let Err(e) = bucket.delete(&key).await {
        return fail(
            format!("could not delete the probe object {key}: {e}"),
            "grant the key s3:DeleteObject; museum needs it for cleanup and deletes",
        );
    }
    verdict
}

async fn check_cors(bucket: &BucketClient) -> Verdict {
    match bucket.bucket_cors().await {
        Ok(Some(xml)) if xml.contains("<AllowedMethod>PUT</AllowedMethod>") => {
            Verdict::Ok("the rules allow PUT".to_owned())
        }
        Ok(Some(_)) => fail(
            "CORS rules exist but none allows PUT: browsers cannot upload",
            "add PUT to AllowedMethod and the web app's origin to AllowedOrigin, and expose the ETag header",
        ),
        Ok(None) => Verdict::Note(
            "no CORS rules: fine for mobile and desktop apps; web uploads need them".to_owned(),
        ),
        Err(e) => Verdict::Note(format!(
            "not checked: the server did not return CORS rules ({})",
            crate::storage::error_chain(&e)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_prints_its_fix_on_the_next_line() {
        let c = Check::new(
            "scw-eu-fr-v3",
            "endpoint reachable",
            fail("nothing answers", "start it"),
        );
        let text = c.to_string();
        assert!(text.starts_with("FAIL  scw-eu-fr-v3"), "{text}");
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|l| l.contains("fix: start it")),
            "{text}"
        );
        assert!(c.failed());
        assert!(!Check::new("x", "y", Verdict::Note("n".into())).failed());
    }
}

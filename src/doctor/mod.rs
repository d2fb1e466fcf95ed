//! `museum doctor`: checks each configured bucket and the database, one line per
//! check, with the fix when a check fails. It never starts the embedded S3 server.
//!
//! Every request it sends is one a healthy setup answers with a 2xx, so a run on a
//! healthy setup leaves no error in the S3 server's log: reachability is a signed HEAD
//! of the bucket, and CORS is judged from real preflights and real responses, as a
//! browser would judge them. The bucket's CORS rules (GetBucketCors, which not every
//! server implements) are read only to explain a failure.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::header::{self, HeaderMap};

use crate::config::Settings;
use crate::db::{Db, Open, PoolConfig};
use crate::storage::{BucketClient, Buckets, Reachability, StorageError, error_chain};

/// How long the URLs doctor signs stay valid.
const PROBE_TTL: Duration = Duration::from_secs(300);

/// The origin the CORS check sends when any origin is allowed.
pub const SAMPLE_ORIGIN: &str = "https://photos.example.com";

/// The headers Ente's clients send to a bucket, as a browser lists them in
/// `Access-Control-Request-Headers` (lower case, sorted): `content-md5` on v2 PUTs,
/// `content-type` on the multipart completion POST (`text/xml`), and
/// `x-client-package` / `x-client-version` on everything.
pub const CLIENT_HEADERS: [&str; 4] = [
    "content-md5",
    "content-type",
    "x-client-package",
    "x-client-version",
];

/// The methods a browser client uses on a bucket: PUT (uploads and parts), POST
/// (multipart completion), GET and HEAD (downloads in redirect mode).
const CLIENT_METHODS: [&str; 4] = ["PUT", "POST", "GET", "HEAD"];

/// The methods the printed CORS rule allows (Ente's documentation adds DELETE).
const RULE_METHODS: [&str; 5] = ["GET", "HEAD", "POST", "PUT", "DELETE"];

/// The name of the round-trip check.
const ROUND_TRIP: &str = "presigned PUT → GET → DELETE";

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok(String),
    /// Not a failure: something worth knowing.
    Note(String),
    /// A failure and its fix. A fix of several lines prints its first line after
    /// `fix:` and the others as they are, so that a rule or a script can be pasted.
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
            let mut lines = fix.lines();
            write!(
                f,
                "\n      {:<24} fix: {}",
                "",
                lines.next().unwrap_or_default()
            )?;
            for line in lines {
                write!(f, "\n{line}")?;
            }
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
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut ctx = BucketChecks {
        http,
        settings,
        origins: test_origins(&settings.http.cors.allowed_origins),
        rule_printed_for: None,
    };
    match Buckets::from_config(&settings.s3) {
        Ok(buckets) => {
            for bucket in buckets.all() {
                checks.extend(ctx.check(bucket).await);
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
        cache_mib: PoolConfig::SCAN_CACHE_MIB,
    };
    // Doctor looks and never creates: a missing SQLite file is a failed check.
    let db = match Db::connect(&settings.db.connection_url(), pool, Open::Existing).await {
        Ok(db) => db,
        Err(e) => {
            return vec![Check::new(
                "database",
                "connection",
                fail(
                    format!("{e}: {}", error_chain(&e)),
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
                format!("run `{}` (serving also applies them)", command("migrate")),
            ),
            Err(e) => fail(e.to_string(), "check the database user's rights"),
        },
    ));
    db.close().await;
    checks
}

/// The origins the CORS check sends: the configured ones, or [`SAMPLE_ORIGIN`] when
/// any origin is allowed (an empty list, or `*`).
pub fn test_origins(allowed: &[String]) -> Vec<String> {
    if allowed.is_empty() || allowed.iter().any(|o| o == "*") {
        vec![SAMPLE_ORIGIN.to_owned()]
    } else {
        allowed.to_vec()
    }
}

/// Which endpoint of a bucket a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// `endpoint`: where museum sends its own requests.
    Museum,
    /// `public_endpoint`: where clients are sent.
    Clients,
}

impl Side {
    fn key(self) -> &'static str {
        match self {
            Self::Museum => "endpoint",
            Self::Clients => "public_endpoint",
        }
    }
}

/// What the bucket checks share across buckets.
struct BucketChecks<'a> {
    http: reqwest::Client,
    settings: &'a Settings,
    /// The origins the CORS check sends; never empty.
    origins: Vec<String>,
    /// The bucket whose failed CORS check printed the rule to apply, if one did.
    rule_printed_for: Option<&'static str>,
}

/// What the browser-like round trip saw: the CORS headers of the real responses.
#[derive(Debug, Default)]
struct Seen {
    put: Option<HeaderMap>,
    get: Option<HeaderMap>,
}

impl BucketChecks<'_> {
    async fn check(&mut self, bucket: &BucketClient) -> Vec<Check> {
        let id = bucket.id();
        let mut checks = Vec::new();

        let reach = self.reachability(bucket, Side::Museum).await;
        let reachable = matches!(reach, Verdict::Ok(_));
        checks.push(Check::new(id, "endpoint reachable", reach));
        let mut clients_reach = true;
        if bucket.public_base_url().is_some() {
            let reach = self.reachability(bucket, Side::Clients).await;
            clients_reach = matches!(reach, Verdict::Ok(_));
            checks.push(Check::new(id, "public endpoint reachable", reach));
        }
        checks.push(Check::new(id, "addressing", addressing(bucket)));

        if !reachable {
            for name in ["credentials accepted", "bucket exists", ROUND_TRIP, "CORS"] {
                checks.push(Check::new(id, name, Verdict::Skipped));
            }
            return checks;
        }

        let (credentials, exists) = credentials_and_existence(bucket).await;
        let usable = matches!(credentials, Verdict::Ok(_)) && matches!(exists, Verdict::Ok(_));
        checks.push(Check::new(id, "credentials accepted", credentials));
        checks.push(Check::new(id, "bucket exists", exists));
        if !usable || !clients_reach {
            checks.push(Check::new(id, ROUND_TRIP, Verdict::Skipped));
            checks.push(Check::new(id, "CORS", Verdict::Skipped));
            return checks;
        }

        let (round_trip, seen) = self.round_trip(bucket).await;
        checks.push(Check::new(id, ROUND_TRIP, round_trip));
        let cors = self.cors(bucket, &seen).await;
        checks.push(Check::new(id, "CORS", cors));
        if bucket.sse_c() {
            checks.push(Check::new(id, "SSE-C key", sse_c_key(bucket).await));
        } else if let Some(class) = bucket.storage_class() {
            checks.push(Check::new(
                id,
                "storage class",
                stored_class(bucket, class).await,
            ));
        }
        checks
    }

    /// Whether anything answers at the bucket's `endpoint` or `public_endpoint`. The
    /// probe is a signed HEAD of the bucket: any HTTP answer counts, and on a healthy
    /// bucket it is a 200 (an unsigned request would be logged as an error by the
    /// server).
    async fn reachability(&self, bucket: &BucketClient, side: Side) -> Verdict {
        let id = bucket.id();
        let key = side.key();
        let target = match side {
            Side::Museum => bucket.bucket(),
            Side::Clients => bucket.client_bucket(),
        };
        let url = target.base_url();
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(0);
        match bucket.probe(matches!(side, Side::Clients)).await {
            Reachability::Answered => Verdict::Ok(format!("{}://{host}:{port}", url.scheme())),
            Reachability::Refused(why) => fail(
                format!("nothing answers at {host}:{port} ({why})"),
                self.refused_fix(id, side, &host, port),
            ),
            Reachability::Tls(why) => fail(
                format!("TLS handshake with {host}:{port} failed ({why})"),
                format!(
                    "if the {key} speaks plain HTTP (MinIO on a LAN), set s3.{id}.disable_ssl: true or write it as http://…; \
                     otherwise fix its certificate or trust its CA"
                ),
            ),
            Reachability::Timeout => fail(
                format!("no answer from {host}:{port} within 10 s"),
                match side {
                    Side::Museum => {
                        "check the network path and firewalls between museum and the endpoint"
                    }
                    Side::Clients => {
                        "check the network path and firewalls between this host and the public endpoint; clients need it too"
                    }
                },
            ),
            Reachability::Dns(why) => fail(
                format!("{host} does not resolve ({why})"),
                format!(
                    "check the spelling of s3.{id}.{key}; with virtual-host addressing {host} includes the bucket name, \
                     so for MinIO and other local servers set s3.use_path_style_urls: true"
                ),
            ),
        }
    }

    fn refused_fix(&self, id: &str, side: Side, host: &str, port: u16) -> String {
        let embedded = embedded_address(self.settings).filter(|a| a.port() == port);
        match (side, embedded) {
            (Side::Museum, Some(_)) if is_local(host) => {
                format!(
                    "the embedded S3 server runs inside `{}`: start it first (doctor does not start one)",
                    command("serve")
                )
            }
            (Side::Clients, Some(addr)) if addr.ip().is_loopback() && !is_local(host) => format!(
                "the embedded S3 server listens on {addr} only, which no other device can reach: \
                 set s3.embedded-address: 0.0.0.0:{port} and restart `{}`",
                command("serve")
            ),
            (Side::Clients, Some(_)) => format!(
                "start `{}` (it runs the embedded S3 server), and check that {host} is an address of this machine",
                command("serve")
            ),
            (Side::Museum, _) => format!(
                "check s3.{id}.endpoint and its port, and that a firewall lets this host through"
            ),
            (Side::Clients, None) => format!(
                "check s3.{id}.public_endpoint and its port: clients upload there, so it must be reachable from them \
                 (doctor tries from this host)"
            ),
        }
    }

    /// Uploads a small probe object through a presigned URL signed like a client's
    /// (length and MD5) and sent like a browser's (with an `Origin`), reads its size
    /// back with a HEAD, downloads it through a presigned GET, and deletes it.
    /// Presigned URLs go through `public_endpoint` when one is set, as clients' do.
    async fn round_trip(&self, bucket: &BucketClient) -> (Verdict, Seen) {
        use base64::Engine as _;
        use md5::{Digest, Md5};

        let mut seen = Seen::default();
        let origin = &self.origins[0];
        let key = format!("museum-doctor/{}", uuid::Uuid::new_v4());
        let body = b"museum doctor probe".to_vec();
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
        let url = bucket.presign_put(&key, Some(body.len() as u64), Some(&md5), PROBE_TTL);
        let put = self
            .http
            .put(url)
            .header("content-md5", &md5)
            .header("x-client-package", "io.ente.photos.web")
            .header(header::ORIGIN, origin)
            .body(body.clone())
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        match put {
            Ok(r) if r.status().is_success() => seen.put = Some(r.headers().clone()),
            Ok(r) => {
                let status = r.status();
                let code = s3_code(r).await;
                return (
                    fail(
                        format!("the presigned PUT was refused: HTTP {status} {code}"),
                        "a 403 SignatureDoesNotMatch on a presigned URL means a wrong secret or region, a clock off by \
                         minutes, or a proxy that rewrites the Host header; clients would hit the same error",
                    ),
                    seen,
                );
            }
            Err(e) => {
                return (
                    fail(
                        format!(
                            "the presigned PUT failed: {}",
                            error_chain(&e.without_url())
                        ),
                        "check the endpoint from this host",
                    ),
                    seen,
                );
            }
        }
        let mut verdict = match bucket.head(&key).await {
            Ok(meta) if meta.size == body.len() as u64 => Verdict::Ok(format!(
                "{} bytes up, HEAD and GET agree{}",
                body.len(),
                bucket
                    .public_base_url()
                    .map(|u| format!(" (via {})", origin_of(u)))
                    .unwrap_or_default()
            )),
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
        if matches!(verdict, Verdict::Ok(_)) {
            let get = self
                .http
                .get(bucket.presign_get(&key, PROBE_TTL))
                .header("x-client-package", "io.ente.photos.web")
                .header(header::ORIGIN, origin)
                .timeout(Duration::from_secs(15))
                .send()
                .await;
            let problem = match get {
                Ok(r) if r.status().is_success() => {
                    seen.get = Some(r.headers().clone());
                    match r.bytes().await {
                        Ok(got) if got.as_ref() == body.as_slice() => None,
                        Ok(got) => Some(format!(
                            "the presigned GET returned {} bytes that differ from the {} uploaded",
                            got.len(),
                            body.len()
                        )),
                        Err(e) => Some(format!(
                            "the presigned GET broke off: {}",
                            error_chain(&e.without_url())
                        )),
                    }
                }
                Ok(r) => {
                    let status = r.status();
                    let code = s3_code(r).await;
                    Some(format!(
                        "the presigned GET was refused: HTTP {status} {code}"
                    ))
                }
                Err(e) => Some(format!(
                    "the presigned GET failed: {}",
                    error_chain(&e.without_url())
                )),
            };
            if let Some(problem) = problem {
                verdict = fail(
                    problem,
                    "downloads in redirect mode (s3.serve_mode: redirect) send clients to such URLs; \
                     check the key's read permission and any proxy in front of the endpoint",
                );
            }
        }
        if let Err(e) = bucket.delete(&key).await {
            return (
                fail(
                    format!("could not delete the probe object {key}: {e}"),
                    "grant the key s3:DeleteObject; museum needs it for cleanup and deletes",
                ),
                seen,
            );
        }
        (verdict, seen)
    }

    /// Whether browsers on the configured origins may use the bucket: CORS preflights
    /// for every method and header Ente's web clients use, sent to presigned URLs as a
    /// browser sends them, and the CORS headers of the round trip's real PUT and GET.
    async fn cors(&mut self, bucket: &BucketClient, seen: &Seen) -> Verdict {
        let key = format!("museum-doctor/{}", uuid::Uuid::new_v4());
        let put = bucket.presign_put(&key, None, None, PROBE_TTL);
        let post = bucket.presign_complete(&key, "museum-doctor", PROBE_TTL);
        let get = bucket.presign_get(&key, PROBE_TTL);
        let url_for = |method: &str| match method {
            "PUT" => put.clone(),
            "POST" => post.clone(),
            _ => get.clone(),
        };
        let http = &self.http;
        let preflights = self
            .origins
            .iter()
            .flat_map(|origin| CLIENT_METHODS.iter().map(move |method| (origin, *method)));
        let answers = futures_util::future::join_all(preflights.map(|(origin, method)| {
            let url = url_for(method);
            async move {
                preflight(http, url, origin, method)
                    .await
                    .map(|why| (origin, method, why))
            }
        }))
        .await;
        // One problem per origin and reason, naming the methods it concerns.
        let mut grouped: Vec<(&String, Vec<&str>, String)> = Vec::new();
        for (origin, method, why) in answers.into_iter().flatten() {
            match grouped
                .iter_mut()
                .find(|(o, _, w)| *o == origin && *w == why)
            {
                Some((_, methods, _)) => methods.push(method),
                None => grouped.push((origin, vec![method], why)),
            }
        }
        let mut problems: Vec<String> = grouped
            .into_iter()
            .map(|(origin, methods, why)| {
                let plural = if methods.len() > 1 { "s" } else { "" };
                format!(
                    "{} preflight{plural} from {origin}: {why}",
                    methods.join(", ")
                )
            })
            .collect();
        let origin = &self.origins[0];
        for (request, headers, need_etag) in [("PUT", &seen.put, true), ("GET", &seen.get, false)] {
            if let Some(why) = headers
                .as_ref()
                .and_then(|h| response_refusal(origin, h, need_etag))
            {
                problems.push(format!(
                    "the presigned {request}'s answer to {origin}: {why}"
                ));
            }
        }

        if problems.is_empty() {
            let who = self.origins.join(", ");
            return if seen.put.is_some() && seen.get.is_some() {
                Verdict::Ok(format!(
                    "browsers on {who} may PUT, POST, GET and HEAD, and read ETag"
                ))
            } else {
                Verdict::Note(format!(
                    "preflights from {who} pass; the real answers were not checked (the round trip failed)"
                ))
            };
        }

        let shown = 3;
        let mut problem = format!(
            "browsers cannot use this bucket (mobile apps can): {}",
            problems[..problems.len().min(shown)].join("; ")
        );
        if problems.len() > shown {
            problem.push_str(&format!("; and {} more", problems.len() - shown));
        }
        if self.is_embedded(bucket) {
            return fail(
                problem,
                "the embedded S3 server answers CORS for the origins in http.cors.allowed-origins of the \
                 museum that runs it: give that museum the same list as doctor's configuration and restart it",
            );
        }
        // Only now read the rules, to say what is there (the embedded server has no
        // GetBucketCors, and other servers may refuse it: then nothing is said).
        match bucket.bucket_cors().await {
            Ok(None) => problem.push_str(" (the bucket has no CORS rules)"),
            Ok(Some(xml)) => problem.push_str(&format!(
                " (the bucket has {} CORS rule(s), none of which allows this)",
                xml.matches("<CORSRule>").count()
            )),
            Err(_) => {}
        }
        fail(problem, self.cors_fix(bucket))
    }

    /// Whether museum reaches this bucket on the embedded S3 server.
    fn is_embedded(&self, bucket: &BucketClient) -> bool {
        let url = bucket.base_url();
        let port = url.port_or_known_default().unwrap_or(0);
        embedded_address(self.settings).is_some_and(|a| a.port() == port)
            && is_local(url.host_str().unwrap_or_default())
    }

    /// How to put the rule a bucket needs on it; the first time, with the rule.
    fn cors_fix(&mut self, bucket: &BucketClient) -> String {
        let name = bucket.name();
        let endpoint = self
            .settings
            .s3
            .bucket(bucket.id())
            .and_then(|b| b.endpoint_url(self.settings.s3.are_local_buckets).ok())
            .map(|u| origin_of(&u))
            .unwrap_or_default();
        let apply = format!(
            "put this CORS rule on bucket {name}: \
             aws s3api put-bucket-cors --endpoint-url {endpoint} --bucket {name} --cors-configuration file://cors.json, \
             or with MinIO's client: mc cors set ALIAS/{name} cors.xml"
        );
        match self.rule_printed_for {
            Some(first) => {
                format!("{apply} (cors.json and cors.xml are printed above, under {first})")
            }
            None => {
                self.rule_printed_for = Some(bucket.id());
                let (json, xml) = cors_rule_files(&self.settings.http.cors.allowed_origins);
                format!(
                    "{apply}. The rule, ready to paste:\n\
                     cat > cors.json <<'EOF'\n{json}\nEOF\n\
                     cat > cors.xml <<'EOF'\n{xml}\nEOF"
                )
            }
        }
    }
}

/// The credentials and bucket-exists checks, from one signed HEAD of the bucket.
async fn credentials_and_existence(bucket: &BucketClient) -> (Verdict, Verdict) {
    let id = bucket.id();
    let host = bucket.base_url().host_str().unwrap_or_default().to_owned();
    match bucket.head_bucket().await {
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
    }
}

/// Whether path-style or virtual-host addressing suits the endpoint (and the public
/// endpoint, when one is set).
/// Writes a probe as copies are written (with the key), reads it back with the key,
/// and makes sure the bucket refuses to give it out without: that is what proves
/// the provider encrypted it. The key never appears in a verdict.
async fn sse_c_key(bucket: &BucketClient) -> Verdict {
    let id = bucket.id();
    let key = format!("museum-doctor/{}", uuid::Uuid::new_v4());
    let body = bytes::Bytes::from_static(b"museum doctor SSE-C probe");
    let fix = format!(
        "s3.{id}.sse_c_key must be the base64 of 32 bytes, and the provider must support SSE-C (AWS, garage, MinIO with KMS do); objects written with another key cannot be read with this one"
    );
    if let Err(e) = bucket.put_object(&key, vec![body.clone()]).await {
        return fail(
            format!(
                "a probe could not be written with the key: {}",
                error_chain(&e)
            ),
            fix,
        );
    }
    let verdict = match read_all(bucket, &key).await {
        Err(e) => fail(
            format!(
                "the probe could not be read back with the key: {}",
                error_chain(&e)
            ),
            fix,
        ),
        Ok(read) if read != body => fail(
            "the probe read back with the key holds other bytes".to_owned(),
            fix,
        ),
        Ok(_) => match bucket.refuses_read_without_key(&key).await {
            Ok(true) => Verdict::Ok(
                "a probe was written and read back with the key, and refused without it".to_owned(),
            ),
            Ok(false) => fail(
                "the provider gave the probe out without the key: it ignores SSE-C and stores copies unencrypted",
                format!("use a provider that enforces SSE-C, or remove s3.{id}.sse_c_key"),
            ),
            Err(e) => fail(
                format!(
                    "the read without the key got no answer: {}",
                    error_chain(&e)
                ),
                "check the endpoint",
            ),
        },
    };
    if let Err(e) = bucket.delete(&key).await {
        tracing::warn!(bucket = id, error.message = %e, "could not delete doctor's SSE-C probe");
    }
    verdict
}

/// The whole of `key`, read with the bucket's own client.
async fn read_all(bucket: &BucketClient, key: &str) -> Result<Vec<u8>, StorageError> {
    use futures_util::StreamExt as _;
    let (_, mut stream) = bucket.get_stream(key).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Writes a probe as copies are written (with the bucket's storage class) and
/// reports the class the provider says it stored, where it says.
async fn stored_class(bucket: &BucketClient, class: &str) -> Verdict {
    let id = bucket.id();
    let key = format!("museum-doctor/{}", uuid::Uuid::new_v4());
    if let Err(e) = bucket
        .put_object(
            &key,
            vec![bytes::Bytes::from_static(b"museum doctor probe")],
        )
        .await
    {
        return fail(
            format!(
                "a probe with storage class {class} was refused: {}",
                error_chain(&e)
            ),
            format!(
                "set s3.{id}.storage_class to a class this provider offers (an S3 server without tiers may refuse GLACIER; leave it unset there)"
            ),
        );
    }
    let verdict = match bucket.stored_class(&key).await {
        Ok(Some(stored)) if stored == class => {
            Verdict::Ok(format!("the provider stored a probe as {stored}"))
        }
        Ok(Some(stored)) => Verdict::Note(format!(
            "copies are written as {class}, and the provider says it stored a probe as {stored}"
        )),
        Ok(None) => Verdict::Note(format!(
            "copies are written as {class}; the provider does not say which class it stored"
        )),
        Err(e) => Verdict::Note(format!(
            "copies are written as {class}; the stored class could not be read: {}",
            error_chain(&e)
        )),
    };
    if let Err(e) = bucket.delete(&key).await {
        tracing::warn!(bucket = id, error.message = %e, "could not delete doctor's storage-class probe");
    }
    verdict
}

fn addressing(bucket: &BucketClient) -> Verdict {
    let id = bucket.id();
    let url = bucket.base_url();
    if url.path().trim_matches('/') == bucket.name() {
        return Verdict::Ok("path style (endpoint/bucket/key)".to_owned());
    }
    let prefix = format!("{}.", bucket.name());
    for url in std::iter::once(url).chain(bucket.public_base_url()) {
        let host = url.host_str().unwrap_or_default();
        let endpoint_host = host.strip_prefix(&prefix).unwrap_or(host);
        if endpoint_host == "localhost" || endpoint_host.parse::<IpAddr>().is_ok() {
            return fail(
                format!("virtual-host addressing ({host}) cannot work with {endpoint_host}"),
                format!("set s3.use_path_style_urls: true (or s3.{id}.use_path_style_urls: true)"),
            );
        }
    }
    Verdict::Ok(format!(
        "virtual host ({})",
        url.host_str().unwrap_or_default()
    ))
}

/// How to run museum's `sub` command, as this process was started: through cargo
/// from a clone (`cargo run --release -- serve`), or as an installed `museum`.
fn command(sub: &str) -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let profile = exe
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    let in_target = exe
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "target");
    match profile {
        Some("release") if in_target => format!("cargo run --release -- {sub}"),
        Some("debug") if in_target => format!("cargo run -- {sub}"),
        _ => format!("museum {sub}"),
    }
}

/// The embedded S3 server's address, when `museum serve` runs one.
fn embedded_address(settings: &Settings) -> Option<SocketAddr> {
    settings
        .s3
        .embedded
        .then(|| settings.s3.embedded_address.parse().ok())
        .flatten()
}

/// Whether `host` names this machine's loopback.
fn is_local(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// `scheme://host[:port]` of `url`.
fn origin_of(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

/// The `<Code>` of an S3 error answer, or nothing.
async fn s3_code(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    crate::storage::control::xml_value(&text, "Code").unwrap_or_default()
}

/// Sends the CORS preflight a browser on `origin` sends before a `method` request
/// with Ente's client headers to `url`, and judges the answer as the browser would.
/// `None` means the browser would go on with the request.
async fn preflight(
    http: &reqwest::Client,
    url: url::Url,
    origin: &str,
    method: &str,
) -> Option<String> {
    let answer = http
        .request(reqwest::Method::OPTIONS, url)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            CLIENT_HEADERS.join(","),
        )
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    match answer {
        Ok(r) => preflight_refusal(origin, method, r.status().as_u16(), r.headers()),
        Err(e) => Some(format!("no answer ({})", error_chain(&e.without_url()))),
    }
}

/// Why a browser would refuse this answer to a preflight for a `method` request
/// with [`CLIENT_HEADERS`] from `origin` (Fetch standard, CORS-preflight fetch; no
/// credentials), or `None` if it accepts it.
fn preflight_refusal(
    origin: &str,
    method: &str,
    status: u16,
    headers: &HeaderMap,
) -> Option<String> {
    if !(200..300).contains(&status) {
        return Some(format!("HTTP {status}"));
    }
    if let Some(why) = origin_refusal(origin, headers) {
        return Some(why);
    }
    // GET, HEAD and POST are CORS-safelisted methods: a browser does not need them
    // listed (but an S3 rule that does not allow them answers 403 above).
    let methods = header_list(headers, &header::ACCESS_CONTROL_ALLOW_METHODS);
    if !matches!(method, "GET" | "HEAD" | "POST")
        && !methods.iter().any(|m| m == method || m == "*")
    {
        return Some(format!(
            "Access-Control-Allow-Methods ({}) lacks {method}",
            shown_list(&methods)
        ));
    }
    let allowed: Vec<String> = header_list(headers, &header::ACCESS_CONTROL_ALLOW_HEADERS)
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if allowed.iter().any(|h| h == "*") {
        return None;
    }
    let missing: Vec<&str> = CLIENT_HEADERS
        .into_iter()
        .filter(|h| !allowed.iter().any(|a| a == h))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "Access-Control-Allow-Headers ({}) lacks {}",
            shown_list(&allowed),
            missing.join(", ")
        )
    })
}

/// Why a browser on `origin` could not read this answer to a real request (or, with
/// `need_etag`, could not read its `ETag`, which multipart uploads need), or `None`.
fn response_refusal(origin: &str, headers: &HeaderMap, need_etag: bool) -> Option<String> {
    if let Some(why) = origin_refusal(origin, headers) {
        return Some(why);
    }
    if !need_etag {
        return None;
    }
    let exposed = header_list(headers, &header::ACCESS_CONTROL_EXPOSE_HEADERS);
    (!exposed
        .iter()
        .any(|h| h.eq_ignore_ascii_case("etag") || h == "*"))
    .then(|| {
        format!(
            "Access-Control-Expose-Headers ({}) lacks ETag, which multipart uploads read",
            shown_list(&exposed)
        )
    })
}

/// Why `Access-Control-Allow-Origin` does not let `origin` in, or `None`.
fn origin_refusal(origin: &str, headers: &HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .iter()
        .map(|v| v.to_str().unwrap_or("?").trim())
        .collect();
    match values.as_slice() {
        [] => Some("no Access-Control-Allow-Origin".to_owned()),
        [v] if *v == "*" || *v == origin => None,
        [v] => Some(format!("Access-Control-Allow-Origin is {v}, not {origin}")),
        _ => Some(format!(
            "{} Access-Control-Allow-Origin headers (browsers accept one)",
            values.len()
        )),
    }
}

/// The comma-separated items of every `name` header.
fn header_list(headers: &HeaderMap, name: &header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn shown_list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// The CORS rule a bucket needs, as `cors.json` for `aws s3api put-bucket-cors
/// --cors-configuration file://cors.json` and as `cors.xml` (S3's
/// CORSConfiguration) for `mc cors set ALIAS/BUCKET cors.xml`: the allowed origins
/// (or `*` when any is allowed), GET, HEAD, POST, PUT and DELETE, any header, and
/// `ETag` exposed.
pub fn cors_rule_files(allowed_origins: &[String]) -> (String, String) {
    let origins: Vec<&str> =
        if allowed_origins.is_empty() || allowed_origins.iter().any(|o| o == "*") {
            vec!["*"]
        } else {
            allowed_origins.iter().map(String::as_str).collect()
        };
    // Written by hand to keep one key a line; each value is serialized, so the
    // whole is valid JSON.
    let list = |items: &[&str]| serde_json::to_string(items).unwrap_or_default();
    let json = format!(
        "{{\n  \"CORSRules\": [\n    {{\n      \"AllowedOrigins\": {},\n      \"AllowedMethods\": {},\n      \
         \"AllowedHeaders\": [\"*\"],\n      \"ExposeHeaders\": [\"ETag\"],\n      \"MaxAgeSeconds\": 3600\n    }}\n  ]\n}}",
        list(&origins),
        list(&RULE_METHODS),
    );
    let mut xml = String::from("<CORSConfiguration>\n  <CORSRule>\n");
    for origin in &origins {
        xml.push_str(&format!(
            "    <AllowedOrigin>{}</AllowedOrigin>\n",
            xml_escape(origin)
        ));
    }
    for method in RULE_METHODS {
        xml.push_str(&format!("    <AllowedMethod>{method}</AllowedMethod>\n"));
    }
    xml.push_str(
        "    <AllowedHeader>*</AllowedHeader>\n    <ExposeHeader>ETag</ExposeHeader>\n    \
         <MaxAgeSeconds>3600</MaxAgeSeconds>\n  </CORSRule>\n</CORSConfiguration>",
    );
    (json, xml)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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

    #[test]
    fn the_lines_after_a_fix_print_as_they_are_for_pasting() {
        let c = Check::new("b2-eu-cen", "CORS", fail("no", "apply this:\nEOF\n  x"));
        let lines: Vec<String> = c.to_string().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[1].ends_with("fix: apply this:"), "{lines:?}");
        assert_eq!(lines[2], "EOF");
        assert_eq!(lines[3], "  x");
    }

    #[test]
    fn the_cors_rule_names_the_configured_origins_or_any() {
        let (json, xml) = cors_rule_files(&[]);
        let rule: serde_json::Value = serde_json::from_str(&json).unwrap();
        let rule = &rule["CORSRules"][0];
        assert_eq!(rule["AllowedOrigins"], serde_json::json!(["*"]));
        assert_eq!(
            rule["AllowedMethods"],
            serde_json::json!(["GET", "HEAD", "POST", "PUT", "DELETE"])
        );
        assert_eq!(rule["AllowedHeaders"], serde_json::json!(["*"]));
        assert_eq!(rule["ExposeHeaders"], serde_json::json!(["ETag"]));
        assert!(xml.contains("<AllowedOrigin>*</AllowedOrigin>"), "{xml}");

        let origins = vec![
            "https://photos.example.org".to_owned(),
            "ente://app".to_owned(),
        ];
        let (json, xml) = cors_rule_files(&origins);
        let rule: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            rule["CORSRules"][0]["AllowedOrigins"],
            serde_json::json!(["https://photos.example.org", "ente://app"])
        );
        assert!(xml.starts_with("<CORSConfiguration>"), "{xml}");
        assert!(xml.ends_with("</CORSConfiguration>"), "{xml}");
        for line in [
            "<AllowedOrigin>https://photos.example.org</AllowedOrigin>",
            "<AllowedOrigin>ente://app</AllowedOrigin>",
            "<AllowedMethod>PUT</AllowedMethod>",
            "<AllowedMethod>POST</AllowedMethod>",
            "<AllowedHeader>*</AllowedHeader>",
            "<ExposeHeader>ETag</ExposeHeader>",
        ] {
            assert!(xml.contains(line), "{line} missing from {xml}");
        }
        assert!(!xml.contains("<AllowedOrigin>*"), "{xml}");
        assert_eq!(cors_rule_files(&["*".to_owned()]).0, cors_rule_files(&[]).0);
    }

    #[test]
    fn any_origin_is_tested_with_a_sample_and_a_list_as_it_is() {
        assert_eq!(test_origins(&[]), vec![SAMPLE_ORIGIN.to_owned()]);
        assert_eq!(
            test_origins(&["*".to_owned()]),
            vec![SAMPLE_ORIGIN.to_owned()]
        );
        let list = vec![
            "https://a.example".to_owned(),
            "https://b.example".to_owned(),
        ];
        assert_eq!(test_origins(&list), list);
    }

    /// A tiny server whose path chooses how it answers preflights and requests: some
    /// as a browser needs, some wrongly.
    async fn cors_server() -> String {
        use axum::http::{HeaderMap as AxHeaders, StatusCode};
        use axum::routing::any;

        async fn answer(
            axum::extract::Path(case): axum::extract::Path<String>,
            request: AxHeaders,
        ) -> (StatusCode, AxHeaders) {
            let echo = |name: header::HeaderName| {
                request
                    .get(&name)
                    .cloned()
                    .unwrap_or(header::HeaderValue::from_static(""))
            };
            let mut h = AxHeaders::new();
            let mut set = |name: header::HeaderName, value: header::HeaderValue| {
                h.append(name, value);
            };
            let text = header::HeaderValue::from_static;
            let status = match case.as_str() {
                // Mirrors what was asked: passes only if doctor asks for everything.
                "mirror" => {
                    set(header::ACCESS_CONTROL_ALLOW_ORIGIN, echo(header::ORIGIN));
                    set(
                        header::ACCESS_CONTROL_ALLOW_METHODS,
                        echo(header::ACCESS_CONTROL_REQUEST_METHOD),
                    );
                    set(
                        header::ACCESS_CONTROL_ALLOW_HEADERS,
                        echo(header::ACCESS_CONTROL_REQUEST_HEADERS),
                    );
                    set(header::ACCESS_CONTROL_EXPOSE_HEADERS, text("ETag"));
                    StatusCode::OK
                }
                "star" => {
                    set(header::ACCESS_CONTROL_ALLOW_ORIGIN, text("*"));
                    set(header::ACCESS_CONTROL_ALLOW_METHODS, text("*"));
                    set(header::ACCESS_CONTROL_ALLOW_HEADERS, text("*"));
                    set(header::ACCESS_CONTROL_EXPOSE_HEADERS, text("*"));
                    StatusCode::NO_CONTENT
                }
                // An S3 rule that matches nothing.
                "forbidden" => StatusCode::FORBIDDEN,
                "other-origin" => {
                    set(
                        header::ACCESS_CONTROL_ALLOW_ORIGIN,
                        text("https://elsewhere.example"),
                    );
                    StatusCode::OK
                }
                "two-origins" => {
                    set(header::ACCESS_CONTROL_ALLOW_ORIGIN, echo(header::ORIGIN));
                    set(header::ACCESS_CONTROL_ALLOW_ORIGIN, text("*"));
                    StatusCode::OK
                }
                "get-only" => {
                    set(header::ACCESS_CONTROL_ALLOW_ORIGIN, echo(header::ORIGIN));
                    set(header::ACCESS_CONTROL_ALLOW_METHODS, text("GET, HEAD"));
                    set(header::ACCESS_CONTROL_ALLOW_HEADERS, text("*"));
                    StatusCode::OK
                }
                // Ente's documented list before X-Client-Package was needed.
                "few-headers" => {
                    set(header::ACCESS_CONTROL_ALLOW_ORIGIN, echo(header::ORIGIN));
                    set(header::ACCESS_CONTROL_ALLOW_METHODS, text("PUT,POST"));
                    set(
                        header::ACCESS_CONTROL_ALLOW_HEADERS,
                        text("Content-MD5, Content-Type"),
                    );
                    StatusCode::OK
                }
                _ => StatusCode::NOT_FOUND,
            };
            (status, h)
        }

        let app = axum::Router::new().route("/{case}", any(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn preflights_are_judged_as_a_browser_judges_them() {
        let base = cors_server().await;
        let http = reqwest::Client::new();
        let origin = "https://photos.example.org";
        let check = |case: &str, method: &'static str| {
            let url = url::Url::parse(&format!("{base}/{case}")).unwrap();
            let http = http.clone();
            async move { preflight(&http, url, origin, method).await }
        };
        for method in CLIENT_METHODS {
            assert_eq!(check("mirror", method).await, None, "{method}");
            assert_eq!(check("star", method).await, None, "{method}");
            assert_eq!(
                check("forbidden", method).await.as_deref(),
                Some("HTTP 403"),
                "{method}"
            );
        }
        let why = check("other-origin", "PUT").await.unwrap();
        assert!(
            why.contains("is https://elsewhere.example, not https://photos.example.org"),
            "{why}"
        );
        let why = check("two-origins", "GET").await.unwrap();
        assert!(
            why.contains("2 Access-Control-Allow-Origin headers"),
            "{why}"
        );
        let why = check("get-only", "PUT").await.unwrap();
        assert!(why.contains("lacks PUT"), "{why}");
        // A safelisted method needs no listing, as in browsers.
        assert_eq!(check("get-only", "POST").await, None);
        let why = check("few-headers", "PUT").await.unwrap();
        assert!(
            why.ends_with("lacks x-client-package, x-client-version"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn real_answers_must_allow_the_origin_and_expose_the_etag() {
        let base = cors_server().await;
        let http = reqwest::Client::new();
        let origin = "https://photos.example.org";
        let answer = |case: &str| {
            let request = http
                .put(format!("{base}/{case}"))
                .header(header::ORIGIN, origin);
            async move { request.send().await.unwrap().headers().clone() }
        };
        assert_eq!(
            response_refusal(origin, &answer("mirror").await, true),
            None
        );
        assert_eq!(response_refusal(origin, &answer("star").await, true), None);
        let few = answer("few-headers").await;
        assert_eq!(response_refusal(origin, &few, false), None);
        let why = response_refusal(origin, &few, true).unwrap();
        assert!(why.contains("lacks ETag"), "{why}");
        let why = response_refusal(origin, &answer("forbidden").await, false).unwrap();
        assert_eq!(why, "no Access-Control-Allow-Origin");
    }
}

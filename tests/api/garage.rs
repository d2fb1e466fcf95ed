//! garage, a real S3 server that enforces SSE-C (server-side encryption with a key the
//! client sends on every request), and museum's upload, report and replication flows
//! running through it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use base64::Engine as _;
use md5::{Digest, Md5};
use museum::config::{BucketConfig, HOT_BUCKET_IDS};
use museum::replication::Outcome;
use rusty_s3::actions::{GetObject, HeadObject, ListObjectsV2, PutObject, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use secrecy::SecretString;

use crate::helpers::{Engine, PART_SIZE, bytes_of, spawn_app_with};

/// How long presigned URLs made by the tests stay valid.
const PRESIGN: Duration = Duration::from_secs(600);

/// One `garage server` on random ports, in a temporary directory, with one access key
/// allowed to read, write and own every bucket it was started with.
pub struct Garage {
    /// The S3 API, on 127.0.0.1.
    pub addr: SocketAddr,
    /// The region garage signs with (`s3_region`).
    pub region: String,
    /// Access key ID (`GK` and 24 hex digits).
    pub key: String,
    /// Secret access key (64 hex digits).
    pub secret: String,
    config: PathBuf,
    dir: tempfile::TempDir,
    child: Child,
}

impl Garage {
    /// Starts garage (installed by `.ci/test`), lays out its single node, imports the
    /// access key and creates `buckets` (valid S3 names) for it; returns once the S3
    /// API answers a signed request on every bucket. A start that fails (another
    /// process took one of the ports between the probe and garage's bind) is retried
    /// on fresh ports.
    pub async fn start(buckets: &[&str]) -> Self {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let [rpc, s3] = free_ports();
            match Self::try_start(rpc, s3, buckets).await {
                Ok(garage) => return garage,
                Err(why) if attempt < 5 => eprintln!("garage did not start, retrying: {why}"),
                Err(why) => panic!("garage did not start after {attempt} attempts: {why}"),
            }
        }
    }

    /// One start on the given ports: the server, then its set-up.
    async fn try_start(rpc: SocketAddr, s3: SocketAddr, buckets: &[&str]) -> Result<Self, String> {
        let mut garage = Self::launch(rpc, s3).await?;
        let node = garage.cli(&["node", "id", "-q"])?;
        let node = node.trim().split('@').next().unwrap_or_default().to_owned();
        garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
        garage.cli(&["layout", "apply", "--version", "1"])?;
        garage.cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "museum",
            &garage.key,
            &garage.secret,
        ])?;
        for bucket in buckets {
            garage.cli(&["bucket", "create", bucket])?;
            garage.cli(&[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                bucket,
                "--key",
                &garage.key,
            ])?;
        }
        for bucket in buckets {
            garage.wait_for_bucket(bucket).await?;
        }
        Ok(garage)
    }

    /// Writes a configuration for `rpc` and `s3` and starts the server; returns it
    /// once its S3 port accepts connections and its node key is written, or why it
    /// cannot.
    async fn launch(rpc: SocketAddr, s3: SocketAddr) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("garage.toml");
        let region = "garage".to_owned();
        let text = format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
# Blocks are stored as they are, so that plaintext on disk would show.
compression_level = "none"
rpc_bind_addr = "{rpc}"
rpc_public_addr = "{rpc}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{region}"
api_bind_addr = "{s3}"
"#,
            meta = dir.path().join("meta").display(),
            data = dir.path().join("data").display(),
            rpc_secret = hex_digits(64),
        );
        write_private(&config, &text);
        let log = dir.path().join("garage.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("garage")
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect(
                "garage must be installed (cargo install garage@2.5.0 --locked; .ci/test does it)",
            );
        // From here on, dropping `garage` kills the server.
        let mut garage = Self {
            addr: s3,
            region,
            key: format!("GK{}", hex_digits(24)),
            secret: hex_digits(64),
            config,
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            garage.check_alive()?;
            // The node key exists before the S3 port is bound, so a stranger holding
            // the port is not taken for garage.
            if tokio::net::TcpStream::connect(s3).await.is_ok()
                && garage.cli(&["node", "id", "-q"]).is_ok()
            {
                return Ok(garage);
            }
            if Instant::now() > deadline {
                return Err("no answer on the S3 port within 30 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails with garage's log if the server exited (it aborts when its RPC port is
    /// taken) or could not bind its S3 port (it logs that and keeps running).
    fn check_alive(&mut self) -> Result<(), String> {
        let log =
            || std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default();
        if self.child.try_wait().unwrap().is_some() {
            return Err(format!("garage exited: {}", log()));
        }
        let log = log();
        if log.contains("Address already in use") {
            return Err(format!("a port was taken: {log}"));
        }
        Ok(())
    }

    /// Runs `garage -c <config> args…` and returns its standard output, or its
    /// output if it fails.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("garage")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!(
                "garage {} failed: {}{}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8(out.stdout).unwrap())
    }

    /// Polls a signed listing of `bucket` every 50 ms until it is answered 200. Only
    /// this garage knows the key, so a stranger on the port never passes.
    async fn wait_for_bucket(&mut self, bucket: &str) -> Result<(), String> {
        let b = self.bucket(bucket);
        let credentials = self.credentials();
        // A stranger on the port may never answer.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.check_alive()?;
            let url = ListObjectsV2::new(&b, Some(&credentials)).sign(PRESIGN);
            let status = client.get(url).send().await.map(|r| r.status().as_u16());
            if matches!(status, Ok(200)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("bucket {bucket} not ready within 30 s: {status:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `bucket` on this server, addressed path-style (garage has no virtual hosts on
    /// an IP endpoint).
    pub fn bucket(&self, bucket: &str) -> Bucket {
        Bucket::new(
            format!("http://{}", self.addr).parse().unwrap(),
            UrlStyle::Path,
            bucket.to_owned(),
            self.region.clone(),
        )
        .unwrap()
    }

    /// The access key, for signing.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(self.key.clone(), self.secret.clone())
    }

    /// `bucket` on this server as museum's bucket configuration.
    pub fn bucket_config(&self, bucket: &str) -> BucketConfig {
        BucketConfig {
            key: Some(self.key.clone()),
            secret: Some(SecretString::from(self.secret.clone())),
            endpoint: Some(format!("http://{}", self.addr)),
            region: Some(self.region.clone()),
            bucket: Some(bucket.to_owned()),
            use_path_style_urls: Some(true),
            ..BucketConfig::default()
        }
    }

    /// The directories garage keeps metadata and object data in.
    pub fn storage_dirs(&self) -> [PathBuf; 2] {
        [self.dir.path().join("meta"), self.dir.path().join("data")]
    }

    /// Reads `key` of `bucket` through a presigned GET; returns (status, body).
    pub async fn get(&self, bucket: &str, key: &str) -> (u16, Vec<u8>) {
        let b = self.bucket(bucket);
        let credentials = self.credentials();
        let url = GetObject::new(&b, Some(&credentials), key).sign(PRESIGN);
        let r = reqwest::get(url).await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two distinct free ports on 127.0.0.1 (both probes are held at once).
fn free_ports() -> [SocketAddr; 2] {
    let probes = [
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    probes.map(|p| p.local_addr().unwrap())
}

/// `n` random hexadecimal digits.
fn hex_digits(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    getrandom::fill(&mut bytes).unwrap();
    let mut digits = hex::encode(bytes);
    digits.truncate(n);
    digits
}

/// Writes `text` to a new file only its owner can read (the file holds rpc_secret).
fn write_private(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// Whether any file under `dirs` contains `needle`.
fn found_on_disk(dirs: &[PathBuf], needle: &[u8]) -> bool {
    fn walk(dir: &Path, needle: &[u8]) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path, needle)
            } else {
                std::fs::read(&path)
                    .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            }
        })
    }
    dirs.iter().any(|d| walk(d, needle))
}

/// The three SSE-C headers for a 32-byte customer key.
fn sse_c_headers(key: &[u8; 32]) -> [(&'static str, String); 3] {
    let b64 = base64::engine::general_purpose::STANDARD;
    [
        (
            "x-amz-server-side-encryption-customer-algorithm",
            "AES256".to_owned(),
        ),
        ("x-amz-server-side-encryption-customer-key", b64.encode(key)),
        (
            "x-amz-server-side-encryption-customer-key-md5",
            b64.encode(Md5::digest(key)),
        ),
    ]
}

/// A presigned URL for `action` with `headers` signed in, and a request carrying them.
fn signed<'a, A: S3Action<'a>>(
    client: &reqwest::Client,
    method: reqwest::Method,
    mut action: A,
    headers: &'a [(&'static str, String)],
) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        action.headers_mut().insert(*name, value.as_str());
    }
    let mut request = client.request(method, action.sign(PRESIGN));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request
}

/// `len` bytes made of `marker` repeated: above garage's inline threshold, so the
/// object goes to the data directory in blocks.
fn marked_body(marker: &str, len: usize) -> Vec<u8> {
    marker.bytes().cycle().take(len).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_start_notices_a_taken_port() {
    // garage logs an error and shuts down when its S3 port is taken, and aborts when
    // its RPC port is: either must fail the start quickly (to be retried on other
    // ports), never hang or pass. The reason seen depends on timing.
    for taken in [1, 0] {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut ports = free_ports();
        ports[taken] = holder.local_addr().unwrap();
        let started = Instant::now();
        let result = Garage::try_start(ports[0], ports[1], &["museum-clash"]).await;
        let why = result.err().expect("a start on a taken port must fail");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        let first = why.lines().next().unwrap_or_default();
        println!(
            "garage: {} port taken: start failed in {:?}: {first}",
            ["rpc", "s3"][taken],
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_enforces_sse_c() {
    let started = Instant::now();
    let garage = Garage::start(&["museum-sse-c"]).await;
    println!("garage: Garage::start took {:?}", started.elapsed());
    let bucket = garage.bucket("museum-sse-c");
    let credentials = garage.credentials();
    let client = reqwest::Client::new();
    let len = 256 * 1024;

    // The control: without SSE-C the plaintext is on disk, and the ETag is its MD5.
    let plain_marker = format!("museum-plain-{}", uuid::Uuid::new_v4().simple());
    let plain = marked_body(&plain_marker, len);
    let r = signed(
        &client,
        reqwest::Method::PUT,
        PutObject::new(&bucket, Some(&credentials), "plain"),
        &[],
    )
    .body(plain.clone())
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let plain_etag = r.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_eq!(plain_etag, hex::encode(Md5::digest(&plain)));
    assert!(
        found_on_disk(&garage.storage_dirs(), plain_marker.as_bytes()),
        "the control object's plaintext must be visible on disk"
    );

    // PUT under a customer key.
    let secret_marker = format!("museum-secret-{}", uuid::Uuid::new_v4().simple());
    let secret = marked_body(&secret_marker, len);
    let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(3));
    let headers = sse_c_headers(&key);
    let r = signed(
        &client,
        reqwest::Method::PUT,
        PutObject::new(&bucket, Some(&credentials), "secret"),
        &headers,
    )
    .body(secret.clone())
    .send()
    .await
    .unwrap();
    let status = r.status().as_u16();
    let put_headers = r.headers().clone();
    assert_eq!(status, 200, "{}", r.text().await.unwrap());
    let etag = put_headers["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    println!(
        "garage: SSE-C PUT {status}, ETag {etag} (MD5 of the plaintext {}), algorithm header {:?}",
        hex::encode(Md5::digest(&secret)),
        put_headers.get("x-amz-server-side-encryption-customer-algorithm")
    );
    assert_ne!(
        etag,
        hex::encode(Md5::digest(&secret)),
        "under SSE-C the ETag is not the plaintext's MD5"
    );

    // The SSE-C headers must be signed into a presigned URL: sent unsigned, the PUT
    // is refused and nothing is stored.
    let url = PutObject::new(&bucket, Some(&credentials), "unsigned").sign(PRESIGN);
    let mut request = client.put(url);
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    let r = request.body(secret.clone()).send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    println!("garage: SSE-C headers unsigned on a presigned PUT: {status} {body}");
    assert_eq!(status, 400, "{body}");
    assert_eq!(garage.get("museum-sse-c", "unsigned").await.0, 404);

    // HEAD, too, needs the key.
    for (with_key, h) in [(false, &[][..]), (true, &headers[..])] {
        let r = signed(
            &client,
            reqwest::Method::HEAD,
            HeadObject::new(&bucket, Some(&credentials), "secret"),
            h,
        )
        .send()
        .await
        .unwrap();
        println!("garage: HEAD with the key {with_key}: {}", r.status());
        if with_key {
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-length"], len.to_string().as_str());
        } else {
            assert_eq!(r.status(), 400);
        }
    }
    // GET without the key.
    let r = signed(
        &client,
        reqwest::Method::GET,
        GetObject::new(&bucket, Some(&credentials), "secret"),
        &[],
    )
    .send()
    .await
    .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    println!("garage: GET without the key: {status} {body}");
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains(&secret_marker));

    // GET with a wrong key.
    let mut wrong = key;
    wrong[0] ^= 1;
    let wrong_headers = sse_c_headers(&wrong);
    let r = signed(
        &client,
        reqwest::Method::GET,
        GetObject::new(&bucket, Some(&credentials), "secret"),
        &wrong_headers,
    )
    .send()
    .await
    .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    println!("garage: GET with a wrong key: {status} {body}");
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains(&secret_marker));

    // GET with the right key.
    let r = signed(
        &client,
        reqwest::Method::GET,
        GetObject::new(&bucket, Some(&credentials), "secret"),
        &headers,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let get_etag = r.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_eq!(get_etag, etag, "GET answers the ETag PUT gave");
    assert!(
        r.bytes().await.unwrap() == secret,
        "the right key reads the bytes back"
    );

    // Neither the data nor the metadata directory holds the plaintext.
    assert!(
        !found_on_disk(&garage.storage_dirs(), secret_marker.as_bytes()),
        "garage stored SSE-C plaintext on disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn museum_uploads_and_replicates_through_garage() {
    let buckets = ["museum-hot", "museum-cold", "museum-glacier"];
    let garage = Garage::start(&buckets).await;
    let app = spawn_app_with(Engine::Sqlite, |s| {
        for (id, bucket) in museum::config::BUCKET_IDS.iter().zip(buckets) {
            *s.s3.bucket_mut(id).unwrap() = garage.bucket_config(bucket);
        }
    })
    .await;
    assert_eq!(
        HOT_BUCKET_IDS[0], "b2-eu-cen",
        "uploads land in the first bucket"
    );

    let token = app.token_for(1).await;
    // One object replicated in one request, one in parts.
    for (len, seed) in [(100_000, 1), (PART_SIZE as usize + 100, 2)] {
        let bytes = bytes_of(len, seed);
        let (id, key) = upload_and_replicate(&app, &token, &bytes).await;
        for bucket in buckets {
            let (status, body) = garage.get(bucket, &key).await;
            assert_eq!(status, 200, "{bucket}/{key}");
            assert!(body == bytes, "{bucket}/{key}: the bytes differ");
        }
        assert!(
            app.copies(id)
                .await
                .iter()
                .all(|c| c.state == museum::db::copies::CopyState::Done),
            "{:?}",
            app.copies(id).await
        );
    }
}

/// Uploads and reports `bytes`, then runs the replicator until both copies are made
/// in one pass, none failing. Returns the file's id and key.
async fn upload_and_replicate(
    app: &crate::helpers::TestApp,
    token: &str,
    bytes: &[u8],
) -> (i64, String) {
    let (id, key) = app.upload(token, bytes).await;
    let outcomes = app.drain().await;
    assert_eq!(
        outcomes,
        vec![Outcome::Copied {
            object_id: id,
            done: 2,
            failed: 0
        }],
        "{:?}",
        app.copies(id).await
    );
    (id, key)
}

/// A download of file `id` through museum, redirects not followed: status and body.
async fn museum_download(app: &crate::helpers::TestApp, token: &str, id: i64) -> (u16, Vec<u8>) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/files/{id}/download", app.address))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_c_replicas_are_encrypted_proved_verified_and_served_with_their_keys() {
    let buckets = ["museum-hot", "museum-cold", "museum-glacier"];
    let garage = Garage::start(&buckets).await;
    let keys = [
        base64::engine::general_purpose::STANDARD.encode([0x11u8; 32]),
        base64::engine::general_purpose::STANDARD.encode([0x22u8; 32]),
    ];
    let app = spawn_app_with(Engine::Sqlite, |s| {
        for (id, bucket) in museum::config::BUCKET_IDS.iter().zip(buckets) {
            *s.s3.bucket_mut(id).unwrap() = garage.bucket_config(bucket);
        }
        for (id, key) in ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"].iter().zip(&keys) {
            s.s3.bucket_mut(id).unwrap().sse_c_key = Some(SecretString::from(key.clone()));
        }
    })
    .await;

    let token = app.token_for(1).await;
    let mut objects = Vec::new();
    // One object copied with one PUT, one in parts.
    for (len, seed) in [(100_000, 3), (PART_SIZE as usize + 100, 4)] {
        let bytes = bytes_of(len, seed);
        let (id, key) = upload_and_replicate(&app, &token, &bytes).await;
        for c in app.copies(id).await {
            assert_eq!(c.verified_size, Some(len as i64), "{c:?}");
            assert!(c.verified_etag.is_some(), "{c:?}");
        }
        // Without the key, garage will not give the replicas out: they are
        // encrypted with museum's keys.
        for bucket in &buckets[1..] {
            let (status, _) = garage.get(bucket, &key).await;
            assert_eq!(status, 400, "{bucket}/{key} was readable without its key");
        }
        objects.push((id, key, bytes));
    }

    // verify reads every tier, the encrypted ones with their keys.
    let report = museum::app::ops::verify(&app.state.db, &app.state.buckets, None)
        .await
        .unwrap();
    assert_eq!(
        (
            report.checked,
            report.requeued,
            report.tampered,
            report.unreachable
        ),
        (6, 0, 0, 0)
    );

    // The primary loses the objects: downloads fail over to an encrypted replica,
    // which only museum can read, so they are streamed through it.
    let hot = app.state.buckets.primary();
    for (id, key, bytes) in &objects {
        hot.delete(key).await.unwrap();
        let (status, body) = museum_download(&app, &token, *id).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(body == *bytes, "the download's bytes differ");
    }
    // doctor proves each key: written and read with it, refused without it.
    let checks = museum::doctor::run(&app.settings).await;
    for id in ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        let check = checks
            .iter()
            .find(|c| c.subject == id && c.name == "SSE-C key")
            .unwrap_or_else(|| panic!("doctor checks {id}'s SSE-C key"));
        assert!(
            matches!(&check.verdict, museum::doctor::Verdict::Ok(t) if t.contains("refused without it")),
            "{check}"
        );
    }
    assert!(
        !checks
            .iter()
            .any(|c| c.subject == "b2-eu-cen" && c.name == "SSE-C key"),
        "the primary has no key"
    );
    // The keys reach no log line, error or metric.
    let metrics = app.metrics_text().await;
    for key in &keys {
        assert!(!checks.iter().any(|c| c.to_string().contains(key.as_str())));
        assert!(!metrics.contains(key.as_str()));
        assert!(!format!("{:?}", app.settings).contains(key.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_an_sse_c_key_on_a_server_without_sse_c() {
    // museum's embedded server knows nothing of SSE-C.
    let key = base64::engine::general_purpose::STANDARD.encode([0x33u8; 32]);
    let app = spawn_app_with(Engine::Sqlite, |s| {
        s.s3.wasabi_eu_central_2_v3.sse_c_key = Some(SecretString::from(key.clone()));
    })
    .await;
    let checks = museum::doctor::run(&app.settings).await;
    let check = checks
        .iter()
        .find(|c| c.subject == "wasabi-eu-central-2-v3" && c.name == "SSE-C key")
        .expect("doctor checks the SSE-C key");
    assert!(check.failed(), "{check}");
    assert!(!check.to_string().contains(&key), "{check}");
}

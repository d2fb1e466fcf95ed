//! `cargo bench --bench museum`: museum against rclone, a raw GET→PUT stream and a
//! bare axum handler, all measured in this run on loopback. Prints a table, then one
//! `ratio NAME VALUE` line per figure, and rewrites BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use museum::config::{BUCKET_IDS, BucketConfig, S3Config};
use museum::storage::{Buckets, embedded};
use serde_json::{Value, json};
use sqlx::{Connection, SqliteConnection};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const MIB: usize = 1024 * 1024;
const RUNS: usize = 3;
const WORKERS: usize = 6;
/// The small-objects workload: this many objects of `SMALL_SIZE` bytes.
const SMALL_OBJECTS: usize = 2000;
const SMALL_SIZE: usize = 64 * 1024;
/// rclone takes about 100 s per configuration on the small objects here, so it runs
/// once per configuration where museum runs `RUNS` times.
const SMALL_RCLONE_RUNS: usize = 1;

fn main() {
    if let Ok(port) = std::env::var("MUSEUM_BENCH_BARE_AXUM") {
        bare_axum(port.parse().unwrap());
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// The baseline for request handling: the same route, a fixed answer, nothing else.
fn bare_axum(port: u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let app = axum::Router::new().route(
            "/files/upload-urls",
            axum::routing::get(|| async {
                axum::Json(json!({"urls": [{"objectKey": "1/00000000-0000-4000-8000-000000000000", "url": "http://127.0.0.1/x"}]}))
            }),
        );
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

struct Server {
    addr: SocketAddr,
    root: PathBuf,
    bucket: String,
    key: String,
    secret: String,
}

impl Server {
    fn config(&self) -> BucketConfig {
        BucketConfig {
            key: Some(self.key.clone()),
            secret: Some(secrecy::SecretString::from(self.secret.clone())),
            endpoint: Some(format!("http://{}", self.addr)),
            region: Some("eu-central-2".to_owned()),
            bucket: Some(self.bucket.clone()),
            ..BucketConfig::default()
        }
    }

    fn wipe(&self) {
        let dir = self.root.join(&self.bucket);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
    }
}

struct Env {
    dir: PathBuf,
    servers: Vec<Server>,
    buckets: Buckets,
    _cancel: CancellationToken,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn work_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("museum-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn start_servers(dir: &Path) -> Env {
    let cancel = CancellationToken::new();
    let mut servers = Vec::new();
    for id in BUCKET_IDS {
        let root = dir.join("s3").join(id);
        std::fs::create_dir_all(&root).unwrap();
        let key = format!("bench-{id}");
        let secret = format!("bench-secret-{id}");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = embedded::serve(
            &root,
            listener,
            &[id.to_owned()],
            &[(key.clone(), secret.clone())],
            museum::cors::CorsPolicy::default(),
            cancel.clone(),
        )
        .await
        .unwrap();
        servers.push(Server {
            addr,
            root,
            bucket: id.to_owned(),
            key,
            secret,
        });
    }
    let mut s3 = S3Config {
        are_local_buckets: true,
        ..S3Config::default()
    };
    for (id, server) in BUCKET_IDS.iter().zip(&servers) {
        *s3.bucket_mut(id).unwrap() = server.config();
    }
    let buckets = Buckets::from_config(&s3).unwrap();
    Env {
        dir: dir.to_owned(),
        servers,
        buckets,
        _cancel: cancel,
    }
}

/// A museum process on SQLite, configured for the three servers.
struct Museum {
    child: Child,
    base: String,
    db_path: PathBuf,
}

/// The HS256 secret the bench's museums verify JWTs with.
const JWT_SECRET: &str = "museum-bench-jwt-secret-0123456789";

/// A JWT for `user`, valid for an hour, signed as an app's auth server would.
fn jwt_for(user: u32) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user.to_string(), "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

impl Museum {
    /// A museum whose per-user upload-URL limit is out of the way (the load phases
    /// send thousands a second as one user) but still checked on every request, and
    /// whose failed-authentication limit is the default.
    fn start(env: &Env, name: &str) -> Self {
        Self::start_with(env, name, "")
    }

    /// As [`Self::start`], with `extra` appended to `rate-limit:`.
    fn start_with(env: &Env, name: &str, extra: &str) -> Self {
        let dir = env.dir.join(name);
        std::fs::create_dir_all(dir.join("configurations")).unwrap();
        let (api, metrics) = (free_port(), free_port());
        let mut yaml = format!(
            "http:\n  host: 127.0.0.1\n  port: {api}\n  metrics-port: {metrics}\nlog:\n  format: json\n\
             db:\n  url: sqlite://{}/museum.db\nreplication:\n  worker-count: {WORKERS}\n  poll-interval: 50ms\n\
             auth:\n  jwt:\n    secret: {JWT_SECRET}\n\
             rate-limit:\n  upload-urls-per-minute: 1000000000\n{extra}\
             s3:\n  are_local_buckets: true\n",
            dir.display()
        );
        for s in &env.servers {
            let _ = write!(
                yaml,
                "  {}:\n    key: {}\n    secret: {}\n    endpoint: http://{}\n    region: eu-central-2\n    bucket: {}\n",
                s.bucket, s.key, s.secret, s.addr, s.bucket
            );
        }
        std::fs::write(dir.join("configurations/bench.yaml"), yaml).unwrap();
        let log = std::fs::File::create(dir.join("museum.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_museum"))
            .current_dir(&dir)
            .env("ENVIRONMENT", "bench")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child,
            base: format!("http://127.0.0.1:{api}"),
            db_path: dir.join("museum.db"),
        }
    }

    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reqwest::get(format!("{}/ping", self.base))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(Instant::now() < deadline, "museum did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn token(&self, env: &Env, name: &str, user: u32) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_museum"))
            .current_dir(env.dir.join(name))
            .env("ENVIRONMENT", "bench")
            .args(["token", "create", "--user", &user.to_string()])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Sends `SIGSTOP`, `SIGCONT` or the like to the museum process.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024.0
    }

    async fn db(&self) -> SqliteConnection {
        SqliteConnection::connect(&format!("sqlite://{}", self.db_path.display()))
            .await
            .unwrap()
    }

    async fn done_copies(&self, conn: &mut SqliteConnection) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM object_copies WHERE state = 'done'")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    /// Copies not yet made, counted as `museum_replication_pending` counts them.
    async fn pending_copies(&self, conn: &mut SqliteConnection) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM object_copies WHERE state IN ('pending', 'copying')",
        )
        .fetch_one(conn)
        .await
        .unwrap()
    }

    async fn wait_done(&self, total: i64) {
        let mut conn = self.db().await;
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.done_copies(&mut conn).await < total {
            assert!(Instant::now() < deadline, "replication did not finish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Museum {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bytes_of(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(7)) as u8)
        .collect()
}

/// Uploads objects of the given sizes through museum's presigned URLs and reports
/// them; returns (key, size, time the report returned 200).
async fn upload_and_report(
    m: &Museum,
    token: &str,
    sizes: &[usize],
    report: bool,
) -> Vec<(String, usize)> {
    let client = reqwest::Client::new();
    let mut keys = Vec::new();
    for chunk in sizes.chunks(50) {
        let urls: Value = client
            .get(format!(
                "{}/files/upload-urls?count={}",
                m.base,
                chunk.len()
            ))
            .header("X-Auth-Token", token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (u, size) in urls["urls"].as_array().unwrap().iter().zip(chunk) {
            keys.push((
                u["objectKey"].as_str().unwrap().to_owned(),
                u["url"].as_str().unwrap().to_owned(),
                *size,
            ));
        }
    }
    let uploads = futures_util::stream::iter(keys.iter().enumerate().map(|(i, (_, url, size))| {
        let client = client.clone();
        async move {
            let r = client
                .put(url)
                .body(bytes_of(*size, i))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "upload failed: {}", r.status());
        }
    }))
    .buffer_unordered(4)
    .collect::<Vec<_>>();
    uploads.await;
    if report {
        for (key, _, size) in &keys {
            let r = client
                .post(format!("{}/files", m.base))
                .header("X-Auth-Token", token)
                .json(&json!({"file": {"objectKey": key, "size": size}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    keys.into_iter().map(|(k, _, s)| (k, s)).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn wipe_targets(env: &Env) {
    env.servers[1].wipe();
    env.servers[2].wipe();
}

/// Sets every copy back to pending and times museum re-making them all.
async fn museum_run(env: &Env, m: &Museum, total: i64) -> f64 {
    wipe_targets(env);
    let mut conn = m.db().await;
    let start = Instant::now();
    sqlx::query(
        "UPDATE object_copies SET state = 'pending', attempts = 0, next_attempt_at = 0, copied_at = NULL, \
         verified_size = NULL, verified_etag = NULL, last_error = NULL, lease_until = NULL, lease_owner = NULL",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    m.wait_done(total).await;
    start.elapsed().as_secs_f64()
}

fn rclone_remote(cmd: &mut Command, name: &str, s: &Server) {
    let prefix = format!("RCLONE_CONFIG_{}_", name.to_uppercase());
    for (k, v) in [
        ("TYPE", "s3".to_owned()),
        ("PROVIDER", "Other".to_owned()),
        ("ACCESS_KEY_ID", s.key.clone()),
        ("SECRET_ACCESS_KEY", s.secret.clone()),
        ("ENDPOINT", format!("http://{}", s.addr)),
        ("REGION", "eu-central-2".to_owned()),
        ("FORCE_PATH_STYLE", "true".to_owned()),
    ] {
        cmd.env(format!("{prefix}{k}"), v);
    }
}

fn have_rclone() -> bool {
    Command::new("rclone")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Times `rclone copy` hot→cold and hot→glacier, run at the same time, of the whole
/// bucket or of one folder (`prefix`, e.g. a user id); `transfers` None is rclone's
/// default.
fn rclone_run(env: &Env, prefix: &str, transfers: Option<usize>) -> f64 {
    wipe_targets(env);
    // A folder is copied from the bucket's root with a filter: rclone first HEADs a
    // source path to learn whether it is a file, s3s-fs answers a HEAD on a prefix with
    // 500, and rclone's retries of that HEAD would be timed as copying.
    let filter = (!prefix.is_empty()).then(|| format!("/{prefix}/**"));
    let start = Instant::now();
    let mut children = Vec::new();
    for (name, target) in [("cold", &env.servers[1]), ("glacier", &env.servers[2])] {
        let mut cmd = Command::new("rclone");
        cmd.env_remove("AWS_CA_BUNDLE");
        rclone_remote(&mut cmd, "hot", &env.servers[0]);
        rclone_remote(&mut cmd, name, target);
        cmd.args([
            "copy",
            &format!("hot:{}", env.servers[0].bucket),
            &format!("{name}:{}", target.bucket),
            "--s3-no-check-bucket",
        ]);
        if let Some(f) = &filter {
            cmd.args(["--include", f]);
        }
        if let Some(n) = transfers {
            cmd.args(["--transfers", &n.to_string()]);
        }
        // rclone logs retries and errors (not progress) by default: kept for a look.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(env.dir.join(format!("rclone-{name}.log")))
            .unwrap();
        cmd.stdout(Stdio::null()).stderr(log);
        children.push(cmd.spawn().unwrap());
    }
    for mut c in children {
        assert!(c.wait().unwrap().success(), "rclone failed");
    }
    start.elapsed().as_secs_f64()
}

/// The practical limit: each object read once with a GET, and each piece of it
/// (the whole object up to museum's multipart threshold, else a part) handed to
/// every target at once as the same shared chunks (the one-read fan-out museum
/// does), with no database, no hashing and no verification, at museum's
/// concurrency.
async fn raw_run(env: &Env, objects: &[(String, usize)]) -> f64 {
    wipe_targets(env);
    let start = Instant::now();
    let source = env.buckets.get("b2-eu-cen").unwrap().clone();
    let targets: Vec<_> = ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"]
        .map(|t| env.buckets.get(t).unwrap().clone())
        .into();
    let threshold = museum::config::ReplicationConfig::default().multipart_threshold as usize;
    let part_size = museum::config::ReplicationConfig::default().part_size as usize;
    futures_util::stream::iter(objects.iter().map(|(key, size)| {
        let (source, targets) = (source.clone(), targets.clone());
        async move {
            let (_, mut stream) = source.get_stream(key).await.unwrap();
            let piece = if *size > threshold { part_size } else { *size };
            let mut uploads = Vec::new();
            for target in &targets {
                uploads.push(if *size > threshold {
                    Some(target.create_multipart_upload(key).await.unwrap())
                } else {
                    None
                });
            }
            let mut etags = vec![Vec::new(); targets.len()];
            let mut leftover: Option<bytes::Bytes> = None;
            let mut left = *size;
            let mut part_number = 0u16;
            while left > 0 {
                let want = piece.min(left);
                let mut chunks = Vec::new();
                let mut got = 0;
                while got < want {
                    let mut chunk = match leftover.take() {
                        Some(c) => c,
                        None => stream.next().await.unwrap().unwrap(),
                    };
                    if got + chunk.len() > want {
                        leftover = Some(chunk.split_off(want - got));
                    }
                    got += chunk.len();
                    chunks.push(chunk);
                }
                left -= want;
                part_number += 1;
                let sends = targets.iter().zip(&uploads).map(|(target, upload)| {
                    let chunks = chunks.clone();
                    async move {
                        match upload {
                            Some(id) => target.upload_part(key, id, part_number, chunks).await,
                            None => target.put_object(key, chunks).await,
                        }
                        .unwrap()
                        .unwrap_or_default()
                    }
                });
                let answered = futures_util::future::join_all(sends).await;
                for (i, etag) in answered.into_iter().enumerate() {
                    etags[i].push(etag);
                }
            }
            for ((target, upload), etags) in targets.iter().zip(&uploads).zip(&etags) {
                if let Some(id) = upload {
                    target
                        .complete_multipart_upload(key, id, etags)
                        .await
                        .unwrap();
                }
            }
        }
    }))
    .buffer_unordered(WORKERS)
    .collect::<Vec<_>>()
    .await;
    start.elapsed().as_secs_f64()
}

/// Objects under `<bucket>/<prefix>/` in both targets, counted from the servers' files.
fn copied_files(env: &Env, prefix: &str) -> i64 {
    env.servers[1..]
        .iter()
        .map(|s| {
            std::fs::read_dir(s.root.join(&s.bucket).join(prefix)).map_or(0, |d| {
                d.filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file()))
                    .count()
            }) as i64
        })
        .sum()
}

/// What a timed upload load achieved.
struct Load {
    uploads: u64,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
}

/// `clients` clients, each looping {ask for an upload URL, PUT `size` bytes, report
/// the object} as fast as it can for `secs` seconds; a failed step counts an error
/// and the client goes on with a new object.
async fn upload_load(m: &Museum, token: &str, clients: usize, secs: u64, size: usize) -> Load {
    let client = reqwest::Client::new();
    let body = bytes::Bytes::from(bytes_of(size, 0));
    let uploads = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, body, uploads, errors, first_error) = (
            client.clone(),
            body.clone(),
            uploads.clone(),
            errors.clone(),
            first_error.clone(),
        );
        let (base, token) = (m.base.clone(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match upload_one(&client, &base, &token, body.clone()).await {
                    Ok(()) => uploads.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        first_error.lock().unwrap().get_or_insert(e);
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let first_error = first_error.lock().unwrap().take();
    Load {
        uploads: uploads.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        first_error,
        secs: start.elapsed().as_secs_f64(),
    }
}

/// One object as a client uploads it: upload URL, PUT, report. Errors name the step
/// and never the presigned URL.
async fn upload_one(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    body: bytes::Bytes,
) -> Result<(), String> {
    let size = body.len();
    let fail = |step: &str| {
        let step = step.to_owned();
        move |e: reqwest::Error| format!("{step}: {}", e.without_url())
    };
    let r = client
        .get(format!("{base}/files/upload-urls?count=1"))
        .header("X-Auth-Token", token)
        .send()
        .await
        .map_err(fail("upload URL"))?;
    if !r.status().is_success() {
        return Err(format!("upload URL: {}", r.status()));
    }
    let urls: Value = r.json().await.map_err(fail("upload URL"))?;
    let u = &urls["urls"][0];
    let (Some(key), Some(url)) = (u["objectKey"].as_str(), u["url"].as_str()) else {
        return Err("upload URL: no URL in the answer".to_owned());
    };
    let r = client
        .put(url)
        .body(body)
        .send()
        .await
        .map_err(fail("PUT"))?;
    let status = r.status();
    let _ = r.bytes().await;
    if !status.is_success() {
        return Err(format!("PUT: {status}"));
    }
    let r = client
        .post(format!("{base}/files"))
        .header("X-Auth-Token", token)
        .json(&json!({"file": {"objectKey": key, "size": size}}))
        .send()
        .await
        .map_err(fail("report"))?;
    let status = r.status();
    let _ = r.bytes().await;
    if status != 200 {
        return Err(format!("report: {status}"));
    }
    Ok(())
}

/// Requests per second over `secs` seconds with `concurrency` keep-alive clients.
async fn load(url: &str, token: Option<&str>, concurrency: usize, secs: u64) -> f64 {
    let client = reqwest::Client::new();
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, count, url, token) = (
            client.clone(),
            count.clone(),
            url.to_owned(),
            token.map(str::to_owned),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let mut req = client.get(&url);
                if let Some(t) = &token {
                    req = req.header("X-Auth-Token", t);
                }
                let r = req.send().await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The flood's pace: requests per second with invented tokens.
const FLOOD_RATE: u64 = 5_000;

/// A valid user's requests per second over `secs` seconds (16 keep-alive clients)
/// while 16 other clients, from 127.0.0.2, send `rate` requests a second with
/// invented tokens; and the rate the flood reached.
async fn under_flood(url: &str, token: &str, rate: u64, secs: u64) -> (f64, f64) {
    let flood_client = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    let start = Instant::now();
    for i in 0..16u64 {
        let (client, stop, sent, url) = (
            flood_client.clone(),
            stop.clone(),
            sent.clone(),
            url.to_owned(),
        );
        flood.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(16_000_000 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let r = client
                    .get(&url)
                    .header("X-Auth-Token", format!("invented-{i}-{n}-0123456789abcdef"))
                    .send()
                    .await
                    .unwrap();
                assert!(matches!(r.status().as_u16(), 401 | 429), "{}", r.status());
                let _ = r.bytes().await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the flood reach its pace (and use up the address's budget) first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let valid = load(url, Some(token), 16, secs).await;
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    (
        valid,
        sent.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
    )
}

/// Copies claimed and finished per second by in-process workers, with `backlog`
/// other due rows queued behind `real` copies of tiny objects.
async fn backlog_run(env: &Env, name: &str, backlog: i64, real: &[(String, usize)]) -> f64 {
    use museum::db::uploads::{NewObject, TempObject, commit_objects, insert_temp_objects};
    wipe_targets(env);
    let path = env.dir.join(format!("{name}.db"));
    let db = museum::db::Db::connect(
        &secrecy::SecretString::from(format!("sqlite://{}", path.display())),
        museum::db::PoolConfig {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
        },
    )
    .await
    .unwrap();
    db.migrate().await.unwrap();
    let now = museum::db::now_millis();
    let temps: Vec<TempObject> = real
        .iter()
        .map(|(key, _)| TempObject {
            object_key: key.clone(),
            user_id: 1,
            bucket_id: "b2-eu-cen".to_owned(),
            declared_size: None,
            declared_md5: None,
            expected_etag: None,
            upload_id: None,
            created_at: now,
            expires_at: now + 3_600_000,
        })
        .collect();
    insert_temp_objects(&db, &temps).await.unwrap();
    let objects: Vec<NewObject> = real
        .iter()
        .map(|(key, size)| NewObject {
            object_key: key.clone(),
            user_id: 1,
            bucket_id: "b2-eu-cen".to_owned(),
            size: *size as i64,
            md5: None,
            etag: None,
            created_at: 0,
            copy_targets: vec!["wasabi-eu-central-2-v3".to_owned()],
        })
        .collect();
    commit_objects(&db, &objects).await.unwrap();
    // The backlog: due rows for objects that come after the real ones in the queue.
    sqlx::query(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $1) \
         INSERT INTO objects (object_key, user_id, bucket_id, size, created_at) \
         SELECT 'backlog/' || i, 1, 'b2-eu-cen', 1, 1 FROM s",
    )
    .bind(backlog)
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO object_copies (object_id, bucket_id, state, attempts, next_attempt_at, created_at) \
         SELECT id, 'wasabi-eu-central-2-v3', 'pending', 0, 1, 1 FROM objects WHERE object_key LIKE 'backlog/%'",
    )
    .execute(db.pool())
    .await
    .unwrap();
    // A store grown over time has its log checkpointed; the bulk insert left 100+ MB.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(db.pool())
        .await
        .unwrap();
    let metrics = museum::metrics::Metrics::new().unwrap();
    // The defaults, polling as often as the bench's museum process does.
    let config = museum::replication::WorkerConfig {
        poll_interval: Duration::from_millis(50),
        ..museum::replication::WorkerConfig::from(&museum::config::ReplicationConfig::default())
    };
    let real_ids = real.len() as i64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let worker = museum::replication::ReplicationWorker::new(
            db.clone(),
            env.buckets.clone(),
            metrics.clone(),
            config,
            format!("bench/{w}"),
        );
        tasks.push(tokio::spawn(async move {
            let (mut done, mut busy) = (0, 0);
            loop {
                // As the real worker loop does: a busy database is waited out.
                match worker.run_once().await {
                    Ok(museum::replication::Outcome::Copied {
                        object_id, done: d, ..
                    }) if object_id <= real_ids => {
                        done += d;
                    }
                    Ok(_) => return (done, busy),
                    Err(e) => {
                        busy += 1;
                        eprintln!("bench: worker pass failed ({e:?}); retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    let (mut done, mut busy) = (0, 0);
    for t in tasks {
        let (d, b) = t.await.unwrap();
        done += d;
        busy += b;
    }
    if busy > 0 {
        eprintln!("bench: {name}: {busy} worker passes hit a busy database");
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(done, real.len(), "every real copy was made");
    db.close().await;
    let _ = std::fs::remove_file(&path);
    done as f64 / secs
}

/// A figure's target: the value must be at least, or at most, this.
#[derive(Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
}

struct Figure {
    name: &'static str,
    what: String,
    value: f64,
    target: Target,
}

impl Figure {
    fn met(&self) -> bool {
        match self.target {
            Target::AtLeast(t) => self.value >= t,
            Target::AtMost(t) => self.value <= t,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::AtLeast(t) => format!("≥ {t}"),
            Target::AtMost(t) => format!("≤ {t}"),
        }
    }
}

/// Keeps a figure and prints it at once.
fn record(figures: &mut Vec<Figure>, f: Figure) {
    eprintln!("bench: {} = {:.3} ({})", f.name, f.value, f.what);
    figures.push(f);
}

async fn run() {
    if std::env::var_os("RUST_LOG").is_some() {
        museum::telemetry::init(Some(museum::config::LogFormat::Pretty), None);
    }
    let started = Instant::now();
    let dir = work_dir();
    let env = start_servers(&dir).await;
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    // MUSEUM_BENCH_ONLY=lag,backlog runs some phases (for profiling); BENCHMARKS.md
    // is rewritten only by a full run.
    let only: Option<Vec<String>> = std::env::var("MUSEUM_BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let wants = |phase: &str| only.as_ref().is_none_or(|o| o.iter().any(|p| p == phase));

    let m = Museum::start(&env, "main");
    m.ready().await;
    let token = m.token(&env, "main", 1);
    let mut objects = Vec::new();
    if wants("replication") {
        // Workload: 200 × 4 MiB + 2 × 256 MiB, reported to museum and replicated once to warm up.
        let mut sizes = vec![4 * MIB; 200];
        sizes.extend([256 * MIB, 256 * MIB]);
        let total_bytes: usize = sizes.iter().sum();
        eprintln!("bench: uploading the workload ({} MiB)", total_bytes / MIB);
        objects = upload_and_report(&m, &token, &sizes, true).await;
        m.wait_done(2 * objects.len() as i64).await;

        let have_rclone = have_rclone();
        let (mut museum_t, mut rclone_t, mut raw_t) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..RUNS {
            eprintln!("bench: replication run {}/{RUNS}", run + 1);
            // Museum's idle workers poll; stopped, they take no CPU from the baselines.
            m.signal("STOP");
            if have_rclone {
                rclone_t.push(rclone_run(&env, "", Some(WORKERS)));
            }
            raw_t.push(raw_run(&env, &objects).await);
            m.signal("CONT");
            museum_t.push(museum_run(&env, &m, 2 * objects.len() as i64).await);
        }
        let museum_s = median(museum_t.clone());
        let raw_s = median(raw_t.clone());
        let mib_s = |s: f64| 2.0 * total_bytes as f64 / MIB as f64 / s;
        notes.push(format!(
        "replication of {} MiB to both targets: museum {museum_s:.2} s ({:.0} MiB/s written), raw stream {raw_s:.2} s, runs museum {museum_t:.2?} raw {raw_t:.2?}",
        total_bytes / MIB,
        mib_s(museum_s)
    ));
        if have_rclone {
            let rclone_s = median(rclone_t.clone());
            notes.push(format!("rclone {rclone_s:.2} s, runs {rclone_t:.2?}"));
            notes.push(format!(
            "rclone / raw stream = {:.2}: the most replication_vs_rclone can be while museum is bound by the raw stream",
            rclone_s / raw_s
        ));
            record(
                &mut figures,
                Figure {
                    name: "replication_vs_rclone",
                    what: format!("rclone {rclone_s:.2} s / museum {museum_s:.2} s"),
                    value: rclone_s / museum_s,
                    target: Target::AtLeast(1.5),
                },
            );
        } else {
            notes.push(
            "rclone is not installed: replication_vs_rclone not measured (apt-get install rclone)"
                .to_owned(),
        );
        }
        record(
            &mut figures,
            Figure {
                name: "replication_vs_raw_stream",
                what: format!("raw {raw_s:.2} s / museum {museum_s:.2} s"),
                value: raw_s / museum_s,
                target: Target::AtLeast(0.85),
            },
        );
    }

    if wants("lag") {
        // Report → verified copy lag at 10 reports/s of 1 MiB for 30 s.
        eprintln!("bench: lag at 10 reports/s for 30 s");
        for s in &env.servers {
            s.wipe();
        }
        let lag_objects = upload_and_report(&m, &token, &vec![MIB; 300], false).await;
        let client = reqwest::Client::new();
        let mut reported = Vec::new();
        let begin = Instant::now();
        for (i, (key, size)) in lag_objects.iter().enumerate() {
            let due = begin + Duration::from_millis(100 * i as u64);
            tokio::time::sleep_until(due.into()).await;
            let r = client
                .post(format!("{}/files", m.base))
                .header("X-Auth-Token", &token)
                .json(&json!({"file": {"objectKey": key, "size": size}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let id = r.json::<Value>().await.unwrap()["file"]["id"]
                .as_i64()
                .unwrap();
            reported.push((id, museum::db::now_millis()));
        }
        let total_copies = 2 * (objects.len() + lag_objects.len()) as i64;
        m.wait_done(total_copies).await;
        let mut conn = m.db().await;
        let mut lags = Vec::new();
        for (id, at) in &reported {
            let copied: i64 =
                sqlx::query_scalar("SELECT MAX(copied_at) FROM object_copies WHERE object_id = $1")
                    .bind(id)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            lags.push((copied - at).max(0) as f64);
        }
        drop(conn);
        lags.sort_by(f64::total_cmp);
        let p = |q: f64| {
            lags[((lags.len() as f64 * q).ceil() as usize)
                .saturating_sub(1)
                .min(lags.len() - 1)]
        };
        let (p50, p99) = (p(0.5), p(0.99));
        record(
            &mut figures,
            Figure {
                name: "lag_p99_ms",
                what: format!(
                    "p50 {p50:.0} ms, p99 {p99:.0} ms over {} reports",
                    lags.len()
                ),
                value: p99,
                target: Target::AtMost(100.0),
            },
        );
    }

    if wants("presign") {
        // Request handling against a bare axum handler.
        eprintln!("bench: presign requests against a bare axum handler");
        let bare_port = free_port();
        let mut bare = Command::new(std::env::current_exe().unwrap())
            .env("MUSEUM_BENCH_BARE_AXUM", bare_port.to_string())
            .spawn()
            .unwrap();
        let bare_url = format!("http://127.0.0.1:{bare_port}/files/upload-urls?count=1");
        while reqwest::get(&bare_url).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let museum_url = format!("{}/files/upload-urls?count=1", m.base);
        let jwt = jwt_for(1);
        let (mut museum_rps, mut bare_rps, mut jwt_rps) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            bare_rps.push(load(&bare_url, None, 16, 4).await);
            museum_rps.push(load(&museum_url, Some(&token), 16, 4).await);
            jwt_rps.push(load(&museum_url, Some(&jwt), 16, 4).await);
        }
        let _ = bare.kill();
        let _ = bare.wait();
        notes.push(format!(
            "presign req/s with 16 clients, 4 s per run: museum {museum_rps:.0?}, bare axum {bare_rps:.0?}"
        ));
        notes.push(format!(
            "presign req/s with a JWT (HS256) instead of a token: {jwt_rps:.0?}"
        ));
        let (museum_r, bare_r, jwt_r) = (median(museum_rps), median(bare_rps), median(jwt_rps));
        record(
            &mut figures,
            Figure {
                name: "presign_vs_bare_axum",
                what: format!("museum {museum_r:.0} req/s / bare axum {bare_r:.0} req/s"),
                value: museum_r / bare_r,
                target: Target::AtLeast(0.3),
            },
        );
        record(
            &mut figures,
            Figure {
                name: "presign_jwt_vs_token",
                what: format!("JWT {jwt_r:.0} req/s / token {museum_r:.0} req/s"),
                value: jwt_r / museum_r,
                target: Target::AtLeast(0.9),
            },
        );
    }
    drop(m);
    for s in &env.servers {
        s.wipe();
    }

    if wants("flood") {
        // A flood of invented tokens from another address, against one valid user.
        eprintln!("bench: a valid user's presigns under a flood of invented tokens");
        let limited = Museum::start(&env, "flood");
        let open = Museum::start_with(&env, "flood-open", "  failed-auth-per-minute: 0\n");
        let (mut quiet, mut limited_r, mut open_r) = (Vec::new(), Vec::new(), Vec::new());
        let mut flood_notes = Vec::new();
        for (target, name, runs) in [
            (&limited, "flood", &mut limited_r),
            (&open, "flood-open", &mut open_r),
        ] {
            target.ready().await;
            let token = target.token(&env, name, 1);
            let url = format!("{}/files/upload-urls?count=1", target.base);
            for _ in 0..RUNS {
                if name == "flood" {
                    quiet.push(load(&url, Some(&token), 16, 4).await);
                }
                let (valid, sent) = under_flood(&url, &token, FLOOD_RATE, 4).await;
                runs.push(valid);
                flood_notes.push(format!("{name}: flood {sent:.0} req/s"));
            }
        }
        drop((limited, open));
        let (quiet_r, with_limits, without) = (median(quiet), median(limited_r), median(open_r));
        notes.push(format!(
            "a valid user's presigns (16 clients, 4 s) under a flood of {FLOOD_RATE} req/s with invented tokens from 127.0.0.2: \
             {quiet_r:.0} req/s alone, {with_limits:.0} with the default failed-auth limit, {without:.0} with it off \
             ({:.2} of alone); {}",
            without / quiet_r,
            flood_notes.join(", ")
        ));
        record(
            &mut figures,
            Figure {
                name: "valid_user_under_flood",
                what: format!("under the flood {with_limits:.0} req/s / alone {quiet_r:.0} req/s"),
                value: with_limits / quiet_r,
                target: Target::AtLeast(0.8),
            },
        );
    }

    if wants("small") {
        // Many small objects to both targets: museum's copies/s against rclone's best.
        eprintln!("bench: {SMALL_OBJECTS} × 64 KiB objects to both targets, against rclone");
        let m = Museum::start(&env, "small");
        m.ready().await;
        // Its own user, so its keys are the folder `2/` that rclone is given.
        let user = 2;
        let token = m.token(&env, "small", user);
        let small = upload_and_report(&m, &token, &vec![SMALL_SIZE; SMALL_OBJECTS], true).await;
        let copies = 2 * small.len() as i64;
        m.wait_done(copies).await;
        if have_rclone() {
            let prefix = user.to_string();
            let (mut museum_t, mut default_t, mut t16_t) = (Vec::new(), Vec::new(), Vec::new());
            for run in 0..RUNS {
                eprintln!("bench: small objects run {}/{RUNS}", run + 1);
                if run < SMALL_RCLONE_RUNS {
                    m.signal("STOP");
                    default_t.push(rclone_run(&env, &prefix, None));
                    assert_eq!(
                        copied_files(&env, &prefix),
                        copies,
                        "rclone copied every object"
                    );
                    t16_t.push(rclone_run(&env, &prefix, Some(16)));
                    assert_eq!(
                        copied_files(&env, &prefix),
                        copies,
                        "rclone copied every object"
                    );
                    m.signal("CONT");
                }
                museum_t.push(museum_run(&env, &m, copies).await);
                assert_eq!(
                    copied_files(&env, &prefix),
                    copies,
                    "museum copied every object"
                );
            }
            let per_s = |t: &[f64]| copies as f64 / median(t.to_vec());
            let (museum_r, default_r, t16_r) = (per_s(&museum_t), per_s(&default_t), per_s(&t16_t));
            let rclone_r = default_r.max(t16_r);
            notes.push(format!(
                "{SMALL_OBJECTS} × 64 KiB objects to both targets ({copies} copies): museum {museum_r:.0} copies/s, \
                 rclone {default_r:.0} copies/s by default and {t16_r:.0} with --transfers 16 (two concurrent \
                 `rclone copy`; medians of {RUNS} museum runs, {SMALL_RCLONE_RUNS} per rclone configuration); runs (s) museum {museum_t:.2?}, rclone default {default_t:.2?}, \
                 --transfers 16 {t16_t:.2?}"
            ));
            record(
                &mut figures,
                Figure {
                    name: "small_objects_vs_rclone",
                    what: format!(
                        "museum {museum_r:.0} copies/s / rclone's best {rclone_r:.0} copies/s"
                    ),
                    value: museum_r / rclone_r,
                    target: Target::AtLeast(2.0),
                },
            );
        } else {
            notes.push(
                "rclone is not installed: small_objects_vs_rclone not measured (apt-get install rclone)"
                    .to_owned(),
            );
        }
        drop(m);
        for s in &env.servers {
            s.wipe();
        }
    }

    if wants("small-backlog") {
        // Clients uploading small objects flat out, then the time to catch up.
        let (clients, secs, size) = (16, 20, 10_000);
        eprintln!(
            "bench: {clients} clients uploading {size} B objects for {secs} s, then the backlog"
        );
        let m = Museum::start(&env, "small-backlog");
        m.ready().await;
        let token = m.token(&env, "small-backlog", 3);
        let load = upload_load(&m, &token, clients, secs, size).await;
        let stopped = Instant::now();
        let mut conn = m.db().await;
        let at_stop = m.pending_copies(&mut conn).await;
        let deadline = stopped + Duration::from_secs(600);
        while m.pending_copies(&mut conn).await > 0 {
            assert!(Instant::now() < deadline, "the backlog did not drain");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let drain = stopped.elapsed().as_secs_f64();
        let done = m.done_copies(&mut conn).await;
        drop(conn);
        let rate = load.uploads as f64 / load.secs;
        notes.push(format!(
            "small uploads: {clients} clients × {secs} s of {{upload URL, PUT {size} B, report}}: {} uploads \
             ({rate:.0}/s), {} errors{}; {at_stop} copies pending when the load stopped, none {drain:.2} s later; \
             {done} of {} copies done",
            load.uploads,
            load.errors,
            load.first_error.map(|e| format!(" (first: {e})")).unwrap_or_default(),
            2 * load.uploads
        ));
        record(
            &mut figures,
            Figure {
                name: "small_upload_backlog_s",
                what: format!(
                    "{drain:.2} s to drain {at_stop} copies after {rate:.0} uploads/s of {size} B for {secs} s"
                ),
                value: drain,
                target: Target::AtMost(5.0),
            },
        );
        drop(m);
        for s in &env.servers {
            s.wipe();
        }
    }

    if wants("backlog") {
        // Claim throughput with a large backlog.
        eprintln!("bench: claims with 1,000 and 1,000,000 queued rows");
        let real: Vec<(String, usize)> = (0..2000).map(|i| (format!("tiny/{i}"), 64)).collect();
        let hot = env.buckets.get("b2-eu-cen").unwrap();
        futures_util::stream::iter(real.iter().enumerate().map(|(i, (key, size))| async move {
            let body = bytes::Bytes::from(bytes_of(*size, i));
            hot.put_object(key, vec![body]).await.unwrap();
        }))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
        let small = backlog_run(&env, "backlog-1k", 1_000, &real).await;
        let large = backlog_run(&env, "backlog-1m", 1_000_000, &real).await;
        record(
            &mut figures,
            Figure {
                name: "backlog_1m_vs_1k",
                what: format!("{large:.0} copies/s with 1,000,000 queued / {small:.0} with 1,000"),
                value: large / small,
                target: Target::AtLeast(0.9),
            },
        );
        for s in &env.servers {
            s.wipe();
        }
    }

    if wants("rss") {
        // Peak memory of a museum process replicating one 1 GiB object.
        eprintln!("bench: peak memory while replicating 1 GiB");
        let m = Museum::start(&env, "rss");
        m.ready().await;
        let token = m.token(&env, "rss", 1);
        let idle = m.peak_rss_mib();
        upload_and_report(&m, &token, &[1024 * MIB], true).await;
        m.wait_done(2).await;
        let peak = m.peak_rss_mib();
        record(
            &mut figures,
            Figure {
                name: "peak_rss_mib_1gib_object",
                what: format!("VmHWM {peak:.1} MiB (idle {idle:.1} MiB)"),
                value: peak,
                target: Target::AtMost(64.0),
            },
        );
        drop(m);
        let _ = std::fs::remove_dir_all(&dir);
    }
    report(&figures, &notes, started.elapsed(), only.is_none());
}

fn report(figures: &[Figure], notes: &[String], took: Duration, write_doc: bool) {
    let mut table =
        String::from("| figure | measured | value | target | met |\n|---|---|---|---|---|\n");
    for f in figures {
        let _ = writeln!(
            table,
            "| `{}` | {} | {:.2} | {} | {} |",
            f.name,
            f.what,
            f.value,
            f.target_text(),
            if f.met() { "yes" } else { "no" }
        );
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or("?".to_owned(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    let date = jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M UTC")
        .to_string();
    println!("{table}");
    for n in notes {
        println!("{n}");
    }
    for f in figures {
        println!("ratio {} {:.3}", f.name, f.value);
    }
    let doc = format!(
        "# Benchmarks\n\nWritten by `cargo bench --bench museum` on {date}, in {:.0} s.\n\
         Machine: {cores} cores (nproc), {mem} memory. Every figure is measured against its baseline in the same \
         run, on loopback, with three s3s-fs servers (one per bucket) in the bench process and museum as a \
         separate process on SQLite, stopped (SIGSTOP) while the replication baselines run.\n\n{table}\n{}\n",
        took.as_secs_f64(),
        notes.iter().map(|n| format!("- {n}\n")).collect::<String>()
    );
    if write_doc {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
            doc,
        )
        .unwrap();
    }
}

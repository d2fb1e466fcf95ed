//! What every figure shares: the three S3 servers, a museum process on SQLite
//! configured for them, the workload's objects, and the rclone and load helpers
//! more than one figure measures against.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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

pub const MIB: usize = 1024 * 1024;
pub const RUNS: usize = 3;
pub const WORKERS: usize = 6;

pub struct Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub bucket: String,
    pub key: String,
    pub secret: String,
}

impl Server {
    pub fn config(&self) -> BucketConfig {
        BucketConfig {
            key: Some(self.key.clone()),
            secret: Some(secrecy::SecretString::from(self.secret.clone())),
            endpoint: Some(format!("http://{}", self.addr)),
            region: Some("eu-central-2".to_owned()),
            bucket: Some(self.bucket.clone()),
            ..BucketConfig::default()
        }
    }

    pub fn wipe(&self) {
        let dir = self.root.join(&self.bucket);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
    }

    /// As [`Self::wipe`], and the server's own records of the objects (files beside
    /// the bucket's folder; its folders there are kept), for phases that put many
    /// objects.
    pub fn wipe_all(&self) {
        self.wipe();
        for entry in std::fs::read_dir(&self.root).unwrap().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

pub struct Env {
    pub dir: PathBuf,
    pub servers: Vec<Server>,
    pub buckets: Buckets,
    _cancel: CancellationToken,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn work_dir() -> PathBuf {
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

pub async fn start_servers(dir: &Path) -> Env {
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
pub struct Museum {
    child: Child,
    pub base: String,
    pub db_path: PathBuf,
}

/// The HS256 secret the bench's museums verify JWTs with.
pub const JWT_SECRET: &str = "museum-bench-jwt-secret-0123456789";

/// A JWT for `user`, valid for an hour, signed as an app's auth server would.
pub fn jwt_for(user: u32) -> String {
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
    pub fn start(env: &Env, name: &str) -> Self {
        Self::start_with(env, name, "")
    }

    /// As [`Self::start`], with `extra` appended to `rate-limit:`.
    pub fn start_with(env: &Env, name: &str, extra: &str) -> Self {
        Self::start_configured(env, name, extra, "")
    }

    /// As [`Self::start_with`], with `sections` (top-level YAML) added to the
    /// configuration.
    pub fn start_configured(env: &Env, name: &str, extra: &str, sections: &str) -> Self {
        let api = configure(env, name, extra, sections);
        let dir = env.dir.join(name);
        let log = std::fs::File::create(dir.join("museum.log")).unwrap();
        let child = museum_cli(env, name)
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

    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reqwest::get(format!("{}/ping", self.base))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(Instant::now() < deadline, "museum did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn token(&self, env: &Env, name: &str, user: u32) -> String {
        let out = museum_cli(env, name)
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
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024.0
    }

    pub async fn db(&self) -> SqliteConnection {
        SqliteConnection::connect(&format!("sqlite://{}", self.db_path.display()))
            .await
            .unwrap()
    }

    pub async fn done_copies(&self, conn: &mut SqliteConnection) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM object_copies WHERE state = 'done'")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    /// Copies not yet made, counted as `museum_replication_pending` counts them.
    pub async fn pending_copies(&self, conn: &mut SqliteConnection) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM object_copies WHERE state IN ('pending', 'copying')",
        )
        .fetch_one(conn)
        .await
        .unwrap()
    }

    pub async fn wait_done(&self, total: i64) {
        let mut conn = self.db().await;
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.done_copies(&mut conn).await < total {
            assert!(Instant::now() < deadline, "replication did not finish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Writes `configurations/bench.yaml` for a museum in the folder `name` of the work
/// folder: SQLite there, the three servers, no cap on a user's unreported keys (the
/// workloads ask for thousands of URLs before reporting), `extra` appended to
/// `rate-limit:` and `sections` (top-level YAML) after it. Returns the API's port.
pub fn configure(env: &Env, name: &str, extra: &str, sections: &str) -> u16 {
    let dir = env.dir.join(name);
    std::fs::create_dir_all(dir.join("configurations")).unwrap();
    let (api, metrics) = (free_port(), free_port());
    let mut yaml = format!(
        "http:\n  host: 127.0.0.1\n  port: {api}\n  metrics-port: {metrics}\nlog:\n  format: json\n\
         db:\n  url: sqlite://{}/museum.db\nreplication:\n  worker-count: {WORKERS}\n  poll-interval: 50ms\n\
         auth:\n  jwt:\n    secret: {JWT_SECRET}\n\
         quota:\n  max-unreported-keys: 0\n\
         rate-limit:\n  upload-urls-per-minute: 1000000000\n{extra}{sections}\
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
    api
}

/// The museum binary as a command run in the folder of museum `name`, on its
/// configuration, and so on its database and buckets.
pub fn museum_cli(env: &Env, name: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_museum"));
    cmd.current_dir(env.dir.join(name))
        .env("ENVIRONMENT", "bench");
    cmd
}

/// A museum's configuration and migrated database in the folder `name`, with no
/// server running (for the commands alone); returns the folder.
pub fn prepare(env: &Env, name: &str) -> PathBuf {
    configure(env, name, "", "");
    let out = museum_cli(env, name).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "museum migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.dir.join(name)
}

/// Waits for `child` without holding up a thread of the runtime the S3 servers run
/// on.
pub async fn wait_child(child: &mut Child) -> ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Drop for Museum {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn bytes_of(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(7)) as u8)
        .collect()
}

/// Uploads objects of the given sizes through museum's presigned URLs and reports
/// them; returns (key, size, time the report returned 200).
pub async fn upload_and_report(
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

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn wipe_targets(env: &Env) {
    env.servers[1].wipe();
    env.servers[2].wipe();
}

/// Sets every copy back to pending and times museum re-making them all.
pub async fn museum_run(env: &Env, m: &Museum, total: i64) -> f64 {
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

pub fn rclone_remote(cmd: &mut Command, name: &str, s: &Server) {
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

pub fn have_rclone() -> bool {
    Command::new("rclone")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Times `rclone copy` hot→cold and hot→glacier, run at the same time, of the whole
/// bucket or of one folder (`prefix`, e.g. a user id); `transfers` None is rclone's
/// default.
pub fn rclone_run(env: &Env, prefix: &str, transfers: Option<usize>) -> f64 {
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

/// Requests per second over `secs` seconds with `concurrency` keep-alive clients.
pub async fn load(url: &str, token: Option<&str>, concurrency: usize, secs: u64) -> f64 {
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

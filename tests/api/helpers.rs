//! Test harness: the real app on random ports, three separate s3s-fs servers (one per
//! bucket, each with its own credentials), and a fresh SQLite or PostgreSQL database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Once;

use md5::{Digest, Md5};
use museum::api::extract::hash_token;
use museum::api::state::AppState;
use museum::app::startup::Application;
use museum::config::{BUCKET_IDS, BucketConfig, HumanDuration, Settings};
use museum::replication::{Outcome, ReplicationWorker, WorkerConfig};
use museum::storage::embedded;
use secrecy::SecretString;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Runs each listed test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Engine::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Engine::Postgres).await
                }
            )*
        }
    };
}

static TRACING: Once = Once::new();

fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            museum::observe::telemetry::init(Some(museum::config::LogFormat::Pretty), None);
        }
    });
}

/// The administrative PostgreSQL URL tests create their databases through.
pub fn postgres_admin_url() -> String {
    std::env::var("MUSEUM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, uniquely named PostgreSQL database; returns its URL.
pub async fn fresh_postgres_db() -> String {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let name = format!("museum_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL must be running for the tests (.ci/run starts it)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

/// One s3s-fs server on its own port.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub key: String,
    pub secret: String,
    pub bucket: String,
    cancel: std::sync::Mutex<CancellationToken>,
}

impl S3Server {
    /// Starts a server holding `bucket`, reachable with its own credentials.
    pub async fn start(root: &Path, bucket: &str) -> Self {
        Self::start_on(
            root,
            bucket,
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await
    }

    async fn start_on(root: &Path, bucket: &str, listener: TcpListener) -> Self {
        std::fs::create_dir_all(root).unwrap();
        let key = format!("key-{}", uuid::Uuid::new_v4().simple());
        let secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
        let cancel = CancellationToken::new();
        let addr = Self::serve(root, bucket, listener, &key, &secret, cancel.clone()).await;
        Self {
            addr,
            root: root.to_owned(),
            key,
            secret,
            bucket: bucket.to_owned(),
            cancel: std::sync::Mutex::new(cancel),
        }
    }

    async fn serve(
        root: &Path,
        bucket: &str,
        listener: TcpListener,
        key: &str,
        secret: &str,
        cancel: CancellationToken,
    ) -> SocketAddr {
        embedded::serve(
            root,
            listener,
            &[bucket.to_owned()],
            &[(key.to_owned(), secret.to_owned())],
            museum::cors::CorsPolicy::default(),
            cancel,
        )
        .await
        .unwrap()
    }

    /// Stops the server; its port refuses connections afterwards.
    pub fn stop(&self) {
        self.cancel.lock().unwrap().cancel();
    }

    /// Starts the server again on the same port, with the same data and credentials.
    pub async fn restart(&self) {
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if attempts < 100 => {
                    attempts += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        let cancel = CancellationToken::new();
        Self::serve(
            &self.root,
            &self.bucket,
            listener,
            &self.key,
            &self.secret,
            cancel.clone(),
        )
        .await;
        *self.cancel.lock().unwrap() = cancel;
    }

    /// The stored bytes of `key`, if the object exists.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(&self.bucket).join(key)).ok()
    }

    /// This server as a bucket configuration.
    pub fn bucket_config(&self) -> BucketConfig {
        BucketConfig {
            key: Some(self.key.clone()),
            secret: Some(SecretString::from(self.secret.clone())),
            endpoint: Some(format!("http://{}", self.addr)),
            region: Some("eu-central-2".to_owned()),
            bucket: Some(self.bucket.clone()),
            ..BucketConfig::default()
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running museum with its servers.
pub struct TestApp {
    pub address: String,
    pub metrics_address: String,
    /// The admin API, when `admin.key` is set.
    pub admin_address: Option<String>,
    pub state: AppState,
    pub client: reqwest::Client,
    /// Servers by bucket ID, in `BUCKET_IDS` order.
    pub s3: Vec<S3Server>,
    pub settings: Settings,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts museum on `engine` with the defaults tests use.
pub async fn spawn_app(engine: Engine) -> TestApp {
    spawn_app_with(engine, |_| {}).await
}

/// Starts museum on `engine`, letting `tweak` change the settings first.
pub async fn spawn_app_with(engine: Engine, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = Vec::new();
    for id in BUCKET_IDS {
        s3.push(S3Server::start(&dir.path().join(id), id).await);
    }
    let mut settings = Settings::default();
    settings.http.host = "127.0.0.1".to_owned();
    settings.http.port = 0;
    settings.http.metrics_port = 0;
    settings.http.admin_port = 0;
    settings.s3.are_local_buckets = true;
    for (id, server) in BUCKET_IDS.iter().zip(&s3) {
        *settings.s3.bucket_mut(id).unwrap() = server.bucket_config();
    }
    settings.db.url = Some(SecretString::from(match engine {
        Engine::Sqlite => format!("sqlite://{}", dir.path().join("museum.db").display()),
        Engine::Postgres => fresh_postgres_db().await,
    }));
    settings.jobs.cleanup_interval = HumanDuration(std::time::Duration::from_secs(3600));
    // Tests drive the workers themselves with `run_once`, unless they turn them on.
    settings.replication.enabled = false;
    settings.replication.multipart_threshold = PART_SIZE;
    settings.replication.part_size = PART_SIZE;
    settings.replication.retry.initial = HumanDuration(std::time::Duration::from_millis(100));
    settings.replication.retry.max = HumanDuration(std::time::Duration::from_secs(1));
    settings.replication.lease = HumanDuration(std::time::Duration::from_secs(2));
    settings.replication.delete_delay = HumanDuration(std::time::Duration::ZERO);
    // Tests run the scrub themselves.
    settings.scrub.interval = HumanDuration(std::time::Duration::ZERO);
    tweak(&mut settings);

    let (address, metrics_address, admin_address, state, cancel) = start(settings.clone()).await;
    TestApp {
        address,
        metrics_address,
        admin_address,
        state,
        client: reqwest::Client::new(),
        s3,
        settings,
        cancel,
        _dir: dir,
    }
}

/// The part size tests replicate with: S3's smallest.
pub const PART_SIZE: u64 = 5 * 1024 * 1024;

async fn start(
    settings: Settings,
) -> (String, String, Option<String>, AppState, CancellationToken) {
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let metrics_address = format!("http://127.0.0.1:{}", app.metrics_port());
    let admin_address = app
        .admin_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let state = app.state().clone();
    let cancel = CancellationToken::new();
    tokio::spawn(app.run(cancel.clone()));
    (address, metrics_address, admin_address, state, cancel)
}

/// Another museum on the same database and buckets, on a runtime of its own, so that
/// it can die at once, as a process killed with `kill -9` does: every task stops where
/// it is and nothing is released.
pub struct Sibling {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Sibling {
    /// Builds and runs museum with `settings` on a runtime of its own.
    pub async fn start(settings: Settings) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        runtime.spawn(async move {
            let app = Application::build(settings).await.expect("app builds");
            tx.send(()).unwrap();
            app.run(CancellationToken::new()).await
        });
        rx.await.unwrap();
        Self {
            runtime: Some(runtime),
        }
    }

    /// Stops every task of this museum where it stands.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Sibling {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JSON answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// The value of the series `series` (name and labels, as exposed) in the metrics text
/// `text`; 0 if it is not there.
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

impl TestApp {
    /// What the metrics listener serves, as text.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics_address))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops this museum and starts another on the same database and servers, with
    /// `tweak` applied to its settings.
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Settings)) {
        self.cancel.cancel();
        tweak(&mut self.settings);
        let (address, metrics_address, admin_address, state, cancel) =
            start(self.settings.clone()).await;
        self.address = address;
        self.metrics_address = metrics_address;
        self.admin_address = admin_address;
        self.state = state;
        self.cancel = cancel;
    }

    /// A replication worker of this app, claiming as `owner`.
    pub fn worker(&self, owner: &str) -> ReplicationWorker {
        self.worker_on(self.state.db.clone(), owner)
    }

    /// A replication worker on another pool (as another process would have).
    pub fn worker_on(&self, db: museum::db::Db, owner: &str) -> ReplicationWorker {
        ReplicationWorker::new(
            db,
            self.state.buckets.clone(),
            self.state.metrics.clone(),
            WorkerConfig::from(&self.settings.replication),
            owner.to_owned(),
        )
    }

    /// Runs a worker until nothing is due; returns the outcomes.
    pub async fn drain(&self) -> Vec<Outcome> {
        let worker = self.worker("test-drain");
        let mut outcomes = Vec::new();
        for _ in 0..10_000 {
            match worker.run_once().await.unwrap() {
                Outcome::Idle => return outcomes,
                o => outcomes.push(o),
            }
        }
        panic!("the queue never drained");
    }

    /// Uploads `bytes` through a presigned URL and reports it; returns (id, key).
    pub async fn upload(&self, token: &str, bytes: &[u8]) -> (i64, String) {
        let (key, url) = self.upload_url(token).await;
        assert_eq!(put(&url, bytes.to_vec(), None).await, 200);
        let a = self.report(token, &key, bytes.len() as u64).await;
        assert_eq!(a.status, 200, "{}", a.body);
        (a.body["file"]["id"].as_i64().unwrap(), key)
    }

    /// Records `objects` (key and bytes, already in the hot primary) as `user`'s, as
    /// reports would, with a copy queued to each of `copy_targets`: for tests that need
    /// more objects than uploads give quickly.
    pub async fn record_objects(
        &self,
        user: i64,
        objects: &[(String, Vec<u8>)],
        copy_targets: &[&str],
    ) {
        use museum::db::uploads::{NewObject, TempObject, commit_objects, insert_temp_objects};
        let now = museum::db::now_millis();
        for chunk in objects.chunks(500) {
            let temps: Vec<TempObject> = chunk
                .iter()
                .map(|(key, _)| TempObject {
                    object_key: key.clone(),
                    user_id: user,
                    bucket_id: "b2-eu-cen".to_owned(),
                    declared_size: None,
                    declared_md5: None,
                    expected_etag: None,
                    upload_id: None,
                    created_at: now,
                    expires_at: now + 3_600_000,
                })
                .collect();
            insert_temp_objects(&self.state.db, &temps).await.unwrap();
            let new: Vec<NewObject> = chunk
                .iter()
                .map(|(key, bytes)| NewObject {
                    object_key: key.clone(),
                    user_id: user,
                    bucket_id: "b2-eu-cen".to_owned(),
                    size: bytes.len() as i64,
                    md5: Some(hex::encode(Md5::digest(bytes))),
                    etag: None,
                    created_at: now,
                    copy_targets: copy_targets.iter().map(|t| (*t).to_owned()).collect(),
                })
                .collect();
            commit_objects(&self.state.db, &new).await.unwrap();
        }
    }

    /// Copies not verified yet (pending, copying or failed), over every object.
    pub async fn unverified_copies(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM object_copies WHERE state <> 'done'")
            .fetch_one(self.state.db.pool())
            .await
            .unwrap()
    }

    /// The copy rows of object `id`.
    pub async fn copies(&self, id: i64) -> Vec<museum::db::copies::CopyRow> {
        museum::db::copies::list_copies(&self.state.db, id)
            .await
            .unwrap()
    }

    /// A new token for `user`.
    pub async fn token_for(&self, user: i64) -> String {
        let token = format!("test-token-{}", uuid::Uuid::new_v4());
        museum::db::tokens::insert_token(&self.state.db, &hash_token(&token), user, None)
            .await
            .unwrap();
        token
    }

    /// The server for bucket `id`.
    pub fn server(&self, id: &str) -> &S3Server {
        let i = BUCKET_IDS.iter().position(|b| *b == id).unwrap();
        &self.s3[i]
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("body is not JSON (status {status}): {text:?}"));
        Answer { status, body }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut req = self.client.get(format!("{}{path}", self.address));
        if let Some(t) = token {
            req = req.header("X-Auth-Token", t);
        }
        Self::answer(req.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Answer {
        let req = self
            .client
            .post(format!("{}{path}", self.address))
            .header("X-Auth-Token", token)
            .json(body);
        Self::answer(req.send().await.unwrap()).await
    }

    /// Asks for one plain upload URL; returns (key, url).
    pub async fn upload_url(&self, token: &str) -> (String, String) {
        let a = self.get("/files/upload-urls?count=1", Some(token)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let u = &a.body["urls"][0];
        (
            u["objectKey"].as_str().unwrap().to_owned(),
            u["url"].as_str().unwrap().to_owned(),
        )
    }

    /// Asks for a URL with length and MD5 signed in; returns (key, url).
    pub async fn signed_upload_url(&self, token: &str, bytes: &[u8]) -> (String, String) {
        let a = self
            .post(
                "/files/upload-url",
                token,
                &serde_json::json!({"contentLength": bytes.len(), "contentMD5": md5_b64(bytes)}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        (
            a.body["objectKey"].as_str().unwrap().to_owned(),
            a.body["url"].as_str().unwrap().to_owned(),
        )
    }

    /// Reports `key` with `size`.
    pub async fn report(&self, token: &str, key: &str, size: u64) -> Answer {
        self.post(
            "/files",
            token,
            &serde_json::json!({"file": {"objectKey": key, "size": size}}),
        )
        .await
    }
}

/// PUTs `bytes` to a presigned URL, optionally with a Content-MD5 header; returns the status.
pub async fn put(url: &str, bytes: Vec<u8>, content_md5: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .put(url)
        .header("content-length", bytes.len());
    if let Some(md5) = content_md5 {
        req = req.header("content-md5", md5);
    }
    req.body(bytes).send().await.unwrap().status().as_u16()
}

/// Base64 MD5, as a Content-MD5 header carries it.
pub fn md5_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
}

/// Deterministic test bytes.
pub fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// One row of RELIABILITY.md's table. `lost` and `stuck` must be counted from what
/// the buckets and the queue hold after the fault, never assumed.
#[derive(Debug, Default)]
pub struct Reliability<'a> {
    /// The fault injected.
    pub fault: &'a str,
    /// How many times it was injected.
    pub injections: usize,
    /// (object, bucket) pairs whose bytes were compared with what was uploaded.
    pub checked: usize,
    /// Objects whose bytes were missing or different in some bucket.
    pub lost: usize,
    /// Copies not verified when the test ended.
    pub stuck: usize,
    /// Bytes of another user's objects a request got back, where the test tries
    /// (`None`: the fault is not a cross-user one and nothing was measured).
    pub across_users: Option<u64>,
    /// A figure of the run, such as the time to recover.
    pub note: &'a str,
}

impl Reliability<'_> {
    /// Records the row where `.ci/test` collects them, and prints it.
    pub fn record(&self) {
        let row = format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            self.fault,
            self.injections,
            self.checked,
            self.across_users
                .map_or_else(|| "–".to_owned(), |b| b.to_string()),
            self.lost,
            self.stuck,
            self.note
        );
        println!("reliability: {row}");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability");
        std::fs::create_dir_all(&dir).unwrap();
        let slug: String = self
            .fault
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        std::fs::write(dir.join(format!("{slug}.row")), row + "\n").unwrap();
    }
}

/// Uploads `parts` to a multipart URL set and completes it; returns the complete status.
pub async fn upload_parts(
    urls: &serde_json::Value,
    parts: &[Vec<u8>],
    md5s: Option<&[String]>,
) -> u16 {
    let client = reqwest::Client::new();
    let mut etags = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let url = urls["partURLs"][i].as_str().unwrap();
        let md5 = md5s.map(|m| m[i].as_str());
        let mut req = client.put(url).header("content-length", part.len());
        if let Some(m) = md5 {
            req = req.header("content-md5", m);
        }
        let r = req.body(part.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200, "part {i}: {}", r.text().await.unwrap());
        etags.push(r.headers()["etag"].to_str().unwrap().to_owned());
    }
    complete_upload(urls["completeURL"].as_str().unwrap(), &etags).await
}

/// POSTs a multipart upload's completion listing `etags` as parts 1, 2, …; returns
/// the status.
pub async fn complete_upload(url: &str, etags: &[String]) -> u16 {
    let body: String = etags
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
                i + 1
            )
        })
        .collect();
    let r = reqwest::Client::new()
        .post(url)
        .body(format!(
            "<CompleteMultipartUpload>{body}</CompleteMultipartUpload>"
        ))
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

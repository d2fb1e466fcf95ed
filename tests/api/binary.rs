//! The real `museum` binary on the embedded default (SQLite and the in-process S3),
//! configured only through files and `ENTE_*` variables, on random ports.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_museum");

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn museum(dir: &Path, api: u16, metrics: u16) -> Command {
    with_museum_env(Command::new(BIN), dir, api, metrics)
}

/// `cmd`, which runs the museum binary (itself, or a tracer given `BIN`), in `dir`
/// with the environment the binary's tests use.
pub(crate) fn with_museum_env(mut cmd: Command, dir: &Path, api: u16, metrics: u16) -> Command {
    cmd.current_dir(dir)
        .env_remove("ENVIRONMENT")
        .env("ENTE_HTTP_HOST", "127.0.0.1")
        .env("ENTE_HTTP_PORT", api.to_string())
        .env("ENTE_HTTP_METRICS_PORT", metrics.to_string())
        .env("ENTE_S3_EMBEDDED_ADDRESS", "127.0.0.1:0")
        .env("ENTE_LOG_FORMAT", "json");
    cmd
}

/// Runs `museum migrate` in `dir`: only it and `serve` create a database.
pub(crate) fn migrate(dir: &Path, api: u16, metrics: u16) {
    let out = museum(dir, api, metrics).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `museum token create --user <user>` in `dir` (after `museum migrate`, which
/// makes the database if this is the first command); returns the token, which is
/// alone on the last line of stdout.
pub(crate) fn create_token(dir: &Path, api: u16, metrics: u16, user: i64) -> String {
    migrate(dir, api, metrics);
    let out = museum(dir, api, metrics)
        .args(["token", "create", "--user", &user.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().last().unwrap().trim().to_owned()
}

/// The binary as a command-line tool on `settings`' database and buckets, run in
/// `dir` with an environment file that sets nothing: configured only through
/// `ENTE_*` variables.
pub(crate) fn cli_on(settings: &museum::config::Settings, dir: &Path) -> Command {
    use secrecy::ExposeSecret;
    std::fs::create_dir_all(dir.join("configurations")).unwrap();
    std::fs::write(
        dir.join("configurations/cli.yaml"),
        "log:\n  format: json\n",
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("ENVIRONMENT", "cli")
        .env(
            "ENTE_DB_URL",
            settings.db.url.as_ref().unwrap().expose_secret(),
        )
        .env("ENTE_S3_ARE_LOCAL_BUCKETS", "true")
        .env(
            "ENTE_S3_HOT_STORAGE_PRIMARY",
            &settings.s3.hot_storage.primary,
        )
        .env(
            "ENTE_REPLICATION_PART_SIZE",
            settings.replication.part_size.to_string(),
        )
        .env(
            "ENTE_REPLICATION_MULTIPART_THRESHOLD",
            settings.replication.multipart_threshold.to_string(),
        )
        // The tests' short lease, which a command's validation accepts only with an
        // idle timeout of at most half of it.
        .env(
            "ENTE_REPLICATION_LEASE",
            format!("{}ms", settings.replication.lease.get().as_millis()),
        )
        .env(
            "ENTE_S3_IDLE_TIMEOUT",
            format!(
                "{}ms",
                (settings.replication.lease.get() / 2)
                    .min(settings.s3.idle_timeout.get())
                    .as_millis()
            ),
        );
    for id in museum::config::BUCKET_IDS {
        let bucket = settings.s3.bucket(id).unwrap();
        let var = |field: &str| format!("ENTE_S3_{}_{field}", id.replace('-', "_").to_uppercase());
        for (field, value) in [
            ("KEY", bucket.key.clone()),
            (
                "SECRET",
                bucket.secret.as_ref().map(|s| s.expose_secret().to_owned()),
            ),
            ("ENDPOINT", bucket.endpoint.clone()),
            ("REGION", bucket.region.clone()),
            ("BUCKET", bucket.bucket.clone()),
        ] {
            if let Some(value) = value {
                cmd.env(var(field), value);
            }
        }
    }
    cmd
}

pub(crate) fn checkout_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.path().join("configurations")).unwrap();
    for file in [
        "configurations/local.yaml",
        "credentials.yaml",
        "museum.yaml",
    ] {
        std::fs::copy(root.join(file), dir.path().join(file)).unwrap();
    }
    dir
}

pub(crate) struct Killed(pub(crate) Child);

impl Killed {
    /// Waits (at most `within`) until `reached` holds, then kills the process with
    /// SIGKILL and reaps it. Panics if `what` ends on its own first.
    pub(crate) async fn sigkill_once<F, Fut>(mut self, what: &str, within: Duration, mut reached: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !reached().await {
            if let Some(exit) = self.0.try_wait().unwrap() {
                panic!("{what} ended ({exit}) before it was killed");
            }
            assert!(
                Instant::now() < deadline,
                "{what} did too little in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.0.kill().unwrap(); // SIGKILL
        self.0.wait().unwrap();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn wait_for_ping(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/ping")).await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "museum did not answer /ping within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Uploads and reports `bytes` through the binary at `base`; returns (id, key).
pub(crate) async fn upload(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    bytes: &[u8],
) -> (i64, String) {
    let key = unreported_upload(client, base, token, bytes).await;
    let reported: Value = client
        .post(format!("{base}/files"))
        .header("X-Auth-Token", token)
        .json(&json!({"file": {"objectKey": key, "size": bytes.len()}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (reported["file"]["id"].as_i64().unwrap(), key)
}

/// Uploads `bytes` to a fresh key without reporting it; returns the key.
pub(crate) async fn unreported_upload(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    bytes: &[u8],
) -> String {
    let urls: Value = client
        .get(format!("{base}/files/upload-urls?count=1"))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = urls["urls"][0]["url"].as_str().unwrap();
    assert_eq!(crate::helpers::put(url, bytes.to_vec(), None).await, 200);
    urls["urls"][0]["objectKey"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_binary_serves_the_embedded_default_end_to_end() {
    let dir = checkout_copy();
    let (api, metrics) = (free_port(), free_port());
    let token = create_token(dir.path(), api, metrics, 9);
    assert!(token.len() >= 40, "{token}");

    let child = museum(dir.path(), api, metrics)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let base = format!("http://127.0.0.1:{api}");
    wait_for_ping(&base).await;

    let client = reqwest::Client::new();
    let urls: Value = client
        .get(format!("{base}/files/upload-urls?count=1"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = urls["urls"][0]["objectKey"].as_str().unwrap().to_owned();
    let url = urls["urls"][0]["url"].as_str().unwrap().to_owned();
    let put = client.put(&url).body(vec![7u8; 2048]).send().await.unwrap();
    assert_eq!(put.status(), 200);

    let report = |size: u64| {
        client
            .post(format!("{base}/files"))
            .header("X-Auth-Token", &token)
            .json(&json!({"file": {"objectKey": key, "size": size}}))
            .send()
    };
    let wrong = report(2047).await.unwrap();
    assert_eq!(wrong.status(), 400);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["code"], "SIZE_MISMATCH");
    let ok = report(2048).await.unwrap();
    assert_eq!(ok.status(), 200);
    let stored = std::fs::read(dir.path().join("data/s3/b2-eu-cen").join(&key)).unwrap();
    assert!(
        stored == vec![7u8; 2048],
        "the object is on disk under data/s3/<bucket>/<key>"
    );
    assert!(dir.path().join("data/museum.db").is_file());

    let metrics_text = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics_text.contains(r#"museum_uploads_committed_total{result="ok"} 1"#),
        "{metrics_text}"
    );
    assert!(metrics_text.contains(r#"museum_uploads_committed_total{result="size_mismatch"} 1"#));

    let status = Command::new("kill")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "museum did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
    let mut logs = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut logs).unwrap();
    assert!(!logs.contains(&token), "the token never reaches the logs");
    assert!(
        !logs.contains("X-Amz-Signature"),
        "presigned URLs never reach the logs"
    );
    assert!(
        !logs.contains("museum-local-secret"),
        "secrets never reach the logs"
    );
}

#[test]
fn an_invalid_configuration_stops_the_binary_with_every_problem() {
    let dir = checkout_copy();
    let out = museum(dir.path(), free_port(), free_port())
        .env("ENTE_S3_HOT_STORAGE_PRIMARY", "scw-eu-fr-v3")
        .env("ENTE_S3_B2_EU_CEN_BUCKET", "No_Such")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("s3.hot_storage.primary") && stderr.contains("ENTE_S3_HOT_STORAGE_PRIMARY"),
        "{stderr}"
    );
    assert!(
        stderr.contains("s3.b2-eu-cen.bucket") && stderr.contains("ENTE_S3_B2_EU_CEN_BUCKET"),
        "{stderr}"
    );
}

#[test]
fn configuration_files_are_read_from_the_start_folder_only() {
    // A museum.yaml in a folder above must not reach a museum started below it.
    let dir = checkout_copy();
    let child = dir.path().join("child");
    std::fs::create_dir_all(child.join("configurations")).unwrap();
    for file in ["configurations/local.yaml", "credentials.yaml"] {
        std::fs::copy(dir.path().join(file), child.join(file)).unwrap();
    }
    std::fs::write(
        dir.path().join("museum.yaml"),
        "s3:\n  hot_storage:\n    primary: scw-eu-fr-v3\n",
    )
    .unwrap();
    let out = museum(&child, free_port(), free_port())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the parent folder's museum.yaml was read: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies in `state` in the database of the museum in `dir`.
async fn count_copies(dir: &Path, state: &str) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}", dir.join("data/museum.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM object_copies WHERE state = $1")
        .bind(state)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    n
}

async fn count_done(dir: &Path) -> i64 {
    count_copies(dir, "done").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_replication_loses_nothing() {
    const OBJECTS: usize = 200;
    const KILLS: usize = 20;
    let dir = checkout_copy();
    let (api, metrics) = (free_port(), free_port());
    let start = || {
        // The default lease (60 s): recovery must not wait for it to run out.
        let child = museum(dir.path(), api, metrics)
            .env("ENTE_REPLICATION_PART_SIZE", (5 * 1024 * 1024).to_string())
            .env("ENTE_REPLICATION_WORKER_COUNT", "4")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Killed(child)
    };
    migrate(dir.path(), api, metrics);
    let out = museum(dir.path(), api, metrics)
        .args(["token", "create", "--user", "3"])
        .output()
        .unwrap();
    let token = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let base = format!("http://127.0.0.1:{api}");
    let client = reqwest::Client::new();

    let mut museum_process = start();
    wait_for_ping(&base).await;
    let mut objects = Vec::new();
    for batch in 0..OBJECTS / 50 {
        let urls: Value = client
            .get(format!("{base}/files/upload-urls?count=50"))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (j, u) in urls["urls"].as_array().unwrap().iter().enumerate() {
            let i = batch * 50 + j;
            // Mostly small objects, every 25th over the 5 MiB part size (multipart),
            // and the last, so that the last kill finds a copy in flight.
            let size = if i % 25 == 0 || i == OBJECTS - 1 {
                6 * 1024 * 1024 + i
            } else {
                64 * 1024 + 997 * i
            };
            let bytes: Vec<u8> = (0..size).map(|k| (k * 7 + i) as u8).collect();
            let put = client
                .put(u["url"].as_str().unwrap())
                .body(bytes.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(put.status(), 200);
            objects.push((u["objectKey"].as_str().unwrap().to_owned(), bytes));
        }
    }

    // Report in batches between kills, at pseudo-random moments.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut done_at_kills = Vec::new();
    let mut last_restart = Instant::now();
    let mut in_flight_at_last_kill = 0;
    for (kill, batch) in objects.chunks(OBJECTS / KILLS).enumerate() {
        for (key, bytes) in batch {
            let r = client
                .post(format!("{base}/files"))
                .header("X-Auth-Token", &token)
                .json(&json!({"file": {"objectKey": key, "size": bytes.len()}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "report after {kill} kills");
        }
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        if kill + 1 < KILLS {
            tokio::time::sleep(Duration::from_millis(seed >> 56)).await;
        } else {
            // The last kill lands while copies are in flight.
            let deadline = Instant::now() + Duration::from_secs(10);
            while count_copies(dir.path(), "copying").await == 0 {
                assert!(Instant::now() < deadline, "no copy ever in flight");
            }
        }
        drop(museum_process); // SIGKILL, then reap
        in_flight_at_last_kill = count_copies(dir.path(), "copying").await;
        done_at_kills.push(count_done(dir.path()).await);
        last_restart = Instant::now();
        museum_process = start();
        wait_for_ping(&base).await;
    }
    let total = (2 * OBJECTS) as i64;
    assert!(
        done_at_kills.iter().any(|d| *d < total),
        "no kill landed mid-replication: {done_at_kills:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(180);
    while count_done(dir.path()).await < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovery = last_restart.elapsed();
    drop(museum_process);
    let (mut checked, mut lost) = (0, 0);
    for (key, bytes) in &objects {
        let mut intact = true;
        for bucket in ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
            let stored = std::fs::read(dir.path().join("data/s3").join(bucket).join(key));
            intact &= stored.is_ok_and(|s| &s == bytes);
            checked += 1;
        }
        lost += usize::from(!intact);
    }
    println!("sigkill: verified copies at each kill {done_at_kills:?}");
    let stuck = usize::try_from(total - count_done(dir.path()).await).unwrap_or(0);
    crate::helpers::Reliability {
        fault: "kill -9 of museum while reporting and replicating",
        injections: KILLS,
        checked,
        lost,
        stuck,
        across_users: None,
        note: &format!(
            "{in_flight_at_last_kill} copies in flight at the last kill; every copy verified \
             {:.1} s after the restart (replication.lease 60 s)",
            recovery.as_secs_f64()
        ),
    }
    .record();
    assert_eq!(lost, 0, "objects differ from what was uploaded");
    assert_eq!(stuck, 0, "copies never all arrived after {KILLS} kills");
    assert!(
        in_flight_at_last_kill > 0,
        "the last kill found no copy in flight"
    );
    assert!(
        recovery <= Duration::from_secs(15),
        "the copies in flight at the last kill waited {recovery:?} after the restart"
    );
}

#[tokio::test]
async fn doctor_passes_against_a_running_museum_and_names_a_closed_endpoint() {
    let dir = checkout_copy();
    let (api, metrics, s3) = (free_port(), free_port(), free_port());
    let with_s3 = |mut cmd: Command| {
        cmd.env("ENTE_S3_EMBEDDED_ADDRESS", format!("127.0.0.1:{s3}"));
        for id in ["B2_EU_CEN", "WASABI_EU_CENTRAL_2_V3", "SCW_EU_FR_V3"] {
            cmd.env(format!("ENTE_S3_{id}_ENDPOINT"), format!("127.0.0.1:{s3}"));
        }
        cmd
    };
    let out = with_s3(museum(dir.path(), api, metrics))
        .arg("doctor")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "no museum serve yet");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("start it first"), "{stdout}");

    let child = with_s3(museum(dir.path(), api, metrics))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serve = Killed(child);
    wait_for_ping(&format!("http://127.0.0.1:{api}")).await;

    let out = with_s3(museum(dir.path(), api, metrics))
        .arg("doctor")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("all checks passed"), "{stdout}");

    let closed = free_port();
    let out = with_s3(museum(dir.path(), api, metrics))
        .env(
            "ENTE_S3_SCW_EU_FR_V3_ENDPOINT",
            format!("127.0.0.1:{closed}"),
        )
        .arg("doctor")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("FAIL  scw-eu-fr-v3             endpoint reachable               nothing answers at 127.0.0.1:{closed}")), "{stdout}");
    assert!(
        stdout.contains("checks failed for: scw-eu-fr-v3"),
        "{stdout}"
    );
}

#[tokio::test]
async fn doctor_sends_real_cors_preflights_through_the_public_endpoint() {
    let dir = checkout_copy();
    let (api, metrics, s3) = (free_port(), free_port(), free_port());
    // Museum reaches the buckets at 127.0.0.1, clients are sent to localhost.
    let with_s3 = |mut cmd: Command| {
        cmd.env("ENTE_S3_EMBEDDED_ADDRESS", format!("127.0.0.1:{s3}"))
            .env(
                "ENTE_HTTP_CORS_ALLOWED_ORIGINS",
                "https://photos.example.org",
            );
        for id in ["B2_EU_CEN", "WASABI_EU_CENTRAL_2_V3", "SCW_EU_FR_V3"] {
            cmd.env(format!("ENTE_S3_{id}_ENDPOINT"), format!("127.0.0.1:{s3}"))
                .env(
                    format!("ENTE_S3_{id}_PUBLIC_ENDPOINT"),
                    format!("localhost:{s3}"),
                );
        }
        cmd
    };
    let log_path = dir.path().join("serve.log");
    let child = with_s3(museum(dir.path(), api, metrics))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let _serve = Killed(child);
    wait_for_ping(&format!("http://127.0.0.1:{api}")).await;

    let doctor = |cmd: &mut Command| {
        let out = cmd.arg("doctor").output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = doctor(&mut with_s3(museum(dir.path(), api, metrics)));
    assert_eq!(code, Some(0), "{stdout}");
    for id in ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        assert!(
            stdout.contains(&format!(
                "ok    {id:<24} public endpoint reachable        http://localhost:{s3}"
            )),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!(
                "ok    {id:<24} CORS                             browsers on https://photos.example.org may PUT, POST, GET and HEAD, and read ETag"
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!("(via http://localhost:{s3})")),
        "{stdout}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !log.contains(r#""level":"ERROR""#),
        "a healthy doctor run leaves no error in the server's log:\n{log}"
    );

    // The running server allows photos.example.org only: another origin is refused
    // by the embedded server's real preflights.
    let (code, stdout) = doctor(with_s3(museum(dir.path(), api, metrics)).env(
        "ENTE_HTTP_CORS_ALLOWED_ORIGINS",
        "https://elsewhere.example",
    ));
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  b2-eu-cen                CORS                             browsers cannot use this bucket (mobile apps can): PUT, POST, GET, HEAD preflights from https://elsewhere.example: no Access-Control-Allow-Origin"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the presigned PUT's answer to https://elsewhere.example: no Access-Control-Allow-Origin"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "fix: the embedded S3 server answers CORS for the origins in http.cors.allowed-origins"
        ),
        "{stdout}"
    );

    // Seen as any other S3 server (not this museum's embedded one), the fix is the
    // rule to apply, ready to paste, once, with the configured origin in it.
    let (code, stdout) = doctor(
        with_s3(museum(dir.path(), api, metrics))
            .env("ENTE_S3_EMBEDDED", "false")
            .env(
                "ENTE_HTTP_CORS_ALLOWED_ORIGINS",
                "https://elsewhere.example",
            ),
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("aws s3api put-bucket-cors --endpoint-url http://127.0.0.1:{s3} --bucket b2-eu-cen --cors-configuration file://cors.json")),
        "{stdout}"
    );
    assert!(
        stdout.contains("mc cors set ALIAS/b2-eu-cen cors.xml"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mc cors set ALIAS/scw-eu-fr-v3 cors.xml (cors.json and cors.xml are printed above, under b2-eu-cen)"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("cat > cors.json <<'EOF'").count(),
        1,
        "{stdout}"
    );
    let json = stdout
        .split("cat > cors.json <<'EOF'\n")
        .nth(1)
        .and_then(|rest| rest.split("\nEOF\n").next())
        .unwrap();
    let rule: Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        rule["CORSRules"][0]["AllowedOrigins"],
        json!(["https://elsewhere.example"])
    );
    assert_eq!(rule["CORSRules"][0]["ExposeHeaders"], json!(["ETag"]));
    assert!(
        stdout.contains("<AllowedOrigin>https://elsewhere.example</AllowedOrigin>"),
        "{stdout}"
    );

    // A public endpoint nothing answers at: named, and the client-side checks skipped.
    let closed = free_port();
    let (code, stdout) = doctor(with_s3(museum(dir.path(), api, metrics)).env(
        "ENTE_S3_SCW_EU_FR_V3_PUBLIC_ENDPOINT",
        format!("127.0.0.1:{closed}"),
    ));
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("FAIL  scw-eu-fr-v3             public endpoint reachable        nothing answers at 127.0.0.1:{closed}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("skip  scw-eu-fr-v3             CORS"),
        "{stdout}"
    );
    assert!(
        stdout.contains("checks failed for: scw-eu-fr-v3\n"),
        "{stdout}"
    );
}

//! The real binary as an operator runs it: start-up with secrets written as YAML
//! numbers, and how long it takes to stop.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::binary::{
    Killed, checkout_copy, free_port, museum, unreported_upload, upload, wait_for_ping,
};

/// A secret that YAML reads as a number unless quoted.
const NUMERIC_SECRET: &str = "12345678";

/// `credentials.yaml` giving every bucket the numeric secret, unquoted.
fn numeric_bucket_secrets() -> String {
    let mut yaml = "s3:\n".to_owned();
    for id in ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        yaml.push_str(&format!("  {id}:\n    secret: {NUMERIC_SECRET}\n"));
    }
    yaml
}

fn assert_secret_absent(what: &str, out: &str) {
    assert!(
        !out.contains(NUMERIC_SECRET),
        "{what} shows the secret:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unquoted_numeric_secrets_start_the_binary_and_never_show() {
    let dir = checkout_copy();
    std::fs::write(
        dir.path().join("credentials.yaml"),
        numeric_bucket_secrets(),
    )
    .unwrap();
    let (api, metrics) = (free_port(), free_port());

    crate::binary::migrate(dir.path(), api, metrics);
    let out = museum(dir.path(), api, metrics)
        .args(["token", "create", "--user", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_secret_absent("stderr", &stderr);
    assert!(out.status.success(), "{stderr}");
    let token = stdout.lines().last().unwrap().trim().to_owned();

    let log = dir.path().join("serve.log");
    let child = museum(dir.path(), api, metrics)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _serve = Killed(child);
    let base = format!("http://127.0.0.1:{api}");
    wait_for_ping(&base).await;
    // The secret signs the upload URL and unlocks the embedded server: the upload
    // only succeeds if both read the same text.
    unreported_upload(&reqwest::Client::new(), &base, &token, &[1u8; 100]).await;
    assert_secret_absent("stdout", &stdout);
    assert_secret_absent("the log", &std::fs::read_to_string(&log).unwrap());
}

/// Runs `museum migrate` in `dir` with one more variable, asserts that it fails with
/// exit code 2, and returns all it printed (stdout, then stderr).
fn failing_migrate(dir: &std::path::Path, (name, value): (&str, &str)) -> String {
    let out = museum(dir, free_port(), free_port())
        .env(name, value)
        .arg("migrate")
        .output()
        .unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{output}");
    output
}

#[test]
fn failing_start_ups_with_a_numeric_secret_never_show_it() {
    let dir = checkout_copy();
    // A configuration problem elsewhere: every problem is listed, the secret is not.
    std::fs::write(
        dir.path().join("credentials.yaml"),
        numeric_bucket_secrets(),
    )
    .unwrap();
    let output = failing_migrate(dir.path(), ("ENTE_S3_B2_EU_CEN_BUCKET", "No_Such"));
    assert!(output.contains("s3.b2-eu-cen.bucket"), "{output}");
    assert_secret_absent("a configuration error", &output);

    // A database password that cannot be used: the database is not there.
    let closed = free_port();
    std::fs::write(
        dir.path().join("credentials.yaml"),
        format!(
            "db:\n  url: \"\"\n  host: 127.0.0.1\n  port: {closed}\n  user: museum\n  name: museum\n  password: {NUMERIC_SECRET}\n"
        ),
    )
    .unwrap();
    let output = failing_migrate(dir.path(), ("ENTE_DB_ACQUIRE_TIMEOUT", "1s"));
    assert!(output.contains("database"), "{output}");
    assert_secret_absent("a database error", &output);
    crate::helpers::Reliability {
        fault: "an unquoted numeric secret, with start-up failing on another key and on the database",
        injections: 2,
        note: "the secret appeared in none of the failures' output",
        ..Default::default()
    }
    .record();
}

/// Reads the response head of a raw HTTP/1.1 exchange on `stream`; returns the
/// status line and the body bytes that came with the head.
async fn read_head(stream: &mut tokio::net::TcpStream) -> (String, usize) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    let mut seen = Vec::new();
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before the response head");
        seen.extend_from_slice(&buf[..n]);
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).into_owned();
            let status = head.lines().next().unwrap_or_default().to_owned();
            return (status, seen.len() - end - 4);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_proxied_download_exits_within_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SIZE: usize = 64 * 1024 * 1024;
    let dir = checkout_copy();
    let (api, metrics) = (free_port(), free_port());
    let token = crate::binary::create_token(dir.path(), api, metrics, 5);
    let log = dir.path().join("serve.log");
    let child = museum(dir.path(), api, metrics)
        .env("ENTE_S3_SERVE_MODE", "proxy")
        .env("ENTE_REPLICATION_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let base = format!("http://127.0.0.1:{api}");
    wait_for_ping(&base).await;

    let (id, _) = upload(
        &reqwest::Client::new(),
        &base,
        &token,
        &crate::helpers::bytes_of(SIZE, 5),
    )
    .await;

    // A client that reads the download a kilobyte at a time.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", api))
        .await
        .unwrap();
    stream
        .write_all(
            format!(
                "GET /files/{id}/download HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (status, first) = read_head(&mut stream).await;
    assert!(status.contains(" 200 "), "{status}");
    // Slow until told otherwise; then it drains what the sockets still hold, to see
    // where the server's side ended.
    let drain = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drain_now = std::sync::Arc::clone(&drain);
    let slow_reader = tokio::spawn(async move {
        let mut received = first;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let fast = drain_now.load(std::sync::atomic::Ordering::SeqCst);
            let want = if fast { buf.len() } else { 1024 };
            match stream.read(&mut buf[..want]).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received += n,
            }
            if !fast {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let status = std::process::Command::new("kill")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let sent = Instant::now();
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break Some(exit);
        }
        if sent.elapsed() > Duration::from_secs(30) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = sent.elapsed();
    println!("shutdown: exited {took:?} after SIGTERM with a slow download in progress");
    crate::helpers::Reliability {
        fault: "SIGTERM during a slow proxied download",
        injections: 1,
        note: &match exit {
            Some(_) => format!("exited {:.1} s after the signal", took.as_secs_f64()),
            None => format!("still running {:.0} s after the signal", took.as_secs_f64()),
        },
        ..Default::default()
    }
    .record();
    let exit = exit.unwrap_or_else(|| panic!("museum still running {took:?} after SIGTERM"));
    assert!(
        took < Duration::from_secs(13),
        "the README promises about 10 s; took {took:?}"
    );
    assert!(exit.success(), "a bounded shutdown exits 0, got {exit}");
    drain.store(true, std::sync::atomic::Ordering::SeqCst);
    let received = tokio::time::timeout(Duration::from_secs(10), slow_reader)
        .await
        .expect("the cut download's connection closed")
        .unwrap();
    println!("shutdown: the slow client had received {received} of {SIZE} bytes when cut");
    assert!(
        received < SIZE,
        "the download was still in progress when the deadline cut it ({received} bytes)"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("shutdown deadline"), "{log}");
}

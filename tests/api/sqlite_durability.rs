//! SQLite durability: a commit museum acknowledges is synced to the write-ahead log
//! before the answer (`synchronous = FULL`), on pooled connections and on the key
//! writer's own. Watched from outside: the real binary runs under strace, and each
//! acknowledged write must be followed by a sync of `museum.db-wal`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::binary::{checkout_copy, create_token, free_port, museum, wait_for_ping};

/// `cmd` (the binary, its environment and folder) run under strace, which logs every
/// fsync and fdatasync with the path of the file synced to `log`.
/// museum under strace. Killing strace alone would leave museum running, detached
/// from its tracer: museum is killed first.
struct TracedMuseum(std::process::Child);

impl Drop for TracedMuseum {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn under_strace(cmd: &Command, log: &Path) -> Command {
    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(log)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        traced.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => traced.env(key, v),
            None => traced.env_remove(key),
        };
    }
    traced
}

/// How many syncs of the database's write-ahead log the trace shows so far.
fn wal_syncs(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("museum.db-wal>"))
        .count()
}

/// Waits (briefly) for the trace to show more than `before` syncs.
async fn syncs_after(log: &Path, before: usize) -> usize {
    for _ in 0..20 {
        let now = wal_syncs(log);
        if now > before {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wal_syncs(log)
}

#[tokio::test]
async fn every_acknowledged_write_is_synced_to_the_wal_first() {
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is missing: .ci/test installs it (apt-get install strace)"
    );
    let dir = checkout_copy();
    let (api, metrics) = (free_port(), free_port());
    let token = create_token(dir.path(), api, metrics, 7);
    let log = dir.path().join("strace.log");
    let mut cmd = museum(dir.path(), api, metrics);
    // Replication would commit (and sync) on its own; keep the trace to the requests.
    cmd.env("ENTE_REPLICATION_ENABLED", "false");
    let _process = TracedMuseum(
        under_strace(&cmd, &log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{api}");
    wait_for_ping(&base).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::new();

    // Issuing URLs records their keys through the key writer's own connection. Each
    // issue must sync: the first write to a fresh log syncs even without FULL.
    let mut urls = Value::Null;
    let mut unsynced = Vec::new();
    for round in 0..3 {
        let before = wal_syncs(&log);
        urls = client
            .get(format!("{base}/files/upload-urls?count=1"))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let after = syncs_after(&log, before).await;
        if after <= before {
            unsynced.push(format!(
                "issue {round} ({before} syncs before, {after} after)"
            ));
        }
    }

    // The report commits on a pooled connection.
    let url = urls["urls"][0]["url"].as_str().unwrap();
    let key = urls["urls"][0]["objectKey"].as_str().unwrap();
    let put = client.put(url).body(vec![7u8; 1000]).send().await.unwrap();
    assert_eq!(put.status(), 200);
    let before = wal_syncs(&log);
    let report = client
        .post(format!("{base}/files"))
        .header("X-Auth-Token", &token)
        .json(&json!({"file": {"objectKey": key, "size": 1000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 200, "{}", report.text().await.unwrap());
    let after_report = syncs_after(&log, before).await;
    if after_report <= before {
        unsynced.push(format!(
            "the report ({before} syncs before, {after_report} after)"
        ));
    }
    crate::helpers::Reliability {
        fault: "power cut after museum acknowledged a write, SQLite (syncs watched with strace; no power cut injected)",
        injections: 4,
        note: &format!(
            "{} of 4 acknowledged commits (3 key writes, 1 report) not synced to the WAL first",
            unsynced.len()
        ),
        ..Default::default()
    }
    .record();
    assert!(
        unsynced.is_empty(),
        "committed without syncing the WAL: {unsynced:?}"
    );
}

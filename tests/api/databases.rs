//! Which command may create a database, and what a wrong one cannot do: the real
//! binary, on the embedded default, with its database URL pointed elsewhere.

use std::process::{Output, Stdio};

use crate::binary::{
    Killed, checkout_copy, create_token, free_port, museum, upload, wait_for_ping,
};
use crate::helpers::{Reliability, fresh_postgres_db};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The scenario: objects recorded and stored, then `reconcile --apply` run
/// with `ENTE_DB_URL` naming another file. Before, it made an empty database there,
/// found every object unknown and deleted it from every tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_database_url_creates_nothing_and_deletes_nothing() {
    let dir = checkout_copy();
    let (api, metrics) = (free_port(), free_port());
    // The commands reach the buckets through the serving process's S3 port.
    let s3 = format!("127.0.0.1:{}", free_port());
    let museum = |dir: &std::path::Path, api, metrics| {
        let mut cmd = museum(dir, api, metrics);
        cmd.env("ENTE_S3_EMBEDDED_ADDRESS", &s3);
        for id in ["B2_EU_CEN", "WASABI_EU_CENTRAL_2_V3", "SCW_EU_FR_V3"] {
            cmd.env(format!("ENTE_S3_{id}_ENDPOINT"), &s3);
        }
        cmd
    };
    let token = create_token(dir.path(), api, metrics, 3);
    let child = museum(dir.path(), api, metrics)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serving = Killed(child);
    let base = format!("http://127.0.0.1:{api}");
    wait_for_ping(&base).await;
    let client = reqwest::Client::new();
    let mut keys = Vec::new();
    for i in 0..3u8 {
        keys.push(upload(&client, &base, &token, &[i; 1000]).await.1);
    }
    // Every tier holds every object before the commands run.
    let held = |key: &str| {
        ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"]
            .iter()
            .filter(|b| dir.path().join("data/s3").join(b).join(key).is_file())
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while keys.iter().any(|k| held(k) < 3) {
        assert!(std::time::Instant::now() < deadline, "copies not made");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let elsewhere = dir.path().join("elsewhere/museum.db");
    let wrong = format!("sqlite://{}", elsewhere.display());
    let mut tries = 0;
    for args in [
        &["reconcile", "--apply", "--grace", "0s"][..],
        &[
            "reconcile",
            "--apply",
            "--grace",
            "0s",
            "--allow-mass-delete",
            "b2-eu-cen",
        ],
        &["token", "create", "--user", "1"],
        &["user", "list"],
        &["replicate", "status"],
        &["scrub"],
        &["doctor"],
    ] {
        let out = museum(dir.path(), api, metrics)
            .env("ENTE_DB_URL", &wrong)
            .args(args)
            .output()
            .unwrap();
        tries += 1;
        let said = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded: {said}");
        assert!(said.contains("elsewhere/museum.db"), "{args:?}: {said}");
        assert!(
            !dir.path().join("elsewhere").exists(),
            "{args:?} made {}",
            elsewhere.display()
        );
    }
    // An empty database that does exist (a restore gone wrong): refused as no
    // museum schema, then, once migrated, as recording no object.
    std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    std::fs::write(&elsewhere, b"").unwrap();
    let out = museum(dir.path(), api, metrics)
        .env("ENTE_DB_URL", &wrong)
        .args(["reconcile", "--apply", "--grace", "0s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("museum migrate"), "{}", text(&out));
    let out = museum(dir.path(), api, metrics)
        .env("ENTE_DB_URL", &wrong)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = museum(dir.path(), api, metrics)
        .env("ENTE_DB_URL", &wrong)
        .args(["reconcile", "--apply", "--grace", "0s"])
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("deleted nothing in b2-eu-cen") && said.contains("records no object"),
        "{said}"
    );
    tries += 2;
    for key in &keys {
        assert_eq!(held(key), 3, "{key} lost a copy");
    }

    // The right database: nothing unknown, nothing refused.
    let out = museum(dir.path(), api, metrics)
        .args(["reconcile", "--apply", "--grace", "0s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lost = keys.iter().filter(|k| held(k) < 3).count();
    assert_eq!(lost, 0);
    Reliability {
        fault: "commands run with ENTE_DB_URL naming a missing, an empty or an unmigrated database (reconcile --apply, token, user, replicate, scrub, doctor)",
        injections: tries,
        checked: keys.len() * 3,
        lost,
        stuck: 0,
        across_users: None,
        note: "every command refused, naming the URL; no database file created; reconcile --apply on a migrated empty database deleted nothing and exited 1 (before the fix: an empty database created and every tier emptied)",
    }
    .record();
}

/// `museum serve` and `museum migrate` started together on a new SQLite database.
/// Before, one of them could stop with "table … already exists".
#[test]
fn two_processes_migrating_a_new_database_at_once_both_succeed() {
    for round in 0..5 {
        let dir = checkout_copy();
        let (api, metrics) = (free_port(), free_port());
        let children: Vec<_> = (0..3)
            .map(|_| {
                museum(dir.path(), api, metrics)
                    .arg("migrate")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", text(&out));
        }
    }
}

/// The README's scale-out: PostgreSQL with the embedded S3 server, from a fresh
/// clone that has no `data/` folder. Before, it stopped with "cannot prepare the
/// embedded S3 folder data/s3".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_with_the_embedded_buckets_starts_from_a_fresh_clone() {
    let dir = checkout_copy();
    assert!(!dir.path().join("data").exists());
    let url = fresh_postgres_db().await;
    let (api, metrics) = (free_port(), free_port());
    let child = museum(dir.path(), api, metrics)
        .env("ENTE_DB_URL", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let base = format!("http://127.0.0.1:{api}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("museum stopped ({exit}) on PostgreSQL with the embedded buckets: {err}");
        }
        if let Ok(r) = reqwest::get(format!("{base}/ping")).await
            && r.status() == 200
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no /ping in 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(dir.path().join("data/s3/b2-eu-cen").is_dir());
}

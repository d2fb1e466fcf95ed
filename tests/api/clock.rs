//! Instances judge each other by the database's clock. A real binary runs under
//! libfaketime with its host clock a minute ahead; the heartbeat it writes to
//! PostgreSQL must be the database's time, or a peer would count a live instance dead
//! (or a dead one live) by the skew.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::binary::{Killed, checkout_copy, free_port, museum, wait_for_ping};
use crate::helpers::{Reliability, fresh_postgres_db};

/// Where Debian's faketime package puts the library.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The heartbeats in `url`'s `instances` table, each minus the database's own now,
/// in milliseconds.
async fn beats_against_the_database(url: &str) -> Vec<i64> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(
        "SELECT heartbeat_at - CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) FROM instances",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<i64, _>(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_clock_is_a_minute_ahead_beats_by_the_databases_clock() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "libfaketime is missing: .ci/test installs it (apt install faketime)"
    );
    let dir = checkout_copy();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let url = fresh_postgres_db().await;
    let (api, metrics) = (free_port(), free_port());
    let child = museum(dir.path(), api, metrics)
        .env("ENTE_DB_URL", &url)
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME", "+60s")
        // Timers and timeouts run on the monotonic clock, which stays true.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let mut stderr = child.0.stderr.take().unwrap();
    wait_for_ping(&format!("http://127.0.0.1:{api}")).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut beats = Vec::new();
    let mut tries = 0;
    while Instant::now() < deadline {
        beats = beats_against_the_database(&url).await;
        tries += 1;
        if !beats.is_empty() && tries > 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    drop(child);
    assert_eq!(beats.len(), 1, "one instance: {beats:?}");
    let skew = beats[0];
    assert!(
        skew.abs() < 5_000,
        "the heartbeat is {skew} ms off the database's clock (the host is 60 000 ms ahead)"
    );
    // The faked clock was in effect: museum saw the offset and said so.
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut logs).unwrap();
    assert!(logs.contains("off the database server's"), "{logs}");
    Reliability {
        fault: "an instance whose host clock is 60 s ahead (libfaketime), on PostgreSQL",
        injections: tries,
        checked: 0,
        lost: 0,
        stuck: 0,
        across_users: None,
        note: &format!("heartbeat {skew} ms off the database's clock"),
    }
    .record();
}

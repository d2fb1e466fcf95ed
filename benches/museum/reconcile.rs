//! `museum reconcile` over 100,000 objects in the hot bucket, most of them known to
//! the database: its peak memory against the same over 10,000 (it works a page at a
//! time, so it should stay flat), and its time against rclone listing the same
//! bucket (`rclone lsf -R`, the faster of folder by folder and `--fast-list`); a
//! bare listing of the 10,000 through museum's own client is in the notes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use sqlx::{Connection, SqliteConnection};

use crate::harness::{Env, bytes_of, have_rclone, museum_cli, prepare, rclone_remote, wait_child};
use crate::report::{Figure, Target, record};

/// The two sizes of the bucket.
const SMALL: usize = 10_000;
const LARGE: usize = 100_000;
/// Each object's bytes.
const SIZE: usize = 1024;
/// One object in this many has no record: reconcile's unknown keys.
const UNKNOWN_EVERY: usize = 10;
/// The hot bucket, where the objects are put.
const HOT: &str = "b2-eu-cen";

/// What one reconcile over `objects` objects measured.
struct Run {
    objects: usize,
    put_secs: f64,
    secs: f64,
    peak_mib: f64,
    /// The same listing through museum's bucket client, with nothing else done
    /// (over 10,000 objects only).
    bare_secs: Option<f64>,
    /// `rclone lsf -R`, the faster way.
    rclone_secs: Option<f64>,
}

pub async fn run(env: &Env, figures: &mut Vec<Figure>, notes: &mut Vec<String>) {
    let small = reconcile_over(env, SMALL, true).await;
    let large = reconcile_over(env, LARGE, false).await;
    for r in [&small, &large] {
        let per_s = |secs: f64| r.objects as f64 / secs;
        let bare = r.bare_secs.map_or(String::new(), |s| {
            format!(
                "; the same bucket listed bare through museum's client {s:.2} s ({:.0} objects/s)",
                per_s(s)
            )
        });
        let rclone = r.rclone_secs.map_or(String::new(), |s| {
            format!(
                "; rclone lsf -R at best {s:.2} s ({:.0} objects/s)",
                per_s(s)
            )
        });
        notes.push(format!(
            "reconcile over {} objects of {SIZE} B in {HOT}, 1 in {UNKNOWN_EVERY} unknown to the database (putting \
             them took {:.1} s, {:.0} objects/s): {:.2} s ({:.0} objects/s), peak RSS {:.1} MiB{bare}{rclone}",
            r.objects,
            r.put_secs,
            per_s(r.put_secs),
            r.secs,
            per_s(r.secs),
            r.peak_mib,
        ));
    }
    record(
        figures,
        Figure {
            name: "reconcile_rss_100k_vs_10k",
            what: format!(
                "peak RSS {:.1} MiB over 100,000 objects / {:.1} MiB over 10,000",
                large.peak_mib, small.peak_mib
            ),
            value: large.peak_mib / small.peak_mib,
            target: Target::AtMost(1.25),
        },
    );
    match large.rclone_secs {
        Some(rclone) => record(
            figures,
            Figure {
                name: "reconcile_vs_rclone_listing",
                what: format!(
                    "rclone lsf -R at best {rclone:.2} s / reconcile {:.2} s, 100,000 objects",
                    large.secs
                ),
                value: rclone / large.secs,
                target: Target::AtLeast(0.5),
            },
        ),
        None => notes.push(
            "rclone is not installed: reconcile_vs_rclone_listing not measured (apt-get install rclone)"
                .to_owned(),
        ),
    }
}

/// The `i`th object's key: a user's folder and an ID shaped like museum's.
fn key(i: usize) -> String {
    format!("{}/{i:08x}-0000-4000-8000-{i:012x}", 100 + i % 100)
}

/// Puts `count` objects in the hot bucket of a fresh museum, records all but one in
/// `UNKNOWN_EVERY`, and measures a reconcile, rclone's listing of them and, with
/// `bare`, a bare listing.
async fn reconcile_over(env: &Env, count: usize, bare: bool) -> Run {
    let name = format!("reconcile-{}k", count / 1000);
    eprintln!("bench: reconcile over {count} objects");
    for s in &env.servers {
        s.wipe_all();
    }
    let dir = prepare(env, &name);
    let hot = env.buckets.get(HOT).unwrap();
    let start = Instant::now();
    futures_util::stream::iter((0..count).map(|i| async move {
        let body = bytes::Bytes::from(bytes_of(SIZE, i));
        hot.put_object(&key(i), vec![body]).await.unwrap();
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    let put_secs = start.elapsed().as_secs_f64();
    eprintln!("bench: {count} objects put in {put_secs:.1} s");

    // The records, in one transaction, as if reported long ago.
    let mut conn =
        SqliteConnection::connect(&format!("sqlite://{}", dir.join("museum.db").display()))
            .await
            .unwrap();
    let mut tx = conn.begin().await.unwrap();
    let known: Vec<usize> = (0..count).filter(|i| i % UNKNOWN_EVERY != 0).collect();
    for chunk in known.chunks(1000) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO objects (object_key, user_id, bucket_id, size, created_at) ",
        );
        insert.push_values(chunk, |mut row, i| {
            row.push_bind(key(*i))
                .push_bind((100 + i % 100) as i64)
                .push_bind(HOT)
                .push_bind(SIZE as i64)
                .push_bind(1_i64);
        });
        insert.build().execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    conn.close().await.unwrap();

    let out_path = dir.join("reconcile.out");
    let mut cmd = museum_cli(env, &name);
    cmd.args(["reconcile", "--json", "--grace", "0s"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(dir.join("reconcile.log")).unwrap());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let (status, peak_mib) = wait_sampling_peak(&mut child).await;
    let secs = start.elapsed().as_secs_f64();
    assert!(status.success(), "museum reconcile failed: {status}");
    eprintln!("bench: reconcile over {count} objects took {secs:.2} s, peak RSS {peak_mib:.1} MiB");
    let out = std::fs::read_to_string(&out_path).unwrap();
    let summary: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let report = &summary["report"];
    let hot_summary = report["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["bucket"] == HOT)
        .unwrap();
    assert_eq!(
        hot_summary["listed"], count,
        "reconcile listed every object"
    );
    assert_eq!(
        hot_summary["unknown"],
        count.div_ceil(UNKNOWN_EVERY),
        "reconcile found the objects with no record"
    );
    assert_eq!(report["missing"], 0, "every record's object was listed");

    let bare_secs = if bare {
        let start = Instant::now();
        let listed = hot.list().count().await;
        assert_eq!(listed, count, "the bare listing listed every object");
        Some(start.elapsed().as_secs_f64())
    } else {
        None
    };
    let rclone_secs = if have_rclone() {
        Some(rclone_list(env, &dir, count).await)
    } else {
        None
    };
    if let Some(s) = bare_secs {
        eprintln!("bench: a bare listing took {s:.2} s");
    }
    if let Some(s) = rclone_secs {
        eprintln!("bench: rclone lsf -R took {s:.2} s");
    }
    for s in &env.servers {
        s.wipe_all();
    }
    Run {
        objects: count,
        put_secs,
        secs,
        peak_mib,
        bare_secs,
        rclone_secs,
    }
}

/// Waits for `child`, reading its peak RSS (VmHWM) every 10 ms; returns its exit
/// status and the last peak read, in MiB.
async fn wait_sampling_peak(child: &mut std::process::Child) -> (std::process::ExitStatus, f64) {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0.0;
    loop {
        // An exited child still unwaited is a zombie, whose status has no VmHWM.
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        {
            peak_kib = kib;
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak_kib / 1024.0);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Times `rclone lsf -R` of the hot bucket, folder by folder and with one recursive
/// listing (`--fast-list`), checks each listed `count` objects, and returns the
/// faster.
async fn rclone_list(env: &Env, dir: &std::path::Path, count: usize) -> f64 {
    let mut best = f64::INFINITY;
    for fast_list in [false, true] {
        let out_path = dir.join("rclone-lsf.out");
        let mut cmd = Command::new("rclone");
        cmd.env_remove("AWS_CA_BUNDLE");
        rclone_remote(&mut cmd, "hot", &env.servers[0]);
        cmd.args(["lsf", "-R", "--files-only", &format!("hot:{HOT}")]);
        if fast_list {
            cmd.arg("--fast-list");
        }
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(dir.join("rclone-lsf.log")).unwrap());
        let start = Instant::now();
        let status = wait_child(&mut cmd.spawn().unwrap()).await;
        let secs = start.elapsed().as_secs_f64();
        assert!(status.success(), "rclone lsf failed: {status}");
        let listed = std::fs::read_to_string(&out_path).unwrap().lines().count();
        assert_eq!(
            listed, count,
            "rclone listed every object (--fast-list {fast_list})"
        );
        eprintln!("bench: rclone lsf -R (--fast-list {fast_list}) took {secs:.2} s");
        best = best.min(secs);
    }
    best
}

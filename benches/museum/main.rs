//! `cargo bench --bench museum`: museum against rclone, a raw GET→PUT stream and a
//! bare axum handler, all measured in this run on loopback. Prints a table, then one
//! `ratio NAME VALUE` line per figure, and rewrites BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backlog;
mod flood;
mod harness;
mod import;
mod lag;
mod presign;
mod reconcile;
mod replication;
mod report;
mod rss;
mod scrub;
mod small;
mod small_backlog;

use std::time::Instant;

use harness::{Museum, start_servers, work_dir};

fn main() {
    if let Ok(port) = std::env::var("MUSEUM_BENCH_BARE_AXUM") {
        presign::bare_axum(port.parse().unwrap());
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    if std::env::var_os("RUST_LOG").is_some() {
        museum::observe::telemetry::init(Some(museum::config::LogFormat::Pretty), None);
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

    // One museum serves the first three phases; the lag phase counts the
    // replication phase's objects among those already copied.
    let m = Museum::start(&env, "main");
    m.ready().await;
    let token = m.token(&env, "main", 1);
    let mut objects = Vec::new();
    if wants("replication") {
        objects = replication::run(&env, &m, &token, &mut figures, &mut notes).await;
    }
    if wants("lag") {
        lag::run(&env, &m, &token, &objects, &mut figures).await;
    }
    if wants("presign") {
        presign::run(&m, &token, &mut figures, &mut notes).await;
    }
    drop(m);
    for s in &env.servers {
        s.wipe();
    }

    if wants("flood") {
        flood::run(&env, &mut figures, &mut notes).await;
    }
    if wants("small") {
        small::run(&env, &mut figures, &mut notes).await;
    }
    if wants("small-backlog") {
        small_backlog::run(&env, &mut figures, &mut notes).await;
    }
    if wants("backlog") {
        backlog::run(&env, &mut figures).await;
    }
    if wants("scrub") {
        scrub::run(&env, &mut figures, &mut notes).await;
    }
    if wants("reconcile") {
        reconcile::run(&env, &mut figures, &mut notes).await;
    }
    if wants("import") {
        import::run(&env, &mut figures, &mut notes).await;
    }
    if wants("rss") {
        rss::run(&env, &mut figures).await;
    }
    // The servers' files live in memory (/dev/shm) where it exists.
    let _ = std::fs::remove_dir_all(&dir);
    report::report(&figures, &notes, started.elapsed(), only.is_none());
}

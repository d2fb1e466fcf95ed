//! Stalls, crashes and takeovers: a bucket that accepts a request and then goes
//! silent, a museum that dies with copies in flight, a slow copy that must keep its
//! lease, and multipart uploads cut short. Each fault test records its
//! RELIABILITY.md row.

use std::time::{Duration, Instant};

use museum::config::{HumanDuration, Settings};
use museum::db::copies::{CopyState, list_copies};
use museum::replication::Outcome;

use crate::faults::{FaultProxy, Mode};
use crate::helpers::{
    Engine, PART_SIZE, S3Server, Sibling, TestApp, bytes_of, put, spawn_app, spawn_app_with,
};
use crate::on_both_databases;
use crate::reliability::{count_losses, drain_until_done, record};

on_both_databases!(
    a_dead_instance_s_copies_are_taken_over_within_ten_seconds,
    a_slow_but_live_copy_is_never_taken_over,
    a_worker_killed_mid_multipart_copy_leaves_no_upload_behind,
);

const MIB: usize = 1024 * 1024;
const TARGETS: [&str; 2] = ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"];

/// The random part of an object key, which every request path for it contains.
fn uuid_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap()
}

/// Whether every copy of every object in `ids` is done.
async fn all_done(app: &TestApp, ids: &[i64]) -> bool {
    for id in ids {
        if !app
            .copies(*id)
            .await
            .iter()
            .all(|c| c.state == CopyState::Done)
        {
            return false;
        }
    }
    true
}

/// Waits until every copy of `ids` is done, or `limit` passes; returns how long it took.
/// Runs `workers` replication workers that look for work every 100 ms.
fn replicating(s: &mut Settings, workers: u32) {
    s.replication.enabled = true;
    s.replication.worker_count = workers;
    s.replication.poll_interval = HumanDuration(Duration::from_millis(100));
}

async fn wait_all_done(app: &TestApp, ids: &[i64], limit: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit && !all_done(app, ids).await {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_bucket_holds_no_worker_past_its_idle_timeout() {
    const WORKERS: u32 = 2;
    const OTHERS: usize = 20;
    let idle = Duration::from_secs(1);
    let mut app = spawn_app(Engine::Sqlite).await;
    let source = FaultProxy::start(app.server("b2-eu-cen").addr, Mode::Pass).await;
    let cold = FaultProxy::start(app.server("wasabi-eu-central-2-v3").addr, Mode::Pass).await;
    app.restart_with(|s| {
        s.s3.b2_eu_cen.endpoint = Some(format!("http://{}", source.addr));
        s.s3.wasabi_eu_central_2_v3.endpoint = Some(format!("http://{}", cold.addr));
        s.s3.idle_timeout = HumanDuration(idle);
        s.replication.enabled = true;
        s.replication.worker_count = WORKERS;
        s.replication.poll_interval = HumanDuration(Duration::from_millis(100));
        s.replication.retry.initial = HumanDuration(Duration::from_millis(500));
        s.replication.retry.max = HumanDuration(Duration::from_secs(2));
    })
    .await;
    let token = app.token_for(1).await;

    // Three copies meet a bucket that goes silent: a source read, a target's PUT and
    // a target's part upload. That is more stalls than workers.
    let mut objects = Vec::new();
    let mut watchers = Vec::new();
    for (i, size) in [1000, 2000, PART_SIZE as usize + 1].into_iter().enumerate() {
        let bytes = bytes_of(size, i as u8);
        let (key, url) = app.upload_url(&token).await;
        assert_eq!(put(&url, bytes.clone(), None).await, 200);
        match i {
            0 => source.stall(http::Method::GET, uuid_of(&key)),
            _ => cold.stall(http::Method::PUT, uuid_of(&key)),
        }
        let a = app.report(&token, &key, size as u64).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let id = a.body["file"]["id"].as_i64().unwrap();
        objects.push((id, key, bytes));
        // From its claim to its return to the queue with an error.
        let db = app.state.db.clone();
        watchers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut claimed = None;
            while Instant::now() < deadline {
                let copies = list_copies(&db, id).await.unwrap();
                if claimed.is_none() && copies.iter().any(|c| c.state == CopyState::Copying) {
                    claimed = Some(Instant::now());
                }
                if let Some(at) = claimed
                    && copies.iter().any(|c| c.last_error.is_some())
                {
                    return Some(at.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        }));
    }

    // Everything else goes on while the stalls hold.
    let stall_began = Instant::now();
    let mut others = Vec::new();
    for i in 0..OTHERS {
        let bytes = bytes_of(3000 + i, 100 + i as u8);
        let (id, key) = app.upload(&token, &bytes).await;
        others.push(id);
        objects.push((id, key, bytes));
    }
    let limit = Duration::from_secs(20);
    wait_all_done(&app, &others, limit.saturating_sub(stall_began.elapsed())).await;
    let others_took = stall_began.elapsed();
    let mut others_done = 0;
    for id in &others {
        others_done += app
            .copies(*id)
            .await
            .iter()
            .filter(|c| c.state == CopyState::Done)
            .count();
    }
    let mut retried_after = Vec::new();
    for w in watchers {
        retried_after.push(w.await.unwrap());
    }

    // Then the bucket answers again, and the stalled copies go through.
    source.lift_stalls();
    cold.lift_stalls();
    let ids: Vec<i64> = objects.iter().map(|o| o.0).collect();
    wait_all_done(&app, &ids, Duration::from_secs(30)).await;
    let after = count_losses(&app, &objects).await;
    let retried: Vec<String> = retried_after
        .iter()
        .map(|d| d.map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())))
        .collect();
    record(
        "a bucket accepts requests and goes silent (GET, PUT, part upload)",
        retried_after.len(),
        &after,
        &format!(
            "{others_done} of {} other copies verified during the stall, in {:.1} s; \
             stalled copies back in the queue {} after their claim (s3.idle-timeout 1 s)",
            2 * OTHERS,
            others_took.as_secs_f64(),
            retried.join(", ")
        ),
    );
    assert_eq!(others_done, 2 * OTHERS, "the stalls held up other copies");
    for (i, d) in retried_after.iter().enumerate() {
        assert!(
            d.is_some_and(|d| d <= idle + Duration::from_secs(2)),
            "stalled copy {i} was not retried within its idle timeout: {retried:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_bytes_stop_moving_loses_its_lease() {
    // s3.idle-timeout stays at its 30 s default: here the lease alone must act.
    let mut app = spawn_app(Engine::Sqlite).await;
    let lease = app.settings.replication.lease.get();
    let source = FaultProxy::start(app.server("b2-eu-cen").addr, Mode::Pass).await;
    app.restart_with(|s| s.s3.b2_eu_cen.endpoint = Some(format!("http://{}", source.addr)))
        .await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(4000, 9);
    let (key, url) = app.upload_url(&token).await;
    assert_eq!(put(&url, bytes.clone(), None).await, 200);
    source.stall(http::Method::GET, uuid_of(&key));
    let a = app.report(&token, &key, bytes.len() as u64).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.body["file"]["id"].as_i64().unwrap();

    let stuck = app.worker("stuck");
    let pass = tokio::spawn(async move { stuck.run_once().await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app
        .copies(id)
        .await
        .iter()
        .all(|c| c.state == CopyState::Copying)
    {
        assert!(Instant::now() < deadline, "the copy never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while source.stalled() == 0 {
        assert!(
            Instant::now() < deadline,
            "the read never reached the bucket"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let claimed = Instant::now();
    // The read in hand stays stalled; a new one would go through.
    source.lift_stalls();
    let rescuer = app.worker("rescuer");
    let took = loop {
        match rescuer.run_once().await.unwrap() {
            Outcome::Copied { done, .. } => {
                assert_eq!(done, 2);
                break claimed.elapsed();
            }
            Outcome::Idle => {
                assert!(
                    claimed.elapsed() < Duration::from_secs(15),
                    "the stalled copy kept its lease"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    pass.abort();
    assert!(
        took <= lease + Duration::from_secs(2),
        "the stalled copy was taken over only after {took:?} (lease {lease:?})"
    );
    for bucket in TARGETS {
        assert_eq!(app.server(bucket).object(&key).as_deref(), Some(&bytes[..]));
    }
}

async fn a_dead_instance_s_copies_are_taken_over_within_ten_seconds(engine: Engine) {
    const OBJECTS: usize = 4;
    // The default lease: a takeover must not wait for it to run out.
    let mut app = spawn_app_with(engine, |s| {
        s.replication.lease = HumanDuration(Duration::from_secs(60));
    })
    .await;
    let token = app.token_for(1).await;
    // The doomed instance reads its sources slowly, so its copies are in flight
    // when it dies.
    let trickle = FaultProxy::start(app.server("b2-eu-cen").addr, Mode::Trickle).await;
    let mut settings = app.settings.clone();
    settings.s3.b2_eu_cen.endpoint = Some(format!("http://{}", trickle.addr));
    replicating(&mut settings, 2);
    let mut doomed = Sibling::start(settings).await;

    // Uploaded first and reported together, so that the copies start together.
    let mut uploaded = Vec::new();
    for i in 0..OBJECTS {
        let bytes = bytes_of(3 * MIB + i, i as u8);
        let (key, url) = app.upload_url(&token).await;
        assert_eq!(put(&url, bytes.clone(), None).await, 200);
        uploaded.push((key, bytes));
    }
    let mut objects = Vec::new();
    for (key, bytes) in uploaded {
        let a = app.report(&token, &key, bytes.len() as u64).await;
        assert_eq!(a.status, 200, "{}", a.body);
        objects.push((a.body["file"]["id"].as_i64().unwrap(), key, bytes));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        let mut held = Vec::new();
        for (id, _, _) in &objects {
            if app
                .copies(*id)
                .await
                .iter()
                .any(|c| c.state == CopyState::Copying)
            {
                held.push(*id);
            }
        }
        if held.len() == OBJECTS {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "the doomed instance never claimed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Another instance runs workers of its own; then the first dies mid-copy.
    app.restart_with(|s| replicating(s, 2)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut in_flight = Vec::new();
    for id in held {
        if app
            .copies(id)
            .await
            .iter()
            .all(|c| c.state == CopyState::Copying && c.attempts == 1)
        {
            in_flight.push(id);
        }
    }
    let mut seen = Vec::new();
    for (id, _, _) in &objects {
        seen.push(app.copies(*id).await);
    }
    assert!(
        !in_flight.is_empty(),
        "the dead instance's copies all finished before it died: {seen:#?}"
    );
    doomed.kill();
    let took = wait_all_done(&app, &in_flight, Duration::from_secs(30)).await;

    let ids: Vec<i64> = objects.iter().map(|o| o.0).collect();
    wait_all_done(&app, &ids, Duration::from_secs(30)).await;
    let after = count_losses(&app, &objects).await;
    record(
        &format!("museum instance killed with copies in flight, another takes over ({engine:?})"),
        1,
        &after,
        &format!(
            "the dead instance's {} copies verified by the other {:.1} s after the kill \
             (replication.lease 60 s)",
            2 * in_flight.len(),
            took.as_secs_f64()
        ),
    );
    assert!(
        took <= Duration::from_secs(10),
        "the dead instance's copies were taken over after {took:?}"
    );
}

async fn a_slow_but_live_copy_is_never_taken_over(engine: Engine) {
    let mut app = spawn_app(engine).await;
    let lease = app.settings.replication.lease.get();
    let token = app.token_for(1).await;
    let trickle = FaultProxy::start(app.server("b2-eu-cen").addr, Mode::Trickle).await;
    let mut settings = app.settings.clone();
    settings.s3.b2_eu_cen.endpoint = Some(format!("http://{}", trickle.addr));
    replicating(&mut settings, 1);
    let _slow = Sibling::start(settings).await;

    // About 8 s at the trickle's pace: four leases, and longer than an instance's
    // heartbeat may go missing.
    let bytes = bytes_of(5 * MIB, 7);
    let started = Instant::now();
    let (id, _key) = app.upload(&token, &bytes).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app
        .copies(id)
        .await
        .iter()
        .all(|c| c.state == CopyState::Copying)
    {
        assert!(Instant::now() < deadline, "the slow instance never claimed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another instance looks for work all along.
    app.restart_with(|s| replicating(s, 2)).await;
    wait_all_done(&app, &[id], Duration::from_secs(60)).await;
    let took = started.elapsed();

    let copies = app.copies(id).await;
    assert!(
        copies
            .iter()
            .all(|c| c.state == CopyState::Done && c.attempts == 1),
        "the slow copy was taken over (or never finished): {copies:?}"
    );
    assert!(
        took > 3 * lease,
        "the copy was not slow enough to prove anything: {took:?}"
    );
}

/// The upload IDs of the multipart uploads open on an s3s-fs server.
fn open_uploads(server: &S3Server) -> Vec<String> {
    std::fs::read_dir(&server.root)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix(".upload-")
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_owned)
        })
        .collect()
}

/// The part files an s3s-fs server keeps for upload `upload_id`.
fn parts_of(server: &S3Server, upload_id: &str) -> usize {
    let prefix = format!(".upload_id-{upload_id}.part-");
    std::fs::read_dir(&server.root)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .count()
}

/// Every file an s3s-fs server keeps for unfinished multipart uploads.
fn upload_leftovers(server: &S3Server) -> usize {
    std::fs::read_dir(&server.root)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".upload")
        })
        .count()
}

async fn a_worker_killed_mid_multipart_copy_leaves_no_upload_behind(engine: Engine) {
    const KILLS: usize = 3;
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(8 * PART_SIZE as usize + 5, 11);
    let (id, key) = app.upload(&token, &bytes).await;

    let mut seen: Vec<String> = Vec::new();
    for kill in 0..KILLS {
        // Once the lease of the attempt before lapses, a worker starts again and is
        // killed as soon as each target holds a part of its new upload.
        let worker = app.worker(&format!("doomed-{kill}"));
        let pass = tokio::spawn(async move {
            loop {
                match worker.run_once().await.unwrap() {
                    Outcome::Idle => tokio::time::sleep(Duration::from_millis(50)).await,
                    other => return other,
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let fresh: Vec<String> = TARGETS
                .iter()
                .filter_map(|t| {
                    let server = app.server(t);
                    open_uploads(server)
                        .into_iter()
                        .find(|u| !seen.contains(u) && parts_of(server, u) > 0)
                })
                .collect();
            if fresh.len() == TARGETS.len() {
                seen.extend(fresh);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "attempt {kill} never got a part into every target"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        pass.abort();
        let _ = pass.await;
    }
    drain_until_done(&app, &[id], Duration::from_secs(30)).await;

    let left: usize = TARGETS
        .iter()
        .map(|t| upload_leftovers(app.server(t)))
        .sum();
    let after = count_losses(&app, &[(id, key, bytes)]).await;
    record(
        &format!("worker killed mid multipart copy ({engine:?})"),
        KILLS,
        &after,
        &format!("files of unfinished multipart uploads left on the targets: {left}"),
    );
    assert_eq!(
        left, 0,
        "the killed attempts' uploads are still open on the targets"
    );
}

/// Starts a trickled source (about 640 KiB/s) for the app's own workers.
async fn trickled(app: &mut TestApp) -> FaultProxy {
    let trickle = FaultProxy::start(app.server("b2-eu-cen").addr, Mode::Trickle).await;
    app.restart_with(|s| s.s3.b2_eu_cen.endpoint = Some(format!("http://{}", trickle.addr)))
        .await;
    trickle
}

/// Waits until every copy of `id` is claimed.
async fn wait_copying(app: &TestApp, id: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app
        .copies(id)
        .await
        .iter()
        .all(|c| c.state == CopyState::Copying)
    {
        assert!(Instant::now() < deadline, "the copy never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A worker whose lease another one took must stop writing at its next renewal.
/// Before, its heartbeat ignored a renewal that updated no row, and the copy went on
/// to the end beside the new holder ("zombie writer").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_lease_was_taken_stops_writing() {
    let mut app = spawn_app(Engine::Sqlite).await;
    let lease = app.settings.replication.lease.get();
    let _trickle = trickled(&mut app).await;
    let token = app.token_for(1).await;
    // About 6 s at the trickle's pace, three leases.
    let bytes = bytes_of(4 * MIB, 3);
    let (key, url) = app.upload_url(&token).await;
    assert_eq!(put(&url, bytes.clone(), None).await, 200);
    let a = app.report(&token, &key, bytes.len() as u64).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.body["file"]["id"].as_i64().unwrap();

    let zombie = app.worker("zombie");
    let pass = tokio::spawn(async move { zombie.run_once().await });
    wait_copying(&app, id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another worker takes the copies over (as after a lease that ran out while
    // this one's instance looked dead).
    sqlx::query("UPDATE object_copies SET lease_owner = 'thief' WHERE object_id = $1")
        .bind(id)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let taken = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(20), pass)
        .await
        .expect("the pass ends")
        .unwrap()
        .unwrap();
    let stopped = taken.elapsed();
    assert!(
        matches!(outcome, Outcome::Copied { done: 0, .. }),
        "{outcome:?}"
    );
    assert!(
        stopped <= lease / 3 + Duration::from_millis(1500),
        "the copy went on for {stopped:?} after its lease was taken (renewal every {:?})",
        lease / 3
    );
    for bucket in TARGETS {
        assert!(
            app.server(bucket).object(&key).is_none(),
            "the worker that lost its lease wrote {key} to {bucket}"
        );
    }
    let copies = app.copies(id).await;
    assert!(
        copies.iter().all(|c| c.state == CopyState::Copying),
        "{copies:?}"
    );
    crate::helpers::Reliability {
        fault: "a copy's lease taken by another worker mid-copy",
        injections: 1,
        checked: 0,
        lost: 0,
        stuck: 0,
        across_users: None,
        note: &format!(
            "the old holder stopped {} ms after, writing nothing (before: it wrote on to the end)",
            stopped.as_millis()
        ),
    }
    .record();
}

/// A copy that waits for `replication.memory-limit`, held by another copy of the
/// process, keeps its lease. Before, its heartbeat saw no byte move and let the lease
/// lapse, so another worker took the copy over and aborted its upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_waiting_for_memory_keeps_its_lease() {
    let mut app = spawn_app(Engine::Sqlite).await;
    let lease = app.settings.replication.lease.get();
    let _trickle = trickled(&mut app).await;
    let token = app.token_for(1).await;
    // One part each (below PART_SIZE); the budget holds one of them at a time, and
    // the first takes about 5 s to read at the trickle's pace.
    let memory = museum::replication::copy::Memory::new(4 * MIB as u64);
    let (mut ids, mut stored) = (Vec::new(), Vec::new());
    for i in 0..2u8 {
        let bytes = bytes_of(3 * MIB, 20 + i);
        let (key, url) = app.upload_url(&token).await;
        stored.push((key.clone(), bytes.clone()));
        assert_eq!(put(&url, bytes.clone(), None).await, 200);
        let a = app.report(&token, &key, bytes.len() as u64).await;
        assert_eq!(a.status, 200, "{}", a.body);
        ids.push(a.body["file"]["id"].as_i64().unwrap());
    }
    let first = app.worker("first").sharing_memory(memory.clone());
    let first = tokio::spawn(async move { first.run_once().await });
    wait_copying(&app, ids[0]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = app.worker("second").sharing_memory(memory);
    let second = tokio::spawn(async move { second.run_once().await });
    wait_copying(&app, ids[1]).await;

    // While the second waits for memory, a worker of its own memory looks for work
    // for longer than a lease: there must be none.
    let rescuer = app.worker("rescuer");
    let watched = Instant::now();
    let mut polls = 0;
    while watched.elapsed() < lease + lease / 2 {
        let outcome = rescuer.run_once().await.unwrap();
        polls += 1;
        assert!(
            matches!(outcome, Outcome::Idle),
            "a copy waiting for memory was taken over after {:?}: {outcome:?}",
            watched.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for pass in [first, second] {
        let outcome = tokio::time::timeout(Duration::from_secs(30), pass)
            .await
            .expect("the copy ends")
            .unwrap()
            .unwrap();
        assert!(
            matches!(outcome, Outcome::Copied { done: 2, .. }),
            "{outcome:?}"
        );
    }
    let copies = app.copies(ids[1]).await;
    assert!(
        copies
            .iter()
            .all(|c| c.state == CopyState::Done && c.attempts == 1),
        "{copies:?}"
    );
    let mut checked = 0;
    for (key, bytes) in &stored {
        for bucket in TARGETS {
            assert_eq!(app.server(bucket).object(key).as_deref(), Some(&bytes[..]));
            checked += 1;
        }
    }
    crate::helpers::Reliability {
        fault: "a copy waiting for replication.memory-limit held by another copy",
        injections: polls,
        checked,
        lost: 0,
        stuck: 0,
        across_users: None,
        note: "no takeover in 1.5 leases of polling; the waiting copy finished on its first attempt",
    }
    .record();
}

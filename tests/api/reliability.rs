//! Faults during replication: a target down for a minute, the primary down mid-copy,
//! the database taken away, a full disk. After each, every reported object must be
//! byte-identical in every present bucket, and nothing marked done unverified.
//! Each test prints a `reliability:` line that `.ci/test` collects into RELIABILITY.md.

use std::time::{Duration, Instant};

use museum::config::HumanDuration;
use museum::db::copies::CopyState;
use museum::replication::Outcome;

use crate::faults::{FaultProxy, Mode, TcpCut};
use crate::helpers::{Engine, PART_SIZE, TestApp, bytes_of, spawn_app, spawn_app_with};

const BUCKETS: [&str; 3] = ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"];

/// What a fault left behind: (object, bucket) pairs compared byte for byte, objects
/// missing or different in some bucket, and copies not done and verified.
#[derive(Debug, Default)]
pub(crate) struct Aftermath {
    pub(crate) checked: usize,
    pub(crate) lost: usize,
    pub(crate) stuck: usize,
}

/// Counts, from the buckets' bytes and the queue, what `objects` lost.
pub(crate) async fn count_losses(app: &TestApp, objects: &[(i64, String, Vec<u8>)]) -> Aftermath {
    let mut after = Aftermath::default();
    for (id, key, bytes) in objects {
        let mut intact = true;
        for bucket in BUCKETS {
            intact &= app.server(bucket).object(key).as_deref() == Some(bytes.as_slice());
            after.checked += 1;
        }
        after.lost += usize::from(!intact);
        after.stuck += app
            .copies(*id)
            .await
            .iter()
            .filter(|c| c.state != CopyState::Done || c.verified_size != Some(bytes.len() as i64))
            .count();
    }
    after
}

/// Records the fault's row from what it left behind, then requires that it lost
/// nothing and left nothing stuck.
pub(crate) fn record(fault: &str, injections: usize, after: &Aftermath, note: &str) {
    crate::helpers::Reliability {
        fault,
        injections,
        checked: after.checked,
        lost: after.lost,
        stuck: after.stuck,
        across_users: None,
        note,
    }
    .record();
    assert_eq!(after.lost, 0, "{fault}: objects lost");
    assert_eq!(after.stuck, 0, "{fault}: copies stuck");
}

/// Drives workers until every copy is done or `limit` passes.
pub(crate) async fn drain_until_done(app: &TestApp, ids: &[i64], limit: Duration) -> usize {
    let worker = app.worker("reliability");
    let deadline = Instant::now() + limit;
    let mut failed_attempts = 0;
    loop {
        match worker.run_once().await.unwrap() {
            Outcome::Copied { failed, .. } => failed_attempts += failed,
            Outcome::Idle => {
                let mut all = true;
                for id in ids {
                    all &= app
                        .copies(*id)
                        .await
                        .iter()
                        .all(|c| c.state == CopyState::Done);
                }
                if all {
                    return failed_attempts;
                }
                assert!(Instant::now() < deadline, "copies never completed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Whether every one of `objects` has its copy to `bucket` done.
async fn all_done_in(app: &TestApp, objects: &[(i64, String, Vec<u8>)], bucket: &str) -> bool {
    for (id, _, _) in objects {
        let copies = app.copies(*id).await;
        if !copies
            .iter()
            .any(|c| c.bucket_id == bucket && c.state == CopyState::Done)
        {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_down_for_a_minute_catches_up_when_it_returns() {
    let app = spawn_app_with(Engine::Sqlite, |s| {
        s.replication.retry.initial = HumanDuration(Duration::from_millis(500));
        s.replication.retry.max = HumanDuration(Duration::from_secs(4));
    })
    .await;
    let token = app.token_for(1).await;
    app.server("scw-eu-fr-v3").stop();
    let outage = Instant::now();
    let mut objects = Vec::new();
    let worker = app.worker("w");
    let mut failed = 0;
    // The outage lasts a minute at least, and until all 20 objects are uploaded, have
    // failed their copies to the target and reached the cold bucket: on a loaded
    // machine the uploads alone can take most of the minute.
    let cap = Duration::from_secs(180);
    loop {
        if objects.len() < 20 {
            let bytes = bytes_of(10_000 + objects.len(), objects.len() as u8);
            let (id, key) = app.upload(&token, &bytes).await;
            objects.push((id, key, bytes));
        }
        // One round of what is due per upload: with every copy to the target failing
        // and retried, one may always be due when attempts are slow, and draining
        // the queue here would hold the uploads back.
        if let Outcome::Copied { failed: f, .. } = worker.run_once().await.unwrap() {
            failed += f;
        }
        if objects.len() == 20
            && outage.elapsed() >= Duration::from_secs(60)
            && failed >= objects.len()
            && all_done_in(&app, &objects, "wasabi-eu-central-2-v3").await
        {
            break;
        }
        assert!(
            outage.elapsed() < cap,
            "after {cap:?} of outage: {} objects, {failed} failed attempts, and not every \
             cold copy done",
            objects.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (id, _, _) in &objects {
        let copies = app.copies(*id).await;
        assert!(
            copies
                .iter()
                .any(|c| c.bucket_id == "scw-eu-fr-v3" && c.state == CopyState::Pending),
            "object {id}'s copy to the bucket that is down is still pending: {copies:?}"
        );
    }
    app.server("scw-eu-fr-v3").restart().await;
    let back = Instant::now();
    let ids: Vec<i64> = objects.iter().map(|o| o.0).collect();
    drain_until_done(&app, &ids, Duration::from_secs(60)).await;
    let caught_up = back.elapsed().as_secs_f64();
    let after = count_losses(&app, &objects).await;
    record(
        "target down for 60 s",
        failed,
        &after,
        &format!("caught up {caught_up:.1} s after its return"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_going_down_mid_copy_is_retried() {
    let mut app = spawn_app(Engine::Sqlite).await;
    // The primary's connections run through a cut that can sever them mid-stream.
    let cut = TcpCut::start(app.server("b2-eu-cen").addr).await;
    app.restart_with(|s| s.s3.b2_eu_cen.endpoint = Some(format!("http://{}", cut.addr)))
        .await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(8 * PART_SIZE as usize, 1);
    let (id, key) = app.upload(&token, &bytes).await;
    let worker = app.worker("w");
    let pass = tokio::spawn(async move { worker.run_once().await.unwrap() });
    loop {
        if app
            .copies(id)
            .await
            .iter()
            .any(|c| c.state == CopyState::Copying)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    cut.cut();
    let outcome = pass.await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Copied {
            object_id: id,
            done: 0,
            failed: 2
        },
        "the cut read fails both targets"
    );
    for c in app.copies(id).await {
        assert_eq!(c.state, CopyState::Pending, "{c:?}");
        assert!(
            c.last_error
                .as_deref()
                .is_some_and(|e| e.contains("b2-eu-cen")),
            "{c:?}"
        );
    }
    cut.restore();
    drain_until_done(&app, &[id], Duration::from_secs(30)).await;
    let after = count_losses(&app, &[(id, key, bytes)]).await;
    record("primary down mid-copy", 1, &after, "retried from the start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_target_disk_is_retried_until_it_has_room() {
    let mut app = spawn_app(Engine::Sqlite).await;
    let proxy = FaultProxy::start(app.server("wasabi-eu-central-2-v3").addr, Mode::Full).await;
    app.restart_with(|s| {
        s.s3.wasabi_eu_central_2_v3.endpoint = Some(format!("http://{}", proxy.addr))
    })
    .await;
    let token = app.token_for(1).await;
    let mut objects = Vec::new();
    for (i, size) in [100, PART_SIZE as usize + 1].into_iter().enumerate() {
        let bytes = bytes_of(size, i as u8);
        let (id, key) = app.upload(&token, &bytes).await;
        objects.push((id, key, bytes));
    }
    let worker = app.worker("w");
    let mut failed = 0;
    while let Outcome::Copied { failed: f, .. } = worker.run_once().await.unwrap() {
        failed += f;
    }
    assert!(
        failed >= 2,
        "both objects failed against the full disk: {failed}"
    );
    for (id, _, _) in &objects {
        let cold = app
            .copies(*id)
            .await
            .into_iter()
            .find(|c| c.bucket_id == "wasabi-eu-central-2-v3")
            .unwrap();
        assert_eq!(
            cold.state,
            CopyState::Pending,
            "a full disk heals: retried, not failed"
        );
        assert!(cold.last_error.unwrap().contains("unavailable"));
    }
    proxy.set_mode(Mode::Pass);
    let ids: Vec<i64> = objects.iter().map(|o| o.0).collect();
    drain_until_done(&app, &ids, Duration::from_secs(30)).await;
    let after = count_losses(&app, &objects).await;
    record(
        "target disk full (507)",
        failed,
        &after,
        "retried, never failed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_database_gives_503_and_replication_resumes() {
    let admin = crate::helpers::fresh_postgres_db().await;
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let cut = TcpCut::start(pg).await;
    let through_cut = admin.replace("127.0.0.1:5432", &cut.addr.to_string());
    assert_ne!(
        through_cut, admin,
        "the test database must be on 127.0.0.1:5432"
    );
    let app = spawn_app_with(Engine::Sqlite, |s| {
        s.db.url = Some(secrecy::SecretString::from(through_cut));
        s.db.acquire_timeout = HumanDuration(Duration::from_secs(1));
        s.replication.enabled = true;
        s.replication.worker_count = 2;
        s.replication.poll_interval = HumanDuration(Duration::from_millis(100));
    })
    .await;
    let token = app.token_for(1).await;
    let first = bytes_of(1000, 1);
    let (first_id, first_key) = app.upload(&token, &first).await;
    let (key, url) = app.upload_url(&token).await;
    let second = bytes_of(2000, 2);
    assert_eq!(crate::helpers::put(&url, second.clone(), None).await, 200);

    cut.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refusals = 0;
    for _ in 0..3 {
        let ping = app.get("/ping", None).await;
        assert_eq!(ping.status, 503, "{}", ping.body);
        assert_eq!(ping.body["code"], "DB_UNAVAILABLE");
        let report = app.report(&token, &key, 2000).await;
        assert_eq!(report.status, 503, "{}", report.body);
        refusals += 2;
    }
    // The background jobs that read the database fail their steps while it is away,
    // and the runner counts them by job (the primary is followed every 2 s).
    let series = "museum_job_errors_total{job=\"primary_follow\"}";
    let counted = Instant::now() + Duration::from_secs(20);
    while crate::helpers::metric(&app.metrics_text().await, series) == 0 {
        assert!(
            Instant::now() < counted,
            "no failed step of the primary's follower counted while the database was away"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cut.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let a = app.report(&token, &key, 2000).await;
        if a.status == 200 || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(report.status, 200, "{}", report.body);
    let second_id = report.body["file"]["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in [first_id, second_id] {
        while !app
            .copies(id)
            .await
            .iter()
            .all(|c| c.state == CopyState::Done)
        {
            assert!(Instant::now() < deadline, "the workers did not resume");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let after = count_losses(
        &app,
        &[(first_id, first_key, first), (second_id, key, second)],
    )
    .await;
    record(
        "database unreachable",
        refusals,
        &after,
        "503 while down, then resumed",
    );
}

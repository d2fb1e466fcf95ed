//! Replication against real servers: every size, outages, corruption, crashes,
//! concurrent processes, topologies, primary switches, deletes and read failover.

use std::time::{Duration, Instant};

use museum::config::{BucketConfig, HumanDuration, ServeMode};
use museum::db::copies::CopyState;
use museum::replication::Outcome;

use crate::faults::{FaultProxy, Mode, Moto};
use crate::helpers::{
    Engine, PART_SIZE, TestApp, bytes_of, spawn_app, spawn_app_with, upload_parts,
};
use crate::on_both_databases;

on_both_databases!(
    objects_of_every_size_reach_every_bucket_byte_identical,
    a_target_that_is_down_is_retried_with_backoff_then_done,
    corrupted_or_short_copies_are_never_marked_done,
    a_copy_abandoned_mid_way_is_taken_over_when_its_lease_lapses,
    a_two_bucket_topology_replicates_to_the_one_other_bucket,
    a_primary_switch_keeps_old_objects_on_their_bucket,
    deletes_reach_every_bucket_after_the_delay,
    downloads_fail_over_to_a_verified_replica,
    an_object_reported_without_md5_gets_the_computed_one,
    a_source_that_changed_after_its_report_is_not_copied,
    a_report_wakes_the_workers_at_once,
);

const MIB: usize = 1024 * 1024;

fn assert_same(app: &TestApp, bucket: &str, key: &str, expected: &[u8]) {
    let stored = app.server(bucket).object(key);
    assert!(
        stored.as_deref() == Some(expected),
        "{bucket} holds {:?} bytes, expected {} identical bytes",
        stored.map(|s| s.len()),
        expected.len()
    );
}

async fn objects_of_every_size_reach_every_bucket_byte_identical(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let part = PART_SIZE as usize;
    let mut uploaded = Vec::new();
    for (i, size) in [0, 1, part - 1, part, part + 1, 2 * part + 7]
        .into_iter()
        .enumerate()
    {
        let bytes = bytes_of(size, i as u8);
        let (id, key) = app.upload(&token, &bytes).await;
        uploaded.push((id, key, bytes));
    }
    let outcomes = app.drain().await;
    assert_eq!(
        outcomes.len(),
        uploaded.len(),
        "one pass per object feeds both targets"
    );
    for (id, key, bytes) in &uploaded {
        for bucket in ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
            assert_same(&app, bucket, key, bytes);
        }
        let copies = app.copies(*id).await;
        assert_eq!(copies.len(), 2);
        for c in copies {
            assert_eq!(c.state, CopyState::Done, "{c:?}");
            assert_eq!(c.attempts, 1);
            assert_eq!(c.verified_size, Some(bytes.len() as i64));
            assert!(c.copied_at.is_some() && c.lease_owner.is_none() && c.last_error.is_none());
        }
    }
}

async fn a_target_that_is_down_is_retried_with_backoff_then_done(engine: Engine) {
    let app = spawn_app_with(engine, |s| {
        s.replication.retry.initial = HumanDuration(Duration::from_millis(300));
    })
    .await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(1000, 1);
    let (id, key) = app.upload(&token, &bytes).await;
    app.server("wasabi-eu-central-2-v3").stop();

    let worker = app.worker("w1");
    let outcome = worker.run_once().await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Copied {
            object_id: id,
            done: 1,
            failed: 1
        }
    );
    let copies = app.copies(id).await;
    let cold = copies
        .iter()
        .find(|c| c.bucket_id == "wasabi-eu-central-2-v3")
        .unwrap();
    assert_eq!(cold.state, CopyState::Pending);
    assert_eq!(cold.attempts, 1);
    assert!(
        cold.last_error
            .as_deref()
            .is_some_and(|e| e.contains("wasabi-eu-central-2-v3")),
        "{cold:?}"
    );
    assert!(
        cold.next_attempt_at > museum::db::now_millis(),
        "backoff puts the retry in the future"
    );
    assert_eq!(
        worker.run_once().await.unwrap(),
        Outcome::Idle,
        "not retried before its backoff"
    );
    let glacier = copies
        .iter()
        .find(|c| c.bucket_id == "scw-eu-fr-v3")
        .unwrap();
    assert_eq!(
        glacier.state,
        CopyState::Done,
        "the healthy target is not held back"
    );

    // Still down at the second attempt: the delay doubles.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let first_retry_at = museum::db::now_millis();
    worker.run_once().await.unwrap();
    let cold = app
        .copies(id)
        .await
        .into_iter()
        .find(|c| c.bucket_id == "wasabi-eu-central-2-v3")
        .unwrap();
    assert_eq!(cold.attempts, 2);
    assert!(
        cold.next_attempt_at >= first_retry_at + 550,
        "second backoff ≈ 600 ms: {cold:?}"
    );

    app.server("wasabi-eu-central-2-v3").restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Outcome::Copied { done: 1, .. } = worker.run_once().await.unwrap() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the copy never succeeded after the target came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_same(&app, "wasabi-eu-central-2-v3", &key, &bytes);
    let cold = app
        .copies(id)
        .await
        .into_iter()
        .find(|c| c.bucket_id == "wasabi-eu-central-2-v3")
        .unwrap();
    assert_eq!((cold.state, cold.attempts), (CopyState::Done, 3));
}

async fn corrupted_or_short_copies_are_never_marked_done(engine: Engine) {
    let mut app = spawn_app(engine).await;
    let proxy = FaultProxy::start(app.server("wasabi-eu-central-2-v3").addr, Mode::Corrupt).await;
    app.restart_with(|s| {
        s.s3.wasabi_eu_central_2_v3.endpoint = Some(format!("http://{}", proxy.addr));
    })
    .await;
    let token = app.token_for(1).await;
    // Corrupted or short bytes reach the target (the proxy fixes up the length), and
    // the ETag the target answers gives them away: never marked done.
    for (mode, size, step, expect) in [
        (
            Mode::Corrupt,
            4096,
            "verifying",
            "answered the write with ETag",
        ),
        (
            Mode::Truncate,
            4096,
            "verifying",
            "answered the write with ETag",
        ),
        (
            Mode::Corrupt,
            PART_SIZE as usize + 10,
            "verifying",
            "answered the write with ETag",
        ),
    ] {
        proxy.set_mode(mode);
        let bytes = bytes_of(size, 9);
        let (id, key) = app.upload(&token, &bytes).await;
        let outcome = app.worker("w").run_once().await.unwrap();
        assert_eq!(
            outcome,
            Outcome::Copied {
                object_id: id,
                done: 1,
                failed: 1
            },
            "{mode:?}"
        );
        let cold = app
            .copies(id)
            .await
            .into_iter()
            .find(|c| c.bucket_id == "wasabi-eu-central-2-v3")
            .unwrap();
        assert_eq!(cold.state, CopyState::Pending, "{mode:?}: {cold:?}");
        let error = cold.last_error.unwrap_or_default();
        assert!(
            error.contains(step) && error.contains(expect),
            "{mode:?}: {error}"
        );

        proxy.set_mode(Mode::Pass);
        tokio::time::sleep(Duration::from_millis(120)).await;
        let outcomes = app.drain().await;
        assert!(!outcomes.is_empty());
        assert_same(&app, "wasabi-eu-central-2-v3", &key, &bytes);
        let cold = app
            .copies(id)
            .await
            .into_iter()
            .find(|c| c.bucket_id == "wasabi-eu-central-2-v3")
            .unwrap();
        assert_eq!(
            cold.state,
            CopyState::Done,
            "re-copied once the target behaves"
        );
    }
}

async fn a_copy_abandoned_mid_way_is_taken_over_when_its_lease_lapses(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(6 * PART_SIZE as usize + 5, 3);
    let (id, key) = app.upload(&token, &bytes).await;

    // A worker starts the copy and dies mid-way (its pass is dropped, as in a crash).
    let first = app.worker("doomed");
    let pass = tokio::spawn(async move { first.run_once().await });
    let started = Instant::now();
    loop {
        let copies = app.copies(id).await;
        if copies.iter().all(|c| c.state == CopyState::Copying) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the copy never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pass.abort();
    let _ = pass.await;
    let held = app.copies(id).await;
    assert!(
        held.iter()
            .all(|c| c.lease_owner.as_deref() == Some("doomed"))
    );

    let second = app.worker("survivor");
    assert_eq!(
        second.run_once().await.unwrap(),
        Outcome::Idle,
        "the lease still holds"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match second.run_once().await.unwrap() {
            Outcome::Copied { done, .. } => {
                assert_eq!(done, 2);
                break;
            }
            Outcome::Idle => {
                assert!(
                    Instant::now() < deadline,
                    "the lapsed lease was never taken over"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    for bucket in ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        assert_same(&app, bucket, &key, &bytes);
    }
    assert!(
        app.copies(id)
            .await
            .iter()
            .all(|c| c.attempts == 2 && c.state == CopyState::Done)
    );
}

async fn a_two_bucket_topology_replicates_to_the_one_other_bucket(engine: Engine) {
    let app = spawn_app_with(engine, |s| s.s3.scw_eu_fr_v3 = BucketConfig::default()).await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(777, 4);
    let (id, key) = app.upload(&token, &bytes).await;
    app.drain().await;
    let copies = app.copies(id).await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(
        (copies[0].bucket_id.as_str(), copies[0].state),
        ("wasabi-eu-central-2-v3", CopyState::Done)
    );
    assert_same(&app, "wasabi-eu-central-2-v3", &key, &bytes);
    assert!(app.server("scw-eu-fr-v3").object(&key).is_none());
}

async fn a_primary_switch_keeps_old_objects_on_their_bucket(engine: Engine) {
    let mut app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let old = bytes_of(2000, 5);
    let (old_id, old_key) = app.upload(&token, &old).await;

    app.restart_with(|s| s.s3.hot_storage.primary = "wasabi-eu-central-2-v3".to_owned())
        .await;
    let new = bytes_of(3000, 6);
    let (new_id, new_key) = app.upload(&token, &new).await;
    assert!(
        app.server("b2-eu-cen").object(&new_key).is_none(),
        "new uploads go to the new primary"
    );
    app.drain().await;

    for bucket in ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        assert_same(&app, bucket, &old_key, &old);
        assert_same(&app, bucket, &new_key, &new);
    }
    let old_targets: Vec<String> = app
        .copies(old_id)
        .await
        .into_iter()
        .map(|c| c.bucket_id)
        .collect();
    assert_eq!(old_targets, ["scw-eu-fr-v3", "wasabi-eu-central-2-v3"]);
    let new_targets: Vec<String> = app
        .copies(new_id)
        .await
        .into_iter()
        .map(|c| c.bucket_id)
        .collect();
    assert_eq!(new_targets, ["b2-eu-cen", "scw-eu-fr-v3"]);

    let r = no_redirect_client()
        .get(format!("{}/files/{old_id}/download", app.address))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!(
            "http://{}/b2-eu-cen/",
            app.server("b2-eu-cen").addr
        )),
        "old objects are served from the bucket that holds them: {location}"
    );
}

fn no_redirect_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn deletes_reach_every_bucket_after_the_delay(engine: Engine) {
    let app = spawn_app(engine).await;
    let alice = app.token_for(1).await;
    let mallory = app.token_for(2).await;
    let bytes = bytes_of(100, 7);
    let (id, key) = app.upload(&alice, &bytes).await;
    let (kept_id, kept_key) = app.upload(&alice, &bytes_of(50, 8)).await;
    app.drain().await;

    let delete = |token: &str| {
        app.client
            .delete(format!("{}/files/{id}", app.address))
            .header("X-Auth-Token", token)
            .send()
    };
    assert_eq!(
        delete(&mallory).await.unwrap().status(),
        404,
        "another user cannot delete it"
    );
    assert_eq!(delete(&alice).await.unwrap().status(), 200);
    assert_eq!(
        delete(&alice).await.unwrap().status(),
        200,
        "deleting twice is harmless"
    );
    let gone = app
        .get(&format!("/files/{id}/download"), Some(&alice))
        .await;
    assert_eq!(gone.status, 404);

    let purger = museum::replication::purge::Purger::new(
        app.state.db.clone(),
        app.state.buckets.clone(),
        Duration::from_secs(3600),
    );
    let report = purger.run_once(museum::db::now_millis()).await.unwrap();
    assert_eq!(report.purged, 0, "nothing goes before the delay");
    assert!(app.server("b2-eu-cen").object(&key).is_some());

    let purger = museum::replication::purge::Purger::new(
        app.state.db.clone(),
        app.state.buckets.clone(),
        Duration::ZERO,
    );
    let report = purger.run_once(museum::db::now_millis()).await.unwrap();
    assert_eq!(report.purged, 1);
    for bucket in ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        assert!(
            app.server(bucket).object(&key).is_none(),
            "{bucket} still holds the deleted object"
        );
        assert!(
            app.server(bucket).object(&kept_key).is_some(),
            "{bucket} lost an object nobody deleted"
        );
    }
    assert!(app.copies(id).await.is_empty());
    assert!(
        museum::db::uploads::find_object(&app.state.db, id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(app.copies(kept_id).await.len(), 2);
}

async fn downloads_fail_over_to_a_verified_replica(engine: Engine) {
    let mut app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(4321, 10);
    let (id, key) = app.upload(&token, &bytes).await;
    let path = format!("{}/files/{id}/download", app.address);
    let get = |client: reqwest::Client, token: String, path: String| async move {
        client
            .get(path)
            .header("X-Auth-Token", token)
            .send()
            .await
            .unwrap()
    };

    // Not replicated yet: the primary serves it.
    let r = get(no_redirect_client(), token.clone(), path.clone()).await;
    assert_eq!(r.status(), 307);
    app.drain().await;
    std::fs::remove_file(app.server("b2-eu-cen").root.join("b2-eu-cen").join(&key)).unwrap();

    let r = get(no_redirect_client(), token.clone(), path.clone()).await;
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains(&app.server("wasabi-eu-central-2-v3").addr.to_string()),
        "{location}"
    );
    let followed = reqwest::get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        followed.as_ref() == bytes.as_slice(),
        "the replica's bytes are the object's"
    );

    app.restart_with(|s| s.s3.serve_mode = ServeMode::Proxy)
        .await;
    let path = format!("{}/files/{id}/download", app.address);
    std::fs::remove_file(
        app.server("wasabi-eu-central-2-v3")
            .root
            .join("wasabi-eu-central-2-v3")
            .join(&key),
    )
    .unwrap();
    let r = get(reqwest::Client::new(), token.clone(), path.clone()).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().await.unwrap().as_ref() == bytes.as_slice(),
        "proxied from the glacier-tier replica"
    );

    let other = app.token_for(2).await;
    let r = get(reqwest::Client::new(), other, path.clone()).await;
    assert_eq!(r.status(), 404, "another user cannot download it");
    std::fs::remove_file(
        app.server("scw-eu-fr-v3")
            .root
            .join("scw-eu-fr-v3")
            .join(&key),
    )
    .unwrap();
    let r = get(reqwest::Client::new(), token, path).await;
    assert_eq!(r.status(), 404, "no copy left");
}

async fn an_object_reported_without_md5_gets_the_computed_one(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(PART_SIZE as usize + 3, 11);
    let a = app
        .get("/files/multipart-upload-urls?count=2", Some(&token))
        .await;
    let key = a.body["urls"]["objectKey"].as_str().unwrap().to_owned();
    let parts: Vec<Vec<u8>> = bytes
        .chunks(PART_SIZE as usize)
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(upload_parts(&a.body["urls"], &parts, None).await, 200);
    let report = app.report(&token, &key, bytes.len() as u64).await;
    assert_eq!(report.status, 200, "{}", report.body);
    let id = report.body["file"]["id"].as_i64().unwrap();
    let before = museum::db::uploads::find_object(&app.state.db, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        before.md5, None,
        "a multipart upload without declared MD5s has none"
    );
    app.drain().await;
    let after = museum::db::uploads::find_object(&app.state.db, id)
        .await
        .unwrap()
        .unwrap();
    let expected = hex::encode(<md5::Md5 as md5::Digest>::digest(&bytes));
    assert_eq!(after.md5.as_deref(), Some(expected.as_str()));
}

async fn a_source_that_changed_after_its_report_is_not_copied(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(2048, 12);
    let (id, key) = app.upload(&token, &bytes).await;
    // Same size, other bytes: bit rot or an overwrite on the primary after the report.
    let path = app.server("b2-eu-cen").root.join("b2-eu-cen").join(&key);
    std::fs::write(&path, bytes_of(2048, 13)).unwrap();
    let outcome = app.worker("w").run_once().await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Copied {
            object_id: id,
            done: 0,
            failed: 2
        }
    );
    // Nothing verified is left to copy from: failed for good, not retried forever.
    for c in app.copies(id).await {
        assert_eq!(c.state, CopyState::Failed);
        assert!(
            c.last_error
                .as_deref()
                .is_some_and(|e| e.contains("MD5") && e.contains("no verified copy")),
            "{c:?}"
        );
    }
}

async fn a_report_wakes_the_workers_at_once(engine: Engine) {
    let app = spawn_app_with(engine, |s| {
        s.replication.enabled = true;
        s.replication.worker_count = 2;
        s.replication.poll_interval = HumanDuration(Duration::from_secs(3600));
    })
    .await;
    // Let the workers go idle on their hour-long poll first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(10_000, 14);
    let (id, key) = app.upload(&token, &bytes).await;
    let reported = Instant::now();
    loop {
        if app
            .copies(id)
            .await
            .iter()
            .all(|c| c.state == CopyState::Done)
        {
            break;
        }
        assert!(
            reported.elapsed() < Duration::from_secs(5),
            "the report did not wake a worker"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_same(&app, "scw-eu-fr-v3", &key, &bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_object_is_copied_in_parts() {
    let app = spawn_app_with(Engine::Sqlite, |s| {
        s.replication.part_size = 16 * 1024 * 1024
    })
    .await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(200 * MIB, 15);
    let (id, key) = app.upload(&token, &bytes).await;
    let outcomes = app.drain().await;
    assert_eq!(
        outcomes,
        vec![Outcome::Copied {
            object_id: id,
            done: 2,
            failed: 0
        }]
    );
    for bucket in ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        assert_same(&app, bucket, &key, &bytes);
    }
    let copies = app.copies(id).await;
    assert!(
        copies.iter().all(|c| c
            .verified_etag
            .as_deref()
            .is_some_and(|e| e.ends_with("-13"))),
        "{copies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_up_to_the_threshold_are_one_put_and_larger_ones_multipart() {
    let app = spawn_app_with(Engine::Sqlite, |s| {
        s.replication.multipart_threshold = 8 * 1024 * 1024;
        s.replication.part_size = 5 * 1024 * 1024;
    })
    .await;
    let token = app.token_for(1).await;
    // 6 MiB is above the part size but not the threshold: one PUT, a plain MD5 ETag.
    // 8 MiB is the threshold itself, still one PUT; 11 MiB is three parts.
    for (size, suffix) in [(6 * MIB, None), (8 * MIB, None), (11 * MIB, Some("-3"))] {
        let bytes = bytes_of(size, 16);
        let (id, key) = app.upload(&token, &bytes).await;
        app.drain().await;
        for bucket in ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
            assert_same(&app, bucket, &key, &bytes);
        }
        let copies = app.copies(id).await;
        assert_eq!(copies.len(), 2);
        for c in &copies {
            assert_eq!(c.state, CopyState::Done, "{c:?}");
            let etag = c.verified_etag.as_deref().unwrap();
            match suffix {
                None => assert!(!etag.contains('-'), "{size}: {etag}"),
                Some(s) => assert!(etag.ends_with(s), "{size}: {etag}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_postgres_drain_500_copies_without_doubles() {
    let app = spawn_app(Engine::Postgres).await;
    let hot = app.server("b2-eu-cen");
    let mut objects = Vec::new();
    for i in 0..250 {
        let key = format!("1/{}", uuid::Uuid::new_v4());
        let bytes = bytes_of(100 + i, i as u8);
        let path = hot.root.join("b2-eu-cen").join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        objects.push((key, bytes));
    }
    app.record_objects(1, &objects, &["wasabi-eu-central-2-v3", "scw-eu-fr-v3"])
        .await;

    // The second process: its own connection pool to the same database.
    let url =
        secrecy::ExposeSecret::expose_secret(app.settings.db.url.as_ref().unwrap()).to_owned();
    let other = museum::db::Db::open(
        &secrecy::SecretString::from(url),
        museum::db::PoolConfig {
            max_connections: 5,
            acquire_timeout: Duration::from_secs(10),
            cache_mib: museum::db::PoolConfig::SERVER_CACHE_MIB,
        },
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for (p, db) in [app.state.db.clone(), other].into_iter().enumerate() {
        for w in 0..3 {
            let worker = app.worker_on(db.clone(), &format!("process-{p}/{w}"));
            tasks.push(tokio::spawn(async move {
                let mut copies = 0;
                let mut split = 0;
                while let Outcome::Copied { done, failed, .. } = worker.run_once().await.unwrap() {
                    assert_eq!(failed, 0);
                    copies += done;
                    split += usize::from(done != 2);
                }
                (p, copies, split)
            }));
        }
    }
    let mut per_process = [0usize; 2];
    let mut split = 0;
    for t in tasks {
        let (p, n, s) = t.await.unwrap();
        per_process[p] += n;
        split += s;
    }
    assert_eq!(
        split, 0,
        "every claim took both copies of its object, so one read fed both targets"
    );
    assert_eq!(per_process[0] + per_process[1], 500, "{per_process:?}");
    assert!(
        per_process.iter().all(|n| *n > 0),
        "both processes took work: {per_process:?}"
    );
    let (done, claimed_twice): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE state = 'done'), COUNT(*) FILTER (WHERE attempts <> 1) FROM object_copies",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(done, 500);
    assert_eq!(claimed_twice, 0, "every copy was claimed exactly once");
    for (key, bytes) in objects.iter().step_by(25) {
        assert_same(&app, "wasabi-eu-central-2-v3", key, bytes);
        assert_same(&app, "scw-eu-fr-v3", key, bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glacier_copies_on_moto_carry_the_glacier_storage_class() {
    let moto = Moto::start().await;
    let app = spawn_app_with(Engine::Sqlite, |s| {
        s.s3.are_local_buckets = false;
        s.s3.use_path_style_urls = true;
        s.s3.scw_eu_fr_v3 = BucketConfig {
            key: Some("moto".to_owned()),
            secret: Some(secrecy::SecretString::from("moto-secret")),
            endpoint: Some(format!("http://{}", moto.addr)),
            region: Some("us-east-1".to_owned()),
            bucket: Some("museum-glacier".to_owned()),
            ..BucketConfig::default()
        };
    })
    .await;
    let glacier = app.state.buckets.get("scw-eu-fr-v3").unwrap();
    assert_eq!(glacier.storage_class(), Some("GLACIER"));
    glacier.create_bucket().await.unwrap();

    let token = app.token_for(1).await;
    let bytes = bytes_of(PART_SIZE as usize + 100, 16);
    let (id, key) = app.upload(&token, &bytes).await;
    let outcomes = app.drain().await;
    assert_eq!(
        outcomes,
        vec![Outcome::Copied {
            object_id: id,
            done: 2,
            failed: 0
        }]
    );
    let head = glacier.head(&key).await.unwrap();
    assert_eq!(head.storage_class.as_deref(), Some("GLACIER"));
    assert_eq!(head.size, bytes.len() as u64);
    // object_store's HEAD does not report the stored class (the one above is what
    // museum writes there): moto refusing a GET as an archived object proves it.
    let read = reqwest::get(glacier.presign_get(&key, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(read.status(), 403);
    assert!(read.text().await.unwrap().contains("InvalidObjectState"));
    // The class moto reports, read by the control-plane HEAD doctor uses.
    assert_eq!(
        glacier.stored_class(&key).await.unwrap().as_deref(),
        Some("GLACIER")
    );
    let checks = museum::doctor::run(&app.settings).await;
    let class = checks
        .iter()
        .find(|c| c.subject == "scw-eu-fr-v3" && c.name == "storage class")
        .expect("doctor checks the glacier tier's storage class");
    assert_eq!(
        class.verdict,
        museum::doctor::Verdict::Ok("the provider stored a probe as GLACIER".to_owned())
    );
    let cold = app
        .state
        .buckets
        .get("wasabi-eu-central-2-v3")
        .unwrap()
        .head(&key)
        .await
        .unwrap();
    assert_eq!(
        cold.storage_class, None,
        "only the glacier tier gets the class"
    );

    // With the hot and cold copies gone, a GLACIER replica cannot serve a read.
    for bucket in ["b2-eu-cen", "wasabi-eu-central-2-v3"] {
        std::fs::remove_file(app.server(bucket).root.join(bucket).join(&key)).unwrap();
    }
    let a = app
        .get(&format!("/files/{id}/download"), Some(&token))
        .await;
    assert_eq!(a.status, 404, "{}", a.body);
}

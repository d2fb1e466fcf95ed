//! A recorded object replaced through its still-valid upload URL. A plain URL from
//! `GET /files/upload-urls` signs no length or MD5 and lives for days, so whoever
//! holds it can PUT other bytes after the report. Museum must never serve or copy
//! those bytes: every read of a tier checks the ETag recorded for it, a mismatch is
//! counted and logged, reads fall back to a verified replica, and the tier is
//! restored from it. Without a verified replica the object is marked lost.

use std::time::Duration;

use museum::config::{BucketConfig, ServeMode};
use museum::db::copies::CopyState;

use crate::faults::Moto;
use crate::helpers::{Engine, TestApp, bytes_of, put, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    an_overwrite_after_the_first_copy_is_never_redirected_to_and_the_primary_is_restored,
    an_overwrite_after_the_first_copy_is_never_proxied_and_the_primary_is_restored,
    an_overwrite_before_the_first_copy_fails_its_copies_for_good_and_is_never_served,
    a_re_report_of_an_overwritten_object_is_refused_and_restores_it,
    verify_checks_every_tier_by_size_and_etag_and_restores_what_is_wrong,
    a_bigger_overwrite_found_later_is_charged_to_the_users_usage,
);

const PRIMARY: &str = "b2-eu-cen";
const REPLICAS: [&str; 2] = ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"];

fn no_redirect_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Uploads `bytes` through a plain (v1) URL and reports it; returns (id, key, url).
async fn upload_v1(app: &TestApp, token: &str, bytes: &[u8]) -> (i64, String, String) {
    let (key, url) = app.upload_url(token).await;
    assert_eq!(put(&url, bytes.to_vec(), None).await, 200);
    let a = app.report(token, &key, bytes.len() as u64).await;
    assert_eq!(a.status, 200, "{}", a.body);
    (a.body["file"]["id"].as_i64().unwrap(), key, url)
}

/// `GET /files/{id}/download` without following redirects.
async fn download(app: &TestApp, token: &str, id: i64) -> reqwest::Response {
    no_redirect_client()
        .get(format!("{}/files/{id}/download", app.address))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap()
}

/// The bytes a download ends with: followed if it redirects, else its body.
async fn downloaded_bytes(app: &TestApp, token: &str, id: i64) -> (String, Vec<u8>) {
    let r = download(app, token, id).await;
    match r.status().as_u16() {
        307 => {
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            let body = reqwest::get(&location).await.unwrap();
            assert_eq!(body.status(), 200);
            (location, body.bytes().await.unwrap().to_vec())
        }
        200 => (String::new(), r.bytes().await.unwrap().to_vec()),
        other => panic!("download answered {other}: {}", r.text().await.unwrap()),
    }
}

/// `museum_tampered_total{bucket}` as the metrics listener reports it.
async fn tampered_count(app: &TestApp, bucket: &str) -> u64 {
    let text = app.metrics_text().await;
    crate::helpers::metric(
        &text,
        &format!("museum_tampered_total{{bucket=\"{bucket}\"}}"),
    )
}

fn holds(app: &TestApp, bucket: &str, key: &str) -> Option<Vec<u8>> {
    app.server(bucket).object(key)
}

async fn an_overwrite_after_the_first_copy_is_never_redirected_to_and_the_primary_is_restored(
    engine: Engine,
) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let good = bytes_of(3000, 1);
    let (id, key, url) = upload_v1(&app, &token, &good).await;
    app.drain().await;

    // Same size, other bytes, through the URL the report was made for.
    let evil = bytes_of(3000, 2);
    assert_eq!(put(&url, evil.clone(), None).await, 200);
    assert_eq!(holds(&app, PRIMARY, &key), Some(evil.clone()));

    // Redirect mode: sent to a verified replica, not the replaced primary.
    let (location, served) = downloaded_bytes(&app, &token, id).await;
    assert!(served == good, "a redirect served the replaced bytes");
    assert!(
        !location.contains(&app.server(PRIMARY).addr.to_string()),
        "{location}"
    );
    assert!(tampered_count(&app, PRIMARY).await >= 1);

    // The read queued a restore of the primary from the replica.
    app.drain().await;
    assert_eq!(holds(&app, PRIMARY, &key), Some(good.clone()));
    let (location, served) = downloaded_bytes(&app, &token, id).await;
    assert!(served == good);
    assert!(
        location.contains(&app.server(PRIMARY).addr.to_string()),
        "the restored primary serves again: {location}"
    );
}

async fn an_overwrite_after_the_first_copy_is_never_proxied_and_the_primary_is_restored(
    engine: Engine,
) {
    let app = spawn_app_with(engine, |s| s.s3.serve_mode = ServeMode::Proxy).await;
    let token = app.token_for(1).await;
    let good = bytes_of(3000, 1);
    let (id, key, url) = upload_v1(&app, &token, &good).await;
    app.drain().await;

    // Another size this time; the bytes stream through museum.
    assert_eq!(put(&url, bytes_of(5000, 3), None).await, 200);
    let (_, served) = downloaded_bytes(&app, &token, id).await;
    assert!(
        served == good,
        "a proxied download served the replaced bytes"
    );
    assert!(tampered_count(&app, PRIMARY).await >= 1);
    app.drain().await;
    for bucket in [PRIMARY].into_iter().chain(REPLICAS) {
        assert_eq!(holds(&app, bucket, &key), Some(good.clone()), "{bucket}");
    }
    assert!(
        app.copies(id)
            .await
            .iter()
            .all(|c| c.state == CopyState::Done),
        "{:?}",
        app.copies(id).await
    );
    let (_, served) = downloaded_bytes(&app, &token, id).await;
    assert!(served == good);
}

async fn an_overwrite_before_the_first_copy_fails_its_copies_for_good_and_is_never_served(
    engine: Engine,
) {
    let mut app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let good = bytes_of(3000, 4);
    let (id, key, url) = upload_v1(&app, &token, &good).await;
    let evil = bytes_of(3000, 5);
    assert_eq!(put(&url, evil.clone(), None).await, 200);

    app.drain().await;
    for c in app.copies(id).await {
        assert_eq!(c.state, CopyState::Failed, "{c:?}");
        let error = c.last_error.unwrap_or_default();
        assert!(error.contains("no verified copy"), "{error}");
    }
    for bucket in REPLICAS {
        assert_eq!(
            holds(&app, bucket, &key),
            None,
            "{bucket} got the replaced bytes"
        );
    }
    assert!(tampered_count(&app, PRIMARY).await >= 1);

    // verify finds the primary replaced as well: no tier holds the recorded bytes,
    // so the object is reported lost and nothing is queued to copy from nowhere.
    let report = museum::app::ops::verify(&app.state.db, &app.state.buckets, None)
        .await
        .unwrap();
    assert_eq!(
        (
            report.checked,
            report.tampered,
            report.lost,
            report.requeued
        ),
        (1, 1, 1, 0)
    );
    assert!(
        app.copies(id).await.iter().all(|c| c.bucket_id != PRIMARY),
        "no restore of the primary is queued"
    );
    let status = museum::app::ops::status(&app.state.db, &app.state.buckets)
        .await
        .unwrap();
    assert!(status.contains("lost objects: 1"), "{status}");
    assert_eq!(holds(&app, PRIMARY, &key), Some(evil), "left as evidence");

    // Failed for good: nothing is retried once the backoff has passed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.drain().await, vec![]);

    for mode in [ServeMode::Redirect, ServeMode::Proxy] {
        app.restart_with(|s| s.s3.serve_mode = mode).await;
        let r = download(&app, &token, id).await;
        assert_eq!(r.status(), 410, "{mode:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["code"], "OBJECT_TAMPERED", "{mode:?}: {body}");
    }
}

async fn a_re_report_of_an_overwritten_object_is_refused_and_restores_it(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let good = bytes_of(2500, 6);
    let (_, key, url) = upload_v1(&app, &token, &good).await;
    let again = app.report(&token, &key, good.len() as u64).await;
    assert_eq!(
        again.status, 200,
        "an intact object re-reports: {}",
        again.body
    );
    app.drain().await;

    assert_eq!(put(&url, bytes_of(2500, 7), None).await, 200);
    let again = app.report(&token, &key, good.len() as u64).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.body["code"], "OBJECT_TAMPERED", "{}", again.body);
    assert!(tampered_count(&app, PRIMARY).await >= 1);

    app.drain().await;
    assert_eq!(holds(&app, PRIMARY, &key), Some(good.clone()));
    let again = app.report(&token, &key, good.len() as u64).await;
    assert_eq!(again.status, 200, "restored: {}", again.body);

    // Before any copy, the re-report refuses too; nothing verified is left.
    let lost = bytes_of(2500, 8);
    let (_, key, url) = upload_v1(&app, &token, &lost).await;
    assert_eq!(put(&url, bytes_of(2400, 9), None).await, 200);
    let again = app.report(&token, &key, lost.len() as u64).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.body["code"], "OBJECT_TAMPERED", "{}", again.body);
}

async fn verify_checks_every_tier_by_size_and_etag_and_restores_what_is_wrong(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let good = bytes_of(4000, 10);
    let (id, key, url) = upload_v1(&app, &token, &good).await;
    app.drain().await;
    let clean = museum::app::ops::verify(&app.state.db, &app.state.buckets, None)
        .await
        .unwrap();
    assert_eq!(
        (clean.checked, clean.requeued),
        (3, 0),
        "every tier, the primary too"
    );

    // The primary through its upload URL, and a replica by someone with its keys:
    // both the same size as the object, so only the ETag tells.
    assert_eq!(put(&url, bytes_of(4000, 11), None).await, 200);
    let cold = app.state.buckets.get(REPLICAS[0]).unwrap();
    cold.put_object(&key, vec![bytes::Bytes::from(bytes_of(4000, 12))])
        .await
        .unwrap();
    let report = museum::app::ops::verify(&app.state.db, &app.state.buckets, None)
        .await
        .unwrap();
    assert_eq!((report.checked, report.requeued), (3, 2));

    app.drain().await;
    for bucket in [PRIMARY].into_iter().chain(REPLICAS) {
        assert_eq!(holds(&app, bucket, &key), Some(good.clone()), "{bucket}");
    }
    assert!(
        app.copies(id)
            .await
            .iter()
            .all(|c| c.state == CopyState::Done)
    );
    let after = museum::app::ops::verify(&app.state.db, &app.state.buckets, None)
        .await
        .unwrap();
    assert_eq!((after.checked, after.requeued), (3, 0));
}

/// moto honours `If-Match` on GET (412), where s3s-fs ignores it and museum compares
/// the answer's ETag itself: the primary here is moto, so the copy's source read is
/// refused by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_on_moto_refuses_the_stale_read_and_nothing_wrong_is_copied() {
    let moto = Moto::start().await;
    let app = spawn_app_with(Engine::Sqlite, |s| {
        s.s3.are_local_buckets = false;
        s.s3.use_path_style_urls = true;
        s.s3.serve_mode = ServeMode::Proxy;
        s.s3.b2_eu_cen = BucketConfig {
            key: Some("moto".to_owned()),
            secret: Some(secrecy::SecretString::from("moto-secret")),
            endpoint: Some(format!("http://{}", moto.addr)),
            region: Some("us-east-1".to_owned()),
            bucket: Some("museum-hot".to_owned()),
            ..BucketConfig::default()
        };
    })
    .await;
    let primary = app.state.buckets.primary();
    primary.create_bucket().await.unwrap();
    let token = app.token_for(1).await;

    // Replaced before the first copy: lost, marked so, never copied.
    let good = bytes_of(3000, 13);
    let (id, key, url) = upload_v1(&app, &token, &good).await;
    assert_eq!(put(&url, bytes_of(3000, 14), None).await, 200);
    app.drain().await;
    for c in app.copies(id).await {
        assert_eq!(c.state, CopyState::Failed, "{c:?}");
        let error = c.last_error.unwrap_or_default();
        assert!(
            error.contains("412") && error.contains("no verified copy"),
            "{error}"
        );
    }
    for bucket in REPLICAS {
        assert_eq!(holds(&app, bucket, &key), None, "{bucket}");
    }
    let r = download(&app, &token, id).await;
    assert_eq!(r.status(), 410);

    // Replaced after the first copy: served from the replica, then restored.
    let good = bytes_of(3000, 15);
    let (id, key, url) = upload_v1(&app, &token, &good).await;
    app.drain().await;
    assert_eq!(put(&url, bytes_of(3000, 16), None).await, 200);
    let (_, served) = downloaded_bytes(&app, &token, id).await;
    assert!(served == good);
    app.drain().await;
    let restored = reqwest::get(primary.presign_get(&key, Duration::from_secs(60)))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        restored.as_ref() == good.as_slice(),
        "moto holds the object again"
    );
    assert!(tampered_count(&app, PRIMARY).await >= 2);
}

/// RELIABILITY.md's row: objects replaced through their upload URLs after their first
/// copy, found by downloads, re-reports and a verify run, and restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_overwritten_through_their_upload_urls_keep_their_recorded_bytes() {
    let app = spawn_app(Engine::Sqlite).await;
    let token = app.token_for(1).await;
    let mut objects = Vec::new();
    let mut urls = Vec::new();
    for i in 0..10u8 {
        let bytes = bytes_of(2000 + usize::from(i) * 100, i);
        let (id, key, url) = upload_v1(&app, &token, &bytes).await;
        objects.push((id, key, bytes));
        urls.push(url);
    }
    app.drain().await;
    for ((_, _, bytes), url) in objects.iter().zip(&urls) {
        let mut evil = bytes.clone();
        evil[0] ^= 0xff;
        assert_eq!(put(url, evil, None).await, 200);
    }

    let started = std::time::Instant::now();
    let mut served_wrong = 0;
    for (id, _, bytes) in &objects[..5] {
        let (_, served) = downloaded_bytes(&app, &token, *id).await;
        served_wrong += usize::from(served != *bytes);
    }
    let mut reports_passed = 0;
    for (_, key, bytes) in &objects[5..8] {
        let a = app.report(&token, key, bytes.len() as u64).await;
        reports_passed += usize::from(a.status != 409);
    }
    // The restores those reads queued run first; verify then finds the two others.
    app.drain().await;
    let report = museum::app::ops::verify(&app.state.db, &app.state.buckets, None)
        .await
        .unwrap();
    app.drain().await;
    let restored_in = started.elapsed();

    let after = crate::reliability::count_losses(&app, &objects).await;
    let tampered = tampered_count(&app, PRIMARY).await;
    crate::reliability::record(
        "object overwritten through its upload URL",
        objects.len(),
        &after,
        &format!(
            "same size, other bytes, after the first copy; found by 5 downloads, 3 re-reports ({tampered} counted) and verify ({} tampered, {} re-queued); none served; every primary restored from a replica in {} ms",
            report.tampered,
            report.requeued,
            restored_in.as_millis()
        ),
    );
    assert_eq!(served_wrong, 0, "downloads served replaced bytes");
    assert_eq!(reports_passed, 0, "re-reports of replaced objects passed");
    assert_eq!(report.requeued, 2, "verify finds the two nothing else read");
    assert_eq!(report.tampered, 2);
    assert_eq!(
        tampered, 8,
        "downloads and re-reports count in the app's metrics"
    );
}

/// `user`'s usage as the database holds it.
async fn usage_of(app: &TestApp, user: i64) -> i64 {
    sqlx::query_scalar("SELECT usage_bytes FROM users WHERE user_id = $1")
        .bind(user)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

async fn a_bigger_overwrite_found_later_is_charged_to_the_users_usage(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(4).await;
    let (by_download, _, url) = upload_v1(&app, &token, &bytes_of(1000, 1)).await;
    let (_, scrubbed_key, scrubbed_url) = upload_v1(&app, &token, &bytes_of(1000, 2)).await;
    app.drain().await;
    assert_eq!(usage_of(&app, 4).await, 2000);

    // Bigger bytes through the URLs the reports were made for.
    assert_eq!(put(&url, bytes_of(5000, 3), None).await, 200);
    assert_eq!(put(&scrubbed_url, bytes_of(3000, 4), None).await, 200);
    // Found by a download: the 4000 bytes past the record are charged, once.
    let (_, served) = downloaded_bytes(&app, &token, by_download).await;
    assert_eq!(served, bytes_of(1000, 1));
    let after_download = usage_of(&app, 4).await;
    downloaded_bytes(&app, &token, by_download).await;
    let after_second_download = usage_of(&app, 4).await;
    // Found by the scrub's HEAD: 2000 more.
    let report = museum::app::ops::scrub(
        &app.state.db,
        &app.state.buckets,
        museum::maintenance::scrub::ScrubLimits::heads_only(),
        false,
        Duration::from_secs(1),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let after_scrub = usage_of(&app, 4).await;
    // Deleting the file takes its charge off with it.
    let r = app
        .client
        .delete(format!("{}/files/{by_download}", app.address))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let after_delete = usage_of(&app, 4).await;
    crate::helpers::Reliability {
        fault: "a bigger overwrite through a still-valid upload URL after the report",
        injections: 2,
        checked: 0,
        lost: 0,
        stuck: 0,
        across_users: None,
        note: "found by a download and by the scrub's HEAD; usage charged the 6,000 bytes past the records (usage unchanged before the fix)",
    }
    .record();
    assert_eq!(
        (
            after_download,
            after_second_download,
            after_scrub,
            after_delete
        ),
        (6000, 6000, 8000, 3000),
        "{report:?} ({scrubbed_key})"
    );
}

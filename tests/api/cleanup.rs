//! The cleanup sweep of expired, unreported upload keys: every byte of an unreported
//! upload goes, even a multipart upload the client completed, and a bucket that is
//! down during the sweep only delays it to the first sweep after it returns.

use museum::db::uploads::find_temp_object;
use museum::uploads::cleanup::{CleanupJob, CleanupReport};

use crate::helpers::{Engine, TestApp, bytes_of, put, spawn_app, upload_parts};
use crate::on_both_databases;

/// Past every issued key's expiry (presign expiry 7 d + grace 1 h by default).
const LATER_MS: i64 = 8 * 24 * 3600 * 1000;

fn job(app: &TestApp) -> CleanupJob {
    CleanupJob::new(app.state.db.clone(), app.state.buckets.clone())
}

/// Issues a multipart upload of one part, uploads and completes it; returns its key.
async fn completed_multipart(app: &TestApp, token: &str, bytes: Vec<u8>) -> String {
    let a = app
        .get("/files/multipart-upload-urls?count=1", Some(token))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let key = a.body["urls"]["objectKey"].as_str().unwrap().to_owned();
    assert_eq!(upload_parts(&a.body["urls"], &[bytes], None).await, 200);
    key
}

async fn a_completed_but_unreported_multipart_upload_is_deleted(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let key = completed_multipart(&app, &token, bytes_of(1000, 1)).await;
    assert!(app.server("b2-eu-cen").object(&key).is_some());

    let report = job(&app)
        .run_once(museum::db::now_millis() + LATER_MS)
        .await
        .unwrap();

    assert_eq!(
        report,
        CleanupReport {
            removed: 1,
            failed: 0
        }
    );
    assert!(
        app.server("b2-eu-cen").object(&key).is_none(),
        "the completed upload's object outlived its key"
    );
    assert!(
        find_temp_object(&app.state.db, &key)
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_bucket_down_during_the_sweep_delays_cleanup_to_the_next_sweep(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let (kept_id, kept_key) = app.upload(&token, &bytes_of(300, 9)).await;
    let mut unreported = Vec::new();
    for i in 0..3u8 {
        let (key, url) = app.upload_url(&token).await;
        assert_eq!(put(&url, bytes_of(100, i), None).await, 200);
        unreported.push(key);
    }
    unreported.push(completed_multipart(&app, &token, bytes_of(200, 7)).await);
    let later = museum::db::now_millis() + LATER_MS;

    app.server("b2-eu-cen").stop();
    let during = job(&app).run_once(later).await.unwrap();
    assert_eq!(
        during.removed, 0,
        "nothing can be removed while the bucket is down"
    );
    assert_eq!(during.failed, unreported.len() as u64);
    // A key the sweep has taken cannot be reported any more, even once the bucket
    // is back: its bytes are about to go.
    app.server("b2-eu-cen").restart().await;
    let late = app.report(&token, &unreported[0], 100).await;
    assert_eq!(late.status, 404, "{}", late.body);

    let after = job(&app).run_once(later).await.unwrap();

    let mut stuck = 0;
    for key in &unreported {
        let bytes_left = app.server("b2-eu-cen").object(key).is_some();
        let row_left = find_temp_object(&app.state.db, key)
            .await
            .unwrap()
            .is_some();
        stuck += usize::from(bytes_left || row_left);
    }
    let kept_intact =
        app.server("b2-eu-cen").object(&kept_key).as_deref() == Some(&bytes_of(300, 9)[..]);
    crate::helpers::Reliability {
        fault: "bucket down during the cleanup sweep",
        injections: unreported.len(),
        checked: unreported.len() + 1,
        lost: usize::from(!kept_intact),
        stuck,
        across_users: None,
        note: "lost: reported objects swept; stuck: unreported keys left after the first sweep with the bucket back",
    }
    .record();
    assert_eq!(
        after,
        CleanupReport {
            removed: unreported.len() as u64,
            failed: 0
        }
    );
    assert_eq!(
        stuck, 0,
        "unreported uploads outlived the first sweep after the outage"
    );
    assert!(kept_intact, "a reported object was swept");
    assert!(
        app.copies(kept_id).await.len() == 2,
        "the reported object's copies are untouched"
    );
}

on_both_databases!(
    a_completed_but_unreported_multipart_upload_is_deleted,
    a_bucket_down_during_the_sweep_delays_cleanup_to_the_next_sweep,
);

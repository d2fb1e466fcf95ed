//! `museum reconcile`: bucket listings against the database.

use std::time::Duration;

use bytes::Bytes;
use museum::reconcile::{Finding, ReconcileOptions, ReconcileReport, reconcile};

use crate::helpers::{Engine, TestApp, bytes_of, put, spawn_app};
use crate::on_both_databases;

on_both_databases!(reconcile_finds_strays_and_lost_records_and_apply_deletes_only_strays);

async fn run(app: &TestApp, apply: bool, grace: Duration) -> (ReconcileReport, Vec<Finding>) {
    let mut findings = Vec::new();
    let report = reconcile(
        &app.state.db,
        &app.state.buckets,
        ReconcileOptions { apply, grace },
        |f| findings.push(f.clone()),
        |_| {},
    )
    .await
    .unwrap();
    (report, findings)
}

async fn reconcile_finds_strays_and_lost_records_and_apply_deletes_only_strays(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let mut keys = Vec::new();
    for i in 0..3u8 {
        keys.push(app.upload(&token, &bytes_of(1000, i)).await);
    }
    app.drain().await;
    // An upload under way: its key is issued and its bytes are in the bucket.
    let (pending_key, url) = app.upload_url(&token).await;
    assert_eq!(put(&url, bytes_of(400, 9), None).await, 200);
    // A stray that no record knows, in the cold tier.
    let wasabi = app.state.buckets.get("wasabi-eu-central-2-v3").unwrap();
    wasabi
        .put_object("1/stray-object", vec![Bytes::from(vec![1u8; 777])])
        .await
        .unwrap();
    // Record 2 loses its bytes everywhere.
    let (lost_id, lost_key) = &keys[2];
    for b in ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        std::fs::remove_file(app.server(b).root.join(b).join(lost_key)).unwrap();
    }

    let (recent, _) = run(&app, false, Duration::from_secs(3600)).await;
    let cold = &recent.buckets[1];
    assert_eq!(
        (cold.bucket.as_str(), cold.unknown, cold.recent),
        ("wasabi-eu-central-2-v3", 0, 1)
    );

    let (report, findings) = run(&app, false, Duration::ZERO).await;
    let by_bucket: Vec<(u64, u64, u64, u64)> = report
        .buckets
        .iter()
        .map(|b| (b.listed, b.unknown, b.uploading, b.deleted))
        .collect();
    assert_eq!(
        by_bucket,
        [(3, 0, 1, 0), (3, 1, 0, 0), (2, 0, 0, 0)],
        "primary: 2 records and the upload under way; cold: 2 records and the stray; glacier: 2 records"
    );
    assert_eq!(
        (report.records, report.missing, report.missing_bytes),
        (3, 1, 1000)
    );
    assert!(findings.contains(&Finding::Missing {
        object_id: *lost_id,
        key: lost_key.clone(),
        size: 1000
    }));
    assert!(findings.iter().any(|f| matches!(f,
        Finding::Unknown { bucket, key, size: 777, deleted: false, .. }
            if bucket == "wasabi-eu-central-2-v3" && key == "1/stray-object")));
    assert_eq!(findings.len(), 2, "{findings:?}");

    let (applied, _) = run(&app, true, Duration::ZERO).await;
    assert_eq!(applied.buckets[1].deleted, 1);
    assert!(
        app.server("wasabi-eu-central-2-v3")
            .object("1/stray-object")
            .is_none()
    );
    assert!(
        app.server("b2-eu-cen").object(&pending_key).is_some(),
        "an upload under way is never deleted"
    );
    for (_, key) in &keys[..2] {
        assert!(app.server("b2-eu-cen").object(key).is_some());
    }
    let (after, findings) = run(&app, false, Duration::ZERO).await;
    assert_eq!(after.buckets.iter().map(|b| b.unknown).sum::<u64>(), 0);
    assert_eq!(
        findings.len(),
        1,
        "only the lost record is left: {findings:?}"
    );
}

//! `museum reconcile`: bucket listings against the database.

use std::time::Duration;

use bytes::Bytes;
use museum::maintenance::reconcile::{
    Fence, Finding, ReconcileOptions, ReconcileReport, Refusal, reconcile,
};

use crate::helpers::{Engine, TestApp, bytes_of, put, spawn_app};
use crate::on_both_databases;

on_both_databases!(
    reconcile_finds_strays_and_lost_records_and_apply_deletes_only_strays,
    apply_deletes_nothing_in_a_bucket_the_database_does_not_seem_to_know
);

async fn run(app: &TestApp, apply: bool, grace: Duration) -> (ReconcileReport, Vec<Finding>) {
    run_fenced(app, apply, grace, Fence::default()).await
}

async fn run_fenced(
    app: &TestApp,
    apply: bool,
    grace: Duration,
    fence: Fence,
) -> (ReconcileReport, Vec<Finding>) {
    let mut findings = Vec::new();
    let report = reconcile(
        &app.state.db,
        &app.state.buckets,
        &ReconcileOptions {
            apply,
            grace,
            fence,
        },
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

/// A wrong or empty database makes every object look unknown: `--apply` must then
/// delete nothing in that bucket, unless the operator names it.
async fn apply_deletes_nothing_in_a_bucket_the_database_does_not_seem_to_know(engine: Engine) {
    let app = spawn_app(engine).await;
    let cold = app.state.buckets.get("wasabi-eu-central-2-v3").unwrap();
    for i in 0..12 {
        cold.put_object(&format!("1/stray-{i}"), vec![Bytes::from(vec![1u8; 10])])
            .await
            .unwrap();
    }
    let strays = |app: &TestApp| {
        (0..12)
            .filter(|i| {
                app.server("wasabi-eu-central-2-v3")
                    .object(&format!("1/stray-{i}"))
                    .is_some()
            })
            .count()
    };
    // No object recorded at all: refused, even for a bucket the operator names.
    let named = Fence {
        allow: vec!["wasabi-eu-central-2-v3".to_owned()],
        ..Fence::default()
    };
    let (report, findings) = run_fenced(&app, true, Duration::ZERO, named.clone()).await;
    assert_eq!(report.buckets[1].refused, Some(Refusal::EmptyDatabase));
    assert_eq!(
        (report.buckets[1].unknown, report.buckets[1].deleted),
        (12, 0)
    );
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(strays(&app), 12);

    // One object recorded: 12 of 13 unknown is past both limits.
    let token = app.token_for(1).await;
    let (_, key) = app.upload(&token, &bytes_of(100, 1)).await;
    app.drain().await;
    let (report, _) = run(&app, true, Duration::ZERO).await;
    assert_eq!(report.buckets[1].refused, Some(Refusal::TooManyUnknown));
    assert_eq!(report.buckets[1].deleted, 0);
    assert_eq!(strays(&app), 12);

    // Limits the operator raised, or the bucket named: deleted, the record kept.
    let loose = Fence {
        max_unknown: 12,
        ..Fence::default()
    };
    let (report, _) = run_fenced(&app, true, Duration::ZERO, loose).await;
    assert_eq!(
        (report.buckets[1].refused.clone(), report.buckets[1].deleted),
        (None, 12)
    );
    assert_eq!(strays(&app), 0);
    assert!(app.server("wasabi-eu-central-2-v3").object(&key).is_some());
    assert!(app.server("b2-eu-cen").object(&key).is_some());
    cold.put_object("1/stray-0", vec![Bytes::from(vec![1u8; 10])])
        .await
        .unwrap();
    let (report, _) = run_fenced(&app, true, Duration::ZERO, named).await;
    assert_eq!(report.buckets[1].deleted, 1);
    crate::helpers::Reliability {
        fault: &format!(
            "reconcile --apply against a database that records none or few of a bucket's objects ({engine:?})"
        ),
        injections: 2,
        checked: 12,
        lost: 0,
        stuck: 0,
        across_users: None,
        note: "12 unknown of 12, then of 13, listed: refused both times, 0 deleted; deleted only with the limit raised or the bucket named",
    }
    .record();
}

//! `museum primary move`: the primary moved online.

use museum::primary::{self, OldPrimary};

use crate::helpers::{Engine, TestApp, bytes_of, spawn_app};
use crate::on_both_databases;

on_both_databases!(a_primary_move_switches_uploads_at_once_and_moves_every_object);

const OLD: &str = "b2-eu-cen";
const NEW: &str = "wasabi-eu-central-2-v3";

async fn sources(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT bucket_id FROM objects ORDER BY id")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
}

async fn heads_find_every_tier_intact(app: &TestApp) {
    let report = museum::ops::verify(&app.state.db, &app.state.buckets, None)
        .await
        .unwrap();
    assert_eq!(
        (report.intact, report.checked, report.requeued),
        (report.checked, report.checked, 0),
        "{report:?}"
    );
}

async fn a_primary_move_switches_uploads_at_once_and_moves_every_object(engine: Engine) {
    let mut app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let mut objects = Vec::new();
    for i in 0..4u8 {
        let bytes = bytes_of(2000, i);
        let (id, key) = app.upload(&token, &bytes).await;
        objects.push((id, key, bytes));
    }
    app.drain().await;
    // One more whose copies are not made yet when the move starts.
    let late = bytes_of(2500, 9);
    let (late_id, late_key) = app.upload(&token, &late).await;

    let unfit = primary::switch(&app.state.db, &app.state.buckets, "scw-eu-fr-v3").await;
    assert!(
        unfit
            .unwrap_err()
            .to_string()
            .contains("cannot be the hot primary")
    );
    let from = primary::switch(&app.state.db, &app.state.buckets, NEW)
        .await
        .unwrap();
    assert_eq!(from, OLD);
    // New uploads go to the new primary at once.
    let fresh = bytes_of(1500, 7);
    let (fresh_id, fresh_key) = app.upload(&token, &fresh).await;
    assert!(app.server(NEW).object(&fresh_key).as_deref() == Some(fresh.as_slice()));
    assert!(app.server(OLD).object(&fresh_key).is_none());

    // The first step moves the four whose copy in the new primary is verified.
    let step = primary::step(
        &app.state.db,
        &app.state.buckets,
        OLD,
        NEW,
        OldPrimary::Replica,
    )
    .await
    .unwrap();
    assert_eq!((step.moved, step.left), (4, 1), "{step:?}");
    let status = app
        .get(&format!("/files/{}/status", objects[0].0), Some(&token))
        .await;
    let tiers = status.body["tiers"].as_array().unwrap().clone();
    assert_eq!(
        (tiers[0]["bucket"].as_str(), tiers[0]["role"].as_str()),
        (Some(NEW), Some("SOURCE")),
        "{}",
        status.body
    );
    assert!(
        tiers
            .iter()
            .any(|t| t["bucket"] == OLD && t["role"] == "REPLICA" && t["status"] == "COMPLETED"),
        "the old primary is a replica tier: {}",
        status.body
    );
    // Reads keep working throughout: a moved object is served from the new primary.
    std::fs::remove_file(app.server(OLD).root.join(OLD).join(&objects[1].1)).unwrap();
    let download = app
        .client
        .get(format!("{}/files/{}/download", app.address, objects[1].0))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200, "followed to the new primary");
    assert!(download.bytes().await.unwrap() == objects[1].2);

    // The rest moves once its copy is made; the step is the same to run again.
    app.drain().await;
    let step = primary::step(
        &app.state.db,
        &app.state.buckets,
        OLD,
        NEW,
        OldPrimary::Replica,
    )
    .await
    .unwrap();
    assert_eq!((step.moved, step.left), (1, 0), "{step:?}");
    let again = primary::step(
        &app.state.db,
        &app.state.buckets,
        OLD,
        NEW,
        OldPrimary::Replica,
    )
    .await
    .unwrap();
    assert_eq!((again.moved, again.left, again.queued), (0, 0, 0));
    assert!(sources(&app).await.iter().all(|b| b == NEW));
    assert!(app.server(NEW).object(&late_key).as_deref() == Some(late.as_slice()));
    // The copy deleted from the old primary, now a replica tier, is found and
    // restored like any replica's.
    let found = museum::ops::verify(&app.state.db, &app.state.buckets, None)
        .await
        .unwrap();
    assert_eq!((found.missing, found.requeued), (1, 1), "{found:?}");
    app.drain().await;
    heads_find_every_tier_intact(&app).await;

    // A restarted museum follows the move, whatever s3.hot_storage.primary says.
    app.restart_with(|_| {}).await;
    assert_eq!(app.state.buckets.primary().id(), NEW);

    // Back again, emptying the bucket left: every object returns to the old bucket,
    // and the one left holds none of them.
    primary::switch(&app.state.db, &app.state.buckets, OLD)
        .await
        .unwrap();
    app.drain().await;
    let back = primary::step(
        &app.state.db,
        &app.state.buckets,
        NEW,
        OLD,
        OldPrimary::Empty,
    )
    .await
    .unwrap();
    assert_eq!((back.moved, back.left), (6, 0), "{back:?}");
    for key in objects.iter().map(|o| &o.1).chain([&late_key, &fresh_key]) {
        assert!(app.server(NEW).object(key).is_none(), "{key} emptied");
        assert!(app.server(OLD).object(key).is_some(), "{key} kept");
    }
    assert!(sources(&app).await.iter().all(|b| b == OLD));
    heads_find_every_tier_intact(&app).await;
    let _ = (late_id, fresh_id);
}

//! `museum primary move`: the primary moved online.

use std::process::Stdio;
use std::time::Duration;

use museum::maintenance::primary::{self, OldPrimary};

use crate::binary::{Killed, cli_on};
use crate::helpers::{Engine, TestApp, bytes_of, spawn_app};
use crate::on_both_databases;

on_both_databases!(
    a_primary_move_switches_uploads_at_once_and_moves_every_object,
    a_primary_move_killed_with_sigkill_finishes_when_run_again,
    an_emptying_move_looks_at_the_new_copy_afresh_before_it_deletes_the_old,
    an_emptying_move_ends_only_when_nothing_can_land_on_the_old_primary,
);

const OLD: &str = "b2-eu-cen";
const NEW: &str = "wasabi-eu-central-2-v3";

async fn sources(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT bucket_id FROM objects ORDER BY id")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
}

async fn heads_find_every_tier_intact(app: &TestApp) {
    let report = museum::app::ops::verify(&app.state.db, &app.state.buckets, None)
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
    let found = museum::app::ops::verify(&app.state.db, &app.state.buckets, None)
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

async fn a_primary_move_killed_with_sigkill_finishes_when_run_again(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    const OBJECTS: usize = 100;
    let mut objects = Vec::new();
    for i in 0..OBJECTS {
        let bytes = bytes_of(100_000 + i, i as u8);
        let (id, key) = app.upload(&token, &bytes).await;
        objects.push((id, key, bytes));
    }
    app.drain().await;
    let moved = || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE bucket_id = $1")
            .bind(NEW)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        n as usize
    };
    let cwd = tempfile::tempdir().unwrap();
    let move_to_new = || {
        let mut cmd = cli_on(&app.settings, cwd.path());
        cmd.args(["primary", "move", "--to", NEW, "--then", "empty"])
            .stdin(Stdio::null());
        cmd
    };
    // `museum primary move`, its copies paced at 2 MB/s (about 5 s for all), killed
    // with SIGKILL once some objects have moved.
    Killed(
        move_to_new()
            .env("ENTE_REPLICATION_MAX_BYTES_PER_SECOND", "2000000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
    .sigkill_once("museum primary move", Duration::from_secs(60), || async {
        moved().await >= 10
    })
    .await;
    let cut = moved().await;
    assert!(cut < OBJECTS, "killed before the end: {cut} moved");

    // Reads keep working on the half-moved objects.
    for (id, _, bytes) in objects.iter().step_by(7) {
        let download = app
            .client
            .get(format!("{}/files/{id}/download", app.address))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(download.status(), 200, "object {id}");
        assert!(
            download.bytes().await.unwrap() == bytes.as_slice(),
            "object {id}"
        );
    }

    let rerun = move_to_new().output().unwrap();
    let out = String::from_utf8_lossy(&rerun.stdout);
    assert!(
        rerun.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert!(
        out.contains(&format!("every object moved to {NEW}")),
        "{out}"
    );
    assert!(sources(&app).await.iter().all(|b| b == NEW));
    let lost = objects
        .iter()
        .filter(|(_, key, bytes)| app.server(NEW).object(key).as_deref() != Some(bytes.as_slice()))
        .count();
    let left_behind = objects
        .iter()
        .filter(|(_, key, _)| app.server(OLD).object(key).is_some())
        .count();
    let stuck = app.unverified_copies().await;
    crate::helpers::Reliability {
        fault: &format!("museum primary move --then empty killed with SIGKILL mid-move ({engine:?})"),
        injections: 1,
        checked: OBJECTS,
        lost,
        stuck: stuck as usize,
        across_users: None,
        note: &format!(
            "{cut} of {OBJECTS} objects moved at the kill; the rerun moved the rest; {left_behind} left in the emptied bucket"
        ),
    }
    .record();
    assert_eq!(lost, 0, "objects whose bytes the new primary does not hold");
    assert_eq!(left_behind, 0, "objects left in the emptied bucket");
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT bucket_id, COUNT(*) FROM object_copies GROUP BY bucket_id ORDER BY bucket_id",
    )
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("scw-eu-fr-v3".to_owned(), OBJECTS as i64),
            (NEW.to_owned(), OBJECTS as i64)
        ],
        "one copy row per object and tier, none for the emptied bucket"
    );
    heads_find_every_tier_intact(&app).await;
}

/// The new primary's verified copy vanished (a provider's lifecycle rule, an
/// operator's delete) after it was verified. Before, the emptying step deleted the
/// old primary's bytes first and moved the object onto nothing.
async fn an_emptying_move_looks_at_the_new_copy_afresh_before_it_deletes_the_old(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let mut objects = Vec::new();
    for i in 0..2u8 {
        let bytes = bytes_of(3000, 40 + i);
        let (id, key) = app.upload(&token, &bytes).await;
        objects.push((id, key, bytes));
    }
    app.drain().await;
    primary::switch(&app.state.db, &app.state.buckets, NEW)
        .await
        .unwrap();
    let (gone_id, gone_key, gone_bytes) = &objects[0];
    app.state
        .buckets
        .get(NEW)
        .unwrap()
        .delete(gone_key)
        .await
        .unwrap();
    let step = primary::step(
        &app.state.db,
        &app.state.buckets,
        OLD,
        NEW,
        OldPrimary::Empty,
    )
    .await
    .unwrap();
    assert_eq!((step.moved, step.left), (1, 1), "{step:?}");
    assert_eq!(sources(&app).await, [OLD, NEW]);
    assert_eq!(
        app.server(OLD).object(gone_key).as_deref(),
        Some(gone_bytes.as_slice()),
        "the only whole copy left in a primary stays until the new one is verified again"
    );
    let copy = app
        .copies(*gone_id)
        .await
        .into_iter()
        .find(|c| c.bucket_id == NEW)
        .unwrap();
    assert_eq!(copy.state, museum::db::copies::CopyState::Pending);

    app.drain().await;
    let step = primary::step(
        &app.state.db,
        &app.state.buckets,
        OLD,
        NEW,
        OldPrimary::Empty,
    )
    .await
    .unwrap();
    assert_eq!((step.moved, step.left), (1, 0), "{step:?}");
    let lost = objects
        .iter()
        .filter(|(_, key, bytes)| app.server(NEW).object(key).as_deref() != Some(bytes.as_slice()))
        .count();
    crate::helpers::Reliability {
        fault: &format!(
            "the new primary's verified copy deleted before museum primary move --then empty reached it ({engine:?})"
        ),
        injections: 1,
        checked: objects.len(),
        lost,
        stuck: 0,
        across_users: None,
        note: "found by a fresh HEAD; the old primary's bytes kept and the copy made again before the object moved (before: deleted from both)",
    }
    .record();
    assert_eq!(lost, 0);
    assert!(
        objects
            .iter()
            .all(|(_, key, _)| app.server(OLD).object(key).is_none())
    );
}

/// Two ways to land on a bucket a move empties: an upload URL issued for it before
/// the switch and reported after, and bytes written back by a copy or heal that
/// raced the move. Before, the move said "emptied" with both still possible.
async fn an_emptying_move_ends_only_when_nothing_can_land_on_the_old_primary(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let mut objects = Vec::new();
    for i in 0..3u8 {
        let bytes = bytes_of(2000, 50 + i);
        let (id, key) = app.upload(&token, &bytes).await;
        objects.push((id, key, bytes));
    }
    app.drain().await;
    // Issued for the old primary, uploaded, and not reported before the move ends.
    let issued = bytes_of(1200, 59);
    let (issued_key, url) = app.upload_url(&token).await;
    assert_eq!(crate::helpers::put(&url, issued.clone(), None).await, 200);

    // Bytes of a moved object written back to the old primary every 200 ms for
    // 3 s after it moved, as a copy or heal that read the old layout would.
    let old = app.state.buckets.get(OLD).unwrap().clone();
    let (back_key, back_bytes) = (objects[0].1.clone(), objects[0].2.clone());
    let db = app.state.db.clone();
    let back_id = objects[0].0;
    let writer = tokio::spawn(async move {
        loop {
            let on: String = sqlx::query_scalar("SELECT bucket_id FROM objects WHERE id = $1")
                .bind(back_id)
                .fetch_one(db.pool())
                .await
                .unwrap();
            if on == NEW {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let until = std::time::Instant::now() + Duration::from_secs(3);
        let mut writes = 0;
        while std::time::Instant::now() < until {
            old.put_object(&back_key, vec![bytes::Bytes::from(back_bytes.clone())])
                .await
                .unwrap();
            writes += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (writes, std::time::Instant::now())
    });

    let cwd = tempfile::tempdir().unwrap();
    let out = cli_on(&app.settings, cwd.path())
        .args(["primary", "move", "--to", NEW, "--then", "empty"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let ended = std::time::Instant::now();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("ended 1 uploads issued for"), "{said}");
    let (writes, stopped) = writer.await.unwrap();
    assert!(
        ended >= stopped,
        "the move said it was done while bytes were still being written back: {said}"
    );
    let left_behind = objects
        .iter()
        .filter(|(_, key, _)| app.server(OLD).object(key).is_some())
        .count();
    // The upload issued for the old primary cannot be recorded there any more.
    let a = app.report(&token, &issued_key, issued.len() as u64).await;
    assert_ne!(a.status, 200, "{}", a.body);
    assert!(sources(&app).await.iter().all(|b| b == NEW));
    let lost = objects
        .iter()
        .filter(|(_, key, bytes)| app.server(NEW).object(key).as_deref() != Some(bytes.as_slice()))
        .count();
    crate::helpers::Reliability {
        fault: &format!(
            "museum primary move --then empty with an upload issued for the old primary and a moved object written back to it ({engine:?})"
        ),
        injections: 1 + writes,
        checked: objects.len(),
        lost,
        stuck: 0,
        across_users: None,
        note: &format!(
            "the upload ended (its report refused); the move ended after the last write-back, {left_behind} left in the emptied bucket"
        ),
    }
    .record();
    assert_eq!(lost, 0);
    assert_eq!(left_behind, 0, "{said}");
}

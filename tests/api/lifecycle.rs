//! An object's life after its report: a late retry of the report once the file has
//! been deleted must not be told the file is stored.

use std::time::Duration;

use museum::config::HumanDuration;
use serde_json::json;

use crate::helpers::{Engine, bytes_of, put, spawn_app_with};
use crate::on_both_databases;

async fn reporting_a_deleted_file_again_answers_410_file_deleted(engine: Engine) {
    // The purge must not run during the test: the deleted rows stay, as they do for
    // `replication.delete-delay` in production.
    let app = spawn_app_with(engine, |s| {
        s.replication.delete_delay = HumanDuration(Duration::from_secs(3600));
    })
    .await;
    let token = app.token_for(1).await;
    let (file_key, file_url) = app.upload_url(&token).await;
    let (thumb_key, thumb_url) = app.upload_url(&token).await;
    assert_eq!(put(&file_url, bytes_of(40, 1), None).await, 200);
    assert_eq!(put(&thumb_url, bytes_of(4, 2), None).await, 200);
    let body = json!({
        "file": {"objectKey": file_key, "size": 40},
        "thumbnail": {"objectKey": thumb_key, "size": 4},
    });
    let first = app.post("/files", &token, &body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let id = first.body["id"].as_i64().unwrap();
    assert_eq!(
        app.post("/files", &token, &body).await.status,
        200,
        "a retry before the delete is idempotent"
    );

    let deleted = app
        .client
        .delete(format!("{}/files/{id}", app.address))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);

    let late = app.post("/files", &token, &body).await;
    crate::helpers::Reliability {
        fault: "a late retry of a report after the file was deleted",
        injections: 1,
        note: &format!(
            "answered {} {} (200 before the fix)",
            late.status, late.body["code"]
        ),
        ..Default::default()
    }
    .record();
    assert_eq!(late.status, 410, "{}", late.body);
    assert_eq!(late.body["code"], "FILE_DELETED");
    assert!(
        late.body["message"].as_str().unwrap().contains("deleted"),
        "{}",
        late.body
    );
    let thumb_only = app.report(&token, &thumb_key, 4).await;
    assert_eq!(thumb_only.status, 410, "{}", thumb_only.body);
    assert_eq!(thumb_only.body["code"], "FILE_DELETED");
    let object = museum::db::uploads::find_object(&app.state.db, id)
        .await
        .unwrap()
        .unwrap();
    assert!(object.deleted_at.is_some(), "the late report undid nothing");
}

on_both_databases!(reporting_a_deleted_file_again_answers_410_file_deleted);

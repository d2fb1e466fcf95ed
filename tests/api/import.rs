//! `museum import DIR --user ID`: a folder brought into museum, resumable.

use std::path::Path;
use std::time::{Duration, Instant};

use museum::import::{ImportOptions, ImportReport, import};

use crate::helpers::{Engine, PART_SIZE, TestApp, bytes_of, spawn_app};
use crate::on_both_databases;

on_both_databases!(
    import_records_each_file_once_and_a_second_run_skips_them,
    a_killed_import_resumes_and_records_no_file_twice,
);

fn options(user: i64) -> ImportOptions {
    ImportOptions {
        user,
        multipart_threshold: PART_SIZE,
        part_size: PART_SIZE,
    }
}

async fn run(app: &TestApp, dir: &Path, user: i64) -> ImportReport {
    import(
        &app.state.db,
        &app.state.buckets,
        dir,
        options(user),
        |_| {},
    )
    .await
    .unwrap()
}

/// (object key, size) of every live object of `user`.
async fn objects_of(app: &TestApp, user: i64) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT object_key, size FROM objects WHERE user_id = $1 AND deleted_at IS NULL ORDER BY id",
    )
    .bind(user)
    .fetch_all(app.state.db.pool())
    .await
    .unwrap()
}

/// The bytes imported for the file at `path`, read back from the primary.
async fn imported_bytes(app: &TestApp, user: i64, path: &str) -> Vec<u8> {
    let key: String = sqlx::query_scalar(
        "SELECT o.object_key FROM imports i JOIN objects o ON o.id = i.object_id WHERE i.user_id = $1 AND i.path = $2",
    )
    .bind(user)
    .bind(path)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    app.server("b2-eu-cen").object(&key).unwrap()
}

async fn import_records_each_file_once_and_a_second_run_skips_them(engine: Engine) {
    let app = spawn_app(engine).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("2024/summer")).unwrap();
    let files = [
        ("a.jpg", bytes_of(3000, 1)),
        ("2024/b.heic", bytes_of(1, 2)),
        ("2024/summer/c.mov", bytes_of(PART_SIZE as usize + 1234, 3)),
        ("empty.txt", Vec::new()),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let first = run(&app, dir.path(), 5).await;
    assert_eq!(
        (first.files, first.imported, first.skipped),
        (4, 4, 0),
        "{first:?}"
    );
    assert!(first.failed.is_empty());
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(first.bytes, total as u64);
    for (name, bytes) in &files {
        assert!(imported_bytes(&app, 5, name).await == *bytes, "{name}");
    }
    assert_eq!(objects_of(&app, 5).await.len(), 4);
    let usage = museum::db::users::find_user(&app.state.db, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        usage.usage_bytes, total as i64,
        "imports count in the user's usage"
    );
    app.drain().await;
    let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM object_copies WHERE state = 'done'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(done, 8, "every file replicated to both other tiers");

    let second = run(&app, dir.path(), 5).await;
    assert_eq!((second.imported, second.skipped), (0, 4));
    // A file changed since: imported again, as a new object.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(dir.path().join("a.jpg"), bytes_of(3001, 9)).unwrap();
    let third = run(&app, dir.path(), 5).await;
    assert_eq!((third.imported, third.skipped), (1, 3));
    assert!(imported_bytes(&app, 5, "a.jpg").await == bytes_of(3001, 9));
}

async fn a_killed_import_resumes_and_records_no_file_twice(engine: Engine) {
    let app = spawn_app(engine).await;
    let dir = tempfile::tempdir().unwrap();
    const FILES: usize = 80;
    for i in 0..FILES {
        std::fs::write(
            dir.path().join(format!("f{i:03}")),
            bytes_of(20_000 + i, i as u8),
        )
        .unwrap();
    }
    // An import on a runtime of its own, with its own pool and clients, stopped dead
    // (as kill -9 stops a process) once some files are recorded.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let settings = app.settings.clone();
    let root = dir.path().to_owned();
    runtime.spawn(async move {
        let (db, buckets) = crate::helpers::own_db_and_buckets(&settings).await;
        let _ = import(&db, &buckets, &root, options(6), |_| {}).await;
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE user_id = 6")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        if n >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the import recorded {n} files");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    runtime.shutdown_background();
    let cut: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE user_id = 6")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(
        (cut as usize) < FILES,
        "killed before the end: {cut} recorded"
    );

    let resumed = run(&app, dir.path(), 6).await;
    assert!(resumed.failed.is_empty(), "{:?}", resumed.failed);
    assert_eq!(resumed.imported + resumed.skipped, FILES as u64);
    assert!(
        resumed.skipped as i64 >= cut,
        "{resumed:?} after {cut} recorded"
    );
    let objects = objects_of(&app, 6).await;
    assert_eq!(objects.len(), FILES, "each file recorded once");
    for i in 0..FILES {
        let name = format!("f{i:03}");
        assert!(
            imported_bytes(&app, 6, &name).await == bytes_of(20_000 + i, i as u8),
            "{name}"
        );
    }
    let linked: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM imports WHERE user_id = 6 AND object_id IS NOT NULL",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(linked, FILES as i64);
}

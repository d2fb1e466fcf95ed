//! `museum import DIR --user ID`: a folder brought into museum, resumable.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use museum::uploads::import::{ImportOptions, ImportReport, import};

use crate::binary::{Killed, cli_on};
use crate::helpers::{Engine, PART_SIZE, TestApp, bytes_of, spawn_app};
use crate::on_both_databases;

on_both_databases!(
    import_records_each_file_once_and_a_second_run_skips_them,
    an_import_killed_with_sigkill_resumes_and_records_or_stores_no_file_twice,
    an_import_killed_mid_multipart_upload_leaves_no_upload_open,
    an_import_resumed_after_its_cut_run_completed_a_multipart_upload_records_the_file_once,
    an_import_of_a_library_of_symlinks_follows_them_skips_git_and_names_a_dangling_link,
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

/// `museum import DIR --user USER` as a process on the app's settings, run in `cwd`.
fn import_command(app: &TestApp, dir: &Path, cwd: &Path, user: i64) -> std::process::Command {
    let mut cmd = cli_on(&app.settings, cwd);
    cmd.arg("import")
        .arg(dir)
        .args(["--user", &user.to_string()])
        .stdin(Stdio::null());
    cmd
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

/// Files of user `user` in the primary's folder on disk.
fn stored_keys(app: &TestApp, user: i64) -> usize {
    let server = app.server("b2-eu-cen");
    std::fs::read_dir(server.root.join(&server.bucket).join(user.to_string()))
        .map(|d| d.flatten().filter(|e| e.path().is_file()).count())
        .unwrap_or(0)
}

async fn an_import_killed_with_sigkill_resumes_and_records_or_stores_no_file_twice(engine: Engine) {
    let app = spawn_app(engine).await;
    let dir = tempfile::tempdir().unwrap();
    const FILES: usize = 120;
    let size = |i: usize| {
        if i.is_multiple_of(40) {
            PART_SIZE as usize + 1000 + i
        } else {
            200_000 + i
        }
    };
    for i in 0..FILES {
        std::fs::write(
            dir.path().join(format!("f{i:03}")),
            bytes_of(size(i), i as u8),
        )
        .unwrap();
    }
    let recorded = || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE user_id = 6")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
        n
    };
    let cwd = tempfile::tempdir().unwrap();
    let import = || import_command(&app, dir.path(), cwd.path(), 6);
    // `museum import`, killed with SIGKILL once some files are recorded.
    Killed(
        import()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
    .sigkill_once("museum import", Duration::from_secs(60), || async {
        recorded().await >= 10
    })
    .await;
    let cut = recorded().await;
    assert!(
        (cut as usize) < FILES,
        "killed before the end: {cut} recorded"
    );

    let resumed = import().output().unwrap();
    let out = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        resumed.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let objects = objects_of(&app, 6).await;
    assert_eq!(objects.len(), FILES, "each file recorded once: {out}");
    let mut lost = 0;
    for i in 0..FILES {
        if imported_bytes(&app, 6, &format!("f{i:03}")).await != bytes_of(size(i), i as u8) {
            lost += 1;
        }
    }
    app.drain().await;
    let stuck = app.unverified_copies().await;
    let strays = stored_keys(&app, 6) - FILES.min(stored_keys(&app, 6));
    crate::helpers::Reliability {
        fault: &format!("museum import killed with SIGKILL mid-import ({engine:?})"),
        injections: 1,
        checked: FILES,
        lost,
        stuck: stuck as usize,
        across_users: None,
        note: &format!(
            "{cut} of {FILES} files recorded at the kill; the rerun recorded the rest once each; {strays} stray objects in the bucket"
        ),
    }
    .record();
    assert_eq!(lost, 0, "files whose imported bytes differ");
    assert_eq!(stuck, 0, "copies of imported files not verified");
    let linked: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM imports WHERE user_id = 6 AND object_id IS NOT NULL",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(linked, FILES as i64);
    // A file the killed run had sent but not recorded went again to the same key:
    // the bucket holds one object per file, no stray beside it.
    assert_eq!(stored_keys(&app, 6), FILES, "{out}");
    let usage: i64 = sqlx::query_scalar("SELECT usage_bytes FROM users WHERE user_id = 6")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(
        usage,
        (0..FILES).map(size).sum::<usize>() as i64,
        "each file counted once in the user's usage"
    );
}

/// The multipart uploads open on the hot server (their records, in s3s-fs's layout),
/// and the files of their parts.
fn open_uploads(app: &TestApp) -> (usize, usize) {
    let server = app.server("b2-eu-cen");
    let names: Vec<String> = std::fs::read_dir(&server.root)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let count = |prefix: &str| names.iter().filter(|n| n.starts_with(prefix)).count();
    (count(".upload-"), count(".upload_id-"))
}

async fn an_import_killed_mid_multipart_upload_leaves_no_upload_open(engine: Engine) {
    let app = spawn_app(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let size = 12 * PART_SIZE as usize + 5;
    std::fs::write(dir.path().join("big.mov"), bytes_of(size, 7)).unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let import = || import_command(&app, dir.path(), cwd.path(), 7);
    let upload_on_key = || async {
        let ids: Vec<Option<String>> =
            sqlx::query_scalar("SELECT upload_id FROM temp_objects WHERE user_id = 7")
                .fetch_all(app.state.db.pool())
                .await
                .unwrap();
        ids.into_iter().flatten().next()
    };
    // Killed once its multipart upload is open and recorded on its key, parts in
    // flight.
    Killed(
        import()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
    .sigkill_once("museum import", Duration::from_secs(60), || async {
        upload_on_key().await.is_some()
    })
    .await;
    assert_eq!(open_uploads(&app).0, 1, "the killed run's upload is open");

    let resumed = import().output().unwrap();
    assert!(
        resumed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&resumed.stdout),
        String::from_utf8_lossy(&resumed.stderr)
    );
    let lost = usize::from(imported_bytes(&app, 7, "big.mov").await != bytes_of(size, 7));
    app.drain().await;
    let stuck = app.unverified_copies().await;
    let (uploads, parts) = open_uploads(&app);
    crate::helpers::Reliability {
        fault: &format!("museum import killed with SIGKILL mid multipart upload ({engine:?})"),
        injections: 1,
        checked: 1,
        lost,
        stuck: stuck as usize,
        across_users: None,
        note: &format!(
            "killed with its upload open and recorded on its key; after the rerun {uploads} uploads and {parts} part files left open"
        ),
    }
    .record();
    assert_eq!(objects_of(&app, 7).await.len(), 1);
    assert_eq!(lost, 0, "the imported bytes differ");
    assert_eq!(stuck, 0, "copies not verified");
    assert_eq!(
        (uploads, parts),
        (0, 0),
        "the rerun aborted the upload the killed run left open"
    );
    assert_eq!(stored_keys(&app, 7), 1);
}

async fn an_import_resumed_after_its_cut_run_completed_a_multipart_upload_records_the_file_once(
    engine: Engine,
) {
    use museum::db::uploads::{TempObject, set_upload_id};
    let app = spawn_app(engine).await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = bytes_of(2 * PART_SIZE as usize + 10, 9);
    let path = dir.path().join("v.mov");
    std::fs::write(&path, &bytes).unwrap();
    let mtime = std::fs::metadata(&path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;

    // What a run killed right after completing the upload leaves: the file's key
    // issued with the upload recorded on it, the object whole in the bucket, and no
    // record of it.
    let db = &app.state.db;
    let primary = app.state.buckets.primary();
    let key = museum::storage::presign::new_object_key(8);
    let now = museum::db::now_millis();
    let temp = TempObject {
        object_key: key.clone(),
        user_id: 8,
        bucket_id: primary.id().to_owned(),
        declared_size: Some(bytes.len() as i64),
        declared_md5: None,
        expected_etag: None,
        upload_id: None,
        created_at: now,
        expires_at: now + 24 * 3_600_000,
    };
    museum::db::imports::start(db, "v.mov", mtime, &temp)
        .await
        .unwrap();
    let upload = primary.create_multipart_upload(&key).await.unwrap();
    assert!(set_upload_id(db, &key, Some(&upload)).await.unwrap());
    let mut etags = Vec::new();
    for (i, part) in bytes.chunks(PART_SIZE as usize).enumerate() {
        let body = vec![bytes::Bytes::copy_from_slice(part)];
        let etag = primary
            .upload_part(&key, &upload, i as u16 + 1, body)
            .await
            .unwrap();
        etags.push(etag.unwrap());
    }
    primary
        .complete_multipart_upload(&key, &upload, &etags)
        .await
        .unwrap();

    // The rerun finds the upload gone, sends the file again to the same key, and
    // records it once.
    let report = run(&app, dir.path(), 8).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.imported, 1);
    assert_eq!(objects_of(&app, 8).await, [(key, bytes.len() as i64)]);
    assert!(imported_bytes(&app, 8, "v.mov").await == bytes);
    assert_eq!(stored_keys(&app, 8), 1);
    assert_eq!(open_uploads(&app), (0, 0));
}

/// The paths `user`'s imports recorded, sorted.
async fn imported_paths(app: &TestApp, user: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT path FROM imports WHERE user_id = $1 AND object_id IS NOT NULL ORDER BY path",
    )
    .bind(user)
    .fetch_all(app.state.db.pool())
    .await
    .unwrap()
}

/// A library as git-annex keeps one (each file a relative link into
/// `.git/annex/objects`) and as `rsync --links` copies one (a link to a folder kept
/// elsewhere), with a link back up the tree, a second link to a file already there,
/// and one dangling link.
async fn an_import_of_a_library_of_symlinks_follows_them_skips_git_and_names_a_dangling_link(
    engine: Engine,
) {
    use std::os::unix::fs::symlink;
    let app = spawn_app(engine).await;
    let lib = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (lib_path, store) = (lib.path(), elsewhere.path());

    // git-annex: the bytes under .git/annex/objects, the files links to them.
    let annexed = [
        ("a.jpg", bytes_of(3000, 1)),
        ("2024/b.heic", bytes_of(PART_SIZE as usize + 77, 2)),
    ];
    std::fs::create_dir_all(lib_path.join("2024")).unwrap();
    for (i, (name, bytes)) in annexed.iter().enumerate() {
        let object = format!(
            ".git/annex/objects/k{i}/SHA256E-s{0}--{i}/SHA256E-s{0}--{i}",
            bytes.len()
        );
        std::fs::create_dir_all(lib_path.join(&object).parent().unwrap()).unwrap();
        std::fs::write(lib_path.join(&object), bytes).unwrap();
        let up = "../".repeat(name.matches('/').count());
        symlink(format!("{up}{object}"), lib_path.join(name)).unwrap();
    }
    std::fs::write(lib_path.join(".git/config"), b"[core]\n").unwrap();
    // rsync --links: a folder linked from outside the library.
    std::fs::create_dir_all(store.join("trip/day1")).unwrap();
    let linked = [
        ("trip/c.mov", bytes_of(4321, 3)),
        ("trip/day1/d.png", bytes_of(10, 4)),
    ];
    for (name, bytes) in &linked {
        std::fs::write(store.join(name), bytes).unwrap();
    }
    symlink(store.join("trip"), lib_path.join("trip")).unwrap();
    // A loop back to the library's top, and a second link to a file already found.
    symlink("..", lib_path.join("2024/up")).unwrap();
    symlink("../a.jpg", lib_path.join("2024/same.jpg")).unwrap();
    // A link whose target is gone.
    symlink(store.join("deleted.jpg"), lib_path.join("gone.jpg")).unwrap();

    let cwd = tempfile::tempdir().unwrap();
    let out = import_command(&app, lib_path, cwd.path(), 11)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("5 files, 4 imported"), "{stdout}{stderr}");
    assert!(stdout.contains("1 failed"), "{stdout}{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("gone.jpg") && l.contains("link")),
        "the dangling link is named: {stderr}"
    );
    let mut want: Vec<String> = annexed
        .iter()
        .chain(&linked)
        .map(|(n, _)| (*n).to_owned())
        .collect();
    want.sort();
    assert_eq!(imported_paths(&app, 11).await, want, "{stdout}{stderr}");
    let mut lost = 0;
    for (name, bytes) in annexed.iter().chain(&linked) {
        if imported_bytes(&app, 11, name).await != *bytes {
            lost += 1;
        }
    }
    app.drain().await;
    let stuck = app.unverified_copies().await;
    crate::helpers::Reliability {
        fault: &format!(
            "museum import of a library of symbolic links: git-annex and rsync --links layouts, a loop, a dangling link ({engine:?})"
        ),
        injections: 2,
        checked: 4,
        lost,
        stuck: stuck as usize,
        across_users: None,
        note: "4 of 4 linked files imported once each, nothing from .git; the dangling link named and exit 1 (before the fix: 0 linked files, .git imported, exit 0); 0 bytes read across users",
    }
    .record();
    assert_eq!(lost, 0, "linked files whose imported bytes differ");
    assert_eq!(stuck, 0);
    assert_eq!(
        objects_of(&app, 11).await.len(),
        4,
        "nothing from .git, no file twice"
    );

    // A second run imports nothing again and still names the dangling link.
    let again = import_command(&app, lib_path, cwd.path(), 11)
        .output()
        .unwrap();
    let again_out = String::from_utf8_lossy(&again.stdout);
    assert_eq!(again.status.code(), Some(1), "{again_out}");
    assert!(again_out.contains("0 imported"), "{again_out}");
    assert!(again_out.contains("4 already there"), "{again_out}");
    assert_eq!(objects_of(&app, 11).await.len(), 4);
}

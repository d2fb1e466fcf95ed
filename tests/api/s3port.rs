//! Hostile clients on the embedded S3 port. Every kind of URL museum issues (single,
//! part, completion, download) is sent with what a client could add to it: unsigned
//! `x-amz-*` headers, a server-side copy of another user's object, a wrong method, a
//! repeated completion. The server's own keys are then used the way a holder of them
//! could: non-canonical keys, a bucket deletion, a completion under another key.
//! Nothing may change a stored byte or an ETag, or answer with another user's data.

use std::path::Path;

use futures_util::StreamExt;

use crate::embedded::{Signer, md5_hex};
use crate::helpers::{
    Engine, Reliability, S3Server, TestApp, bytes_of, complete_upload, spawn_app,
};

const PRIMARY: &str = "b2-eu-cen";
const MIB: usize = 1024 * 1024;

/// An attack's request: `method` on `url` with `headers` and `body`; its status and
/// body.
async fn send(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let mut request = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .request(method, url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let r = request.body(body).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// Where object `id`'s download redirects `token`'s holder.
async fn download_url(app: &TestApp, token: &str, id: i64) -> String {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/files/{id}/download", app.address))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307, "download of {id}");
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// One multipart URL set for `token`: its key, part URLs and completion URL.
async fn multipart_urls(app: &TestApp, token: &str, parts: usize) -> (String, Vec<String>, String) {
    let a = app
        .get(
            &format!("/files/multipart-upload-urls?count={parts}"),
            Some(token),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let urls = &a.body["urls"];
    let part_urls = urls["partURLs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    (
        urls["objectKey"].as_str().unwrap().to_owned(),
        part_urls,
        urls["completeURL"].as_str().unwrap().to_owned(),
    )
}

/// The stored objects of every bucket of `app` and their records (ETag, metadata),
/// with their bytes, under `root`-relative names. Multipart uploads in progress are
/// left out: asking for multipart URLs begins one.
fn snapshot(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for server in &app.s3 {
        walk(&server.root, &server.root, &mut files);
    }
    files.retain(|(name, _)| !name.starts_with(".upload") && !name.starts_with(".museum-staging"));
    files.sort();
    files
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let name = path.strip_prefix(root).unwrap().display().to_string();
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
}

/// What a client may add to a URL it was given: each an `x-amz-*` header museum did
/// not sign. `victim` is `bucket/key` of another user's object.
fn unsigned_headers(victim: &str) -> Vec<Vec<(&'static str, String)>> {
    vec![
        vec![("x-amz-copy-source", victim.to_owned())],
        vec![
            ("x-amz-copy-source", victim.to_owned()),
            ("x-amz-metadata-directive", "REPLACE".to_owned()),
        ],
        vec![("x-amz-copy-source-range", "bytes=0-99".to_owned())],
        vec![("x-amz-storage-class", "REDUCED_REDUNDANCY".to_owned())],
        vec![("x-amz-meta-evil", "1".to_owned())],
        vec![("x-amz-tagging", "a=b".to_owned())],
        vec![("x-amz-website-redirect-location", "/elsewhere".to_owned())],
        vec![("x-amz-checksum-mode", "ENABLED".to_owned())],
    ]
}

/// Every URL museum issues, sent with every unsigned header, a wrong method and a
/// replay, by a user holding their own URLs and another user's keys (from their own
/// download's redirect, the way keys leak). None may answer with the victim's bytes,
/// or change a stored file.
async fn no_issued_url_reaches_another_users_bytes(engine: Engine) {
    let app = spawn_app(engine).await;
    let (victim, attacker) = (app.token_for(3).await, app.token_for(1).await);
    let secret = bytes_of(4000, 9);
    let (victim_id, victim_key) = app.upload(&victim, &secret).await;
    let (own_id, _) = app.upload(&attacker, &bytes_of(10, 1)).await;
    app.drain().await;
    let source = format!("{PRIMARY}/{victim_key}");
    let before = snapshot(&app);
    let mut tries = 0;
    let mut leaked = 0usize;
    let mut leak = |body: &[u8], what: &str| {
        if !secret.is_empty() && body.windows(64).any(|w| secret.starts_with(w)) {
            leaked += body.len();
            eprintln!("{what} answered with the victim's bytes");
        }
    };

    for headers in unsigned_headers(&source) {
        // A single upload URL, its body empty (as a copy's is) and then with bytes.
        let (key, url) = app.upload_url(&attacker).await;
        for body in [Vec::new(), bytes_of(10, 2)] {
            let (status, answer) = send(reqwest::Method::PUT, &url, &headers, body).await;
            tries += 1;
            leak(&answer, "a PUT");
            assert_eq!(
                status,
                403,
                "PUT with {headers:?}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        // Nothing was stored, so the key cannot be reported.
        let report = app.report(&attacker, &key, secret.len() as u64).await;
        assert!(report.status >= 400, "{}", report.body);
        assert!(app.server(PRIMARY).object(&key).is_none(), "{headers:?}");

        // A part URL (UploadPartCopy, when it carries a copy source).
        let (key, parts, complete) = multipart_urls(&app, &attacker, 1).await;
        let (status, answer) = send(reqwest::Method::PUT, &parts[0], &headers, Vec::new()).await;
        tries += 1;
        leak(&answer, "a part PUT");
        assert_eq!(
            status,
            403,
            "part with {headers:?}: {}",
            String::from_utf8_lossy(&answer)
        );
        // The completion with the unsigned header, and then without: no part exists.
        let etag = format!("\"{}\"", md5_hex(&secret));
        let body = format!(
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
        );
        let (status, _) = send(
            reqwest::Method::POST,
            &complete,
            &headers,
            body.into_bytes(),
        )
        .await;
        tries += 1;
        assert_eq!(status, 403, "completion with {headers:?}");
        assert!(complete_upload(&complete, &[etag]).await >= 400);
        assert!(app.server(PRIMARY).object(&key).is_none(), "{headers:?}");

        // The attacker's own download URL.
        let url = download_url(&app, &attacker, own_id).await;
        let (status, answer) = send(reqwest::Method::GET, &url, &headers, Vec::new()).await;
        tries += 1;
        leak(&answer, "a download");
        assert_eq!(status, 403, "download with {headers:?}");
    }

    // A wrong method on each URL: a signature is for one method.
    let (_, url) = app.upload_url(&attacker).await;
    let download = download_url(&app, &attacker, own_id).await;
    for (method, url) in [
        (reqwest::Method::GET, url.clone()),
        (reqwest::Method::DELETE, url.clone()),
        (reqwest::Method::POST, url),
        (reqwest::Method::PUT, download.clone()),
        (reqwest::Method::DELETE, download),
    ] {
        let (status, answer) = send(method.clone(), &url, &[], bytes_of(10, 3)).await;
        tries += 1;
        leak(&answer, "a wrong method");
        assert_eq!(status, 403, "{method} on a URL signed for another");
    }

    // The victim's object, by id, key or URL, stays the victim's.
    let a = app
        .get(&format!("/files/{victim_id}/download"), Some(&attacker))
        .await;
    tries += 1;
    assert!(a.status == 404 || a.status == 403, "{}", a.body);
    let report = app
        .report(&attacker, &victim_key, secret.len() as u64)
        .await;
    tries += 1;
    assert!(report.status >= 400, "{}", report.body);

    let after = snapshot(&app);
    let changed = before.len().abs_diff(after.len())
        + before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(changed, 0, "a stored file changed");
    let victim_url = download_url(&app, &victim, victim_id).await;
    let served = reqwest::get(&victim_url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(served == secret, "the victim's object changed");
    assert_eq!(leaked, 0, "bytes read across users");
    if engine == Engine::Sqlite {
        Reliability {
            fault: "hostile client: every issued URL with unsigned x-amz-* headers (copy source, metadata, class, tags), a wrong method, another user's key",
            injections: tries,
            checked: before.len(),
            lost: usize::from(served != secret),
            stuck: usize::try_from(app.unverified_copies().await).unwrap(),
            note: &format!("bytes read across users: {leaked}; stored files changed: {changed}"),
        }
        .record();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_issued_url_reaches_another_users_bytes_sqlite() {
    no_issued_url_reaches_another_users_bytes(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_issued_url_reaches_another_users_bytes_postgres() {
    no_issued_url_reaches_another_users_bytes(Engine::Postgres).await;
}

/// The stored objects of `server` (no record files, no folders), by key.
fn objects(server: &S3Server) -> Vec<String> {
    let mut files = Vec::new();
    walk(
        &server.root.join(&server.bucket),
        &server.root.join(&server.bucket),
        &mut files,
    );
    files.into_iter().map(|(name, _)| name).collect()
}

/// The record files (ETag, metadata) the store keeps beside its buckets.
fn records(server: &S3Server) -> Vec<String> {
    std::fs::read_dir(&server.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".bucket-"))
        .collect()
}

/// A server holding `1/x`, written with its own keys: (its folder, server, signer,
/// the bytes).
async fn server_with_an_object() -> (tempfile::TempDir, S3Server, Signer, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(&dir.path().join("s3"), PRIMARY).await;
    let s3 = Signer::new(&server);
    let good = bytes_of(3000, 1);
    assert_eq!(s3.put("1/x", &[], good.clone()).await.0, 200);
    (dir, server, s3, good)
}

/// With the server's own keys, a key that names a stored object another way is
/// refused with a 400, not written beside it (its HEAD would answer the old ETag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_canonical_key_is_refused_and_changes_nothing() {
    let (_dir, server, s3, good) = server_with_an_object().await;
    let mut tries = 0;
    for key in ["1//x", "/1/x", "1/x/", "1/x//"] {
        let (status, _, body) = s3.put(key, &[], bytes_of(3000, 2)).await;
        tries += 1;
        assert_eq!(status, 400, "PUT {key:?}: {body}");
        assert!(body.contains("InvalidArgument"), "{body}");
        assert_eq!(s3.get(key).await.0, 400, "GET {key:?}");
        assert_eq!(s3.delete(key).await.0, 400, "DELETE {key:?}");
        tries += 2;
    }
    let stored = s3.get("1/x").await;
    let lost = usize::from(stored != (200, md5_hex(&good), good.clone()));
    assert_eq!(lost, 0, "the object changed");
    assert_eq!(objects(&server), ["1/x"]);
    Reliability {
        fault: "hostile client with the server's keys: non-canonical keys (1//x, /1/x, 1/x/) on PUT, GET, DELETE",
        injections: tries,
        checked: 1,
        lost,
        stuck: 0,
        note: "bytes read across users: 0; answered 400, nothing written",
    }
    .record();
}

/// A bucket with objects in it is not deleted (BucketNotEmpty); an empty one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_with_objects_is_not_deleted() {
    let (_dir, server, s3, good) = server_with_an_object().await;
    let (status, body) = s3.delete_bucket().await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("BucketNotEmpty"), "{body}");
    let lost = usize::from(s3.get("1/x").await.2 != good);
    assert_eq!(lost, 0, "the bucket's object went");
    assert_eq!(s3.delete("1/x").await.0, 204);
    assert_eq!(s3.delete_bucket().await.0, 204, "an empty bucket goes");
    assert!(!server.root.join(PRIMARY).exists());
    assert_eq!(s3.create_bucket().await.0, 200);
    Reliability {
        fault: "hostile client with the server's keys: DeleteBucket on a bucket with objects",
        injections: 1,
        checked: 1,
        lost,
        stuck: 0,
        note: "answered 409 BucketNotEmpty",
    }
    .record();
}

/// An object whose key is another's folder is a 409, both ways, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_another_objects_folder_is_a_conflict_not_a_500() {
    let (_dir, _server, s3, good) = server_with_an_object().await;
    let (status, _, body) = s3.put("1/x/y", &[], bytes_of(10, 3)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(s3.put("2/a/b", &[], bytes_of(10, 4)).await.0, 200);
    let (status, _, body) = s3.put("2/a", &[], bytes_of(10, 5)).await;
    assert_eq!(status, 409, "{body}");
    let create =
        rusty_s3::actions::CreateMultipartUpload::new(&s3.bucket, Some(&s3.credentials), "2/a");
    let created = reqwest::Client::new()
        .post(rusty_s3::S3Action::sign(&create, crate::embedded::TTL))
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        409,
        "a multipart upload of a folder's name"
    );
    assert_eq!(s3.get("2/a/b").await.2, bytes_of(10, 4));
    assert_eq!(s3.get("1/x").await.2, good);
    // Once its objects are deleted, a folder's name is free for an object.
    assert_eq!(s3.delete("2/a/b").await.0, 204);
    assert_eq!(s3.put("2/a", &[], bytes_of(10, 5)).await.0, 200);
}

/// A completion repeated after it succeeded (a lost answer, retried) answers 200 with
/// the same ETag, as S3 does; a part or completion for another key than the upload's
/// is NoSuchUpload, and writes nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_is_bound_to_its_key_and_answers_again_when_repeated() {
    let (_dir, server, s3, _) = server_with_an_object().await;
    let mut tries = 0;
    let id = s3.create_upload("3/m").await;
    let parts = [bytes_of(5 * MIB, 6), bytes_of(7, 7)];
    let (status, _, body) = s3.put_part("3/other", &id, 1, parts[0].clone()).await;
    tries += 1;
    assert_eq!(status, 404, "a part for another key: {body}");
    assert!(body.contains("NoSuchUpload"), "{body}");
    let etags = s3.put_parts("3/m", &id, &parts).await;
    let (status, _, body) = s3.complete("3/stolen", &id, &etags).await;
    tries += 1;
    assert_eq!(status, 404, "a completion under another key: {body}");
    assert_eq!(s3.head("3/stolen").await.0, 404);
    let (status, _, body) = s3.complete("3/m", &id, &etags).await;
    assert_eq!(status, 200, "{body}");
    let first = s3.head("3/m").await.1;
    assert!(first.ends_with("-2"), "{first}");
    for _ in 0..2 {
        let (status, _, body) = s3.complete("3/m", &id, &etags).await;
        tries += 1;
        assert_eq!(status, 200, "a repeated completion: {body}");
        assert!(body.contains(&first), "{body}");
    }
    let (status, _, _) = s3.complete("3/stolen", &id, &etags).await;
    tries += 1;
    assert_eq!(status, 404);
    let whole = [parts[0].as_slice(), parts[1].as_slice()].concat();
    let lost = usize::from(server.object("3/m").as_ref() != Some(&whole));
    assert_eq!(lost, 0);
    assert!(server.object("3/stolen").is_none() && server.object("3/other").is_none());
    // Once the object is replaced, the old upload's completion is gone for good.
    assert_eq!(s3.put("3/m", &[], bytes_of(10, 8)).await.0, 200);
    assert_eq!(s3.complete("3/m", &id, &etags).await.0, 404);
    Reliability {
        fault: "hostile client with the server's keys: a part and a completion under another key than the upload's; a repeated completion",
        injections: tries,
        checked: 1,
        lost,
        stuck: 0,
        note: "another key: 404 NoSuchUpload, nothing written; repeated: 200 with the first ETag",
    }
    .record();
}

/// A deleted object takes its records (ETag, metadata) and emptied folders with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_object_leaves_no_record_behind() {
    let (_dir, server, s3, _) = server_with_an_object().await;
    assert_eq!(
        s3.put("2/a/b", &[("content-type", "image/png")], bytes_of(10, 4))
            .await
            .0,
        200
    );
    let id = s3.create_upload("3/m").await;
    let etags = s3.put_parts("3/m", &id, &[bytes_of(10, 6)]).await;
    assert_eq!(s3.complete("3/m", &id, &etags).await.0, 200);
    assert!(records(&server).len() >= 3, "{:?}", records(&server));
    assert_eq!(s3.delete("1/x").await.0, 204);
    // DeleteObjects, as object_store's bulk delete sends it.
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(format!("http://{}", server.addr))
        .with_allow_http(true)
        .with_region("eu-central-2")
        .with_bucket_name(PRIMARY)
        .with_access_key_id(&server.key)
        .with_secret_access_key(&server.secret)
        .build()
        .unwrap();
    let paths =
        futures_util::stream::iter(["2/a/b", "3/m"].map(|k| Ok(object_store::path::Path::from(k))));
    let deleted: Vec<_> = object_store::ObjectStore::delete_stream(&store, Box::pin(paths))
        .collect()
        .await;
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    assert_eq!(
        records(&server),
        Vec::<String>::new(),
        "records left behind"
    );
    assert_eq!(objects(&server), Vec::<String>::new());
    let folders: Vec<_> = std::fs::read_dir(server.root.join(PRIMARY))
        .unwrap()
        .collect();
    assert!(
        folders.is_empty(),
        "emptied folders left behind: {folders:?}"
    );
}

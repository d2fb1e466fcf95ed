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
            across_users: Some(leaked as u64),
            note: &format!("stored files changed: {changed}"),
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
        across_users: None,
        note: "answered 400, nothing written",
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
        across_users: None,
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
    // A small body: the server refuses before it reads one, and a large body could
    // meet a closed connection instead of the answer.
    let (status, _, body) = s3.put_part("3/other", &id, 1, parts[1].clone()).await;
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
        across_users: None,
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

/// A signed `ListObjectsV2` of `bucket` on the server at `addr` with `key`/`secret`;
/// its status, or `None` when nothing answers there.
async fn list_with(addr: &str, bucket: &str, key: &str, secret: &str) -> Option<u16> {
    let endpoint = format!("http://{addr}").parse().unwrap();
    let bucket = rusty_s3::Bucket::new(
        endpoint,
        rusty_s3::UrlStyle::Path,
        bucket.to_owned(),
        "eu-central-2",
    )
    .unwrap();
    let credentials = rusty_s3::Credentials::new(key, secret);
    let url = rusty_s3::S3Action::sign(
        &rusty_s3::actions::ListObjectsV2::new(&bucket, Some(&credentials)),
        crate::embedded::TTL,
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// The embedded server's address, from an upload URL museum issues.
async fn embedded_addr(base: &str, token: &str) -> String {
    let urls: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/files/upload-urls?count=1"))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = reqwest::Url::parse(urls["urls"][0]["url"].as_str().unwrap()).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
}

/// The shipped keys unlock nothing: the embedded default makes its own on its first
/// start and keeps them under `data/s3/` (0600). It listens on loopback, so other host
/// addresses reach nothing; on an address other hosts can reach, it starts only with
/// keys the operator set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_makes_its_own_keys_and_opens_to_other_hosts_only_with_the_operators()
{
    use crate::binary::{Killed, create_token, free_port, museum, wait_for_ping};
    use std::process::Stdio;
    let dir = crate::binary::checkout_copy();
    let (api, metrics) = (free_port(), free_port());
    let serve = |envs: &[(String, String)]| {
        let mut cmd = museum(dir.path(), api, metrics);
        for (name, value) in envs {
            cmd.env(name, value);
        }
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let child = Killed(serve(&[]));
    let base = format!("http://127.0.0.1:{api}");
    wait_for_ping(&base).await;
    let token = create_token(dir.path(), api, metrics, 9);
    let addr = embedded_addr(&base, &token).await;
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let bytes = crate::helpers::bytes_of(2048, 5);
    let client = reqwest::Client::new();
    let (_, object) = crate::binary::upload(&client, &base, &token, &bytes).await;
    let stored = dir.path().join("data/s3").join(PRIMARY).join(&object);
    let mut tries = 0;

    let shipped = list_with(&addr, PRIMARY, "museum-local", "museum-local-secret").await;
    tries += 1;
    assert_eq!(
        shipped,
        Some(403),
        "the shipped keys opened the embedded server"
    );
    let kept = dir.path().join("data/s3/.museum-keys");
    let pair: serde_json::Value = serde_json::from_slice(&std::fs::read(&kept).unwrap()).unwrap();
    let (key, secret) = (
        pair["key"].as_str().unwrap().to_owned(),
        pair["secret"].as_str().unwrap().to_owned(),
    );
    assert_eq!(list_with(&addr, PRIMARY, &key, &secret).await, Some(200));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the kept keys are the owner's only");
    // Another host address of this machine reaches nothing, keys or not.
    let other = format!("127.0.0.2:{port}");
    assert_eq!(list_with(&other, PRIMARY, &key, &secret).await, None);
    tries += 1;
    drop(child);

    // Every interface, with the shipped or generated keys: refused, naming the keys.
    let open = (
        "ENTE_S3_EMBEDDED_ADDRESS".to_owned(),
        "0.0.0.0:0".to_owned(),
    );
    let mut refused = serve(std::slice::from_ref(&open));
    let exit = tokio::task::spawn_blocking(move || {
        let status = refused.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(refused.stderr.as_mut().unwrap(), &mut err).unwrap();
        (status, err)
    });
    let (status, err) = tokio::time::timeout(std::time::Duration::from_secs(30), exit)
        .await
        .expect("museum started on every interface with keys it did not get from the operator")
        .unwrap();
    tries += 1;
    assert!(!status.success());
    assert!(err.contains("s3.b2-eu-cen.key/secret"), "{err}");
    assert!(err.contains("s3.embedded-address"), "{err}");
    assert!(!err.contains(&secret), "the kept secret reached the logs");

    // With the operator's own keys it starts there, and answers other addresses.
    let own_secret = "an-operator-secret-of-some-length".to_owned();
    let mut envs = vec![open];
    for id in ["B2_EU_CEN", "WASABI_EU_CENTRAL_2_V3", "SCW_EU_FR_V3"] {
        envs.push((format!("ENTE_S3_{id}_KEY"), "operator".to_owned()));
        envs.push((format!("ENTE_S3_{id}_SECRET"), own_secret.clone()));
    }
    let child = Killed(serve(&envs));
    wait_for_ping(&base).await;
    let addr = embedded_addr(&base, &token).await;
    let port = addr.rsplit(':').next().unwrap();
    let other = format!("127.0.0.2:{port}");
    assert_eq!(
        list_with(&other, PRIMARY, "operator", &own_secret).await,
        Some(200)
    );
    for (key, secret) in [
        ("museum-local", "museum-local-secret"),
        (key.as_str(), secret.as_str()),
    ] {
        tries += 1;
        assert_eq!(list_with(&other, PRIMARY, key, secret).await, Some(403));
    }
    drop(child);
    let lost = usize::from(std::fs::read(&stored).ok() != Some(bytes));
    assert_eq!(lost, 0, "the object changed");
    Reliability {
        fault: "the embedded default's shipped keys, from this host and from another host address",
        injections: tries,
        checked: 1,
        lost,
        stuck: 0,
        across_users: None,
        note: "shipped keys: 403; another address on the default: no answer; every interface without the operator's keys: refused to start",
    }
    .record();
}

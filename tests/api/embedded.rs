//! The embedded S3 server's write path: a refused PUT or part upload leaves what was
//! stored as it was (through museum's API, then the bytes, the report, the download
//! and the copies), and everything the server acknowledges is synced to disk, file and
//! folder, before it answers (the real binary under strace).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusty_s3::S3Action;
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CreateBucket, CreateMultipartUpload,
    DeleteBucket, DeleteObject, GetObject, HeadObject, ListObjectsV2, PutObject, UploadPart,
};
use serde_json::{Value, json};

use crate::binary::{BIN, checkout_copy, create_token, free_port, wait_for_ping, with_museum_env};
use crate::helpers::{
    Engine, S3Server, TestApp, bytes_of, complete_upload, md5_b64, put, spawn_app,
};
use crate::reliability::{count_losses, record};

const MIB: usize = 1024 * 1024;

/// PUTs `bytes` with a Content-MD5 header; returns the status, the ETag and the body.
async fn put_with_md5(url: &str, bytes: Vec<u8>, md5: &str) -> (u16, Option<String>, String) {
    let r = reqwest::Client::new()
        .put(url)
        .header("content-md5", md5)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let etag = r
        .headers()
        .get("etag")
        .map(|e| e.to_str().unwrap().to_owned());
    (status, etag, r.text().await.unwrap())
}

/// Object `id`'s bytes as museum serves them (the redirect followed).
async fn download(app: &TestApp, token: &str, id: i64) -> Vec<u8> {
    let r = app
        .client
        .get(format!("{}/files/{id}/download", app.address))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "download of object {id}");
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_put_leaves_the_stored_object_as_it_was() {
    let app = spawn_app(Engine::Sqlite).await;
    let token = app.token_for(1).await;
    let right = bytes_of(100_000, 41);
    let mut other = right.clone();
    other[12_345] ^= 0x5a;
    let md5 = md5_b64(&right);
    let (key, url) = app.signed_upload_url(&token, &right).await;

    assert_eq!(put(&url, right.clone(), Some(&md5)).await, 200);
    let (status, _, body) = put_with_md5(&url, other, &md5).await;
    assert_eq!(
        status, 400,
        "other bytes under the signed Content-MD5: {body}"
    );
    assert!(body.contains("BadDigest"), "{body}");
    assert!(
        app.server("b2-eu-cen").object(&key).as_deref() == Some(right.as_slice()),
        "the refused PUT replaced the stored object"
    );

    let a = app.report(&token, &key, right.len() as u64).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.body["file"]["id"].as_i64().unwrap();
    assert!(
        download(&app, &token, id).await == right,
        "the download serves the refused bytes"
    );
    app.drain().await;
    let after = count_losses(&app, &[(id, key, right)]).await;
    record(
        "a PUT of other bytes under the same signed length and Content-MD5, after the right one (embedded S3)",
        1,
        &after,
        "refused with 400 BadDigest; the stored object, its report, download and copies unchanged",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_part_upload_leaves_the_stored_part_as_it_was() {
    let app = spawn_app(Engine::Sqlite).await;
    let token = app.token_for(1).await;
    let parts = [bytes_of(5 * MIB, 42), bytes_of(1000, 43)];
    let md5s: Vec<String> = parts.iter().map(|p| md5_b64(p)).collect();
    let whole = [parts[0].as_slice(), parts[1].as_slice()].concat();
    let a = app
        .post(
            "/files/multipart-upload-url",
            &token,
            &json!({"contentLength": whole.len(), "partLength": 5 * MIB, "partMd5s": md5s}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let key = a.body["objectKey"].as_str().unwrap().to_owned();
    let part_url = |i: usize| a.body["partURLs"][i].as_str().unwrap().to_owned();
    let upload_id = url::Url::parse(&part_url(0))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "uploadId")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    // Where s3s-fs keeps a part until the upload completes.
    let stored_part = app
        .server("b2-eu-cen")
        .root
        .join(format!(".upload_id-{upload_id}.part-1"));

    let (status, first, body) = put_with_md5(&part_url(0), parts[0].clone(), &md5s[0]).await;
    assert_eq!(status, 200, "{body}");
    let mut other = parts[0].clone();
    other[777] ^= 1;
    let (status, _, body) = put_with_md5(&part_url(0), other, &md5s[0]).await;
    assert_eq!(
        status, 400,
        "a part of other bytes under the signed Content-MD5: {body}"
    );
    assert!(body.contains("BadDigest"), "{body}");
    assert!(
        std::fs::read(&stored_part).ok().as_deref() == Some(parts[0].as_slice()),
        "the refused part upload replaced the stored part"
    );
    let (status, second, body) = put_with_md5(&part_url(1), parts[1].clone(), &md5s[1]).await;
    assert_eq!(status, 200, "{body}");
    let completed = complete_upload(
        a.body["completeURL"].as_str().unwrap(),
        &[first.unwrap(), second.unwrap()],
    )
    .await;
    assert_eq!(completed, 200);
    assert!(
        app.server("b2-eu-cen").object(&key).as_deref() == Some(whole.as_slice()),
        "the completed object is not the parts that were accepted"
    );

    let a = app.report(&token, &key, whole.len() as u64).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.body["file"]["id"].as_i64().unwrap();
    assert!(download(&app, &token, id).await == whole);
    app.drain().await;
    let after = count_losses(&app, &[(id, key, whole)]).await;
    record(
        "a part upload of other bytes under the same signed length and Content-MD5, after the right one (embedded S3)",
        1,
        &after,
        "refused with 400 BadDigest; the stored part unchanged, the completed object right",
    );
}

/// One system call in strace's log: its name, its arguments and result as printed,
/// and the log lines where it started and where it returned.
#[derive(Debug)]
struct Call {
    name: String,
    args: String,
    start: usize,
    end: usize,
}

/// The calls of an `strace -f` log (one line per call, or an `<unfinished ...>` line
/// and a `<... resumed>` line when threads interleave), in the order they started.
fn parse_strace(log: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut pending: HashMap<&str, Call> = HashMap::new();
    for (i, line) in log.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            if let Some(mut call) = pending.remove(pid) {
                call.end = i;
                call.args
                    .push_str(resumed.split_once("resumed>").map_or("", |r| r.1));
                calls.push(call);
            }
        } else if let Some((name, args)) = rest.split_once('(') {
            let call = Call {
                name: name.to_owned(),
                args: args.to_owned(),
                start: i,
                end: i,
            };
            if let Some(args) = args.strip_suffix("<unfinished ...>") {
                pending.insert(
                    pid,
                    Call {
                        args: args.to_owned(),
                        ..call
                    },
                );
            } else {
                calls.push(call);
            }
        }
    }
    calls.sort_by_key(|c| c.start);
    calls
}

/// The quoted strings among a call's arguments (the paths of rename and mkdir).
fn quoted(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => s.extend(chars.next()),
                '"' => break,
                c => s.push(c),
            }
        }
        out.push(s);
    }
    out
}

/// The path strace (`-yy`) prints for a call's first argument, a file descriptor.
fn fd_path(args: &str) -> Option<&str> {
    let open = args.find('<')?;
    let close = open + args[open..].find('>')?;
    Some(&args[open + 1..close])
}

fn is_sync(call: &Call, path: &Path) -> bool {
    (call.name == "fsync" || call.name == "fdatasync")
        && call.args.trim_end().ends_with("= 0")
        && fd_path(&call.args).is_some_and(|p| Path::new(p) == path)
}

/// Checks every successful answer of the S3 server listening on `port`: each
/// successful rename and mkdir since its previous answer must be durable before it — the renamed file
/// synced under its temporary name before the rename, and the folder of each new name
/// synced after the rename or mkdir, before the answer. Returns the problems, and the
/// names renamed to before an answer.
fn check_durable_answers(calls: &[Call], port: u16, cwd: &Path) -> (Vec<String>, Vec<PathBuf>) {
    let socket = format!("<TCP:[127.0.0.1:{port}->");
    let resolve = |p: &str| cwd.join(p);
    let mut problems = Vec::new();
    let mut renamed = Vec::new();
    let mut since = 0;
    for answer in calls.iter().filter(|c| {
        ["write", "writev", "sendto", "sendmsg"].contains(&c.name.as_str())
            && c.args.contains(&socket)
            && c.args.contains("\"HTTP/1.1 ")
    }) {
        let window = since..answer.start;
        since = answer.start;
        if !answer.args.contains("\"HTTP/1.1 2") {
            continue;
        }
        for call in calls.iter().filter(|c| {
            window.contains(&c.start) && c.end < answer.start && c.args.trim_end().ends_with("= 0")
        }) {
            let paths = quoted(&call.args);
            let (temporary, new) = match call.name.as_str() {
                "rename" | "renameat" | "renameat2" if paths.len() >= 2 => {
                    (Some(resolve(&paths[0])), resolve(&paths[1]))
                }
                "mkdir" | "mkdirat" if !paths.is_empty() => (None, resolve(&paths[0])),
                _ => continue,
            };
            if let Some(temporary) = &temporary {
                renamed.push(new.clone());
                if !calls
                    .iter()
                    .any(|s| s.end < call.start && is_sync(s, temporary))
                {
                    problems.push(format!(
                        "{} was renamed to {} without being synced first (log line {})",
                        temporary.display(),
                        new.display(),
                        call.start + 1
                    ));
                }
            }
            let folder = new.parent().unwrap();
            if !calls
                .iter()
                .any(|s| s.start > call.end && s.end < answer.start && is_sync(s, folder))
            {
                problems.push(format!(
                    "the folder {} was not synced between the {} of {} (log line {}) and the answer (log line {})",
                    folder.display(),
                    call.name,
                    new.display(),
                    call.start + 1,
                    answer.start + 1
                ));
            }
        }
    }
    (problems, renamed)
}

/// museum under `strace -f`, killed (with strace) if the test ends early.
struct Traced {
    strace: Child,
}

impl Traced {
    /// The museum process strace started.
    fn museum_pid(&self) -> Option<String> {
        let pid = self.strace.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()
            .map(str::to_owned)
    }

    /// Stops museum with SIGTERM and waits for strace to finish its log.
    fn stop(mut self) {
        let pid = self.museum_pid().expect("museum runs under strace");
        assert!(Command::new("kill").arg(&pid).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.strace.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "museum did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Some(pid) = self.museum_pid() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_syncs_what_it_acknowledges_before_answering() {
    let dir = checkout_copy();
    let (api, metrics) = (free_port(), free_port());
    let token = create_token(dir.path(), api, metrics, 5);
    let log = dir.path().join("strace.log");
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-qq", "-yy", "--seccomp-bpf", "-s", "16"])
        .args(["-e", "signal=none"])
        .args([
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat,write,writev,sendto,sendmsg",
        ])
        .arg("-o")
        .arg(&log)
        .arg(BIN);
    let child = with_museum_env(strace, dir.path(), api, metrics)
        .env("ENTE_REPLICATION_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace runs museum (.ci/test installs it)");
    let traced = Traced { strace: child };
    let base = format!("http://127.0.0.1:{api}");
    wait_for_ping(&base).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .header("X-Auth-Token", &token)
            .json(&body)
            .send()
    };

    // One PUT, then a multipart upload: two parts and the completion.
    let bytes = bytes_of(300_000, 44);
    let single: Value = post(
        "/files/upload-url",
        json!({"contentLength": bytes.len(), "contentMD5": md5_b64(&bytes)}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    // The embedded server listens on a port of its choosing, which its URLs name.
    let s3 = url::Url::parse(single["url"].as_str().unwrap())
        .unwrap()
        .port()
        .unwrap();
    let (status, _, body) = put_with_md5(
        single["url"].as_str().unwrap(),
        bytes.clone(),
        &md5_b64(&bytes),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let parts = [bytes_of(5 * MIB, 45), bytes_of(10, 46)];
    let md5s: Vec<String> = parts.iter().map(|p| md5_b64(p)).collect();
    let multi: Value = post(
        "/files/multipart-upload-url",
        json!({"contentLength": 5 * MIB + 10, "partLength": 5 * MIB, "partMd5s": md5s}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let mut etags = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let url = multi["partURLs"][i].as_str().unwrap();
        let (status, etag, body) = put_with_md5(url, part.clone(), &md5s[i]).await;
        assert_eq!(status, 200, "{body}");
        etags.push(etag.unwrap());
    }
    let complete = multi["completeURL"].as_str().unwrap();
    assert_eq!(complete_upload(complete, &etags).await, 200);
    traced.stop();

    let root = dir.path().join("data/s3").canonicalize().unwrap();
    let upload_id = url::Url::parse(complete)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "uploadId")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let expected = [
        root.join("b2-eu-cen")
            .join(single["objectKey"].as_str().unwrap()),
        root.join(format!(".upload_id-{upload_id}.part-1")),
        root.join(format!(".upload_id-{upload_id}.part-2")),
        root.join("b2-eu-cen")
            .join(multi["objectKey"].as_str().unwrap()),
    ];
    let calls = parse_strace(&std::fs::read_to_string(&log).unwrap());
    let (problems, renamed) =
        check_durable_answers(&calls, s3, &dir.path().canonicalize().unwrap());
    crate::helpers::Reliability {
        fault: "power cut after the embedded S3 server acknowledged a write (syncs watched with strace; no power cut injected)",
        injections: expected.len(),
        note: &format!(
            "{} files renamed into place without a sync of the file before or its folder after, before the answer",
            problems.len()
        ),
        ..Default::default()
    }
    .record();
    for path in &expected {
        assert!(
            renamed.contains(path),
            "no answered rename to {} in strace's log; renamed: {renamed:#?}",
            path.display()
        );
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Presigned requests to one bucket of an embedded server.
pub(crate) struct Signer {
    pub(crate) bucket: rusty_s3::Bucket,
    pub(crate) credentials: rusty_s3::Credentials,
}

impl Signer {
    pub(crate) fn new(server: &S3Server) -> Self {
        let endpoint = format!("http://{}", server.addr).parse().unwrap();
        Self {
            bucket: rusty_s3::Bucket::new(
                endpoint,
                rusty_s3::UrlStyle::Path,
                server.bucket.clone(),
                "eu-central-2",
            )
            .unwrap(),
            credentials: rusty_s3::Credentials::new(server.key.clone(), server.secret.clone()),
        }
    }

    /// A PUT of `key` with `headers` signed in; returns the status, ETag and body.
    pub(crate) async fn put(
        &self,
        key: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, String, String) {
        let mut action = PutObject::new(&self.bucket, Some(&self.credentials), key);
        for (name, value) in headers {
            action.headers_mut().insert(*name, *value);
        }
        let mut request = reqwest::Client::new().put(action.sign(TTL));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.body(body).send().await.unwrap()).await
    }

    /// Begins a multipart upload of `key`; its ID.
    pub(crate) async fn create_upload(&self, key: &str) -> String {
        let url = CreateMultipartUpload::new(&self.bucket, Some(&self.credentials), key).sign(TTL);
        let created = reqwest::Client::new().post(url).send().await.unwrap();
        let created =
            CreateMultipartUpload::parse_response(&created.text().await.unwrap()).unwrap();
        created.upload_id().to_owned()
    }

    /// Uploads `parts` as parts 1, 2, … of upload `id`; their ETags.
    pub(crate) async fn put_parts(&self, key: &str, id: &str, parts: &[Vec<u8>]) -> Vec<String> {
        let mut etags = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let number = u16::try_from(i + 1).unwrap();
            let url =
                UploadPart::new(&self.bucket, Some(&self.credentials), key, number, id).sign(TTL);
            let request = reqwest::Client::new().put(url).body(part.clone());
            let (status, etag, body) = answer(request.send().await.unwrap()).await;
            assert_eq!(status, 200, "{body}");
            etags.push(etag);
        }
        etags
    }

    /// Completes upload `id` of `key` with the parts `etags` name; the status, ETag
    /// and body.
    pub(crate) async fn complete(
        &self,
        key: &str,
        id: &str,
        etags: &[String],
    ) -> (u16, String, String) {
        let action = CompleteMultipartUpload::new(
            &self.bucket,
            Some(&self.credentials),
            key,
            id,
            etags.iter().map(String::as_str),
        );
        let request = reqwest::Client::new()
            .post(action.sign(TTL))
            .body(action.body());
        answer(request.send().await.unwrap()).await
    }

    /// `key`'s status, ETag and bytes.
    pub(crate) async fn get(&self, key: &str) -> (u16, String, Vec<u8>) {
        let url = GetObject::new(&self.bucket, Some(&self.credentials), key).sign(TTL);
        let r = reqwest::get(url).await.unwrap();
        let (status, etag) = (r.status().as_u16(), etag_of(&r));
        (status, etag, r.bytes().await.unwrap().to_vec())
    }

    /// `key`'s status, ETag and content type, as HEAD answers them.
    pub(crate) async fn head(&self, key: &str) -> (u16, String, String) {
        let url = HeadObject::new(&self.bucket, Some(&self.credentials), key).sign(TTL);
        let r = reqwest::Client::new().head(url).send().await.unwrap();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (r.status().as_u16(), etag_of(&r), content_type)
    }

    /// Deletes `key`; the status and body.
    pub(crate) async fn delete(&self, key: &str) -> (u16, String) {
        let url = DeleteObject::new(&self.bucket, Some(&self.credentials), key).sign(TTL);
        let (status, _, body) =
            answer(reqwest::Client::new().delete(url).send().await.unwrap()).await;
        (status, body)
    }

    /// Deletes the bucket itself; the status and body.
    pub(crate) async fn delete_bucket(&self) -> (u16, String) {
        let url = DeleteBucket::new(&self.bucket, &self.credentials).sign(TTL);
        let (status, _, body) =
            answer(reqwest::Client::new().delete(url).send().await.unwrap()).await;
        (status, body)
    }

    /// Creates the bucket; the status and body.
    pub(crate) async fn create_bucket(&self) -> (u16, String) {
        let url = CreateBucket::new(&self.bucket, &self.credentials).sign(TTL);
        let (status, _, body) = answer(reqwest::Client::new().put(url).send().await.unwrap()).await;
        (status, body)
    }

    /// Uploads `body` as part `number` of upload `id` of `key`; the status, ETag and body.
    pub(crate) async fn put_part(
        &self,
        key: &str,
        id: &str,
        number: u16,
        body: Vec<u8>,
    ) -> (u16, String, String) {
        let url = UploadPart::new(&self.bucket, Some(&self.credentials), key, number, id).sign(TTL);
        answer(
            reqwest::Client::new()
                .put(url)
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

pub(crate) const TTL: Duration = Duration::from_secs(600);

pub(crate) fn etag_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().trim_matches('"').to_owned())
        .unwrap_or_default()
}

pub(crate) async fn answer(r: reqwest::Response) -> (u16, String, String) {
    let (status, etag) = (r.status().as_u16(), etag_of(&r));
    (status, etag, r.text().await.unwrap())
}

pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(<md5::Md5 as md5::Digest>::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_write_path_keeps_the_s3_behaviour_museum_relies_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(&dir.path().join("s3"), "b2-eu-cen").await;
    let s3 = Signer::new(&server);
    let (a, b) = (bytes_of(3000, 1), bytes_of(2000, 2));

    // A PUT's ETag is its MD5; its content type is kept.
    let (status, etag, body) = s3
        .put("k/a", &[("content-type", "image/jpeg")], a.clone())
        .await;
    assert_eq!(
        (status, etag.as_str()),
        (200, md5_hex(&a).as_str()),
        "{body}"
    );
    assert_eq!(
        s3.head("k/a").await,
        (200, md5_hex(&a), "image/jpeg".to_owned())
    );

    // Replacing an object replaces its bytes, ETag and metadata together.
    assert_eq!(s3.put("k/a", &[], b.clone()).await.0, 200);
    assert_eq!(s3.get("k/a").await, (200, md5_hex(&b), b.clone()));
    assert_eq!(
        s3.head("k/a").await.2,
        "",
        "the old content type went with the old bytes"
    );

    // If-None-Match: * refuses an existing key; GLACIER is refused; neither writes.
    let (status, _, body) = s3.put("k/a", &[("if-none-match", "*")], a.clone()).await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(s3.get("k/a").await.2, b);
    let (status, _, body) = s3
        .put("k/g", &[("x-amz-storage-class", "GLACIER")], a.clone())
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidStorageClass"), "{body}");
    assert_eq!(s3.head("k/g").await.0, 404);

    // Server-side copy is refused, even signed: museum never asks for one.
    let (status, _, body) = s3
        .put("k/c", &[("x-amz-copy-source", "b2-eu-cen/k/a")], Vec::new())
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessDenied"), "{body}");
    assert_eq!(s3.head("k/c").await.0, 404);

    // Multipart: a completion naming a part by a wrong ETag is refused and keeps the
    // parts; the right one gives S3's multipart ETag.
    let upload_id = s3.create_upload("k/m").await;
    let parts = [bytes_of(5 * MIB, 3), bytes_of(7, 4)];
    let etags = s3.put_parts("k/m", &upload_id, &parts).await;
    let stale = [md5_hex(b"stale"), etags[1].clone()];
    let (status, _, body) = s3.complete("k/m", &upload_id, &stale).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidPart"), "{body}");
    assert_eq!(s3.head("k/m").await.0, 404);
    let (status, _, body) = s3.complete("k/m", &upload_id, &etags).await;
    assert_eq!(status, 200, "{body}");
    // A completed upload is gone: aborting it is 404 NoSuchUpload, as on S3.
    let abort =
        AbortMultipartUpload::new(&s3.bucket, Some(&s3.credentials), "k/m", &upload_id).sign(TTL);
    let (status, _, body) =
        answer(reqwest::Client::new().delete(abort).send().await.unwrap()).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NoSuchUpload"), "{body}");
    let whole = [parts[0].as_slice(), parts[1].as_slice()].concat();
    let digests: Vec<u8> = parts
        .iter()
        .flat_map(|p| <md5::Md5 as md5::Digest>::digest(p).to_vec())
        .collect();
    assert_eq!(
        s3.get("k/m").await,
        (200, format!("{}-2", md5_hex(&digests)), whole)
    );

    // Listings show the objects only: no staging file, no record beside them.
    let list = ListObjectsV2::new(&s3.bucket, Some(&s3.credentials)).sign(TTL);
    let listing = reqwest::get(list).await.unwrap().text().await.unwrap();
    let keys: Vec<&str> = listing
        .split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .collect();
    assert_eq!(keys, ["k/a", "k/m"], "{listing}");

    // What a crash leaves in the staging folder is gone after a restart.
    let staging = server.root.join(".museum-staging");
    std::fs::write(staging.join("left-by-a-crash.part"), b"x").unwrap();
    server.stop();
    server.restart().await;
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    assert_eq!(s3.get("k/a").await.2, b, "objects survive the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_lists_in_pages_in_key_order_and_folds_folders_at_a_slash() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(&dir.path().join("s3"), "b2-eu-cen").await;
    let s3 = Signer::new(&server);
    // "a-b" sorts before "a/c" though its file lies beside the folder "a".
    let keys = ["a-b", "a/c", "a/d/e", "a0", "u1/x", "u1/y", "u2/z", "z"];
    for key in keys.iter().rev() {
        assert_eq!(s3.put(key, &[], key.as_bytes().to_vec()).await.0, 200);
    }
    let list = |delimiter: Option<&'static str>, token: Option<String>, max: usize| {
        let mut action = ListObjectsV2::new(&s3.bucket, Some(&s3.credentials));
        if let Some(delimiter) = delimiter {
            action.with_delimiter(delimiter);
        }
        if let Some(token) = token {
            action.with_continuation_token(token);
        }
        action.with_max_keys(max);
        let url = action.sign(TTL);
        async move {
            let r = reqwest::get(url).await.unwrap();
            assert_eq!(r.status(), 200);
            ListObjectsV2::parse_response(&r.text().await.unwrap()).unwrap()
        }
    };

    // Page by page, three at a time: every key once, in key order, with its size.
    let (mut listed, mut token, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = list(None, token, 3).await;
        pages += 1;
        for object in &page.contents {
            assert_eq!(object.size, Some(object.key.len() as u64), "{}", object.key);
        }
        listed.extend(page.contents.into_iter().map(|o| o.key));
        token = page.next_continuation_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(listed, keys);
    assert_eq!(pages, 3);

    // An empty delimiter is none, as on S3.
    let page = list(Some(""), None, 1000).await;
    let all: Vec<String> = page.contents.into_iter().map(|o| o.key).collect();
    assert_eq!(all, keys);

    // A slash folds each folder into one prefix.
    let page = list(Some("/"), None, 1000).await;
    let objects: Vec<String> = page.contents.into_iter().map(|o| o.key).collect();
    let prefixes: Vec<String> = page.common_prefixes.into_iter().map(|p| p.prefix).collect();
    assert_eq!(objects, ["a-b", "a0", "z"]);
    assert_eq!(prefixes, ["a/", "u1/", "u2/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_changed_on_disk_after_its_upload_is_hashed_again_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(&dir.path().join("s3"), "b2-eu-cen").await;
    let s3 = Signer::new(&server);
    let upload_files = || {
        std::fs::read_dir(&server.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".upload_id-"))
            .collect::<Vec<_>>()
    };
    let parts = [bytes_of(5 * MIB, 5), bytes_of(1000, 6)];
    let upload = |key: &'static str| {
        let (s3, parts) = (&s3, &parts);
        async move {
            let id = s3.create_upload(key).await;
            let etags = s3.put_parts(key, &id, parts).await;
            (id, etags)
        }
    };

    // Untouched parts complete with S3's ETag, and leave nothing of the upload.
    let (id, etags) = upload("k/kept").await;
    assert_eq!(
        upload_files().len(),
        5,
        "two parts, two digests, the key the upload is for: {:?}",
        upload_files()
    );
    let (status, _, body) = s3.complete("k/kept", &id, &etags).await;
    assert_eq!(status, 200, "{body}");
    let whole = parts.concat();
    let digests: Vec<u8> = parts
        .iter()
        .flat_map(|p| <md5::Md5 as md5::Digest>::digest(p).to_vec())
        .collect();
    assert_eq!(
        s3.get("k/kept").await,
        (200, format!("{}-2", md5_hex(&digests)), whole)
    );
    assert!(upload_files().is_empty(), "{:?}", upload_files());

    // A part rewritten in place, same length, is no longer the file its digest
    // names: completion hashes it, and refuses the ETag of the bytes first sent.
    let (id, etags) = upload("k/rotted").await;
    let part = server.root.join(format!(".upload_id-{id}.part-1"));
    std::thread::sleep(Duration::from_millis(20));
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&part, &bytes).unwrap();
    let (status, _, body) = s3.complete("k/rotted", &id, &etags).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("InvalidPart"), "{body}");
    assert_eq!(s3.head("k/rotted").await.0, 404);
}

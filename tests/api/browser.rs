//! A real browser (headless Chromium) on another origin uploads through the real museum
//! binary on the embedded default exactly as Ente's web app does (/work/shared/ente-clients.md
//! §2, §3.1, §4, §7): CORS on the API and on the embedded S3 server, readable part ETags,
//! the web app's CompleteMultipartUpload body, `POST /files` as text/plain, a redirected
//! download, and every byte in all three buckets afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Html;
use axum::routing::{get, post};
use md5::{Digest, Md5};
use museum::config::BUCKET_IDS;
use serde_json::{Value, json};

use crate::binary::{Killed, checkout_copy, create_token, free_port, museum, wait_for_ping};
use crate::helpers::{PART_SIZE, bytes_of, md5_b64};

const WEB_PACKAGE: &str = "io.ente.photos.web";
const USER: i64 = 7;

/// The single-part file, its thumbnail, the multipart file (one full 5 MiB part and a
/// shorter last one) and its thumbnail: (length, seed of `bytes_of`).
const SINGLE: (usize, u8) = (1_234_584, 11);
const SINGLE_THUMB: (usize, u8) = (31_017, 12);
const MULTI: (usize, u8) = (PART_SIZE as usize + 1024 * 1024 + 7, 13);
const MULTI_THUMB: (usize, u8) = (24_581, 14);

/// How long the page may take to post its result.
const RESULT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long replication may take to fill the other two buckets.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The page's script. `CFG` (defined before it) carries the API origin, the token and
/// each object's length, seed and MD5s, which WebCrypto cannot compute.
const PAGE_JS: &str = r#"
const PKG = CFG.package;
const result = { ok: false, steps: [] };

// byte i = (i*31 + seed) & 255, as bytes_of() in the Rust test.
function bytesOf(len, seed) {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = ((i & 255) * 31 + seed) & 255;
  return b;
}
function b64(len, seed) {
  return btoa(String.fromCharCode(...bytesOf(len, seed)));
}
function api(path) {
  return CFG.api + path;
}
async function ensureOk(res, what) {
  if (!res.ok) {
    const text = (await res.text()).slice(0, 600);
    throw new Error(`${what}: HTTP ${res.status}: ${text}`);
  }
  return res;
}
async function step(name, fn) {
  const entry = { name };
  result.steps.push(entry);
  const start = performance.now();
  try {
    entry.detail = await fn();
    entry.ok = true;
    return entry.detail;
  } catch (e) {
    entry.ok = false;
    entry.error = `${e.name}: ${e.message}`;
    throw new Error(`step "${name}" failed: ${entry.error}`);
  } finally {
    entry.ms = Math.round(performance.now() - start);
  }
}

// Web v2 single part: POST /files/upload-url, then PUT with Content-MD5, no Content-Type.
async function singleUpload(obj) {
  const bytes = bytesOf(obj.size, obj.seed);
  const res = await fetch(api(`/files/upload-url?ts=${Date.now()}`), {
    method: "POST",
    headers: {
      "X-Auth-Token": CFG.token,
      "X-Client-Package": PKG,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({ contentLength: obj.size, contentMD5: obj.md5 }),
  });
  await ensureOk(res, "POST /files/upload-url");
  const u = await res.json();
  if (typeof u.objectKey !== "string" || typeof u.url !== "string")
    throw new Error(`not a bare {objectKey, url}: ${JSON.stringify(u)}`);
  const put = await fetch(u.url, {
    method: "PUT",
    headers: { "X-Client-Package": PKG, "Content-MD5": obj.md5 },
    body: bytes,
  });
  await ensureOk(put, "PUT to the presigned URL");
  return { objectKey: u.objectKey, putStatus: put.status };
}

// Web v2 multipart: POST /files/multipart-upload-url, PUT each part reading its ETag,
// then POST the web app's CompleteMultipartUpload XML to completeURL.
async function multipartUpload(obj) {
  const bytes = bytesOf(obj.size, obj.seed);
  const res = await fetch(api(`/files/multipart-upload-url?ts=${Date.now()}`), {
    method: "POST",
    headers: {
      "X-Auth-Token": CFG.token,
      "X-Client-Package": PKG,
      "Content-Type": "application/json",
    },
    body: JSON.stringify({
      contentLength: obj.size,
      partLength: obj.partLength,
      partMd5s: obj.partMd5s,
    }),
  });
  await ensureOk(res, "POST /files/multipart-upload-url");
  const u = await res.json();
  if (
    typeof u.objectKey !== "string" ||
    !Array.isArray(u.partURLs) ||
    typeof u.completeURL !== "string"
  )
    throw new Error(`not a bare {objectKey, partURLs, completeURL}: ${JSON.stringify(u)}`);
  if (u.partURLs.length !== obj.partMd5s.length)
    throw new Error(`${u.partURLs.length} part URLs for ${obj.partMd5s.length} parts`);
  const etags = [];
  const putStatuses = [];
  for (let i = 0; i < u.partURLs.length; i++) {
    const part = bytes.slice(i * obj.partLength, Math.min((i + 1) * obj.partLength, obj.size));
    const put = await fetch(u.partURLs[i], {
      method: "PUT",
      headers: { "X-Client-Package": PKG, "Content-MD5": obj.partMd5s[i] },
      body: part,
    });
    await ensureOk(put, `PUT part ${i + 1}`);
    const etag = put.headers.get("etag");
    if (etag === null)
      throw new Error(
        `part ${i + 1}: the ETag is not readable (Access-Control-Expose-Headers lacks ETag)`,
      );
    etags.push(etag);
    putStatuses.push(put.status);
  }
  const xml =
    "<CompleteMultipartUpload>\n" +
    etags
      .map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`)
      .join("\n") +
    "\n</CompleteMultipartUpload>";
  const done = await fetch(u.completeURL, {
    method: "POST",
    headers: { "Content-Type": "text/xml", "X-Client-Package": PKG },
    body: xml,
  });
  await ensureOk(done, "POST to completeURL");
  return { objectKey: u.objectKey, etags, putStatuses, completeStatus: done.status };
}

// POST /files as the web app sends it: no explicit Content-Type (text/plain).
async function report(file, fileSize, thumb, thumbSize, seed) {
  const body = {
    collectionID: 1,
    encryptedKey: b64(48, seed),
    keyDecryptionNonce: b64(24, seed + 1),
    file: { decryptionHeader: b64(24, seed + 2), objectKey: file, size: fileSize },
    thumbnail: { decryptionHeader: b64(24, seed + 3), objectKey: thumb, size: thumbSize },
    metadata: { encryptedData: b64(120, seed + 4), decryptionHeader: b64(24, seed + 5) },
  };
  const res = await fetch(api("/files"), {
    method: "POST",
    headers: { "X-Auth-Token": CFG.token, "X-Client-Package": PKG },
    body: JSON.stringify(body),
  });
  await ensureOk(res, "POST /files");
  const f = await res.json();
  for (const k of ["id", "collectionID", "ownerID", "updationTime"])
    if (typeof f[k] !== "number") throw new Error(`${k} is not a number: ${JSON.stringify(f)}`);
  for (const k of ["encryptedKey", "keyDecryptionNonce"])
    if (f[k] !== body[k]) throw new Error(`${k} did not come back as sent: ${JSON.stringify(f)}`);
  for (const k of ["file", "thumbnail", "metadata"])
    if (typeof f[k]?.decryptionHeader !== "string")
      throw new Error(`${k}.decryptionHeader is not a string: ${JSON.stringify(f)}`);
  if (f.file.objectKey !== file)
    throw new Error(`file.objectKey is not ${file}: ${JSON.stringify(f)}`);
  return { id: f.id, ownerID: f.ownerID, updationTime: f.updationTime };
}

// GET /files/{id}/download: museum redirects to a presigned GET on the bucket.
async function download(id, obj) {
  const res = await fetch(api(`/files/${id}/download`), {
    headers: { "X-Auth-Token": CFG.token, "X-Client-Package": PKG },
  });
  await ensureOk(res, `GET /files/${id}/download`);
  const got = new Uint8Array(await res.arrayBuffer());
  const want = bytesOf(obj.size, obj.seed);
  if (got.length !== want.length)
    throw new Error(`downloaded ${got.length} bytes, uploaded ${want.length}`);
  for (let i = 0; i < want.length; i++)
    if (got[i] !== want[i]) throw new Error(`downloaded bytes differ at offset ${i}`);
  return { status: res.status, redirected: res.redirected, bytes: got.length };
}

(async () => {
  try {
    const single = await step("single upload", () => singleUpload(CFG.single));
    const singleThumb = await step("single thumbnail upload", () =>
      singleUpload(CFG.singleThumb),
    );
    const singleFile = await step("single report", () =>
      report(single.objectKey, CFG.single.size, singleThumb.objectKey, CFG.singleThumb.size, 21),
    );
    const multi = await step("multipart upload", () => multipartUpload(CFG.multi));
    const multiThumb = await step("multipart thumbnail upload", () =>
      singleUpload(CFG.multiThumb),
    );
    const multiFile = await step("multipart report", () =>
      report(multi.objectKey, CFG.multi.size, multiThumb.objectKey, CFG.multiThumb.size, 41),
    );
    await step("single download", () => download(singleFile.id, CFG.single));
    await step("multipart download", () => download(multiFile.id, CFG.multi));
    result.keys = {
      single: single.objectKey,
      singleThumb: singleThumb.objectKey,
      multi: multi.objectKey,
      multiThumb: multiThumb.objectKey,
    };
    result.etags = multi.etags;
    result.files = [singleFile, multiFile];
    result.ok = true;
  } catch (e) {
    result.error = e.message;
  }
  await fetch("/result", { method: "POST", body: JSON.stringify(result) });
})();
"#;

/// Prints the logs of the processes under test if the test panics.
struct LogsOnFailure(Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for path in &self.0 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            // Headless Chromium without a session bus complains about D-Bus at length.
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains("dbus")).collect();
            let tail = lines[lines.len().saturating_sub(150)..].join("\n");
            eprintln!("----- {} (last 150 lines) -----\n{tail}", path.display());
        }
    }
}

/// Chromium and every process it started (its own process group), killed on drop.
struct Browser(Killed);

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
    }
}

fn chromium() -> PathBuf {
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.is_file() {
        return fixed.to_owned();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed (neither /usr/bin/chromium nor on PATH): \
                 .ci/test installs it (apt-get install chromium)"
            )
        })
}

fn launch_chromium(dir: &Path, url: &str, log: &Path) -> Browser {
    use std::os::unix::process::CommandExt as _;
    let profile = dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromium: {e} (.ci/test installs it)"));
    Browser(Killed(child))
}

/// Serves `html` at `/` on 127.0.0.2 (another origin than the API's 127.0.0.1) and
/// hands over every body POSTed to `/result`.
async fn serve_page(html: String) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let html: Arc<str> = html.into();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let html = html.clone();
                async move { Html(html.to_string()) }
            }),
        )
        .route(
            "/result",
            post(move |body: String| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(body);
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (origin, rx)
}

/// Waits for the page's result, failing early if Chromium exits.
async fn wait_for_result(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    browser: &mut Browser,
) -> Value {
    let deadline = Instant::now() + RESULT_TIMEOUT;
    loop {
        if let Ok(Some(body)) = tokio::time::timeout(Duration::from_millis(250), rx.recv()).await {
            return serde_json::from_str(&body).unwrap_or_else(|e| {
                panic!("the page posted a result that is not JSON ({e}): {body}")
            });
        }
        if let Some(exit) = browser.0.0.try_wait().unwrap() {
            panic!("chromium exited ({exit}) before the page posted its result");
        }
        assert!(
            Instant::now() < deadline,
            "the page posted no result within {} s: it never ran, or a fetch hung",
            RESULT_TIMEOUT.as_secs()
        );
    }
}

fn hex_md5(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_on_another_origin_uploads_single_and_multipart_objects_on_the_embedded_default()
{
    let started = Instant::now();
    let dir = checkout_copy();
    let museum_log = dir.path().join("museum.log");
    let chromium_log = dir.path().join("chromium.log");
    let _logs = LogsOnFailure(vec![museum_log.clone(), chromium_log.clone()]);

    let (api, metrics) = (free_port(), free_port());
    let token = create_token(dir.path(), api, metrics, USER);

    let serve = museum(dir.path(), api, metrics)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&museum_log).unwrap())
        .spawn()
        .unwrap();
    let _museum = Killed(serve);
    let base = format!("http://127.0.0.1:{api}");
    wait_for_ping(&base).await;

    let single = bytes_of(SINGLE.0, SINGLE.1);
    let single_thumb = bytes_of(SINGLE_THUMB.0, SINGLE_THUMB.1);
    let multi = bytes_of(MULTI.0, MULTI.1);
    let multi_thumb = bytes_of(MULTI_THUMB.0, MULTI_THUMB.1);
    let parts: Vec<&[u8]> = multi.chunks(PART_SIZE as usize).collect();
    assert_eq!(parts.len(), 2);
    let object = |(size, seed): (usize, u8), bytes: &[u8]| json!({"size": size, "seed": seed, "md5": md5_b64(bytes)});
    let cfg = json!({
        "api": base,
        "token": token,
        "package": WEB_PACKAGE,
        "single": object(SINGLE, &single),
        "singleThumb": object(SINGLE_THUMB, &single_thumb),
        "multiThumb": object(MULTI_THUMB, &multi_thumb),
        "multi": {
            "size": MULTI.0,
            "seed": MULTI.1,
            "partLength": PART_SIZE,
            "partMd5s": parts.iter().map(|p| md5_b64(p)).collect::<Vec<_>>(),
        },
    });
    let cfg = cfg.to_string().replace("</", "<\\/");
    // A script error would stop the page silently: report it as the result.
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>museum browser test</title>\
         <script>window.addEventListener(\"error\", e => fetch(\"/result\", {{method: \"POST\", \
         body: JSON.stringify({{ok: false, error: \"page error: \" + e.message}})}}));</script>\
         <script>const CFG = {cfg};</script><script>{PAGE_JS}</script></head><body></body></html>"
    );
    let (origin, mut results) = serve_page(html).await;
    assert_ne!(origin, format!("http://127.0.0.1:{api}"));

    let mut browser = launch_chromium(dir.path(), &format!("{origin}/"), &chromium_log);
    let result = wait_for_result(&mut results, &mut browser).await;
    drop(browser);
    let pretty = serde_json::to_string_pretty(&result).unwrap();
    assert_eq!(
        result["ok"], true,
        "the browser upload failed: {}\n{pretty}",
        result["error"]
    );
    println!("browser: the page's result: {pretty}");

    // The ETags the page read are S3's, quoted, and went into the XML verbatim.
    let etags: Vec<String> = parts
        .iter()
        .map(|p| format!("\"{}\"", hex_md5(p)))
        .collect();
    assert_eq!(result["etags"], json!(etags), "{pretty}");
    for file in result["files"].as_array().unwrap() {
        assert_eq!(file["ownerID"], USER, "{pretty}");
    }
    for name in ["single download", "multipart download"] {
        let step = result["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap();
        assert_eq!(
            step["detail"]["redirected"], true,
            "museum redirects downloads to the bucket: {pretty}"
        );
    }

    // Every object reaches every bucket, byte for byte.
    let keys = &result["keys"];
    let expected = [
        (keys["single"].as_str().unwrap(), &single),
        (keys["singleThumb"].as_str().unwrap(), &single_thumb),
        (keys["multi"].as_str().unwrap(), &multi),
        (keys["multiThumb"].as_str().unwrap(), &multi_thumb),
    ];
    let deadline = Instant::now() + REPLICATION_TIMEOUT;
    for bucket in BUCKET_IDS {
        for (key, bytes) in expected {
            let path = dir.path().join("data/s3").join(bucket).join(key);
            loop {
                if let Ok(stored) = std::fs::read(&path)
                    && &stored == bytes
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{bucket}/{key} does not hold the uploaded bytes after {} s",
                    REPLICATION_TIMEOUT.as_secs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    println!(
        "browser: uploads, downloads and replication verified in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

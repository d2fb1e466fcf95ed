//! The OpenAPI document: served at `/openapi.json`, committed as `openapi.json`, and
//! the whole API fuzzed from it by schemathesis against the real binary, without a
//! token and with one.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::binary::{
    Killed, checkout_copy, create_token, free_port, museum, unreported_upload, upload,
    wait_for_ping,
};
use crate::helpers::{Engine, bytes_of, md5_b64, put, spawn_app};
use crate::on_both_databases;

on_both_databases!(concurrent_deletes_all_succeed);

const REGENERATE: &str = "regenerate it with `cargo run -- openapi > openapi.json` and commit it";

fn committed() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {REGENERATE}", path.display()))
}

/// JSON pointers at which `a` and `b` differ, at most `limit` of them.
fn differences(a: &Value, b: &Value, at: &str, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let pointer = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => differences(v, w, &pointer, out, limit),
                    _ => out.push(pointer),
                }
            }
        }
        _ => out.push(at.to_owned()),
    }
}

/// Every route of the API router, as (method, OpenAPI path).
const ROUTES: [(&str, &str); 10] = [
    ("get", "/ping"),
    ("get", "/openapi.json"),
    ("get", "/files/upload-urls"),
    ("post", "/files/upload-url"),
    ("get", "/files/multipart-upload-urls"),
    ("post", "/files/multipart-upload-url"),
    ("post", "/files"),
    ("get", "/files/upload-eligibility"),
    ("delete", "/files/{id}"),
    ("get", "/files/{id}/download"),
];

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_openapi_json() {
    let app = spawn_app(Engine::Sqlite).await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET /openapi.json");
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "GET /openapi.json"
    );
    let served = response.text().await.unwrap();
    let committed = committed();
    if served.trim_end() != committed.trim_end() {
        let mut diff = Vec::new();
        match (
            serde_json::from_str::<Value>(&served),
            serde_json::from_str::<Value>(&committed),
        ) {
            (Ok(s), Ok(c)) => differences(&s, &c, "", &mut diff, 20),
            (_, Err(e)) => diff.push(format!("the committed file is not JSON: {e}")),
            (Err(e), _) => diff.push(format!("the served document is not JSON: {e}")),
        }
        panic!(
            "openapi.json differs from the document museum serves at {}; {REGENERATE}",
            if diff.is_empty() {
                "(formatting only)".to_owned()
            } else {
                diff.join(", ")
            }
        );
    }
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document: {}",
        doc["openapi"]
    );
    for (method, path) in ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{} {path} is not documented",
            method.to_uppercase()
        );
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["authToken"]["in"], "header", "{schemes}");
    assert_eq!(schemes["authToken"]["name"], "X-Auth-Token", "{schemes}");
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
}

#[test]
fn museum_openapi_prints_the_committed_document_without_a_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = museum(dir.path(), free_port(), free_port())
        .arg("openapi")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "museum openapi failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8(out.stdout).unwrap() == committed(),
        "`museum openapi` prints another document than openapi.json; {REGENERATE}"
    );
}

/// One schemathesis run's outcome.
struct Run {
    passed: bool,
    output: String,
    took: Duration,
}

/// Runs the schemathesis CLI with tests/api/schemathesis.toml (every check, a
/// response-time bound, a bounded number of cases) and `extra` settings against the
/// document museum serves at `base`, with `headers` on every request. Runs in a
/// temporary directory, so nothing it writes lands in the checkout.
fn schemathesis(base: &str, headers: &[String], extra: &str, seed: u32) -> Run {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/schemathesis.toml");
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("schemathesis.toml");
    let settings = std::fs::read_to_string(&committed).unwrap();
    std::fs::write(&config, format!("{settings}\n{extra}")).unwrap();
    let mut cmd = Command::new("schemathesis");
    cmd.current_dir(work.path())
        .arg("--no-color")
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--seed", &seed.to_string()])
        .stdin(Stdio::null());
    for header in headers {
        cmd.args(["--header", header]);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run schemathesis ({e}): install it with \
             `python3 -m pip install schemathesis` (.ci/test does)"
        )
    });
    Run {
        passed: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        took: started.elapsed(),
    }
}

/// The summary line saying how many test cases a run generated (it follows the
/// `Test cases:` heading).
fn cases_line(output: &str) -> &str {
    output
        .lines()
        .skip_while(|l| !l.contains("Test cases:"))
        .nth(1)
        .map_or("(no test case summary)", str::trim)
}

/// Settings that make schemathesis use ids and keys of real objects, so the report,
/// download and delete reach a HEAD on the bucket, a redirect and a deletion, not
/// only their 404s. Generated deletes all take the deletable id: a small random id
/// could delete the downloadable object.
fn real_objects(downloadable: i64, deletable: i64, unreported_key: &str) -> String {
    format!(
        r#"
[dictionaries]
downloadable = {{ values = [{downloadable}] }}
deletable = {{ values = [{deletable}] }}
keys = {{ values = [{unreported_key:?}] }}

[[operations]]
include-path = "/files/{{id}}/download"
include-method = "GET"
parameters = {{ "path.id" = {{ dictionary = "downloadable", probability = 0.5 }} }}

[[operations]]
include-path = "/files/{{id}}"
include-method = "DELETE"
parameters = {{ "path.id" = {{ dictionary = "deletable", probability = 1.0 }} }}

[[operations]]
include-path = "/files"
include-method = "POST"
parameters = {{ "body.file.objectKey" = {{ dictionary = "keys", probability = 0.5 }} }}
"#
    )
}

/// `museum_requests_total` from the metrics listener: (method, route, status, count).
async fn requests_by_status(metrics: u16) -> Vec<(String, String, String, u64)> {
    let text = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("museum_requests_total{"))
        .map(|line| {
            let (labels, count) = line.rsplit_once("} ").unwrap();
            let label = |name: &str| {
                let start = labels.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                let len = labels[start..].find('"').unwrap();
                labels[start..start + len].to_owned()
            };
            (
                label("method"),
                label("route"),
                label("status"),
                count.parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn schemathesis_finds_no_failure_in_the_whole_api_without_and_with_a_token() {
    let dir = checkout_copy();
    let (api, metrics) = (free_port(), free_port());
    let token = create_token(dir.path(), api, metrics, 42);
    // One fuzzer from one address sends thousands of requests, most with invalid
    // credentials on purpose: the rate limits (tested on their own in jwt.rs) would
    // answer 429 where schemathesis checks the authentication answer.
    let child = museum(dir.path(), api, metrics)
        .env("ENTE_RATE_LIMIT_FAILED_AUTH_PER_MINUTE", "0")
        .env("ENTE_RATE_LIMIT_UPLOAD_URLS_PER_MINUTE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serve = Killed(child);
    let base = format!("http://127.0.0.1:{api}");
    wait_for_ping(&base).await;

    let client = reqwest::Client::new();
    let (deletable, _) = upload(&client, &base, &token, b"deleted").await;
    let (downloadable, _) = upload(&client, &base, &token, b"kept").await;
    let unreported_key = unreported_upload(&client, &base, &token, b"to report").await;
    let objects = real_objects(downloadable, deletable, &unreported_key);

    let runs = [
        ("without a token", Vec::new(), String::new(), 1),
        (
            "with X-Auth-Token",
            vec![format!("X-Auth-Token: {token}")],
            objects,
            2,
        ),
    ];
    let mut failed = Vec::new();
    for (name, headers, extra, seed) in runs {
        let run = tokio::task::spawn_blocking({
            let base = base.clone();
            move || schemathesis(&base, &headers, &extra, seed)
        })
        .await
        .unwrap();
        eprintln!(
            "schemathesis {name}: {:.1} s, {}",
            run.took.as_secs_f64(),
            cases_line(&run.output)
        );
        if !run.passed {
            failed.push(format!("--- schemathesis {name} failed:\n{}", run.output));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));

    // museum's own count of every answer, those to requests outside the document
    // (other methods, OPTIONS) included: none was a 5xx, and the fuzzing reached the
    // real objects.
    let answers = requests_by_status(metrics).await;
    let total: u64 = answers.iter().map(|a| a.3).sum();
    eprintln!("museum answered {total} requests");
    let server_errors: Vec<_> = answers.iter().filter(|a| a.2.starts_with('5')).collect();
    let five_xx: u64 = server_errors.iter().map(|a| a.3).sum();
    crate::helpers::Reliability {
        fault: "requests generated from the OpenAPI document (schemathesis), without and with a token",
        injections: usize::try_from(total).unwrap_or(usize::MAX),
        note: &format!("{five_xx} answers were 5xx; every answer within 10 s"),
        ..Default::default()
    }
    .record();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    let count = |method: &str, route: &str, status: &str| -> u64 {
        answers
            .iter()
            .filter(|a| a.0 == method && a.1 == route && a.2 == status)
            .map(|a| a.3)
            .sum()
    };
    // The setup made three requests of its own: two reports, one upload-urls each.
    assert!(count("POST", "/files", "200") > 2, "{answers:?}");
    assert!(
        count("GET", "/files/{id}/download", "307") > 0,
        "{answers:?}"
    );
    assert!(count("DELETE", "/files/{id}", "200") > 0, "{answers:?}");
    let pong = reqwest::get(format!("{base}/ping")).await.unwrap();
    assert_eq!(pong.status(), 200, "museum still answers after the fuzzing");
}

#[tokio::test]
async fn integers_written_as_whole_floats_are_integers_in_every_body() {
    // JSON Schema, and so OpenAPI 3.1, counts `5.0` as the integer 5; a fraction is
    // still no integer.
    let app = spawn_app(Engine::Sqlite).await;
    let token = app.token_for(7).await;
    let bytes = bytes_of(5, 3);
    let md5 = md5_b64(&bytes);

    let signed = app
        .post(
            "/files/upload-url",
            &token,
            &json!({"contentLength": 5.0, "contentMD5": md5}),
        )
        .await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let url = signed.body["url"].as_str().unwrap();
    assert_eq!(put(url, bytes.clone(), Some(&md5)).await, 200);
    let key = signed.body["objectKey"].as_str().unwrap();
    let reported = app
        .post(
            "/files",
            &token,
            &json!({"file": {"objectKey": key, "size": 5.0}, "collectionID": 3.0}),
        )
        .await;
    assert_eq!(reported.status, 200, "{}", reported.body);
    assert_eq!(reported.body["file"]["size"], 5);
    assert_eq!(reported.body["collectionID"], 3);

    let multipart = app
        .post(
            "/files/multipart-upload-url",
            &token,
            &json!({"contentLength": 5.0, "partLength": 5e0, "partMd5s": [md5]}),
        )
        .await;
    assert_eq!(multipart.status, 200, "{}", multipart.body);

    for (path, body) in [
        (
            "/files/upload-url",
            json!({"contentLength": 5.5, "contentMD5": md5}),
        ),
        (
            "/files/upload-url",
            json!({"contentLength": 1e19, "contentMD5": md5}),
        ),
        ("/files", json!({"file": {"objectKey": key, "size": 4.9}})),
    ] {
        let refused = app.post(path, &token, &body).await;
        assert_eq!(refused.status, 400, "{path} {body}: {}", refused.body);
        assert_eq!(refused.body["code"], "INVALID_JSON", "{}", refused.body);
    }
}

async fn concurrent_deletes_all_succeed(engine: Engine) {
    // Each delete reads the file's thumbnail before it writes; on SQLite a read that
    // another writer overtook could not become a write, and the delete answered 503
    // DB_UNAVAILABLE (or 500) at once instead of waiting its turn.
    let app = spawn_app(engine).await;
    let token = app.token_for(5).await;
    let mut ids = Vec::new();
    for i in 0..24u8 {
        ids.push(app.upload(&token, &bytes_of(64, i)).await.0);
    }
    let deletes = ids.iter().map(|id| {
        app.client
            .delete(format!("{}/files/{id}", app.address))
            .header("X-Auth-Token", &token)
            .send()
    });
    let answers = futures_util::future::join_all(deletes).await;
    let mut statuses = Vec::new();
    for answer in answers {
        let answer = answer.unwrap();
        let status = answer.status().as_u16();
        statuses.push((status, answer.text().await.unwrap()));
    }
    let refused: Vec<_> = statuses.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        refused.is_empty(),
        "{} of {} concurrent deletes failed: {refused:?}",
        refused.len(),
        ids.len()
    );
}

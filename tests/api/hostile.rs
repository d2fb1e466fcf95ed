//! Hostile input on every endpoint, generated with proptest: every request gets a
//! 4xx JSON error, nothing answers 5xx, and nothing is written.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::helpers::{Engine, spawn_app};

/// One hostile request: method, path, content type and body.
#[derive(Debug, Clone)]
struct Hostile {
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn bad_count(max: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just((max + 1).to_string()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1e2".to_owned()),
        Just("%00".to_owned()),
        Just("".to_owned()),
        "[ -~]{0,40}",
    ]
    .prop_filter("must not be a valid count", move |s| {
        !s.trim()
            .parse::<u32>()
            .is_ok_and(|n| (1..=max).contains(&n))
    })
    .prop_map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect())
}

fn hostile_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_owned()),
        Just("/".to_owned()),
        Just("1/../2/x".to_owned()),
        Just("1/%2e%2e/2".to_owned()),
        Just("1/\u{0}".to_owned()),
        Just("2/8c0ad3a4-7d2b-4d2f-9b52-5a7c1b2a9f10".to_owned()),
        Just("1/8c0ad3a4-7d2b-4d2f-9b52-5a7c1b2a9f10".to_owned()),
        Just("a".repeat(10_000)),
        any::<String>(),
    ]
}

fn hostile_size() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(-1)),
        Just(json!(i64::MIN)),
        Just(json!(9_223_372_036_854_775_808u64)),
        Just(json!(1.5)),
        Just(json!("12")),
        Just(json!(null)),
        Just(json!([])),
        any::<i64>()
            .prop_filter("negative", |n| *n < 0)
            .prop_map(|n| json!(n)),
    ]
}

fn hostile_md5() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("")),
        Just(json!("not base64!")),
        Just(json!("AAAA")),
        Just(json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
        Just(json!(123)),
        "[A-Za-z0-9+/=]{0,40}"
            .prop_filter("not 16 bytes of base64", |s| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_or(true, |b| b.len() != 16)
            })
            .prop_map(|s| json!(s)),
    ]
}

fn json_request(method: &'static str, path: &str, body: Value) -> Hostile {
    Hostile {
        method,
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: serde_json::to_vec(&body).unwrap(),
    }
}

fn hostile_request() -> impl Strategy<Value = Hostile> {
    let good_md5 = json!("1B2M2Y8AsgTpgAmY7PhCfg==");
    prop_oneof![
        bad_count(50).prop_map(|c| Hostile {
            method: "GET",
            path: format!("/files/upload-urls?count={c}"),
            content_type: None,
            body: Vec::new(),
        }),
        bad_count(10_000).prop_map(|c| Hostile {
            method: "GET",
            path: format!("/files/multipart-upload-urls?count={c}"),
            content_type: None,
            body: Vec::new(),
        }),
        (
            hostile_size(),
            prop_oneof![hostile_md5(), Just(good_md5.clone())]
        )
            .prop_map(|(size, md5)| json_request(
                "POST",
                "/files/upload-url",
                json!({"contentLength": size, "contentMD5": md5})
            )),
        (Just(1), hostile_md5()).prop_map(|(size, md5)| json_request(
            "POST",
            "/files/upload-url",
            json!({"contentLength": size, "contentMD5": md5})
        )),
        (
            hostile_size(),
            prop_oneof![Just(json!(0)), Just(json!(-5)), Just(json!(1u64 << 40))],
            prop_oneof![
                Just(json!([])),
                Just(json!(vec!["1B2M2Y8AsgTpgAmY7PhCfg=="; 10_001])),
                proptest::collection::vec(hostile_md5(), 1..4).prop_map(|v| json!(v)),
            ]
        )
            .prop_map(|(len, part, md5s)| json_request(
                "POST",
                "/files/multipart-upload-url",
                json!({"contentLength": len, "partLength": part, "partMd5s": md5s})
            )),
        (hostile_key(), prop_oneof![hostile_size(), Just(json!(10))]).prop_map(|(key, size)| {
            json_request(
                "POST",
                "/files",
                json!({"file": {"objectKey": key, "size": size}}),
            )
        }),
        any::<Vec<u8>>().prop_map(|body| Hostile {
            method: "POST",
            path: "/files".to_owned(),
            content_type: Some("application/json"),
            body,
        }),
        prop_oneof![
            Just("text/plain"),
            Just("application/x-www-form-urlencoded"),
            Just("multipart/form-data")
        ]
        .prop_map(|ct| Hostile {
            method: "POST",
            path: "/files/upload-url".to_owned(),
            content_type: Some(ct),
            // A JSON body is read whatever its content type (as Ente's server
            // does); the form this content type names is not JSON.
            body: b"contentLength=1&contentMD5=1B2M2Y8AsgTpgAmY7PhCfg%3D%3D".to_vec(),
        }),
        "[ -~]{0,30}".prop_map(|id| Hostile {
            method: "GET",
            path: format!(
                "/files/{}/download",
                url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
            ),
            content_type: None,
            body: Vec::new(),
        }),
        prop_oneof![
            Just("0".to_owned()),
            Just("-3".to_owned()),
            Just("99999".to_owned()),
            "[a-z]{1,10}"
        ]
        .prop_map(|id| Hostile {
            method: "DELETE",
            path: format!("/files/{id}"),
            content_type: None,
            body: Vec::new(),
        }),
    ]
}

async fn count_rows(app: &crate::helpers::TestApp) -> (i64, i64, i64) {
    let q = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap()
    };
    (
        q("SELECT COUNT(*) FROM temp_objects").await,
        q("SELECT COUNT(*) FROM objects").await,
        q("SELECT COUNT(*) FROM object_copies").await,
    )
}

#[test]
fn hostile_requests_get_a_4xx_json_error_and_write_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(spawn_app(Engine::Sqlite));
    let token = runtime.block_on(app.token_for(1));
    let before = runtime.block_on(count_rows(&app));
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let checked = std::sync::atomic::AtomicU64::new(0);
    runner
        .run(&hostile_request(), |req| {
            let (status, body) = runtime.block_on(async {
                let mut r = app
                    .client
                    .request(
                        req.method.parse().unwrap(),
                        format!("{}{}", app.address, req.path),
                    )
                    .header("X-Auth-Token", &token);
                if let Some(ct) = req.content_type {
                    r = r.header("content-type", ct);
                }
                let response = r.body(req.body.clone()).send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            });
            prop_assert!(
                (400..500).contains(&status),
                "{req:?} answered {status}: {body}"
            );
            let parsed: Value = serde_json::from_str(&body)
                .map_err(|e| TestCaseError::fail(format!("{req:?}: not JSON ({e}): {body}")))?;
            prop_assert!(
                parsed["code"].is_string() && parsed["message"].is_string(),
                "{parsed}"
            );
            checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        runtime.block_on(count_rows(&app)),
        before,
        "a refused request wrote a row"
    );
    let n = checked.into_inner() as usize;
    crate::helpers::Reliability {
        fault: "hostile requests on every endpoint (proptest)",
        injections: n,
        checked: n,
        note: "no refused request wrote a row",
        ..Default::default()
    }
    .record();
}

#[test]
fn oversized_bodies_are_refused_with_413() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = spawn_app(Engine::Sqlite).await;
        let token = app.token_for(1).await;
        let huge = vec![b' '; museum::api::MAX_BODY_BYTES + 1];
        let r = app
            .client
            .post(format!("{}/files", app.address))
            .header("X-Auth-Token", &token)
            .header("content-type", "application/json")
            .body(huge)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413);
        let body: Value = r.json().await.unwrap();
        assert!(body["code"].is_string(), "{body}");
    });
}

/// Opens a raw connection and sends `POST /files/upload-url` announcing a 200-byte
/// body of which only `body_start` follows.
async fn short_upload_url_request(
    app: &crate::helpers::TestApp,
    body_start: &str,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let token = app.token_for(1).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /files/upload-url HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{body_start}"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[test]
fn truncated_bodies_are_refused_with_json_and_the_server_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = spawn_app(Engine::Sqlite).await;
        let mut stream = short_upload_url_request(&app, "{\"contentLength\": 1").await;
        stream.shutdown().await.unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("\"code\""), "{answer}");
        let ping = app.get("/ping", None).await;
        assert_eq!(ping.status, 200);
        assert_eq!(count_rows(&app).await.0, 0);
    });
}

#[test]
fn a_stalled_body_is_refused_with_a_4xx_json_error() {
    use tokio::io::AsyncReadExt;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = crate::helpers::spawn_app_with(Engine::Sqlite, |s| {
            s.http.body_timeout =
                museum::config::HumanDuration(std::time::Duration::from_millis(500));
        })
        .await;
        let mut stream = short_upload_url_request(&app, "{\"contentLength\"").await;
        let started = std::time::Instant::now();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the server answers a stalled body without waiting for it")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
        assert!(answer.contains("\"code\""), "{answer}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(count_rows(&app).await.0, 0);
    });
}

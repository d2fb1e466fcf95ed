//! Accounts: the admin API (tokens, quotas, usage), quotas enforced at presign and
//! at report, and their concurrency on both databases.

use serde_json::{Value, json};

use crate::helpers::{Answer, Engine, TestApp, bytes_of, md5_b64, put, spawn_app_with};
use crate::on_both_databases;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// A museum with the admin API on, and `tweak` applied.
pub async fn spawn_accounts(
    engine: Engine,
    tweak: impl FnOnce(&mut museum::config::Settings),
) -> TestApp {
    spawn_app_with(engine, |s| {
        s.admin.key = Some(secrecy::SecretString::from(ADMIN_KEY));
        s.quota.overflow_bytes = 0;
        tweak(s);
    })
    .await
}

/// Calls the admin API with `key`; returns status and JSON body.
pub async fn admin(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let base = app.admin_address.as_ref().expect("admin API runs");
    let mut req = app.client.request(method, format!("{base}{path}"));
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("admin body is not JSON (status {status}): {text:?}"));
    Answer { status, body }
}

/// A token minted through the admin API.
pub async fn mint(app: &TestApp, user: i64) -> String {
    let a = admin(
        app,
        reqwest::Method::POST,
        "/admin/tokens",
        Some(ADMIN_KEY),
        Some(json!({"userID": user})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["token"].as_str().unwrap().to_owned()
}

async fn set_quota(app: &TestApp, user: i64, bytes: Value) -> Answer {
    admin(
        app,
        reqwest::Method::PUT,
        &format!("/admin/users/{user}/quota"),
        Some(ADMIN_KEY),
        Some(json!({ "bytes": bytes })),
    )
    .await
}

async fn usage(app: &TestApp, user: i64) -> i64 {
    let a = admin(
        app,
        reqwest::Method::GET,
        &format!("/admin/users/{user}"),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["usage"].as_i64().unwrap()
}

/// Asks for a signed URL for `bytes`; returns the answer.
async fn ask_signed(app: &TestApp, token: &str, bytes: &[u8]) -> Answer {
    app.post(
        "/files/upload-url",
        token,
        &json!({"contentLength": bytes.len(), "contentMD5": md5_b64(bytes)}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_refuses_a_missing_or_wrong_key_with_401_and_nothing_else() {
    let app = spawn_accounts(Engine::Sqlite, |_| {}).await;
    let routes = [
        (reqwest::Method::POST, "/admin/tokens"),
        (reqwest::Method::DELETE, "/admin/tokens/abc"),
        (reqwest::Method::DELETE, "/admin/users/1/tokens"),
        (reqwest::Method::PUT, "/admin/users/1/quota"),
        (reqwest::Method::GET, "/admin/users/1"),
        (reqwest::Method::GET, "/admin/users"),
        (reqwest::Method::GET, "/admin/nothing-here"),
    ];
    for (method, path) in routes {
        for key in [None, Some("wrong-key"), Some(""), Some(&ADMIN_KEY[1..])] {
            let a = admin(
                &app,
                method.clone(),
                path,
                key,
                Some(json!({"userID": 1, "bytes": 1})),
            )
            .await;
            assert_eq!(a.status, 401, "{method} {path} {key:?}: {}", a.body);
            assert_eq!(a.body["code"], "UNAUTHORIZED");
            assert_eq!(a.body.as_object().unwrap().len(), 2, "{}", a.body);
        }
    }
    // Nothing was created by the refused calls.
    let a = admin(
        &app,
        reqwest::Method::GET,
        "/admin/users",
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(a.body, json!({"users": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_key_there_is_no_admin_listener() {
    let app = spawn_app_with(Engine::Sqlite, |_| {}).await;
    assert!(app.admin_address.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_input_gets_a_400_or_404_naming_the_problem() {
    let app = spawn_accounts(Engine::Sqlite, |_| {}).await;
    let k = Some(ADMIN_KEY);
    for (bytes, code) in [
        (json!(-1), "INVALID_QUOTA"),
        (json!(2_u64 << 61), "INVALID_QUOTA"),
        (json!("lots"), "INVALID_JSON"),
        (json!(1.5), "INVALID_JSON"),
    ] {
        let a = set_quota(&app, 7, bytes.clone()).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (400, Some(code)),
            "{bytes}: {}",
            a.body
        );
    }
    for path in ["/admin/users/0", "/admin/users/-3", "/admin/users/abc"] {
        let a = admin(&app, reqwest::Method::GET, path, k, None).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (400, Some("INVALID_USER_ID")),
            "{path}"
        );
    }
    let a = admin(&app, reqwest::Method::GET, "/admin/users/99", k, None).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    for body in [
        json!({"userID": 0}),
        json!({"userID": 1, "expiresAt": "2001-01-01T00:00:00Z"}),
        json!({"userID": 1, "expiresAt": "tomorrow"}),
        json!({"user": 1}),
    ] {
        let a = admin(
            &app,
            reqwest::Method::POST,
            "/admin/tokens",
            k,
            Some(body.clone()),
        )
        .await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
    }
    let a = admin(
        &app,
        reqwest::Method::DELETE,
        "/admin/tokens/not-a-token",
        k,
        None,
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.body);
}

async fn the_app_server_flow_mints_uploads_hits_the_quota_and_raises_it(engine: Engine) {
    let app = spawn_accounts(engine, |s| s.quota.default_bytes = Some(1500)).await;
    let token = mint(&app, 5).await;
    assert_eq!(usage(&app, 5).await, 0);

    let first = bytes_of(1000, 1);
    let (id, _) = app.upload(&token, &first).await;
    assert_eq!(usage(&app, 5).await, 1000);

    // At presign: 1000 + 1000 > 1500.
    let second = bytes_of(1000, 2);
    let a = ask_signed(&app, &token, &second).await;
    assert_eq!(a.status, 426, "{}", a.body);
    assert_eq!(a.body["code"], "STORAGE_LIMIT_EXCEEDED");
    assert_eq!(
        (
            a.body["usage"].as_i64(),
            a.body["limit"].as_i64(),
            a.body["size"].as_i64()
        ),
        (Some(1000), Some(1500), Some(1000))
    );
    // At report: a v1 URL signs no size, so the report is where it is caught.
    let (key, url) = app.upload_url(&token).await;
    assert_eq!(put(&url, second.clone(), None).await, 200);
    let a = app.report(&token, &key, 1000).await;
    assert_eq!(a.status, 426, "{}", a.body);
    assert_eq!(usage(&app, 5).await, 1000);
    // Eligibility still says yes: 500 bytes are left.
    assert_eq!(
        app.get("/files/upload-eligibility", Some(&token))
            .await
            .status,
        200
    );

    // Raised: the same key now reports.
    let a = set_quota(&app, 5, json!(10_000)).await;
    assert_eq!(a.body, json!({"userID": 5, "usage": 1000, "quota": 10_000}));
    let a = app.report(&token, &key, 1000).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(usage(&app, 5).await, 2000);

    // Delete drops the usage.
    let r = app
        .client
        .delete(format!("{}/files/{id}", app.address))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(usage(&app, 5).await, 1000);

    // Quota 0: no subscription, at eligibility and presign.
    set_quota(&app, 5, json!(0)).await;
    let a = app.get("/files/upload-eligibility", Some(&token)).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (402, Some("NO_ACTIVE_SUBSCRIPTION"))
    );
    let a = ask_signed(&app, &token, &bytes_of(10, 3)).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (402, Some("NO_ACTIVE_SUBSCRIPTION"))
    );
    let a = app
        .post(
            "/files/multipart-upload-url",
            &token,
            &json!({"contentLength": 10, "partLength": 10, "partMd5s": [md5_b64(&bytes_of(10, 3))]}),
        )
        .await;
    assert_eq!(a.status, 402, "{}", a.body);

    // Listed, and revoked.
    let a = admin(
        &app,
        reqwest::Method::GET,
        "/admin/users",
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(
        a.body,
        json!({"users": [{"userID": 5, "usage": 1000, "quota": 0}]})
    );
    let a = admin(
        &app,
        reqwest::Method::DELETE,
        "/admin/users/5/tokens",
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(a.body, json!({"revoked": 1}));
    assert_eq!(
        app.get("/files/upload-eligibility", Some(&token))
            .await
            .status,
        401
    );
}

async fn one_token_is_revoked_at_once_and_an_expired_one_is_refused(engine: Engine) {
    let app = spawn_accounts(engine, |_| {}).await;
    let keep = mint(&app, 8).await;
    let drop = mint(&app, 8).await;
    assert_eq!(
        app.get("/files/upload-eligibility", Some(&drop))
            .await
            .status,
        200
    );
    let a = admin(
        &app,
        reqwest::Method::DELETE,
        &format!("/admin/tokens/{drop}"),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        app.get("/files/upload-eligibility", Some(&drop))
            .await
            .status,
        401
    );
    assert_eq!(
        app.get("/files/upload-eligibility", Some(&keep))
            .await
            .status,
        200
    );

    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    let a = admin(
        &app,
        reqwest::Method::POST,
        "/admin/tokens",
        Some(ADMIN_KEY),
        Some(json!({"userID": 8, "expiresAt": soon.to_string()})),
    )
    .await;
    let short = a.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/files/upload-eligibility", Some(&short))
            .await
            .status,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let a = app.get("/files/upload-eligibility", Some(&short)).await;
    assert_eq!(a.status, 401, "{}", a.body);
}

async fn fifty_parallel_reports_over_the_quota_never_overshoot_it(engine: Engine) {
    const SIZE: usize = 1000;
    const FIT: i64 = 10;
    let app = spawn_accounts(engine, |s| s.db.max_connections = 20).await;
    let token = mint(&app, 9).await;
    set_quota(&app, 9, json!(FIT * SIZE as i64)).await;
    // Fifty uploads whose URLs sign no size, so only the reports can refuse them.
    let a = app.get("/files/upload-urls?count=50", Some(&token)).await;
    let urls: Vec<(String, String)> = a.body["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["objectKey"].as_str().unwrap().to_owned(),
                u["url"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (i, (_, url)) in urls.iter().enumerate() {
        assert_eq!(put(url, bytes_of(SIZE, i as u8), None).await, 200);
    }
    let app = std::sync::Arc::new(app);
    let reports = urls.into_iter().map(|(key, _)| {
        let app = app.clone();
        let token = token.clone();
        tokio::spawn(async move { app.report(&token, &key, SIZE as u64).await.status })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(reports)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count() as i64;
    let full = statuses.iter().filter(|s| **s == 426).count() as i64;
    assert_eq!((ok, full), (FIT, 50 - FIT), "{statuses:?}");
    assert_eq!(usage(&app, 9).await, FIT * SIZE as i64);
    let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE user_id = 9")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(recorded, FIT);
}

async fn a_user_at_quota_0_gets_no_unsized_upload_urls_either(engine: Engine) {
    let app = spawn_accounts(engine, |_| {}).await;
    let token = mint(&app, 6).await;
    set_quota(&app, 6, json!(0)).await;
    let mut answers = Vec::new();
    for path in [
        "/files/upload-urls?count=50",
        "/files/multipart-upload-urls?count=3",
    ] {
        let a = app.get(path, Some(&token)).await;
        let message = a.body["message"].clone();
        answers.push((path, a.status, a.body["code"].clone(), message));
    }
    let issued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM temp_objects WHERE user_id = 6")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    crate::helpers::Reliability {
        fault: "unsized upload-URL requests by a user at quota 0",
        injections: 2,
        checked: 0,
        lost: 0,
        stuck: 0,
        across_users: None,
        note: "both answered 402 NO_ACTIVE_SUBSCRIPTION and issued no key (51 keys before the fix)",
    }
    .record();
    for (path, status, code, message) in answers {
        assert_eq!(
            (status, code.as_str()),
            (402, Some("NO_ACTIVE_SUBSCRIPTION")),
            "{path}: {message}"
        );
    }
    assert_eq!(issued, 0, "keys issued to a user at quota 0");
}

async fn unreported_keys_are_capped_per_user(engine: Engine) {
    let app = spawn_accounts(engine, |s| s.rate_limit.upload_urls_per_minute = 0).await;
    let token = mint(&app, 7).await;
    let other = mint(&app, 8).await;
    // The default cap: 1000 unreported keys.
    let mut first = None;
    for i in 0..20 {
        let a = app.get("/files/upload-urls?count=50", Some(&token)).await;
        assert_eq!(a.status, 200, "request {i}: {}", a.body);
        first.get_or_insert_with(|| {
            let u = &a.body["urls"][0];
            (
                u["objectKey"].as_str().unwrap().to_owned(),
                u["url"].as_str().unwrap().to_owned(),
            )
        });
    }
    let mut refusals = Vec::new();
    for path in [
        "/files/upload-urls?count=1",
        "/files/multipart-upload-urls?count=1",
    ] {
        refusals.push((path, app.get(path, Some(&token)).await));
    }
    refusals.push((
        "/files/upload-url",
        ask_signed(&app, &token, &bytes_of(10, 1)).await,
    ));
    let issued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM temp_objects WHERE user_id = 7")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    crate::helpers::Reliability {
        fault: "upload-URL requests past 1,000 unreported keys",
        injections: 3,
        checked: 0,
        lost: 0,
        stuck: 0,
        across_users: None,
        note: "each answered 429 TOO_MANY_UNREPORTED_KEYS; 1,000 keys issued, none past the cap",
    }
    .record();
    for (path, a) in &refusals {
        assert_eq!(a.status, 429, "{path}: {}", a.body["message"]);
        assert_eq!(
            a.body["code"], "TOO_MANY_UNREPORTED_KEYS",
            "{path}: {}",
            a.body
        );
        let message = a.body["message"].as_str().unwrap();
        assert!(
            message.contains("quota.max-unreported-keys") && message.contains("1000"),
            "{message}"
        );
    }
    assert_eq!(issued, 1000);
    // Another user is not affected, and a report frees a place.
    assert_eq!(
        app.get("/files/upload-urls?count=1", Some(&other))
            .await
            .status,
        200
    );
    let (key, url) = first.unwrap();
    assert_eq!(put(&url, bytes_of(10, 2), None).await, 200);
    let a = app.report(&token, &key, 10).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        app.get("/files/upload-urls?count=1", Some(&token))
            .await
            .status,
        200
    );
}

on_both_databases!(
    the_app_server_flow_mints_uploads_hits_the_quota_and_raises_it,
    a_user_at_quota_0_gets_no_unsized_upload_urls_either,
    unreported_keys_are_capped_per_user,
    one_token_is_revoked_at_once_and_an_expired_one_is_refused,
    fifty_parallel_reports_over_the_quota_never_overshoot_it,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_metrics_count_tokens_and_refusals_and_sum_the_usage_without_users() {
    let app = spawn_accounts(Engine::Sqlite, |s| s.quota.default_bytes = Some(100)).await;
    let token = mint(&app, 3).await;
    let spare = mint(&app, 4).await;
    app.upload(&token, &bytes_of(60, 1)).await;
    assert_eq!(ask_signed(&app, &token, &bytes_of(60, 2)).await.status, 426);
    set_quota(&app, 4, json!(0)).await;
    assert_eq!(
        app.get("/files/upload-eligibility", Some(&spare))
            .await
            .status,
        402
    );
    admin(
        &app,
        reqwest::Method::DELETE,
        "/admin/users/4/tokens",
        Some(ADMIN_KEY),
        None,
    )
    .await;
    let metrics = app.metrics_text().await;
    for line in [
        "museum_tokens_issued_total 2",
        "museum_tokens_revoked_total 1",
        r#"museum_quota_refusals_total{code="STORAGE_LIMIT_EXCEEDED"} 1"#,
        r#"museum_quota_refusals_total{code="NO_ACTIVE_SUBSCRIPTION"} 1"#,
        "museum_storage_usage_bytes 60",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    assert!(
        !metrics.contains(&token) && !metrics.contains("user="),
        "{metrics}"
    );
}

#[test]
fn the_command_line_creates_revokes_and_sets_quotas_through_the_same_functions() {
    use crate::binary::{checkout_copy, free_port, museum};
    let dir = checkout_copy();
    let (api, metrics) = (free_port(), free_port());
    let run = |args: &[&str]| {
        let out = museum(dir.path(), api, metrics)
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        (
            out.status.success(),
            stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    crate::binary::migrate(dir.path(), api, metrics);
    let (ok, out, err) = run(&[
        "token",
        "create",
        "--user",
        "6",
        "--expires-at",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(ok, "{err}");
    let token = out.lines().last().unwrap().trim().to_owned();
    let (ok, _, err) = run(&[
        "token",
        "create",
        "--user",
        "6",
        "--expires-at",
        "2001-01-01T00:00:00Z",
    ]);
    assert!(!ok && err.contains("not in the future"), "{err}");
    let (ok, out, err) = run(&["user", "quota", "--user", "6", "--bytes", "5000"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), r#"{"userID":6,"usage":0,"quota":5000}"#);
    let (ok, _, err) = run(&["user", "quota", "--user", "6", "--bytes", "-5"]);
    assert!(!ok && err.contains("quota must be"), "{err}");
    let (_, out, _) = run(&["user", "list"]);
    assert_eq!(out.trim(), r#"{"userID":6,"usage":0,"quota":5000}"#);
    let (ok, out, err) = run(&["token", "revoke", "--token", &token]);
    assert!(
        ok && out.contains("revoked 1 token of user 6"),
        "{out}{err}"
    );
    let (ok, _, err) = run(&["token", "revoke", "--token", &token]);
    assert!(!ok && err.contains("no such token"), "{err}");
    let (ok, out, err) = run(&["user", "quota", "--user", "6", "--default"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), r#"{"userID":6,"usage":0,"quota":null}"#);
    let (ok, _, err) = run(&["user", "show", "--user", "99"]);
    assert!(!ok && err.contains("no user 99"), "{err}");
}

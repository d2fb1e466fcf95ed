//! The upload flow end to end: presigned URLs, S3 enforcing what they sign, and the
//! report's verification.

use serde_json::json;

use crate::helpers::{
    Engine, bytes_of, complete_upload, md5_b64, put, spawn_app, spawn_app_with, upload_parts,
};
use crate::on_both_databases;

on_both_databases!(
    ping_answers_pong_after_a_database_round_trip,
    every_endpoint_but_ping_needs_a_valid_token,
    upload_urls_refuse_bad_counts_with_json_400,
    upload_urls_issue_distinct_keys_of_the_user,
    a_reported_upload_is_verified_and_recorded_once,
    a_report_with_the_wrong_size_is_refused_with_both_sizes,
    another_users_key_is_not_found,
    an_unuploaded_key_is_not_found,
    signed_urls_make_s3_refuse_other_bytes,
    upload_url_refuses_bad_bodies,
    objects_over_max_file_size_are_refused_with_413,
    head_failure_is_a_503,
    signed_multipart_upload_is_verified_by_its_etag,
    multipart_parts_with_other_bytes_are_refused,
    unsigned_multipart_upload_completes_and_is_recorded,
    multipart_requests_with_inconsistent_parts_are_refused,
    expired_unreported_keys_are_cleaned_up,
    report_with_thumbnail_records_both,
    unknown_routes_and_methods_answer_json,
);

async fn ping_answers_pong_after_a_database_round_trip(engine: Engine) {
    let app = spawn_app(engine).await;
    let a = app.get("/ping", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["message"], "pong");
    assert_eq!(a.body["id"], env!("CARGO_PKG_VERSION"));
}

async fn every_endpoint_but_ping_needs_a_valid_token(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    for (method, path) in [
        ("GET", "/files/upload-urls?count=1"),
        ("POST", "/files/upload-url"),
        ("GET", "/files/multipart-upload-urls?count=1"),
        ("POST", "/files/multipart-upload-url"),
        ("POST", "/files"),
        ("GET", "/files/1/download"),
        ("DELETE", "/files/1"),
    ] {
        for header in [
            None,
            Some(("X-Auth-Token", "nope")),
            Some(("Authorization", "Bearer nope")),
        ] {
            let mut req = app
                .client
                .request(method.parse().unwrap(), format!("{}{path}", app.address))
                .json(&json!({}));
            if let Some((k, v)) = header {
                req = req.header(k, v);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {header:?}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["code"], "UNAUTHORIZED");
        }
    }
    let r = app
        .client
        .get(format!("{}/files/upload-urls?count=1", app.address))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a bearer token works too");
}

async fn upload_urls_refuse_bad_counts_with_json_400(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    for count in ["0", "51", "-1", "abc", "", "1.5", "99999999999"] {
        let a = app
            .get(&format!("/files/upload-urls?count={count}"), Some(&token))
            .await;
        assert_eq!(a.status, 400, "count={count}: {}", a.body);
        assert_eq!(a.body["code"], "INVALID_COUNT");
    }
    let a = app.get("/files/upload-urls", Some(&token)).await;
    assert_eq!(a.status, 400);
    for count in ["0", "10001", "x"] {
        let a = app
            .get(
                &format!("/files/multipart-upload-urls?count={count}"),
                Some(&token),
            )
            .await;
        assert_eq!(a.status, 400, "multipart count={count}");
        assert_eq!(a.body["code"], "INVALID_COUNT");
    }
}

async fn upload_urls_issue_distinct_keys_of_the_user(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(77).await;
    let a = app.get("/files/upload-urls?count=50", Some(&token)).await;
    assert_eq!(a.status, 200);
    let urls = a.body["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 50);
    let mut keys: Vec<&str> = urls
        .iter()
        .map(|u| u["objectKey"].as_str().unwrap())
        .collect();
    for key in &keys {
        let (user, id) = key.split_once('/').unwrap();
        assert_eq!(user, "77");
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
        let temp = museum::db::uploads::find_temp_object(&app.state.db, key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(temp.user_id, 77);
        assert!(temp.expires_at > temp.created_at);
    }
    let url = urls[0]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "http://{}/b2-eu-cen/77/",
            app.server("b2-eu-cen").addr
        )),
        "{url}"
    );
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 50);
}

async fn a_reported_upload_is_verified_and_recorded_once(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(5).await;
    let (key, url) = app.upload_url(&token).await;
    let bytes = bytes_of(1000, 1);
    assert_eq!(put(&url, bytes.clone(), None).await, 200);

    let first = app.report(&token, &key, 1000).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["file"]["objectKey"], key.as_str());
    assert_eq!(first.body["file"]["size"], 1000);
    let again = app.report(&token, &key, 1000).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body, first.body,
        "a repeated report gives the same answer"
    );

    let stored = museum::db::uploads::find_object_by_key(&app.state.db, &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.size, 1000);
    assert_eq!(stored.bucket_id, "b2-eu-cen");
    assert_eq!(stored.user_id, 5);
    assert!(
        museum::db::uploads::find_temp_object(&app.state.db, &key)
            .await
            .unwrap()
            .is_none()
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "no duplicate row");
    assert!(
        app.server("b2-eu-cen").object(&key) == Some(bytes),
        "stored bytes differ"
    );

    let different = app.report(&token, &key, 999).await;
    assert_eq!(different.status, 409, "{}", different.body);
}

async fn a_report_with_the_wrong_size_is_refused_with_both_sizes(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(5).await;
    let (key, url) = app.upload_url(&token).await;
    assert_eq!(put(&url, bytes_of(300, 2), None).await, 200);
    let a = app.report(&token, &key, 301).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["code"], "SIZE_MISMATCH");
    let message = a.body["message"].as_str().unwrap();
    assert!(
        message.contains("301") && message.contains("300"),
        "{message}"
    );
    assert!(
        museum::db::uploads::find_object_by_key(&app.state.db, &key)
            .await
            .unwrap()
            .is_none()
    );
    let fixed = app.report(&token, &key, 300).await;
    assert_eq!(
        fixed.status, 200,
        "the key stays reportable after a mismatch"
    );
}

async fn another_users_key_is_not_found(engine: Engine) {
    let app = spawn_app(engine).await;
    let alice = app.token_for(1).await;
    let mallory = app.token_for(2).await;
    let (key, url) = app.upload_url(&alice).await;
    assert_eq!(put(&url, bytes_of(10, 3), None).await, 200);
    let a = app.report(&mallory, &key, 10).await;
    assert_eq!(a.status, 404, "{}", a.body);
    let forged = key.replacen("1/", "2/", 1);
    let a = app.report(&mallory, &forged, 10).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(app.report(&alice, &key, 10).await.status, 200);
    let a = app.report(&mallory, &key, 10).await;
    assert_eq!(a.status, 404, "a committed key stays someone else's");
}

async fn an_unuploaded_key_is_not_found(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let (key, _) = app.upload_url(&token).await;
    let a = app.report(&token, &key, 10).await;
    assert_eq!(a.status, 404, "{}", a.body);
    for bad in ["", "../etc/passwd", "1/../2/x", &"a".repeat(2000)] {
        let a = app.report(&token, bad, 1).await;
        assert!(a.status == 400 || a.status == 404, "{bad:?}: {}", a.body);
    }
}

async fn signed_urls_make_s3_refuse_other_bytes(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(4096, 4);
    let md5 = md5_b64(&bytes);
    let (key, url) = app.signed_upload_url(&token, &bytes).await;

    let longer = bytes_of(4097, 4);
    let status = put(&url, longer, Some(&md5)).await;
    assert_eq!(status, 403, "a different length breaks the signature");
    let mut tampered = bytes.clone();
    tampered[0] ^= 1;
    let status = put(&url, tampered, Some(&md5)).await;
    assert_eq!(status, 400, "same length, other bytes: BadDigest");
    let status = put(&url, bytes.clone(), Some(&md5_b64(b"other"))).await;
    assert_eq!(status, 403, "another Content-MD5 breaks the signature");
    // The refused PUTs stored nothing: there is nothing to report yet.
    assert!(app.server("b2-eu-cen").object(&key).is_none());
    let a = app.report(&token, &key, 4096).await;
    assert_eq!(a.status, 404, "{}", a.body);

    assert_eq!(put(&url, bytes.clone(), Some(&md5)).await, 200);
    let a = app.report(&token, &key, 4096).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let stored = museum::db::uploads::find_object_by_key(&app.state.db, &key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.md5.as_deref(),
        Some(hex::encode(<md5::Md5 as md5::Digest>::digest(&bytes)).as_str())
    );
}

async fn upload_url_refuses_bad_bodies(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let cases = [
        (
            json!({"contentLength": -1, "contentMD5": md5_b64(b"")}),
            400,
            "INVALID_SIZE",
        ),
        (
            json!({"contentLength": 1, "contentMD5": "not base64!"}),
            400,
            "INVALID_MD5",
        ),
        (
            json!({"contentLength": 1, "contentMD5": "AAAA"}),
            400,
            "INVALID_MD5",
        ),
        (
            json!({"contentLength": "ten", "contentMD5": md5_b64(b"")}),
            400,
            "INVALID_JSON",
        ),
        (json!({"contentMD5": md5_b64(b"")}), 400, "INVALID_JSON"),
        (
            json!({"contentLength": 1u64 << 62, "contentMD5": md5_b64(b"")}),
            413,
            "FILE_TOO_LARGE",
        ),
    ];
    for (body, status, code) in cases {
        let a = app.post("/files/upload-url", &token, &body).await;
        assert_eq!(a.status, status, "{body}: {}", a.body);
        assert_eq!(a.body["code"], code, "{body}");
    }
    let r = app
        .client
        .post(format!("{}/files/upload-url", app.address))
        .header("X-Auth-Token", &token)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .post(format!("{}/files", app.address))
        .header("X-Auth-Token", &token)
        .body(r#"{"file":{"objectKey":"x","size":1}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "a JSON body is read whatever its content type; the key was never issued"
    );
    let r = app
        .client
        .post(format!("{}/files", app.address))
        .header("X-Auth-Token", &token)
        .header("content-type", "text/plain;charset=UTF-8")
        .body("file=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a body that is not JSON");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "INVALID_JSON");
    let temp: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM temp_objects")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(temp, 0, "refused requests record nothing");
}

async fn objects_over_max_file_size_are_refused_with_413(engine: Engine) {
    let app = spawn_app_with(engine, |s| s.max_file_size = 100).await;
    let token = app.token_for(1).await;
    let (key, url) = app.upload_url(&token).await;
    assert_eq!(put(&url, bytes_of(101, 5), None).await, 200);
    let a = app
        .post("/files", &token, &json!({"file": {"objectKey": key}}))
        .await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.body["code"], "FILE_TOO_LARGE");
    let a = app.report(&token, &key, 101).await;
    assert_eq!(a.status, 413);
}

async fn head_failure_is_a_503(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let (key, url) = app.upload_url(&token).await;
    assert_eq!(put(&url, bytes_of(10, 6), None).await, 200);
    app.server("b2-eu-cen").stop();
    let a = app.report(&token, &key, 10).await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.body["code"], "OBJECT_SIZE_FETCH_FAILED");
    assert!(
        museum::db::uploads::find_temp_object(&app.state.db, &key)
            .await
            .unwrap()
            .is_some()
    );
    // What the server logs for such a failure (its Debug form) carries no signed URL.
    let error = app.state.buckets.primary().head(&key).await.unwrap_err();
    let logged = format!("{error:?} {}", museum::storage::error_chain(&error));
    assert!(
        !logged.contains("X-Amz-Signature") && !logged.contains(&key),
        "{logged}"
    );
}
const MIB: usize = 1024 * 1024;

async fn signed_multipart_upload_is_verified_by_its_etag(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let parts = vec![bytes_of(5 * MIB, 7), bytes_of(123, 8)];
    let md5s: Vec<String> = parts.iter().map(|p| md5_b64(p)).collect();
    let total = 5 * MIB + 123;
    let a = app
        .post(
            "/files/multipart-upload-url",
            &token,
            &json!({"contentLength": total, "partLength": 5 * MIB, "partMd5s": md5s}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.get("urls").is_none(),
        "the v2 answer is bare: {}",
        a.body
    );
    let urls = &a.body;
    assert_eq!(urls["partURLs"].as_array().unwrap().len(), 2);
    let key = urls["objectKey"].as_str().unwrap().to_owned();

    let client = reqwest::Client::new();
    let short = client
        .put(urls["partURLs"][1].as_str().unwrap())
        .header("content-md5", &md5s[1])
        .body(bytes_of(122, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), 403, "the last part's length is signed");

    assert_eq!(upload_parts(urls, &parts, Some(&md5s)).await, 200);
    let a = app.report(&token, &key, total as u64).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mut whole = parts[0].clone();
    whole.extend_from_slice(&parts[1]);
    assert!(
        app.server("b2-eu-cen").object(&key) == Some(whole),
        "stored bytes differ"
    );
}

async fn multipart_parts_with_other_bytes_are_refused(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let declared = [bytes_of(5 * MIB, 9), bytes_of(10, 10)];
    let md5s: Vec<String> = declared.iter().map(|p| md5_b64(p)).collect();
    let a = app
        .post(
            "/files/multipart-upload-url",
            &token,
            &json!({"contentLength": 5 * MIB + 10, "partLength": 5 * MIB, "partMd5s": md5s}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let key = a.body["objectKey"].as_str().unwrap().to_owned();
    // Same length and the signed Content-MD5 header, but other bytes in part 2: the
    // embedded server refuses the part, so the upload cannot complete.
    let client = reqwest::Client::new();
    let mut etags = Vec::new();
    for (i, part) in [declared[0].clone(), bytes_of(10, 11)]
        .into_iter()
        .enumerate()
    {
        let r = client
            .put(a.body["partURLs"][i].as_str().unwrap())
            .header("content-md5", &md5s[i])
            .body(part)
            .send()
            .await
            .unwrap();
        if i == 0 {
            assert_eq!(r.status(), 200);
            etags.push(r.headers()["etag"].to_str().unwrap().to_owned());
        } else {
            assert_eq!(r.status(), 400, "the other bytes are refused");
            assert!(r.text().await.unwrap().contains("BadDigest"));
        }
    }
    etags.push(format!(
        "\"{}\"",
        hex::encode(<md5::Md5 as md5::Digest>::digest(&declared[1]))
    ));
    let complete = complete_upload(a.body["completeURL"].as_str().unwrap(), &etags).await;
    assert_eq!(complete, 400, "part 2 was never stored");
    assert!(app.server("b2-eu-cen").object(&key).is_none());
    let a = app.report(&token, &key, (5 * MIB + 10) as u64).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(
        museum::db::uploads::find_object_by_key(&app.state.db, &key)
            .await
            .unwrap()
            .is_none()
    );
}

async fn unsigned_multipart_upload_completes_and_is_recorded(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(3).await;
    let a = app
        .get("/files/multipart-upload-urls?count=2", Some(&token))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let key = a.body["urls"]["objectKey"].as_str().unwrap().to_owned();
    let parts = vec![bytes_of(5 * MIB, 12), bytes_of(1, 13)];
    assert_eq!(upload_parts(&a.body["urls"], &parts, None).await, 200);
    let a = app.report(&token, &key, (5 * MIB + 1) as u64).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

async fn multipart_requests_with_inconsistent_parts_are_refused(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let md5 = md5_b64(b"x");
    let cases = [
        json!({"contentLength": 100, "partLength": 10, "partMd5s": [md5.clone()]}),
        json!({"contentLength": 10, "partLength": 10, "partMd5s": []}),
        json!({"contentLength": 10 * MIB, "partLength": 1, "partMd5s": [md5.clone(), md5.clone()]}),
        json!({"contentLength": 10, "partLength": 0, "partMd5s": [md5.clone()]}),
        json!({"contentLength": 10, "partLength": 10, "partMd5s": ["zz"]}),
        json!({"contentLength": 10, "partLength": 10, "partMd5s": vec![md5.clone(); 10_001]}),
    ];
    for body in cases {
        let a = app.post("/files/multipart-upload-url", &token, &body).await;
        assert_eq!(a.status, 400, "{}", a.body);
    }
}

async fn expired_unreported_keys_are_cleaned_up(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let (plain_key, url) = app.upload_url(&token).await;
    assert_eq!(put(&url, bytes_of(10, 14), None).await, 200);
    let a = app
        .get("/files/multipart-upload-urls?count=1", Some(&token))
        .await;
    let multipart_key = a.body["urls"]["objectKey"].as_str().unwrap().to_owned();
    let (kept_key, kept_url) = app.upload_url(&token).await;
    assert_eq!(put(&kept_url, bytes_of(10, 15), None).await, 200);
    assert_eq!(app.report(&token, &kept_key, 10).await.status, 200);

    let job =
        museum::uploads::cleanup::CleanupJob::new(app.state.db.clone(), app.state.buckets.clone());
    let now = museum::db::now_millis();
    let report = job.run_once(now).await.unwrap();
    assert_eq!(report.removed, 0, "nothing has expired yet");

    let later = now + 8 * 24 * 3600 * 1000;
    let report = job.run_once(later).await.unwrap();
    assert_eq!(report.removed, 2);
    assert_eq!(report.failed, 0);
    assert!(
        app.server("b2-eu-cen").object(&plain_key).is_none(),
        "expired bytes deleted"
    );
    assert!(
        museum::db::uploads::find_temp_object(&app.state.db, &multipart_key)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(app.report(&token, &plain_key, 10).await.status, 404);
    assert!(
        app.server("b2-eu-cen").object(&kept_key).is_some(),
        "reported objects are never swept"
    );
    assert_eq!(
        job.run_once(later).await.unwrap().removed,
        0,
        "a second pass finds nothing"
    );
}

async fn report_with_thumbnail_records_both(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let (file_key, file_url) = app.upload_url(&token).await;
    let (thumb_key, thumb_url) = app.upload_url(&token).await;
    assert_eq!(put(&file_url, bytes_of(50, 16), None).await, 200);
    assert_eq!(put(&thumb_url, bytes_of(5, 17), None).await, 200);
    let wrong = app
        .post(
            "/files",
            &token,
            &json!({"file": {"objectKey": file_key, "size": 50}, "thumbnail": {"objectKey": thumb_key, "size": 6}}),
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert!(
        museum::db::uploads::find_object_by_key(&app.state.db, &file_key)
            .await
            .unwrap()
            .is_none(),
        "a bad thumbnail records neither object"
    );
    let a = app
        .post(
            "/files",
            &token,
            &json!({"file": {"objectKey": file_key, "size": 50}, "thumbnail": {"objectKey": thumb_key, "size": 5}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["thumbnail"]["size"], 5);
}

async fn unknown_routes_and_methods_answer_json(engine: Engine) {
    let app = spawn_app(engine).await;
    let a = app.get("/nope", None).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.body["code"], "NOT_FOUND");
    let r = app
        .client
        .delete(format!("{}/ping", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"museum_requests_total{method="GET",route="unmatched",status="404"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_refuses_an_expired_presigned_url() {
    let app = spawn_app_with(Engine::Sqlite, |s| {
        // Three seconds: a signature's time counts in whole seconds, so a URL signed
        // late in a second has up to one second less than its expiry says.
        s.s3.presign_expiry = museum::config::HumanDuration(std::time::Duration::from_secs(3));
    })
    .await;
    let token = app.token_for(1).await;
    let (_, fresh) = app.upload_url(&token).await;
    let (_, stale) = app.upload_url(&token).await;
    assert_eq!(
        put(&fresh, bytes_of(10, 1), None).await,
        200,
        "within its lifetime"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(
        put(&stale, bytes_of(10, 1), None).await,
        403,
        "past its lifetime"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_stored_only_as_hashes() {
    let app = spawn_app(Engine::Sqlite).await;
    let token = app.token_for(1).await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM tokens")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(stored, vec![museum::api::extract::hash_token(&token)]);
    assert!(!stored[0].contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_token_is_cached_and_an_unknown_one_is_not() {
    let app = spawn_app(Engine::Sqlite).await;
    let token = app.token_for(1).await;
    let other = app.token_for(2).await;
    assert_eq!(
        app.get("/files/upload-urls?count=1", Some(&token))
            .await
            .status,
        200
    );
    // Both rows gone: the token just verified is still served from the cache, the
    // one never used is looked up, not found and refused.
    sqlx::query("DELETE FROM tokens")
        .execute(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(
        app.get("/files/upload-urls?count=1", Some(&token))
            .await
            .status,
        200
    );
    let refused = app.get("/files/upload-urls?count=1", Some(&other)).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["code"], "UNAUTHORIZED");
    assert_eq!(
        app.get("/files/upload-urls?count=1", Some("not-a-token"))
            .await
            .status,
        401
    );
}

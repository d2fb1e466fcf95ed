//! What browsers and phones need beyond the upload protocol: CORS on the API and on
//! the embedded S3 server, and presigned URLs that carry a public endpoint while
//! museum's own requests keep to `endpoint`.

use museum::config::BUCKET_IDS;
use museum::cors::CorsPolicy;
use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::helpers::{Engine, bytes_of, spawn_app, spawn_app_with};
use crate::on_both_databases;

const ORIGIN: &str = "http://127.0.0.2:3000";

/// Sends a CORS preflight for `method` with `headers` to `url` from `origin`.
async fn preflight(url: &str, origin: &str, method: &str, headers: &str) -> (u16, HeaderMap) {
    let r = reqwest::Client::new()
        .request(Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.headers().clone())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap_or(""))
}

/// Whether a comma-separated header value lists `item` (case-insensitively).
fn lists(headers: &HeaderMap, name: &str, item: &str) -> bool {
    header(headers, name)
        .split(',')
        .any(|v| v.trim().eq_ignore_ascii_case(item) || v.trim() == "*")
}

async fn the_api_answers_every_preflight_and_echoes_the_origin(engine: Engine) {
    let app = spawn_app(engine).await;
    // Ente's web app's calls, each preflighted for its non-safelisted headers, and a
    // path that matches no route at all.
    for (method, path, headers) in [
        (
            "GET",
            "/files/upload-urls?count=2&ts=1",
            "x-auth-token,x-client-package",
        ),
        (
            "POST",
            "/files/upload-url?ts=1",
            "content-type,x-auth-token,x-client-package",
        ),
        ("POST", "/files", "x-auth-token,x-client-package"),
        (
            "GET",
            "/files/upload-eligibility",
            "x-auth-token,x-client-package,x-client-version",
        ),
        ("DELETE", "/files/7", "authorization"),
        ("GET", "/no/such/route", "x-auth-token"),
    ] {
        let (status, h) =
            preflight(&format!("{}{path}", app.address), ORIGIN, method, headers).await;
        assert!((200..300).contains(&status), "{method} {path}: {status}");
        assert_eq!(header(&h, "access-control-allow-origin"), ORIGIN, "{path}");
        assert!(
            lists(&h, "access-control-allow-methods", method),
            "{path}: {h:?}"
        );
        for wanted in headers.split(',') {
            assert!(
                lists(&h, "access-control-allow-headers", wanted),
                "{path} {wanted}: {h:?}"
            );
        }
    }
    // An OPTIONS that is no preflight gets a 200 too, as from Ente's server.
    let r = app
        .client
        .request(Method::OPTIONS, format!("{}/files", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The actual call, and an error answer, carry the origin too.
    let token = app.token_for(1).await;
    let r = app
        .client
        .get(format!("{}/files/upload-urls?count=1", app.address))
        .header("origin", ORIGIN)
        .header("x-auth-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), ORIGIN);
    let r = app
        .client
        .get(format!("{}/files/upload-urls?count=1", app.address))
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), ORIGIN);
}

async fn only_listed_origins_are_allowed_when_a_list_is_set(engine: Engine) {
    let app = spawn_app_with(engine, |s| {
        s.http.cors.allowed_origins = vec!["https://photos.example.com".to_owned()];
    })
    .await;
    let url = format!("{}/files/upload-urls?count=1", app.address);
    let (status, h) = preflight(&url, "https://photos.example.com", "GET", "x-auth-token").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        "https://photos.example.com"
    );
    let (status, h) = preflight(&url, "https://evil.example.com", "GET", "x-auth-token").await;
    assert!((200..300).contains(&status), "still a 2xx, as Ente answers");
    assert!(
        h.get("access-control-allow-origin").is_none(),
        "another origin is not allowed: {h:?}"
    );
}

async fn the_embedded_s3_server_answers_preflights_and_exposes_etags(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let (_, url) = app.upload_url(&token).await;
    // Preflights carry no signature: they must be answered before the check.
    for (method, headers) in [
        ("PUT", "content-md5,x-client-package"),
        ("PUT", "content-md5,content-type"),
        ("POST", "content-type,x-client-package"),
        ("GET", "x-client-package,x-client-version"),
    ] {
        let (status, h) = preflight(&url, ORIGIN, method, headers).await;
        assert_eq!(status, 200, "{method} {headers}: {h:?}");
        assert_eq!(header(&h, "access-control-allow-origin"), ORIGIN);
        assert!(lists(&h, "access-control-allow-methods", method), "{h:?}");
        for wanted in headers.split(',') {
            assert!(
                lists(&h, "access-control-allow-headers", wanted),
                "{wanted}: {h:?}"
            );
        }
    }
    let r = reqwest::Client::new()
        .put(&url)
        .header("origin", ORIGIN)
        .header("x-client-package", "io.ente.photos.web")
        .body(bytes_of(10, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), ORIGIN);
    assert!(
        lists(r.headers(), "access-control-expose-headers", "etag"),
        "{:?}",
        r.headers()
    );
    assert!(r.headers().contains_key("etag"));
    // A request with a bad signature is still refused: CORS is no way in.
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &url[at..=at] == "0" { "1" } else { "0" };
    let tampered = format!("{}{flipped}{}", &url[..at], &url[at + 1..]);
    let r = reqwest::Client::new()
        .put(&tampered)
        .header("origin", ORIGIN)
        .body(bytes_of(10, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_embedded_s3_server_follows_the_allowed_origins() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let policy = CorsPolicy::from_config(&museum::config::CorsConfig {
        allowed_origins: vec!["https://photos.example.com".to_owned()],
    });
    let addr = museum::storage::embedded::serve(
        dir.path(),
        listener,
        &["b2-eu-cen".to_owned()],
        &[("k".to_owned(), "s".to_owned())],
        policy,
        cancel.clone(),
    )
    .await
    .unwrap();
    let url = format!("http://{addr}/b2-eu-cen/1/x");
    let (_, h) = preflight(&url, "https://photos.example.com", "PUT", "content-md5").await;
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        "https://photos.example.com"
    );
    let (_, h) = preflight(&url, "https://evil.example.com", "PUT", "content-md5").await;
    assert!(h.get("access-control-allow-origin").is_none(), "{h:?}");
    cancel.cancel();
}

/// With a public endpoint that museum itself cannot reach (a closed port), every URL
/// handed out names it, and uploads, reports, copies and proxied reads all still
/// work: museum's own requests go to `endpoint`. The client reaches the bucket as it
/// would through a proxy that keeps the public `Host`.
async fn issued_urls_carry_the_public_endpoint_while_museum_uses_its_own(engine: Engine) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let public_host = closed.local_addr().unwrap().to_string();
    drop(closed);
    let public = public_host.clone();
    let app = spawn_app_with(engine, move |s| {
        for id in BUCKET_IDS {
            s.s3.bucket_mut(id).unwrap().public_endpoint = Some(public.clone());
        }
    })
    .await;
    let primary = app.server("b2-eu-cen");
    let token = app.token_for(1).await;

    let (key, url) = app.upload_url(&token).await;
    let parsed = url::Url::parse(&url).unwrap();
    assert_eq!(
        format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap()),
        public_host,
        "the upload URL names the public endpoint"
    );
    // Through the "proxy": the real server, with the public Host the URL was signed for.
    let mut direct = parsed.clone();
    direct.set_port(Some(primary.addr.port())).unwrap();
    let bytes = bytes_of(1000, 3);
    let r = reqwest::Client::new()
        .put(direct.as_str())
        .header("host", &public_host)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let a = app.report(&token, &key, 1000).await;
    assert_eq!(a.status, 200, "museum HEADs through endpoint: {}", a.body);
    let id = a.body["id"].as_i64().unwrap();

    let m = app
        .post(
            "/files/multipart-upload-url",
            &token,
            &serde_json::json!({"contentLength": 10, "partLength": 10, "partMd5s": [crate::helpers::md5_b64(&bytes_of(10, 4))]}),
        )
        .await;
    assert_eq!(m.status, 200, "{}", m.body);
    for u in std::iter::once(&m.body["completeURL"]).chain(m.body["partURLs"].as_array().unwrap()) {
        let u = url::Url::parse(u.as_str().unwrap()).unwrap();
        assert_eq!(
            u.port(),
            Some(public_host.rsplit(':').next().unwrap().parse().unwrap())
        );
    }

    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/files/{id}/download", app.address))
        .header("x-auth-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let location = header(r.headers(), "location").to_owned();
    assert!(location.contains(&public_host), "{location}");

    let outcomes = app.drain().await;
    assert!(!outcomes.is_empty());
    for id in ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        assert_eq!(app.server(id).object(&key), Some(bytes.clone()), "{id}");
    }
}

on_both_databases!(
    the_api_answers_every_preflight_and_echoes_the_origin,
    only_listed_origins_are_allowed_when_a_list_is_set,
    the_embedded_s3_server_answers_preflights_and_exposes_etags,
    issued_urls_carry_the_public_endpoint_while_museum_uses_its_own,
);

//! The metrics listener: what anonymous requests can do to the series it keeps.

use crate::helpers::{Engine, spawn_app};

/// The `museum_requests_total` series in a `/metrics` text.
fn request_series(metrics: &str) -> Vec<&str> {
    metrics
        .lines()
        .filter(|l| l.starts_with("museum_requests_total{"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_and_paths_add_no_request_series() {
    let app = spawn_app(Engine::Sqlite).await;
    // One request of every kind the labels must cover, before the flood.
    assert_eq!(app.get("/ping", None).await.status, 200);
    assert_eq!(app.get("/nope", None).await.status, 404);

    for i in 0..1000 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let path = if i % 2 == 0 {
            "/ping".to_owned()
        } else {
            format!("/made-up/{i}")
        };
        let r = app
            .client
            .request(method, format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{i}: {}", r.status());
    }

    let metrics = app.metrics_text().await;
    let series = request_series(&metrics);
    crate::helpers::Reliability {
        fault: "a thousand invented HTTP methods and paths, unauthenticated",
        injections: 1000,
        note: &format!(
            "{} series in museum_requests_total after them (1,002 before the fix)",
            series.len()
        ),
        ..Default::default()
    }
    .record();
    assert!(
        series.len() <= 6,
        "{} series after 1000 invented methods:\n{}",
        series.len(),
        series
            .iter()
            .take(20)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !metrics.contains("INVENTED"),
        "a client's method became a label"
    );
    assert!(
        !metrics.contains("made-up"),
        "a client's path became a label"
    );
    assert!(
        metrics.contains(r#"museum_requests_total{method="GET",route="/ping",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"museum_requests_total{method="other",route="/ping",status="405"} 500"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"museum_requests_total{method="other",route="unmatched",status="404"} 500"#
        ),
        "{metrics}"
    );
}

/// Whether a GET of `url` gets an answer (any status) within two seconds.
async fn answers(url: &str) -> bool {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .is_ok()
}

/// The binary with the API on every interface (`http.host` 0.0.0.0, the default)
/// keeps `/metrics` on loopback: 127.0.0.2, another address of this machine that
/// reaches any socket bound to every interface, does not reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_is_on_loopback_unless_http_metrics_host_says_otherwise() {
    use crate::binary::{Killed, checkout_copy, free_port, museum, wait_for_ping};
    let mut seen = Vec::new();
    for metrics_host in [None, Some("0.0.0.0")] {
        let dir = checkout_copy();
        let (api, metrics) = (free_port(), free_port());
        let mut cmd = museum(dir.path(), api, metrics);
        cmd.env("ENTE_HTTP_HOST", "0.0.0.0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(host) = metrics_host {
            cmd.env("ENTE_HTTP_METRICS_HOST", host);
        }
        let _child = Killed(cmd.spawn().unwrap());
        wait_for_ping(&format!("http://127.0.0.1:{api}")).await;
        assert!(
            answers(&format!("http://127.0.0.2:{api}/ping")).await,
            "the API on 0.0.0.0 answers on 127.0.0.2: the address reaches this machine"
        );
        seen.push((
            metrics_host,
            answers(&format!("http://127.0.0.1:{metrics}/metrics")).await,
            answers(&format!("http://127.0.0.2:{metrics}/metrics")).await,
        ));
    }
    crate::helpers::Reliability {
        fault: "a scrape of /metrics from another address of the machine (127.0.0.2), API on 0.0.0.0",
        injections: 2,
        checked: 0,
        lost: 0,
        stuck: 0,
        across_users: None,
        note: &format!(
            "answered by default: {} (true before the fix); on 127.0.0.1: {}; with http.metrics-host 0.0.0.0: {}",
            seen[0].2, seen[0].1, seen[1].2
        ),
    }
    .record();
    assert_eq!(
        seen,
        [(None, true, false), (Some("0.0.0.0"), true, true)],
        "(http.metrics-host, answers on 127.0.0.1, answers on 127.0.0.2)"
    );
}

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

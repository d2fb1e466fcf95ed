//! Operator events from the real binary: a stable `event` field in the log, a
//! counter, and the webhook that receives them as JSON, with retries.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

use museum::config::HumanDuration;
use museum::db::copies::CopyState;

use crate::binary::{
    Killed, checkout_copy, cli_on, create_token, free_port, museum, upload, wait_for_ping,
};
use crate::helpers::{Engine, TestApp, bytes_of, metric, spawn_app, spawn_app_with};
use crate::on_both_databases;

/// A webhook receiver that refuses its first delivery with 503, then takes each.
#[derive(Clone, Default)]
struct Receiver {
    tries: Arc<Mutex<u32>>,
    taken: Arc<Mutex<Vec<Value>>>,
}

async fn hook(State(r): State<Receiver>, body: axum::body::Bytes) -> StatusCode {
    let first = {
        let mut tries = r.tries.lock().unwrap();
        *tries += 1;
        *tries == 1
    };
    if first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.taken
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn late_copies_reach_the_webhook_as_json_after_a_refused_delivery() {
    let receiver = Receiver::default();
    let hook = serve_receiver(&receiver).await;

    let dir = checkout_copy();
    let (api, metrics) = (free_port(), free_port());
    let token = create_token(dir.path(), api, metrics, 4);
    // A secret in the URL, as chat webhooks carry one: it must never be logged.
    let url = format!("{hook}?key=webhook-secret-4711");
    let child = museum(dir.path(), api, metrics)
        .env("ENTE_EVENTS_WEBHOOK_URL", &url)
        // Every copy is late: each verified copy is one event.
        .env("ENTE_REPLICATION_LATE_AFTER", "0s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let base = format!("http://127.0.0.1:{api}");
    wait_for_ping(&base).await;
    let client = reqwest::Client::new();
    let (id, _) = upload(&client, &base, &token, &[5u8; 3000]).await;

    // Two copies: two events; the first delivery is refused and retried a second later.
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.taken.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the webhook got {:?}",
            receiver.taken
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let taken = receiver.taken.lock().unwrap().clone();
    let mut destinations = Vec::new();
    for event in &taken {
        assert_eq!(event["event"], "copy_late", "{event}");
        assert_eq!(event["object_id"], id, "{event}");
        assert_eq!(event["level"], "WARN", "{event}");
        assert!(event["lag_seconds"].as_f64().unwrap() >= 0.0, "{event}");
        assert!(
            event["timestamp"].as_str().unwrap().ends_with('Z'),
            "{event}"
        );
        destinations.push(event["destination"].as_str().unwrap().to_owned());
    }
    destinations.sort();
    assert_eq!(destinations, ["scw-eu-fr-v3", "wasabi-eu-central-2-v3"]);
    assert_eq!(*receiver.tries.lock().unwrap(), 3, "one refused, two taken");

    let text = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"museum_events_total{event="copy_late"} 2"#),
        "{text}"
    );
    assert!(
        text.contains("museum_event_webhook_dropped_total 0"),
        "{text}"
    );

    let _ = std::process::Command::new("kill")
        .arg(child.0.id().to_string())
        .status();
    let out = stderr_of(&mut child.0);
    assert!(out.contains(r#""event":"copy_late""#), "{out}");
    assert!(
        out.contains("the event webhook did not take an event"),
        "{out}"
    );
    assert!(
        !out.contains("webhook-secret-4711"),
        "the URL's secret was logged: {out}"
    );
}

/// Serves `receiver` on a free port; its webhook URL.
async fn serve_receiver(receiver: &Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}/hook")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_ends_after_an_event_delivers_it_to_the_webhook_before_it_exits() {
    let receiver = Receiver::default();
    let url = serve_receiver(&receiver).await;
    let app = spawn_app(Engine::Sqlite).await;
    let token = app.token_for(1).await;
    let (id, key) = app.upload(&token, &bytes_of(1500, 3)).await;
    app.drain().await;
    for bucket in ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        let server = app.server(bucket);
        std::fs::remove_file(server.root.join(bucket).join(&key)).unwrap();
    }

    // `museum scrub` finds the object lost and exits 1 at once; the webhook refuses
    // the event's first delivery, and the retry comes a second later.
    let cwd = tempfile::tempdir().unwrap();
    let mut scrub = cli_on(&app.settings, cwd.path());
    scrub
        .args(["scrub", "--no-limit"])
        .env("ENTE_EVENTS_WEBHOOK_URL", &url)
        .stdin(Stdio::null());
    // Off the runtime: the S3 servers and the receiver run on it.
    let out = tokio::task::spawn_blocking(move || scrub.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let taken = receiver.taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 1, "the webhook got {taken:?}; {stderr}");
    assert_eq!(taken[0]["event"], "lost", "{}", taken[0]);
    assert_eq!(taken[0]["object_id"], id, "{}", taken[0]);
    assert_eq!(*receiver.tries.lock().unwrap(), 2, "one refused, one taken");
}

/// Every request a server got: (method, path and query, Referer header).
type Seen = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

/// Serves every request on a free port with `answer`, recording it in `seen`; the
/// server's base URL.
async fn serve_any(
    seen: &Seen,
    answer: impl Fn() -> axum::response::Response + Clone + Send + Sync + 'static,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::clone(seen);
    let app = Router::new().fallback(move |request: axum::extract::Request| {
        let (seen, answer) = (Arc::clone(&seen), answer.clone());
        async move {
            let referer = request
                .headers()
                .get("referer")
                .map(|v| v.to_str().unwrap().to_owned());
            seen.lock().unwrap().push((
                request.method().to_string(),
                request.uri().to_string(),
                referer,
            ));
            answer()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_a_redirect_is_a_failed_delivery_and_the_redirect_is_not_followed() {
    use axum::response::IntoResponse;
    // The redirect's target must see nothing: not the event, not the secret URL as
    // a Referer.
    let beyond: Seen = Seen::default();
    let beyond_url = serve_any(&beyond, || StatusCode::NO_CONTENT.into_response()).await;
    let hook: Seen = Seen::default();
    let location = format!("{beyond_url}/elsewhere");
    let hook_url = serve_any(&hook, move || {
        (StatusCode::FOUND, [("location", location.clone())]).into_response()
    })
    .await;
    let url = format!("{hook_url}/hook?key=webhook-secret-4712");

    let app = spawn_app(Engine::Sqlite).await;
    let token = app.token_for(1).await;
    let (_, key) = app.upload(&token, &bytes_of(1500, 4)).await;
    app.drain().await;
    for bucket in ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        let server = app.server(bucket);
        std::fs::remove_file(server.root.join(bucket).join(&key)).unwrap();
    }
    // `museum scrub` finds the object lost: one event for the webhook.
    let cwd = tempfile::tempdir().unwrap();
    let mut scrub = cli_on(&app.settings, cwd.path());
    scrub
        .args(["scrub", "--no-limit"])
        .env("ENTE_EVENTS_WEBHOOK_URL", &url)
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || scrub.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let beyond = beyond.lock().unwrap().clone();
    let hook = hook.lock().unwrap().clone();
    crate::helpers::Reliability {
        fault: "the event webhook answers 302 to another server",
        injections: 1,
        checked: 0,
        lost: 0,
        stuck: 0,
        across_users: None,
        note: &format!(
            "{} requests reached the redirect's target (1, with the secret URL as Referer, before the fix); the delivery counted as failed",
            beyond.len()
        ),
    }
    .record();
    assert_eq!(beyond, [], "the redirect was followed");
    assert_eq!(hook.len(), 1, "a redirect is not retried: {hook:?}");
    assert_eq!(hook[0].0, "POST");
    assert_eq!(hook[0].2, None, "no Referer");
    assert!(
        stderr.contains("the event webhook answered a redirect"),
        "{stderr}"
    );
    assert!(!stderr.contains("webhook-secret-4712"), "{stderr}");
}

/// Waits for `child` to end; what it wrote to stderr.
fn stderr_of(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    let _ = child.wait();
    text
}

on_both_databases!(a_stuck_copy_is_late_once_and_background_copies_never_are);

/// `museum_events_total{event="copy_late"}` and the count of the lag histogram of
/// `destination`, from the app's `/metrics`.
async fn late_and_lags(app: &TestApp, destination: &str) -> (u64, u64) {
    let text = app.metrics_text().await;
    (
        metric(&text, r#"museum_events_total{event="copy_late"}"#),
        metric(
            &text,
            &format!(r#"museum_replication_lag_seconds_count{{destination="{destination}"}}"#),
        ),
    )
}

async fn a_stuck_copy_is_late_once_and_background_copies_never_are(engine: Engine) {
    const GLACIER: &str = "scw-eu-fr-v3";
    const COLD: &str = "wasabi-eu-central-2-v3";
    let app = spawn_app_with(engine, |s| {
        s.replication.enabled = true;
        s.replication.poll_interval = HumanDuration(Duration::from_millis(50));
        s.replication.late_after = HumanDuration(Duration::from_secs(1));
    })
    .await;
    let token = app.token_for(1).await;
    // The glacier tier is down: its copy waits, retried, past late-after.
    app.server(GLACIER).stop();
    let bytes = bytes_of(3000, 1);
    let (id, key) = app.upload(&token, &bytes).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while late_and_lags(&app, GLACIER).await.0 == 0 {
        assert!(
            Instant::now() < deadline,
            "no copy_late while the copy was stuck: {:?}",
            app.copies(id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let copies = app.copies(id).await;
    assert!(
        copies
            .iter()
            .any(|c| c.bucket_id == GLACIER && c.state != CopyState::Done),
        "the event came while the copy was still stuck: {copies:?}"
    );
    // Once: not again while it stays stuck, nor when it is verified at last.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(late_and_lags(&app, GLACIER).await.0, 1);
    app.server(GLACIER).restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app
        .copies(id)
        .await
        .iter()
        .any(|c| c.state != CopyState::Done)
    {
        assert!(Instant::now() < deadline, "the copy never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (late, glacier_lags) = late_and_lags(&app, GLACIER).await;
    assert_eq!(
        (late, glacier_lags),
        (1, 1),
        "one event, one lag for the late copy"
    );

    // A restore a scrub queues, long after the report, is background work: neither
    // late nor a replication lag.
    let (_, cold_lags) = late_and_lags(&app, COLD).await;
    assert_eq!(cold_lags, 1);
    std::fs::remove_file(app.server(COLD).root.join(COLD).join(&key)).unwrap();
    let report = museum::app::ops::verify(&app.state.db, &app.state.buckets, None)
        .await
        .unwrap();
    assert_eq!(report.requeued, 1, "{report:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.server(COLD).object(&key).is_none() {
        assert!(Instant::now() < deadline, "the restore never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        late_and_lags(&app, COLD).await,
        (1, 1),
        "the restore counted as late or as a lag"
    );
}

//! Clients uploading small objects flat out for 20 s, then the time museum takes to
//! make the copies still pending, against a fixed target (5 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Env, Museum, bytes_of};
use crate::report::{Figure, Target, record};

pub async fn run(env: &Env, figures: &mut Vec<Figure>, notes: &mut Vec<String>) {
    // Clients uploading small objects flat out, then the time to catch up.
    let (clients, secs, size) = (16, 20, 10_000);
    eprintln!("bench: {clients} clients uploading {size} B objects for {secs} s, then the backlog");
    let m = Museum::start(env, "small-backlog");
    m.ready().await;
    let token = m.token(env, "small-backlog", 3);
    let load = upload_load(&m, &token, clients, secs, size).await;
    let stopped = Instant::now();
    let mut conn = m.db().await;
    let at_stop = m.pending_copies(&mut conn).await;
    let deadline = stopped + Duration::from_secs(600);
    while m.pending_copies(&mut conn).await > 0 {
        assert!(Instant::now() < deadline, "the backlog did not drain");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = stopped.elapsed().as_secs_f64();
    let done = m.done_copies(&mut conn).await;
    drop(conn);
    let rate = load.uploads as f64 / load.secs;
    notes.push(format!(
        "small uploads: {clients} clients × {secs} s of {{upload URL, PUT {size} B, report}}: {} uploads \
         ({rate:.0}/s), {} errors{}; {at_stop} copies pending when the load stopped, none {drain:.2} s later; \
         {done} of {} copies done",
        load.uploads,
        load.errors,
        load.first_error.map(|e| format!(" (first: {e})")).unwrap_or_default(),
        2 * load.uploads
    ));
    record(
        figures,
        Figure {
            name: "small_upload_backlog_s",
            what: format!(
                "{drain:.2} s to drain {at_stop} copies after {rate:.0} uploads/s of {size} B for {secs} s"
            ),
            value: drain,
            target: Target::AtMost(5.0),
        },
    );
    drop(m);
    for s in &env.servers {
        s.wipe();
    }
}

/// What a timed upload load achieved.
struct Load {
    uploads: u64,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
}

/// `clients` clients, each looping {ask for an upload URL, PUT `size` bytes, report
/// the object} as fast as it can for `secs` seconds; a failed step counts an error
/// and the client goes on with a new object.
async fn upload_load(m: &Museum, token: &str, clients: usize, secs: u64, size: usize) -> Load {
    let client = reqwest::Client::new();
    let body = bytes::Bytes::from(bytes_of(size, 0));
    let uploads = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, body, uploads, errors, first_error) = (
            client.clone(),
            body.clone(),
            uploads.clone(),
            errors.clone(),
            first_error.clone(),
        );
        let (base, token) = (m.base.clone(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match upload_one(&client, &base, &token, body.clone()).await {
                    Ok(()) => uploads.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        first_error.lock().unwrap().get_or_insert(e);
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let first_error = first_error.lock().unwrap().take();
    Load {
        uploads: uploads.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        first_error,
        secs: start.elapsed().as_secs_f64(),
    }
}

/// One object as a client uploads it: upload URL, PUT, report. Errors name the step
/// and never the presigned URL.
async fn upload_one(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    body: bytes::Bytes,
) -> Result<(), String> {
    let size = body.len();
    let fail = |step: &str| {
        let step = step.to_owned();
        move |e: reqwest::Error| format!("{step}: {}", e.without_url())
    };
    let r = client
        .get(format!("{base}/files/upload-urls?count=1"))
        .header("X-Auth-Token", token)
        .send()
        .await
        .map_err(fail("upload URL"))?;
    if !r.status().is_success() {
        return Err(format!("upload URL: {}", r.status()));
    }
    let urls: Value = r.json().await.map_err(fail("upload URL"))?;
    let u = &urls["urls"][0];
    let (Some(key), Some(url)) = (u["objectKey"].as_str(), u["url"].as_str()) else {
        return Err("upload URL: no URL in the answer".to_owned());
    };
    let r = client
        .put(url)
        .body(body)
        .send()
        .await
        .map_err(fail("PUT"))?;
    let status = r.status();
    let _ = r.bytes().await;
    if !status.is_success() {
        return Err(format!("PUT: {status}"));
    }
    let r = client
        .post(format!("{base}/files"))
        .header("X-Auth-Token", token)
        .json(&json!({"file": {"objectKey": key, "size": size}}))
        .send()
        .await
        .map_err(fail("report"))?;
    let status = r.status();
    let _ = r.bytes().await;
    if status != 200 {
        return Err(format!("report: {status}"));
    }
    Ok(())
}

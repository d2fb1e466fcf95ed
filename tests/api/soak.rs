//! A five-minute soak, run by hand (`-- --ignored`): steady reports and downloads
//! with the workers on. Memory must stay flat and the queue must drain.

use std::time::{Duration, Instant};

use museum::config::HumanDuration;

use crate::helpers::{Engine, bytes_of, spawn_app_with};

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "five minutes long; run by hand"]
async fn soak_five_minutes_of_reports_and_downloads() {
    let app = spawn_app_with(Engine::Sqlite, |s| {
        s.replication.enabled = true;
        s.replication.poll_interval = HumanDuration(Duration::from_millis(200));
    })
    .await;
    let token = app.token_for(1).await;
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut reported = 0u64;
    let mut next_sample = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(300) {
        let bytes = bytes_of(256 * 1024, reported as u8);
        let (id, _) = app.upload(&token, &bytes).await;
        let r = app
            .client
            .get(format!("{}/files/{id}/download", app.address))
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap();
        assert!(r.bytes().await.unwrap().as_ref() == bytes.as_slice());
        reported += 1;
        if start.elapsed() >= next_sample {
            samples.push(rss_mib());
            println!(
                "soak: {:>4} s, {reported} reports, RSS {:.1} MiB",
                start.elapsed().as_secs(),
                rss_mib()
            );
            next_sample += Duration::from_secs(30);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = app.unverified_copies().await;
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} copies still pending after the soak"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (first, last) = (samples[1], *samples.last().unwrap());
    println!("soak: {reported} reports and downloads; RSS {first:.1} → {last:.1} MiB; pending 0");
    assert!(
        last < first * 1.5 + 20.0,
        "memory grew from {first:.1} to {last:.1} MiB"
    );
}

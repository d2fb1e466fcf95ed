//! A valid user's upload-URL requests per second under a flood of invented tokens
//! from another address, against the same user's rate alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Env, Museum, RUNS, load, median};
use crate::report::{Figure, Target, record};

pub async fn run(env: &Env, figures: &mut Vec<Figure>, notes: &mut Vec<String>) {
    // A flood of invented tokens from another address, against one valid user.
    eprintln!("bench: a valid user's presigns under a flood of invented tokens");
    let limited = Museum::start(env, "flood");
    let open = Museum::start_with(env, "flood-open", "  failed-auth-per-minute: 0\n");
    let (mut quiet, mut limited_r, mut open_r) = (Vec::new(), Vec::new(), Vec::new());
    let mut flood_notes = Vec::new();
    for (target, name, runs) in [
        (&limited, "flood", &mut limited_r),
        (&open, "flood-open", &mut open_r),
    ] {
        target.ready().await;
        let token = target.token(env, name, 1);
        let url = format!("{}/files/upload-urls?count=1", target.base);
        for _ in 0..RUNS {
            if name == "flood" {
                quiet.push(load(&url, Some(&token), 16, 4).await);
            }
            let (valid, sent) = under_flood(&url, &token, FLOOD_RATE, 4).await;
            runs.push(valid);
            flood_notes.push(format!("{name}: flood {sent:.0} req/s"));
        }
    }
    drop((limited, open));
    let (quiet_r, with_limits, without) = (median(quiet), median(limited_r), median(open_r));
    notes.push(format!(
        "a valid user's presigns (16 clients, 4 s) under a flood of {FLOOD_RATE} req/s with invented tokens from 127.0.0.2: \
         {quiet_r:.0} req/s alone, {with_limits:.0} with the default failed-auth limit, {without:.0} with it off \
         ({:.2} of alone); {}",
        without / quiet_r,
        flood_notes.join(", ")
    ));
    record(
        figures,
        Figure {
            name: "valid_user_under_flood",
            what: format!("under the flood {with_limits:.0} req/s / alone {quiet_r:.0} req/s"),
            value: with_limits / quiet_r,
            target: Target::AtLeast(0.8),
        },
    );
}

/// The flood's pace: requests per second with invented tokens.
const FLOOD_RATE: u64 = 5_000;

/// A valid user's requests per second over `secs` seconds (16 keep-alive clients)
/// while 16 other clients, from 127.0.0.2, send `rate` requests a second with
/// invented tokens; and the rate the flood reached.
async fn under_flood(url: &str, token: &str, rate: u64, secs: u64) -> (f64, f64) {
    let flood_client = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    let start = Instant::now();
    for i in 0..16u64 {
        let (client, stop, sent, url) = (
            flood_client.clone(),
            stop.clone(),
            sent.clone(),
            url.to_owned(),
        );
        flood.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(16_000_000 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let r = client
                    .get(&url)
                    .header("X-Auth-Token", format!("invented-{i}-{n}-0123456789abcdef"))
                    .send()
                    .await
                    .unwrap();
                assert!(matches!(r.status().as_u16(), 401 | 429), "{}", r.status());
                let _ = r.bytes().await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the flood reach its pace (and use up the address's budget) first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let valid = load(url, Some(token), 16, secs).await;
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    (
        valid,
        sent.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
    )
}

//! Request handling: museum's upload-URL requests per second against a bare axum
//! handler on the same route, and museum's with a JWT against its own with a token.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;

use crate::harness::{Museum, RUNS, free_port, jwt_for, load, median};
use crate::report::{Figure, Target, record};

/// The baseline for request handling: the same route, a fixed answer, nothing else.
pub fn bare_axum(port: u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let app = axum::Router::new().route(
            "/files/upload-urls",
            axum::routing::get(|| async {
                axum::Json(json!({"urls": [{"objectKey": "1/00000000-0000-4000-8000-000000000000", "url": "http://127.0.0.1/x"}]}))
            }),
        );
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

pub async fn run(m: &Museum, token: &str, figures: &mut Vec<Figure>, notes: &mut Vec<String>) {
    // Request handling against a bare axum handler.
    eprintln!("bench: presign requests against a bare axum handler");
    let bare_port = free_port();
    let mut bare = Command::new(std::env::current_exe().unwrap())
        .env("MUSEUM_BENCH_BARE_AXUM", bare_port.to_string())
        .spawn()
        .unwrap();
    let bare_url = format!("http://127.0.0.1:{bare_port}/files/upload-urls?count=1");
    while reqwest::get(&bare_url).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let museum_url = format!("{}/files/upload-urls?count=1", m.base);
    let jwt = jwt_for(1);
    let (mut museum_rps, mut bare_rps, mut jwt_rps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        bare_rps.push(load(&bare_url, None, 16, 4).await);
        museum_rps.push(load(&museum_url, Some(token), 16, 4).await);
        jwt_rps.push(load(&museum_url, Some(&jwt), 16, 4).await);
    }
    let _ = bare.kill();
    let _ = bare.wait();
    notes.push(format!(
        "presign req/s with 16 clients, 4 s per run: museum {museum_rps:.0?}, bare axum {bare_rps:.0?}"
    ));
    notes.push(format!(
        "presign req/s with a JWT (HS256) instead of a token: {jwt_rps:.0?}"
    ));
    let (museum_r, bare_r, jwt_r) = (median(museum_rps), median(bare_rps), median(jwt_rps));
    record(
        figures,
        Figure {
            name: "presign_vs_bare_axum",
            what: format!("museum {museum_r:.0} req/s / bare axum {bare_r:.0} req/s"),
            value: museum_r / bare_r,
            target: Target::AtLeast(0.3),
        },
    );
    record(
        figures,
        Figure {
            name: "presign_jwt_vs_token",
            what: format!("JWT {jwt_r:.0} req/s / token {museum_r:.0} req/s"),
            value: jwt_r / museum_r,
            target: Target::AtLeast(0.9),
        },
    );
}

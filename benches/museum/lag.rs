//! Report → verified copy lag: reports at 10/s of 1 MiB objects for 30 s, lag =
//! the last copy's `copied_at` − the time the report returned, against a fixed
//! target (100 ms at p99).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Env, MIB, Museum, upload_and_report};
use crate::report::{Figure, Target, record};

/// `objects` are those the museum already holds (their copies count as done).
pub async fn run(
    env: &Env,
    m: &Museum,
    token: &str,
    objects: &[(String, usize)],
    figures: &mut Vec<Figure>,
) {
    // Report → verified copy lag at 10 reports/s of 1 MiB for 30 s.
    eprintln!("bench: lag at 10 reports/s for 30 s");
    for s in &env.servers {
        s.wipe();
    }
    let lags = measure(m, token, 2 * objects.len() as i64).await;
    let (p50, p99) = (quantile(&lags, 0.5), quantile(&lags, 0.99));
    record(
        figures,
        Figure {
            name: "lag_p99_ms",
            what: format!(
                "p50 {p50:.0} ms, p99 {p99:.0} ms over {} reports",
                lags.len()
            ),
            value: p99,
            target: Target::AtMost(100.0),
        },
    );
}

/// Uploads 300 objects of 1 MiB unreported, reports them at 10 a second and waits
/// for every copy; returns each report's lag in ms, sorted. `done_before` is the
/// number of copies the museum has already made.
pub async fn measure(m: &Museum, token: &str, done_before: i64) -> Vec<f64> {
    let lag_objects = upload_and_report(m, token, &vec![MIB; 300], false).await;
    let client = reqwest::Client::new();
    let mut reported = Vec::new();
    let begin = Instant::now();
    for (i, (key, size)) in lag_objects.iter().enumerate() {
        let due = begin + Duration::from_millis(100 * i as u64);
        tokio::time::sleep_until(due.into()).await;
        let r = client
            .post(format!("{}/files", m.base))
            .header("X-Auth-Token", token)
            .json(&json!({"file": {"objectKey": key, "size": size}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = r.json::<Value>().await.unwrap()["file"]["id"]
            .as_i64()
            .unwrap();
        reported.push((id, museum::db::now_millis()));
    }
    let total_copies = done_before + 2 * lag_objects.len() as i64;
    m.wait_done(total_copies).await;
    let mut conn = m.db().await;
    let mut lags = Vec::new();
    for (id, at) in &reported {
        let copied: i64 =
            sqlx::query_scalar("SELECT MAX(copied_at) FROM object_copies WHERE object_id = $1")
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        lags.push((copied - at).max(0) as f64);
    }
    drop(conn);
    lags.sort_by(f64::total_cmp);
    lags
}

/// The `q` quantile (0 to 1) of sorted `lags`, nearest rank.
pub fn quantile(lags: &[f64], q: f64) -> f64 {
    lags[((lags.len() as f64 * q).ceil() as usize)
        .saturating_sub(1)
        .min(lags.len() - 1)]
}

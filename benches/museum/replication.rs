//! Replication of 200 × 4 MiB + 2 × 256 MiB to both targets: museum's time against
//! two concurrent `rclone copy` and against a raw GET→PUT stream (the practical limit).

use std::time::Instant;

use futures_util::StreamExt;

use crate::harness::{
    Env, MIB, Museum, RUNS, WORKERS, have_rclone, median, museum_run, rclone_run,
    upload_and_report, wipe_targets,
};
use crate::report::{Figure, Target, record};

/// Uploads and replicates the workload, then times museum, rclone and the raw stream
/// re-making every copy; returns the workload's objects (key, size).
pub async fn run(
    env: &Env,
    m: &Museum,
    token: &str,
    figures: &mut Vec<Figure>,
    notes: &mut Vec<String>,
) -> Vec<(String, usize)> {
    // Workload: 200 × 4 MiB + 2 × 256 MiB, reported to museum and replicated once to warm up.
    let mut sizes = vec![4 * MIB; 200];
    sizes.extend([256 * MIB, 256 * MIB]);
    let total_bytes: usize = sizes.iter().sum();
    eprintln!("bench: uploading the workload ({} MiB)", total_bytes / MIB);
    let objects = upload_and_report(m, token, &sizes, true).await;
    m.wait_done(2 * objects.len() as i64).await;

    let have_rclone = have_rclone();
    let (mut museum_t, mut rclone_t, mut raw_t) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        eprintln!("bench: replication run {}/{RUNS}", run + 1);
        // Museum's idle workers poll; stopped, they take no CPU from the baselines.
        m.signal("STOP");
        if have_rclone {
            rclone_t.push(rclone_run(env, "", Some(WORKERS)));
        }
        raw_t.push(raw_run(env, &objects).await);
        m.signal("CONT");
        museum_t.push(museum_run(env, m, 2 * objects.len() as i64).await);
    }
    let museum_s = median(museum_t.clone());
    let raw_s = median(raw_t.clone());
    let mib_s = |s: f64| 2.0 * total_bytes as f64 / MIB as f64 / s;
    notes.push(format!(
    "replication of {} MiB to both targets: museum {museum_s:.2} s ({:.0} MiB/s written), raw stream {raw_s:.2} s, runs museum {museum_t:.2?} raw {raw_t:.2?}",
    total_bytes / MIB,
    mib_s(museum_s)
));
    if have_rclone {
        let rclone_s = median(rclone_t.clone());
        notes.push(format!("rclone {rclone_s:.2} s, runs {rclone_t:.2?}"));
        notes.push(format!(
        "rclone / raw stream = {:.2}: the most replication_vs_rclone can be while museum is bound by the raw stream",
        rclone_s / raw_s
    ));
        record(
            figures,
            Figure {
                name: "replication_vs_rclone",
                what: format!("rclone {rclone_s:.2} s / museum {museum_s:.2} s"),
                value: rclone_s / museum_s,
                target: Target::AtLeast(1.5),
            },
        );
    } else {
        notes.push(
            "rclone is not installed: replication_vs_rclone not measured (apt-get install rclone)"
                .to_owned(),
        );
    }
    record(
        figures,
        Figure {
            name: "replication_vs_raw_stream",
            what: format!("raw {raw_s:.2} s / museum {museum_s:.2} s"),
            value: raw_s / museum_s,
            target: Target::AtLeast(0.85),
        },
    );
    objects
}

/// The practical limit: each object read once with a GET, and each piece of it
/// (the whole object up to museum's multipart threshold, else a part) handed to
/// every target at once as the same shared chunks (the one-read fan-out museum
/// does), with no database, no hashing and no verification, at museum's
/// concurrency.
async fn raw_run(env: &Env, objects: &[(String, usize)]) -> f64 {
    wipe_targets(env);
    let start = Instant::now();
    let source = env.buckets.get("b2-eu-cen").unwrap().clone();
    let targets: Vec<_> = ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"]
        .map(|t| env.buckets.get(t).unwrap().clone())
        .into();
    let threshold = museum::config::ReplicationConfig::default().multipart_threshold as usize;
    let part_size = museum::config::ReplicationConfig::default().part_size as usize;
    futures_util::stream::iter(objects.iter().map(|(key, size)| {
        let (source, targets) = (source.clone(), targets.clone());
        async move {
            let (_, mut stream) = source.get_stream(key).await.unwrap();
            let piece = if *size > threshold { part_size } else { *size };
            let mut uploads = Vec::new();
            for target in &targets {
                uploads.push(if *size > threshold {
                    Some(target.create_multipart_upload(key).await.unwrap())
                } else {
                    None
                });
            }
            let mut etags = vec![Vec::new(); targets.len()];
            let mut leftover: Option<bytes::Bytes> = None;
            let mut left = *size;
            let mut part_number = 0u16;
            while left > 0 {
                let want = piece.min(left);
                let mut chunks = Vec::new();
                let mut got = 0;
                while got < want {
                    let mut chunk = match leftover.take() {
                        Some(c) => c,
                        None => stream.next().await.unwrap().unwrap(),
                    };
                    if got + chunk.len() > want {
                        leftover = Some(chunk.split_off(want - got));
                    }
                    got += chunk.len();
                    chunks.push(chunk);
                }
                left -= want;
                part_number += 1;
                let sends = targets.iter().zip(&uploads).map(|(target, upload)| {
                    let chunks = chunks.clone();
                    async move {
                        match upload {
                            Some(id) => target.upload_part(key, id, part_number, chunks).await,
                            None => target.put_object(key, chunks).await,
                        }
                        .unwrap()
                        .unwrap_or_default()
                    }
                });
                let answered = futures_util::future::join_all(sends).await;
                for (i, etag) in answered.into_iter().enumerate() {
                    etags[i].push(etag);
                }
            }
            for ((target, upload), etags) in targets.iter().zip(&uploads).zip(&etags) {
                if let Some(id) = upload {
                    target
                        .complete_multipart_upload(key, id, etags)
                        .await
                        .unwrap();
                }
            }
        }
    }))
    .buffer_unordered(WORKERS)
    .collect::<Vec<_>>()
    .await;
    start.elapsed().as_secs_f64()
}

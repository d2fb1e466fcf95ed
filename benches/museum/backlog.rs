//! Claim throughput of in-process replication workers with 1,000,000 due rows
//! queued, against the same with 1,000.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::harness::{Env, WORKERS, bytes_of, wipe_targets};
use crate::report::{Figure, Target, record};

pub async fn run(env: &Env, figures: &mut Vec<Figure>) {
    // Claim throughput with a large backlog.
    eprintln!("bench: claims with 1,000 and 1,000,000 queued rows");
    let real: Vec<(String, usize)> = (0..2000).map(|i| (format!("tiny/{i}"), 64)).collect();
    let hot = env.buckets.get("b2-eu-cen").unwrap();
    futures_util::stream::iter(real.iter().enumerate().map(|(i, (key, size))| async move {
        let body = bytes::Bytes::from(bytes_of(*size, i));
        hot.put_object(key, vec![body]).await.unwrap();
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    let small = backlog_run(env, "backlog-1k", 1_000, &real).await;
    let large = backlog_run(env, "backlog-1m", 1_000_000, &real).await;
    record(
        figures,
        Figure {
            name: "backlog_1m_vs_1k",
            what: format!("{large:.0} copies/s with 1,000,000 queued / {small:.0} with 1,000"),
            value: large / small,
            target: Target::AtLeast(0.9),
        },
    );
    for s in &env.servers {
        s.wipe();
    }
}

/// Copies claimed and finished per second by in-process workers, with `backlog`
/// other due rows queued behind `real` copies of tiny objects.
async fn backlog_run(env: &Env, name: &str, backlog: i64, real: &[(String, usize)]) -> f64 {
    use museum::db::uploads::{NewObject, TempObject, commit_objects, insert_temp_objects};
    wipe_targets(env);
    let path = env.dir.join(format!("{name}.db"));
    let db = museum::db::Db::create(
        &secrecy::SecretString::from(format!("sqlite://{}", path.display())),
        museum::db::PoolConfig {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            cache_mib: museum::db::PoolConfig::SERVER_CACHE_MIB,
        },
    )
    .await
    .unwrap();
    let now = museum::db::now_millis();
    let temps: Vec<TempObject> = real
        .iter()
        .map(|(key, _)| TempObject {
            object_key: key.clone(),
            user_id: 1,
            bucket_id: "b2-eu-cen".to_owned(),
            declared_size: None,
            declared_md5: None,
            expected_etag: None,
            upload_id: None,
            created_at: now,
            expires_at: now + 3_600_000,
        })
        .collect();
    insert_temp_objects(&db, &temps).await.unwrap();
    let objects: Vec<NewObject> = real
        .iter()
        .map(|(key, size)| NewObject {
            object_key: key.clone(),
            user_id: 1,
            bucket_id: "b2-eu-cen".to_owned(),
            size: *size as i64,
            md5: None,
            etag: None,
            created_at: 0,
            copy_targets: vec!["wasabi-eu-central-2-v3".to_owned()],
        })
        .collect();
    commit_objects(&db, &objects).await.unwrap();
    // The backlog: due rows for objects that come after the real ones in the queue.
    sqlx::query(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $1) \
         INSERT INTO objects (object_key, user_id, bucket_id, size, created_at) \
         SELECT 'backlog/' || i, 1, 'b2-eu-cen', 1, 1 FROM s",
    )
    .bind(backlog)
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO object_copies (object_id, bucket_id, state, attempts, next_attempt_at, created_at) \
         SELECT id, 'wasabi-eu-central-2-v3', 'pending', 0, 1, 1 FROM objects WHERE object_key LIKE 'backlog/%'",
    )
    .execute(db.pool())
    .await
    .unwrap();
    // A store grown over time has its log checkpointed; the bulk insert left 100+ MB.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(db.pool())
        .await
        .unwrap();
    let metrics = museum::observe::metrics::Metrics::new().unwrap();
    // The defaults, polling as often as the bench's museum process does.
    let config = museum::replication::WorkerConfig {
        poll_interval: Duration::from_millis(50),
        ..museum::replication::WorkerConfig::from(&museum::config::ReplicationConfig::default())
    };
    let real_ids = real.len() as i64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let worker = museum::replication::ReplicationWorker::new(
            db.clone(),
            env.buckets.clone(),
            metrics.clone(),
            config,
            format!("bench/{w}"),
        );
        tasks.push(tokio::spawn(async move {
            let (mut done, mut busy) = (0, 0);
            loop {
                // As the real worker loop does: a busy database is waited out.
                match worker.run_once().await {
                    Ok(museum::replication::Outcome::Copied {
                        object_id, done: d, ..
                    }) if object_id <= real_ids => {
                        done += d;
                    }
                    Ok(_) => return (done, busy),
                    Err(e) => {
                        busy += 1;
                        eprintln!("bench: worker pass failed ({e:?}); retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    let (mut done, mut busy) = (0, 0);
    for t in tasks {
        let (d, b) = t.await.unwrap();
        done += d;
        busy += b;
    }
    if busy > 0 {
        eprintln!("bench: {name}: {busy} worker passes hit a busy database");
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(done, real.len(), "every real copy was made");
    db.close().await;
    let _ = std::fs::remove_file(&path);
    done as f64 / secs
}

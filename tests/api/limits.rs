//! S3's limits as museum meets them: at most 10,000 parts in a multipart upload.

use museum::config::BucketConfig;
use museum::replication::Outcome;

use crate::faults::Moto;
use crate::helpers::{Engine, bytes_of, spawn_app_with};

/// S3's most parts in one multipart upload.
const MAX_PARTS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_of_more_than_10000_configured_parts_is_copied_in_10000_or_fewer() {
    // moto enforces the 10,000-part limit; its 5 MiB part minimum is lowered so the
    // test needs 1 MB instead of 50 GB.
    let moto = Moto::start_with_env(&[("S3_UPLOAD_PART_MIN_SIZE", "1")]).await;
    let part_size = 100;
    let app = spawn_app_with(Engine::Sqlite, |s| {
        s.replication.part_size = part_size;
        s.replication.multipart_threshold = part_size;
        s.s3.scw_eu_fr_v3 = BucketConfig::default();
        s.s3.wasabi_eu_central_2_v3 = BucketConfig {
            key: Some("moto".to_owned()),
            secret: Some(secrecy::SecretString::from("moto-secret")),
            endpoint: Some(format!("http://{}", moto.addr)),
            region: Some("us-east-1".to_owned()),
            bucket: Some("museum-parts".to_owned()),
            ..BucketConfig::default()
        };
    })
    .await;
    let cold = app.state.buckets.get("wasabi-eu-central-2-v3").unwrap();
    cold.create_bucket().await.unwrap();
    let token = app.token_for(1).await;
    // One part more than S3 allows at the configured part size.
    let bytes = bytes_of((MAX_PARTS + 1) * part_size as usize, 3);
    let (id, key) = app.upload(&token, &bytes).await;

    let outcome = app.worker("parts").run_once().await.unwrap();

    let copies = app.copies(id).await;
    let stored = cold.head(&key).await.ok().map(|h| h.size);
    crate::helpers::Reliability {
        fault: "an object of more than 10,000 parts at the configured part size",
        injections: 1,
        checked: 1,
        lost: usize::from(stored != Some(bytes.len() as u64)),
        stuck: copies
            .iter()
            .filter(|c| c.state != museum::db::copies::CopyState::Done)
            .count(),
        across_users: None,
        note: "copied with the part size doubled; moto enforces the 10,000-part limit",
    }
    .record();
    assert_eq!(
        outcome,
        Outcome::Copied {
            object_id: id,
            done: 1,
            failed: 0
        },
        "{copies:?}"
    );
    let head = cold.head(&key).await.unwrap();
    assert_eq!(head.size, bytes.len() as u64);
    let parts: usize = head
        .etag
        .as_deref()
        .and_then(|e| e.rsplit_once('-'))
        .map(|(_, n)| n.parse().unwrap())
        .unwrap();
    assert!(parts <= MAX_PARTS, "{parts} parts");
}

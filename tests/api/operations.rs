//! Operations: metrics, `doctor`, `replicate status | backfill | verify | retry`,
//! and the compose files.

use std::path::Path;

use museum::config::{BucketConfig, EnteEnv, Sources, load_with_env};
use museum::db::copies::CopyState;

use crate::helpers::{Engine, bytes_of, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    metrics_show_every_family_with_sane_values,
    doctor_passes_and_names_the_bucket_that_is_down,
    replicate_status_matches_the_database,
    a_copy_state_this_build_does_not_know_is_an_error_naming_it,
    backfill_after_adding_a_tier_copies_the_old_objects,
    verify_requeues_missing_copies,
    failed_copies_are_retried_after_the_fix,
);

fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_show_every_family_with_sane_values(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(3000, 1);
    let (_, key) = app.upload(&token, &bytes).await;
    let before = app.metrics_text().await;
    let pending = r#"museum_replication_pending{destination="wasabi-eu-central-2-v3"}"#;
    assert_eq!(metric_value(&before, pending), Some(1.0), "{before}");
    app.drain().await;
    let text = app.metrics_text().await;
    let expect = [
        (
            r#"museum_requests_total{method="POST",route="/files",status="200"}"#,
            1.0,
        ),
        (
            r#"museum_request_duration_seconds_count{route="/files"}"#,
            1.0,
        ),
        (r#"museum_upload_urls_issued_total{kind="single"}"#, 1.0),
        (r#"museum_uploads_committed_total{result="ok"}"#, 1.0),
        (
            r#"museum_replication_copies_total{destination="scw-eu-fr-v3",result="done"}"#,
            1.0,
        ),
        (
            r#"museum_replication_bytes_total{destination="wasabi-eu-central-2-v3"}"#,
            3000.0,
        ),
        (
            r#"museum_replication_pending{destination="wasabi-eu-central-2-v3"}"#,
            0.0,
        ),
        (
            r#"museum_replication_pending{destination="scw-eu-fr-v3"}"#,
            0.0,
        ),
        (
            r#"museum_replication_lag_seconds_count{destination="scw-eu-fr-v3"}"#,
            1.0,
        ),
        (
            r#"museum_replication_upload_success_total{destination="scw-eu-fr-v3"}"#,
            1.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(
            metric_value(&text, series),
            Some(value),
            "{series} in\n{text}"
        );
    }
    let lag = metric_value(
        &text,
        r#"museum_replication_lag_seconds_sum{destination="scw-eu-fr-v3"}"#,
    )
    .unwrap();
    assert!((0.0..60.0).contains(&lag), "lag {lag}");
    let max = metric_value(&text, "museum_db_pool_max_connections").unwrap();
    let open = metric_value(&text, "museum_db_pool_connections").unwrap();
    assert!(max >= 1.0 && open <= max, "pool {open}/{max}");
    assert!(
        !text.contains(&key) && !text.contains(&token),
        "no key or token in labels"
    );
    assert!(!text.contains("X-Amz-Signature"));
}

async fn doctor_passes_and_names_the_bucket_that_is_down(engine: Engine) {
    let app = spawn_app(engine).await;
    let checks = museum::doctor::run(&app.settings).await;
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.failed())
        .map(|c| c.to_string())
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for id in ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        for name in [
            "endpoint reachable",
            "credentials accepted",
            "bucket exists",
            "presigned PUT → GET → DELETE",
            "CORS",
        ] {
            assert!(
                checks.iter().any(|c| c.subject == id
                    && c.name == name
                    && matches!(c.verdict, museum::doctor::Verdict::Ok(_))),
                "{id}: {name} did not pass"
            );
        }
    }
    let probes = app.server("b2-eu-cen").root.join("b2-eu-cen/museum-doctor");
    let left = std::fs::read_dir(&probes).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "the probe objects are deleted");

    app.server("scw-eu-fr-v3").stop();
    let mut wrong_secret = app.settings.clone();
    wrong_secret.s3.wasabi_eu_central_2_v3.secret = Some(secrecy::SecretString::from("wrong"));
    let checks = museum::doctor::run(&wrong_secret).await;
    let failed: Vec<(&str, &str)> = checks
        .iter()
        .filter(|c| c.failed())
        .map(|c| (c.subject.as_str(), c.name))
        .collect();
    assert_eq!(
        failed,
        [
            ("wasabi-eu-central-2-v3", "credentials accepted"),
            ("scw-eu-fr-v3", "endpoint reachable")
        ],
        "{checks:#?}"
    );
    let text: String = checks.iter().map(|c| format!("{c}\n")).collect();
    assert!(
        text.contains("fix: check s3.wasabi-eu-central-2-v3.key"),
        "{text}"
    );
}

async fn replicate_status_matches_the_database(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    for i in 0..3 {
        app.upload(&token, &bytes_of(100, i)).await;
    }
    app.drain().await;
    app.server("scw-eu-fr-v3").stop();
    app.upload(&token, &bytes_of(100, 9)).await;
    app.drain().await;
    let text = museum::app::ops::status(&app.state.db, &app.state.buckets)
        .await
        .unwrap();
    let row = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(id))
            .map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .map(|n| n.parse::<i64>().unwrap())
                    .collect::<Vec<_>>()
            })
            .unwrap()
    };
    for id in ["wasabi-eu-central-2-v3", "scw-eu-fr-v3"] {
        let mut expected = Vec::new();
        for s in [
            CopyState::Pending,
            CopyState::Copying,
            CopyState::Done,
            CopyState::Failed,
        ] {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM object_copies WHERE bucket_id = $1 AND state = $2",
            )
            .bind(id)
            .bind(s.as_str())
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
            expected.push(n);
        }
        assert_eq!(row(id), expected, "{id} in\n{text}");
    }
    assert_eq!(row("scw-eu-fr-v3"), [1, 0, 3, 0]);
    assert_eq!(row("b2-eu-cen"), [0, 0, 0, 0]);
    assert!(text.contains("oldest waiting copy: queued"), "{text}");
    assert!(
        text.contains("scw-eu-fr-v3 object 4 (pending, attempt 1)"),
        "{text}"
    );
}

async fn a_copy_state_this_build_does_not_know_is_an_error_naming_it(engine: Engine) {
    // Arrange: a copy row as a newer museum, or a hand edit, might leave it.
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let (id, _) = app.upload(&token, &bytes_of(100, 1)).await;
    app.drain().await;
    sqlx::query(
        "UPDATE object_copies SET state = 'paused' WHERE object_id = $1 AND bucket_id = $2",
    )
    .bind(id)
    .bind("scw-eu-fr-v3")
    .execute(app.state.db.pool())
    .await
    .unwrap();
    // Act
    let status = museum::app::ops::status(&app.state.db, &app.state.buckets).await;
    let copies = museum::db::copies::list_copies(&app.state.db, id).await;
    // Assert: never read as another state (a guess could count it done).
    for (what, err) in [
        ("replicate status", status.err()),
        ("the object's copies", copies.err()),
    ] {
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("object_copies.state") && message.contains("\"paused\""),
            "{what}: {message:?}"
        );
    }
}

async fn backfill_after_adding_a_tier_copies_the_old_objects(engine: Engine) {
    let mut app = spawn_app_with(engine, |s| s.s3.scw_eu_fr_v3 = BucketConfig::default()).await;
    let scw = app.server("scw-eu-fr-v3").bucket_config();
    let token = app.token_for(1).await;
    let mut objects = Vec::new();
    for i in 0..3 {
        let bytes = bytes_of(500 + i, i as u8);
        let (_, key) = app.upload(&token, &bytes).await;
        objects.push((key, bytes));
    }
    app.drain().await;

    app.restart_with(|s| s.s3.scw_eu_fr_v3 = scw).await;
    let report = museum::app::ops::backfill(&app.state.db, &app.state.buckets)
        .await
        .unwrap();
    assert_eq!((report.objects, report.queued), (3, 3));
    let again = museum::app::ops::backfill(&app.state.db, &app.state.buckets)
        .await
        .unwrap();
    assert_eq!(again.queued, 0, "a second backfill queues nothing");
    app.drain().await;
    for (key, bytes) in &objects {
        assert!(app.server("scw-eu-fr-v3").object(key).as_deref() == Some(bytes.as_slice()));
    }
}

async fn verify_requeues_missing_copies(engine: Engine) {
    let app = spawn_app(engine).await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(800, 3);
    let (id, key) = app.upload(&token, &bytes).await;
    app.upload(&token, &bytes_of(10, 4)).await;
    app.drain().await;
    let report = museum::app::ops::verify(&app.state.db, &app.state.buckets, None)
        .await
        .unwrap();
    assert_eq!(
        (report.checked, report.requeued),
        (6, 0),
        "two objects in three tiers each, the primary included"
    );

    std::fs::remove_file(
        app.server("scw-eu-fr-v3")
            .root
            .join("scw-eu-fr-v3")
            .join(&key),
    )
    .unwrap();
    let sample = museum::app::ops::verify(&app.state.db, &app.state.buckets, Some(1))
        .await
        .unwrap();
    assert_eq!(
        (sample.objects, sample.checked),
        (1, 3),
        "one object, each of its tiers"
    );
    let report = museum::app::ops::verify(&app.state.db, &app.state.buckets, None)
        .await
        .unwrap();
    assert_eq!(report.checked + sample.requeued, 6);
    assert_eq!(report.requeued + sample.requeued, 1);
    let scw = app
        .copies(id)
        .await
        .into_iter()
        .find(|c| c.bucket_id == "scw-eu-fr-v3")
        .unwrap();
    assert_eq!(scw.state, CopyState::Pending);
    app.drain().await;
    assert!(app.server("scw-eu-fr-v3").object(&key).as_deref() == Some(bytes.as_slice()));
}

async fn failed_copies_are_retried_after_the_fix(engine: Engine) {
    let mut app = spawn_app(engine).await;
    let good = app.settings.s3.scw_eu_fr_v3.clone();
    app.restart_with(|s| {
        s.s3.scw_eu_fr_v3.secret = Some(secrecy::SecretString::from("wrong-secret"))
    })
    .await;
    let token = app.token_for(1).await;
    let bytes = bytes_of(600, 5);
    let (id, key) = app.upload(&token, &bytes).await;
    app.drain().await;
    let scw = app
        .copies(id)
        .await
        .into_iter()
        .find(|c| c.bucket_id == "scw-eu-fr-v3")
        .unwrap();
    assert_eq!(
        scw.state,
        CopyState::Failed,
        "refused credentials will not heal: {scw:?}"
    );
    let error = scw.last_error.unwrap();
    assert!(
        error.contains("refused") && error.contains("SignatureDoesNotMatch"),
        "{error}"
    );

    app.restart_with(|s| s.s3.scw_eu_fr_v3 = good).await;
    assert!(
        app.drain().await.is_empty(),
        "failed copies wait for an operator"
    );
    assert_eq!(
        museum::app::ops::retry_failed(&app.state.db).await.unwrap(),
        1
    );
    app.drain().await;
    assert!(app.server("scw-eu-fr-v3").object(&key).as_deref() == Some(bytes.as_slice()));
}

fn yaml(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn compose_files_parse_and_agree_with_the_configuration() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose = yaml(&root.join("compose/compose.yaml"));
    let services = &compose["services"];
    for name in [
        "museum",
        "postgres",
        "minio",
        "minio-provision",
        "prometheus",
        "grafana",
    ] {
        assert!(services.get(name).is_some(), "service {name} missing");
    }

    // museum as compose runs it: the image's configurations/ plus the mounted files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("configurations")).unwrap();
    let env = services["museum"]["environment"]["ENVIRONMENT"]
        .as_str()
        .unwrap();
    let env_file = format!("configurations/{env}.yaml");
    std::fs::copy(root.join(&env_file), dir.path().join(&env_file)).unwrap();
    for file in ["museum.yaml", "credentials.yaml"] {
        std::fs::copy(root.join("compose").join(file), dir.path().join(file)).unwrap();
        let mount = format!("./{file}:/app/{file}:ro");
        let volumes = services["museum"]["volumes"].as_sequence().unwrap();
        assert!(
            volumes.iter().any(|v| v.as_str() == Some(&mount)),
            "{file} is not mounted into /app"
        );
    }
    // With the ENTE_* variables compose sets.
    let vars: Vec<(String, String)> = services["museum"]["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let settings = load_with_env(
        &Sources {
            dir: dir.path().to_owned(),
            environment: env.to_owned(),
        },
        EnteEnv::from_vars(vars),
    )
    .unwrap()
    .settings;

    let ports: Vec<&str> = services["museum"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        ports.contains(&format!("{0}:{0}", settings.http.port).as_str()),
        "{ports:?}"
    );
    // Metrics: on every interface inside the container, for Prometheus, and
    // published on the host's loopback only.
    assert_eq!(settings.http.metrics_host, "0.0.0.0");
    assert!(
        ports.contains(&format!("127.0.0.1:{0}:{0}", settings.http.metrics_port).as_str()),
        "{ports:?}"
    );

    let minio_command = services["minio"]["command"].as_str().unwrap();
    let provision = services["minio-provision"]["entrypoint"].as_str().unwrap();
    for id in museum::config::BUCKET_IDS {
        let bucket = settings.s3.bucket(id).unwrap();
        let endpoint = bucket.endpoint.as_deref().unwrap();
        let (host, port) = endpoint.split_once(':').unwrap();
        assert!(
            services.get(host).is_some(),
            "{id} points at {host}, which is no service"
        );
        assert!(
            minio_command.contains(&format!("--address \":{port}\"")),
            "minio does not listen on {port}"
        );
        let name = bucket.bucket.as_deref().unwrap();
        assert!(
            provision.contains(&format!("/{name}")),
            "bucket {name} is not created on start"
        );
    }
    let pg = &services["postgres"]["environment"];
    assert_eq!(settings.db.host.as_deref(), Some("postgres"));
    assert_eq!(settings.db.name.as_deref(), pg["POSTGRES_DB"].as_str());
    assert_eq!(settings.db.user.as_deref(), pg["POSTGRES_USER"].as_str());

    let prometheus = yaml(&root.join("compose/prometheus.yml"));
    let target = prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0]
        .as_str()
        .unwrap();
    assert_eq!(target, format!("museum:{}", settings.http.metrics_port));

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("compose/grafana/dashboards/museum.json")).unwrap(),
    )
    .unwrap();
    let exprs: String = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_owned())
        })
        .collect::<Vec<_>>()
        .join("\n");
    for family in [
        "museum_requests_total",
        "museum_replication_bytes_total",
        "museum_replication_pending",
        "museum_replication_lag_seconds_bucket",
    ] {
        assert!(
            exprs.contains(family),
            "the dashboard does not chart {family}"
        );
    }
}

//! The configuration loader on real files: Ente's layering, `ENTE_*` names, and
//! validation messages that name the key and where it came from.

use std::path::Path;

use museum::config::{ConfigError, EnteEnv, Loaded, Sources, load_with_env};
use secrecy::ExposeSecret;

const LOCAL: &str = "
s3:
  are_local_buckets: true
  b2-eu-cen:
    key: k1
    secret: s1
    endpoint: localhost:3200
    region: eu-central-2
    bucket: b2-eu-cen
  wasabi-eu-central-2-v3:
    key: k2
    secret: s2
    endpoint: localhost:3200
    region: eu-central-2
    bucket: wasabi-eu-central-2-v3
http:
  port: 8080
";

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn load(dir: &Path, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let sources = Sources {
        dir: dir.to_owned(),
        environment: "local".to_owned(),
    };
    load_with_env(
        &sources,
        EnteEnv::from_vars(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))),
    )
}

fn problems(e: ConfigError) -> Vec<String> {
    match e {
        ConfigError::Invalid { problems } => problems,
        other => panic!("expected validation problems, got {other}"),
    }
}

#[test]
fn later_layers_win_in_entes_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    write(
        dir.path(),
        "credentials.yaml",
        "http:\n  port: 9001\n  metrics-port: 9101\n",
    );
    write(dir.path(), "museum.yaml", "http:\n  port: 9002\n");
    let loaded = load(dir.path(), &[]).unwrap();
    assert_eq!(
        loaded.settings.http.port, 9002,
        "museum.yaml beats credentials.yaml"
    );
    assert_eq!(
        loaded.settings.http.metrics_port, 9101,
        "credentials.yaml beats the environment file"
    );

    let loaded = load(dir.path(), &[("ENTE_HTTP_PORT", "9003")]).unwrap();
    assert_eq!(loaded.settings.http.port, 9003, "ENTE_* beats every file");
    let loaded = load(dir.path(), &[("ENTE_HTTP_PORT", "")]).unwrap();
    assert_eq!(
        loaded.settings.http.port, 9002,
        "an empty variable means unset"
    );
}

#[test]
fn env_names_with_dashes_reach_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    let loaded = load(
        dir.path(),
        &[
            (
                "ENTE_S3_WASABI_EU_CENTRAL_2_V3_ENDPOINT",
                "s3.eu-central-2.wasabisys.com",
            ),
            ("ENTE_S3_WASABI_EU_CENTRAL_2_V3_SECRET", "123456"),
            ("ENTE_S3_HOT_STORAGE_PRIMARY", "wasabi-eu-central-2-v3"),
            ("ENTE_S3_HOT_STORAGE_SECONDARY", "b2-eu-cen"),
            ("ENTE_HTTP_METRICS_PORT", "9200"),
            ("ENTE_DB_URL", "postgres://u:p@db:5432/museum"),
            ("ENTE_REPLICATION_WORKER_COUNT", "3"),
            ("ENTE_REPLICATION_MULTIPART_THRESHOLD", "268435456"),
        ],
    )
    .unwrap();
    let s = &loaded.settings;
    assert_eq!(
        s.s3.wasabi_eu_central_2_v3.endpoint.as_deref(),
        Some("s3.eu-central-2.wasabisys.com")
    );
    assert_eq!(
        s.s3.wasabi_eu_central_2_v3
            .secret
            .as_ref()
            .map(|x| x.expose_secret().to_owned()),
        Some("123456".to_owned()),
        "a numeric secret stays a string"
    );
    assert_eq!(s.s3.hot_storage.primary, "wasabi-eu-central-2-v3");
    assert_eq!(s.http.metrics_port, 9200);
    assert_eq!(s.replication.worker_count, 3);
    assert_eq!(s.replication.multipart_threshold, 256 * 1024 * 1024);
    assert_eq!(
        s.db.connection_url().expose_secret(),
        "postgres://u:p@db:5432/museum"
    );
}

#[test]
fn unknown_variables_and_keys_draw_warnings() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    write(dir.path(), "museum.yaml", "http:\n  prot: 1\n");
    let loaded = load(dir.path(), &[("ENTE_S3_B2_EU_CEN_ENDPIONT", "x")]).unwrap();
    let warnings = loaded.warnings.join("\n");
    assert!(
        warnings.contains("ENTE_S3_B2_EU_CEN_ENDPIONT"),
        "{warnings}"
    );
    assert!(
        warnings.contains("http.prot") && warnings.contains("museum.yaml"),
        "{warnings}"
    );
}

#[test]
fn validation_reports_every_problem_with_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    write(
        dir.path(),
        "credentials.yaml",
        "s3:\n  scw-eu-fr-v3:\n    key: k3\n    endpoint: localhost:3200\n    region: fr-par\n    bucket: Bad_Bucket\n",
    );
    write(
        dir.path(),
        "museum.yaml",
        "s3:\n  hot_storage:\n    primary: scw-eu-fr-v3\n",
    );
    let problems = problems(
        load(
            dir.path(),
            &[("ENTE_S3_B2_EU_CEN_ENDPOINT", "http://exa mple.com")],
        )
        .unwrap_err(),
    );
    let all = problems.join("\n");
    let expect = [
        ("s3.hot_storage.primary", "museum.yaml"),
        ("s3.scw-eu-fr-v3.bucket", "credentials.yaml"),
        ("s3.scw-eu-fr-v3.secret", "built-in default"),
        ("s3.b2-eu-cen.endpoint", "ENTE_S3_B2_EU_CEN_ENDPOINT"),
    ];
    for (key, source) in expect {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(&format!("`{key}`")) && p.contains(source)),
            "no problem for {key} from {source} in:\n{all}"
        );
    }
    assert_eq!(problems.len(), 4, "{all}");
    assert!(
        all.contains("b2-eu-cen or wasabi-eu-central-2-v3"),
        "the fix is named: {all}"
    );
}

#[test]
fn a_mistyped_value_names_the_key_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    let problems = problems(load(dir.path(), &[("ENTE_HTTP_PORT", "eighty")]).unwrap_err());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("http.port") && p.contains("ENTE_HTTP_PORT")),
        "{problems:?}"
    );
}

#[test]
fn credentials_file_can_be_moved_by_variable() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    write(dir.path(), "secrets/creds.yaml", "http:\n  port: 7001\n");
    let loaded = load(
        dir.path(),
        &[("ENTE_CREDENTIALS_FILE", "secrets/creds.yaml")],
    )
    .unwrap();
    assert_eq!(loaded.settings.http.port, 7001);
}

#[test]
fn a_missing_environment_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("local.yaml") && err.contains("ENVIRONMENT"),
        "{err}"
    );
}

#[test]
fn the_shipped_configuration_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = load(root, &[]).unwrap();
    assert!(loaded.settings.s3.embedded);
    assert_eq!(
        loaded.settings.s3.b2_eu_cen.bucket.as_deref(),
        Some("b2-eu-cen")
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn a_readable_credentials_file_draws_a_warning_outside_local() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/production.yaml", LOCAL);
    write(dir.path(), "credentials.yaml", "http:\n  port: 8081\n");
    let path = dir.path().join("credentials.yaml");
    let load_env = |environment: &str| {
        load_with_env(
            &Sources {
                dir: dir.path().to_owned(),
                environment: environment.to_owned(),
            },
            EnteEnv::from_vars(Vec::new()),
        )
        .unwrap()
        .warnings
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warnings = load_env("production").join("\n");
    assert!(warnings.contains("chmod 600"), "{warnings}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(load_env("production").is_empty());
    write(dir.path(), "configurations/local.yaml", LOCAL);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        load_env("local").is_empty(),
        "the local environment is exempt"
    );
}

#[test]
fn a_multipart_threshold_past_s3s_limits_is_named_with_its_range() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    for bad in ["1024", "6442450944"] {
        let problems = problems(
            load(dir.path(), &[("ENTE_REPLICATION_MULTIPART_THRESHOLD", bad)]).unwrap_err(),
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`replication.multipart-threshold`")
                    && p.contains("ENTE_REPLICATION_MULTIPART_THRESHOLD")
                    && p.contains("5 GiB")),
            "{bad}: {problems:?}"
        );
    }
}

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

#[test]
fn unquoted_numbers_and_booleans_in_text_keys_are_read_as_written() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    write(
        dir.path(),
        "credentials.yaml",
        "s3:\n  b2-eu-cen:\n    key: 4711\n    secret: 12345678\n  wasabi-eu-central-2-v3:\n    secret: 0x1F\n\
         db:\n  host: db.internal\n  user: 1000\n  name: 42\n  password: 1.50\n",
    );
    write(
        dir.path(),
        "museum.yaml",
        "s3:\n  scw-eu-fr-v3:\n    key: k3\n    secret: true\n    endpoint: localhost:3200\n    region: 1\n    bucket: 123\n",
    );
    let loaded = load(dir.path(), &[]).unwrap();
    let s = &loaded.settings;
    let secret =
        |b: &museum::config::BucketConfig| b.secret.as_ref().unwrap().expose_secret().to_owned();
    assert_eq!(secret(&s.s3.b2_eu_cen), "12345678");
    assert_eq!(s.s3.b2_eu_cen.key.as_deref(), Some("4711"));
    assert_eq!(
        secret(&s.s3.wasabi_eu_central_2_v3),
        "0x1F",
        "as written, not 31"
    );
    assert_eq!(secret(&s.s3.scw_eu_fr_v3), "true");
    assert_eq!(s.s3.scw_eu_fr_v3.region.as_deref(), Some("1"));
    assert_eq!(s.s3.scw_eu_fr_v3.bucket.as_deref(), Some("123"));
    assert_eq!(
        s.db.connection_url().expose_secret(),
        "postgres://1000:1.50@db.internal:5432/42?sslmode=disable",
        "1.50, not 1.5"
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn a_secret_that_cannot_be_read_is_named_without_its_value() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    write(
        dir.path(),
        "credentials.yaml",
        "db:\n  password:\n    hunter2: 987654\n",
    );
    let problems = problems(load(dir.path(), &[]).unwrap_err());
    let all = problems.join("\n");
    assert!(
        all.contains("`db.password`") && all.contains("credentials.yaml"),
        "{all}"
    );
    assert!(!all.contains("hunter2") && !all.contains("987654"), "{all}");
}

#[test]
fn a_part_size_too_small_for_max_file_size_names_both_keys_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    // 16 MiB parts × 10,000 = 156.25 GiB, short of 200 GiB.
    write(
        dir.path(),
        "museum.yaml",
        "max-file-size: 214748364800\nreplication:\n  part-size: 16777216\n",
    );
    let problems = problems(load(dir.path(), &[]).unwrap_err());
    let all = problems.join("\n");
    assert_eq!(problems.len(), 1, "{all}");
    assert!(
        all.contains("`replication.part-size`")
            && all.contains("max-file-size")
            && all.contains("museum.yaml")
            && all.contains("10,000")
            && all.contains("at least 21 MiB"),
        "{all}"
    );
    // Set by variable, the part size that fits is accepted.
    let loaded = load(dir.path(), &[("ENTE_REPLICATION_PART_SIZE", "22020096")]).unwrap();
    assert_eq!(loaded.settings.replication.part_size, 21 * 1024 * 1024);
}

#[test]
fn timeouts_and_the_instance_timeout_are_read_and_checked_against_each_other() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    let loaded = load(
        dir.path(),
        &[
            ("ENTE_S3_IDLE_TIMEOUT", "10s"),
            ("ENTE_S3_REQUEST_TIMEOUT", "2m"),
            ("ENTE_S3_MIN_BYTES_PER_SECOND", "65536"),
            ("ENTE_REPLICATION_INSTANCE_TIMEOUT", "8s"),
        ],
    )
    .unwrap();
    let s3 = &loaded.settings.s3;
    assert_eq!(s3.idle_timeout.get(), std::time::Duration::from_secs(10));
    assert_eq!(
        s3.request_timeout.get(),
        std::time::Duration::from_secs(120)
    );
    assert_eq!(s3.min_bytes_per_second, 65536);
    assert_eq!(
        loaded.settings.replication.instance_timeout.get(),
        std::time::Duration::from_secs(8)
    );

    // A lease shorter than two idle timeouts would be lost by a copy whose bytes move.
    let problems = problems(
        load(
            dir.path(),
            &[
                ("ENTE_S3_IDLE_TIMEOUT", "45s"),
                ("ENTE_S3_REQUEST_TIMEOUT", "20s"),
                ("ENTE_S3_MIN_BYTES_PER_SECOND", "0"),
                ("ENTE_REPLICATION_INSTANCE_TIMEOUT", "0s"),
            ],
        )
        .unwrap_err(),
    );
    let all = problems.join("\n");
    for (key, variable, fix) in [
        (
            "replication.lease",
            "built-in default",
            "twice s3.idle-timeout (45s)",
        ),
        (
            "s3.request-timeout",
            "ENTE_S3_REQUEST_TIMEOUT",
            "between s3.idle-timeout (45s) and 24h",
        ),
        (
            "s3.min-bytes-per-second",
            "ENTE_S3_MIN_BYTES_PER_SECOND",
            "at least 1024",
        ),
        (
            "replication.instance-timeout",
            "ENTE_REPLICATION_INSTANCE_TIMEOUT",
            "between 1s and 10m",
        ),
    ] {
        assert!(
            problems.iter().any(|p| p.contains(&format!("`{key}`"))
                && p.contains(variable)
                && p.contains(fix)),
            "no problem for {key} from {variable} naming the fix in:\n{all}"
        );
    }
    assert_eq!(problems.len(), 4, "{all}");
}

#[test]
fn sse_c_keys_are_read_from_credentials_checked_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    // A key of 17 bytes, and a key on the primary: both named, neither shown.
    let short = "c2hvcnQta2V5LXNpeHRlZW4="; // 17 bytes
    let good = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    write(
        dir.path(),
        "credentials.yaml",
        &format!(
            "s3:\n  b2-eu-cen:\n    sse_c_key: {good}\n  wasabi-eu-central-2-v3:\n    sse_c_key: {short}\n"
        ),
    );
    let problems = problems(load(dir.path(), &[]).unwrap_err());
    let all = problems.join("\n");
    assert_eq!(problems.len(), 2, "{all}");
    assert!(
        all.contains("`s3.wasabi-eu-central-2-v3.sse_c_key`") && all.contains("17 bytes"),
        "{all}"
    );
    assert!(
        all.contains("`s3.b2-eu-cen.sse_c_key`") && all.contains("primary"),
        "{all}"
    );
    assert!(!all.contains(short) && !all.contains(good), "{all}");

    // On a replica, a 32-byte key is taken, and debug output hides it.
    write(
        dir.path(),
        "credentials.yaml",
        &format!("s3:\n  wasabi-eu-central-2-v3:\n    sse_c_key: {good}\n"),
    );
    let loaded = load(dir.path(), &[]).unwrap();
    let key = loaded
        .settings
        .s3
        .wasabi_eu_central_2_v3
        .sse_c_key
        .as_ref()
        .unwrap();
    assert_eq!(key.expose_secret(), good);
    assert!(!format!("{:?}", loaded.settings).contains(good));
}

#[test]
fn account_keys_are_checked_named_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    write(
        dir.path(),
        "credentials.yaml",
        "admin:\n  key: short1\nauth:\n  jwt:\n    secret: tiny-jwt-secret\n",
    );
    let problems = problems(
        load(
            dir.path(),
            &[
                ("ENTE_QUOTA_DEFAULT_BYTES", "9999999999999999999"),
                ("ENTE_INTERNAL_TRUSTED_CLIENT_IP_HEADER", "bad header"),
            ],
        )
        .unwrap_err(),
    );
    let all = problems.join("\n");
    for key in [
        "`admin.key`",
        "`auth.jwt.secret`",
        "`quota.default-bytes`",
        "`internal.trusted-client-ip-header`",
    ] {
        assert!(all.contains(key), "{key} in {all}");
    }
    assert!(
        !all.contains("short1") && !all.contains("tiny-jwt-secret"),
        "{all}"
    );
    // Numeric-looking secrets stay text, from a variable too.
    let loaded = load(
        dir.path(),
        &[
            ("ENTE_ADMIN_KEY", "12345678901234567890"),
            ("ENTE_AUTH_JWT_SECRET", "123456789012345678901234567890123"),
        ],
    )
    .unwrap();
    assert_eq!(
        loaded.settings.admin.key.unwrap().expose_secret(),
        "12345678901234567890"
    );
}

#[test]
fn scrub_event_and_rate_keys_are_checked_named_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "configurations/local.yaml", LOCAL);
    let problems = problems(
        load(
            dir.path(),
            &[
                ("ENTE_SCRUB_READ_SAMPLE", "1.5"),
                ("ENTE_SCRUB_OBJECTS_PER_SECOND", "0"),
                ("ENTE_SCRUB_BYTES_PER_SECOND", "10"),
                ("ENTE_REPLICATION_MAX_BYTES_PER_SECOND", "100"),
                (
                    "ENTE_EVENTS_WEBHOOK_URL",
                    "ftp://hook-secret-99@example.com/x",
                ),
            ],
        )
        .unwrap_err(),
    );
    let all = problems.join("\n");
    for key in [
        "`scrub.read-sample`",
        "`scrub.objects-per-second`",
        "`scrub.bytes-per-second`",
        "`replication.max-bytes-per-second`",
        "`events.webhook-url`",
    ] {
        assert!(all.contains(key), "{key} in {all}");
    }
    assert!(!all.contains("hook-secret-99"), "{all}");
    let loaded = load(
        dir.path(),
        &[
            ("ENTE_SCRUB_INTERVAL", "7d"),
            (
                "ENTE_EVENTS_WEBHOOK_URL",
                "https://hooks.example.com/museum",
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        loaded.settings.scrub.interval.get(),
        std::time::Duration::from_secs(7 * 86_400)
    );
}

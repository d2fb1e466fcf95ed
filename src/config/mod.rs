//! Settings: the typed configuration tree, its layered loading (Ente's files and
//! `ENTE_*` variables) and start-up validation.

mod duration;
mod env;
mod jwt;
mod validate;
mod yaml;

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::Serialized;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use duration::HumanDuration;
pub use env::{ENV_PREFIX, EnteEnv, env_name_for};
pub use validate::MAX_QUOTA_BYTES;
use yaml::TextYaml;

/// The three fixed bucket IDs, in the order Ente lists them.
pub const BUCKET_IDS: [&str; 3] = ["b2-eu-cen", "wasabi-eu-central-2-v3", "scw-eu-fr-v3"];
/// Bucket IDs that may serve as the hot primary.
pub const HOT_BUCKET_IDS: [&str; 2] = ["b2-eu-cen", "wasabi-eu-central-2-v3"];
/// The glacier tier's bucket ID.
pub const GLACIER_BUCKET_ID: &str = "scw-eu-fr-v3";

/// Every problem found while loading or validating the configuration, reported at once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `configurations/<ENVIRONMENT>.yaml` does not exist. `path` is absolute.
    #[error(
        "no configuration file {file} in {folder}: run museum from the folder that holds configurations/ \
         (the repository root), or set ENVIRONMENT to the name of a file there (default `local`)",
        file = .path.file_name().unwrap_or_default().display(),
        folder = .path.parent().unwrap_or(.path).display()
    )]
    MissingEnvironmentFile { path: PathBuf },
    /// One or more keys are invalid; each line names the key, its source and the fix.
    #[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
    Invalid { problems: Vec<String> },
}

/// The whole configuration tree. Key names follow Ente's `museum.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub s3: S3Config,
    pub db: DbConfig,
    pub http: HttpConfig,
    pub replication: ReplicationConfig,
    pub log: LogConfig,
    pub jobs: JobsConfig,
    pub admin: AdminConfig,
    pub auth: AuthConfig,
    pub quota: QuotaConfig,
    #[serde(rename = "rate-limit")]
    pub rate_limit: RateLimitConfig,
    pub internal: InternalConfig,
    pub scrub: ScrubConfig,
    pub events: EventsConfig,
    /// Largest object a report may commit, in bytes.
    #[serde(rename = "max-file-size")]
    pub max_file_size: u64,
    /// Where `credentials.yaml` lives (Ente's `credentials-file`).
    #[serde(rename = "credentials-file")]
    pub credentials_file: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            s3: S3Config::default(),
            db: DbConfig::default(),
            http: HttpConfig::default(),
            replication: ReplicationConfig::default(),
            log: LogConfig::default(),
            jobs: JobsConfig::default(),
            admin: AdminConfig::default(),
            auth: AuthConfig::default(),
            quota: QuotaConfig::default(),
            rate_limit: RateLimitConfig::default(),
            internal: InternalConfig::default(),
            scrub: ScrubConfig::default(),
            events: EventsConfig::default(),
            max_file_size: 10 * 1024 * 1024 * 1024,
            credentials_file: None,
        }
    }
}

/// `s3.*`: the buckets and how museum addresses them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Config {
    /// Local buckets: path-style URLs, plain HTTP, no storage class.
    pub are_local_buckets: bool,
    /// Force path-style URLs for every bucket.
    pub use_path_style_urls: bool,
    pub hot_storage: HotStorageConfig,
    #[serde(rename = "b2-eu-cen")]
    pub b2_eu_cen: BucketConfig,
    #[serde(rename = "wasabi-eu-central-2-v3")]
    pub wasabi_eu_central_2_v3: BucketConfig,
    #[serde(rename = "scw-eu-fr-v3")]
    pub scw_eu_fr_v3: BucketConfig,
    /// Start the in-process S3 server (the embedded default).
    pub embedded: bool,
    /// Address the embedded S3 server listens on.
    #[serde(rename = "embedded-address")]
    pub embedded_address: String,
    /// Folder the embedded S3 server stores buckets in, one sub-folder per bucket.
    #[serde(rename = "embedded-root")]
    pub embedded_root: PathBuf,
    /// How long presigned URLs stay valid.
    #[serde(rename = "presign-expiry")]
    pub presign_expiry: HumanDuration,
    /// `redirect` (307 to a presigned GET) or `proxy` (stream through museum).
    pub serve_mode: ServeMode,
    /// How long a request to a bucket may go without a byte moving, either way,
    /// before it fails (a copy is then retried).
    #[serde(rename = "idle-timeout")]
    pub idle_timeout: HumanDuration,
    /// The longest museum waits on a bucket over one request, besides the time the
    /// request's bytes take at `min-bytes-per-second`.
    #[serde(rename = "request-timeout")]
    pub request_timeout: HumanDuration,
    /// The slowest transfer museum waits for, in bytes per second: a request that
    /// carries N bytes may also take N / this many seconds.
    #[serde(rename = "min-bytes-per-second")]
    pub min_bytes_per_second: u64,
    /// How many times a request to a bucket that failed on the way (no connection, a
    /// 5xx or 429 answer, a dropped connection of a request safe to repeat) is sent
    /// again, with exponential backoff, before the failure is museum's to handle.
    pub retries: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            are_local_buckets: false,
            use_path_style_urls: false,
            hot_storage: HotStorageConfig::default(),
            b2_eu_cen: BucketConfig::default(),
            wasabi_eu_central_2_v3: BucketConfig::default(),
            scw_eu_fr_v3: BucketConfig::default(),
            embedded: false,
            embedded_address: "127.0.0.1:3200".to_owned(),
            embedded_root: PathBuf::from("data/s3"),
            presign_expiry: HumanDuration(Duration::from_secs(7 * 24 * 3600)),
            serve_mode: ServeMode::Redirect,
            idle_timeout: HumanDuration(Duration::from_secs(30)),
            request_timeout: HumanDuration(Duration::from_secs(300)),
            min_bytes_per_second: 128 * 1024,
            retries: 3,
        }
    }
}

impl S3Config {
    /// The configuration of bucket `id`, if `id` is one of [`BUCKET_IDS`].
    pub fn bucket(&self, id: &str) -> Option<&BucketConfig> {
        match id {
            "b2-eu-cen" => Some(&self.b2_eu_cen),
            "wasabi-eu-central-2-v3" => Some(&self.wasabi_eu_central_2_v3),
            "scw-eu-fr-v3" => Some(&self.scw_eu_fr_v3),
            _ => None,
        }
    }

    /// Mutable access to the configuration of bucket `id`.
    pub fn bucket_mut(&mut self, id: &str) -> Option<&mut BucketConfig> {
        match id {
            "b2-eu-cen" => Some(&mut self.b2_eu_cen),
            "wasabi-eu-central-2-v3" => Some(&mut self.wasabi_eu_central_2_v3),
            "scw-eu-fr-v3" => Some(&mut self.scw_eu_fr_v3),
            _ => None,
        }
    }
}

/// How downloads are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServeMode {
    Redirect,
    Proxy,
}

/// `s3.hot_storage.*`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HotStorageConfig {
    pub primary: String,
    pub secondary: Option<String>,
}

impl Default for HotStorageConfig {
    fn default() -> Self {
        Self {
            primary: "b2-eu-cen".to_owned(),
            secondary: Some("wasabi-eu-central-2-v3".to_owned()),
        }
    }
}

/// One bucket's connection settings. A bucket without a `bucket` name is absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BucketConfig {
    pub key: Option<String>,
    #[serde(serialize_with = "serialize_secret")]
    pub secret: Option<SecretString>,
    pub endpoint: Option<String>,
    /// The endpoint clients reach, when it differs from the one museum uses (e.g. a
    /// public hostname in front of an internal `minio:3200`). Presigned URLs handed
    /// to clients use it; museum's own requests use `endpoint`.
    pub public_endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub use_path_style_urls: Option<bool>,
    pub disable_ssl: Option<bool>,
    pub storage_class: Option<String>,
    /// The SSE-C key (base64 of 32 bytes) copies written to this bucket are encrypted
    /// with; every read, verify and failover of this bucket sends it. Replica buckets
    /// only: clients upload to the primary without a key.
    #[serde(serialize_with = "serialize_secret")]
    pub sse_c_key: Option<SecretString>,
}

impl BucketConfig {
    /// Whether this bucket takes part (it has a `bucket` name).
    pub fn is_present(&self) -> bool {
        self.bucket.as_deref().is_some_and(|b| !b.is_empty())
    }
}

/// `db.*`: a URL, or Ente's host/port/name/user/password/sslmode.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DbConfig {
    #[serde(serialize_with = "serialize_secret")]
    pub url: Option<SecretString>,
    pub host: Option<String>,
    pub port: u16,
    pub name: Option<String>,
    pub user: Option<String>,
    #[serde(serialize_with = "serialize_secret")]
    pub password: Option<SecretString>,
    pub sslmode: Option<String>,
    /// Largest number of pooled connections.
    #[serde(rename = "max-connections")]
    pub max_connections: u32,
    /// How long a request waits for a pooled connection.
    #[serde(rename = "acquire-timeout")]
    pub acquire_timeout: HumanDuration,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            url: None,
            host: None,
            port: 5432,
            name: None,
            user: None,
            password: None,
            sslmode: None,
            max_connections: 10,
            acquire_timeout: HumanDuration(Duration::from_secs(5)),
        }
    }
}

/// The default database: a SQLite file under `data/`.
pub const DEFAULT_DB_URL: &str = "sqlite://data/museum.db";

impl DbConfig {
    /// The connection URL: `db.url`, else one built from Ente's `db.host` keys, else
    /// the SQLite default.
    pub fn connection_url(&self) -> SecretString {
        if let Some(url) = self.url.as_ref().filter(|u| !u.expose_secret().is_empty()) {
            return url.clone();
        }
        let Some(host) = self.host.as_deref().filter(|h| !h.is_empty()) else {
            return SecretString::from(DEFAULT_DB_URL);
        };
        let user = self.user.as_deref().unwrap_or("postgres");
        let name = self.name.as_deref().unwrap_or("ente_db");
        let password = self
            .password
            .as_ref()
            .map(|p| format!(":{}", encode_userinfo(p.expose_secret())))
            .unwrap_or_default();
        let sslmode = self.sslmode.as_deref().unwrap_or("disable");
        SecretString::from(format!(
            "postgres://{}{password}@{host}:{}/{name}?sslmode={sslmode}",
            encode_userinfo(user),
            self.port
        ))
    }
}

fn encode_userinfo(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// `http.*`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Address the API binds to.
    pub host: String,
    pub port: u16,
    #[serde(rename = "metrics-port")]
    pub metrics_port: u16,
    /// Address the metrics listener binds to: loopback unless Prometheus scrapes it
    /// from elsewhere (compose sets 0.0.0.0 inside its network).
    #[serde(rename = "metrics-host")]
    pub metrics_host: String,
    /// Longest time one API request may take.
    #[serde(rename = "request-timeout")]
    pub request_timeout: HumanDuration,
    /// Longest wait for the next piece of a request body (slow clients get a 400).
    #[serde(rename = "body-timeout")]
    pub body_timeout: HumanDuration,
    /// Which web origins may call the API and the embedded S3 server.
    pub cors: CorsConfig,
    /// Port of the admin API (tokens, quotas, usage); it runs only when `admin.key`
    /// is set.
    #[serde(rename = "admin-port")]
    pub admin_port: u16,
    /// Address the admin API binds to: loopback unless you put it behind your own
    /// network controls.
    #[serde(rename = "admin-host")]
    pub admin_host: String,
}

/// `http.cors.*`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsConfig {
    /// Origins (`scheme://host[:port]`) allowed to call the API and the embedded S3
    /// server from a browser. Empty means any origin, as Ente's server allows. Written
    /// as a YAML list, or comma-separated in `ENTE_HTTP_CORS_ALLOWED_ORIGINS`.
    #[serde(rename = "allowed-origins", deserialize_with = "list_or_commas")]
    pub allowed_origins: Vec<String>,
}

/// A list of strings, given as a list or as one comma-separated string (the form an
/// environment variable can carry). Blank entries are dropped.
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        One(String),
    }
    let items = match Raw::deserialize(d)? {
        Raw::List(items) => items,
        Raw::One(joined) => joined.split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 8080,
            metrics_port: 2112,
            metrics_host: "127.0.0.1".to_owned(),
            request_timeout: HumanDuration(Duration::from_secs(60)),
            body_timeout: HumanDuration(Duration::from_secs(10)),
            cors: CorsConfig::default(),
            admin_port: 2113,
            admin_host: "127.0.0.1".to_owned(),
        }
    }
}

/// `replication.*`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplicationConfig {
    /// Run the copy workers. When off, copies still queue, to drain once it is on.
    pub enabled: bool,
    /// Copy workers per process. Each claims and copies up to `batch-size` objects
    /// at once.
    #[serde(rename = "worker-count")]
    pub worker_count: u32,
    /// How many objects one worker claims in one statement and copies at once. Small
    /// objects cost per round trip, not per byte: batches keep the buckets and the
    /// database busy while each copy waits on its own requests.
    #[serde(rename = "batch-size")]
    pub batch_size: u32,
    /// How many bytes the copies of one process may hold in memory at once: each
    /// part (or whole small object) is reserved before it is read and given back once
    /// every target has it.
    #[serde(rename = "memory-limit")]
    pub memory_limit: u64,
    /// Objects larger than this are copied with a multipart upload; smaller ones with
    /// one PUT per target, sent from memory: a copy holds this much at most.
    #[serde(rename = "multipart-threshold")]
    pub multipart_threshold: u64,
    /// The part size of multipart copies.
    #[serde(rename = "part-size")]
    pub part_size: u64,
    pub retry: RetryConfig,
    /// How long a claimed copy stays reserved once its bytes stop moving, before
    /// another worker may take it over. It is renewed only while they move.
    pub lease: HumanDuration,
    /// How long an instance (a museum process) may go without a heartbeat before the
    /// others count it dead and return the copies it held to the queue.
    #[serde(rename = "instance-timeout")]
    pub instance_timeout: HumanDuration,
    /// How often idle workers look for due copies (a report also wakes them at once).
    #[serde(rename = "poll-interval")]
    pub poll_interval: HumanDuration,
    /// How long after `DELETE /files/{id}` the copies are removed from every bucket.
    #[serde(rename = "delete-delay")]
    pub delete_delay: HumanDuration,
    /// A copy verified later than this after its report is logged as a `copy_late`
    /// event.
    #[serde(rename = "late-after")]
    pub late_after: HumanDuration,
    /// The most bytes per second the copies of one process read from their sources,
    /// all workers together. Unset: as fast as the buckets go.
    #[serde(rename = "max-bytes-per-second")]
    pub max_bytes_per_second: Option<u64>,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            worker_count: 6,
            batch_size: 16,
            memory_limit: 256 * 1024 * 1024,
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            retry: RetryConfig::default(),
            lease: HumanDuration(Duration::from_secs(60)),
            instance_timeout: HumanDuration(Duration::from_secs(5)),
            poll_interval: HumanDuration(Duration::from_secs(1)),
            delete_delay: HumanDuration(Duration::from_secs(45 * 24 * 3600)),
            late_after: HumanDuration(Duration::from_secs(15 * 60)),
            max_bytes_per_second: None,
        }
    }
}

/// `replication.retry.*`: exponential backoff between failed attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryConfig {
    pub initial: HumanDuration,
    pub max: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial: HumanDuration(Duration::from_secs(5)),
            max: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

/// `scrub.*`: the background scrub, which checks every tier of every object and
/// heals what it finds missing or damaged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ScrubConfig {
    /// How often a pass over every object starts (counted from the end of the last
    /// one); 0 turns the background scrub off (`museum scrub` still runs one).
    pub interval: HumanDuration,
    /// The most objects per second a pass checks (each tier of each by HEAD).
    #[serde(rename = "objects-per-second")]
    pub objects_per_second: u32,
    /// The most bytes per second a pass reads in full.
    #[serde(rename = "bytes-per-second")]
    pub bytes_per_second: u64,
    /// The share of tiers (0 to 1) a pass reads in full and checks by MD5, beyond
    /// the HEAD every tier gets; each pass picks others. GLACIER tiers are never read.
    #[serde(rename = "read-sample")]
    pub read_sample: f64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self {
            interval: HumanDuration(Duration::from_secs(30 * 24 * 3600)),
            objects_per_second: 20,
            bytes_per_second: 16 * 1024 * 1024,
            read_sample: 0.01,
        }
    }
}

/// `events.*`: where operator events go besides the log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventsConfig {
    /// Each event is POSTed here as JSON, with retries, from a bounded queue. Unset:
    /// events go to the log and the metrics only.
    #[serde(rename = "webhook-url", serialize_with = "serialize_secret")]
    pub webhook_url: Option<SecretString>,
}

/// `log.*`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `json` or `pretty`; unset means pretty on a terminal and JSON otherwise.
    pub format: Option<LogFormat>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// `jobs.*`: background housekeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JobsConfig {
    /// How often expired, unreported upload keys are cleaned up.
    #[serde(rename = "cleanup-interval")]
    pub cleanup_interval: HumanDuration,
    /// How long after its presigned URL expires an unreported key is kept.
    #[serde(rename = "temp-object-grace")]
    pub temp_object_grace: HumanDuration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            cleanup_interval: HumanDuration(Duration::from_secs(300)),
            temp_object_grace: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

/// `admin.*`: the admin API's key (set it in `credentials.yaml`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    /// Sent as `Authorization: Bearer <key>` on every admin call. Unset: no admin API.
    #[serde(serialize_with = "serialize_secret")]
    pub key: Option<SecretString>,
}

/// `auth.*`: ways in besides museum's own tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub jwt: JwtConfig,
}

/// `auth.jwt.*`: JWTs signed by the app's own auth server. Set `secret` (HS256) or
/// `public-key` (PEM: Ed25519 for EdDSA, P-256 for ES256, RSA for RS256), not both.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JwtConfig {
    /// The HS256 shared secret, at least 32 bytes.
    #[serde(serialize_with = "serialize_secret")]
    pub secret: Option<SecretString>,
    /// The PEM public key the tokens are verified with.
    #[serde(rename = "public-key")]
    pub public_key: Option<String>,
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` must name it.
    pub audience: Option<String>,
}

impl JwtConfig {
    /// Whether JWTs are accepted at all.
    pub fn is_enabled(&self) -> bool {
        self.secret
            .as_ref()
            .is_some_and(|s| !s.expose_secret().is_empty())
            || self.public_key.as_deref().is_some_and(|k| !k.is_empty())
    }
}

/// `quota.*`: per-user storage quotas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaConfig {
    /// Every user's quota unless the admin API sets one of its own. Unset: unlimited.
    #[serde(rename = "default-bytes")]
    pub default_bytes: Option<u64>,
    /// How far past its quota a user's uploads may go (Ente allows 50 MiB).
    #[serde(rename = "overflow-bytes")]
    pub overflow_bytes: u64,
    /// Most keys a user may hold issued and not yet reported (nor expired); past it,
    /// upload-URL requests get 429 until the user reports or the keys expire. 0: no cap.
    #[serde(rename = "max-unreported-keys")]
    pub max_unreported_keys: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            default_bytes: None,
            overflow_bytes: 50 * 1024 * 1024,
            max_unreported_keys: 1000,
        }
    }
}

/// `rate-limit.*`: requests per minute; 0 turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Upload URLs signed per user per minute, each part URL and completion URL of a
    /// multipart upload counted (a 10 GiB multipart upload in 5 MiB parts signs 2,049).
    #[serde(rename = "upload-urls-per-minute")]
    pub upload_urls_per_minute: u32,
    /// Failed authentications per client address per minute; past it, the address
    /// gets 429 until its budget refills.
    #[serde(rename = "failed-auth-per-minute")]
    pub failed_auth_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            upload_urls_per_minute: 5000,
            failed_auth_per_minute: 60,
        }
    }
}

/// `internal.*` (Ente's section for deployment details).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct InternalConfig {
    /// The header a trusted reverse proxy puts the client's address in (e.g.
    /// `X-Real-IP`); unset: the connection's peer address.
    #[serde(rename = "trusted-client-ip-header")]
    pub trusted_client_ip_header: Option<String>,
    /// How many of the header's entries, counted from the right, trusted proxies
    /// wrote: the client's address is the entry this many from the right. 1 (one
    /// proxy that overwrites or appends) unless more proxies append in a chain.
    #[serde(rename = "trusted-proxy-hops")]
    pub trusted_proxy_hops: u32,
}

impl Default for InternalConfig {
    fn default() -> Self {
        Self {
            trusted_client_ip_header: None,
            trusted_proxy_hops: 1,
        }
    }
}

fn serialize_secret<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(s) => serializer.serialize_some(s.expose_secret()),
        None => serializer.serialize_none(),
    }
}

/// Where the configuration files are read from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Folder holding `configurations/`, `credentials.yaml` and `museum.yaml`.
    pub dir: PathBuf,
    /// `ENVIRONMENT`, default `local`.
    pub environment: String,
}

impl Sources {
    /// Sources for the current directory and the `ENVIRONMENT` variable.
    pub fn from_process() -> Self {
        Self {
            dir: PathBuf::from("."),
            environment: std::env::var("ENVIRONMENT")
                .ok()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "local".to_owned()),
        }
    }
}

/// A loaded configuration, with the warnings found while loading it.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    /// Keys that were set but that museum does not know, and other non-fatal findings.
    pub warnings: Vec<String>,
}

/// Loads the configuration in Ente's order, later wins: defaults →
/// `configurations/<ENVIRONMENT>.yaml` → `credentials.yaml` → `museum.yaml` → `ENTE_*`.
/// Then validates it, reporting every problem at once.
pub fn load(sources: &Sources) -> Result<Loaded, ConfigError> {
    load_with_env(sources, EnteEnv::from_process())
}

/// [`load`] with the given `ENTE_*` variables instead of the process environment.
pub fn load_with_env(sources: &Sources, env: EnteEnv) -> Result<Loaded, ConfigError> {
    let env_file = sources
        .dir
        .join("configurations")
        .join(format!("{}.yaml", sources.environment));
    if !env_file.is_file() {
        return Err(ConfigError::MissingEnvironmentFile {
            path: std::path::absolute(&env_file).unwrap_or(env_file),
        });
    }
    let base =
        Figment::from(Serialized::defaults(Settings::default())).merge(TextYaml::file(&env_file));
    let credentials_path = credentials_path(&base, &sources.dir, &env);
    let figment = base
        .merge(TextYaml::file(&credentials_path))
        .merge(TextYaml::file(sources.dir.join("museum.yaml")))
        .merge(env.clone());

    let mut warnings = env.unknown_warnings();
    warnings.extend(validate::unknown_file_keys(&figment));

    let settings: Settings = figment.extract().map_err(|e| ConfigError::Invalid {
        problems: e
            .into_iter()
            .map(|e| validate::describe_figment_error(&e))
            .collect(),
    })?;
    let problems = validate::validate(&settings, &figment);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { problems });
    }
    if sources.environment != "local" {
        warnings.extend(validate::credentials_permissions(&credentials_path));
    }
    Ok(Loaded { settings, warnings })
}

fn credentials_path(base: &Figment, dir: &Path, env: &EnteEnv) -> PathBuf {
    let from_env = env.get("credentials-file");
    let from_file = base.extract_inner::<String>("credentials-file").ok();
    match from_env.or(from_file).filter(|p| !p.is_empty()) {
        Some(p) if Path::new(&p).is_absolute() => PathBuf::from(p),
        Some(p) => dir.join(p),
        None => dir.join("credentials.yaml"),
    }
}

/// Every key path museum understands, dotted, as written in YAML.
pub fn known_keys() -> Vec<String> {
    // Every leaf of the serialized default tree. Optional keys serialize as null, so
    // they are leaves too; lists are leaves, set as a whole.
    fn walk(prefix: &str, value: &serde_json::Value, keys: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (name, child) in map {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&path, child, keys);
                }
            }
            _ => keys.push(prefix.to_owned()),
        }
    }
    let mut keys = Vec::new();
    // Serializing plain structs of strings, numbers and options cannot fail.
    if let Ok(tree) = serde_json::to_value(Settings::default()) {
        walk("", &tree, &mut keys);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_secrets() {
        let mut settings = Settings::default();
        settings.s3.b2_eu_cen.secret = Some(SecretString::from("very-secret-value"));
        settings.db.password = Some(SecretString::from("db-secret-value"));
        settings.admin.key = Some(SecretString::from("admin-key-value"));
        settings.auth.jwt.secret = Some(SecretString::from("jwt-secret-value"));
        let debug = format!("{settings:?}");
        assert!(!debug.contains("admin-key-value"), "{debug}");
        assert!(!debug.contains("jwt-secret-value"), "{debug}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(!debug.contains("db-secret-value"), "{debug}");
    }

    #[test]
    fn ente_db_keys_build_a_postgres_url() {
        let db = DbConfig {
            host: Some("db.internal".into()),
            user: Some("pguser".into()),
            name: Some("ente_db".into()),
            password: Some(SecretString::from("p@ss word")),
            ..DbConfig::default()
        };
        assert_eq!(
            db.connection_url().expose_secret(),
            "postgres://pguser:p%40ss%20word@db.internal:5432/ente_db?sslmode=disable"
        );
    }

    #[test]
    fn a_missing_environment_file_names_the_folder_looked_in_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let sources = Sources {
            dir: dir.path().join("."),
            environment: "staging".to_owned(),
        };
        let err = load_with_env(&sources, EnteEnv::from_vars([])).unwrap_err();
        let folder = std::path::absolute(dir.path().join("configurations")).unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "no configuration file staging.yaml in {}: run museum from the folder that holds configurations/ \
                 (the repository root), or set ENVIRONMENT to the name of a file there (default `local`)",
                folder.display()
            )
        );
        assert!(folder.is_absolute());
        assert!(!err.to_string().contains("/./"), "{err}");
    }

    #[test]
    fn no_db_keys_means_the_sqlite_default() {
        assert_eq!(
            DbConfig::default().connection_url().expose_secret(),
            DEFAULT_DB_URL
        );
    }
}

//! Start-up checks: every problem is collected, each naming its key, where the value
//! came from, and how to fix it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::value::Value;
use secrecy::ExposeSecret;

use super::{BUCKET_IDS, BucketConfig, HOT_BUCKET_IDS, Settings, env_name_for, known_keys};
use crate::storage::limits::MAX_PARTS;

/// Where the value of `key` came from: a file, an environment variable or the default.
pub fn origin(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(md) => match &md.source {
            Some(figment::Source::File(path)) => path.display().to_string(),
            _ if md.name == "environment variable" => env_name_for(key),
            _ => "the built-in default".to_owned(),
        },
        None => "the built-in default".to_owned(),
    }
}

/// Renders one extraction error as `key (from source): problem`.
pub fn describe_figment_error(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let source = match &e.metadata {
        Some(md) => match &md.source {
            Some(figment::Source::File(path)) => path.display().to_string(),
            _ if md.name == "environment variable" => env_name_for(&key),
            _ => md.name.to_string(),
        },
        None => "unknown source".to_owned(),
    };
    if is_secret(&key) {
        format!(
            "`{key}` (from {source}): {}",
            describe_without_value(&e.kind)
        )
    } else {
        format!("`{key}` (from {source}): {}", e.kind)
    }
}

/// Keys whose values are credentials, or carry one (`db.url`): never shown.
fn is_secret(key: &str) -> bool {
    matches!(
        key.rsplit('.').next(),
        Some("secret" | "password" | "url" | "key" | "webhook-url")
    )
}

/// An extraction problem told without the value that caused it.
fn describe_without_value(kind: &figment::error::Kind) -> String {
    use figment::error::{Actual, Kind};
    let found = |actual: &Actual| match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => "a number",
        Actual::Char(_) | Actual::Str(_) | Actual::Bytes(_) => "text",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "a list",
        Actual::Map => "a map",
        _ => "another kind of value",
    };
    let shown = "(the value is a secret and is not shown)";
    match kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("expected {expected}, found {} {shown}", found(actual))
        }
        _ => format!("cannot be read {shown}; write it as quoted text, e.g. password: \"…\""),
    }
}

/// Checks the whole tree and returns one message per problem; empty means valid.
pub fn validate(s: &Settings, figment: &Figment) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, msg: String| {
        problems.push(format!("`{key}` (from {}): {msg}", origin(figment, key)));
    };

    let primary = s.s3.hot_storage.primary.as_str();
    if !HOT_BUCKET_IDS.contains(&primary) {
        problem(
            "s3.hot_storage.primary",
            format!(
                "`{primary}` cannot be the hot primary; set it to b2-eu-cen or wasabi-eu-central-2-v3"
            ),
        );
    } else if !s.s3.bucket(primary).is_some_and(BucketConfig::is_present) {
        problem(
            &format!("s3.{primary}.bucket"),
            format!("the hot primary `{primary}` has no bucket name; set s3.{primary}.bucket"),
        );
    }
    if let Some(secondary) =
        s.s3.hot_storage
            .secondary
            .as_deref()
            .filter(|v| !v.is_empty())
    {
        if !HOT_BUCKET_IDS.contains(&secondary) {
            problem(
                "s3.hot_storage.secondary",
                format!(
                    "`{secondary}` cannot be hot storage; use b2-eu-cen or wasabi-eu-central-2-v3"
                ),
            );
        } else if secondary == primary {
            problem(
                "s3.hot_storage.secondary",
                format!(
                    "`{secondary}` is also the primary; the secondary must be the other hot bucket"
                ),
            );
        }
    }

    for id in BUCKET_IDS {
        let Some(b) = s.s3.bucket(id) else { continue };
        if !b.is_present() {
            continue;
        }
        let name = b.bucket.as_deref().unwrap_or_default();
        if let Err(why) = check_bucket_name(name) {
            problem(
                &format!("s3.{id}.bucket"),
                format!("`{name}` is not a valid S3 bucket name: {why}"),
            );
        }
        if b.key.as_deref().is_none_or(str::is_empty) {
            problem(
                &format!("s3.{id}.key"),
                format!("bucket {id} has no access key; set s3.{id}.key"),
            );
        }
        if b.secret
            .as_ref()
            .is_none_or(|v| v.expose_secret().is_empty())
        {
            problem(
                &format!("s3.{id}.secret"),
                format!("bucket {id} has no secret key; set s3.{id}.secret"),
            );
        }
        if b.region.as_deref().is_none_or(str::is_empty) {
            problem(
                &format!("s3.{id}.region"),
                format!(
                    "bucket {id} has no region; set s3.{id}.region (e.g. eu-central-2, or us-east-1 for MinIO)"
                ),
            );
        }
        if let Err(why) = b.endpoint_url(s.s3.are_local_buckets) {
            problem(&format!("s3.{id}.endpoint"), why);
        }
        if let Err(why) = b.public_endpoint_url(s.s3.are_local_buckets) {
            problem(&format!("s3.{id}.public_endpoint"), why);
        }
        if let Some(class) = b.storage_class.as_deref()
            && (class.is_empty() || !class.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        {
            problem(
                &format!("s3.{id}.storage_class"),
                format!("`{class}` is not a storage class; use e.g. STANDARD or GLACIER"),
            );
        }
        if let Some(key) = &b.sse_c_key {
            if let Err(why) = check_sse_c_key(key.expose_secret()) {
                problem(
                    &format!("s3.{id}.sse_c_key"),
                    format!(
                        "{why}; set it to the base64 of 32 random bytes (e.g. `openssl rand -base64 32`), in credentials.yaml"
                    ),
                );
            } else if id == s.s3.hot_storage.primary {
                problem(
                    &format!("s3.{id}.sse_c_key"),
                    format!(
                        "bucket {id} is the primary, and clients upload to it without a key; set sse_c_key only on replica buckets"
                    ),
                );
            }
        }
    }

    for origin in &s.http.cors.allowed_origins {
        if let Err(why) = check_origin(origin) {
            problem(
                "http.cors.allowed-origins",
                format!(
                    "`{origin}` {why}; list origins as scheme://host[:port], e.g. https://photos.example.com, or leave the list empty to allow any"
                ),
            );
        }
    }

    let url = s.db.connection_url();
    let url = url.expose_secret();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        problem(
            "db.url",
            "must start with sqlite:// or postgres://".to_owned(),
        );
    }
    if s.db.max_connections == 0 {
        problem("db.max-connections", "must be at least 1".to_owned());
    }
    let expiry = s.s3.presign_expiry.get();
    if expiry < Duration::from_secs(1) || expiry > Duration::from_secs(7 * 24 * 3600) {
        problem(
            "s3.presign-expiry",
            "must be between 1s and 7d (SigV4 presigned URLs cannot live longer)".to_owned(),
        );
    }
    if s.max_file_size == 0 || s.max_file_size > 5 * 1024 * 1024 * 1024 * 1024 {
        problem(
            "max-file-size",
            "must be between 1 byte and 5 TiB (S3's object limit)".to_owned(),
        );
    }
    if !(1..=256).contains(&s.replication.worker_count) {
        problem(
            "replication.worker-count",
            "must be between 1 and 256".to_owned(),
        );
    }
    if !(1..=1024).contains(&s.replication.batch_size) {
        problem(
            "replication.batch-size",
            "must be between 1 and 1024 (objects a worker copies at once)".to_owned(),
        );
    }
    let r = &s.replication;
    if r.memory_limit < 1024 * 1024 {
        problem(
            "replication.memory-limit",
            "must be at least 1 MiB; 256 MiB is a good default (a part larger than the limit waits for all of it)".to_owned(),
        );
    }
    if r.part_size < 5 * 1024 * 1024 || r.part_size > 5 * 1024 * 1024 * 1024 {
        problem(
            "replication.part-size",
            "must be between 5 MiB and 5 GiB (S3's part limits); 16 MiB is a good default"
                .to_owned(),
        );
    }
    if let Some(fix) = part_size_short_of(r.part_size, s.max_file_size) {
        problem("replication.part-size", fix);
    }
    if r.multipart_threshold < 5 * 1024 * 1024 || r.multipart_threshold > 5 * 1024 * 1024 * 1024 {
        problem(
            "replication.multipart-threshold",
            "must be between 5 MiB and 5 GiB (S3's largest single PUT); 1 GiB is a good default"
                .to_owned(),
        );
    }
    if r.retry.initial.get() < Duration::from_millis(10)
        || r.retry.initial.get() > r.retry.max.get()
    {
        problem(
            "replication.retry.initial",
            "must be at least 10ms and no more than replication.retry.max".to_owned(),
        );
    }
    let idle = s.s3.idle_timeout.get();
    if idle < Duration::from_secs(1) || idle > Duration::from_secs(3600) {
        problem(
            "s3.idle-timeout",
            "must be between 1s and 1h; 30s suits most providers".to_owned(),
        );
    }
    let request = s.s3.request_timeout.get();
    if request < idle || request > Duration::from_secs(24 * 3600) {
        problem(
            "s3.request-timeout",
            format!("must be between s3.idle-timeout ({idle:?}) and 24h; 5m is the default"),
        );
    }
    if s.s3.min_bytes_per_second < 1024 {
        problem(
            "s3.min-bytes-per-second",
            "must be at least 1024 (1 KiB/s); 131072 (128 KiB/s) is the default".to_owned(),
        );
    }
    if s.s3.retries > 10 {
        problem(
            "s3.retries",
            "must be between 0 and 10; 3 is the default".to_owned(),
        );
    }
    if r.lease.get() < Duration::from_millis(300) {
        problem("replication.lease", "must be at least 300ms".to_owned());
    } else if r.lease.get() < idle.saturating_mul(2) {
        problem(
            "replication.lease",
            format!(
                "must be at least twice s3.idle-timeout ({idle:?}), so that a copy whose \
                 bytes still move keeps its lease; raise it or lower s3.idle-timeout"
            ),
        );
    }
    let instance = r.instance_timeout.get();
    if instance < Duration::from_secs(1) || instance > Duration::from_secs(600) {
        problem(
            "replication.instance-timeout",
            "must be between 1s and 10m; 5s is the default".to_owned(),
        );
    }
    if r.poll_interval.get() < Duration::from_millis(10) {
        problem(
            "replication.poll-interval",
            "must be at least 10ms".to_owned(),
        );
    }
    if s.http.port != 0 && s.http.port == s.http.metrics_port {
        problem("http.metrics-port", "must differ from http.port".to_owned());
    }
    validate_accounts(s, &mut problem);
    validate_ops(s, &mut problem);
    if s.jobs.cleanup_interval.get() < Duration::from_millis(100) {
        problem("jobs.cleanup-interval", "must be at least 100ms".to_owned());
    }
    if s.s3.embedded && s.s3.embedded_address.parse::<SocketAddr>().is_err() {
        problem(
            "s3.embedded-address",
            format!(
                "`{}` is not an address; write it as 127.0.0.1:3200",
                s.s3.embedded_address
            ),
        );
    }
    problems
}

/// Largest quota museum takes, in bytes (1 EiB): anything larger is a typo.
pub const MAX_QUOTA_BYTES: u64 = 1 << 60;

/// The admin API, JWT, quota and rate-limit keys.
fn validate_ops(s: &Settings, problem: &mut impl FnMut(&str, String)) {
    let scrub = &s.scrub;
    if scrub.objects_per_second == 0 {
        problem(
            "scrub.objects-per-second",
            "must be at least 1; turn the background scrub off with scrub.interval: 0".to_owned(),
        );
    }
    if scrub.bytes_per_second < 1024 {
        problem(
            "scrub.bytes-per-second",
            "must be at least 1024 (1 KiB/s); 16777216 (16 MiB/s) is the default".to_owned(),
        );
    }
    if !(0.0..=1.0).contains(&scrub.read_sample) {
        problem(
            "scrub.read-sample",
            "must be a share between 0 and 1, e.g. 0.01 to read one tier in a hundred".to_owned(),
        );
    }
    if s.replication.max_bytes_per_second.is_some_and(|n| n < 1024) {
        problem(
            "replication.max-bytes-per-second",
            "must be at least 1024 (1 KiB/s), or unset for no limit".to_owned(),
        );
    }
    if let Some(url) = &s.events.webhook_url {
        let ok = url::Url::parse(url.expose_secret())
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            problem(
                "events.webhook-url",
                "must be an http:// or https:// URL (the value is a secret and is not shown)"
                    .to_owned(),
            );
        }
    }
}

fn validate_accounts(s: &Settings, problem: &mut impl FnMut(&str, String)) {
    if let Some(key) = &s.admin.key {
        let len = key.expose_secret().len();
        if len > 0 && len < 16 {
            problem(
                "admin.key",
                "is shorter than 16 characters; set it to a long random value (e.g. `openssl rand -hex 32`), in credentials.yaml".to_owned(),
            );
        }
    }
    let http = &s.http;
    if http.admin_port != 0
        && (http.admin_port == http.port || http.admin_port == http.metrics_port)
    {
        problem(
            "http.admin-port",
            "must differ from http.port and http.metrics-port".to_owned(),
        );
    }
    for (key, host) in [
        ("http.admin-host", &http.admin_host),
        ("http.metrics-host", &http.metrics_host),
    ] {
        if host.parse::<std::net::IpAddr>().is_err() && host != "localhost" {
            problem(
                key,
                format!(
                    "`{host}` is not an IP address; use 127.0.0.1 (the default) or the address of a private interface"
                ),
            );
        }
    }
    let jwt = &s.auth.jwt;
    let secret = jwt
        .secret
        .as_ref()
        .filter(|v| !v.expose_secret().is_empty());
    let public_key = jwt.public_key.as_deref().filter(|v| !v.is_empty());
    if secret.is_some() && public_key.is_some() {
        problem(
            "auth.jwt.public-key",
            "auth.jwt.secret is set too; set one of them: the secret for HS256, or the public key for EdDSA, ES256 or RS256".to_owned(),
        );
    } else if jwt.is_enabled()
        && let Err(why) = jwt.decoding_key()
    {
        let key = if secret.is_some() {
            "auth.jwt.secret"
        } else {
            "auth.jwt.public-key"
        };
        problem(key, why);
    }
    if let Some(bytes) = s.quota.default_bytes
        && bytes > MAX_QUOTA_BYTES
    {
        problem(
            "quota.default-bytes",
            format!("must be at most {MAX_QUOTA_BYTES} (1 EiB); leave it unset for no limit"),
        );
    }
    if s.quota.overflow_bytes > MAX_QUOTA_BYTES {
        problem(
            "quota.overflow-bytes",
            format!("must be at most {MAX_QUOTA_BYTES} (1 EiB); 52428800 (50 MiB) is the default"),
        );
    }
    if let Some(header) = s.internal.trusted_client_ip_header.as_deref()
        && !header.is_empty()
        && http::HeaderName::from_bytes(header.as_bytes()).is_err()
    {
        problem(
            "internal.trusted-client-ip-header",
            format!("`{header}` is not a header name; write it as e.g. X-Real-IP"),
        );
    }
    if !(1..=MAX_PROXY_HOPS).contains(&s.internal.trusted_proxy_hops) {
        problem(
            "internal.trusted-proxy-hops",
            format!(
                "must be 1 to {MAX_PROXY_HOPS}: the number of proxies that write the client-address header, 1 for a single proxy"
            ),
        );
    }
}

/// Most proxies `internal.trusted-proxy-hops` may count.
const MAX_PROXY_HOPS: u32 = 16;

/// Why `key` is not an SSE-C key: the base64 of exactly 32 bytes. The key itself is
/// never part of the answer.
fn check_sse_c_key(key: &str) -> Result<(), String> {
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(key.trim()) {
        Ok(bytes) if bytes.len() == 32 => Ok(()),
        Ok(bytes) => Err(format!(
            "the key decodes to {} bytes, and SSE-C (AES-256) needs 32",
            bytes.len()
        )),
        Err(_) => Err("the key is not base64".to_owned()),
    }
}

/// Why parts of `part_size` bytes cannot carry an object of `max_file_size` within
/// S3's [`MAX_PARTS`], with the fix; `None` when they can.
fn part_size_short_of(part_size: u64, max_file_size: u64) -> Option<String> {
    const MIB: u64 = 1024 * 1024;
    let covered = part_size.saturating_mul(MAX_PARTS);
    if covered >= max_file_size {
        return None;
    }
    let needed_mib = max_file_size.div_ceil(MAX_PARTS).div_ceil(MIB);
    Some(format!(
        "{} parts × 10,000 (S3's most parts in one upload) cover {}, less than max-file-size ({}); \
         set replication.part-size to at least {needed_mib} MiB ({} bytes), or lower max-file-size",
        bytes_text(part_size),
        bytes_text(covered),
        bytes_text(max_file_size),
        needed_mib * MIB
    ))
}

/// `n` bytes in the largest binary unit that keeps it at 1 or more, two decimals.
fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        let text = format!("{value:.2}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text} {}", UNITS[unit])
    }
}

/// S3's bucket naming rules.
pub fn check_bucket_name(name: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&name.len()) {
        return Err("it must be 3 to 63 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return Err("only lowercase letters, digits, dots and hyphens are allowed");
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
        return Err("it must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Err("it must not contain two adjacent dots");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("it must not look like an IP address");
    }
    if name.starts_with("xn--") || name.ends_with("-s3alias") {
        return Err("the prefix xn-- and the suffix -s3alias are reserved");
    }
    Ok(())
}

/// Whether `origin` is a browser origin: `*`, or `scheme://host[:port]` with no path,
/// query or trailing slash (a browser's `Origin` header never has them, so such an
/// entry would match nothing).
fn check_origin(origin: &str) -> Result<(), &'static str> {
    if origin == "*" {
        return Ok(());
    }
    let url = url::Url::parse(origin).map_err(|_| "is not an origin")?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    if origin.ends_with('/') || !matches!(url.path(), "" | "/") {
        return Err("must not have a path or a trailing slash");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment");
    }
    Ok(())
}

/// Warns about keys set in files that museum does not read (Ente's other keys, typos).
pub fn unknown_file_keys(figment: &Figment) -> Vec<String> {
    let Ok(value) = figment.extract::<Value>() else {
        return Vec::new();
    };
    let known: BTreeSet<String> = known_keys().into_iter().collect();
    let mut leaves = Vec::new();
    collect_leaves(&value, String::new(), &mut leaves);
    let unknown: Vec<String> = leaves
        .into_iter()
        .filter(|k| !known.contains(k))
        .map(|k| format!("{k} (from {})", origin(figment, &k)))
        .collect();
    if unknown.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "museum ignores these keys, which it does not know (other Ente keys are fine; check for typos): {}",
        unknown.join(", ")
    )]
}

fn collect_leaves(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Dict(_, dict) => {
            for (k, v) in dict {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect_leaves(v, path, out);
            }
        }
        _ if !prefix.is_empty() => out.push(prefix),
        _ => {}
    }
}

/// A warning when `credentials.yaml` can be read by group or others.
pub fn credentials_permissions(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} is readable by group or others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

impl BucketConfig {
    /// The endpoint as a URL. A bare `host:port` gets `http://` when SSL is disabled or
    /// buckets are local, and `https://` otherwise.
    pub fn endpoint_url(&self, are_local_buckets: bool) -> Result<url::Url, String> {
        let raw = self.endpoint.as_deref().unwrap_or_default().trim();
        if raw.is_empty() {
            return Err(
                "no endpoint; set it to the provider's S3 host, e.g. s3.eu-central-2.wasabisys.com"
                    .to_owned(),
            );
        }
        self.parse_endpoint(raw, are_local_buckets)
    }

    /// The endpoint clients are sent to, when `public_endpoint` is set; it is read
    /// like `endpoint` (the same TLS settings apply to a bare `host:port`).
    pub fn public_endpoint_url(&self, are_local_buckets: bool) -> Result<Option<url::Url>, String> {
        match self.public_endpoint.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(raw) => self.parse_endpoint(raw, are_local_buckets).map(Some),
        }
    }

    fn parse_endpoint(&self, raw: &str, are_local_buckets: bool) -> Result<url::Url, String> {
        let insecure = are_local_buckets || self.disable_ssl.unwrap_or(false);
        let with_scheme = if raw.contains("://") {
            raw.to_owned()
        } else if insecure {
            format!("http://{raw}")
        } else {
            format!("https://{raw}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| {
            format!(
                "`{raw}` is not a valid URL ({e}); write it as host[:port] or https://host[:port]"
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{raw}` must use http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{raw}` has no host"));
        }
        if url.query().is_some() {
            return Err(format!("`{raw}` must not carry a query string"));
        }
        Ok(url)
    }

    /// Whether requests use path-style URLs (`endpoint/bucket/key`).
    pub fn path_style(&self, s3_path_style: bool, are_local_buckets: bool) -> bool {
        self.use_path_style_urls
            .unwrap_or(s3_path_style || are_local_buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_about_secrets_never_show_the_value() {
        use figment::error::{Actual, Kind};
        let kinds = [
            Kind::InvalidType(Actual::Str("hunter2".into()), "a string".into()),
            Kind::InvalidValue(Actual::Unsigned(987_654), "a string".into()),
            Kind::Message("bad value hunter2".into()),
        ];
        for kind in kinds {
            for path in [
                "db.password",
                "db.url",
                "s3.b2-eu-cen.secret",
                "s3.b2-eu-cen.key",
            ] {
                let mut e = figment::Error::from(kind.clone());
                e.path = path.split('.').map(str::to_owned).collect();
                let told = describe_figment_error(&e);
                assert!(told.contains(&format!("`{path}`")), "{told}");
                assert!(
                    !told.contains("hunter2") && !told.contains("987654"),
                    "{told}"
                );
            }
        }
        let mut e = figment::Error::from(Kind::InvalidType(
            Actual::Str("eighty".into()),
            "u16".into(),
        ));
        e.path = vec!["http".into(), "port".into()];
        assert!(
            describe_figment_error(&e).contains("eighty"),
            "other keys keep their value, which helps to fix them"
        );
    }

    #[test]
    fn parts_must_cover_the_largest_file() {
        const MIB: u64 = 1024 * 1024;
        const GIB: u64 = 1024 * MIB;
        assert_eq!(part_size_short_of(16 * MIB, 10 * GIB), None);
        assert_eq!(part_size_short_of(5 * MIB, 10 * GIB), None);
        // Exactly 10,000 parts fit.
        assert_eq!(part_size_short_of(5 * MIB, 50_000 * MIB), None);
        let fix = part_size_short_of(5 * MIB, 50_000 * MIB + 1).unwrap();
        assert!(fix.contains("at least 6 MiB"), "{fix}");
        let fix = part_size_short_of(16 * MIB, 5 * 1024 * GIB).unwrap();
        assert!(
            fix.contains("16 MiB parts") && fix.contains("156.25 GiB") && fix.contains("5 TiB"),
            "{fix}"
        );
        assert!(fix.contains("at least 525 MiB"), "{fix}");
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["b2-eu-cen", "abc", "my.bucket-1", "wasabi-eu-central-2-v3"] {
            assert_eq!(check_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            "Upper",
            "-start",
            "end-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "under_score",
            &"a".repeat(64),
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_get_a_scheme_from_the_ssl_settings() {
        let b = BucketConfig {
            endpoint: Some("localhost:3200".into()),
            ..Default::default()
        };
        assert_eq!(
            b.endpoint_url(true).map(|u| u.to_string()),
            Ok("http://localhost:3200/".into())
        );
        assert_eq!(
            b.endpoint_url(false).map(|u| u.to_string()),
            Ok("https://localhost:3200/".into())
        );
        let bad = BucketConfig {
            endpoint: Some("ftp://x".into()),
            ..Default::default()
        };
        assert!(bad.endpoint_url(false).is_err());
        let bad = BucketConfig {
            endpoint: Some("http://exa mple.com".into()),
            ..Default::default()
        };
        assert!(bad.endpoint_url(false).is_err());
    }

    #[test]
    fn public_endpoints_are_optional_and_read_like_endpoints() {
        let mut b = BucketConfig {
            endpoint: Some("minio:3200".into()),
            ..Default::default()
        };
        assert_eq!(b.public_endpoint_url(true), Ok(None));
        b.public_endpoint = Some("192.168.1.20:3200".into());
        assert_eq!(
            b.public_endpoint_url(true)
                .map(|u| u.map(|u| u.to_string())),
            Ok(Some("http://192.168.1.20:3200/".into()))
        );
        b.public_endpoint = Some("s3.example.com?x=1".into());
        assert!(b.public_endpoint_url(false).is_err());
    }

    #[test]
    fn origins_must_be_bare_scheme_host_port() {
        for ok in [
            "*",
            "https://photos.example.com",
            "http://127.0.0.2:3000",
            "ente://app",
        ] {
            assert_eq!(check_origin(ok), Ok(()), "{ok}");
        }
        for bad in [
            "photos.example.com",
            "https://photos.example.com/",
            "https://photos.example.com/app",
            "https://x.com?q",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sse_c_keys_are_the_base64_of_32_bytes_and_errors_never_quote_them() {
        assert_eq!(
            check_sse_c_key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Ok(())
        );
        let short = check_sse_c_key("AAAA").unwrap_err();
        assert!(short.contains("3 bytes"), "{short}");
        let garbage = check_sse_c_key("not-base64-sekrit").unwrap_err();
        assert!(garbage.contains("not base64"), "{garbage}");
        assert!(!garbage.contains("sekrit"), "{garbage}");
    }
}

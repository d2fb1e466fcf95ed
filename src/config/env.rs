//! `ENTE_*` environment variables, resolved against the known key tree.
//!
//! Ente names a variable by upper-casing the key path and turning `.` and `-` into
//! `_`. That mapping loses information (`s3.b2-eu-cen.endpoint` and a hypothetical
//! `s3.b2.eu.cen.endpoint` look alike), so museum maps each variable back to the one
//! known key whose name it matches instead of guessing where the dots were.

use std::collections::HashMap;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::known_keys;

/// Prefix of every environment variable museum reads.
pub const ENV_PREFIX: &str = "ENTE_";

/// The environment variable Ente uses for a dotted key path.
pub fn env_name_for(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.to_ascii_uppercase().replace(['.', '-'], "_")
    )
}

/// Last path segments whose values stay strings even when they look like numbers
/// or booleans (a secret such as `123456` must not become an integer), in variables
/// and in YAML files alike.
pub(super) const STRING_KEYS: [&str; 27] = [
    "key",
    "secret",
    "sse_c_key",
    "endpoint",
    "public_endpoint",
    "allowed-origins",
    "region",
    "bucket",
    "storage_class",
    "url",
    "host",
    "name",
    "user",
    "password",
    "sslmode",
    "primary",
    "secondary",
    "format",
    "serve_mode",
    "embedded-address",
    "embedded-root",
    "public-key",
    "issuer",
    "audience",
    "trusted-client-ip-header",
    "admin-host",
    "metrics-host",
];

/// A figment provider for `ENTE_*` variables. Empty values count as unset.
#[derive(Debug, Clone)]
pub struct EnteEnv {
    /// (key path, variable name, value) for every recognised, non-empty variable.
    resolved: Vec<(String, String, String)>,
    /// Names of `ENTE_*` variables that match no known key.
    unknown: Vec<String>,
}

impl EnteEnv {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// Resolves the given (name, value) pairs; pairs without the prefix are ignored.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let by_name: HashMap<String, String> = known_keys()
            .into_iter()
            .map(|path| (env_name_for(&path), path))
            .collect();
        let mut resolved = Vec::new();
        let mut unknown = Vec::new();
        for (name, value) in vars {
            if !name.starts_with(ENV_PREFIX) || value.is_empty() {
                continue;
            }
            match by_name.get(&name) {
                Some(path) => resolved.push((path.clone(), name, value)),
                None => unknown.push(name),
            }
        }
        resolved.sort();
        unknown.sort();
        Self { resolved, unknown }
    }

    /// The value set for a dotted key path, if any.
    pub fn get(&self, path: &str) -> Option<String> {
        self.resolved
            .iter()
            .find(|(p, _, _)| p == path)
            .map(|(_, _, v)| v.clone())
    }

    /// One warning per `ENTE_*` variable that museum does not know.
    pub fn unknown_warnings(&self) -> Vec<String> {
        self.unknown
            .iter()
            .map(|name| {
                format!(
                    "environment variable {name} matches no museum key and is ignored; \
                     names are ENTE_ + the key path upper-cased with `.` and `-` as `_`, e.g. ENTE_S3_B2_EU_CEN_ENDPOINT"
                )
            })
            .collect()
    }
}

impl Provider for EnteEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, keys: &[&str]| env_name_for(&keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (path, _, raw) in &self.resolved {
            let last = path.rsplit('.').next().unwrap_or(path);
            let value = if STRING_KEYS.contains(&last) {
                Value::from(raw.clone())
            } else {
                raw.parse::<Value>()
                    .unwrap_or_else(|_| Value::from(raw.clone()))
            };
            insert_path(&mut dict, path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Inserts `value` at the dotted `path`, creating intermediate tables.
fn insert_path(dict: &mut Dict, path: &str, value: Value) {
    let mut segments: Vec<&str> = path.split('.').collect();
    let Some(last) = segments.pop() else { return };
    let mut current = dict;
    for segment in segments {
        let entry = current
            .entry(segment.to_owned())
            .or_insert_with(|| Value::from(Dict::new()));
        if entry.as_dict().is_none() {
            *entry = Value::from(Dict::new());
        }
        let Value::Dict(_, next) = entry else { return };
        current = next;
    }
    current.insert(last.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnteEnv {
        EnteEnv::from_vars(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn names_follow_entes_mapping() {
        assert_eq!(
            env_name_for("s3.b2-eu-cen.endpoint"),
            "ENTE_S3_B2_EU_CEN_ENDPOINT"
        );
        assert_eq!(env_name_for("http.metrics-port"), "ENTE_HTTP_METRICS_PORT");
        assert_eq!(
            env_name_for("s3.hot_storage.primary"),
            "ENTE_S3_HOT_STORAGE_PRIMARY"
        );
    }

    #[test]
    fn every_known_key_has_a_distinct_variable_name() {
        let keys = known_keys();
        let names: std::collections::HashSet<_> = keys.iter().map(|k| env_name_for(k)).collect();
        assert_eq!(names.len(), keys.len());
    }

    #[test]
    fn variables_resolve_to_keys_with_dashes() {
        let e = env(&[
            ("ENTE_S3_WASABI_EU_CENTRAL_2_V3_ENDPOINT", "s3.example.com"),
            ("ENTE_HTTP_METRICS_PORT", "9000"),
            ("ENTE_DB_URL", ""),
            ("ENTE_JWT_SECRET", "x"),
            ("HOME", "/root"),
        ]);
        assert_eq!(
            e.get("s3.wasabi-eu-central-2-v3.endpoint").as_deref(),
            Some("s3.example.com")
        );
        assert_eq!(e.get("http.metrics-port").as_deref(), Some("9000"));
        assert_eq!(e.get("db.url"), None, "an empty value means unset");
        assert_eq!(e.unknown, vec!["ENTE_JWT_SECRET".to_owned()]);
    }
}

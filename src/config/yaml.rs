//! The YAML files of the configuration, read so that keys holding text keep the text
//! as written.
//!
//! YAML reads an unquoted `password: 12345678` as an integer, `secret: 0x1F` as 31
//! and `password: 1.50` as 1.5. Ente's loader turns such values back into strings;
//! museum does better and takes the characters of the file: a key that holds text
//! (a secret, a password, a name, a host) gets exactly what the operator wrote,
//! whatever YAML would make of it.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Data, Format, Yaml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider, Source};
use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::env::STRING_KEYS;
use super::known_keys;

/// A YAML configuration file (optional: a missing file provides nothing).
pub struct TextYaml {
    inner: Data<Yaml>,
}

impl TextYaml {
    /// The file at exactly `path`, if there is one. The path is made absolute
    /// first: for a relative one, `Yaml::file` would also search every parent
    /// folder, so a `museum.yaml` above the folder museum starts in could configure it.
    pub fn file(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        Self {
            inner: Yaml::file(std::path::absolute(path).unwrap_or_else(|_| path.to_owned())),
        }
    }

    fn path(&self) -> Option<PathBuf> {
        match self.inner.metadata().source {
            Some(Source::File(path)) => Some(path),
            _ => None,
        }
    }
}

impl Provider for TextYaml {
    fn metadata(&self) -> Metadata {
        self.inner.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.inner.data()?;
        let text_keys = text_keys();
        let mut retyped = BTreeSet::new();
        for dict in data.values() {
            collect_retyped(dict, "", &text_keys, &mut retyped);
        }
        if retyped.is_empty() {
            return Ok(data);
        }
        // The file was just parsed, so it reads and parses again; should it not (it
        // changed meanwhile), the values stay as YAML typed them, and a key that
        // wants text is refused by name (without its value) instead.
        let Some(text) = self.path().and_then(|p| std::fs::read_to_string(p).ok()) else {
            return Ok(data);
        };
        let mut written = Vec::new();
        let walk = Walk {
            path: String::new(),
            wanted: &retyped,
            out: &mut written,
        };
        if walk
            .deserialize(serde_yaml::Deserializer::from_str(&text))
            .is_err()
        {
            return Ok(data);
        }
        for dict in data.values_mut() {
            for (path, text) in &written {
                replace_at(dict, path, Value::from(text.clone()));
            }
        }
        Ok(data)
    }
}

/// Known keys whose value is text.
fn text_keys() -> BTreeSet<String> {
    known_keys()
        .into_iter()
        .filter(|k| STRING_KEYS.contains(&k.rsplit('.').next().unwrap_or(k)))
        .collect()
}

/// Paths of text keys that YAML typed as a number or a boolean.
fn collect_retyped(
    dict: &Dict,
    prefix: &str,
    text_keys: &BTreeSet<String>,
    out: &mut BTreeSet<String>,
) {
    for (name, value) in dict {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            Value::Dict(_, child) => collect_retyped(child, &path, text_keys, out),
            Value::Num(..) | Value::Bool(..) if text_keys.contains(&path) => {
                out.insert(path);
            }
            _ => {}
        }
    }
}

/// Sets the value at the dotted `path`, which exists.
fn replace_at(dict: &mut Dict, path: &str, value: Value) {
    let (parent, last) = match path.rsplit_once('.') {
        Some((parent, last)) => (Some(parent), last),
        None => (None, path),
    };
    let mut current = dict;
    for segment in parent.into_iter().flat_map(|p| p.split('.')) {
        match current.get_mut(segment) {
            Some(Value::Dict(_, next)) => current = next,
            _ => return,
        }
    }
    if let Some(slot) = current.get_mut(last) {
        *slot = value;
    }
}

/// Walks a YAML document, reading the scalars at `wanted` paths as their text.
struct Walk<'a> {
    path: String,
    wanted: &'a BTreeSet<String>,
    out: &'a mut Vec<(String, String)>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                name
            } else {
                format!("{}.{name}", self.path)
            };
            if self.wanted.contains(&path) {
                let text = map.next_value_seed(Text)?;
                self.out.push((path, text));
            } else if self.wanted.iter().any(|w| {
                w.strip_prefix(path.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
            }) {
                map.next_value_seed(Walk {
                    path,
                    wanted: self.wanted,
                    out: &mut *self.out,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A scalar's characters as written in the file.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar")
    }

    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(yaml: &str, wanted: &[&str]) -> Vec<(String, String)> {
        let wanted: BTreeSet<String> = wanted.iter().map(|s| (*s).to_owned()).collect();
        let mut out = Vec::new();
        Walk {
            path: String::new(),
            wanted: &wanted,
            out: &mut out,
        }
        .deserialize(serde_yaml::Deserializer::from_str(yaml))
        .unwrap();
        out
    }

    #[test]
    fn scalars_are_read_as_written() {
        let yaml = "db:\n  password: 0012.50\n  port: 5432\n  list: [1, 2]\ns3:\n  a:\n    secret: 0x1F\n    key: +7\n";
        assert_eq!(
            written(yaml, &["db.password", "s3.a.secret", "s3.a.key"]),
            vec![
                ("db.password".to_owned(), "0012.50".to_owned()),
                ("s3.a.secret".to_owned(), "0x1F".to_owned()),
                ("s3.a.key".to_owned(), "+7".to_owned()),
            ]
        );
    }

    #[test]
    fn values_are_replaced_only_where_they_exist() {
        let mut dict = Dict::new();
        let mut db = Dict::new();
        db.insert("password".to_owned(), Value::from(12_345_678u64));
        dict.insert("db".to_owned(), Value::from(db));
        replace_at(&mut dict, "db.password", Value::from("12345678".to_owned()));
        replace_at(&mut dict, "db.user", Value::from("x".to_owned()));
        replace_at(&mut dict, "s3.secret", Value::from("x".to_owned()));
        let db = dict["db"].as_dict().unwrap();
        assert_eq!(db["password"].as_str(), Some("12345678"));
        assert_eq!(db.len(), 1);
        assert_eq!(dict.len(), 1);
    }
}

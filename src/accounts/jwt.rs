//! JWTs from the app's own auth server: the verifier built from `auth.jwt.*`.

use jsonwebtoken::{DecodingKey, Validation, decode};
use serde::Deserialize;

use crate::config::JwtConfig;

/// How far the auth server's clock may be from museum's, for `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// Verifies JWTs with one key and one algorithm. Cheap to clone.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why a JWT was refused. The token itself is never part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the JWT has expired")]
    Expired,
    #[error("the JWT is not valid yet (nbf)")]
    NotYetValid,
    #[error("the JWT is not for this service (aud)")]
    WrongAudience,
    #[error("the JWT is from another issuer (iss)")]
    WrongIssuer,
    #[error("the JWT's signature does not verify with the configured key")]
    BadSignature,
    #[error("the JWT is signed with another algorithm than the configured key's")]
    WrongAlgorithm,
    #[error("the JWT lacks a required claim ({0})")]
    MissingClaim(String),
    #[error("the JWT's sub is not a user ID (a positive integer)")]
    BadSubject,
    #[error("the JWT is malformed")]
    Malformed,
}

#[derive(Debug, Deserialize)]
struct Claims {
    /// Read here rather than by the crate, which takes only a string: a number is
    /// accepted too, as app servers often write user IDs that way.
    #[serde(default)]
    sub: Option<serde_json::Value>,
}

impl JwtVerifier {
    /// A verifier for `config`, or why its key cannot be used (naming the fix, never
    /// showing the key; see [`JwtConfig::decoding_key`]). `None`-like configs (no
    /// secret, no public key) are an error too; check [`JwtConfig::is_enabled`] first.
    pub fn from_config(config: &JwtConfig) -> Result<Self, String> {
        let (key, algorithm) = config.decoding_key()?;
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp"]);
        // `nbf`, when present, is checked with the same leeway as `exp`.
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        match config.issuer.as_deref().filter(|i| !i.is_empty()) {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                validation.required_spec_claims.insert("iss".to_owned());
            }
            None => validation.iss = None,
        }
        match config.audience.as_deref().filter(|a| !a.is_empty()) {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        Ok(Self { key, validation })
    }

    /// The user a JWT speaks for, if its signature, algorithm, `exp` (required),
    /// `nbf` (when present), `iss` and `aud` (when configured) all check out and
    /// `sub` is a user ID.
    pub fn verify(&self, token: &str) -> Result<i64, JwtError> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => JwtError::Expired,
                ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                ErrorKind::InvalidAudience => JwtError::WrongAudience,
                ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
                ErrorKind::InvalidSignature => JwtError::BadSignature,
                ErrorKind::InvalidAlgorithm => JwtError::WrongAlgorithm,
                ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
                _ => JwtError::Malformed,
            })?;
        let user = match &data.claims.sub {
            None => return Err(JwtError::MissingClaim("sub".to_owned())),
            Some(serde_json::Value::String(s)) => s.parse::<i64>().ok(),
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(_) => None,
        };
        user.filter(|u| *u > 0).ok_or(JwtError::BadSubject)
    }
}

/// Whether `token` has a JWT's shape (three dot-separated parts); museum's own
/// tokens have no dots.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use secrecy::SecretString;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier(audience: Option<&str>) -> JwtVerifier {
        JwtVerifier::from_config(&JwtConfig {
            secret: Some(SecretString::from(SECRET)),
            audience: audience.map(str::to_owned),
            ..JwtConfig::default()
        })
        .unwrap()
    }

    fn sign(claims: &serde_json::Value, secret: &str) -> String {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn in_an_hour() -> i64 {
        jiff::Timestamp::now().as_second() + 3600
    }

    #[test]
    fn a_valid_token_names_its_user() {
        let t = sign(
            &serde_json::json!({"sub": "42", "exp": in_an_hour()}),
            SECRET,
        );
        assert_eq!(verifier(None).verify(&t), Ok(42));
    }

    #[test]
    fn refusals_say_why() {
        let v = verifier(Some("museum"));
        let exp = in_an_hour();
        let cases = [
            (
                serde_json::json!({"sub": "1", "exp": exp, "aud": "other"}),
                SECRET,
                JwtError::WrongAudience,
            ),
            (
                serde_json::json!({"sub": "1", "exp": exp - 7200, "aud": "museum"}),
                SECRET,
                JwtError::Expired,
            ),
            (
                serde_json::json!({"sub": "1", "exp": exp, "nbf": exp, "aud": "museum"}),
                SECRET,
                JwtError::NotYetValid,
            ),
            (
                serde_json::json!({"sub": "1", "aud": "museum"}),
                SECRET,
                JwtError::MissingClaim("exp".into()),
            ),
            (
                serde_json::json!({"sub": "x", "exp": exp, "aud": "museum"}),
                SECRET,
                JwtError::BadSubject,
            ),
            (
                serde_json::json!({"sub": "1", "exp": exp, "aud": "museum"}),
                "another-secret-another-secret-xx",
                JwtError::BadSignature,
            ),
        ];
        for (claims, secret, want) in cases {
            assert_eq!(v.verify(&sign(&claims, secret)), Err(want), "{claims}");
        }
        assert_eq!(v.verify("a.b.c"), Err(JwtError::Malformed));
    }

    #[test]
    fn short_secrets_and_bad_keys_are_refused_without_being_shown() {
        let err = JwtVerifier::from_config(&JwtConfig {
            secret: Some(SecretString::from("short-secret-value")),
            ..JwtConfig::default()
        })
        .unwrap_err();
        assert!(!err.contains("short-secret-value"), "{err}");
        let err = JwtVerifier::from_config(&JwtConfig {
            public_key: Some("not a pem".to_owned()),
            ..JwtConfig::default()
        })
        .unwrap_err();
        assert!(err.contains("PEM"), "{err}");
    }
}

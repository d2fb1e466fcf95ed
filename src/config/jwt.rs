//! The key of `auth.jwt.*`, parsed: start-up validation and the verifier in
//! `accounts::jwt` both read it here, so they cannot disagree on which keys work.

use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::ExposeSecret;

use super::JwtConfig;

/// Shortest HS256 secret taken, in bytes (the hash's own length).
const MIN_SECRET_BYTES: usize = 32;

impl JwtConfig {
    /// The key tokens are verified with and its algorithm: the secret (HS256) or the
    /// PEM public key (EdDSA, ES256 or RS256). Otherwise why it cannot be used, naming
    /// the fix and never showing the key; a config with neither is an error too.
    pub fn decoding_key(&self) -> Result<(DecodingKey, Algorithm), String> {
        let (key, algorithm) = if let Some(secret) = self
            .secret
            .as_ref()
            .filter(|s| !s.expose_secret().is_empty())
        {
            let bytes = secret.expose_secret().as_bytes();
            if bytes.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "the HS256 secret is {} bytes, under the {MIN_SECRET_BYTES} it needs; set it to a long random value (e.g. `openssl rand -hex 32`)",
                    bytes.len()
                ));
            }
            (DecodingKey::from_secret(bytes), Algorithm::HS256)
        } else if let Some(pem) = self.public_key.as_deref().filter(|k| !k.is_empty()) {
            let pem = pem.trim().as_bytes();
            if let Ok(key) = DecodingKey::from_ed_pem(pem) {
                (key, Algorithm::EdDSA)
            } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
                (key, Algorithm::ES256)
            } else if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
                (key, Algorithm::RS256)
            } else {
                return Err(
                    "is not a PEM public key (-----BEGIN PUBLIC KEY-----) of Ed25519 (EdDSA), P-256 (ES256) or RSA (RS256)".to_owned(),
                );
            }
        } else {
            return Err("set auth.jwt.secret or auth.jwt.public-key".to_owned());
        };
        Ok((key, algorithm))
    }
}

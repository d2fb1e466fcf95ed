//! CORS for browser clients: one policy, from `http.cors.allowed-origins`, applied to
//! the API and to the embedded S3 server.
//!
//! A browser on another origin preflights every call that carries `X-Auth-Token` (the
//! API) or `X-Client-Package` (the bucket), and a multipart upload must read each
//! part's `ETag`. Preflights are answered before routing and before S3's signature
//! check, which a preflight can never pass (it carries no signature).

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

use crate::config::CorsConfig;

/// Headers Ente's clients send to the API, as Ente's server allows them.
const API_HEADERS: [&str; 19] = [
    "content-type",
    "content-length",
    "accept-encoding",
    "x-csrf-token",
    "x-auth-token",
    "x-auth-access-token",
    "x-cast-access-token",
    "x-auth-access-token-jwt",
    "x-auth-link-device-token",
    "x-client-package",
    "x-client-version",
    "x-paste-consume",
    "x-request-id",
    "authorization",
    "accept",
    "origin",
    "cache-control",
    "x-requested-with",
    "range",
];

/// How long a browser may cache a preflight answer (browsers cap it lower).
const MAX_AGE: Duration = Duration::from_secs(1_728_000);

/// Which origins may call museum from a browser. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    /// `None`: any origin (echoed back, as Ente's server does).
    origins: Option<Vec<HeaderValue>>,
}

impl CorsPolicy {
    /// The policy `cfg` describes: any origin when the list is empty or holds `*`.
    /// Entries that are not valid header values were refused by validation; any left
    /// are skipped.
    pub fn from_config(cfg: &CorsConfig) -> Self {
        if cfg.allowed_origins.is_empty() || cfg.allowed_origins.iter().any(|o| o == "*") {
            return Self { origins: None };
        }
        let origins = cfg
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        Self {
            origins: Some(origins),
        }
    }

    /// The origins allowed, or `None` for any.
    pub fn origins(&self) -> Option<&[HeaderValue]> {
        self.origins.as_deref()
    }

    fn allow_origin(&self) -> AllowOrigin {
        match &self.origins {
            None => AllowOrigin::mirror_request(),
            Some(list) => AllowOrigin::list(list.iter().cloned()),
        }
    }

    /// The API's layer, as Ente's server answers: the origin echoed, credentials
    /// allowed, Ente's request headers, and `X-Request-Id` readable.
    pub fn api_layer(&self) -> CorsLayer {
        CorsLayer::new()
            .allow_origin(self.allow_origin())
            .allow_credentials(true)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(AllowHeaders::list(
                API_HEADERS.iter().map(|h| HeaderName::from_static(h)),
            ))
            .expose_headers(ExposeHeaders::list([HeaderName::from_static(
                "x-request-id",
            )]))
            .max_age(MAX_AGE)
    }

    /// The embedded S3 server's layer, as a bucket CORS rule with `AllowedHeaders *`
    /// and `ExposeHeaders ETag` answers: uploads (PUT, POST for completion) and
    /// downloads (GET, HEAD), any request header, the ETag readable.
    pub fn bucket_layer(&self) -> CorsLayer {
        CorsLayer::new()
            .allow_origin(self.allow_origin())
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::PUT,
                Method::POST,
                Method::DELETE,
            ])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(ExposeHeaders::list([
                header::ETAG,
                HeaderName::from_static("x-amz-version-id"),
            ]))
            .max_age(MAX_AGE)
    }
}

//! The HTTP API: routes, middleware, and the JSON error for anything unmatched.

pub mod admin;
pub mod doc;
pub mod error;
pub mod extract;
pub mod files;
pub mod health;
mod integrity;
pub mod openapi;
pub mod ratelimit;
pub mod state;
pub mod uploads;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use self::error::ApiError;
use self::state::AppState;
use crate::cors::CorsPolicy;
use crate::observe::metrics::track_requests;

/// Largest request body accepted (a 10,000-part MD5 list fits easily).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The API router with every layer: request IDs, tracing, metrics, CORS (answered
/// before routing, so every preflight gets a 2xx), body size and read-time limits (a
/// body that stalls is a 400), and a per-request timeout that answers 503 JSON.
pub fn router(
    state: AppState,
    request_timeout: Duration,
    body_timeout: Duration,
    cors: &CorsPolicy,
) -> Router {
    Router::new()
        .route("/ping", get(health::ping))
        .route("/openapi.json", get(openapi::document))
        .route("/files/upload-urls", get(uploads::upload_urls))
        .route("/files/upload-url", post(uploads::upload_url))
        .route(
            "/files/multipart-upload-urls",
            get(uploads::multipart_upload_urls),
        )
        .route(
            "/files/multipart-upload-url",
            post(uploads::multipart_upload_url),
        )
        .route("/files", post(uploads::report))
        .route(
            "/files/upload-eligibility",
            get(uploads::upload_eligibility),
        )
        .route("/files/{id}", delete(files::delete))
        .route("/files/{id}/download", get(files::download))
        .route("/files/{id}/status", get(files::status))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(request_timeout, timeout))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(any_options_ok))
        .layer(cors.api_layer())
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            track_requests,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", |p| p.as_str());
                let request_id = request
                    .extensions()
                    .get::<RequestId>()
                    .and_then(|id| id.header_value().to_str().ok())
                    .unwrap_or("-");
                // The route template only: paths and queries never reach the logs.
                tracing::info_span!("request", method = %request.method(), route, request_id)
            }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Answers any `OPTIONS` that is not a CORS preflight (those the CORS layer answers)
/// with an empty 200, on every path, as Ente's server does.
async fn any_options_ok(request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::OPTIONS {
        return axum::http::StatusCode::OK.into_response();
    }
    next.run(request).await
}

async fn timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

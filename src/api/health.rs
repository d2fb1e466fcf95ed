//! `GET /ping`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::error::ApiError;
use super::state::AppState;

/// Answers after one database round trip, so a pong means museum can work.
#[utoipa::path(
    get,
    path = "/ping",
    operation_id = "ping",
    summary = "Check that museum can work",
    description = "Answers after one round trip to the database, so a pong means museum can serve requests. Needs no token.",
    tag = "health",
    responses(
        (status = 200, description = "The database answered.", body = crate::api::doc::Pong),
        (status = 503, response = crate::api::doc::Unavailable),
    )
)]
pub async fn ping(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.db.ping().await?;
    Ok(Json(
        json!({ "message": "pong", "id": env!("CARGO_PKG_VERSION") }),
    ))
}

//! `GET /ping`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::error::ApiError;
use super::state::AppState;

/// Answers after one database round trip, so a pong means museum can work.
pub async fn ping(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.db.ping().await?;
    Ok(Json(
        json!({ "message": "pong", "id": env!("CARGO_PKG_VERSION") }),
    ))
}

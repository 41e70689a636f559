//! The admin API's JSON replies: a body with its status, and the error
//! shape every endpoint answers with (`{"error": code, "message": …}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `body` with HTTP status `status`.
pub fn json(status: u16, body: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

/// An error: its machine-readable `code` and a message for people.
pub fn error(status: u16, code: &str, message: &str) -> Response {
    json(
        status,
        serde_json::json!({"error": code, "message": message}),
    )
}

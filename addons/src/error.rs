//! The provider's one error: an HTTP status and a message, answered as `{"message"}` (what the
//! API reads from a provider, and what the Python provider answered).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub status: StatusCode,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    /// A status as the Platform API answered it: kept when it is an error status, else 502.
    pub fn from_code(code: u16, message: impl Into<String>) -> Error {
        let status = StatusCode::from_u16(code)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::BAD_GATEWAY);
        Error::new(status, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(StatusCode::NOT_FOUND, message)
    }

    pub fn no_such_route() -> Error {
        Error::not_found("no such route")
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!("{} {}", self.status.as_u16(), self.message);
        }
        (self.status, Json(serde_json::json!({ "message": self.message }))).into_response()
    }
}

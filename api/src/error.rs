//! The HTTP edge of every failure: Heroku's `{"id", "message"}` body with the matching status,
//! and a JSON extractor whose rejections have that shape too.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ouro_types::ErrorBody;

use crate::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub id: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, id: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, id, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn invalid_params(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message)
    }
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request_entity_too_large", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            Error::Conflict => ApiError::conflict("already exists"),
            Error::Limit(message) => ApiError::invalid_params(message),
            other => {
                // Logged here, once; the client sees no internals.
                tracing::error!(error = %other, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_server_error",
                    "internal error; the API log has the details",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { id: self.id.to_string(), message: self.message };
        (self.status, axum::Json(body)).into_response()
    }
}

/// `axum::Json`, but a body that is not JSON, does not fit the type, or is too large gets
/// our error shape instead of axum's plain text.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let detail = rejection.body_text();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large("request body is too large"),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid_params(detail),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::bad_request("send the body as JSON with `Content-Type: application/json`")
        }
        _ => ApiError::bad_request(detail),
    }
}

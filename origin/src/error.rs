//! Error answers: always JSON (`shared::wire::ApiError`), naming the field
//! when one is to blame.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::wire::ApiError;

/// An HTTP error with a JSON body.
#[derive(Debug)]
pub struct HttpError {
    /// Status code.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
    /// The offending field, if any.
    pub field: Option<String>,
    /// Seconds for `Retry-After` (503s).
    pub retry_after: Option<u32>,
}

impl HttpError {
    /// An error without a field.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError { status, message: message.into(), field: None, retry_after: None }
    }

    /// An error blaming `field`.
    pub fn field(status: StatusCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        HttpError { status, message: message.into(), field: Some(field.into()), retry_after: None }
    }

    /// 503 with `Retry-After`.
    pub fn overloaded(message: impl Into<String>) -> Self {
        HttpError { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into(), field: None, retry_after: Some(1) }
    }
}

impl From<shared::request::RequestError> for HttpError {
    fn from(e: shared::request::RequestError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        HttpError { status, message: e.message, field: e.field, retry_after: None }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = ApiError { error: self.message, field: self.field };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

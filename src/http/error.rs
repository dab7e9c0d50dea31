//! Error responses: `{"code", "message", "field"?}` with the status of the error's
//! kind, and the fallbacks for an unknown route (404) and a wrong method (405).

use axum::Json;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use osa_core::{Error, ErrorKind};
use serde_json::json;

/// An error response: `{"code", "message", "field"?}`.
///
/// Internal and unavailable errors are answered with a generic message; their detail
/// is logged (`tracing::error!`) and never sent to the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

/// The message an error shows a caller: its own text for errors about the request,
/// a generic one (with the detail logged) for faults of the server or its
/// dependencies.
pub(super) fn public_message(error: &Error) -> String {
    match error.kind() {
        ErrorKind::Unavailable => {
            tracing::error!(code = error.kind().as_str(), error = %error, "dependency unavailable");
        }
        ErrorKind::Internal => {
            tracing::error!(code = error.kind().as_str(), error = %error, "internal error");
        }
        _ => {}
    }
    error.public_message()
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let kind = e.kind();
        let status = match kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            code: kind.as_str(),
            message: public_message(&e),
            field: e.field().map(str::to_string),
        }
    }
}

impl ApiError {
    /// An error of the HTTP layer itself (no [`ErrorKind`] of its own).
    pub(super) fn http(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::invalid(field, message).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// OSA's JSON 404 (`{"code": "not_found", ...}`), for a host application's fallback.
pub async fn not_found() -> ApiError {
    Error::not_found("route", "this path").into()
}

pub(super) async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::http(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route does not accept {method} (see the `Allow` header)"),
    )
}

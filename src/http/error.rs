//! Error responses: `{"code", "message", "field"?}` with the status of the error's
//! kind, and the fallbacks for an unknown route (404) and a wrong method (405).
//!
//! Refused callers get the published server's codes ([`Error::code`]): 401
//! `missing_token`, `invalid_token` or `token_expired` (with `WWW-Authenticate:
//! Bearer`), 403 `access_denied`; their bodies also carry `detail: {code, message}`,
//! where the published CLI reads the code.

use axum::Json;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use osa_core::{Error, ErrorKind};
use serde_json::{Value, json};

/// An error response: `{"code", "message", "field"?}`, plus `detail: {code,
/// message}` on 401 and 403.
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
            code: e.code(),
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

/// The JSON of an error: `{"code", "message", "field"?}`; for a refused caller (401
/// or 403, and the `error` event of a stream cut short by its token) also `detail`, a
/// copy of code and message where the published CLI looks for them.
pub(super) fn error_json(code: &str, message: &str, field: Option<&str>) -> Value {
    let mut body = json!({"code": code, "message": message});
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    // The codes of refused callers ([`Error::code`]), the codes of every 401 and 403.
    if matches!(
        code,
        "missing_token" | "invalid_token" | "token_expired" | "access_denied"
    ) {
        body["detail"] = json!({"code": code, "message": message});
    }
    body
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = error_json(self.code, &self.message, self.field.as_deref());
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

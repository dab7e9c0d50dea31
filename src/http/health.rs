//! Liveness (`/health`) and the caller's identity (`/auth/me`).

use axum::routing::get;
use axum::{Json, Router};
use osa_core::Error;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::extract::Caller;
use super::state::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/health", get(health))
        .route("/auth/me", get(me))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// The caller's identity. `external_id` and `display_name` are the fields the
/// published SDK shows after its pre-flight check.
async fn me(Caller(principal): Caller) -> ApiResult<Json<Value>> {
    let principal = principal.ok_or_else(|| {
        ApiError::from(Error::Unauthenticated {
            reason: "this route needs a bearer token".into(),
        })
    })?;
    let scopes: Vec<&str> = principal.scopes.iter().map(|s| s.as_str()).collect();
    Ok(Json(json!({
        "subject": principal.subject,
        "issuer": principal.issuer,
        "external_id": principal.subject,
        "display_name": null,
        "roles": principal.roles,
        "scopes": scopes,
    })))
}

//! Liveness (`/health`) and the caller's identity (`/auth/me`).

use axum::Json;
use osa_core::Error;
use osa_core::auth::{Role, Scope};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::Caller;
use super::state::ApiState;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(me))
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Health {
    /// Always `ok` when the server answers.
    status: &'static str,
    /// The server's version.
    version: &'static str,
}

/// Liveness.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /auth/me`: the caller. `external_id` and `display_name` are the fields the
/// published SDK shows after its pre-flight check.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Me {
    /// The subject audit rows record (`<issuer>#<sub>` for machines).
    subject: String,
    /// The issuer that vouched for the caller.
    issuer: String,
    /// The subject again, under the published SDK's name.
    external_id: String,
    /// Always null: OSA keeps no display names.
    display_name: Option<String>,
    /// Roles (node tokens).
    roles: Vec<Role>,
    /// Scopes (machine tokens).
    scopes: Vec<Scope>,
}

/// The caller: subject, issuer, roles and scopes (what `osa deploy` checks first).
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "meta",
    security(("bearer" = [])),
    responses((status = 200, body = Me))
)]
async fn me(Caller(principal): Caller) -> ApiResult<Json<Me>> {
    let principal = principal.ok_or_else(|| {
        ApiError::from(Error::MissingCredentials {
            reason: "this route needs a bearer token".into(),
        })
    })?;
    Ok(Json(Me {
        external_id: principal.subject.clone(),
        subject: principal.subject,
        issuer: principal.issuer,
        display_name: None,
        roles: principal.roles.into_iter().collect(),
        scopes: principal.scopes.into_iter().collect(),
    }))
}

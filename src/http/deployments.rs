//! Deployments: the audit log of convention deploys, releases and live-pointer
//! moves, and their event streams.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use osa_core::deploy::{Deployment, DeploymentFilter, DeploymentStatus};
use osa_core::id::DeploymentId;
use osa_core::{Error, ErrorKind};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::MAX_PAGE;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, Authorized, DeploymentsRead, path_param};
use super::sse::{SseEvent, sse};
use super::state::ApiState;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_deployments))
        .routes(routes!(get_deployment))
        .routes(routes!(deployment_events))
}

/// Query of `GET /deployments`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeploymentsQuery {
    /// Only this convention slug or hook name.
    target: Option<String>,
    /// Only this status.
    status: Option<DeploymentStatus>,
    /// Only created at or after.
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only created before.
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Keyset cursor: the id of the last deployment of the previous page.
    before: Option<DeploymentId>,
    /// Page size.
    #[param(minimum = 1, maximum = 1000, default = 50)]
    limit: Option<u32>,
}

/// List deployments, newest first.
#[utoipa::path(
    get,
    path = "/deployments",
    tag = "deployments",
    params(DeploymentsQuery),
    security(("bearer" = ["deployments:read"])),
    responses((status = 200, body = Vec<Deployment>))
)]
async fn list_deployments(
    State(state): State<ApiState>,
    _: Authorized<DeploymentsRead>,
    query: Result<Query<DeploymentsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<Deployment>>> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1..={MAX_PAGE}"),
        ));
    }
    let before = match q.before {
        Some(id) => {
            let cursor = state.deployer.get(id).await.map_err(|e| match e.kind() {
                ErrorKind::NotFound => Error::invalid("before", format!("no deployment {id}")),
                _ => e,
            })?;
            Some((cursor.created_at, cursor.id))
        }
        None => None,
    };
    let list = state
        .deployer
        .list(&DeploymentFilter {
            target: q.target,
            status: q.status,
            since: q.since,
            until: q.until,
            before,
            limit,
        })
        .await?;
    Ok(Json(list))
}

/// One deployment.
#[utoipa::path(
    get,
    path = "/deployments/{id}",
    tag = "deployments",
    params(("id" = DeploymentId, Path, description = "The deployment")),
    security(("bearer" = ["deployments:read"])),
    responses((status = 200, body = Deployment))
)]
async fn get_deployment(
    State(state): State<ApiState>,
    _: Authorized<DeploymentsRead>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Deployment>> {
    let id = path_param("id", &id, str::parse::<DeploymentId>)?;
    Ok(Json(state.deployer.get(id).await?))
}

/// A deployment's events (SSE: replay, then live; ends when the token expires).
#[utoipa::path(
    get,
    path = "/deployments/{id}/events",
    tag = "deployments",
    params(("id" = DeploymentId, Path, description = "The deployment")),
    security(("bearer" = ["deployments:read"])),
    responses((status = 200, description = "Server-sent events; each `data` is a DeploymentEvent", body = SseEvent, content_type = "text/event-stream"))
)]
async fn deployment_events(
    State(state): State<ApiState>,
    Authorized(principal, _): Authorized<DeploymentsRead>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id = path_param("id", &id, str::parse::<DeploymentId>)?;
    let ticket = state.open_stream(&principal)?;
    let events = state.deployer.events(id, state.stream_poll).await?;
    Ok(sse(events, ticket).into_response())
}

//! Deployments: the audit log of convention deploys, releases and live-pointer
//! moves, and their event streams.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use osa_core::deploy::{DeploymentFilter, DeploymentStatus};
use osa_core::id::DeploymentId;
use osa_core::{Error, ErrorKind};
use serde::Deserialize;
use serde_json::{Value, json};

use super::MAX_PAGE;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, Authorized, DeploymentsRead, path_param};
use super::sse::sse;
use super::state::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/deployments", get(list_deployments))
        .route("/deployments/{id}", get(get_deployment))
        .route("/deployments/{id}/events", get(deployment_events))
}

/// Query of `GET /deployments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentsQuery {
    target: Option<String>,
    status: Option<DeploymentStatus>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Keyset cursor: the id of the last deployment of the previous page.
    before: Option<DeploymentId>,
    limit: Option<u32>,
}

async fn list_deployments(
    State(state): State<ApiState>,
    _: Authorized<DeploymentsRead>,
    query: Result<Query<DeploymentsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!(list)))
}

async fn get_deployment(
    State(state): State<ApiState>,
    _: Authorized<DeploymentsRead>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let id = path_param("id", &id, str::parse::<DeploymentId>)?;
    Ok(Json(json!(state.deployer.get(id).await?)))
}

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

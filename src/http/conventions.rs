//! Conventions: deploy (audited) and read.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use osa_core::Error;
use osa_core::deploy::{DeployConvention, parse_payload};
use osa_core::id::ConventionSlug;
use serde_json::{Value, json};

use super::error::ApiResult;
use super::extract::{
    ApiPath, Authorized, Body, ConventionsWrite, path_param, require_admin_for_process,
};
use super::state::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/conventions",
            post(deploy_convention).get(list_conventions),
        )
        .route("/conventions/{slug}", get(get_convention))
}

/// Whether a deploy body asks for a release with a local process runtime. A body
/// that does not parse asks for nothing: the deployer refuses (and audits) it.
fn deploy_runs_process(body: &[u8]) -> bool {
    parse_payload::<DeployConvention>(body).is_ok_and(|payload| {
        payload.hooks.iter().any(|h| h.release.command.is_some())
            || payload
                .ingester
                .is_some_and(|i| i.release.command.is_some())
    })
}

async fn deploy_convention(
    State(state): State<ApiState>,
    Authorized(principal, _): Authorized<ConventionsWrite>,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    require_admin_for_process(&principal, deploy_runs_process(&body))?;
    let outcome = state.deployer.deploy(&body, &principal.subject).await?;
    let convention = &outcome.applied.convention;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            // The published server's `ConventionCreated`, which `osa deploy` reads.
            "slug": convention.slug,
            "title": convention.title,
            "description": convention.description,
            "schema_id": {"id": convention.schema.id, "version": convention.schema.version},
            "hooks": convention.hooks,
            "created_at": convention.created_at,
            // OSA's additions: the audit row, the whole convention, the releases.
            "deployment": outcome.deployment,
            "convention": convention,
            "releases": outcome.applied.releases,
        })),
    ))
}

async fn list_conventions(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.storage.list_conventions().await?)))
}

async fn get_convention(
    State(state): State<ApiState>,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let slug = path_param("slug", &slug, ConventionSlug::new)?;
    let convention = state
        .storage
        .get_convention(&slug)
        .await?
        .ok_or_else(|| Error::not_found("convention", &slug))?;
    Ok(Json(json!(convention)))
}

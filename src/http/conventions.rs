//! Conventions: deploy (audited) and read.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use osa_core::Error;
use osa_core::convention::Convention;
use osa_core::deploy::{DeployConvention, Deployment, parse_payload};
use osa_core::hook::ReleaseOutcome;
use osa_core::id::{ConventionSlug, HookName, SchemaId};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiResult;
use super::extract::{
    ApiPath, Authorized, Body, ConventionsWrite, path_param, require_admin_for_process,
};
use super::state::ApiState;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(deploy_convention, list_conventions))
        .routes(routes!(get_convention))
}

/// The answer to a deploy: the published server's `ConventionCreated` (what `osa
/// deploy` reads), then OSA's additions: the audit row, the whole convention and the
/// releases.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConventionCreated {
    slug: ConventionSlug,
    title: String,
    description: String,
    schema_id: SchemaRef,
    hooks: Vec<HookName>,
    created_at: DateTime<Utc>,
    /// The audited deployment.
    deployment: Deployment,
    /// The convention as stored.
    convention: Convention,
    /// The hooks' releases, each new or existing by digest.
    releases: Vec<ReleaseOutcome>,
}

/// A metadata schema's id and version.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SchemaRef {
    id: SchemaId,
    version: String,
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

/// Deploy a convention (audited); a hook release with a local process runtime
/// (`command`) needs the admin role.
#[utoipa::path(
    post,
    path = "/conventions",
    tag = "conventions",
    request_body = DeployConvention,
    security(("bearer" = ["conventions:write"])),
    responses((status = 201, description = "Deployed", body = ConventionCreated))
)]
async fn deploy_convention(
    State(state): State<ApiState>,
    Authorized(principal, _): Authorized<ConventionsWrite>,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<ConventionCreated>)> {
    require_admin_for_process(&principal, deploy_runs_process(&body))?;
    let outcome = state.deployer.deploy(&body, &principal.subject).await?;
    let convention = outcome.applied.convention;
    Ok((
        StatusCode::CREATED,
        Json(ConventionCreated {
            slug: convention.slug.clone(),
            title: convention.title.clone(),
            description: convention.description.clone(),
            schema_id: SchemaRef {
                id: convention.schema.id.clone(),
                version: convention.schema.version.clone(),
            },
            hooks: convention.hooks.clone(),
            created_at: convention.created_at,
            deployment: outcome.deployment,
            convention,
            releases: outcome.applied.releases,
        }),
    ))
}

/// List conventions, newest first.
#[utoipa::path(
    get,
    path = "/conventions",
    tag = "conventions",
    responses((status = 200, body = Vec<Convention>))
)]
async fn list_conventions(State(state): State<ApiState>) -> ApiResult<Json<Vec<Convention>>> {
    Ok(Json(state.storage.list_conventions().await?))
}

/// One convention.
#[utoipa::path(
    get,
    path = "/conventions/{slug}",
    tag = "conventions",
    params(("slug" = ConventionSlug, Path, description = "The convention's slug")),
    responses((status = 200, body = Convention))
)]
async fn get_convention(
    State(state): State<ApiState>,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<Convention>> {
    let slug = path_param("slug", &slug, ConventionSlug::new)?;
    let convention = state
        .storage
        .get_convention(&slug)
        .await?
        .ok_or_else(|| Error::not_found("convention", &slug))?;
    Ok(Json(convention))
}

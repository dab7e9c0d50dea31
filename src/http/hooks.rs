//! Hooks: their releases, the live pointer, hook runs and their logs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use osa_core::deploy::{Deployment, ReleaseRequest, SetLiveRequest, parse_payload};
use osa_core::hook::{Hook, HookRelease, HookRun, HookRunStatus, OutcomeCounts};
use osa_core::id::{Digest, HookName, HookRunId, ReleaseId};
use osa_core::{Error, ErrorKind};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiResult;
use super::extract::{
    ApiPath, Authorized, Body, HooksWrite, RunsRead, path_param, require_admin_for_process,
};
use super::state::ApiState;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_hooks))
        .routes(routes!(list_releases, create_release))
        .routes(routes!(get_release))
        .routes(routes!(set_live))
        .routes(routes!(get_hook_run))
        .routes(routes!(get_hook_log))
}

/// The answer to `POST /hooks/{name}/releases` (the published `ReleaseCreated` and
/// the audit row).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReleaseCreated {
    /// The audited deployment.
    deployment: Deployment,
    /// The new release, or the existing one with the same digest.
    release: HookRelease,
    /// Whether a new version was minted (and became live).
    created: bool,
}

/// The answer to `PUT /hooks/{name}/live`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LiveMoved {
    /// The audited deployment.
    deployment: Deployment,
    /// The release that was live before, if any.
    previous: Option<HookRelease>,
    /// The release that is live now.
    current: HookRelease,
}

/// A hook run as the API shows it: the log's locator is never exposed, only whether
/// there is a log (`GET /hooks/runs/{id}/logs`).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HookRunView {
    id: HookRunId,
    release_id: ReleaseId,
    status: HookRunStatus,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    /// Wall-clock seconds over all attempts.
    duration_s: f64,
    /// How many times memory was doubled after an OOM.
    oom_retries: u32,
    /// sha256 of the `records.jsonl` the hook read.
    input_sha256: Option<Digest>,
    counts: OutcomeCounts,
    /// Whether a captured log can be read.
    has_logs: bool,
}

impl From<HookRun> for HookRunView {
    fn from(run: HookRun) -> Self {
        HookRunView {
            id: run.id,
            release_id: run.release_id,
            status: run.status,
            started_at: run.started_at,
            finished_at: run.finished_at,
            duration_s: run.duration_s,
            oom_retries: run.oom_retries,
            input_sha256: run.input_sha256,
            counts: run.counts,
            has_logs: run.log_ref.is_some(),
        }
    }
}

/// List hooks with their live release.
#[utoipa::path(get, path = "/hooks", tag = "hooks", responses((status = 200, body = Vec<Hook>)))]
async fn list_hooks(State(state): State<ApiState>) -> ApiResult<Json<Vec<Hook>>> {
    Ok(Json(state.storage.list_hooks().await?))
}

/// The registered hook named by the path parameter `field`.
pub(super) async fn known_hook(
    state: &ApiState,
    field: &str,
    name: &str,
) -> ApiResult<osa_core::hook::Hook> {
    let name = path_param(field, name, HookName::new)?;
    Ok(state
        .storage
        .get_hook(&name)
        .await?
        .ok_or_else(|| Error::not_found("hook", &name))?)
}

/// A hook's releases.
#[utoipa::path(
    get,
    path = "/hooks/{name}/releases",
    tag = "hooks",
    params(("name" = HookName, Path, description = "The hook")),
    responses((status = 200, body = Vec<HookRelease>))
)]
async fn list_releases(
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Vec<HookRelease>>> {
    let hook = known_hook(&state, "name", &name).await?;
    Ok(Json(
        state.storage.list_releases(&hook.identity.name).await?,
    ))
}

/// One release.
#[utoipa::path(
    get,
    path = "/hooks/{name}/releases/{version}",
    tag = "hooks",
    params(
        ("name" = HookName, Path, description = "The hook"),
        ("version" = u32, Path, minimum = 1, description = "The release's version (1, 2, ...)"),
    ),
    responses((status = 200, body = HookRelease))
)]
async fn get_release(
    State(state): State<ApiState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> ApiResult<Json<HookRelease>> {
    let name = path_param("name", &name, HookName::new)?;
    let version: u32 = path_param("version", &version, str::parse)?;
    if let Some(release) = state.storage.get_release(&name, version).await? {
        return Ok(Json(release));
    }
    // Say which is missing: the hook or only the version.
    known_hook(&state, "name", name.as_str()).await?;
    Err(Error::not_found("release", format!("{name}/v{version}")).into())
}

/// Create a release (201 new, 200 existing digest); a local process runtime
/// (`command`) needs the admin role.
#[utoipa::path(
    post,
    path = "/hooks/{name}/releases",
    tag = "hooks",
    params(("name" = HookName, Path, description = "The hook")),
    request_body = ReleaseRequest,
    security(("bearer" = ["hooks:write"])),
    responses(
        (status = 201, description = "A new release, now live", body = ReleaseCreated),
        (status = 200, description = "A release with this digest already exists", body = ReleaseCreated),
    )
)]
async fn create_release(
    State(state): State<ApiState>,
    Authorized(principal, _): Authorized<HooksWrite>,
    ApiPath(name): ApiPath<String>,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<ReleaseCreated>)> {
    let name = path_param("name", &name, HookName::new)?;
    let process = parse_payload::<ReleaseRequest>(&body).is_ok_and(|r| r.command.is_some());
    require_admin_for_process(&principal, process)?;
    let outcome = state
        .deployer
        .create_release(&name, &body, &principal.subject)
        .await?;
    let status = if outcome.applied.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(ReleaseCreated {
            deployment: outcome.deployment,
            release: outcome.applied.release,
            created: outcome.applied.created,
        }),
    ))
}

/// Move the live pointer (rollback or pin).
#[utoipa::path(
    put,
    path = "/hooks/{name}/live",
    tag = "hooks",
    params(("name" = HookName, Path, description = "The hook")),
    request_body = SetLiveRequest,
    security(("bearer" = ["hooks:write"])),
    responses((status = 200, body = LiveMoved))
)]
async fn set_live(
    State(state): State<ApiState>,
    Authorized(principal, _): Authorized<HooksWrite>,
    ApiPath(name): ApiPath<String>,
    Body(body): Body,
) -> ApiResult<Json<LiveMoved>> {
    let name = path_param("name", &name, HookName::new)?;
    let request: SetLiveRequest = parse_payload(&body)?;
    let outcome = state
        .deployer
        .set_live(&name, request.version, &principal.subject)
        .await?;
    Ok(Json(LiveMoved {
        deployment: outcome.deployment,
        previous: outcome.applied.previous,
        current: outcome.applied.current,
    }))
}

/// One hook run.
#[utoipa::path(
    get,
    path = "/hooks/runs/{id}",
    tag = "hooks",
    params(("id" = HookRunId, Path, description = "The hook run")),
    security(("bearer" = ["runs:read"])),
    responses((status = 200, body = HookRunView))
)]
async fn get_hook_run(
    State(state): State<ApiState>,
    _: Authorized<RunsRead>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<HookRunView>> {
    let id = path_param("id", &id, str::parse::<HookRunId>)?;
    let run = state
        .storage
        .get_run(id)
        .await?
        .ok_or_else(|| Error::not_found("hook run", id))?;
    Ok(Json(run.into()))
}

/// A hook run's captured log.
#[utoipa::path(
    get,
    path = "/hooks/runs/{id}/logs",
    tag = "hooks",
    params(("id" = HookRunId, Path, description = "The hook run")),
    security(("bearer" = ["runs:read"])),
    responses((status = 200, description = "The log", body = String, content_type = "text/plain"))
)]
async fn get_hook_log(
    State(state): State<ApiState>,
    _: Authorized<RunsRead>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id = path_param("id", &id, str::parse::<HookRunId>)?;
    // Not found: the run, its locator or the blob (whose message would name the
    // locator). Invalid: a stored locator that does not parse, a fault of the server.
    let log = state
        .engine
        .hook_log(id)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::not_found("log of hook run", id),
            ErrorKind::Invalid => {
                Error::internal(format!("hook run {id} has a malformed log locator: {e}"))
            }
            _ => e,
        })?;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}

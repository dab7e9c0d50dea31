//! Hooks: their releases, the live pointer, hook runs and their logs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use osa_core::deploy::{Deployment, ReleaseRequest, SetLiveRequest, parse_payload};
use osa_core::feature::FeatureSpec;
use osa_core::hook::{Hook, HookRelease, HookRun, HookRunStatus, OutcomeCounts};
use osa_core::id::{Digest, HookName, HookRunId, ReleaseId};
use osa_core::runtime::RuntimeConfig;
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

/// `GET /hooks`: every hook, ordered by name (the published server's `HookList`).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HookList {
    /// The hooks, ordered by name.
    items: Vec<HookView>,
}

/// A hook as `GET /hooks` lists it: the published server's fields (`name`, `feature`,
/// `live_release`) and when it was registered.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HookView {
    /// The hook's name (also its feature table's name).
    name: HookName,
    /// Its output contract.
    feature: FeatureSpec,
    /// The live release, null before the first one.
    #[schema(required = true)]
    live_release: Option<LiveRelease>,
    /// When the hook was first registered.
    created_at: DateTime<Utc>,
}

/// The live release of a listed hook (the published server's fields and the id).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LiveRelease {
    /// Release id.
    id: ReleaseId,
    /// 1, 2, 3… per hook.
    version: u32,
    /// The release's content digest.
    digest: Digest,
    /// Where the code came from (`git:abc1234`).
    source_ref: String,
    /// When it was created.
    built_at: DateTime<Utc>,
}

impl From<Hook> for HookView {
    fn from(hook: Hook) -> Self {
        HookView {
            name: hook.identity.name,
            feature: hook.identity.feature,
            live_release: hook.live.map(|release| LiveRelease {
                id: release.id,
                version: release.version,
                digest: release.digest().clone(),
                source_ref: release.source_ref,
                built_at: release.built_at,
            }),
            created_at: hook.created_at,
        }
    }
}

/// `GET /hooks/{name}/releases`: a hook's releases, newest version first, and the
/// live version (the published server's `ReleaseList`).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReleaseList {
    /// The hook.
    hook_name: HookName,
    /// The live release's version, null before the first release.
    #[schema(required = true)]
    live_version: Option<u32>,
    /// Every release, version descending.
    releases: Vec<ReleaseView>,
}

/// A release as the API shows it: the stored release (`id`, `hook`, `version`,
/// `runtime`, `source_ref`, `built_by`, `built_at`) with the published server's
/// `digest` and `image` beside it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReleaseView {
    /// Release id.
    id: ReleaseId,
    /// The hook it belongs to.
    hook: HookName,
    /// 1, 2, 3… per hook, gap-free.
    version: u32,
    /// The content digest (also in `runtime`).
    digest: Digest,
    /// The OCI image reference; null for a local process release (`runtime.command`).
    #[schema(required = true)]
    image: Option<String>,
    /// How it runs (image or command, digest, config, limits).
    runtime: RuntimeConfig,
    /// Where the code came from (`git:abc1234`).
    source_ref: String,
    /// The principal that created it.
    #[schema(required = true)]
    built_by: Option<String>,
    /// When it was created.
    built_at: DateTime<Utc>,
}

impl From<HookRelease> for ReleaseView {
    fn from(release: HookRelease) -> Self {
        let image = match &release.runtime {
            RuntimeConfig::Oci { image, .. } => Some(image.clone()),
            _ => None,
        };
        ReleaseView {
            digest: release.digest().clone(),
            id: release.id,
            hook: release.hook,
            version: release.version,
            image,
            runtime: release.runtime,
            source_ref: release.source_ref,
            built_by: release.built_by,
            built_at: release.built_at,
        }
    }
}

/// The answer to `POST /hooks/{name}/releases`: the published server's
/// `ReleaseCreated` fields, the release and the audit row.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReleaseCreated {
    /// The hook.
    hook_name: HookName,
    /// The release's version.
    version: u32,
    /// The release's id.
    id: ReleaseId,
    /// The release's content digest.
    digest: Digest,
    /// Where the code came from.
    source_ref: String,
    /// When the release was created (for an existing digest, when it first was).
    built_at: DateTime<Utc>,
    /// Whether this release is the hook's live release now: true for a new version
    /// (minting one moves the live pointer); for an existing digest, whether the
    /// pointer is on it (a rollback may have moved it elsewhere).
    live: bool,
    /// The audited deployment.
    deployment: Deployment,
    /// The new release, or the existing one with the same digest.
    release: HookRelease,
    /// Whether a new version was minted (and became live).
    created: bool,
}

/// The answer to `PUT /hooks/{name}/live`: the published server's fields
/// (`hook_name`, `live_version`, `live_release_id`), the audit row and both releases.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LiveMoved {
    /// The hook.
    hook_name: HookName,
    /// The version that is live now.
    live_version: u32,
    /// The id of the release that is live now.
    live_release_id: ReleaseId,
    /// The audited deployment.
    deployment: Deployment,
    /// The release that was live before, if any.
    #[schema(required = true)]
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

/// List hooks with their live release, ordered by name.
#[utoipa::path(get, path = "/hooks", tag = "hooks", responses((status = 200, body = HookList)))]
async fn list_hooks(State(state): State<ApiState>) -> ApiResult<Json<HookList>> {
    let mut hooks = state.storage.list_hooks().await?;
    hooks.sort_by(|a, b| a.identity.name.as_str().cmp(b.identity.name.as_str()));
    Ok(Json(HookList {
        items: hooks.into_iter().map(HookView::from).collect(),
    }))
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

/// A hook's releases, newest version first, and its live version.
#[utoipa::path(
    get,
    path = "/hooks/{name}/releases",
    tag = "hooks",
    params(("name" = HookName, Path, description = "The hook")),
    responses((status = 200, body = ReleaseList))
)]
async fn list_releases(
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ReleaseList>> {
    let hook = known_hook(&state, "name", &name).await?;
    let mut releases = state.storage.list_releases(&hook.identity.name).await?;
    releases.sort_by_key(|release| std::cmp::Reverse(release.version));
    Ok(Json(ReleaseList {
        live_version: hook.live.map(|live| live.version),
        hook_name: hook.identity.name,
        releases: releases.into_iter().map(ReleaseView::from).collect(),
    }))
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
    responses((status = 200, body = ReleaseView))
)]
async fn get_release(
    State(state): State<ApiState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> ApiResult<Json<ReleaseView>> {
    let name = path_param("name", &name, HookName::new)?;
    let version: u32 = path_param("version", &version, str::parse)?;
    if let Some(release) = state.storage.get_release(&name, version).await? {
        return Ok(Json(release.into()));
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
    let release = outcome.applied.release;
    // Read after the write: whether the pointer is on this release now.
    let live = state
        .storage
        .get_hook(&name)
        .await?
        .and_then(|hook| hook.live)
        .is_some_and(|live| live.id == release.id);
    Ok((
        status,
        Json(ReleaseCreated {
            hook_name: release.hook.clone(),
            version: release.version,
            id: release.id,
            digest: release.digest().clone(),
            source_ref: release.source_ref.clone(),
            built_at: release.built_at,
            live,
            deployment: outcome.deployment,
            release,
            created: outcome.applied.created,
        }),
    ))
}

/// Move the live pointer (rollback or pin) to the version in the body.
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
    let current = &outcome.applied.current;
    Ok(Json(LiveMoved {
        hook_name: current.hook.clone(),
        live_version: current.version,
        live_release_id: current.id,
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

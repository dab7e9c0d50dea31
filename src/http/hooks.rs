//! Hooks: their releases, the live pointer, hook runs and their logs.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use osa_core::deploy::{ReleaseRequest, SetLiveRequest, parse_payload};
use osa_core::id::{HookName, HookRunId};
use osa_core::{Error, ErrorKind};
use serde_json::{Value, json};

use super::error::ApiResult;
use super::extract::{
    ApiPath, Authorized, Body, HooksWrite, RunsRead, path_param, require_admin_for_process,
};
use super::state::ApiState;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/hooks", get(list_hooks))
        .route(
            "/hooks/{name}/releases",
            get(list_releases).post(create_release),
        )
        .route("/hooks/{name}/releases/{version}", get(get_release))
        .route("/hooks/{name}/live", put(set_live))
        .route("/hooks/runs/{id}", get(get_hook_run))
        .route("/hooks/runs/{id}/logs", get(get_hook_log))
}

async fn list_hooks(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.storage.list_hooks().await?)))
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

async fn list_releases(
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let hook = known_hook(&state, "name", &name).await?;
    Ok(Json(json!(
        state.storage.list_releases(&hook.identity.name).await?
    )))
}

async fn get_release(
    State(state): State<ApiState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let name = path_param("name", &name, HookName::new)?;
    let version: u32 = path_param("version", &version, str::parse)?;
    if let Some(release) = state.storage.get_release(&name, version).await? {
        return Ok(Json(json!(release)));
    }
    // Say which is missing: the hook or only the version.
    known_hook(&state, "name", name.as_str()).await?;
    Err(Error::not_found("release", format!("{name}/v{version}")).into())
}

async fn create_release(
    State(state): State<ApiState>,
    Authorized(principal, _): Authorized<HooksWrite>,
    ApiPath(name): ApiPath<String>,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
        Json(
            json!({"deployment": outcome.deployment, "release": outcome.applied.release, "created": outcome.applied.created}),
        ),
    ))
}

async fn set_live(
    State(state): State<ApiState>,
    Authorized(principal, _): Authorized<HooksWrite>,
    ApiPath(name): ApiPath<String>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let name = path_param("name", &name, HookName::new)?;
    let request: SetLiveRequest = parse_payload(&body)?;
    let outcome = state
        .deployer
        .set_live(&name, request.version, &principal.subject)
        .await?;
    Ok(Json(json!({
        "deployment": outcome.deployment,
        "previous": outcome.applied.previous,
        "current": outcome.applied.current,
    })))
}

/// A hook run as the API shows it: the log locator is never exposed.
pub(super) fn hook_run_json(run: &osa_core::hook::HookRun) -> Value {
    let mut value = json!(run);
    if let Some(object) = value.as_object_mut() {
        object.remove("log_ref");
        object.insert("has_logs".into(), json!(run.log_ref.is_some()));
    }
    value
}

async fn get_hook_run(
    State(state): State<ApiState>,
    _: Authorized<RunsRead>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let id = path_param("id", &id, str::parse::<HookRunId>)?;
    let run = state
        .storage
        .get_run(id)
        .await?
        .ok_or_else(|| Error::not_found("hook run", id))?;
    Ok(Json(hook_run_json(&run)))
}

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

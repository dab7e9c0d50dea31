//! Validation runs: submit (record files from the object store, under the upload
//! prefix), read, cancel, and their event streams.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore as _;
use osa_core::Error;
use osa_core::deploy::parse_payload;
use osa_core::id::{ConventionSlug, ValidationRunId};
use osa_core::validation::{
    FileSource, InputRecord, RecordPage, RunStatus, SubmitValidation, ValidationRunSummary,
    ValidationService,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, Authorized, Body, RunsRead, ValidationsWrite, path_param};
use super::sse::{SseEvent, sse};
use super::state::ApiState;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(submit_validation))
        .routes(routes!(get_validation))
        .routes(routes!(validation_records))
        .routes(routes!(cancel_validation))
        .routes(routes!(validation_events))
}

/// `POST /validations`: records of one convention, their files as object-store keys
/// under the upload prefix (`{"name", "source": "object", "key"}`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitBody {
    /// The convention the records follow.
    convention: ConventionSlug,
    /// The records.
    records: Vec<InputRecord>,
}

/// A submitted run.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Submitted {
    /// The run's id.
    id: ValidationRunId,
}

/// The answer to a cancel.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Cancelled {
    /// The run.
    id: ValidationRunId,
    /// `false` when the run had already ended.
    cancelled: bool,
    /// The run's status now.
    status: RunStatus,
}

/// The object-store path of an uploaded file's `key`: under `prefix` (which ends with
/// `/`), with no empty, `.` or `..` segment.
fn upload_path(prefix: &str, key: &str) -> Result<object_store::path::Path, String> {
    let refused = || format!("must be an object-store key under `{prefix}`");
    let rest = key.strip_prefix(prefix).ok_or_else(refused)?;
    if rest.is_empty() {
        return Err(refused());
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("every segment must be non-empty and neither `.` nor `..`".into());
    }
    if key.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    // The engine reads the file at the same path.
    Ok(object_store::path::Path::from(key))
}

/// Checks the files of a submission: object-store keys under the upload prefix, each
/// present and at most the engine's file size limit.
async fn check_submitted_files(state: &ApiState, body: &SubmitBody) -> ApiResult<()> {
    let limit = state.engine.config().batch_limits.max_file_bytes;
    let mut objects = Vec::new();
    // Over HTTP, files come from the object store only: a local path would let a
    // caller read the server's files, and a key elsewhere in the store other runs'
    // blobs.
    for (i, record) in body.records.iter().enumerate() {
        for (j, file) in record.files.iter().enumerate() {
            let field = format!("records[{i}].files[{j}].source");
            match &file.source {
                FileSource::Object { key } => {
                    let field = format!("{field}.key");
                    let path = upload_path(&state.upload_prefix, key)
                        .map_err(|message| ApiError::invalid(&field, message))?;
                    objects.push((field, path));
                }
                // Local paths, and any source this layer does not know, are refused.
                _ => {
                    return Err(ApiError::invalid(
                        field,
                        "only object-store keys (`{\"source\": \"object\", \"key\"}`) are accepted over HTTP",
                    ));
                }
            }
        }
    }
    let store = state.engine.blobs().store().clone();
    futures::stream::iter(objects)
        .map(|(field, path)| {
            let store = store.clone();
            async move {
                let meta = match store.head(&path).await {
                    Ok(meta) => meta,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(ApiError::invalid(field, "no object at this key"));
                    }
                    Err(e) => {
                        return Err(Error::Unavailable {
                            what: "object store",
                            detail: format!("reading the size of {path}: {e}"),
                            source: Some(Box::new(e)),
                        }
                        .into());
                    }
                };
                if meta.size > limit {
                    return Err(ApiError::invalid(
                        field,
                        format!(
                            "the object is {} bytes, over the limit of {limit} bytes",
                            meta.size
                        ),
                    ));
                }
                Ok(())
            }
        })
        .buffered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Submit records for validation (files as object-store keys under the upload
/// prefix).
#[utoipa::path(
    post,
    path = "/validations",
    tag = "validations",
    request_body = SubmitBody,
    security(("bearer" = ["validations:write"])),
    responses((status = 202, description = "Accepted: the run is queued", body = Submitted))
)]
async fn submit_validation(
    State(state): State<ApiState>,
    _: Authorized<ValidationsWrite>,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<Submitted>)> {
    let body: SubmitBody = parse_payload(&body)?;
    check_submitted_files(&state, &body).await?;
    let run = state
        .engine
        .submit(SubmitValidation {
            convention: body.convention,
            records: body.records,
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Submitted { id: run })))
}

/// Verdicts a run's read lists when its query does not say (at most
/// [`MAX_RECORD_PAGE`](osa_core::validation::MAX_RECORD_PAGE)).
const DEFAULT_RECORD_PAGE: u32 = 1000;

/// Query of `GET /validations/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ValidationQuery {
    /// How many verdicts (of the first records) to list; `next` says where the rest
    /// begins.
    #[param(minimum = 1, maximum = 10000, default = 1000)]
    limit: Option<u32>,
}

/// Query of `GET /validations/{id}/records`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RecordsQuery {
    /// Submit position of the page's first record (`next` of the previous page).
    #[param(minimum = 0, default = 0)]
    from: Option<u32>,
    /// Page size.
    #[param(minimum = 1, maximum = 10000, default = 1000)]
    limit: Option<u32>,
}

/// A run's status, steps, counts per verdict and the verdicts of its first records
/// (`limit`, 1,000 by default); `next` is the `from` of the rest
/// (`GET /validations/{id}/records`), `null` when every verdict is listed.
#[utoipa::path(
    get,
    path = "/validations/{id}",
    tag = "validations",
    params(("id" = ValidationRunId, Path, description = "The run"), ValidationQuery),
    security(("bearer" = ["runs:read"])),
    responses((status = 200, body = ValidationRunSummary))
)]
async fn get_validation(
    State(state): State<ApiState>,
    _: Authorized<RunsRead>,
    ApiPath(id): ApiPath<String>,
    query: Result<Query<ValidationQuery>, QueryRejection>,
) -> ApiResult<Json<ValidationRunSummary>> {
    let id = path_param("id", &id, str::parse::<ValidationRunId>)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    // The engine refuses a limit outside 1..=MAX_RECORD_PAGE (422 naming `limit`).
    let limit = q.limit.unwrap_or(DEFAULT_RECORD_PAGE);
    Ok(Json(state.engine.summary(id, limit).await?))
}

/// A page of a run's verdicts: the records at submit positions `from` to
/// `from + limit - 1`, in submit order; `next` is the `from` of the following page,
/// `null` after the last record.
#[utoipa::path(
    get,
    path = "/validations/{id}/records",
    tag = "validations",
    params(("id" = ValidationRunId, Path, description = "The run"), RecordsQuery),
    security(("bearer" = ["runs:read"])),
    responses((status = 200, body = RecordPage))
)]
async fn validation_records(
    State(state): State<ApiState>,
    _: Authorized<RunsRead>,
    ApiPath(id): ApiPath<String>,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> ApiResult<Json<RecordPage>> {
    let id = path_param("id", &id, str::parse::<ValidationRunId>)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_RECORD_PAGE);
    let page = state.engine.records(id, q.from.unwrap_or(0), limit).await?;
    Ok(Json(page))
}

/// Cancel a run: a hook running for it is stopped; `cancelled` is false when it had
/// already ended.
#[utoipa::path(
    post,
    path = "/validations/{id}/cancel",
    tag = "validations",
    params(("id" = ValidationRunId, Path, description = "The run")),
    security(("bearer" = ["validations:write"])),
    responses((status = 200, body = Cancelled))
)]
async fn cancel_validation(
    State(state): State<ApiState>,
    _: Authorized<ValidationsWrite>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Cancelled>> {
    let id = path_param("id", &id, str::parse::<ValidationRunId>)?;
    let cancelled = state.engine.cancel(id).await?;
    let status = match cancelled {
        true => RunStatus::Cancelled,
        // It had ended already: say how (its status alone, not its verdicts).
        false => state
            .storage
            .run_status(id)
            .await?
            .ok_or_else(|| Error::not_found("validation run", id))?,
    };
    Ok(Json(Cancelled {
        id,
        cancelled,
        status,
    }))
}

/// A run's events (SSE: replay, then live; ends when the token expires). Each event's
/// `data` is a [`RunEvent`](osa_core::validation::RunEvent).
#[utoipa::path(
    get,
    path = "/validations/{id}/events",
    tag = "validations",
    params(("id" = ValidationRunId, Path, description = "The run")),
    security(("bearer" = ["runs:read"])),
    responses((status = 200, description = "Server-sent events; each `data` is a RunEvent", body = SseEvent, content_type = "text/event-stream"))
)]
async fn validation_events(
    State(state): State<ApiState>,
    Authorized(principal, _): Authorized<RunsRead>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id = path_param("id", &id, str::parse::<ValidationRunId>)?;
    let ticket = state.open_stream(&principal)?;
    let events = state.engine.events(id).await?;
    Ok(sse(events, ticket).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_keys_stay_under_the_prefix() {
        let ok = upload_path("uploads/", "uploads/alice/x.cif").unwrap();
        assert_eq!(ok.as_ref(), "uploads/alice/x.cif");
        for bad in [
            "runs/0/inputs.json",
            "uploads/",
            "uploads",
            "/uploads/x",
            "uploadsx/y",
            "uploads/../runs/x",
            "uploads/./x",
            "uploads//x",
            "uploads/a\nb",
        ] {
            assert!(upload_path("uploads/", bad).is_err(), "{bad:?}");
        }
    }
}

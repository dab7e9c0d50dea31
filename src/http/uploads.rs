//! Uploads: `PUT /uploads/{name}` streams the request body into the object store under
//! the upload prefix (never whole in memory), at most the engine's record-file limit,
//! and answers the key that `POST /validations` takes, with the size and sha256.
//!
//! Each upload gets a key of its own (`<prefix><uuid>/<name>`), so uploads never
//! replace each other, and a key says nothing a caller could guess.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use futures::TryStreamExt;
use osa_core::blob::Streamed;
use osa_core::id::{Digest, FileName};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, Authorized, ValidationsWrite, path_param};
use super::state::ApiState;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        .routes(routes!(presigned_upload))
}

/// A fresh key under the upload prefix for a file called `name`.
fn upload_key(state: &ApiState, name: &FileName) -> String {
    format!(
        "{}{}/{}",
        state.upload_prefix(),
        uuid::Uuid::new_v4().simple(),
        name.as_str()
    )
}

/// A URL to put one file straight into the blob store.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PresignedUpload {
    /// The object-store key the URL writes, to name in `POST /validations`.
    key: String,
    /// The file name it is for.
    name: FileName,
    /// Send the file's bytes as the body of an HTTP `PUT` to this URL.
    url: String,
    /// Always `PUT`.
    method: &'static str,
    /// When the URL stops working.
    expires_at: chrono::DateTime<chrono::Utc>,
    /// The largest file `POST /validations` accepts; the store does not check it.
    max_bytes: u64,
}

/// A stored upload.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Uploaded {
    /// The object-store key to name in `POST /validations`.
    key: String,
    /// The file name it was uploaded under.
    name: FileName,
    /// Bytes stored.
    size: u64,
    /// sha256 of the bytes stored.
    sha256: Digest,
}

fn too_large(limit: u64) -> ApiError {
    ApiError::http(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the file is over the limit of {limit} bytes"),
    )
}

/// Upload a record file: the body is streamed into the object store under the upload
/// prefix, at most the record-file limit (413 over it).
#[utoipa::path(
    put,
    path = "/uploads/{name}",
    tag = "validations",
    params(("name" = FileName, Path, description = "The file's name")),
    request_body(content = Option<Vec<u8>>, content_type = "application/octet-stream", description = "The file's bytes"),
    security(("bearer" = ["validations:write"])),
    responses((status = 201, description = "Stored", body = Uploaded))
)]
async fn upload(
    State(state): State<ApiState>,
    _: Authorized<ValidationsWrite>,
    ApiPath(name): ApiPath<String>,
    request: Request,
) -> ApiResult<(StatusCode, Json<Uploaded>)> {
    let name = path_param("name", &name, FileName::new)?;
    let limit = state.engine.config().batch_limits.max_file_bytes;
    // A declared length over the limit is refused before anything is read.
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    let key = upload_key(&state, &name);
    let path = object_store::path::Path::from(key.as_str());
    let body = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(body);
    match state
        .engine
        .blobs()
        .put_stream(&path, reader, limit)
        .await?
    {
        Streamed::Stored { size, sha256 } => Ok((
            StatusCode::CREATED,
            Json(Uploaded {
                key,
                name,
                size,
                sha256,
            }),
        )),
        Streamed::TooLarge { .. } => Err(too_large(limit)),
        _ => Err(osa_core::Error::internal("an upload ended in an unknown way").into()),
    }
}

/// A presigned URL to `PUT` a record file straight into the blob store (S3, GCS,
/// Azure), bypassing this server; 404 when the store cannot sign URLs (use `PUT
/// /uploads/{name}`). The store does not bound the size: `POST /validations` refuses
/// a file over the limit.
#[utoipa::path(
    post,
    path = "/uploads/{name}/presigned",
    tag = "validations",
    params(("name" = FileName, Path, description = "The file's name")),
    security(("bearer" = ["validations:write"])),
    responses((status = 201, description = "A URL to put the file to", body = PresignedUpload))
)]
async fn presigned_upload(
    State(state): State<ApiState>,
    _: Authorized<ValidationsWrite>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<PresignedUpload>)> {
    let name = path_param("name", &name, FileName::new)?;
    let key = upload_key(&state, &name);
    let ttl = state.presigned_upload_ttl;
    let expires_at =
        chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    let url = state
        .engine
        .blobs()
        .presigned_put(&object_store::path::Path::from(key.as_str()), ttl)
        .await?
        .ok_or_else(|| {
            osa_core::Error::not_found(
                "presigned upload URLs",
                "this archive's blob store (it cannot sign URLs; use PUT /uploads/{name})",
            )
        })?;
    Ok((
        StatusCode::CREATED,
        Json(PresignedUpload {
            key,
            name,
            url: url.to_string(),
            method: "PUT",
            expires_at,
            max_bytes: state.engine.config().batch_limits.max_file_bytes,
        }),
    ))
}

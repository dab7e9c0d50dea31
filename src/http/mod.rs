//! The reference HTTP API (feature `http`): OSA's services under `/api/v1`, with
//! bearer-token auth and scope gates.
//!
//! ```no_run
//! # async fn demo(archive: osa::local::LocalArchive, auth: osa::auth::Authenticator) {
//! let app = osa::http::router(osa::http::ApiState::from_local(&archive, auth));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! Every error, including an unknown route (404), a wrong method (405), a body over
//! [`MAX_BODY_BYTES`] (413) and a malformed path segment (422), is
//! `{"code", "message", "field"?}` with the status of its kind (404, 405, 409, 413,
//! 422, 401 with `WWW-Authenticate: Bearer`, 403, 503, 500). Internal and unavailable
//! errors carry a generic message; their detail goes to the server log
//! (`tracing::error!`). Request bodies refuse unknown fields.
//!
//! A refused caller gets the published server's codes: 401 `missing_token` (no
//! `Authorization` header, or no bearer token in it), `token_expired` (the token's
//! `exp` has passed) or `invalid_token` (anything else wrong with it), 403
//! `access_denied`; those bodies also carry `detail: {code, message}`, where the
//! published CLI reads the code ([`osa_core::Error::code`]).
//!
//! The hooks' routes answer in the published server's shapes, with OSA's fields
//! beside them: `GET /hooks` is `{items: [{name, feature, live_release}]}` ordered by
//! name, `GET /hooks/{name}/releases` is `{hook_name, live_version, releases}` newest
//! version first, `POST /hooks/{name}/releases` answers the published
//! `ReleaseCreated` (with `live`), `PUT /hooks/{name}/live` answers `{hook_name,
//! live_version, live_release_id}`.
//!
//! Write routes need a scope (or the admin role); the catalogue, features and
//! provenance are public; runs, logs and deployments need a read scope. The token is
//! checked before the request body is read, so an anonymous or unauthorised request
//! is refused without buffering its body.
//!
//! Releases with a local process runtime (`"command"`) run programs as the server's
//! user, so creating one over HTTP, by a convention deploy (`POST /conventions`) or by
//! `POST /hooks/{name}/releases`, needs the admin role on top of the scope; OCI
//! releases (`"image"`) need only the scope.
//!
//! `POST /validations` takes record files from the object store only, under the
//! upload prefix ([`DEFAULT_UPLOAD_PREFIX`], see [`ApiState::with_upload_prefix`]),
//! each at most the engine's `batch_limits.max_file_bytes`. `PUT /uploads/{name}`
//! puts a file there: the body is streamed into the store (any size up to that limit,
//! never whole in memory) and the answer is `{key, name, size, sha256}`, the key to
//! name in a submission. When the blob store can sign URLs (S3, GCS, Azure), `POST
//! /uploads/{name}/presigned` hands out a URL to `PUT` the file to the store directly
//! instead (see [`ApiState::with_presigned_upload_ttl`]).
//!
//! Event streams (SSE) end when the token that opened them expires, with a last
//! `error` event (`token_expired`); at most [`DEFAULT_MAX_STREAMS`] are open at once
//! (see [`ApiState::with_max_streams`]), one more is answered 503.
//!
//! The OpenAPI document served at `{prefix}/openapi.json` is generated from the
//! handlers' annotations as the routes are registered (utoipa), with request and
//! success-response schemas; [`router_parts`] also hands it to the caller.
//!
//! Callers are resolved by a [`PrincipalResolver`]: [`BearerTokens`] (OSA's JWTs,
//! through an [`osa_core::auth::Authenticator`]) unless a host application plugs in
//! its own with [`ApiState::with_principal_resolver`].

use axum::Router;

mod conventions;
mod deployments;
mod error;
mod export;
mod extract;
mod features;
mod health;
mod hooks;
mod openapi;
mod sse;
mod state;
mod uploads;
mod validations;

pub use error::{ApiError, not_found};
pub use extract::{BearerTokens, Caller, PrincipalResolver};
pub use openapi::{ErrorBody, ErrorDetail};
pub use state::{
    ApiState, DEFAULT_MAX_STREAMS, DEFAULT_PRESIGNED_UPLOAD_TTL, DEFAULT_UPLOAD_PREFIX,
};
/// The OpenAPI document type [`router_parts`] returns (utoipa's).
pub use utoipa::openapi::OpenApi;

use error::method_not_allowed;

/// Largest request body accepted (deploy payloads, validation submissions).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest page of feature rows.
pub const MAX_PAGE: u32 = 1000;
/// Most column filters in one `GET /features/{hook}` query.
pub const MAX_FILTERS: usize = 32;

/// The API under `/api/v1`, with OSA's JSON 404 for every other path too: a whole
/// server's router. To put the API beside routes of your own, use [`router_at`].
pub fn router(state: ApiState) -> Router {
    router_at("/api/v1", state).fallback(not_found)
}

/// The API under `prefix` (such as `/api/v1` or `/archive`), for mounting in a host
/// application: paths under `prefix` that match no route get OSA's JSON 404/405,
/// every other path is left to the host (its routes and its own fallback).
///
/// ```
/// # fn demo(state: osa::http::ApiState) -> axum::Router {
/// use axum::{Router, routing::get};
///
/// let app = Router::new()
///     .route("/", get(|| async { "my archive portal" }))
///     .merge(osa::http::router_at("/osa/api", state))
///     .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not here") });
/// # app }
/// ```
///
/// The OpenAPI document (at `{prefix}/openapi.json`) names `prefix` as its server.
pub fn router_at(prefix: &str, state: ApiState) -> Router {
    router_parts(prefix, state).0
}

/// [`router_at`], with the OpenAPI document it serves (to merge into a host's own
/// document, or to write out at build time).
pub fn router_parts(prefix: &str, state: ApiState) -> (Router, OpenApi) {
    let prefix = normalise_prefix(prefix);
    let api = openapi::router()
        .merge(health::routes())
        .merge(conventions::routes())
        .merge(hooks::routes())
        .merge(uploads::routes())
        .merge(validations::routes())
        .merge(features::routes())
        .merge(export::routes())
        .merge(deployments::routes());
    let (routes, doc) = openapi::finish(api, &prefix);
    let routes = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    let router = if prefix == "/" {
        routes
    } else {
        Router::new().nest(&prefix, routes)
    };
    (router, doc)
}

/// `/api/v1/` and `api/v1` are `/api/v1`; an empty prefix is `/`.
fn normalise_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    format!("/{trimmed}")
}

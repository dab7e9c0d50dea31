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
//! each at most the engine's `batch_limits.max_file_bytes`.
//!
//! Event streams (SSE) end when the token that opened them expires, with a last
//! `error` event (`unauthenticated`); at most [`DEFAULT_MAX_STREAMS`] are open at once
//! (see [`ApiState::with_max_streams`]), one more is answered 503.
//!
//! The route table [`ROUTES`] is the source of the OpenAPI document served at
//! `/api/v1/openapi.json`.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore as _;
use osa_core::auth::{Authenticator, Principal, Role, Scope};
use osa_core::convention::ConventionStore;
use osa_core::deploy::{
    DeployConvention, Deployer, DeploymentFilter, DeploymentLog, DeploymentStatus, ReleaseRequest,
    SetLiveRequest, parse_payload,
};
use osa_core::feature::store::{ColumnFilter, FeatureQuery, FeatureStore};
use osa_core::feature::{Cardinality, FeatureSpec, FeatureValue};
use osa_core::id::{
    ColumnName, ConventionSlug, DeploymentId, HookName, HookRunId, RecordId, ValidationRunId,
};
use osa_core::registry::HookRegistry;
use osa_core::saga::Engine;
use osa_core::validation::{FileSource, SubmitValidation, ValidationService};
use osa_core::{Error, ErrorKind};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Largest request body accepted (deploy payloads, validation submissions).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest page of feature rows.
pub const MAX_PAGE: u32 = 1000;
/// Most column filters in one `GET /features/{hook}` query.
pub const MAX_FILTERS: usize = 32;
/// The object-store prefix `POST /validations` takes record files from by default.
pub const DEFAULT_UPLOAD_PREFIX: &str = "uploads/";

/// The reads the API needs besides the engine and the deployer.
pub trait ApiStorage: HookRegistry + ConventionStore + FeatureStore + DeploymentLog {}
impl<T: HookRegistry + ConventionStore + FeatureStore + DeploymentLog> ApiStorage for T {}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    engine: Engine,
    deployer: Deployer,
    storage: Arc<dyn ApiStorage>,
    auth: Arc<Authenticator>,
    /// Normalised: no leading `/`, ends with one `/`.
    upload_prefix: String,
    /// Set once by [`ApiState::close_streams`]; every event stream ends when it is.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// One permit per open event stream.
    streams: Arc<tokio::sync::Semaphore>,
    max_streams: usize,
    /// How often deployment event streams look for new events (validation event
    /// streams follow the engine's `event_poll`).
    pub stream_poll: Duration,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("upload_prefix", &self.upload_prefix)
            .field("stream_poll", &self.stream_poll)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State over any storage backend.
    pub fn new<S: ApiStorage + 'static>(
        engine: Engine,
        deployer: Deployer,
        storage: Arc<S>,
        auth: Authenticator,
    ) -> Self {
        ApiState {
            engine,
            deployer,
            storage,
            auth: Arc::new(auth),
            upload_prefix: DEFAULT_UPLOAD_PREFIX.to_string(),
            closing: Arc::new(tokio::sync::watch::channel(false).0),
            streams: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_STREAMS)),
            max_streams: DEFAULT_MAX_STREAMS,
            stream_poll: Duration::from_millis(250),
        }
    }

    /// At most `max` event streams open at once (default [`DEFAULT_MAX_STREAMS`]; a
    /// `max` above what a semaphore holds counts as that); one more is answered `503
    /// unavailable`. Each open stream polls the store.
    pub fn with_max_streams(mut self, max: usize) -> Self {
        let max = max.min(tokio::sync::Semaphore::MAX_PERMITS);
        self.streams = Arc::new(tokio::sync::Semaphore::new(max));
        self.max_streams = max;
        self
    }

    /// A place for one more event stream of `principal`, or 503.
    fn open_stream(&self, principal: &Principal) -> ApiResult<StreamTicket> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            ApiError::http(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Unavailable.as_str(),
                format!(
                    "{} event streams are open, as many as this server allows; try again later",
                    self.max_streams
                ),
            )
        })?;
        Ok(StreamTicket {
            _permit: permit,
            expires_at: principal.expires_at,
            closed: Box::pin(self.streams_closed()),
        })
    }

    /// Ends every event stream, open or opened later (each ends after the events it
    /// has sent). A server calls this when it shuts down: a graceful shutdown waits for
    /// open connections, and a stream of a run that never ends would keep it waiting.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`close_streams`](Self::close_streams) is called.
    fn streams_closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            // An error means every sender is gone: nothing can close streams any more.
            if closing.wait_for(|closing| *closing).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// State over an embedded archive.
    #[cfg(feature = "sqlite")]
    pub fn from_local(archive: &crate::local::LocalArchive, auth: Authenticator) -> Self {
        Self::new(
            archive.engine().clone(),
            archive.deployer().clone(),
            archive.storage().clone(),
            auth,
        )
    }

    /// Takes record files of `POST /validations` from keys under `prefix` (one or more
    /// `/`-separated segments, such as `uploads` or `incoming/public`) instead of
    /// [`DEFAULT_UPLOAD_PREFIX`]. Invalid for an empty prefix, an empty, `.` or `..`
    /// segment, or a character the object store would escape.
    pub fn with_upload_prefix(mut self, prefix: &str) -> osa_core::Result<Self> {
        let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
        let bad = |message: &str| Err(Error::invalid("upload_prefix", message));
        if trimmed.is_empty() {
            return bad("must not be empty");
        }
        if trimmed
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return bad("every segment must be non-empty and neither `.` nor `..`");
        }
        if object_store::path::Path::from(trimmed).as_ref() != trimmed {
            return bad("contains a character the object store escapes");
        }
        self.upload_prefix = format!("{trimmed}/");
        Ok(self)
    }

    /// The prefix record files of `POST /validations` must be under (ends with `/`).
    pub fn upload_prefix(&self) -> &str {
        &self.upload_prefix
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// Any valid token.
    Authenticated,
    /// A token with this scope, or an admin.
    Scope(Scope),
}

/// One route of the API: method, path (axum syntax), access and a summary.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path under the API root, with `{param}` segments.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What it does.
    pub summary: &'static str,
}

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        access,
        summary,
    }
}

use Access::Public;
const fn scope(s: Scope) -> Access {
    Access::Scope(s)
}

/// Every route, as served and as documented.
pub const ROUTES: &[Route] = &[
    route("GET", "/health", Public, "Liveness"),
    route(
        "GET",
        "/auth/me",
        Access::Authenticated,
        "The caller: subject, issuer, roles and scopes (what `osa deploy` checks first)",
    ),
    route(
        "GET",
        "/openapi.json",
        Public,
        "This API's OpenAPI document",
    ),
    route(
        "POST",
        "/conventions",
        scope(Scope::ConventionsWrite),
        "Deploy a convention (audited); a hook release with a local process runtime (`command`) needs the admin role",
    ),
    route("GET", "/conventions", Public, "List conventions"),
    route("GET", "/conventions/{slug}", Public, "One convention"),
    route(
        "GET",
        "/hooks",
        Public,
        "List hooks with their live release",
    ),
    route("GET", "/hooks/{name}/releases", Public, "A hook's releases"),
    route(
        "GET",
        "/hooks/{name}/releases/{version}",
        Public,
        "One release",
    ),
    route(
        "POST",
        "/hooks/{name}/releases",
        scope(Scope::HooksWrite),
        "Create a release (201 new, 200 existing digest); a local process runtime (`command`) needs the admin role",
    ),
    route(
        "PUT",
        "/hooks/{name}/live",
        scope(Scope::HooksWrite),
        "Move the live pointer (rollback or pin)",
    ),
    route(
        "GET",
        "/hooks/runs/{id}",
        scope(Scope::RunsRead),
        "One hook run",
    ),
    route(
        "GET",
        "/hooks/runs/{id}/logs",
        scope(Scope::RunsRead),
        "A hook run's captured log",
    ),
    route(
        "POST",
        "/validations",
        scope(Scope::ValidationsWrite),
        "Submit records for validation (files as object-store keys under the upload prefix)",
    ),
    route(
        "GET",
        "/validations/{id}",
        scope(Scope::RunsRead),
        "A run's status, steps and verdicts",
    ),
    route(
        "POST",
        "/validations/{id}/cancel",
        scope(Scope::ValidationsWrite),
        "Cancel a run: a hook running for it is stopped; `cancelled` is false when it had already ended",
    ),
    route(
        "GET",
        "/validations/{id}/events",
        scope(Scope::RunsRead),
        "A run's events (SSE: replay, then live; ends when the token expires)",
    ),
    route(
        "GET",
        "/features/{hook}",
        Public,
        "A hook's feature rows (filters, keyset pages, JSON or CSV)",
    ),
    route(
        "GET",
        "/features/{hook}/{row}/provenance",
        Public,
        "Where a feature row came from",
    ),
    route(
        "GET",
        "/deployments",
        scope(Scope::DeploymentsRead),
        "List deployments",
    ),
    route(
        "GET",
        "/deployments/{id}",
        scope(Scope::DeploymentsRead),
        "One deployment",
    ),
    route(
        "GET",
        "/deployments/{id}/events",
        scope(Scope::DeploymentsRead),
        "A deployment's events (SSE: replay, then live; ends when the token expires)",
    ),
];

/// The API under `/api/v1`.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/auth/me", get(me))
        .route("/openapi.json", get(openapi))
        .route(
            "/conventions",
            post(deploy_convention).get(list_conventions),
        )
        .route("/conventions/{slug}", get(get_convention))
        .route("/hooks", get(list_hooks))
        .route(
            "/hooks/{name}/releases",
            get(list_releases).post(create_release),
        )
        .route("/hooks/{name}/releases/{version}", get(get_release))
        .route("/hooks/{name}/live", put(set_live))
        .route("/hooks/runs/{id}", get(get_hook_run))
        .route("/hooks/runs/{id}/logs", get(get_hook_log))
        .route("/validations", post(submit_validation))
        .route("/validations/{id}", get(get_validation))
        .route("/validations/{id}/cancel", post(cancel_validation))
        .route("/validations/{id}/events", get(validation_events))
        .route("/features/{hook}", get(list_features))
        .route("/features/{hook}/{row}/provenance", get(provenance))
        .route("/deployments", get(list_deployments))
        .route("/deployments/{id}", get(get_deployment))
        .route("/deployments/{id}/events", get(deployment_events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    Router::new().nest("/api/v1", api).fallback(not_found)
}

// Errors ------------------------------------------------------------------------------

/// An error response: `{"code", "message", "field"?}`.
///
/// Internal and unavailable errors are answered with a generic message; their detail
/// is logged (`tracing::error!`) and never sent to the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

/// The message an error shows a caller: its own text for errors about the request,
/// a generic one (with the detail logged) for faults of the server or its
/// dependencies.
fn public_message(error: &Error) -> String {
    match error.kind() {
        ErrorKind::Unavailable => {
            tracing::error!(code = error.kind().as_str(), error = %error, "dependency unavailable");
        }
        ErrorKind::Internal => {
            tracing::error!(code = error.kind().as_str(), error = %error, "internal error");
        }
        _ => {}
    }
    error.public_message()
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let kind = e.kind();
        let status = match kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            code: kind.as_str(),
            message: public_message(&e),
            field: e.field().map(str::to_string),
        }
    }
}

impl ApiError {
    /// An error of the HTTP layer itself (no [`ErrorKind`] of its own).
    fn http(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::invalid(field, message).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn not_found() -> ApiError {
    Error::not_found("route", "this path").into()
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::http(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route does not accept {method} (see the `Allow` header)"),
    )
}

/// Parses a path segment; a bad one is 422 naming the parameter.
fn path_param<'a, T, E: std::fmt::Display>(
    name: &str,
    value: &'a str,
    parse: impl FnOnce(&'a str) -> Result<T, E>,
) -> ApiResult<T> {
    parse(value).map_err(|e| ApiError::invalid(name, e.to_string()))
}

// Extractors --------------------------------------------------------------------------

/// Path parameters; a segment that does not decode (such as invalid UTF-8) is 422
/// naming the parameter.
struct ApiPath<T>(T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        use axum::extract::path::ErrorKind as PathErrorKind;
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let message = e.body_text();
                Err(match e.into_kind() {
                    PathErrorKind::InvalidUtf8InPathParam { key } => {
                        ApiError::invalid(key, "not valid UTF-8")
                    }
                    PathErrorKind::ParseErrorAtKey { key, .. } => ApiError::invalid(key, message),
                    _ => ApiError::invalid("path", message),
                })
            }
            Err(other) => {
                Err(Error::internal(format!("path parameters: {}", other.body_text())).into())
            }
        }
    }
}

/// The raw request body, at most [`MAX_BODY_BYTES`]; over the limit is 413.
struct Body(Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|rejection: BytesRejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::http(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the request body is over the limit of {MAX_BODY_BYTES} bytes"),
                    )
                } else {
                    ApiError::http(rejection.status(), "bad_request", rejection.body_text())
                }
            })
    }
}

// Auth --------------------------------------------------------------------------------

/// The caller: the principal of a valid bearer token, or anonymous. A token that is
/// present but invalid is refused (401) rather than treated as anonymous. The scheme
/// (`Bearer`) is matched case-insensitively.
#[derive(Debug, Clone)]
pub struct Caller(pub Option<Principal>);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(Caller(None));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::from(Error::Unauthenticated {
                    reason: "the Authorization header must be `Bearer <token>`".into(),
                })
            })?;
        Ok(Caller(Some(state.auth.verify(token)?)))
    }
}

/// A scope a route requires.
trait Gate {
    const SCOPE: Scope;
}

macro_rules! gates {
    ($($name:ident),*) => {$(
        struct $name;
        impl Gate for $name {
            const SCOPE: Scope = Scope::$name;
        }
    )*};
}
gates!(
    ConventionsWrite,
    HooksWrite,
    ValidationsWrite,
    DeploymentsRead,
    RunsRead
);

/// A caller that passed `G`'s scope gate: 401 without a token, 403 without the scope
/// (or the admin role). It only reads the headers, so a request it refuses never has
/// its body read.
struct Authorized<G>(Principal, PhantomData<G>);

impl<G: Gate> FromRequestParts<ApiState> for Authorized<G> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        let principal = principal.ok_or_else(|| {
            ApiError::from(Error::Unauthenticated {
                reason: format!("this route needs a bearer token with scope {}", G::SCOPE),
            })
        })?;
        principal.require(G::SCOPE)?;
        Ok(Authorized(principal, PhantomData))
    }
}

/// Refuses a local process runtime to a non-admin: such a release runs a program of
/// the caller's choosing as the server's user.
fn require_admin_for_process(principal: &Principal, process: bool) -> ApiResult<()> {
    if process && !principal.has_role(Role::Admin) {
        return Err(Error::Forbidden {
            reason: format!(
                "{} may not create a release with a local process runtime (`command`): it \
                 would run a program as the server's user, which needs the admin role; \
                 an OCI release (`image`) needs only the scope",
                principal.subject
            ),
        }
        .into());
    }
    Ok(())
}

// Handlers ----------------------------------------------------------------------------

async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// The caller's identity. `external_id` and `display_name` are the fields the
/// published SDK shows after its pre-flight check.
async fn me(Caller(principal): Caller) -> ApiResult<Json<Value>> {
    let principal = principal.ok_or_else(|| {
        ApiError::from(Error::Unauthenticated {
            reason: "this route needs a bearer token".into(),
        })
    })?;
    let scopes: Vec<&str> = principal.scopes.iter().map(|s| s.as_str()).collect();
    Ok(Json(json!({
        "subject": principal.subject,
        "issuer": principal.issuer,
        "external_id": principal.subject,
        "display_name": null,
        "roles": principal.roles,
        "scopes": scopes,
    })))
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// Moves a standalone JSON Schema (with its own `$defs`) under
/// `#/components/schemas/{name}`, its definitions beside it, and rewrites every
/// `$ref` to point there.
fn add_component(schemas: &mut serde_json::Map<String, Value>, name: &str, mut schema: Value) {
    fn rewrite(value: &mut Value, root: &str) {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match (key.as_str(), child) {
                        ("$ref", Value::String(target)) => {
                            *target = if let Some(def) = target.strip_prefix("#/$defs/") {
                                format!("#/components/schemas/{def}")
                            } else if target == "#" {
                                format!("#/components/schemas/{root}")
                            } else if let Some(inner) = target.strip_prefix("#/") {
                                format!("#/components/schemas/{root}/{inner}")
                            } else {
                                target.clone()
                            };
                        }
                        (_, child) => rewrite(child, root),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, root)),
            _ => {}
        }
    }
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        if let Some(Value::Object(defs)) = object.remove("$defs") {
            for (def_name, mut def) in defs {
                rewrite(&mut def, name);
                let existing = schemas.entry(def_name).or_insert_with(|| def.clone());
                debug_assert_eq!(existing, &def, "two payloads define a schema differently");
            }
        }
    }
    rewrite(&mut schema, name);
    schemas.insert(name.to_string(), schema);
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// The query parameters of a route, as documented.
fn query_params(method: &str, path: &str) -> Vec<Value> {
    let limit = |default: u32| json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": default});
    match (method, path) {
        ("GET", "/features/{hook}") => vec![
            query_param(
                "record_id",
                "Only rows of this record",
                json!({"type": "string"}),
            ),
            query_param(
                "run_id",
                "Only rows of this hook run",
                json!({"type": "string", "format": "uuid"}),
            ),
            query_param(
                "after",
                "Keyset cursor: `next_after` of the previous page",
                json!({"type": "integer"}),
            ),
            query_param("limit", "Page size", limit(100)),
            query_param(
                "format",
                "Response format",
                json!({"type": "string", "enum": ["json", "csv"], "default": "json"}),
            ),
            json!({
                "name": "filters",
                "in": "query",
                "required": false,
                "style": "form",
                "explode": true,
                "description": format!(
                    "Column filters, combined with AND: `eq.<col>=v`, `gte.<col>=v`, \
                     `lte.<col>=v` (the value coerced to the column's type) and \
                     `null.<col>=` or `=true` (is null), `null.<col>=false` (is not null); \
                     at most {MAX_FILTERS}, each operator and column once"
                ),
                "schema": {"type": "object", "additionalProperties": {"type": "string"}},
            }),
        ],
        ("GET", "/deployments") => vec![
            query_param(
                "target",
                "Only this convention slug or hook name",
                json!({"type": "string"}),
            ),
            query_param(
                "status",
                "Only this status",
                json!({"type": "string", "enum": ["pending", "applying", "succeeded", "failed"]}),
            ),
            query_param(
                "since",
                "Only created at or after",
                json!({"type": "string", "format": "date-time"}),
            ),
            query_param(
                "until",
                "Only created before",
                json!({"type": "string", "format": "date-time"}),
            ),
            query_param(
                "before",
                "Keyset cursor: the id of the last deployment of the previous page",
                json!({"type": "string", "format": "uuid"}),
            ),
            query_param("limit", "Page size", limit(50)),
        ],
        _ => Vec::new(),
    }
}

/// The OpenAPI 3.1 document of [`ROUTES`], with the deploy payload schemas and the
/// error shape under `#/components/schemas`.
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let mut parameters: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(query_params(r.method, r.path));
        let mut operation = json!({
            "summary": r.summary,
            "parameters": parameters,
            "responses": {"default": {
                "description": "An error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }},
        });
        match r.access {
            Access::Public => {}
            Access::Authenticated => operation["security"] = json!([{"bearer": []}]),
            Access::Scope(s) => operation["security"] = json!([{"bearer": [s.as_str()]}]),
        }
        let schema_ref = match (r.method, r.path) {
            ("POST", "/conventions") => Some("DeployConvention"),
            ("POST", "/hooks/{name}/releases") => Some("ReleaseRequest"),
            ("PUT", "/hooks/{name}/live") => Some("SetLiveRequest"),
            _ => None,
        };
        if let Some(name) = schema_ref {
            operation["requestBody"] = json!({"required": true, "content": {"application/json":
                {"schema": {"$ref": format!("#/components/schemas/{name}")}}}});
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method.to_lowercase()] = operation;
    }
    let mut schemas = serde_json::Map::new();
    for (name, schema) in osa_core::deploy::payload_schemas() {
        add_component(&mut schemas, name, schema);
    }
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "The kind of error (`not_found`, `invalid`, ...)"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "Path of the offending input value"},
            },
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "OSA", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
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

async fn list_hooks(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.storage.list_hooks().await?)))
}

/// The registered hook named by the path parameter `field`.
async fn known_hook(state: &ApiState, field: &str, name: &str) -> ApiResult<osa_core::hook::Hook> {
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
fn hook_run_json(run: &osa_core::hook::HookRun) -> Value {
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

/// The body of `POST /validations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    convention: ConventionSlug,
    records: Vec<osa_core::validation::InputRecord>,
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
                FileSource::Local { .. } => {
                    return Err(ApiError::invalid(
                        field,
                        "only object-store keys (`{\"source\": \"object\", \"key\"}`) are accepted over HTTP",
                    ));
                }
                FileSource::Object { key } => {
                    let field = format!("{field}.key");
                    let path = upload_path(&state.upload_prefix, key)
                        .map_err(|message| ApiError::invalid(&field, message))?;
                    objects.push((field, path));
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

async fn submit_validation(
    State(state): State<ApiState>,
    _: Authorized<ValidationsWrite>,
    Body(body): Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body: SubmitBody = parse_payload(&body)?;
    check_submitted_files(&state, &body).await?;
    let run = state
        .engine
        .submit(SubmitValidation {
            convention: body.convention,
            records: body.records,
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"id": run}))))
}

async fn get_validation(
    State(state): State<ApiState>,
    _: Authorized<RunsRead>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let id = path_param("id", &id, str::parse::<ValidationRunId>)?;
    Ok(Json(json!(state.engine.get(id).await?)))
}

async fn cancel_validation(
    State(state): State<ApiState>,
    _: Authorized<ValidationsWrite>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let id = path_param("id", &id, str::parse::<ValidationRunId>)?;
    let cancelled = state.engine.cancel(id).await?;
    let status = match cancelled {
        true => osa_core::validation::RunStatus::Cancelled,
        // It had ended already: say how.
        false => state.engine.get(id).await?.run.status,
    };
    Ok(Json(
        json!({"id": id, "cancelled": cancelled, "status": status}),
    ))
}

/// Event streams open at once, by default.
pub const DEFAULT_MAX_STREAMS: usize = 256;

/// What an open event stream holds: its place among the open streams, the expiry of
/// the token that opened it, and the server's close signal.
struct StreamTicket {
    _permit: tokio::sync::OwnedSemaphorePermit,
    expires_at: chrono::DateTime<chrono::Utc>,
    closed: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// The `error` event of a stream, `{code, message}` (a generic message for faults of
/// the server, as in error responses).
fn sse_error(error: &Error) -> Event {
    Event::default()
        .event("error")
        .data(json!({"code": error.kind().as_str(), "message": public_message(error)}).to_string())
}

/// An SSE response of `stream`, ended early when the server closes its streams, or
/// when the token that opened it expires (with a last `error` event saying so: a token
/// is checked once, so a stream must not outlive it).
fn sse<S, T>(
    stream: S,
    ticket: StreamTicket,
) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>>
where
    S: futures::Stream<Item = osa_core::Result<T>> + Send + 'static,
    T: serde::Serialize,
{
    let StreamTicket {
        _permit: permit,
        expires_at,
        closed,
    } = ticket;
    let until_expiry = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = {
        let expired = expired.clone();
        async move {
            tokio::select! {
                () = closed => {}
                () = tokio::time::sleep(until_expiry) => {
                    expired.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    };
    let last = futures::stream::once(async move {
        // Held until the stream ends or is dropped.
        drop(permit);
        expired.load(std::sync::atomic::Ordering::SeqCst).then(|| {
            sse_error(&Error::Unauthenticated {
                reason: "the token that opened this stream expired; open it again with \
                             a fresh token"
                    .into(),
            })
        })
    })
    .filter_map(|event| async move { event });
    let events = stream
        .take_until(stop)
        .map(|item| match item {
            Ok(value) => Event::default().json_data(value).unwrap_or_else(|e| {
                sse_error(&Error::internal(format!("serialising an event: {e}")))
            }),
            Err(e) => sse_error(&e),
        })
        .chain(last)
        .map(Ok);
    Sse::new(events).keep_alive(KeepAlive::default())
}

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

/// The parameters of `GET /features/{hook}` other than column filters.
const FEATURE_PARAMS: [&str; 5] = ["record_id", "run_id", "after", "limit", "format"];

/// Query of `GET /features/{hook}`: `record_id`, `run_id`, `after`, `limit`,
/// `format` (`json` or `csv`), and up to [`MAX_FILTERS`] column filters `eq.<col>`,
/// `gte.<col>`, `lte.<col>`, `null.<col>` (empty or `true`: is null; `false`: is not
/// null). A parameter given twice is refused.
async fn list_features(
    State(state): State<ApiState>,
    ApiPath(hook): ApiPath<String>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(params) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let filters = params
        .iter()
        .filter(|(key, _)| !FEATURE_PARAMS.contains(&key.as_str()))
        .count();
    if filters > MAX_FILTERS {
        return Err(ApiError::invalid(
            "filters",
            format!("at most {MAX_FILTERS} column filters per query, got {filters}"),
        ));
    }
    let mut seen = HashSet::new();
    if let Some((key, _)) = params.iter().find(|(key, _)| !seen.insert(key.as_str())) {
        return Err(ApiError::invalid(
            key,
            "given more than once (give each parameter, and each operator and column, once)",
        ));
    }
    let hook = known_hook(&state, "hook", &hook).await?;
    let columns = hook.identity.feature.columns().to_vec();
    let mut query = FeatureQuery {
        limit: 100,
        ..FeatureQuery::default()
    };
    let mut csv = false;
    for (key, value) in &params {
        match key.as_str() {
            "record_id" => query.record_id = Some(path_param(key, value, RecordId::new)?),
            "run_id" => query.run_id = Some(path_param(key, value, str::parse::<HookRunId>)?),
            "after" => query.after = Some(path_param(key, value, str::parse::<i64>)?),
            "limit" => {
                let limit: u32 = path_param(key, value, str::parse)?;
                if limit == 0 || limit > MAX_PAGE {
                    return Err(ApiError::invalid(
                        "limit",
                        format!("must be 1..={MAX_PAGE}"),
                    ));
                }
                query.limit = limit;
            }
            "format" => {
                csv = match value.as_str() {
                    "json" => false,
                    "csv" => true,
                    _ => return Err(ApiError::invalid("format", "`json` or `csv`")),
                }
            }
            other => query.filters.push(column_filter(&columns, other, value)?),
        }
    }
    let page = state.storage.rows(&hook.identity.name, &query).await?;
    if csv {
        return Ok((
            [(CONTENT_TYPE, "text/csv; charset=utf-8")],
            features_csv(&columns, &page.rows),
        )
            .into_response());
    }
    Ok(Json(page.to_keyed_json(&columns)).into_response())
}

/// A filter `op.column=value`, the value coerced to the column's type.
fn column_filter(
    columns: &[osa_core::feature::ColumnDef],
    key: &str,
    value: &str,
) -> ApiResult<ColumnFilter> {
    let (op, column) = key.split_once('.').ok_or_else(|| {
        ApiError::from(Error::invalid(
            key,
            "unknown parameter (record_id, run_id, after, limit, format, eq.<col>, gte.<col>, lte.<col>, null.<col>)",
        ))
    })?;
    let name = path_param(key, column, ColumnName::new)?;
    let def = columns
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| ApiError::from(Error::invalid(key, format!("no column `{name}`"))))?;
    if op == "null" {
        return match value {
            "" | "true" => Ok(ColumnFilter::IsNull(name)),
            "false" => Ok(ColumnFilter::IsNotNull(name)),
            _ => Err(ApiError::invalid(
                key,
                "give true (the column is null) or false (it is not)",
            )),
        };
    }
    // Numbers and booleans are written bare in a query string; parse them as JSON.
    let raw = serde_json::from_str::<Value>(value)
        .ok()
        .filter(|v| v.is_number() || v.is_boolean())
        .unwrap_or_else(|| Value::String(value.to_string()));
    let mut one = def.clone();
    one.required = true;
    let typed: FeatureValue = FeatureSpec::table(Cardinality::One, vec![one])?
        .coerce_row(&[(name.to_string(), raw)].into_iter().collect())
        .map_err(|e| ApiError::invalid(key, e.to_string()))?
        .remove(0);
    Ok(match op {
        "eq" => ColumnFilter::Eq(name, typed),
        "gte" => ColumnFilter::Gte(name, typed),
        "lte" => ColumnFilter::Lte(name, typed),
        _ => {
            return Err(ApiError::from(Error::invalid(
                key,
                format!("unknown operator `{op}` (eq, gte, lte, null)"),
            )));
        }
    })
}

/// RFC 4180 CSV: system columns, then data columns; JSON values as compact JSON.
fn features_csv(
    columns: &[osa_core::feature::ColumnDef],
    rows: &[osa_core::feature::store::FeatureRow],
) -> String {
    fn cell(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    let mut out = String::from("id,record_id,run_id,row_index");
    for c in columns {
        out.push(',');
        out.push_str(&cell(c.name.as_str()));
    }
    out.push_str("\r\n");
    for row in rows {
        out.push_str(&format!(
            "{},{},{},{}",
            row.id,
            cell(row.record_id.as_str()),
            row.run_id,
            row.row_index
        ));
        for v in &row.values {
            out.push(',');
            let text = match v.to_json() {
                Value::Null => String::new(),
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.push_str(&cell(&text));
        }
        out.push_str("\r\n");
    }
    out
}

async fn provenance(
    State(state): State<ApiState>,
    ApiPath((hook, row)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let hook = known_hook(&state, "hook", &hook).await?;
    let row: i64 = path_param("row", &row, str::parse)?;
    let p = state.engine.provenance(&hook.identity.name, row).await?;
    Ok(Json(json!({
        "hook": p.hook,
        "row": p.row.to_keyed_json(hook.identity.feature.columns()),
        "run": hook_run_json(&p.run),
        "release": p.release,
    })))
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn server_faults_do_not_leak_their_detail() {
        let secret = "/srv/osa/archive.db: SELECT * FROM hook_runs";
        let internal = ApiError::from(Error::internal(secret)).into_response();
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let text = body_text(internal).await;
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["code"], "internal");
        assert!(!text.contains("/srv/osa"), "{text}");

        let unavailable = ApiError::from(Error::Unavailable {
            what: "database",
            detail: secret.into(),
            source: None,
        })
        .into_response();
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = body_text(unavailable).await;
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["code"],
            "unavailable"
        );
        assert!(!text.contains("SELECT"), "{text}");

        // Errors about the request keep their message.
        let invalid =
            body_text(ApiError::from(Error::invalid("limit", "must be 1..=9")).into_response())
                .await;
        assert!(invalid.contains("must be 1..=9"), "{invalid}");

        // The same in event streams.
        let stream = futures::stream::iter([Ok(json!({"seq": 1})), Err(Error::internal(secret))]);
        let ticket = StreamTicket {
            _permit: Arc::new(tokio::sync::Semaphore::new(1))
                .try_acquire_owned()
                .unwrap(),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            closed: Box::pin(std::future::pending()),
        };
        let text = body_text(sse(stream, ticket).into_response()).await;
        assert!(text.contains("event: error"), "{text}");
        assert!(text.contains("\"code\":\"internal\""), "{text}");
        assert!(!text.contains("/srv/osa"), "{text}");
    }

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

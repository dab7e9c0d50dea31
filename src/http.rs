//! The reference HTTP API (feature `http`): OSA's services under `/api/v1`, with
//! bearer-token auth and scope gates (DESIGN §11–§12).
//!
//! ```no_run
//! # async fn demo(archive: osa::local::LocalArchive, auth: osa::auth::Authenticator) {
//! let app = osa::http::router(osa::http::ApiState::from_local(&archive, auth));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! Errors are `{"code", "message", "field"?}` with the status of their kind (404, 409,
//! 422 for invalid input including a malformed path identifier, 401 with
//! `WWW-Authenticate: Bearer`, 403, 503, 500). Request bodies refuse unknown fields.
//! Write routes need a scope (or the admin role); the catalogue, features and
//! provenance are public; runs, logs and deployments need a read scope. The route
//! table [`ROUTES`] is the source of the OpenAPI document served at
//! `/api/v1/openapi.json`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::StreamExt;
use osa_core::auth::{Authenticator, Principal, Scope};
use osa_core::convention::ConventionStore;
use osa_core::deploy::{
    Deployer, DeploymentFilter, DeploymentLog, DeploymentStatus, SetLiveRequest, parse_payload,
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
use serde_json::{Value, json};

/// Largest request body accepted (deploy payloads, validation submissions).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest page of feature rows.
pub const MAX_PAGE: u32 = 1000;

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
    /// How often event streams look for new events.
    pub stream_poll: Duration,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
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
            stream_poll: Duration::from_millis(250),
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
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
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
        "/openapi.json",
        Public,
        "This API's OpenAPI document",
    ),
    route(
        "POST",
        "/conventions",
        scope(Scope::ConventionsWrite),
        "Deploy a convention (audited)",
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
        "Create a release (201 new, 200 existing digest)",
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
        "Submit records for validation",
    ),
    route(
        "GET",
        "/validations/{id}",
        scope(Scope::RunsRead),
        "A run's status, steps and verdicts",
    ),
    route(
        "GET",
        "/validations/{id}/events",
        scope(Scope::RunsRead),
        "A run's events (SSE: replay, then live)",
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
        "A deployment's events (SSE: replay, then live)",
    ),
];

/// The API under `/api/v1`.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
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
        .route("/validations/{id}/events", get(validation_events))
        .route("/features/{hook}", get(list_features))
        .route("/features/{hook}/{row}/provenance", get(provenance))
        .route("/deployments", get(list_deployments))
        .route("/deployments/{id}", get(get_deployment))
        .route("/deployments/{id}/events", get(deployment_events))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    Router::new().nest("/api/v1", api)
}

// Errors ------------------------------------------------------------------------------

/// An error response: `{"code", "message", "field"?}`.
#[derive(Debug)]
pub struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.0.kind();
        let status = match kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut body = json!({"code": kind.as_str(), "message": self.0.to_string()});
        if let Some(field) = self.0.field() {
            body["field"] = json!(field);
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn not_found() -> ApiError {
    ApiError(Error::not_found("route", "this path"))
}

/// Parses a path segment; a bad one is 422 naming the parameter.
fn path_param<'a, T, E: std::fmt::Display>(
    name: &str,
    value: &'a str,
    parse: impl FnOnce(&'a str) -> Result<T, E>,
) -> ApiResult<T> {
    parse(value).map_err(|e| ApiError(Error::invalid(name, e.to_string())))
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    Ok(parse_payload(body)?)
}

// Auth --------------------------------------------------------------------------------

/// The caller: the principal of a valid bearer token, or anonymous. A token that is
/// present but invalid is refused (401) rather than treated as anonymous.
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
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError(Error::Unauthenticated {
                    reason: "the Authorization header must be `Bearer <token>`".into(),
                })
            })?;
        Ok(Caller(Some(state.auth.verify(token.trim())?)))
    }
}

impl Caller {
    /// The principal when it passes `scope`'s gate: 401 without a token, 403 without
    /// the scope (or the admin role).
    fn require(&self, scope: Scope) -> ApiResult<&Principal> {
        let principal = self.0.as_ref().ok_or_else(|| {
            ApiError(Error::Unauthenticated {
                reason: format!("this route needs a bearer token with scope {scope}"),
            })
        })?;
        principal.require(scope)?;
        Ok(principal)
    }
}

// Handlers ----------------------------------------------------------------------------

async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// The OpenAPI 3.1 document of [`ROUTES`], with the deploy payload schemas.
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let parameters: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut operation = json!({
            "summary": r.summary,
            "parameters": parameters,
            "responses": {"default": {"description": "`{code, message, field?}` on error"}},
        });
        if let Access::Scope(s) = r.access {
            operation["security"] = json!([{"bearer": [s.as_str()]}]);
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
    let schemas: serde_json::Map<String, Value> = osa_core::deploy::payload_schemas()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
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

async fn deploy_convention(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let principal = caller.require(Scope::ConventionsWrite)?;
    let outcome = state.deployer.deploy(&body, &principal.subject).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "deployment": outcome.deployment,
            "convention": outcome.applied.convention,
            "releases": outcome.applied.releases,
        })),
    ))
}

async fn list_conventions(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.storage.list_conventions().await?)))
}

async fn get_convention(
    State(state): State<ApiState>,
    Path(slug): Path<String>,
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

async fn known_hook(state: &ApiState, name: &str) -> ApiResult<osa_core::hook::Hook> {
    let name = path_param("name", name, HookName::new)?;
    Ok(state
        .storage
        .get_hook(&name)
        .await?
        .ok_or_else(|| Error::not_found("hook", &name))?)
}

async fn list_releases(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let hook = known_hook(&state, &name).await?;
    Ok(Json(json!(
        state.storage.list_releases(&hook.identity.name).await?
    )))
}

async fn get_release(
    State(state): State<ApiState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let hook = known_hook(&state, &name).await?;
    let version: u32 = path_param("version", &version, str::parse)?;
    let release = state
        .storage
        .list_releases(&hook.identity.name)
        .await?
        .into_iter()
        .find(|r| r.version == version)
        .ok_or_else(|| Error::not_found("release", format!("{}/v{version}", hook.identity.name)))?;
    Ok(Json(json!(release)))
}

async fn create_release(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let principal = caller.require(Scope::HooksWrite)?;
    let name = path_param("name", &name, HookName::new)?;
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
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let principal = caller.require(Scope::HooksWrite)?;
    let name = path_param("name", &name, HookName::new)?;
    let request: SetLiveRequest = json_body(&body)?;
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
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::RunsRead)?;
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
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Scope::RunsRead)?;
    let id = path_param("id", &id, str::parse::<HookRunId>)?;
    let log = state.engine.hook_log(id).await?;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}

/// The body of `POST /validations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    convention: ConventionSlug,
    records: Vec<osa_core::validation::InputRecord>,
}

async fn submit_validation(
    State(state): State<ApiState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require(Scope::ValidationsWrite)?;
    let body: SubmitBody = json_body(&body)?;
    // Over HTTP, files come from the object store only: a local path would let a
    // caller read the server's files.
    for (i, record) in body.records.iter().enumerate() {
        for (j, file) in record.files.iter().enumerate() {
            if matches!(file.source, FileSource::Local { .. }) {
                return Err(ApiError(Error::invalid(
                    format!("records[{i}].files[{j}].source"),
                    "only object-store keys (`{\"source\": \"object\", \"key\"}`) are accepted over HTTP",
                )));
            }
        }
    }
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
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::RunsRead)?;
    let id = path_param("id", &id, str::parse::<ValidationRunId>)?;
    Ok(Json(json!(state.engine.get(id).await?)))
}

fn sse<S, T>(stream: S) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>>
where
    S: futures::Stream<Item = osa_core::Result<T>> + Send + 'static,
    T: serde::Serialize,
{
    let events = stream.map(|item| {
        Ok(match item {
            Ok(value) => Event::default()
                .json_data(value)
                .unwrap_or_else(|e| Event::default().event("error").data(e.to_string())),
            Err(e) => Event::default()
                .event("error")
                .data(json!({"code": e.kind().as_str(), "message": e.to_string()}).to_string()),
        })
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

async fn validation_events(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Scope::RunsRead)?;
    let id = path_param("id", &id, str::parse::<ValidationRunId>)?;
    let events = state.engine.events(id).await?;
    Ok(sse(events).into_response())
}

/// Query of `GET /features/{hook}`: `record_id`, `run_id`, `after`, `limit`,
/// `format` (`json` or `csv`), and column filters `eq.<col>`, `gte.<col>`,
/// `lte.<col>`, `null.<col>`.
async fn list_features(
    State(state): State<ApiState>,
    Path(hook): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let hook = known_hook(&state, &hook).await?;
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
                    return Err(ApiError(Error::invalid(
                        "limit",
                        format!("must be 1..={MAX_PAGE}"),
                    )));
                }
                query.limit = limit;
            }
            "format" => {
                csv = match value.as_str() {
                    "json" => false,
                    "csv" => true,
                    _ => return Err(ApiError(Error::invalid("format", "`json` or `csv`"))),
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
        ApiError(Error::invalid(
            key,
            "unknown parameter (record_id, run_id, after, limit, format, eq.<col>, gte.<col>, lte.<col>, null.<col>)",
        ))
    })?;
    let name = path_param(key, column, ColumnName::new)?;
    let def = columns
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| ApiError(Error::invalid(key, format!("no column `{name}`"))))?;
    if op == "null" {
        return Ok(ColumnFilter::IsNull(name));
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
        .map_err(|e| ApiError(Error::invalid(key, e.to_string())))?
        .remove(0);
    Ok(match op {
        "eq" => ColumnFilter::Eq(name, typed),
        "gte" => ColumnFilter::Gte(name, typed),
        "lte" => ColumnFilter::Lte(name, typed),
        _ => {
            return Err(ApiError(Error::invalid(
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
    Path((hook, row)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let hook = path_param("hook", &hook, HookName::new)?;
    let row: i64 = path_param("row", &row, str::parse)?;
    let p = state.engine.provenance(&hook, row).await?;
    Ok(Json(json!({
        "hook": p.hook,
        "row": p.row,
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
    caller: Caller,
    query: Result<Query<DeploymentsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::DeploymentsRead)?;
    let Query(q) = query.map_err(|e| ApiError(Error::invalid("query", e.body_text())))?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError(Error::invalid(
            "limit",
            format!("must be 1..={MAX_PAGE}"),
        )));
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
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Scope::DeploymentsRead)?;
    let id = path_param("id", &id, str::parse::<DeploymentId>)?;
    Ok(Json(json!(state.deployer.get(id).await?)))
}

async fn deployment_events(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Scope::DeploymentsRead)?;
    let id = path_param("id", &id, str::parse::<DeploymentId>)?;
    let events = state.deployer.events(id, state.stream_poll).await?;
    Ok(sse(events).into_response())
}

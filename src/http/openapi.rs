//! The route table [`ROUTES`] and the OpenAPI document built from it, served at
//! `/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use osa_core::auth::Scope;
use serde_json::{Value, json};

use super::state::ApiState;
use super::{MAX_FILTERS, MAX_PAGE};

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/openapi.json", get(openapi))
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
        "PUT",
        "/uploads/{name}",
        scope(Scope::ValidationsWrite),
        "Upload a record file (the body, streamed into the object store under the upload prefix, at most the record-file limit); answers its key, size and sha256",
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
        if (r.method, r.path) == ("PUT", "/uploads/{name}") {
            operation["requestBody"] = json!({"required": true, "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}});
            operation["responses"]["201"] = json!({
                "description": "Stored",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["key", "name", "size", "sha256"],
                    "properties": {
                        "key": {"type": "string", "description": "The object-store key to name in `POST /validations`"},
                        "name": {"type": "string"},
                        "size": {"type": "integer", "minimum": 0},
                        "sha256": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
                    },
                }}},
            });
        }
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

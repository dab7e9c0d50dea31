//! The OpenAPI 3.1 document, served at `{prefix}/openapi.json`.
//!
//! utoipa generates it: every handler carries a `#[utoipa::path]` with its request
//! body, parameters, success responses and security, and utoipa-axum's
//! [`OpenApiRouter`] collects those operations as the routes are registered, so a
//! served route is a documented route. The schemas of OSA's types come from their
//! schemars derives (osa-core's `openapi` feature); the HTTP layer's own response
//! shapes derive [`utoipa::ToSchema`]. Every operation also documents the error
//! shape ([`ErrorBody`]) as its `default` response.

use axum::Extension;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, Response, ResponseBuilder, Server};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::ApiState;

/// The security scheme every protected operation names.
pub(super) const BEARER: &str = "bearer";

/// An error answer: `{"code", "message", "field"?}`; a refused caller's (401, 403)
/// also has `detail`.
#[derive(Debug, serde::Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// The kind of error (`not_found`, `conflict`, `invalid`, `unavailable`,
    /// `internal`, `method_not_allowed`, `too_large`, ...); on 401 `missing_token`,
    /// `invalid_token` or `token_expired`, on 403 `access_denied`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Path of the offending input value, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// On 401 and 403 only: `code` and `message` again, where the published CLI
    /// reads them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<ErrorDetail>,
}

/// The `detail` of a refused caller's error: its code and message.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `missing_token`, `invalid_token`, `token_expired` or `access_denied`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "OSA", description = "Hook registry, validations and features of an OSA archive"),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        osa_core::validation::RunEvent,
        osa_core::deploy::DeploymentEvent
    )),
    modifiers(&Conventions)
)]
struct ApiDoc;

/// Adds what every operation shares: the bearer scheme and the error response.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http({
                let mut http = Http::new(HttpAuthScheme::Bearer);
                http.bearer_format = Some("JWT".into());
                http
            }),
        );
        let error: RefOr<Response> = ResponseBuilder::new()
            .description("An error (see `code`)")
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("Error")))
                    .build(),
            )
            .build()
            .into();
        for item in doc.paths.paths.values_mut() {
            for operation in operations(item) {
                operation
                    .responses
                    .responses
                    .entry("default".into())
                    .or_insert_with(|| error.clone());
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// An empty router that starts with the document's info, schemes and error shape.
pub(super) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
}

/// This API's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json"))
)]
async fn openapi(Extension(doc): Extension<ServedDocument>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], doc.0)
}

/// The document as served, rendered once.
#[derive(Clone)]
struct ServedDocument(Bytes);

/// Adds the document's route, finishes the document (the version, the server: the
/// prefix the API is mounted at, the shared responses) and serves it.
pub(super) fn finish(
    router: OpenApiRouter<ApiState>,
    prefix: &str,
) -> (axum::Router<ApiState>, Document) {
    let (router, mut doc) = router.routes(routes!(openapi)).split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.license = None;
    doc.info.contact = None;
    doc.servers = Some(vec![Server::new(prefix)]);
    Conventions.modify(&mut doc);
    let rendered = doc
        .to_json()
        .expect("an OpenAPI document serialises to JSON");
    let router = router.layer(Extension(ServedDocument(Bytes::from(rendered))));
    (router, doc)
}

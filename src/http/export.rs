//! `GET /features/{hook}/export`: every feature row of a hook that matches a query,
//! streamed as CSV or as JSON lines.
//!
//! The rows come from
//! [`FeatureStore::stream_rows`](osa_core::feature_store::FeatureStore::stream_rows):
//! one query whose rows the backend reads a chunk at a time, a few chunks ahead of the
//! body at most, so the server's memory stays flat whatever the number of rows. Each
//! chunk is written to the body as one piece. The first chunk is read before the
//! response starts, so an unknown hook or a failing store is an error status; a failure
//! after that ends the body early (and is logged), which the client sees as a
//! truncated transfer.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt, TryStreamExt};
use osa_core::feature::ColumnDef;
use osa_core::feature_store::FeatureRow;
use osa_core::id::HookName;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiResult;
use super::extract::ApiPath;
use super::features::{FeatureParams, csv_header, feature_request, push_csv_rows, push_json_lines};
use super::state::ApiState;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(export))
}

/// Query of `GET /features/{hook}/export`: the parameters of `GET /features/{hook}`
/// without `limit` (`record_id`, `run_id`, `after`, `format`, column filters). CSV
/// (`text/csv`, the page's columns, one header line) or, by default, JSON lines
/// (`application/x-ndjson`, one row per line as in a JSON page).
#[utoipa::path(
    get,
    path = "/features/{hook}/export",
    tag = "features",
    params(("hook" = HookName, Path, description = "The hook"), FeatureParams),
    responses((status = 200, description = "Every matching row, streamed", content(
        (String = "application/x-ndjson"),
        (String = "text/csv"),
    )))
)]
async fn export(
    State(state): State<ApiState>,
    ApiPath(hook): ApiPath<String>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let request = feature_request(&state, &hook, query, false).await?;
    let mut chunks = state
        .storage
        .stream_rows(&request.hook, &request.query)
        .await?;
    let first = chunks.try_next().await?;
    let csv = request.csv;
    let (content_type, header) = if csv {
        (
            "text/csv; charset=utf-8",
            Some(Bytes::from(csv_header(&request.columns))),
        )
    } else {
        ("application/x-ndjson", None)
    };
    let hook = request.hook;
    let columns = request.columns;
    let rest = chunks.inspect_err(move |e| {
        tracing::error!(hook = %hook, error = %e, "feature export ended early");
    });
    let body = stream::iter(header.map(Ok)).chain(
        stream::iter(first.map(Ok))
            .chain(rest)
            .map_ok(move |rows| chunk(&columns, csv, &rows)),
    );
    Ok(([(CONTENT_TYPE, content_type)], Body::from_stream(body)).into_response())
}

/// One chunk of rows as CSV lines or JSON lines.
fn chunk(columns: &[ColumnDef], csv: bool, rows: &[FeatureRow]) -> Bytes {
    if csv {
        let mut out = String::with_capacity(rows.len() * 64);
        push_csv_rows(&mut out, rows);
        Bytes::from(out)
    } else {
        let mut out = Vec::with_capacity(rows.len() * 192);
        push_json_lines(&mut out, columns, rows);
        Bytes::from(out)
    }
}

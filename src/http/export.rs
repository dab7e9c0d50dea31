//! `GET /features/{hook}/export`: every feature row of a hook that matches a query,
//! streamed as CSV or as JSON lines.
//!
//! The rows are read in keyset pages of [`MAX_PAGE`] rows through
//! [`FeatureStore::rows`](osa_core::feature::store::FeatureStore::rows), each page
//! written to the body as one chunk while the next is read, so the server holds at most
//! two pages of one export whatever the number of rows. The first page is read before
//! the response starts, so an unknown hook or a failing store is an error status; a
//! failure after that ends the body early (and is logged), which the client sees as a
//! truncated transfer.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use osa_core::feature::ColumnDef;
use osa_core::feature::store::{FeaturePage, FeatureQuery};
use osa_core::id::HookName;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::MAX_PAGE;
use super::error::ApiResult;
use super::extract::ApiPath;
use super::features::{FeatureParams, csv_header, feature_request, push_csv_rows, push_json_lines};
use super::state::{ApiState, ApiStorage};

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
    let mut query = request.query;
    query.limit = MAX_PAGE;
    let first = state.storage.rows(&request.hook, &query).await?;
    let pages = Pages {
        storage: state.storage.clone(),
        hook: request.hook,
        query,
    };
    let csv = request.csv;
    let (content_type, header) = if csv {
        (
            "text/csv; charset=utf-8",
            Some(Bytes::from(csv_header(&request.columns))),
        )
    } else {
        ("application/x-ndjson", None)
    };
    let columns = request.columns;
    let chunks = pages
        .stream(first)
        .map(move |page| page.map(|page| chunk(&columns, csv, &page)));
    let body = stream::iter(header.map(Ok)).chain(chunks);
    Ok(([(CONTENT_TYPE, content_type)], Body::from_stream(body)).into_response())
}

/// One page as CSV lines or JSON lines.
fn chunk(columns: &[ColumnDef], csv: bool, page: &FeaturePage) -> Bytes {
    if csv {
        let mut out = String::with_capacity(page.rows.len() * 64);
        push_csv_rows(&mut out, &page.rows);
        Bytes::from(out)
    } else {
        let mut out = Vec::with_capacity(page.rows.len() * 192);
        push_json_lines(&mut out, columns, &page.rows);
        Bytes::from(out)
    }
}

/// What reads the pages of one export after the first.
struct Pages {
    storage: Arc<dyn ApiStorage>,
    hook: HookName,
    query: FeatureQuery,
}

impl Pages {
    /// The read of the page after `after`, started now in a task of its own (aborted
    /// when the export is dropped).
    fn prefetch(&self, after: i64) -> Prefetch {
        let storage = self.storage.clone();
        let hook = self.hook.clone();
        let mut query = self.query.clone();
        query.after = Some(after);
        Prefetch(tokio::spawn(
            async move { storage.rows(&hook, &query).await },
        ))
    }

    /// `first`, then every following page; nothing more after an error.
    fn stream(
        self,
        first: FeaturePage,
    ) -> impl futures::Stream<Item = Result<FeaturePage, osa_core::Error>> + Send {
        let next = first.next_after.map(|after| self.prefetch(after));
        stream::unfold(
            (Some(Ok(first)), next, self),
            |(ready, next, pages)| async move {
                let page = match (ready, next) {
                    (Some(page), next) => return Some((page, (None, next, pages))),
                    (None, None) => return None,
                    (None, Some(read)) => read.wait(&pages.hook).await,
                };
                let next = match &page {
                    Ok(page) => page.next_after.map(|after| pages.prefetch(after)),
                    Err(_) => None,
                };
                Some((page, (None, next, pages)))
            },
        )
    }
}

/// A page read in progress.
struct Prefetch(tokio::task::JoinHandle<osa_core::Result<FeaturePage>>);

impl Prefetch {
    /// The page, or the error that ends the export (logged here).
    async fn wait(mut self, hook: &HookName) -> osa_core::Result<FeaturePage> {
        let page = match (&mut self.0).await {
            Ok(page) => page,
            Err(e) => Err(osa_core::Error::internal(format!("export task: {e}"))),
        };
        if let Err(e) = &page {
            tracing::error!(hook = %hook, error = %e, "feature export ended early");
        }
        page
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

//! Feature rows of a hook (column filters, keyset pages, JSON or CSV) and their
//! provenance.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use osa_core::Error;
use osa_core::feature::{Cardinality, ColumnDef, FeatureSpec, FeatureValue};
use osa_core::feature_store::{ColumnFilter, FeatureQuery, FeatureRow, KeyedRow};
use osa_core::hook::HookRelease;
use osa_core::id::{ColumnName, HookName, HookRunId, RecordId, ValidationRunId};
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, path_param};
use super::hooks::{HookRunView, known_hook};
use super::state::ApiState;
use super::{MAX_FILTERS, MAX_PAGE};

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_features))
        .routes(routes!(provenance))
}

/// A feature row as the API shows it: the JSON [`FeatureRow::keyed`] writes (this
/// type only describes it).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // describes KeyedRow's JSON in the OpenAPI document
pub(super) struct FeatureRowView {
    /// Row id (unique per hook table; the keyset cursor).
    id: i64,
    record_id: RecordId,
    /// The validation run that produced it, if any.
    validation_run_id: Option<ValidationRunId>,
    /// The hook run that produced it.
    run_id: HookRunId,
    /// Position among the record's rows.
    row_index: u32,
    created_at: DateTime<Utc>,
    /// The data columns' values, by column name.
    #[schema(value_type = Object)]
    values: serde_json::Map<String, Value>,
}

/// A page of feature rows.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FeaturePageView<'a> {
    /// The hook's data columns, in table order.
    #[schema(value_type = Vec<ColumnDef>)]
    columns: &'a [ColumnDef],
    /// The rows, by id.
    #[schema(value_type = Vec<FeatureRowView>)]
    rows: Vec<KeyedRow<'a>>,
    /// The cursor of the next page (`after`), when there may be one.
    next_after: Option<i64>,
}

/// Where a feature row came from.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ProvenanceView<'a> {
    /// The hook.
    hook: HookName,
    /// The row.
    #[schema(value_type = FeatureRowView)]
    row: KeyedRow<'a>,
    /// The hook run that produced it.
    run: HookRunView,
    /// The release that ran (digest, runtime, config, source_ref, built_by).
    release: HookRelease,
}

/// The query parameters a feature read takes besides `limit` (documentation of what
/// [`feature_request`] parses by hand).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // describes the parameters in the OpenAPI document
pub(super) struct FeatureParams {
    /// Only rows of this record.
    record_id: Option<RecordId>,
    /// Only rows of this hook run.
    run_id: Option<HookRunId>,
    /// Keyset cursor: only rows after this id (`next_after` of the previous page).
    after: Option<i64>,
    /// Response format (default json).
    #[param(inline)]
    format: Option<FeatureFormat>,
    /// Column filters, combined with AND: `eq.<col>=v`, `gte.<col>=v`, `lte.<col>=v`
    /// (the value coerced to the column's type) and `null.<col>=` or `=true` (is
    /// null), `null.<col>=false` (is not null); at most 32, each operator and column
    /// once.
    #[param(style = Form, explode, value_type = Option<Object>)]
    filters: Option<std::collections::BTreeMap<String, String>>,
}

/// The formats of a feature read.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // documents the parameter, which is parsed by hand
pub(super) enum FeatureFormat {
    /// JSON (a page; JSON lines for an export).
    Json,
    /// RFC 4180 CSV with a header line.
    Csv,
}

/// The parameters of `GET /features/{hook}` other than column filters.
const FEATURE_PARAMS: [&str; 5] = ["record_id", "run_id", "after", "limit", "format"];

/// A hook's feature rows (filters, keyset pages, JSON or CSV).
///
/// Query: `record_id`, `run_id`, `after`, `limit`, `format` (`json` or `csv`), and up
/// to [`MAX_FILTERS`] column filters `eq.<col>`, `gte.<col>`, `lte.<col>`,
/// `null.<col>` (empty or `true`: is null; `false`: is not null). A parameter given
/// twice is refused.
#[utoipa::path(
    get,
    path = "/features/{hook}",
    tag = "features",
    params(
        ("hook" = HookName, Path, description = "The hook"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        FeatureParams,
    ),
    responses((status = 200, description = "A page of rows", content(
        (FeaturePageView = "application/json"),
        (String = "text/csv"),
    )))
)]
async fn list_features(
    State(state): State<ApiState>,
    ApiPath(hook): ApiPath<String>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let request = feature_request(&state, &hook, query, true).await?;
    let page = state.storage.rows(&request.hook, &request.query).await?;
    if request.csv {
        return Ok((
            [(CONTENT_TYPE, "text/csv; charset=utf-8")],
            features_csv(&request.columns, &page.rows),
        )
            .into_response());
    }
    Ok(Json(FeaturePageView {
        columns: &request.columns,
        rows: page
            .rows
            .iter()
            .map(|row| row.keyed(&request.columns))
            .collect(),
        next_after: page.next_after,
    })
    .into_response())
}

/// A parsed query over a hook's feature rows (`GET /features/{hook}` and its export).
pub(super) struct FeatureRequest {
    /// The hook, known to the registry.
    pub(super) hook: HookName,
    /// The hook's data columns, in table order.
    pub(super) columns: Vec<ColumnDef>,
    /// Filters, cursor and (for a page) the page size.
    pub(super) query: FeatureQuery,
    /// `format=csv` rather than JSON.
    pub(super) csv: bool,
}

/// Parses the query string of a feature read of `hook` (see [`list_features`]);
/// `limit` is accepted only when `paged`. NotFound for an unknown hook.
pub(super) async fn feature_request(
    state: &ApiState,
    hook: &str,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    paged: bool,
) -> ApiResult<FeatureRequest> {
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
    let hook = known_hook(state, "hook", hook).await?;
    let columns = hook.identity.feature.stored_columns().to_vec();
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
            "limit" if !paged => {
                return Err(ApiError::invalid(
                    "limit",
                    "not accepted here: every matching row is returned",
                ));
            }
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
    Ok(FeatureRequest {
        hook: hook.identity.name,
        columns,
        query,
        csv,
    })
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
    rows: &[osa_core::feature_store::FeatureRow],
) -> String {
    let mut out = csv_header(columns);
    push_csv_rows(&mut out, rows);
    out
}

/// The header line of [`features_csv`], with its line break.
pub(super) fn csv_header(columns: &[ColumnDef]) -> String {
    // The system fields under their column names: no data column starts with `_`.
    let mut out = String::from("_id,_record_id,_run_id,_row_index");
    for c in columns {
        out.push(',');
        push_cell(&mut out, c.name.as_str());
    }
    out.push_str("\r\n");
    out
}

/// Appends `rows` as lines of [`features_csv`] (each ends with `\r\n`).
pub(super) fn push_csv_rows(out: &mut String, rows: &[FeatureRow]) {
    use std::fmt::Write;
    for row in rows {
        let _ = write!(out, "{},", row.id);
        push_cell(out, row.record_id.as_str());
        let _ = write!(out, ",{},{}", row.run_id, row.row_index);
        for v in &row.values {
            out.push(',');
            if let FeatureValue::Text(s) = v {
                push_cell(out, s);
                continue;
            }
            match v.to_json() {
                Value::Null => {}
                Value::String(s) => push_cell(out, &s),
                other => push_cell(out, &other.to_string()),
            }
        }
        out.push_str("\r\n");
    }
}

/// Appends one CSV field, quoted when it holds a comma, a quote or a line break.
fn push_cell(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Appends `rows` as JSON lines: each row as in a JSON page
/// ([`FeatureRow::keyed`]), then `\n`.
pub(super) fn push_json_lines(out: &mut Vec<u8>, columns: &[ColumnDef], rows: &[FeatureRow]) {
    for row in rows {
        // Serializing a row into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, &row.keyed(columns));
        out.push(b'\n');
    }
}

/// Where a feature row came from: the hook run, the release and its digest.
#[utoipa::path(
    get,
    path = "/features/{hook}/{row}/provenance",
    tag = "features",
    params(
        ("hook" = HookName, Path, description = "The hook"),
        ("row" = i64, Path, description = "The row's id"),
    ),
    responses((status = 200, body = ProvenanceView))
)]
async fn provenance(
    State(state): State<ApiState>,
    ApiPath((hook, row)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let hook = known_hook(&state, "hook", &hook).await?;
    let row: i64 = path_param("row", &row, str::parse)?;
    let p = state.engine.provenance(&hook.identity.name, row).await?;
    Ok(Json(ProvenanceView {
        row: p.row.keyed(hook.identity.feature.stored_columns()),
        hook: p.hook,
        run: p.run.into(),
        release: p.release,
    })
    .into_response())
}

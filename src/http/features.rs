//! Feature rows of a hook (column filters, keyset pages, JSON or CSV) and their
//! provenance.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use osa_core::Error;
use osa_core::feature::store::{ColumnFilter, FeatureQuery, FeatureRow};
use osa_core::feature::{Cardinality, ColumnDef, FeatureSpec, FeatureValue};
use osa_core::hook::HookRelease;
use osa_core::id::{ColumnName, HookName, HookRunId, RecordId, ValidationRunId};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
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

/// A feature row with its values keyed by column name.
#[derive(Debug, Serialize, ToSchema)]
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

impl FeatureRowView {
    fn new(row: &FeatureRow, columns: &[ColumnDef]) -> Self {
        FeatureRowView {
            id: row.id,
            record_id: row.record_id.clone(),
            validation_run_id: row.validation_run_id,
            run_id: row.run_id,
            row_index: row.row_index,
            created_at: row.created_at,
            values: row.keyed_values(columns),
        }
    }
}

/// A page of feature rows.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FeaturePageView {
    /// The hook's data columns, in table order.
    columns: Vec<ColumnDef>,
    /// The rows, by id.
    rows: Vec<FeatureRowView>,
    /// The cursor of the next page (`after`), when there may be one.
    next_after: Option<i64>,
}

/// Where a feature row came from.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ProvenanceView {
    /// The hook.
    hook: HookName,
    /// The row.
    row: FeatureRowView,
    /// The hook run that produced it.
    run: HookRunView,
    /// The release that ran (digest, runtime, config, source_ref, built_by).
    release: HookRelease,
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
        ("record_id" = Option<String>, Query, description = "Only rows of this record"),
        ("run_id" = Option<HookRunId>, Query, description = "Only rows of this hook run"),
        ("after" = Option<i64>, Query, description = "Keyset cursor: `next_after` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
        ("format" = inline(Option<FeatureFormat>), Query, description = "Response format (default json)"),
        ("filters" = Option<std::collections::BTreeMap<String, String>>, Query, style = Form, explode,
         description = "Column filters, combined with AND: `eq.<col>=v`, `gte.<col>=v`, `lte.<col>=v` (the value coerced to the column's type) and `null.<col>=` or `=true` (is null), `null.<col>=false` (is not null); at most 32, each operator and column once"),
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
    Ok(Json(FeaturePageView {
        rows: page
            .rows
            .iter()
            .map(|row| FeatureRowView::new(row, &columns))
            .collect(),
        columns,
        next_after: page.next_after,
    })
    .into_response())
}

/// The formats of `GET /features/{hook}`.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // documents the parameter, which is parsed by hand
enum FeatureFormat {
    /// A JSON page.
    Json,
    /// RFC 4180 CSV with a header line.
    Csv,
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
) -> ApiResult<Json<ProvenanceView>> {
    let hook = known_hook(&state, "hook", &hook).await?;
    let row: i64 = path_param("row", &row, str::parse)?;
    let p = state.engine.provenance(&hook.identity.name, row).await?;
    Ok(Json(ProvenanceView {
        row: FeatureRowView::new(&p.row, hook.identity.feature.columns()),
        hook: p.hook,
        run: p.run.into(),
        release: p.release,
    }))
}

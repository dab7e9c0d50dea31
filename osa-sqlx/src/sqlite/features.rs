//! `FeatureStore` on SQLite: one table `osa_feature__<hook>` per hook.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use osa_core::feature::store::{
    ColumnFilter, FeatureBatch, FeaturePage, FeatureQuery, FeatureRow, FeatureStore, Provenance,
};
use osa_core::feature::{FeatureSpec, FeatureValue, ValueType};
use osa_core::hook::HookIdentity;
use osa_core::id::{HookName, HookRunId, RecordId, ValidationRunId};
use osa_core::{Error, HookRegistry, Result};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::types::Json;
use sqlx::{Arguments, Row, SqliteConnection};
use uuid::Uuid;

use super::SqliteBackend;
use crate::error::{corrupt, db};
use crate::feature_sql::{Dialect, SYSTEM_SELECT, quote};

/// SQLite's default limit of bound parameters per statement.
const MAX_PARAMS: usize = 32_766;

impl SqliteBackend {
    /// The stored contract of a hook's feature table (cached; contracts never change).
    pub(crate) async fn contract(&self, hook: &HookName) -> Result<FeatureSpec> {
        if let Some(spec) = self.contracts.lock().expect("contract cache poisoned").get(hook) {
            return Ok(spec.clone());
        }
        let stored: Option<Json<FeatureSpec>> = sqlx::query_scalar("SELECT feature FROM feature_tables WHERE hook = ?")
            .bind(hook.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(db("reading a feature contract"))?;
        let spec = stored.ok_or_else(|| Error::not_found("feature table", hook))?.0;
        self.contracts
            .lock()
            .expect("contract cache poisoned")
            .insert(hook.clone(), spec.clone());
        Ok(spec)
    }

    /// Replaces rows inside the caller's transaction (used by plans too).
    pub(crate) async fn replace_rows_in(&self, tx: &mut SqliteConnection, batch: &FeatureBatch) -> Result<u64> {
        let spec = self.contract(&batch.hook).await?;
        batch.check(&spec)?;
        let run_exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM hook_runs WHERE id = ?")
            .bind(batch.run_id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("checking a hook run"))?;
        if run_exists.is_none() {
            return Err(Error::invalid(
                "run_id",
                format!("hook run {} does not exist; record the run before its features", batch.run_id),
            ));
        }
        let table = self.dialect.table(&batch.hook);
        let records: Vec<&str> = batch.records.iter().map(RecordId::as_str).collect();
        sqlx::query(&format!("DELETE FROM {table} WHERE record_id IN (SELECT value FROM json_each(?))"))
            .bind(Json(&records))
            .execute(&mut *tx)
            .await
            .map_err(db("deleting replaced feature rows"))?;

        let data_columns = Dialect::data_columns(&spec);
        let per_row = 5 + data_columns.len();
        let rows_per_statement = (MAX_PARAMS / per_row).clamp(1, 500);
        let column_list = format!(
            "record_id, validation_run_id, run_id, row_index, created_at{}{}",
            if data_columns.is_empty() { "" } else { ", " },
            data_columns.join(", ")
        );
        let row_placeholders = format!("({})", vec!["?"; per_row].join(", "));
        let created_at = crate::now();
        let mut inserted = 0;
        for chunk in batch.rows.chunks(rows_per_statement) {
            let sql = format!(
                "INSERT INTO {table} ({column_list}) VALUES {}",
                vec![row_placeholders.as_str(); chunk.len()].join(", ")
            );
            let mut args = SqliteArguments::default();
            for row in chunk {
                let system: [Result<(), _>; 5] = [
                    args.add(row.record_id.as_str().to_string()),
                    args.add(batch.validation_run_id.map(|v| v.0)),
                    args.add(batch.run_id.0),
                    args.add(i64::from(row.row_index)),
                    args.add(created_at),
                ];
                for added in system {
                    added.map_err(|e| Error::internal(format!("binding a feature row: {e}")))?;
                }
                for value in &row.values {
                    add_value(&mut args, value)?;
                }
            }
            let result = sqlx::query_with(&sql, args)
                .execute(&mut *tx)
                .await
                .map_err(db("inserting feature rows"))?;
            inserted += result.rows_affected();
        }
        Ok(inserted)
    }

    async fn feature_hooks(&self) -> Result<Vec<HookName>> {
        let names: Vec<String> = sqlx::query_scalar("SELECT hook FROM feature_tables ORDER BY hook")
            .fetch_all(&self.reader)
            .await
            .map_err(db("listing feature tables"))?;
        names
            .into_iter()
            .map(|n| HookName::new(n).map_err(|e| corrupt("hook name", e)))
            .collect()
    }

    async fn select_rows(
        &self,
        hook: &HookName,
        spec: &FeatureSpec,
        condition: &str,
        args: SqliteArguments<'static>,
        limit: Option<u32>,
    ) -> Result<Vec<FeatureRow>> {
        let data = Dialect::data_columns(spec);
        let sql = format!(
            "SELECT {SYSTEM_SELECT}{}{} FROM {} WHERE {condition} ORDER BY id{}",
            if data.is_empty() { "" } else { ", " },
            data.join(", "),
            self.dialect.table(hook),
            limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default(),
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.reader)
            .await
            .map_err(db("reading feature rows"))?;
        rows.iter().map(|row| decode_row(row, spec)).collect()
    }
}

fn add_value(args: &mut SqliteArguments<'static>, value: &FeatureValue) -> Result<()> {
    let added = match value {
        FeatureValue::Null => args.add(Option::<String>::None),
        FeatureValue::Text(s) => args.add(s.clone()),
        FeatureValue::Timestamp(t) => args.add(crate::truncate_micros(*t)),
        FeatureValue::Date(d) => args.add(*d),
        FeatureValue::Uuid(u) => args.add(u.hyphenated()),
        FeatureValue::Float(f) => args.add(*f),
        FeatureValue::Integer(i) => args.add(*i),
        FeatureValue::Boolean(b) => args.add(*b),
        FeatureValue::Json(v) => args.add(Json(v.clone())),
    };
    added.map_err(|e| Error::internal(format!("binding a feature value: {e}")))
}

fn decode_row(row: &SqliteRow, spec: &FeatureSpec) -> Result<FeatureRow> {
    let get_err = |e: sqlx::Error| corrupt("feature row", e);
    let mut values = Vec::with_capacity(spec.columns().len());
    for (i, column) in spec.columns().iter().enumerate() {
        let index = 6 + i;
        let value = match column.value_type() {
            ValueType::Text => row.try_get::<Option<String>, _>(index).map(|v| v.map(FeatureValue::Text)),
            ValueType::Timestamp => row
                .try_get::<Option<DateTime<Utc>>, _>(index)
                .map(|v| v.map(FeatureValue::Timestamp)),
            ValueType::Date => row.try_get::<Option<NaiveDate>, _>(index).map(|v| v.map(FeatureValue::Date)),
            ValueType::Uuid => row
                .try_get::<Option<uuid::fmt::Hyphenated>, _>(index)
                .map(|v| v.map(|h| FeatureValue::Uuid(h.into_uuid()))),
            ValueType::Float => row.try_get::<Option<f64>, _>(index).map(|v| v.map(FeatureValue::Float)),
            ValueType::Integer => row.try_get::<Option<i64>, _>(index).map(|v| v.map(FeatureValue::Integer)),
            ValueType::Boolean => row.try_get::<Option<bool>, _>(index).map(|v| v.map(FeatureValue::Boolean)),
            ValueType::Json => row
                .try_get::<Option<Json<serde_json::Value>>, _>(index)
                .map(|v| v.map(|j| FeatureValue::Json(j.0))),
        }
        .map_err(get_err)?;
        values.push(value.unwrap_or(FeatureValue::Null));
    }
    let row_index: i64 = row.try_get("row_index").map_err(get_err)?;
    Ok(FeatureRow {
        id: row.try_get("id").map_err(get_err)?,
        record_id: RecordId::new(row.try_get::<String, _>("record_id").map_err(get_err)?)
            .map_err(|e| corrupt("record id", e))?,
        validation_run_id: row
            .try_get::<Option<Uuid>, _>("validation_run_id")
            .map_err(get_err)?
            .map(ValidationRunId),
        run_id: HookRunId(row.try_get("run_id").map_err(get_err)?),
        row_index: u32::try_from(row_index).map_err(|e| corrupt("row index", e))?,
        created_at: row.try_get("created_at").map_err(get_err)?,
        values,
    })
}

/// Builds `AND`-ed conditions and their arguments for a feature query.
fn query_conditions(spec: &FeatureSpec, query: &FeatureQuery) -> Result<(String, SqliteArguments<'static>)> {
    let mut args = SqliteArguments::default();
    let mut conditions = vec!["1 = 1".to_string()];
    let bind_err = |e| Error::internal(format!("binding a filter: {e}"));
    if let Some(record) = &query.record_id {
        conditions.push("record_id = ?".into());
        args.add(record.as_str().to_string()).map_err(bind_err)?;
    }
    if let Some(run) = query.run_id {
        conditions.push("run_id = ?".into());
        args.add(run.0).map_err(bind_err)?;
    }
    if let Some(after) = query.after {
        conditions.push("id > ?".into());
        args.add(after).map_err(bind_err)?;
    }
    for filter in &query.filters {
        let (column, op, value) = match filter {
            ColumnFilter::Eq(c, v) => (c, "=", Some(v)),
            ColumnFilter::Gte(c, v) => (c, ">=", Some(v)),
            ColumnFilter::Lte(c, v) => (c, "<=", Some(v)),
            ColumnFilter::IsNull(c) => (c, "IS NULL", None),
        };
        let def = spec
            .columns()
            .iter()
            .find(|d| &d.name == column)
            .ok_or_else(|| Error::invalid("filter", format!("unknown column `{column}`")))?;
        match value {
            Some(value) => {
                if value.value_type() != Some(def.value_type()) {
                    return Err(Error::invalid(
                        format!("filter.{column}"),
                        format!("column `{column}` expects {}, got {}", def.expected(), value.describe()),
                    ));
                }
                conditions.push(format!("{} {op} ?", quote(column.as_str())));
                add_value(&mut args, value)?;
            }
            None => conditions.push(format!("{} {op}", quote(column.as_str()))),
        }
    }
    Ok((conditions.join(" AND "), args))
}

#[async_trait]
impl FeatureStore for SqliteBackend {
    async fn ensure_table(&self, identity: &HookIdentity) -> Result<()> {
        let mut tx = self.begin().await?;
        let stored: Option<Json<FeatureSpec>> = sqlx::query_scalar("SELECT feature FROM feature_tables WHERE hook = ?")
            .bind(identity.name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("reading a feature contract"))?;
        if let Some(Json(feature)) = stored {
            let stored = HookIdentity {
                name: identity.name.clone(),
                feature,
            };
            return match crate::rows::identity_conflict(&stored, identity) {
                Some(conflict) => Err(conflict),
                None => Ok(()),
            };
        }
        ensure_table_in(&mut tx, &self.dialect, identity).await?;
        tx.commit().await.map_err(db("creating a feature table"))
    }

    async fn replace_rows(&self, batch: &FeatureBatch) -> Result<u64> {
        let mut tx = self.begin().await?;
        let inserted = self.replace_rows_in(&mut tx, batch).await?;
        tx.commit().await.map_err(db("replacing feature rows"))?;
        Ok(inserted)
    }

    async fn rows(&self, hook: &HookName, query: &FeatureQuery) -> Result<FeaturePage> {
        let spec = self.contract(hook).await?;
        let (condition, args) = query_conditions(&spec, query)?;
        let limit = query.limit.clamp(1, crate::MAX_PAGE);
        let mut rows = self.select_rows(hook, &spec, &condition, args, Some(limit + 1)).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_after = if more { rows.last().map(|r| r.id) } else { None };
        Ok(FeaturePage { rows, next_after })
    }

    async fn record_features(&self, record: &RecordId) -> Result<Vec<(HookName, Vec<FeatureRow>)>> {
        let mut out = Vec::new();
        for hook in self.feature_hooks().await? {
            let spec = self.contract(&hook).await?;
            let mut args = SqliteArguments::default();
            args.add(record.as_str().to_string())
                .map_err(|e| Error::internal(format!("binding a record id: {e}")))?;
            let rows = self.select_rows(&hook, &spec, "record_id = ?", args, None).await?;
            if !rows.is_empty() {
                out.push((hook, rows));
            }
        }
        Ok(out)
    }

    async fn provenance(&self, hook: &HookName, row_id: i64) -> Result<Option<Provenance>> {
        let spec = self.contract(hook).await?;
        let mut args = SqliteArguments::default();
        args.add(row_id).map_err(|e| Error::internal(format!("binding a row id: {e}")))?;
        let Some(row) = self.select_rows(hook, &spec, "id = ?", args, Some(1)).await?.pop() else {
            return Ok(None);
        };
        let run = self
            .get_run(row.run_id)
            .await?
            .ok_or_else(|| Error::internal(format!("feature row {row_id} points at a missing hook run")))?;
        let release = self
            .get_release_by_id(run.release_id)
            .await?
            .ok_or_else(|| Error::internal(format!("hook run {} points at a missing release", run.id)))?;
        Ok(Some(Provenance {
            hook: hook.clone(),
            row,
            run,
            release,
        }))
    }
}

/// Creates the table and records its contract, inside the caller's transaction. The
/// hook's identity must be registered (else NotFound).
pub(crate) async fn ensure_table_in(tx: &mut SqliteConnection, dialect: &Dialect, identity: &HookIdentity) -> Result<()> {
    let registered: Option<Json<FeatureSpec>> = sqlx::query_scalar("SELECT feature FROM hooks WHERE name = ?")
        .bind(identity.name.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("reading a hook"))?;
    let Some(Json(feature)) = registered else {
        return Err(Error::not_found("hook", &identity.name));
    };
    let registered = HookIdentity {
        name: identity.name.clone(),
        feature,
    };
    if let Some(conflict) = crate::rows::identity_conflict(&registered, identity) {
        return Err(conflict);
    }
    for statement in dialect.create_table(&identity.name, &identity.feature) {
        sqlx::query(&statement)
            .execute(&mut *tx)
            .await
            .map_err(db("creating a feature table"))?;
    }
    sqlx::query("INSERT INTO feature_tables (hook, feature, created_at) VALUES (?, ?, ?) ON CONFLICT (hook) DO NOTHING")
        .bind(identity.name.as_str())
        .bind(Json(&identity.feature))
        .bind(crate::now())
        .execute(&mut *tx)
        .await
        .map_err(db("recording a feature contract"))?;
    Ok(())
}

//! `FeatureStore` on SQLite (the shared implementation in `crate::features`): one
//! table `osa_feature__<hook>` per hook, rows inserted in multi-row statements inside
//! the caller's transaction.

use async_trait::async_trait;
use osa_core::Result;
use osa_core::feature::FeatureSpec;
use osa_core::feature_store::{
    FeatureBatch, FeaturePage, FeatureQuery, FeatureRow, FeatureStore, Provenance, RowChunks,
};
use osa_core::hook::HookIdentity;
use osa_core::id::{HookName, RecordId};
use sqlx::Arguments as _;
use sqlx::sqlite::SqliteArguments;

use super::SqliteBackend;
use crate::error::db;
use crate::feature_sql::{Dialect, bind_error};

type Features = crate::features::Features<SqliteBackend>;

#[async_trait]
impl FeatureStore for SqliteBackend {
    async fn ensure_table(&self, identity: &HookIdentity) -> Result<()> {
        Features::ensure_table(self, identity).await
    }

    async fn replace_rows(&self, batch: &FeatureBatch) -> Result<u64> {
        Features::replace_rows(self, batch).await
    }

    async fn rows(&self, hook: &HookName, query: &FeatureQuery) -> Result<FeaturePage> {
        Features::rows(self, hook, query).await
    }

    async fn stream_rows(&self, hook: &HookName, query: &FeatureQuery) -> Result<RowChunks> {
        Features::stream_rows(self, hook, query).await
    }

    async fn record_features(&self, record: &RecordId) -> Result<Vec<(HookName, Vec<FeatureRow>)>> {
        Features::record_features(self, record).await
    }

    async fn provenance(&self, hook: &HookName, row_id: i64) -> Result<Option<Provenance>> {
        Features::provenance(self, hook, row_id).await
    }
}

/// SQLite's default limit of bound parameters per statement.
const MAX_PARAMS: usize = 32_766;

pub(crate) async fn insert_rows(
    tx: &mut sqlx::SqliteConnection,
    table: &str,
    spec: &FeatureSpec,
    batch: &FeatureBatch,
) -> Result<u64> {
    let data_columns = Dialect::data_columns(spec);
    let per_row = 5 + data_columns.len();
    let rows_per_statement = (MAX_PARAMS / per_row).clamp(1, 500);
    let column_list = format!(
        "_record_id, _validation_run_id, _run_id, _row_index, _created_at{}{}",
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
            args.add(row.record_id.as_str().to_string())
                .map_err(bind_error)?;
            args.add(batch.validation_run_id.map(|v| v.0))
                .map_err(bind_error)?;
            args.add(batch.run_id.0).map_err(bind_error)?;
            args.add(i64::from(row.row_index)).map_err(bind_error)?;
            args.add(created_at).map_err(bind_error)?;
            for value in &row.values {
                crate::features::add_value::<SqliteBackend, sqlx::Sqlite>(&mut args, value)?;
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

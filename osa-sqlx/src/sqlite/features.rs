//! `FeatureStore` on SQLite (the shared implementation in `crate::features`): one
//! table `osa_feature__<hook>` per hook, rows inserted in multi-row statements inside
//! the caller's transaction.

use sqlx::sqlite::SqliteArguments;

crate::features::features_for!(
    super::SqliteBackend,
    sqlx::SqliteConnection,
    SqliteArguments<'static>,
    sqlx::sqlite::SqliteRow,
    create_lock = None
);

/// Replace-by-record needs no locks of its own on SQLite: every write transaction
/// starts with `BEGIN IMMEDIATE` on the one writer connection, so replaces never
/// overlap.
async fn lock_replaced(
    _tx: &mut sqlx::SqliteConnection,
    _targets: &[(String, &[RecordId])],
) -> Result<()> {
    Ok(())
}

/// SQLite's default limit of bound parameters per statement.
const MAX_PARAMS: usize = 32_766;

async fn insert_rows(
    tx: &mut sqlx::SqliteConnection,
    table: &str,
    spec: &FeatureSpec,
    batch: &FeatureBatch,
) -> Result<u64> {
    let data_columns = Dialect::data_columns(spec);
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
            args.add(row.record_id.as_str().to_string())
                .map_err(bind_error)?;
            args.add(batch.validation_run_id.map(|v| v.0))
                .map_err(bind_error)?;
            args.add(batch.run_id.0).map_err(bind_error)?;
            args.add(i64::from(row.row_index)).map_err(bind_error)?;
            args.add(created_at).map_err(bind_error)?;
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

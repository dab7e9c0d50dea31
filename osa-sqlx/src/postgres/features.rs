//! `FeatureStore` on Postgres (the shared implementation in `crate::features`): one
//! table per hook in the features schema, rows written with binary `COPY` inside the
//! caller's transaction.

use sqlx::postgres::PgArguments;

use super::copy::CopyBuffer;

crate::features::features_for!(
    super::PgBackend,
    sqlx::PgConnection,
    PgArguments,
    sqlx::postgres::PgRow,
    // CREATE TABLE IF NOT EXISTS alone can still collide in the catalog when two
    // transactions create the same table.
    create_lock = Some("SELECT pg_advisory_xact_lock(hashtext($1))")
);

/// Bytes buffered before a chunk is sent to the server during `COPY`.
const COPY_CHUNK: usize = 1 << 20;

async fn insert_rows(
    tx: &mut sqlx::PgConnection,
    table: &str,
    spec: &FeatureSpec,
    batch: &FeatureBatch,
) -> Result<u64> {
    let data_columns = Dialect::data_columns(spec);
    let statement = format!(
        "COPY {table} (record_id, validation_run_id, run_id, row_index, created_at{}{}) FROM STDIN (FORMAT binary)",
        if data_columns.is_empty() { "" } else { ", " },
        data_columns.join(", ")
    );
    let created_at = crate::now();
    let fields = 5 + data_columns.len();
    let mut copy = tx
        .copy_in_raw(&statement)
        .await
        .map_err(db("starting COPY of feature rows"))?;
    let mut buffer = CopyBuffer::new();
    for row in &batch.rows {
        buffer.start_tuple(fields);
        buffer.text(row.record_id.as_str());
        match batch.validation_run_id {
            Some(run) => buffer.uuid(&run.0),
            None => buffer.null(),
        }
        buffer.uuid(&batch.run_id.0);
        buffer.int4(
            i32::try_from(row.row_index).map_err(|_| Error::invalid("row_index", "too large"))?,
        );
        buffer.timestamptz(&created_at);
        for value in &row.values {
            buffer.value(value);
        }
        if buffer.len() >= COPY_CHUNK {
            copy.send(buffer.take())
                .await
                .map_err(db("sending feature rows"))?;
        }
    }
    buffer.finish();
    copy.send(buffer.take())
        .await
        .map_err(db("sending feature rows"))?;
    copy.finish()
        .await
        .map_err(db("finishing COPY of feature rows"))
}

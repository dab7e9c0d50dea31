//! `FeatureStore` on Postgres (the shared implementation in `crate::features`): one
//! table per hook in the features schema, rows written with binary `COPY` inside the
//! caller's transaction.

use async_trait::async_trait;
use osa_core::feature::FeatureSpec;
use osa_core::feature_store::{
    FeatureBatch, FeaturePage, FeatureQuery, FeatureRow, FeatureStore, Provenance, RowChunks,
};
use osa_core::hook::HookIdentity;
use osa_core::id::{HookName, RecordId};
use osa_core::{Error, Result};

use super::PgBackend;
use super::copy::CopyBuffer;
use crate::error::db;
use crate::feature_sql::Dialect;

type Features = crate::features::Features<PgBackend>;

#[async_trait]
impl FeatureStore for PgBackend {
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

/// Lock stripes per feature table for replace-by-record (see [`lock_replaced`]).
const REPLACE_STRIPES: u32 = 64;

/// Serialises replace-by-record per (table, record) across transactions; called inside
/// the caller's transaction before the delete, the locks are held until it ends.
///
/// Under READ COMMITTED a delete does not see rows another transaction inserted and
/// has not committed, so two unserialised replaces of one record would both keep
/// their rows. Each record takes a transaction-scoped advisory lock on the key
/// `(table, stripe)`: the table is named by a hash of its qualified name and the
/// record by one of [`REPLACE_STRIPES`] stripes of a hash of its id. Striping bounds the
/// locks a batch takes (a 100k-row batch may name 10k records, and Postgres' shared
/// lock table holds about `max_locks_per_transaction` × `max_connections` entries in
/// all); the price is that writers of distinct records sharing a stripe wait for each
/// other, and two large batches on one table run one after the other.
///
/// Deadlock freedom: the keys of all batches of the transaction are sorted and
/// deduplicated here, in Rust, and sent as arrays that one statement walks in array
/// order (a function scan over `unnest` evaluates the select list row by row in input
/// order), so every transaction acquires its keys in one global order. Sorting the keys
/// themselves, not table or record names, keeps the order total even when two names
/// hash alike. The hashes are FNV-1a, fixed by this code rather than by the Rust
/// release or the server, so every process writing the database derives the same keys
/// (changing the hash or the stripe count must not mix with older writers).
pub(crate) async fn lock_replaced(
    tx: &mut sqlx::PgConnection,
    targets: &[(String, &[RecordId])],
) -> Result<()> {
    let keys = replace_lock_keys(targets);
    if keys.is_empty() {
        return Ok(());
    }
    let (tables, stripes): (Vec<i32>, Vec<i32>) = keys.into_iter().unzip();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k.t, k.s) FROM unnest($1::int4[], $2::int4[]) AS k(t, s)",
    )
    .bind(tables)
    .bind(stripes)
    .execute(&mut *tx)
    .await
    .map_err(db("locking replaced feature records"))?;
    Ok(())
}

/// The sorted, distinct advisory-lock keys of replacing `records` in each table.
fn replace_lock_keys(targets: &[(String, &[RecordId])]) -> Vec<(i32, i32)> {
    let mut keys: Vec<(i32, i32)> = targets
        .iter()
        .flat_map(|(table, records)| {
            let table = fnv1a(table.as_bytes()) as i32;
            records.iter().map(move |r| {
                let hash = fnv1a(r.as_str().as_bytes());
                // Fold the high half in: FNV-1a's low bits mix least.
                (table, ((hash ^ (hash >> 16)) % REPLACE_STRIPES) as i32)
            })
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// 32-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Bytes buffered before a chunk is sent to the server during `COPY`.
const COPY_CHUNK: usize = 1 << 20;

pub(crate) async fn insert_rows(
    tx: &mut sqlx::PgConnection,
    table: &str,
    spec: &FeatureSpec,
    batch: &FeatureBatch,
) -> Result<u64> {
    let data_columns = Dialect::data_columns(spec);
    let statement = format!(
        "COPY {table} (_record_id, _validation_run_id, _run_id, _row_index, _created_at{}{}) FROM STDIN (FORMAT binary)",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_reference_hash() {
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn lock_keys_are_sorted_distinct_and_bounded() {
        let records: Vec<RecordId> = (0..10_000)
            .map(|i| RecordId::new(format!("record-{i:06}")).unwrap())
            .collect();
        let reversed: Vec<RecordId> = records.iter().rev().cloned().collect();
        let targets = [
            ("\"f\".\"beta\"".to_string(), &reversed[..]),
            ("\"f\".\"alpha\"".to_string(), &records[..]),
            ("\"f\".\"beta\"".to_string(), &records[..10]),
        ];
        let keys = replace_lock_keys(&targets);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert_eq!(
            keys.len(),
            2 * REPLACE_STRIPES as usize,
            "every stripe, once"
        );
        // The order does not depend on the order of batches or records.
        let mut swapped = targets.clone();
        swapped.reverse();
        assert_eq!(replace_lock_keys(&swapped), keys);
        // One record takes one key per table.
        let one = [records[7].clone()];
        assert_eq!(replace_lock_keys(&[("t".into(), &one[..])]).len(), 1);
        assert!(replace_lock_keys(&[("t".into(), &[][..])]).is_empty());
    }
}

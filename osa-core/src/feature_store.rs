//! The feature store port: one typed table per hook, its rows and their provenance.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::feature::{ColumnDef, FeatureSpec, FeatureValue};
use crate::hook::{HookIdentity, HookRelease, HookRun};
use crate::id::{ColumnName, HookName, HookRunId, RecordId, ValidationRunId};
use crate::{Error, Result};

/// One row to insert: system fields plus values in column order.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFeatureRow {
    /// The record the row describes.
    pub record_id: RecordId,
    /// Position of the row among the record's rows (0-based).
    pub row_index: u32,
    /// Values in the hook's column order (already coerced by the contract).
    pub values: Vec<FeatureValue>,
}

/// Rows of one hook run, replacing each listed record's previous rows.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureBatch {
    /// The hook (its table must exist).
    pub hook: HookName,
    /// The hook run that produced every row (must be recorded).
    pub run_id: HookRunId,
    /// The validation run, when the rows come from one.
    pub validation_run_id: Option<ValidationRunId>,
    /// Records whose rows are replaced (a record with no rows here loses its old ones).
    pub records: Vec<RecordId>,
    /// The new rows.
    pub rows: Vec<NewFeatureRow>,
}

impl FeatureBatch {
    /// Checks every row against the hook's contract before any storage work: the
    /// number of values, each value's type, NOT NULL columns, and that every row's
    /// record is listed. The error names the row (0-based position in the batch), the
    /// record and the column.
    pub fn check(&self, spec: &FeatureSpec) -> Result<()> {
        let columns = spec.stored_columns();
        let listed: std::collections::HashSet<&RecordId> = self.records.iter().collect();
        for (index, row) in self.rows.iter().enumerate() {
            let field = || format!("rows[{index}]");
            if !listed.contains(&row.record_id) {
                return Err(Error::invalid(
                    field(),
                    format!(
                        "record {:?} is not listed in the batch's records",
                        row.record_id.as_str()
                    ),
                ));
            }
            if row.values.len() != columns.len() {
                return Err(Error::invalid(
                    field(),
                    format!(
                        "row {index} (record {:?}) has {} values but `{}` has {} columns",
                        row.record_id.as_str(),
                        row.values.len(),
                        self.hook,
                        columns.len()
                    ),
                ));
            }
            for (column, value) in columns.iter().zip(&row.values) {
                let ok = match value {
                    FeatureValue::Null => !column.required,
                    other => other.value_type() == Some(column.value_type()),
                };
                if !ok {
                    return Err(Error::invalid(
                        format!("rows[{index}].{}", column.name),
                        format!(
                            "row {index} (record {:?}): column `{}` expects {}, got {}",
                            row.record_id.as_str(),
                            column.name,
                            column.expected(),
                            value.describe()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A stored feature row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRow {
    /// Row id (unique per hook table).
    pub id: i64,
    /// The record.
    pub record_id: RecordId,
    /// The validation run that produced it, if any.
    pub validation_run_id: Option<ValidationRunId>,
    /// The hook run that produced it.
    pub run_id: HookRunId,
    /// Position among the record's rows.
    pub row_index: u32,
    /// Insert time.
    pub created_at: DateTime<Utc>,
    /// Data values in column order.
    pub values: Vec<FeatureValue>,
}

impl FeatureRow {
    /// The row as JSON with its values keyed by column name (`columns` in table
    /// order): `{id, record_id, validation_run_id, run_id, row_index, created_at,
    /// values: {column: value}}`.
    pub fn to_keyed_json(&self, columns: &[ColumnDef]) -> serde_json::Value {
        serde_json::to_value(self.keyed(columns)).expect("a feature row serializes to JSON")
    }

    /// The row of [`to_keyed_json`](Self::to_keyed_json) as a value to serialize
    /// directly (to a writer, without building the JSON tree first).
    pub fn keyed<'a>(&'a self, columns: &'a [ColumnDef]) -> KeyedRow<'a> {
        KeyedRow { row: self, columns }
    }
}

/// A [`FeatureRow`] with its values keyed by column name; see
/// [`FeatureRow::keyed`].
#[derive(Debug, Clone, Copy)]
pub struct KeyedRow<'a> {
    row: &'a FeatureRow,
    columns: &'a [ColumnDef],
}

/// A UTC time written as chrono's `Serialize` writes it (RFC 3339, `Z`, the fraction
/// in 0, 3, 6 or 9 digits as needed), formatted by hand into a buffer: an export
/// writes one per row, and chrono's general formatter is the larger part of a row's
/// cost. Times chrono writes differently (years outside 0–9999, leap seconds) are
/// left to chrono.
struct Rfc3339 {
    buf: [u8; 30],
    len: usize,
    fallback: Option<String>,
}

impl Rfc3339 {
    fn new(t: &DateTime<Utc>) -> Self {
        use chrono::{Datelike, Timelike};
        let nanos = t.nanosecond();
        let year = t.year();
        if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
            let text = serde_json::to_value(t)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| t.to_rfc3339());
            return Rfc3339 {
                buf: [0; 30],
                len: 0,
                fallback: Some(text),
            };
        }
        let mut out = Rfc3339 {
            buf: [0; 30],
            len: 0,
            fallback: None,
        };
        out.digits(year as u32, 4);
        out.push(b'-');
        out.digits(t.month(), 2);
        out.push(b'-');
        out.digits(t.day(), 2);
        out.push(b'T');
        out.digits(t.hour(), 2);
        out.push(b':');
        out.digits(t.minute(), 2);
        out.push(b':');
        out.digits(t.second(), 2);
        if nanos != 0 {
            out.push(b'.');
            if nanos.is_multiple_of(1_000_000) {
                out.digits(nanos / 1_000_000, 3);
            } else if nanos.is_multiple_of(1_000) {
                out.digits(nanos / 1_000, 6);
            } else {
                out.digits(nanos, 9);
            }
        }
        out.push(b'Z');
        out
    }

    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    /// `value` in `width` decimal digits, zero-padded.
    fn digits(&mut self, value: u32, width: usize) {
        let mut v = value;
        for i in (0..width).rev() {
            self.buf[self.len + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.len += width;
    }

    fn as_str(&self) -> &str {
        match &self.fallback {
            Some(text) => text,
            // Only ASCII digits and separators were written.
            None => std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default(),
        }
    }
}

impl Serialize for KeyedRow<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        /// The values, keyed by column, in table order.
        struct Values<'a>(&'a KeyedRow<'a>);
        impl Serialize for Values<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let KeyedRow { row, columns } = self.0;
                let mut map = serializer.serialize_map(Some(columns.len()))?;
                for (column, value) in columns.iter().zip(&row.values) {
                    match value {
                        // Borrowed rather than converted: the same JSON, no copy.
                        FeatureValue::Text(text) => {
                            map.serialize_entry(column.name.as_str(), text)?
                        }
                        other => map.serialize_entry(column.name.as_str(), &other.to_json())?,
                    }
                }
                map.end()
            }
        }
        let row = self.row;
        let mut map = serializer.serialize_map(Some(7))?;
        map.serialize_entry("id", &row.id)?;
        map.serialize_entry("record_id", &row.record_id)?;
        map.serialize_entry("validation_run_id", &row.validation_run_id)?;
        map.serialize_entry("run_id", &row.run_id)?;
        map.serialize_entry("row_index", &row.row_index)?;
        map.serialize_entry("created_at", Rfc3339::new(&row.created_at).as_str())?;
        map.serialize_entry("values", &Values(self))?;
        map.end()
    }
}

/// A filter on one data column.
///
/// Exhaustive on purpose: every storage backend maps each variant, so a new one
/// is a breaking change that the compiler points out in each backend.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnFilter {
    /// `column = value`.
    Eq(ColumnName, FeatureValue),
    /// `column >= value`.
    Gte(ColumnName, FeatureValue),
    /// `column <= value`.
    Lte(ColumnName, FeatureValue),
    /// `column IS NULL`.
    IsNull(ColumnName),
    /// `column IS NOT NULL`.
    IsNotNull(ColumnName),
}

/// A page request over one feature table, in row-id order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeatureQuery {
    /// Only rows of this record.
    pub record_id: Option<RecordId>,
    /// Only rows of this hook run.
    pub run_id: Option<HookRunId>,
    /// Column filters, combined with AND.
    pub filters: Vec<ColumnFilter>,
    /// Keyset cursor: only rows with `id > after`.
    pub after: Option<i64>,
    /// Page size (backends cap it).
    pub limit: u32,
}

/// Rows of [`FeatureStore::stream_rows`], a chunk at a time.
pub type RowChunks = futures::stream::BoxStream<'static, Result<Vec<FeatureRow>>>;

/// One page of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct FeaturePage {
    /// The rows.
    pub rows: Vec<FeatureRow>,
    /// Cursor for the next page, when there may be more.
    pub next_after: Option<i64>,
}

impl FeaturePage {
    /// The page as JSON: `{columns, rows (see [`FeatureRow::to_keyed_json`]),
    /// next_after}`.
    pub fn to_keyed_json(&self, columns: &[ColumnDef]) -> serde_json::Value {
        let rows: Vec<serde_json::Value> =
            self.rows.iter().map(|r| r.to_keyed_json(columns)).collect();
        serde_json::json!({"columns": columns, "rows": rows, "next_after": self.next_after})
    }
}

/// Where a feature row came from: row → hook run → release (digest, runtime,
/// config, source_ref, built_by) and the log locator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The hook.
    pub hook: HookName,
    /// The row.
    pub row: FeatureRow,
    /// The run that produced it.
    pub run: HookRun,
    /// The release that ran.
    pub release: HookRelease,
}

/// Typed per-hook feature tables.
///
/// Guarantees every backend gives:
/// - [`ensure_table`](Self::ensure_table) is idempotent (redelivery-safe) and a Conflict
///   when the table exists with a different contract; identifiers are validated types
///   and are quoted; no value is interpolated into SQL.
/// - [`replace_rows`](Self::replace_rows) is atomic: for every record listed it deletes
///   the record's rows of that hook and inserts the new ones, all in one transaction;
///   any failure (such as a missing hook run) leaves the table unchanged.
/// - Every stored row references an existing hook run.
#[async_trait]
pub trait FeatureStore: Send + Sync {
    /// Creates the hook's table if absent; Conflict if it exists with another contract.
    async fn ensure_table(&self, identity: &HookIdentity) -> Result<()>;

    /// Replaces the rows of the listed records; returns the rows inserted.
    async fn replace_rows(&self, batch: &FeatureBatch) -> Result<u64>;

    /// A page of a hook's rows. Unknown hook → NotFound.
    async fn rows(&self, hook: &HookName, query: &FeatureQuery) -> Result<FeaturePage>;

    /// Every row of a hook that matches `query` (its `limit` ignored), in id order, as
    /// a stream of chunks read by one query: the backend keeps at most a few chunks
    /// ahead of the consumer, so memory stays flat for any number of rows. Unknown hook
    /// → NotFound before the stream; a failure while reading is the stream's last item.
    async fn stream_rows(&self, hook: &HookName, query: &FeatureQuery) -> Result<RowChunks>;

    /// Every row of one record, per hook that has rows for it.
    async fn record_features(&self, record: &RecordId) -> Result<Vec<(HookName, Vec<FeatureRow>)>>;

    /// The provenance chain of one row.
    async fn provenance(&self, hook: &HookName, row_id: i64) -> Result<Option<Provenance>>;
}

#[cfg(test)]
mod tests {
    /// The hand-written time format is chrono's, for every kind of fraction, the
    /// edges of the year range, and the times left to chrono.
    #[test]
    fn rfc3339_times_match_chrono() {
        use chrono::TimeZone;
        let base = Utc.with_ymd_and_hms(2026, 12, 7, 3, 4, 5).unwrap();
        let mut times = vec![
            base,
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 1, 12, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
        ];
        for nanos in [
            1,
            9,
            10,
            999,
            1_000,
            120_000,
            123_456,
            1_000_000,
            5_000_000,
            100_000_000,
            123_456_789,
            999_999_999,
        ] {
            times.push(base + chrono::Duration::nanoseconds(nanos));
        }
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        times.push(leap);
        for t in times {
            let chrono_text = serde_json::to_value(t).unwrap();
            assert_eq!(
                super::Rfc3339::new(&t).as_str(),
                chrono_text.as_str().unwrap(),
                "{t:?}"
            );
        }
    }

    use super::*;
    use crate::feature::{ColumnDef, JsonType};
    use serde_json::json;

    #[test]
    fn a_keyed_row_serializes_as_its_json() {
        let column = |name: &str, json_type| ColumnDef {
            name: ColumnName::new(name).unwrap(),
            json_type,
            format: None,
            required: false,
            description: None,
            unit: None,
        };
        let columns = [
            column("label", JsonType::String),
            column("score", JsonType::Number),
            column("count", JsonType::Integer),
            column("missing", JsonType::Boolean),
            column("extra", JsonType::Object),
        ];
        let run = HookRunId(uuid::Uuid::from_u128(7));
        let created_at = "2026-01-02T03:04:05.123456Z".parse().unwrap();
        let row = FeatureRow {
            id: 42,
            record_id: RecordId::new("rec-\"1\"").unwrap(),
            validation_run_id: None,
            run_id: run,
            row_index: 3,
            created_at,
            values: vec![
                FeatureValue::Text("a,\"b\"\n".into()),
                FeatureValue::Float(0.5),
                FeatureValue::Integer(-9),
                FeatureValue::Null,
                FeatureValue::Json(json!({"k": [1, 2]})),
            ],
        };
        let expected = json!({
            "id": 42,
            "record_id": "rec-\"1\"",
            "validation_run_id": null,
            "run_id": run,
            "row_index": 3,
            "created_at": created_at,
            "values": {"label": "a,\"b\"\n", "score": 0.5, "count": -9, "missing": null,
                       "extra": {"k": [1, 2]}},
        });
        assert_eq!(row.to_keyed_json(&columns), expected);
        let written = serde_json::to_vec(&row.keyed(&columns)).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&written).unwrap(),
            expected
        );
    }
}

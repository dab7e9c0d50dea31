//! A hook's feature contract ([`FeatureSpec`], [`ColumnDef`]) and typed feature values.
//!
//! The contract is fixed forever once a hook exists: every row a hook produces is
//! validated and coerced against it ([`FeatureSpec::coerce_row`]) before any storage
//! sees it.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::id::ColumnName;

/// The one data column of a feature table whose hook declared no columns: each row,
/// whole, as a JSON object.
pub const OPEN_ROW_COLUMN: &str = "row";

/// The JSON type of a column, as the Python SDK declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum JsonType {
    /// Text (or a timestamp, date or uuid with a `format`).
    String,
    /// A double precision float.
    Number,
    /// A 64-bit signed integer.
    Integer,
    /// `true` / `false`.
    Boolean,
    /// A JSON array, stored as native JSON.
    Array,
    /// A JSON object, stored as native JSON.
    Object,
}

impl JsonType {
    /// The name used in contracts and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Integer => "integer",
            JsonType::Boolean => "boolean",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }
}

/// How many rows a hook emits per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cardinality {
    /// At most one row per record (enforced).
    One,
    /// Any number of rows per record.
    Many,
}

/// One typed column of a feature table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    /// Column name.
    pub name: ColumnName,
    /// JSON type of the values.
    pub json_type: JsonType,
    /// Refinement of `string`: `date-time`, `date` and `uuid` change the SQL type;
    /// other formats are kept as documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Whether every row must carry a non-null value (NOT NULL).
    pub required: bool,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Unit of measure (`Å`, `kDa`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// The storage type a column's values have after coercion.
///
/// Exhaustive on purpose: every storage backend maps each variant, so a new one
/// is a breaking change that the compiler points out in each backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Text.
    Text,
    /// Timestamp with time zone (UTC).
    Timestamp,
    /// Calendar date.
    Date,
    /// UUID.
    Uuid,
    /// Double precision float.
    Float,
    /// 64-bit integer.
    Integer,
    /// Boolean.
    Boolean,
    /// Native JSON (arrays and objects).
    Json,
}

impl ColumnDef {
    /// The storage type, from `json_type` and `format`.
    pub fn value_type(&self) -> ValueType {
        match (self.json_type, self.format.as_deref()) {
            (JsonType::String, Some("date-time")) => ValueType::Timestamp,
            (JsonType::String, Some("date")) => ValueType::Date,
            (JsonType::String, Some("uuid")) => ValueType::Uuid,
            (JsonType::String, _) => ValueType::Text,
            (JsonType::Number, _) => ValueType::Float,
            (JsonType::Integer, _) => ValueType::Integer,
            (JsonType::Boolean, _) => ValueType::Boolean,
            (JsonType::Array | JsonType::Object, _) => ValueType::Json,
        }
    }

    /// A short description of the expected values, for error messages.
    pub fn expected(&self) -> String {
        match self.value_type() {
            ValueType::Timestamp => {
                "a date-time string (RFC 3339, e.g. 2024-05-01T12:00:00Z)".into()
            }
            ValueType::Date => "a date string (YYYY-MM-DD)".into(),
            ValueType::Uuid => "a uuid string".into(),
            ValueType::Text => "a string".into(),
            ValueType::Float => "a number".into(),
            ValueType::Integer => "an integer".into(),
            ValueType::Boolean => "a boolean".into(),
            ValueType::Json if self.json_type == JsonType::Array => "an array".into(),
            ValueType::Json => "an object".into(),
        }
    }
}

/// A feature contract. Tagged by `kind`; today only [`FeatureSpec::Table`].
///
/// On the wire `kind` defaults to `"table"`, matching the published SDK's payloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "FeatureSpecWire", into = "FeatureSpecWire")]
#[non_exhaustive]
pub enum FeatureSpec {
    /// Rows in one typed table per hook.
    Table(TableSpec),
}

/// The contract of a table feature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableSpec {
    /// Rows per record.
    pub cardinality: Cardinality,
    /// Data columns, in declared order.
    pub columns: Vec<ColumnDef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
enum FeatureKind {
    #[default]
    Table,
}

/// Wire form of [`FeatureSpec`]: a flat object so that unknown keys are reported with
/// their path and `kind` can default.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "FeatureSpec")]
struct FeatureSpecWire {
    #[serde(default)]
    kind: FeatureKind,
    cardinality: Cardinality,
    #[serde(default)]
    columns: Vec<ColumnDef>,
}

impl JsonSchema for FeatureSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        FeatureSpecWire::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        FeatureSpecWire::json_schema(generator)
    }
}

impl TryFrom<FeatureSpecWire> for FeatureSpec {
    type Error = String;

    fn try_from(wire: FeatureSpecWire) -> Result<Self, Self::Error> {
        let FeatureKind::Table = wire.kind;
        let mut seen = HashSet::new();
        for c in &wire.columns {
            if !seen.insert(c.name.as_str()) {
                return Err(format!("column `{}` is declared twice", c.name));
            }
        }
        Ok(FeatureSpec::Table(TableSpec {
            cardinality: wire.cardinality,
            columns: wire.columns,
        }))
    }
}

impl From<FeatureSpec> for FeatureSpecWire {
    fn from(spec: FeatureSpec) -> Self {
        match spec {
            FeatureSpec::Table(t) => FeatureSpecWire {
                kind: FeatureKind::Table,
                cardinality: t.cardinality,
                columns: t.columns,
            },
        }
    }
}

impl FeatureSpec {
    /// A table spec; fails when a column name repeats.
    pub fn table(cardinality: Cardinality, columns: Vec<ColumnDef>) -> crate::Result<Self> {
        FeatureSpecWire {
            kind: FeatureKind::Table,
            cardinality,
            columns,
        }
        .try_into()
        .map_err(|e| crate::Error::invalid("feature.columns", e))
    }

    /// Rows per record.
    pub fn cardinality(&self) -> Cardinality {
        match self {
            FeatureSpec::Table(t) => t.cardinality,
        }
    }

    /// Data columns in declared order.
    pub fn columns(&self) -> &[ColumnDef] {
        match self {
            FeatureSpec::Table(t) => &t.columns,
        }
    }

    /// Whether the hook declared no columns (a Python hook returning `dict`): its rows
    /// are kept whole, as one JSON object in the column [`OPEN_ROW_COLUMN`].
    pub fn is_open(&self) -> bool {
        self.columns().is_empty()
    }

    /// The data columns as stored and read: the declared ones, or for an
    /// [open](Self::is_open) spec the one optional JSON column [`OPEN_ROW_COLUMN`]
    /// holding each row whole.
    pub fn stored_columns(&self) -> &[ColumnDef] {
        static OPEN: std::sync::LazyLock<[ColumnDef; 1]> = std::sync::LazyLock::new(|| {
            [ColumnDef {
                name: ColumnName::new(OPEN_ROW_COLUMN).expect("a valid column name"),
                json_type: JsonType::Object,
                format: None,
                required: false,
                description: Some("the row as the hook returned it".into()),
                unit: None,
            }]
        });
        if self.is_open() {
            &OPEN[..]
        } else {
            self.columns()
        }
    }

    /// Validates one row object against the columns and returns its values in column
    /// order ([`stored_columns`](Self::stored_columns)).
    ///
    /// Unknown keys, wrong types and missing required values are errors naming the
    /// column and the offending value. Absent optional columns become [`FeatureValue::Null`].
    /// An [open](Self::is_open) spec takes any object, whole.
    pub fn coerce_row(
        &self,
        row: &serde_json::Map<String, Value>,
    ) -> Result<Vec<FeatureValue>, RowError> {
        if self.is_open() {
            return Ok(vec![FeatureValue::Json(Value::Object(row.clone()))]);
        }
        let columns = self.columns();
        if let Some(unknown) = row
            .keys()
            .find(|k| !columns.iter().any(|c| c.name == k.as_str()))
        {
            return Err(RowError::UnknownColumn {
                column: truncate(unknown, 80),
                known: columns.iter().map(|c| c.name.to_string()).collect(),
            });
        }
        columns
            .iter()
            .map(|col| coerce_cell(col, row.get(col.name.as_str())))
            .collect()
    }

    /// [`coerce_row`](Self::coerce_row) for values already in column order (as a step
    /// stores them): value *i* belongs to column *i*; a missing trailing value counts
    /// as absent, and values beyond the last column are ignored.
    pub fn coerce_values(&self, values: &[Value]) -> Result<Vec<FeatureValue>, RowError> {
        self.stored_columns()
            .iter()
            .enumerate()
            .map(|(i, col)| coerce_cell(col, values.get(i)))
            .collect()
    }
}

/// One column's value: absent or null is an error when the column is required.
fn coerce_cell(col: &ColumnDef, value: Option<&Value>) -> Result<FeatureValue, RowError> {
    match value {
        None | Some(Value::Null) if col.required => Err(RowError::MissingRequired {
            column: col.name.to_string(),
        }),
        None | Some(Value::Null) => Ok(FeatureValue::Null),
        Some(v) => coerce_value(col, v),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// A row that does not match the contract.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RowError {
    /// A key that is not a declared column.
    #[error("unknown column `{column}` (declared columns: {})", known.join(", "))]
    UnknownColumn {
        /// The offending key.
        column: String,
        /// The declared columns.
        known: Vec<String>,
    },
    /// A required column is absent or null.
    #[error("column `{column}` is required but missing or null")]
    MissingRequired {
        /// The column.
        column: String,
    },
    /// A value of the wrong type.
    #[error("column `{column}` expects {expected}, got {got}")]
    WrongType {
        /// The column.
        column: String,
        /// What the column accepts.
        expected: String,
        /// The offending value, described (`string "high"`).
        got: String,
    },
    /// The row is not a JSON object.
    #[error("a feature row must be a JSON object, got {got}")]
    NotAnObject {
        /// The offending value, described.
        got: String,
    },
}

/// Describes a JSON value for error messages: `string "high"`, `number 3.5`, `null`.
pub fn describe_value(v: &Value) -> String {
    let shown = truncate(&v.to_string(), 60);
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => format!("boolean {shown}"),
        Value::Number(_) => format!("number {shown}"),
        Value::String(_) => format!("string {shown}"),
        Value::Array(_) => format!("array {shown}"),
        Value::Object(_) => format!("object {shown}"),
    }
}

fn coerce_value(col: &ColumnDef, v: &Value) -> Result<FeatureValue, RowError> {
    let wrong = || RowError::WrongType {
        column: col.name.to_string(),
        expected: col.expected(),
        got: describe_value(v),
    };
    let value = match (col.value_type(), v) {
        (ValueType::Text, Value::String(s)) => FeatureValue::Text(s.clone()),
        (ValueType::Timestamp, Value::String(s)) => {
            FeatureValue::Timestamp(parse_timestamp(s).ok_or_else(wrong)?)
        }
        (ValueType::Date, Value::String(s)) => {
            FeatureValue::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| wrong())?)
        }
        (ValueType::Uuid, Value::String(s)) => {
            FeatureValue::Uuid(Uuid::parse_str(s).map_err(|_| wrong())?)
        }
        (ValueType::Float, Value::Number(n)) => FeatureValue::Float(n.as_f64().ok_or_else(wrong)?),
        (ValueType::Integer, Value::Number(n)) => {
            FeatureValue::Integer(as_integer(n).ok_or_else(wrong)?)
        }
        (ValueType::Boolean, Value::Bool(b)) => FeatureValue::Boolean(*b),
        (ValueType::Json, Value::Array(_)) if col.json_type == JsonType::Array => {
            FeatureValue::Json(v.clone())
        }
        (ValueType::Json, Value::Object(_)) if col.json_type == JsonType::Object => {
            FeatureValue::Json(v.clone())
        }
        _ => return Err(wrong()),
    };
    Ok(value)
}

/// An integer, or a float with no fractional part inside the i64 range (`3.0` → 3).
fn as_integer(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // 2^63 is exactly representable; anything at or above it does not fit.
    (f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63)).then_some(f as i64)
}

/// RFC 3339, or an ISO 8601 date-time without offset (read as UTC, which is what
/// Python's `datetime.isoformat()` writes for naive values).
fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
        .map(|naive| naive.and_utc())
}

/// A coerced feature value, ready to be bound as a typed SQL parameter.
///
/// Exhaustive on purpose: every storage backend maps each variant, so a new one
/// is a breaking change that the compiler points out in each backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FeatureValue {
    /// SQL NULL.
    Null,
    /// Text.
    Text(String),
    /// A UTC timestamp.
    Timestamp(DateTime<Utc>),
    /// A calendar date.
    Date(NaiveDate),
    /// A UUID.
    Uuid(Uuid),
    /// A double.
    Float(f64),
    /// A 64-bit integer.
    Integer(i64),
    /// A boolean.
    Boolean(bool),
    /// Native JSON.
    Json(Value),
}

impl FeatureValue {
    /// The value as JSON (timestamps RFC 3339, dates `YYYY-MM-DD`).
    pub fn to_json(&self) -> Value {
        match self {
            FeatureValue::Null => Value::Null,
            FeatureValue::Text(s) => Value::String(s.clone()),
            FeatureValue::Timestamp(t) => {
                Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
            FeatureValue::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
            FeatureValue::Uuid(u) => Value::String(u.to_string()),
            FeatureValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            FeatureValue::Integer(i) => Value::from(*i),
            FeatureValue::Boolean(b) => Value::Bool(*b),
            FeatureValue::Json(v) => v.clone(),
        }
    }
}

impl FeatureValue {
    /// The storage type of this value; `None` for [`FeatureValue::Null`].
    pub fn value_type(&self) -> Option<ValueType> {
        Some(match self {
            FeatureValue::Null => return None,
            FeatureValue::Text(_) => ValueType::Text,
            FeatureValue::Timestamp(_) => ValueType::Timestamp,
            FeatureValue::Date(_) => ValueType::Date,
            FeatureValue::Uuid(_) => ValueType::Uuid,
            FeatureValue::Float(_) => ValueType::Float,
            FeatureValue::Integer(_) => ValueType::Integer,
            FeatureValue::Boolean(_) => ValueType::Boolean,
            FeatureValue::Json(_) => ValueType::Json,
        })
    }

    /// Describes the value for error messages (`text "x"`, `null`).
    pub fn describe(&self) -> String {
        let kind = match self.value_type() {
            None => return "null".into(),
            Some(ValueType::Text) => "text",
            Some(ValueType::Timestamp) => "timestamp",
            Some(ValueType::Date) => "date",
            Some(ValueType::Uuid) => "uuid",
            Some(ValueType::Float) => "float",
            Some(ValueType::Integer) => "integer",
            Some(ValueType::Boolean) => "boolean",
            Some(ValueType::Json) => "json",
        };
        format!("{kind} {}", truncate(&self.to_json().to_string(), 60))
    }
}

impl fmt::Display for FeatureValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_json() {
            Value::String(s) => f.write_str(&s),
            other => write!(f, "{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn col(
        name: &str,
        json_type: JsonType,
        format: Option<&str>,
        required: bool,
    ) -> ColumnDef {
        ColumnDef {
            name: ColumnName::new(name).unwrap(),
            json_type,
            format: format.map(str::to_string),
            required,
            description: None,
            unit: None,
        }
    }

    fn spec() -> FeatureSpec {
        FeatureSpec::table(
            Cardinality::Many,
            vec![
                col("score", JsonType::Number, None, true),
                col("count", JsonType::Integer, None, false),
                col("label", JsonType::String, None, false),
                col("seen_at", JsonType::String, Some("date-time"), false),
                col("day", JsonType::String, Some("date"), false),
                col("ref", JsonType::String, Some("uuid"), false),
                col("ok", JsonType::Boolean, None, false),
                col("tags", JsonType::Array, None, false),
                col("extra", JsonType::Object, None, false),
            ],
        )
        .unwrap()
    }

    fn row(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn coerces_every_type() {
        let values = spec()
            .coerce_row(&row(json!({
                "score": 1.5, "count": 3.0, "label": "x", "seen_at": "2024-05-01T12:00:00+02:00",
                "day": "2024-05-01", "ref": "67e55044-10b1-426f-9247-bb680e5fe0c8", "ok": true,
                "tags": ["a"], "extra": {"k": 1}
            })))
            .unwrap();
        assert_eq!(values[0], FeatureValue::Float(1.5));
        assert_eq!(values[1], FeatureValue::Integer(3));
        assert_eq!(values[2], FeatureValue::Text("x".into()));
        assert_eq!(
            values[3],
            FeatureValue::Timestamp("2024-05-01T10:00:00Z".parse().unwrap())
        );
        assert_eq!(
            values[4],
            FeatureValue::Date(NaiveDate::from_ymd_opt(2024, 5, 1).unwrap())
        );
        assert!(matches!(values[5], FeatureValue::Uuid(_)));
        assert_eq!(values[6], FeatureValue::Boolean(true));
        assert_eq!(values[7], FeatureValue::Json(json!(["a"])));
        assert_eq!(values[8], FeatureValue::Json(json!({"k": 1})));
    }

    #[test]
    fn positional_values_coerce_like_rows() {
        let object = json!({"score": 1.5, "count": 3, "label": "x", "ok": true});
        let by_name = spec().coerce_row(&row(object)).unwrap();
        let positional = spec()
            .coerce_values(&[
                json!(1.5),
                json!(3),
                json!("x"),
                Value::Null,
                Value::Null,
                Value::Null,
                json!(true),
            ])
            .unwrap();
        assert_eq!(positional, by_name);
        let err = spec().coerce_values(&[]).unwrap_err();
        assert_eq!(
            err,
            RowError::MissingRequired {
                column: "score".into()
            }
        );
        let err = spec().coerce_values(&[json!("high")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `score` expects a number, got string \"high\""
        );
    }

    #[test]
    fn naive_date_time_is_read_as_utc() {
        let values = spec()
            .coerce_row(&row(
                json!({"score": 1, "seen_at": "2024-05-01T12:00:00.250"}),
            ))
            .unwrap();
        assert_eq!(
            values[3],
            FeatureValue::Timestamp("2024-05-01T12:00:00.250Z".parse().unwrap())
        );
        assert_eq!(values[3].to_json(), json!("2024-05-01T12:00:00.250Z"));
    }

    #[test]
    fn wrong_type_names_column_and_value() {
        let err = spec()
            .coerce_row(&row(json!({"score": "high"})))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `score` expects a number, got string \"high\""
        );
        let err = spec()
            .coerce_row(&row(json!({"score": 1, "count": 1.5})))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `count` expects an integer, got number 1.5"
        );
        let err = spec()
            .coerce_row(&row(json!({"score": 1, "seen_at": "yesterday"})))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("column `seen_at` expects a date-time string"),
            "{err}"
        );
        let err = spec()
            .coerce_row(&row(json!({"score": 1, "tags": {"a": 1}})))
            .unwrap_err();
        assert!(err.to_string().contains("expects an array"), "{err}");
    }

    #[test]
    fn unknown_and_missing_columns() {
        let err = spec()
            .coerce_row(&row(json!({"score": 1, "colour": "red"})))
            .unwrap_err();
        assert!(matches!(err, RowError::UnknownColumn { ref column, .. } if column == "colour"));
        let err = spec().coerce_row(&row(json!({"count": 1}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column `score` is required but missing or null"
        );
        let err = spec().coerce_row(&row(json!({"score": null}))).unwrap_err();
        assert!(matches!(err, RowError::MissingRequired { .. }));
        let values = spec().coerce_row(&row(json!({"score": 2}))).unwrap();
        assert_eq!(values[1], FeatureValue::Null);
    }

    #[test]
    fn a_spec_without_columns_keeps_rows_whole() {
        let open = FeatureSpec::table(Cardinality::Many, vec![]).unwrap();
        assert!(open.is_open() && !spec().is_open());
        let stored = open.stored_columns();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].name.as_str(), OPEN_ROW_COLUMN);
        assert_eq!(stored[0].value_type(), ValueType::Json);
        assert_eq!(spec().stored_columns(), spec().columns());
        let whole = json!({"Any Key": [1, {"x": null}], "id": "kept", "n": 1.5});
        assert_eq!(
            open.coerce_row(&row(whole.clone())).unwrap(),
            [FeatureValue::Json(whole.clone())]
        );
        // As a step stores the values (in column order): the object is the one value.
        assert_eq!(
            open.coerce_values(std::slice::from_ref(&whole)).unwrap(),
            [FeatureValue::Json(whole)]
        );
        assert!(
            open.coerce_values(&[json!(3)]).is_err(),
            "a row is an object"
        );
    }

    #[test]
    fn spec_wire_form() {
        let spec: FeatureSpec = serde_json::from_value(json!({
            "cardinality": "one", "columns": [{"name": "x", "json_type": "integer", "required": true}]
        }))
        .unwrap();
        assert_eq!(spec.cardinality(), Cardinality::One);
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"kind": "table", "cardinality": "one",
                   "columns": [{"name": "x", "json_type": "integer", "required": true}]})
        );
        let dup = serde_json::from_value::<FeatureSpec>(json!({
            "kind": "table", "cardinality": "one",
            "columns": [{"name": "x", "json_type": "integer", "required": true},
                        {"name": "x", "json_type": "string", "required": false}]
        }));
        assert!(dup.unwrap_err().to_string().contains("declared twice"));
        let bad_kind =
            serde_json::from_value::<FeatureSpec>(json!({"kind": "graph", "cardinality": "one"}));
        assert!(bad_kind.is_err());
        let system = serde_json::from_value::<FeatureSpec>(json!({
            "cardinality": "one", "columns": [{"name": "_run_id", "json_type": "string", "required": true}]
        }));
        assert!(system.unwrap_err().to_string().contains("column name"));
        // The names the system columns had before they moved are data columns.
        let named = serde_json::from_value::<FeatureSpec>(json!({
            "cardinality": "one", "columns": [{"name": "run_id", "json_type": "string", "required": true}]
        }));
        assert_eq!(
            named.expect("run_id is a data column").columns()[0]
                .name
                .as_str(),
            "run_id"
        );
    }
}

//! Hook output fields → feature columns: the one implementation of the type mapping.
//!
//! Python extracts each field of a hook's output model into a small description
//! ([`FieldDescription`]); this module maps it to an engine [`ColumnDef`], validating
//! the column name with the engine's own rules ([`ColumnName`]).

use osa_core::feature::{Cardinality, ColumnDef, FeatureSpec, JsonType};
use osa_core::id::ColumnName;
use serde::Deserialize;

/// The kind of a field's (Optional-unwrapped) annotation, as classified by Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// `str` (and str-valued `Literal`/`Enum`).
    Str,
    /// `int` (and int-valued `Literal`/`Enum`).
    Int,
    /// `float` (also `int | float`).
    Float,
    /// `bool`.
    Bool,
    /// `datetime.datetime`.
    Datetime,
    /// `datetime.date`.
    Date,
    /// `uuid.UUID`.
    Uuid,
    /// `list[...]`, `tuple[...]`, `set[...]` and bare `list`.
    List,
    /// `dict[...]` and bare `dict`.
    Dict,
    /// A nested pydantic model, dataclass or `TypedDict`.
    Model,
    /// Anything else; it serialises to a JSON string (`Decimal`, `time`, `Any`...).
    Other,
}

/// One field of a hook's output model, as Python describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDescription {
    /// The field name (becomes the column name).
    pub name: String,
    /// The kind of its annotation, with `None` unwrapped.
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// Whether the annotation admits `None` (`X | None`, `Optional[X]`).
    #[serde(default)]
    pub optional: bool,
    /// Whether the field has a default (or a default factory).
    #[serde(default)]
    pub has_default: bool,
    /// The field's description.
    #[serde(default)]
    pub description: Option<String>,
    /// The field's unit (`Field(unit=...)`).
    #[serde(default)]
    pub unit: Option<String>,
}

/// A field that cannot become a column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// The description list is not valid JSON of the expected shape.
    #[error("invalid field description: {0}")]
    Description(String),
    /// The field name breaks the column-name rule.
    #[error("field `{field}` cannot be a feature column: {reason}")]
    Name {
        /// The field name (cut to 80 characters).
        field: String,
        /// The broken rule.
        reason: String,
    },
    /// Two fields map to the same column, or another table-level rule is broken.
    #[error("{0}")]
    Table(String),
}

/// `json_type` and `format` of a kind.
pub fn json_type_of(kind: FieldKind) -> (JsonType, Option<&'static str>) {
    match kind {
        FieldKind::Str | FieldKind::Other => (JsonType::String, None),
        FieldKind::Int => (JsonType::Integer, None),
        FieldKind::Float => (JsonType::Number, None),
        FieldKind::Bool => (JsonType::Boolean, None),
        FieldKind::Datetime => (JsonType::String, Some("date-time")),
        FieldKind::Date => (JsonType::String, Some("date")),
        FieldKind::Uuid => (JsonType::String, Some("uuid")),
        FieldKind::List => (JsonType::Array, None),
        FieldKind::Dict | FieldKind::Model => (JsonType::Object, None),
    }
}

/// Maps one field to a column. A column is required (NOT NULL) only when its type
/// does not admit `None` and it has no default.
pub fn column_of(field: &FieldDescription) -> Result<ColumnDef, ColumnError> {
    let name = ColumnName::new(field.name.as_str()).map_err(|e| ColumnError::Name {
        field: e.value().to_string(),
        reason: e.rule().to_string(),
    })?;
    let (json_type, format) = json_type_of(field.kind);
    Ok(ColumnDef {
        name,
        json_type,
        format: format.map(str::to_string),
        required: !field.optional && !field.has_default,
        description: field.description.clone(),
        unit: field.unit.clone(),
    })
}

/// Maps every field, in order, and checks the table rules (no repeated column).
pub fn columns_of(fields: &[FieldDescription]) -> Result<Vec<ColumnDef>, ColumnError> {
    let columns = fields
        .iter()
        .map(column_of)
        .collect::<Result<Vec<_>, _>>()?;
    // Same check the engine applies to a deploy payload.
    FeatureSpec::table(Cardinality::Many, columns.clone())
        .map_err(|e| ColumnError::Table(e.to_string()))?;
    Ok(columns)
}

/// [`columns_of`] over JSON: a list of field descriptions in, a list of columns out.
pub fn columns_json(fields_json: &str) -> Result<String, ColumnError> {
    let fields: Vec<FieldDescription> =
        serde_json::from_str(fields_json).map_err(|e| ColumnError::Description(e.to_string()))?;
    let columns = columns_of(&fields)?;
    Ok(serde_json::to_string(&columns).expect("columns always serialise"))
}

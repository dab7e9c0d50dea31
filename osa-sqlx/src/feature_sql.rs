//! SQL text for feature tables: DDL and column lists.
//!
//! Identifiers here come only from validated types (`HookName`, `ColumnName`), and are
//! quoted anyway; values are always bound, never interpolated.

use osa_core::feature::{ColumnDef, FeatureSpec, FeatureValue, ValueType};
use osa_core::feature_store::{ColumnFilter, FeatureQuery};
use osa_core::id::HookName;
use osa_core::{Error, Result};
use uuid::Uuid;

/// Quotes an identifier. The types that reach here allow only `[a-z0-9_]`, so the
/// quotes are belt and braces.
pub(crate) fn quote(ident: &str) -> String {
    debug_assert!(
        ident
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    );
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// System columns selected before the data columns, in this order. They start with an
/// underscore, which no data column (`ColumnName`) can.
pub(crate) const SYSTEM_SELECT: &str =
    "_id, _record_id, _validation_run_id, _run_id, _row_index, _created_at";

/// Statements moving the system columns of a feature table made before the
/// underscore namespace (`table` qualified and quoted) to their names now (each of
/// `osa_core::id::SYSTEM_COLUMNS` was its name without the underscore); indexes and
/// constraints follow the columns.
pub(crate) fn rename_legacy_system_columns(table: &str) -> Vec<String> {
    osa_core::id::SYSTEM_COLUMNS
        .iter()
        .map(|now| {
            let old = now.trim_start_matches('_');
            format!("ALTER TABLE {table} RENAME COLUMN {old} TO {now}")
        })
        .collect()
}

/// How one backend spells feature tables.
#[derive(Debug, Clone)]
pub(crate) enum Dialect {
    /// Tables in `features_schema`, foreign keys to `control_schema.hook_runs`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres {
        control_schema: String,
        features_schema: String,
    },
    /// Tables named `osa_feature__<hook>` in the main database.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
}

impl Dialect {
    /// The qualified, quoted table name of a hook's features.
    pub(crate) fn table(&self, hook: &HookName) -> String {
        match self {
            Dialect::Postgres {
                features_schema, ..
            } => format!("{}.{}", quote(features_schema), quote(hook.as_str())),
            Dialect::Sqlite => quote(&format!("osa_feature__{hook}")),
        }
    }

    fn column_type(&self, column: &ColumnDef) -> String {
        let name = quote(column.name.as_str());
        let (sql_type, check) = match (self, column.value_type()) {
            (Dialect::Postgres { .. }, ValueType::Text) => ("TEXT", None),
            (Dialect::Postgres { .. }, ValueType::Timestamp) => ("TIMESTAMPTZ", None),
            (Dialect::Postgres { .. }, ValueType::Date) => ("DATE", None),
            (Dialect::Postgres { .. }, ValueType::Uuid) => ("UUID", None),
            (Dialect::Postgres { .. }, ValueType::Float) => ("DOUBLE PRECISION", None),
            (Dialect::Postgres { .. }, ValueType::Integer) => ("BIGINT", None),
            (Dialect::Postgres { .. }, ValueType::Boolean) => ("BOOLEAN", None),
            (Dialect::Postgres { .. }, ValueType::Json) => ("JSONB", None),
            (
                Dialect::Sqlite,
                ValueType::Text | ValueType::Timestamp | ValueType::Date | ValueType::Uuid,
            ) => ("TEXT", Some(format!("typeof({name}) = 'text'"))),
            (Dialect::Sqlite, ValueType::Float) => (
                "REAL",
                Some(format!("typeof({name}) IN ('real', 'integer')")),
            ),
            (Dialect::Sqlite, ValueType::Integer) => {
                ("INTEGER", Some(format!("typeof({name}) = 'integer'")))
            }
            (Dialect::Sqlite, ValueType::Boolean) => ("INTEGER", Some(format!("{name} IN (0, 1)"))),
            (Dialect::Sqlite, ValueType::Json) => ("TEXT", Some(format!("json_valid({name})"))),
        };
        let not_null = if column.required { " NOT NULL" } else { "" };
        match check {
            Some(check) if column.required => {
                format!("{name} {sql_type}{not_null} CHECK ({check})")
            }
            Some(check) => format!("{name} {sql_type} CHECK ({name} IS NULL OR {check})"),
            None => format!("{name} {sql_type}{not_null}"),
        }
    }

    /// Adds the JSON column of an open spec (a hook with no declared columns) to a
    /// table made before open rows were kept (Postgres: a no-op when it exists).
    pub(crate) fn add_open_row_column(&self, hook: &HookName, spec: &FeatureSpec) -> String {
        let if_not_exists = match self {
            Dialect::Postgres { .. } => "IF NOT EXISTS ",
            Dialect::Sqlite => "",
        };
        let column = spec
            .stored_columns()
            .first()
            .map(|c| self.column_type(c))
            .unwrap_or_default();
        format!(
            "ALTER TABLE {} ADD COLUMN {if_not_exists}{column}",
            self.table(hook)
        )
    }

    /// Statements creating the table and its indexes (idempotent).
    pub(crate) fn create_table(&self, hook: &HookName, spec: &FeatureSpec) -> Vec<String> {
        let table = self.table(hook);
        let (id, uuid, ts, now, runs) = match self {
            Dialect::Postgres { control_schema, .. } => (
                "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                "UUID",
                "TIMESTAMPTZ",
                "now()",
                format!("{}.hook_runs", quote(control_schema)),
            ),
            Dialect::Sqlite => (
                "INTEGER PRIMARY KEY",
                "BLOB",
                "TEXT",
                "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                "hook_runs".to_string(),
            ),
        };
        let mut columns = vec![
            format!("_id {id}"),
            "_record_id TEXT NOT NULL".to_string(),
            format!("_validation_run_id {uuid}"),
            format!("_run_id {uuid} NOT NULL REFERENCES {runs} (id)"),
            "_row_index INTEGER NOT NULL".to_string(),
            format!("_created_at {ts} NOT NULL DEFAULT {now}"),
        ];
        columns.extend(spec.stored_columns().iter().map(|c| self.column_type(c)));
        let index_name = |suffix: &str| match self {
            Dialect::Postgres { .. } => quote(&format!("{hook}_{suffix}")),
            Dialect::Sqlite => quote(&format!("osa_feature__{hook}_{suffix}")),
        };
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {table} (\n    {}\n)",
                columns.join(",\n    ")
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {table} (_record_id)",
                index_name("record_id_idx")
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS {} ON {table} (_run_id)",
                index_name("run_id_idx")
            ),
        ]
    }

    /// `"a", "b", ...` for the data columns.
    pub(crate) fn data_columns(spec: &FeatureSpec) -> Vec<String> {
        spec.stored_columns()
            .iter()
            .map(|c| quote(c.name.as_str()))
            .collect()
    }
}

/// Arguments of one backend, for building filtered feature queries once.
pub(crate) trait FeatureArgs: Default {
    /// Adds a typed feature value.
    fn push_value(&mut self, value: &FeatureValue) -> Result<()>;
    /// Adds text.
    fn push_text(&mut self, text: &str) -> Result<()>;
    /// Adds a UUID.
    fn push_uuid(&mut self, id: Uuid) -> Result<()>;
    /// Adds an integer.
    fn push_i64(&mut self, n: i64) -> Result<()>;
    /// The placeholder of the argument added last (`?`, `$3`).
    fn placeholder(&self) -> String;
}

/// Error for a value the driver refused to bind.
pub(crate) fn bind_error(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("binding a query argument: {e}"))
}

/// `AND`-ed conditions and their arguments for a feature query. Filters on unknown
/// columns or with values of the wrong type are Invalid.
pub(crate) fn query_conditions<A: FeatureArgs>(
    spec: &FeatureSpec,
    query: &FeatureQuery,
) -> Result<(String, A)> {
    let mut args = A::default();
    let mut conditions = vec!["TRUE".to_string()];
    if let Some(record) = &query.record_id {
        args.push_text(record.as_str())?;
        conditions.push(format!("_record_id = {}", args.placeholder()));
    }
    if let Some(run) = query.run_id {
        args.push_uuid(run.0)?;
        conditions.push(format!("_run_id = {}", args.placeholder()));
    }
    if let Some(after) = query.after {
        args.push_i64(after)?;
        conditions.push(format!("_id > {}", args.placeholder()));
    }
    for filter in &query.filters {
        let (column, op, value) = match filter {
            ColumnFilter::Eq(c, v) => (c, "=", Some(v)),
            ColumnFilter::Gte(c, v) => (c, ">=", Some(v)),
            ColumnFilter::Lte(c, v) => (c, "<=", Some(v)),
            ColumnFilter::IsNull(c) => (c, "IS NULL", None),
            ColumnFilter::IsNotNull(c) => (c, "IS NOT NULL", None),
        };
        let def = spec
            .stored_columns()
            .iter()
            .find(|d| &d.name == column)
            .ok_or_else(|| Error::invalid("filter", format!("unknown column `{column}`")))?;
        let quoted = quote(column.as_str());
        match value {
            Some(value) => {
                if value.value_type() != Some(def.value_type()) {
                    return Err(Error::invalid(
                        format!("filter.{column}"),
                        format!(
                            "column `{column}` expects {}, got {}",
                            def.expected(),
                            value.describe()
                        ),
                    ));
                }
                args.push_value(value)?;
                conditions.push(format!("{quoted} {op} {}", args.placeholder()));
            }
            None => conditions.push(format!("{quoted} {op}")),
        }
    }
    Ok((conditions.join(" AND "), args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use osa_core::testing::every_type_identity;

    #[test]
    fn ddl_types_follow_the_contract() {
        let identity = every_type_identity("probe");
        let pg = Dialect::Postgres {
            control_schema: "osa".into(),
            features_schema: "osa_features".into(),
        };
        let ddl = pg
            .create_table(&identity.name, &identity.feature)
            .join("\n");
        for expected in [
            "\"osa_features\".\"probe\"",
            "\"label\" TEXT NOT NULL",
            "\"score\" DOUBLE PRECISION",
            "\"count\" BIGINT",
            "\"ok\" BOOLEAN",
            "\"seen_at\" TIMESTAMPTZ",
            "\"day\" DATE",
            "\"ref\" UUID",
            "\"tags\" JSONB",
            "_run_id UUID NOT NULL REFERENCES \"osa\".hook_runs (id)",
        ] {
            assert!(ddl.contains(expected), "missing {expected} in\n{ddl}");
        }
        let ddl = Dialect::Sqlite
            .create_table(&identity.name, &identity.feature)
            .join("\n");
        assert!(ddl.contains("\"osa_feature__probe\""), "{ddl}");
        assert!(
            ddl.contains("\"ok\" INTEGER CHECK (\"ok\" IS NULL OR \"ok\" IN (0, 1))"),
            "{ddl}"
        );
        assert!(ddl.contains("json_valid(\"extra\")"), "{ddl}");
    }
}

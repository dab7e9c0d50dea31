//! OpenAPI schemas of OSA's types (feature `openapi`): every type the HTTP API reads
//! or answers implements [`utoipa::ToSchema`], so a `#[utoipa::path]` operation can
//! name it as a request or response body.
//!
//! The schemas come from the types' [`schemars::JsonSchema`] derives, the same source
//! as the deploy payload schemas ([`crate::deploy::payload_schemas`]): one description
//! per type, whichever document shows it. A type's JSON Schema (2020-12, the dialect of
//! OpenAPI 3.1) is converted to utoipa's model as it is; its `$defs` become components
//! beside it and every `$ref` is rewritten to `#/components/schemas/{name}`.
//!
//! The schemas describe what the types accept (serde's deserialize side). For OSA's
//! types that is also what they produce, except that a field with a default may be
//! left out of the schema's `required` list while every answer carries it.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

/// The schema of `T` and the components it refers to (its `$defs`), converted to
/// utoipa's model, with every reference pointing under `#/components/schemas/`.
///
/// # Panics
///
/// When schemars produces a schema utoipa cannot represent; the conversion test of
/// every type in this module guards against that.
pub fn schema_of<T: JsonSchema>() -> (RefOr<Schema>, Vec<(String, RefOr<Schema>)>) {
    let (root, defs) = json_schema_of::<T>();
    let convert = |name: &str, value: Value| -> RefOr<Schema> {
        serde_json::from_value(value)
            .unwrap_or_else(|e| panic!("the schema of {name} does not convert to OpenAPI: {e}"))
    };
    let name = T::schema_name();
    let components = defs
        .into_iter()
        .map(|(def, value)| {
            let schema = convert(&def, value);
            (def, schema)
        })
        .collect();
    (convert(&name, root), components)
}

/// The JSON Schema of `T` in the form [`schema_of`] converts: without `$schema` and
/// `title`, its `$defs` taken out (name, schema), each schema adapted to utoipa's
/// model: `const` as a one-value `enum`, a `$ref` with a `default` inside an `allOf`,
/// typeless schemas with every JSON type listed, a flattened enum's object and choice
/// in an `allOf`.
pub fn json_schema_of<T: JsonSchema>() -> (Value, Vec<(String, Value)>) {
    let mut root = schemars::SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .to_value();
    let name = T::schema_name();
    let mut defs = Vec::new();
    if let Some(object) = root.as_object_mut() {
        object.remove("$schema");
        // As a component, the root is a definition like its `$defs`, which have none.
        object.remove("title");
        if let Some(Value::Object(found)) = object.remove("$defs") {
            for (def, mut schema) in found {
                adapt(&mut schema, &name);
                defs.push((def, schema));
            }
        }
    }
    adapt(&mut root, &name);
    (root, defs)
}

/// Adapts a schema of a standalone JSON Schema named `root` to a component: its
/// `$ref`s point at the components (`#/$defs/X` → `#/components/schemas/X`, `#` →
/// `#/components/schemas/{root}`), and what utoipa's model lacks is written in
/// words it has, meaning the same:
/// - `const: v` → `enum: [v]`;
/// - a `$ref` with keywords other than `description` → an `allOf` of that one
///   reference (utoipa's reference keeps only `description` and `summary`);
/// - a schema without a type (`true`, or `{}` with only annotations, as for a
///   `serde_json::Value`) → every JSON type listed (utoipa needs a `type`);
/// - a `oneOf`/`anyOf` beside other keywords (a flattened enum's object) → an
///   `allOf` of the rest and the choice (utoipa keeps one or the other);
/// - `default: null` is dropped (utoipa cannot tell it from no default).
///
/// Only schema positions are visited (not `default` or `enum` values).
fn adapt(schema: &mut Value, root: &str) {
    const ANY: [&str; 6] = ["null", "boolean", "object", "array", "number", "string"];
    if *schema == Value::Bool(true) {
        *schema = Value::Object(Default::default());
    }
    let Value::Object(map) = schema else { return };
    if let Some(constant) = map.remove("const") {
        map.insert("enum".into(), Value::Array(vec![constant]));
    }
    if map.get("default") == Some(&Value::Null) {
        map.remove("default");
    }
    if let Some(Value::String(target)) = map.get_mut("$ref") {
        if let Some(def) = target.strip_prefix("#/$defs/") {
            *target = format!("#/components/schemas/{def}");
        } else if target == "#" {
            *target = format!("#/components/schemas/{root}");
        }
    }
    let bare = |key: &String| matches!(key.as_str(), "$ref" | "description" | "summary");
    if map.contains_key("$ref") && !map.keys().all(bare) {
        let target = map.remove("$ref").unwrap_or_default();
        map.insert("allOf".into(), serde_json::json!([{"$ref": target}]));
    }
    for composite in ["oneOf", "anyOf"] {
        let alone = |key: &String| key == composite || key == "description";
        if map.contains_key(composite) && !map.keys().all(alone) {
            let choice = map.remove(composite).unwrap_or_default();
            let description = map.remove("description");
            let rest = Value::Object(std::mem::take(map));
            map.insert(
                "allOf".into(),
                serde_json::json!([rest, {composite: choice}]),
            );
            if let Some(description) = description {
                map.insert("description".into(), description);
            }
        }
    }
    let typed = ["type", "$ref", "oneOf", "anyOf", "allOf"];
    if !typed.iter().any(|k| map.contains_key(*k)) {
        map.insert("type".into(), serde_json::json!(ANY));
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "items" | "additionalProperties" | "not" if child.is_object() || *child == true => {
                adapt(child, root)
            }
            "properties" | "patternProperties" => {
                if let Value::Object(children) = child {
                    children.values_mut().for_each(|c| adapt(c, root));
                }
            }
            "oneOf" | "anyOf" | "allOf" | "prefixItems" => {
                if let Value::Array(children) = child {
                    children.iter_mut().for_each(|c| adapt(c, root));
                }
            }
            _ => {}
        }
    }
}

/// Implements [`utoipa::PartialSchema`] and [`utoipa::ToSchema`] from the types'
/// `JsonSchema`, under the names schemars gives them, and lists them in
/// [`described`].
macro_rules! openapi_schemas {
    ($($ty:ty),* $(,)?) => {
        $(
            impl utoipa::PartialSchema for $ty {
                fn schema() -> RefOr<Schema> {
                    schema_of::<$ty>().0
                }
            }
            impl utoipa::ToSchema for $ty {
                fn name() -> Cow<'static, str> {
                    <$ty as JsonSchema>::schema_name()
                }
                fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                    schemas.extend(schema_of::<$ty>().1);
                }
            }
        )*

        /// Every type this module describes: its name and its JSON Schema as
        /// [`json_schema_of`] gives it (for checks that the conversion keeps every
        /// keyword and that types agree on the components they share).
        pub fn described() -> Vec<(Cow<'static, str>, Value, Vec<(String, Value)>)> {
            vec![$({
                let (root, defs) = json_schema_of::<$ty>();
                (<$ty as JsonSchema>::schema_name(), root, defs)
            }),*]
        }
    };
}

openapi_schemas!(
    crate::auth::Role,
    crate::auth::Scope,
    crate::id::ConventionSlug,
    crate::id::DeploymentId,
    crate::id::FileName,
    crate::id::Digest,
    crate::id::HookName,
    crate::id::HookRunId,
    crate::id::RecordId,
    crate::id::ReleaseId,
    crate::id::SchemaId,
    crate::id::ValidationRunId,
    crate::hook::HookRunStatus,
    crate::hook::OutcomeCounts,
    crate::convention::Convention,
    crate::deploy::DeployConvention,
    crate::deploy::Deployment,
    crate::deploy::DeploymentKind,
    crate::deploy::DeploymentStatus,
    crate::deploy::DeploymentEvent,
    crate::deploy::ReleaseRequest,
    crate::deploy::SetLiveRequest,
    crate::feature::ColumnDef,
    crate::feature::FeatureSpec,
    crate::hook::Hook,
    crate::hook::HookRelease,
    crate::hook::HookRun,
    crate::hook::ReleaseOutcome,
    crate::runtime::RuntimeConfig,
    crate::validation::InputRecord,
    crate::validation::RunEvent,
    crate::validation::RunStatus,
    crate::validation::ValidationRunView,
    crate::validation::ValidationRunSummary,
    crate::validation::RecordPage,
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every schema survives the trip through utoipa's model keyword for keyword (a
    /// keyword utoipa does not know would vanish from the document).
    #[test]
    fn schemas_convert_without_loss() {
        for (name, root, defs) in described() {
            for (what, value) in std::iter::once((name.to_string(), root)).chain(defs) {
                let converted: RefOr<Schema> =
                    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
                let back = serde_json::to_value(&converted).unwrap();
                assert_eq!(
                    normalise(back),
                    normalise(value),
                    "{what} (in {name}) changes through utoipa's model"
                );
            }
        }
    }

    /// Two types that define a component of the same name define it the same way.
    #[test]
    fn components_agree_across_types() {
        let mut seen = std::collections::BTreeMap::<String, (String, Value)>::new();
        for (name, root, defs) in described() {
            for (def, value) in std::iter::once((name.to_string(), root)).chain(defs) {
                match seen.get(&def) {
                    Some((first, existing)) => assert_eq!(
                        existing, &value,
                        "{def} is defined differently by {first} and {name}"
                    ),
                    None => {
                        seen.insert(def, (name.to_string(), value));
                    }
                }
            }
        }
        assert!(seen.len() > 20, "{:?}", seen.keys());
    }

    /// Sorts nothing, but drops what serialisation may order or spell differently:
    /// object key order is already irrelevant to `Value` equality; integers written
    /// as floats (`1.0`) are compared as numbers.
    fn normalise(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, normalise(v))).collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(normalise).collect()),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
                _ => Value::Number(n),
            },
            other => other,
        }
    }
}

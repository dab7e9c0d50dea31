//! Checks a release-less convention manifest against the engine's deploy rules.

use osa_core::deploy::{DeployConvention, parse_payload};
use osa_core::id::ConventionSlug;
use serde_json::{Value, json};

/// The release given to components that have none, so that the engine's payload type
/// (which requires one) can check everything else.
fn placeholder_release() -> Value {
    json!({
        "command": ["osa-run-hook"],
        "digest": format!("sha256:{}", "0".repeat(64)),
        "source_ref": "manifest-check",
    })
}

/// Checks one convention body (the `osa manifest` shape, releases optional) with the
/// engine's own parser: unknown keys, types, semver, schema id, hook and column names,
/// file requirements and limits; then the slug derived from the title, a non-blank
/// description and unique hook names. The docs gate is not applied here.
///
/// The error names the offending path (`hooks[0].feature.columns[1].name: ...`).
pub fn check_convention(body: &str) -> Result<(), String> {
    let mut value: Value = serde_json::from_str(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if let Some(hooks) = value.get_mut("hooks").and_then(Value::as_array_mut) {
        for hook in hooks {
            if let Value::Object(hook) = hook {
                hook.entry("release").or_insert_with(placeholder_release);
            }
        }
    }
    if let Some(Value::Object(ingester)) = value.get_mut("ingester") {
        ingester
            .entry("release")
            .or_insert_with(placeholder_release);
    }
    let bytes = serde_json::to_vec(&value).expect("JSON values always serialise");
    let payload: DeployConvention = parse_payload(&bytes).map_err(|e| e.to_string())?;
    ConventionSlug::from_title(&payload.title).map_err(|e| format!("invalid title: {e}"))?;
    if payload.description.trim().is_empty() {
        return Err("invalid description: must not be blank".into());
    }
    for (i, hook) in payload.hooks.iter().enumerate() {
        if payload.hooks[..i].iter().any(|h| h.name == hook.name) {
            return Err(format!(
                "invalid hooks[{i}].name: hook `{}` is listed twice",
                hook.name
            ));
        }
    }
    Ok(())
}

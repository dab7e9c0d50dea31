//! Fixtures: sample payloads, identities and digests.

use crate::deploy::DeployConvention;
use crate::feature::{Cardinality, ColumnDef, FeatureSpec, JsonType};
use crate::hook::HookIdentity;
use crate::id::{ColumnName, Digest, HookName};

/// A deploy payload in the exact shape the published Python SDK sends (two hooks,
/// an ingester, docs), as shipped in `tests/fixtures/deploy_sdk.json`.
pub const SDK_DEPLOY_PAYLOAD: &str = include_str!("../../tests/fixtures/deploy_sdk.json");

/// [`SDK_DEPLOY_PAYLOAD`], parsed.
pub fn sdk_deploy_payload() -> DeployConvention {
    crate::deploy::parse_payload(SDK_DEPLOY_PAYLOAD.as_bytes()).expect("the SDK fixture parses")
}

/// A column definition.
pub fn column(name: &str, json_type: JsonType, format: Option<&str>, required: bool) -> ColumnDef {
    ColumnDef {
        name: ColumnName::new(name).expect("valid column name"),
        json_type,
        format: format.map(str::to_string),
        required,
        description: None,
        unit: None,
    }
}

/// A hook identity with one column of every storage type.
pub fn every_type_identity(name: &str) -> HookIdentity {
    HookIdentity {
        name: HookName::new(name).expect("valid hook name"),
        feature: FeatureSpec::table(
            Cardinality::Many,
            vec![
                column("label", JsonType::String, None, true),
                column("score", JsonType::Number, None, false),
                column("count", JsonType::Integer, None, false),
                column("ok", JsonType::Boolean, None, false),
                column("seen_at", JsonType::String, Some("date-time"), false),
                column("day", JsonType::String, Some("date"), false),
                column("ref", JsonType::String, Some("uuid"), false),
                column("tags", JsonType::Array, None, false),
                column("extra", JsonType::Object, None, false),
            ],
        )
        .expect("distinct columns"),
    }
}

/// A distinct, valid digest for test number `n`.
pub fn digest(n: u64) -> Digest {
    Digest::of_bytes(&n.to_le_bytes())
}

/// A deploy body of the end-to-end tests: one process hook per `(name, config)`, each
/// running `command` (with its config) within `timeout_seconds`, every hook writing
/// rows `{hook, score}`; `.txt` record files. A release's digest is that of its name
/// and config, so the same hooks deploy as the same releases.
pub fn process_convention(
    title: &str,
    hooks: &[(&str, serde_json::Value)],
    command: &[&str],
    timeout_seconds: u32,
) -> serde_json::Value {
    use serde_json::json;

    let hooks: Vec<serde_json::Value> = hooks
        .iter()
        .map(|(name, config)| {
            json!({
                "name": name,
                "feature": {"kind": "table", "cardinality": "one", "columns": [
                    {"name": "hook", "json_type": "string", "required": true},
                    {"name": "score", "json_type": "number", "required": true}
                ]},
                "config": config,
                "limits": {"timeout_seconds": timeout_seconds, "memory": "1g", "cpu": "1"},
                "release": {
                    "command": command,
                    "digest": Digest::of_bytes(format!("{name}{config}").as_bytes()),
                    "source_ref": "git:test"
                }
            })
        })
        .collect();
    json!({
        "title": title,
        "description": "End-to-end test convention",
        "schema": {"id": "test-schema", "version": "1.0.0", "fields": []},
        "file_requirements": {"accepted_types": [".txt"], "max_count": 3, "max_file_size": 1048576},
        "hooks": hooks,
        "docs": {
            "purpose": "Testing the saga",
            "example_questions": ["Which records pass?", "Which fail?"],
            "examples": [{"question": "What scores?", "query": "score > 1", "interpretation": "long ids"}]
        }
    })
}

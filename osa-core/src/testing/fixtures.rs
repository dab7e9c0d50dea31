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

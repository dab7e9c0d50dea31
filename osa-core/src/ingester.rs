//! Ingesters: programs that pull records from an upstream source into an archive.
//!
//! A convention may name one; it is stored with the convention as deployed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::runtime::{Limits, ReleaseArtifact};

/// An ingester's cron schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngesterSchedule {
    /// Cron expression.
    pub cron: String,
    /// Records per scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// An ingester's first run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitialRun {
    /// Records in the first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// An ingester in a deploy (stored with the convention; OSA does not run ingesters yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngesterDeploy {
    /// Ingester name.
    pub name: String,
    /// Its configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Its limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Its schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<IngesterSchedule>,
    /// Its first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_run: Option<InitialRun>,
    /// Its build artifact.
    pub release: ReleaseArtifact,
}

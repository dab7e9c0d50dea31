//! Hooks, their immutable releases and the provenance of each execution.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::feature::FeatureSpec;
use crate::id::{Digest, HookName, HookRunId, ReleaseId};
use crate::runtime::RuntimeConfig;

/// A hook's identity: its name and its feature contract, fixed forever.
///
/// Re-declaring a hook with any difference in `feature` is a Conflict.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HookIdentity {
    /// The hook's name (also its feature table's name).
    pub name: HookName,
    /// The output contract.
    pub feature: FeatureSpec,
}

impl HookIdentity {
    /// Describes how `other` differs from this identity, or `None` when equal.
    ///
    /// Used for the Conflict message when a deploy changes a contract.
    pub fn difference(&self, other: &HookIdentity) -> Option<String> {
        if self == other {
            return None;
        }
        if self.feature.cardinality() != other.feature.cardinality() {
            return Some(format!(
                "cardinality changes from {:?} to {:?}",
                self.feature.cardinality(),
                other.feature.cardinality()
            ));
        }
        let (old, new) = (self.feature.columns(), other.feature.columns());
        for (i, (a, b)) in old.iter().zip(new).enumerate() {
            if a != b {
                return Some(if a.name != b.name {
                    format!("column {} changes from `{}` to `{}`", i + 1, a.name, b.name)
                } else {
                    format!("column `{}` changes definition", a.name)
                });
            }
        }
        Some(format!(
            "the number of columns changes from {} to {}",
            old.len(),
            new.len()
        ))
    }
}

/// A hook as the registry stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hook {
    /// Name and contract.
    pub identity: HookIdentity,
    /// The live release, if any release exists.
    pub live: Option<HookRelease>,
    /// When the identity was first registered.
    pub created_at: DateTime<Utc>,
}

/// An immutable, versioned release of a hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HookRelease {
    /// Release id.
    pub id: ReleaseId,
    /// The hook it belongs to.
    pub hook: HookName,
    /// 1, 2, 3… per hook, gap-free.
    pub version: u32,
    /// How it runs (image or command, digest, config, limits).
    pub runtime: RuntimeConfig,
    /// Where the code came from (`git:abc1234`).
    pub source_ref: String,
    /// The principal that created it.
    pub built_by: Option<String>,
    /// When it was created.
    pub built_at: DateTime<Utc>,
}

impl HookRelease {
    /// The release's content digest.
    pub fn digest(&self) -> &Digest {
        self.runtime.digest()
    }
}

/// A request to create a release; the registry assigns id, version and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRelease {
    /// The hook (its identity must exist).
    pub hook: HookName,
    /// How it runs.
    pub runtime: RuntimeConfig,
    /// Where the code came from.
    pub source_ref: String,
    /// The principal creating it.
    pub built_by: Option<String>,
}

/// The result of creating a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReleaseOutcome {
    /// The new release, or the existing one with the same digest.
    pub release: HookRelease,
    /// `true` when a new version was minted (and became live); `false` when the digest
    /// already existed (live untouched).
    pub created: bool,
}

/// The result of moving a hook's live pointer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveChange {
    /// The release that was live before, if any.
    pub previous: Option<HookRelease>,
    /// The release that is live now.
    pub current: HookRelease,
}

/// How one hook execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HookRunStatus {
    /// Every record got an outcome; none were rejected.
    Passed,
    /// At least one record was rejected.
    Failed,
    /// The execution failed or some records errored.
    Error,
}

impl HookRunStatus {
    /// The lower-case name stored in databases.
    pub fn as_str(self) -> &'static str {
        match self {
            HookRunStatus::Passed => "passed",
            HookRunStatus::Failed => "failed",
            HookRunStatus::Error => "error",
        }
    }
}

/// Per-outcome record counts of an execution or a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct OutcomeCounts {
    /// Records that passed.
    pub passed: u32,
    /// Records that were rejected.
    pub rejected: u32,
    /// Records that errored.
    pub errored: u32,
}

impl OutcomeCounts {
    /// All records counted.
    pub fn total(&self) -> u32 {
        self.passed + self.rejected + self.errored
    }

    /// The run status these counts imply.
    pub fn status(&self) -> HookRunStatus {
        if self.errored > 0 {
            HookRunStatus::Error
        } else if self.rejected > 0 {
            HookRunStatus::Failed
        } else {
            HookRunStatus::Passed
        }
    }
}

/// Provenance of one hook execution: append-only, written once, insert-once on `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HookRun {
    /// Deterministic id ([`HookRunId::for_step`]).
    pub id: HookRunId,
    /// The release that ran.
    pub release_id: ReleaseId,
    /// How it ended.
    pub status: HookRunStatus,
    /// Start of the first attempt.
    pub started_at: DateTime<Utc>,
    /// End of the last attempt.
    pub finished_at: DateTime<Utc>,
    /// Wall-clock seconds over all attempts.
    pub duration_s: f64,
    /// How many times memory was doubled after an OOM.
    pub oom_retries: u32,
    /// Object-store key of the captured log (failed executions only).
    pub log_ref: Option<String>,
    /// sha256 of the `records.jsonl` the hook read.
    pub input_sha256: Option<Digest>,
    /// Outcome counts.
    pub counts: OutcomeCounts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::Cardinality;
    use serde_json::json;

    fn identity(columns: serde_json::Value) -> HookIdentity {
        serde_json::from_value(json!({
            "name": "pockets",
            "feature": {"kind": "table", "cardinality": "many", "columns": columns}
        }))
        .unwrap()
    }

    #[test]
    fn identity_difference_is_described() {
        let a = identity(json!([{"name": "score", "json_type": "number", "required": true}]));
        assert_eq!(a.difference(&a.clone()), None);
        let b = identity(
            json!([{"name": "score", "json_type": "number", "required": true, "description": "x"}]),
        );
        assert_eq!(
            a.difference(&b).unwrap(),
            "column `score` changes definition"
        );
        let c = identity(json!([]));
        assert_eq!(
            a.difference(&c).unwrap(),
            "the number of columns changes from 1 to 0"
        );
        let mut d = a.clone();
        d.feature = FeatureSpec::table(Cardinality::One, a.feature.columns().to_vec()).unwrap();
        assert!(a.difference(&d).unwrap().contains("cardinality"));
    }

    #[test]
    fn counts_imply_status() {
        let c = |p, r, e| OutcomeCounts {
            passed: p,
            rejected: r,
            errored: e,
        };
        assert_eq!(c(3, 0, 0).status(), HookRunStatus::Passed);
        assert_eq!(c(3, 1, 0).status(), HookRunStatus::Failed);
        assert_eq!(c(3, 1, 1).status(), HookRunStatus::Error);
        assert_eq!(c(3, 1, 1).total(), 5);
    }
}

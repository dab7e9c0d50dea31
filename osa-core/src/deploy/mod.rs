//! Deploy payloads (compatible with the published SDK's `POST /conventions` body),
//! the deploy plan, and the audit log of deployments.

mod service;

pub use service::{DeployOutcome, Deployer};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::convention::{Convention, ConventionDocs, FileRequirements, SchemaSpec};
use crate::error::Error;
use crate::feature::FeatureSpec;
use crate::hook::{HookIdentity, LiveChange, NewRelease, ReleaseOutcome};
use crate::id::{ConventionSlug, DeploymentId, Digest, HookName, ReleaseId};
use crate::runtime::Limits;

pub use crate::ingester::{IngesterDeploy, IngesterSchedule, InitialRun};
pub use crate::runtime::ReleaseArtifact;

/// Parses a JSON payload, rejecting unknown keys at every level; errors name the path
/// of the offending value (`hooks[0].feature.columns[1]: unknown field ...`).
///
/// The body must be a JSON object (serde would otherwise also accept a struct written
/// as an array).
pub fn parse_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Error::invalid("body", "expected a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        Error::invalid(field, e.into_inner().to_string())
    })?;
    Ok(value)
}

/// JSON Schemas of the payloads users send, keyed by type name.
pub fn payload_schemas() -> std::collections::BTreeMap<&'static str, serde_json::Value> {
    let schema = |s: schemars::Schema| s.to_value();
    [
        (
            "DeployConvention",
            schema(schemars::schema_for!(DeployConvention)),
        ),
        (
            "ReleaseRequest",
            schema(schemars::schema_for!(ReleaseRequest)),
        ),
        (
            "SetLiveRequest",
            schema(schemars::schema_for!(SetLiveRequest)),
        ),
    ]
    .into_iter()
    .collect()
}

/// One hook in a deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HookDeploy {
    /// Hook name.
    pub name: HookName,
    /// Output contract (fixed forever).
    pub feature: FeatureSpec,
    /// Configuration handed to the hook (`{}` by default).
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// The build artifact.
    pub release: ReleaseArtifact,
}

/// The body of `POST /conventions`: a convention with its hooks and releases.
///
/// Compatible with the published SDK's deploy payload; unknown keys are rejected at
/// every level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployConvention {
    /// Title; the slug is derived from it.
    pub title: String,
    /// Non-blank description.
    pub description: String,
    /// Metadata schema.
    pub schema: SchemaSpec,
    /// File rules.
    pub file_requirements: FileRequirements,
    /// Hooks, in execution order.
    #[serde(default)]
    pub hooks: Vec<HookDeploy>,
    /// Optional ingester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingester: Option<IngesterDeploy>,
    /// Documentation (checked by the docs gate).
    pub docs: ConventionDocs,
}

/// A validated deploy: what one atomic apply writes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployPlan {
    /// The convention's slug.
    pub slug: ConventionSlug,
    /// Hook identities to upsert (Conflict on change).
    pub identities: Vec<HookIdentity>,
    /// Releases to create (idempotent on digest).
    pub releases: Vec<NewRelease>,
    /// The validated payload.
    pub payload: DeployConvention,
}

/// Most hooks one convention lists (each is a step of every validation, and a deploy
/// applies them all in one transaction).
pub const MAX_HOOKS: usize = 64;

impl DeployConvention {
    /// Checks every rule serde cannot (slug from title, non-blank description, docs
    /// gate, unique hook names, release artifacts) and builds the plan. `principal`
    /// becomes `built_by` of new releases; it comes from the verified caller, never
    /// from the payload.
    pub fn plan(self, principal: Option<&str>) -> Result<DeployPlan> {
        let slug = ConventionSlug::from_title(&self.title)
            .map_err(|e| Error::invalid("title", e.to_string()))?;
        if self.description.trim().is_empty() {
            return Err(Error::invalid("description", "must not be blank"));
        }
        self.docs.gate(&self.title)?;
        if self.hooks.len() > MAX_HOOKS {
            return Err(Error::invalid(
                "hooks",
                format!(
                    "{} hooks; a convention has at most {MAX_HOOKS}",
                    self.hooks.len()
                ),
            ));
        }
        let mut identities = Vec::with_capacity(self.hooks.len());
        let mut releases = Vec::with_capacity(self.hooks.len());
        let mut names = std::collections::HashSet::with_capacity(self.hooks.len());
        for (i, hook) in self.hooks.iter().enumerate() {
            if !names.insert(&hook.name) {
                return Err(Error::invalid(
                    format!("hooks[{i}].name"),
                    format!("hook `{}` is listed twice", hook.name),
                ));
            }
            let runtime = hook.release.runtime(
                hook.config.clone(),
                hook.limits,
                &format!("hooks[{i}].release"),
            )?;
            identities.push(HookIdentity {
                name: hook.name.clone(),
                feature: hook.feature.clone(),
            });
            releases.push(NewRelease {
                hook: hook.name.clone(),
                runtime,
                source_ref: hook.release.source_ref.clone(),
                built_by: principal.map(str::to_string),
            });
        }
        if let Some(ingester) = &self.ingester {
            ingester.release.runtime(
                ingester.config.clone().unwrap_or_default(),
                ingester.limits.unwrap_or_default(),
                "ingester.release",
            )?;
        }
        Ok(DeployPlan {
            slug,
            identities,
            releases,
            payload: self,
        })
    }

    /// The canonical bytes of this payload (stored as the audit blob and hashed).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a deploy payload always serialises")
    }
}

/// The body of `POST /hooks/{name}/releases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// OCI image (exactly one of `image` and `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Local command (exactly one of `image` and `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Content digest.
    pub digest: Digest,
    /// Configuration handed to the hook.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Where the code came from.
    pub source_ref: String,
}

impl ReleaseRequest {
    /// The release to create for `hook`, built by `principal`.
    pub fn into_new_release(self, hook: HookName, principal: Option<&str>) -> Result<NewRelease> {
        let artifact = ReleaseArtifact {
            image: self.image,
            command: self.command,
            digest: self.digest,
            source_ref: self.source_ref,
        };
        let runtime = artifact.runtime(self.config, self.limits, "body")?;
        Ok(NewRelease {
            hook,
            runtime,
            source_ref: artifact.source_ref,
            built_by: principal.map(str::to_string),
        })
    }
}

/// The body of `PUT /hooks/{name}/live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLiveRequest {
    /// The version to make live.
    pub version: u32,
}

/// What a deployment changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeploymentKind {
    /// A convention deploy (identities, releases, convention, tables).
    Convention,
    /// A single release creation.
    Release,
    /// A live-pointer change (rollback or pin).
    Live,
}

/// The status of a deployment: `pending → applying → succeeded | failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeploymentStatus {
    /// Recorded, not started.
    Pending,
    /// Being applied.
    Applying,
    /// Applied.
    Succeeded,
    /// Not applied; `error` says why.
    Failed,
}

impl DeploymentStatus {
    /// Whether `self → next` is an allowed transition.
    pub fn can_become(self, next: DeploymentStatus) -> bool {
        use DeploymentStatus::*;
        matches!(
            (self, next),
            (Pending, Applying) | (Applying, Succeeded) | (Applying, Failed) | (Pending, Failed)
        )
    }
}

/// An audited deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Deployment {
    /// Id.
    pub id: DeploymentId,
    /// What it changes.
    pub kind: DeploymentKind,
    /// The convention slug or hook name it targets.
    pub target: String,
    /// The verified caller (from the token, never from the payload).
    pub principal: String,
    /// sha256 of the canonical payload.
    pub payload_sha256: Digest,
    /// Size of the canonical payload in bytes.
    pub payload_size: u64,
    /// Object-store key of the canonical payload.
    pub payload_ref: String,
    /// Current status.
    pub status: DeploymentStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// For live changes: the release that was live before.
    pub rollback_of: Option<ReleaseId>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
}

/// A deployment to record (status `pending`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    /// Id.
    pub id: DeploymentId,
    /// What it changes.
    pub kind: DeploymentKind,
    /// The target.
    pub target: String,
    /// The verified caller.
    pub principal: String,
    /// sha256 of the canonical payload.
    pub payload_sha256: Digest,
    /// Its size.
    pub payload_size: u64,
    /// Its object-store key.
    pub payload_ref: String,
    /// For live changes: the release that was live before.
    pub rollback_of: Option<ReleaseId>,
}

/// One event of a deployment's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentEvent {
    /// Sequence number within the deployment, from 1.
    pub seq: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub message: String,
    /// Structured detail.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// The retention rule of deployment event logs: keep the first [`EventLog::HEAD`] and
/// the last [`EventLog::TAIL`] events, at most [`EventLog::MAX`] in all.
#[derive(Debug, Clone, Copy)]
pub struct EventLog;

impl EventLog {
    /// Events always kept from the start.
    pub const HEAD: u64 = 20;
    /// Events kept from the end.
    pub const TAIL: u64 = 180;
    /// Most events kept.
    pub const MAX: u64 = Self::HEAD + Self::TAIL;

    /// The sequence number to evict when event `seq` is appended, if any.
    pub fn evicted_by(seq: u64) -> Option<u64> {
        (seq > Self::MAX).then(|| seq - Self::TAIL)
    }

    /// How many events were dropped from the middle once `total` were appended.
    pub fn dropped(total: u64) -> u64 {
        total.saturating_sub(Self::MAX)
    }

    /// The retained events with a marker event where the middle was dropped (its
    /// `seq` is 0 and its data carries the count).
    pub fn with_gap_marker(events: Vec<DeploymentEvent>, total: u64) -> Vec<DeploymentEvent> {
        let dropped = Self::dropped(total);
        if dropped == 0 {
            return events;
        }
        let mut out = Vec::with_capacity(events.len() + 1);
        let mut marked = false;
        for event in events {
            if !marked && event.seq > Self::HEAD {
                out.push(DeploymentEvent {
                    seq: 0,
                    at: event.at,
                    message: format!("… {dropped} events dropped …"),
                    data: serde_json::json!({"dropped": dropped}),
                });
                marked = true;
            }
            out.push(event);
        }
        out
    }
}

/// Filters for listing deployments (newest first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeploymentFilter {
    /// Only this target.
    pub target: Option<String>,
    /// Only this status.
    pub status: Option<DeploymentStatus>,
    /// Only created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Only created before.
    pub until: Option<DateTime<Utc>>,
    /// Keyset cursor: only deployments older than this one.
    pub before: Option<(DateTime<Utc>, DeploymentId)>,
    /// Page size.
    pub limit: u32,
}

/// The result of applying a deploy plan.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployApplied {
    /// The convention as stored.
    pub convention: Convention,
    /// One outcome per hook release, in payload order.
    pub releases: Vec<ReleaseOutcome>,
}

/// Audit log of deployments and the atomic apply of deploy plans.
///
/// Guarantees every backend gives:
/// - [`apply_deploy`](Self::apply_deploy) runs in ONE transaction: identities (Conflict on
///   a changed contract), releases (idempotent on digest), the convention upsert by slug,
///   feature tables, and the deployment's move to `succeeded`; on any error nothing of
///   it is written;
/// - status changes follow [`DeploymentStatus::can_become`];
/// - each deployment keeps at most [`EventLog::MAX`] events (first 20, last 180).
#[async_trait]
pub trait DeploymentLog: Send + Sync {
    /// Records a pending deployment.
    async fn record_deployment(&self, deployment: &NewDeployment) -> Result<Deployment>;

    /// Moves a deployment to `status` (with an error for `failed`).
    async fn set_deployment_status(
        &self,
        id: DeploymentId,
        status: DeploymentStatus,
        error: Option<&str>,
    ) -> Result<()>;

    /// Appends an event, evicting per [`EventLog`].
    async fn append_deployment_event(
        &self,
        id: DeploymentId,
        message: &str,
        data: serde_json::Value,
    ) -> Result<DeploymentEvent>;

    /// Applies a convention deploy and marks `deployment` succeeded, atomically.
    async fn apply_deploy(
        &self,
        deployment: DeploymentId,
        plan: &DeployPlan,
    ) -> Result<DeployApplied>;

    /// Creates a release and marks `deployment` succeeded, atomically.
    async fn apply_release(
        &self,
        deployment: DeploymentId,
        release: &NewRelease,
    ) -> Result<ReleaseOutcome>;

    /// Moves a hook's live pointer, records the release it replaced as the
    /// deployment's `rollback_of` and marks `deployment` succeeded, atomically (the
    /// replaced release is the one live under the hook's lock).
    async fn apply_live(
        &self,
        deployment: DeploymentId,
        hook: &HookName,
        version: u32,
    ) -> Result<LiveChange>;

    /// One deployment.
    async fn get_deployment(&self, id: DeploymentId) -> Result<Option<Deployment>>;

    /// A page of deployments, newest first.
    async fn list_deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>>;

    /// Retained events with `seq > after`, with the gap marker, and the total count.
    async fn deployment_events(&self, id: DeploymentId, after: u64)
    -> Result<Vec<DeploymentEvent>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_log_bounds() {
        assert_eq!(EventLog::evicted_by(200), None);
        assert_eq!(EventLog::evicted_by(201), Some(21));
        assert_eq!(EventLog::evicted_by(500), Some(320));
        // Simulate 500 appends.
        let mut kept: Vec<u64> = Vec::new();
        for seq in 1..=500 {
            kept.push(seq);
            if let Some(evict) = EventLog::evicted_by(seq) {
                kept.retain(|s| *s != evict);
            }
        }
        assert_eq!(kept.len(), 200);
        assert_eq!(&kept[..20], &(1..=20).collect::<Vec<_>>()[..]);
        assert_eq!(&kept[20..], &(321..=500).collect::<Vec<_>>()[..]);
        let at = Utc::now();
        let events = kept
            .iter()
            .map(|seq| DeploymentEvent {
                seq: *seq,
                at,
                message: format!("e{seq}"),
                data: serde_json::Value::Null,
            })
            .collect();
        let shown = EventLog::with_gap_marker(events, 500);
        assert_eq!(shown.len(), 201);
        assert_eq!(shown[20].seq, 0);
        assert_eq!(shown[20].message, "… 300 events dropped …");
        assert_eq!(shown[21].seq, 321);
    }

    #[test]
    fn status_transitions() {
        use DeploymentStatus::*;
        assert!(Pending.can_become(Applying));
        assert!(Applying.can_become(Succeeded));
        assert!(Applying.can_become(Failed));
        assert!(!Succeeded.can_become(Failed));
        assert!(!Failed.can_become(Applying));
    }
}

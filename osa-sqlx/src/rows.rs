//! Row types shared by both backends and their conversion to domain types.
//!
//! Both backends store UUIDs natively (Postgres `UUID`, SQLite 16-byte blobs), JSON as
//! `JSONB` / text and timestamps as `TIMESTAMPTZ` / RFC 3339 text, so one set of
//! `FromRow` structs decodes rows of either.

use chrono::{DateTime, Utc};
use osa_core::feature::FeatureSpec;
use osa_core::hook::{Hook, HookIdentity, HookRelease, HookRun, HookRunStatus, OutcomeCounts};
use osa_core::id::{Digest, HookName, HookRunId, ReleaseId};
use osa_core::runtime::RuntimeConfig;
use osa_core::{Error, Result};
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::corrupt;

/// Columns selected for a release, prefixed by `r.`.
pub(crate) const RELEASE_COLUMNS: &str =
    "r.id, r.hook, r.version, r.runtime, r.source_ref, r.built_by, r.built_at";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ReleaseRow {
    pub id: Uuid,
    pub hook: String,
    pub version: i32,
    pub runtime: Json<RuntimeConfig>,
    pub source_ref: String,
    pub built_by: Option<String>,
    pub built_at: DateTime<Utc>,
}

impl ReleaseRow {
    pub(crate) fn into_release(self) -> Result<HookRelease> {
        Ok(HookRelease {
            id: ReleaseId(self.id),
            hook: HookName::new(self.hook).map_err(|e| corrupt("hook name", e))?,
            version: u32::try_from(self.version).map_err(|e| corrupt("release version", e))?,
            runtime: self.runtime.0,
            source_ref: self.source_ref,
            built_by: self.built_by,
            built_at: self.built_at,
        })
    }
}

/// Columns selected for a hook with its live release (`h.` and the release of
/// [`RELEASE_COLUMNS`] as nullable `l_` columns).
pub(crate) const HOOK_COLUMNS: &str = "h.name, h.feature, h.created_at, \
     l.id AS l_id, l.hook AS l_hook, l.version AS l_version, l.runtime AS l_runtime, \
     l.source_ref AS l_source_ref, l.built_by AS l_built_by, l.built_at AS l_built_at";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct HookRow {
    pub name: String,
    pub feature: Json<FeatureSpec>,
    pub created_at: DateTime<Utc>,
    pub l_id: Option<Uuid>,
    pub l_hook: Option<String>,
    pub l_version: Option<i32>,
    pub l_runtime: Option<Json<RuntimeConfig>>,
    pub l_source_ref: Option<String>,
    pub l_built_by: Option<String>,
    pub l_built_at: Option<DateTime<Utc>>,
}

impl HookRow {
    pub(crate) fn into_hook(self) -> Result<Hook> {
        let live = match (
            self.l_id,
            self.l_hook,
            self.l_version,
            self.l_runtime,
            self.l_source_ref,
            self.l_built_at,
        ) {
            (
                Some(id),
                Some(hook),
                Some(version),
                Some(runtime),
                Some(source_ref),
                Some(built_at),
            ) => Some(
                ReleaseRow {
                    id,
                    hook,
                    version,
                    runtime,
                    source_ref,
                    built_by: self.l_built_by,
                    built_at,
                }
                .into_release()?,
            ),
            _ => None,
        };
        Ok(Hook {
            identity: HookIdentity {
                name: HookName::new(self.name).map_err(|e| corrupt("hook name", e))?,
                feature: self.feature.0,
            },
            live,
            created_at: self.created_at,
        })
    }
}

/// Columns selected for a hook run.
pub(crate) const RUN_COLUMNS: &str = "id, release_id, status, started_at, finished_at, duration_s, \
     oom_retries, log_ref, input_sha256, passed, rejected, errored";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RunRow {
    pub id: Uuid,
    pub release_id: Uuid,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_s: f64,
    pub oom_retries: i32,
    pub log_ref: Option<String>,
    pub input_sha256: Option<String>,
    pub passed: i32,
    pub rejected: i32,
    pub errored: i32,
}

impl RunRow {
    pub(crate) fn into_run(self) -> Result<HookRun> {
        let status = match self.status.as_str() {
            "passed" => HookRunStatus::Passed,
            "failed" => HookRunStatus::Failed,
            "error" => HookRunStatus::Error,
            other => return Err(corrupt("hook run status", other)),
        };
        let count = |v: i32| u32::try_from(v).map_err(|e| corrupt("hook run count", e));
        Ok(HookRun {
            id: HookRunId(self.id),
            release_id: ReleaseId(self.release_id),
            status,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_s: self.duration_s,
            oom_retries: count(self.oom_retries)?,
            log_ref: self.log_ref,
            input_sha256: self
                .input_sha256
                .map(Digest::new)
                .transpose()
                .map_err(|e| corrupt("input digest", e))?,
            counts: OutcomeCounts {
                passed: count(self.passed)?,
                rejected: count(self.rejected)?,
                errored: count(self.errored)?,
            },
        })
    }
}

/// Error for a stored identity that differs from the one being registered.
pub(crate) fn identity_conflict(stored: &HookIdentity, wanted: &HookIdentity) -> Option<Error> {
    stored.difference(wanted).map(|diff| {
        Error::conflict(
            "hook",
            &wanted.name,
            format!("the feature contract of a hook is fixed forever and this deploy changes it: {diff}; deploy it under a new hook name instead"),
        )
    })
}

/// Converts a count for storage.
pub(crate) fn as_i32(v: u32, what: &'static str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::invalid(what, format!("{v} is too large")))
}

/// Orders live releases like `hooks`; a hook without a live release is NotFound.
pub(crate) fn order_live(
    hooks: &[HookName],
    releases: Vec<HookRelease>,
) -> Result<Vec<HookRelease>> {
    hooks
        .iter()
        .map(|name| {
            releases
                .iter()
                .find(|r| &r.hook == name)
                .cloned()
                .ok_or_else(|| Error::not_found("live release of hook", name))
        })
        .collect()
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub payload: Json<serde_json::Value>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub lease_token: Option<Uuid>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl JobRow {
    pub(crate) fn into_claimed(self) -> Result<osa_core::jobs::ClaimedJob> {
        let count = |v: i32| u32::try_from(v).map_err(|e| corrupt("job attempt", e));
        Ok(osa_core::jobs::ClaimedJob {
            kind: self.kind,
            payload: self.payload.0,
            attempt: count(self.attempt)?,
            max_attempts: count(self.max_attempts)?,
            lease: osa_core::jobs::JobLease {
                job_id: osa_core::id::JobId(self.id),
                token: self
                    .lease_token
                    .ok_or_else(|| corrupt("job lease", "no token"))?,
                locked_until: self
                    .locked_until
                    .ok_or_else(|| corrupt("job lease", "no expiry"))?,
            },
        })
    }
}

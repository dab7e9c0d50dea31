//! `DeploymentLog` and `ConventionStore`, written once for both backends (see
//! [`deployments_for!`]).

use chrono::{DateTime, Utc};
use osa_core::Result;
use osa_core::convention::{Convention, ConventionDocs, FileRequirements, SchemaSpec};
use osa_core::deploy::{Deployment, DeploymentEvent, IngesterDeploy};
use osa_core::id::{ConventionSlug, DeploymentId, Digest, HookName, ReleaseId};
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::corrupt;
use crate::runs::parse_enum;

/// Columns of a deployment row.
pub(crate) const DEPLOYMENT_COLUMNS: &str = "id, kind, target, principal, payload_sha256, payload_size, \
     payload_ref, status, error, rollback_of, created_at, updated_at";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeploymentRow {
    pub id: Uuid,
    pub kind: String,
    pub target: String,
    pub principal: String,
    pub payload_sha256: String,
    pub payload_size: i64,
    pub payload_ref: String,
    pub status: String,
    pub error: Option<String>,
    pub rollback_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl DeploymentRow {
    pub(crate) fn into_deployment(self) -> Result<Deployment> {
        Ok(Deployment {
            id: DeploymentId(self.id),
            kind: parse_enum("deployment kind", &self.kind)?,
            target: self.target,
            principal: self.principal,
            payload_sha256: Digest::new(self.payload_sha256)
                .map_err(|e| corrupt("payload digest", e))?,
            payload_size: u64::try_from(self.payload_size)
                .map_err(|e| corrupt("payload size", e))?,
            payload_ref: self.payload_ref,
            status: parse_enum("deployment status", &self.status)?,
            error: self.error,
            rollback_of: self.rollback_of.map(ReleaseId),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Columns of a convention row.
pub(crate) const CONVENTION_COLUMNS: &str = "slug, title, description, schema, file_requirements, hooks, ingester, docs, created_at, updated_at";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ConventionRow {
    pub slug: String,
    pub title: String,
    pub description: String,
    pub schema: Json<SchemaSpec>,
    pub file_requirements: Json<FileRequirements>,
    pub hooks: Json<Vec<HookName>>,
    pub ingester: Option<Json<IngesterDeploy>>,
    pub docs: Json<ConventionDocs>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ConventionRow {
    pub(crate) fn into_convention(self) -> Result<Convention> {
        Ok(Convention {
            slug: ConventionSlug::new(self.slug).map_err(|e| corrupt("convention slug", e))?,
            title: self.title,
            description: self.description,
            schema: self.schema.0,
            file_requirements: self.file_requirements.0,
            hooks: self.hooks.0,
            docs: self.docs.0,
            ingester: self.ingester.map(|j| j.0),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Decodes a stored deployment event.
pub(crate) fn event(
    seq: i64,
    at: DateTime<Utc>,
    message: String,
    data: Json<serde_json::Value>,
) -> Result<DeploymentEvent> {
    Ok(DeploymentEvent {
        seq: u64::try_from(seq).map_err(|e| corrupt("event sequence", e))?,
        at,
        message,
        data: data.0,
    })
}

/// Implements `DeploymentLog` and `ConventionStore` for a backend. Invoke inside the
/// backend's `deployments` module with its row-lock clause.
macro_rules! deployments_for {
    ($backend:ty, $conn:ty, lock = $lock:literal) => {
        use async_trait::async_trait;
        use osa_core::convention::{Convention, ConventionStore};
        use osa_core::deploy::{
            DeployApplied, DeployPlan, Deployment, DeploymentEvent, DeploymentFilter, DeploymentLog,
            DeploymentStatus, EventLog, NewDeployment,
        };
        use osa_core::id::{ConventionSlug, DeploymentId};
        use osa_core::{Error, Result};
        use sqlx::types::Json;

        use crate::deployments::{CONVENTION_COLUMNS, ConventionRow, DEPLOYMENT_COLUMNS, DeploymentRow};
        use crate::error::db;
        use crate::runs::enum_name;

        async fn deployment_in(conn: &mut $conn, id: DeploymentId, lock: bool) -> Result<Option<Deployment>> {
            let sql = format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1{}",
                if lock { $lock } else { "" }
            );
            sqlx::query_as::<_, DeploymentRow>(&sql)
                .bind(id.0)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("reading a deployment"))?
                .map(DeploymentRow::into_deployment)
                .transpose()
        }

        /// Moves a deployment along `pending → applying → succeeded | failed`.
        async fn set_status_in(
            conn: &mut $conn,
            id: DeploymentId,
            status: DeploymentStatus,
            error: Option<&str>,
        ) -> Result<()> {
            let current = deployment_in(conn, id, true)
                .await?
                .ok_or_else(|| Error::not_found("deployment", id))?;
            if !current.status.can_become(status) {
                return Err(Error::conflict(
                    "deployment",
                    id,
                    format!("cannot move from {:?} to {:?}", current.status, status),
                ));
            }
            sqlx::query("UPDATE deployments SET status = $1, error = $2, updated_at = $3 WHERE id = $4")
                .bind(enum_name(&status))
                .bind(error)
                .bind(crate::now())
                .bind(id.0)
                .execute(&mut *conn)
                .await
                .map_err(db("updating a deployment"))?;
            Ok(())
        }

        #[async_trait]
        impl DeploymentLog for $backend {
            async fn record_deployment(&self, deployment: &NewDeployment) -> Result<Deployment> {
                let now = crate::now();
                let mut tx = self.begin().await?;
                sqlx::query(
                    "INSERT INTO deployments (id, kind, target, principal, payload_sha256, payload_size, \
                     payload_ref, status, rollback_of, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $9, $8, $8)",
                )
                .bind(deployment.id.0)
                .bind(enum_name(&deployment.kind))
                .bind(&deployment.target)
                .bind(&deployment.principal)
                .bind(deployment.payload_sha256.as_str())
                .bind(i64::try_from(deployment.payload_size).map_err(|_| Error::invalid("payload_size", "too large"))?)
                .bind(&deployment.payload_ref)
                .bind(now)
                .bind(deployment.rollback_of.map(|r| r.0))
                .execute(&mut *tx)
                .await
                .map_err(db("recording a deployment"))?;
                let stored = deployment_in(&mut tx, deployment.id, false)
                    .await?
                    .ok_or_else(|| Error::internal("a deployment vanished inside its transaction"))?;
                tx.commit().await.map_err(db("recording a deployment"))?;
                Ok(stored)
            }

            async fn set_deployment_status(&self, id: DeploymentId, status: DeploymentStatus, error: Option<&str>) -> Result<()> {
                let mut tx = self.begin().await?;
                set_status_in(&mut tx, id, status, error).await?;
                tx.commit().await.map_err(db("updating a deployment"))
            }

            async fn append_deployment_event(&self, id: DeploymentId, message: &str, data: serde_json::Value) -> Result<DeploymentEvent> {
                let mut tx = self.begin().await?;
                let seq: Option<i64> = sqlx::query_scalar(
                    "UPDATE deployments SET event_count = event_count + 1 WHERE id = $1 RETURNING event_count",
                )
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("numbering a deployment event"))?;
                let seq = seq.ok_or_else(|| Error::not_found("deployment", id))?;
                let at = crate::now();
                sqlx::query(
                    "INSERT INTO deployment_events (deployment_id, seq, at, message, data) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id.0)
                .bind(seq)
                .bind(at)
                .bind(message)
                .bind(Json(&data))
                .execute(&mut *tx)
                .await
                .map_err(db("recording a deployment event"))?;
                if let Some(evicted) = EventLog::evicted_by(seq as u64) {
                    sqlx::query("DELETE FROM deployment_events WHERE deployment_id = $1 AND seq = $2")
                        .bind(id.0)
                        .bind(evicted as i64)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("trimming deployment events"))?;
                }
                tx.commit().await.map_err(db("recording a deployment event"))?;
                Ok(DeploymentEvent {
                    seq: seq as u64,
                    at,
                    message: message.to_string(),
                    data,
                })
            }

            async fn apply_deploy(&self, deployment: DeploymentId, plan: &DeployPlan) -> Result<DeployApplied> {
                let mut tx = self.begin().await?;
                // Hooks are locked in name order, whatever the payload's order: two
                // deploys sharing hooks listed in different orders would deadlock.
                let mut identities: Vec<_> = plan.identities.iter().collect();
                identities.sort_by(|a, b| a.name.cmp(&b.name));
                for identity in &identities {
                    crate::registry::Registry::<$backend>::upsert_identity_in(&mut tx, identity).await?;
                }
                let mut order: Vec<usize> = (0..plan.releases.len()).collect();
                order.sort_by(|&a, &b| plan.releases[a].hook.cmp(&plan.releases[b].hook));
                let mut created = Vec::with_capacity(plan.releases.len());
                for i in order {
                    created.push((i, crate::registry::Registry::<$backend>::create_release_in(&mut tx, &plan.releases[i]).await?));
                }
                // Reported in the payload's order.
                created.sort_by_key(|(i, _)| *i);
                let releases: Vec<_> = created.into_iter().map(|(_, outcome)| outcome).collect();
                for identity in &identities {
                    super::features::ensure_table_in(&mut tx, &self.dialect, identity).await?;
                }
                let payload = &plan.payload;
                let hooks: Vec<_> = payload.hooks.iter().map(|h| h.name.clone()).collect();
                let now = crate::now();
                let sql = format!(
                    "INSERT INTO conventions ({CONVENTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                     ON CONFLICT (slug) DO UPDATE SET title = excluded.title, description = excluded.description, \
                     schema = excluded.schema, file_requirements = excluded.file_requirements, \
                     hooks = excluded.hooks, ingester = excluded.ingester, docs = excluded.docs, \
                     updated_at = excluded.updated_at \
                     RETURNING {CONVENTION_COLUMNS}"
                );
                let row: ConventionRow = sqlx::query_as(&sql)
                    .bind(plan.slug.as_str())
                    .bind(&payload.title)
                    .bind(&payload.description)
                    .bind(Json(&payload.schema))
                    .bind(Json(&payload.file_requirements))
                    .bind(Json(&hooks))
                    .bind(payload.ingester.as_ref().map(Json))
                    .bind(Json(&payload.docs))
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("saving a convention"))?;
                set_status_in(&mut tx, deployment, DeploymentStatus::Succeeded, None).await?;
                tx.commit().await.map_err(db("applying a deploy"))?;
                Ok(DeployApplied {
                    convention: row.into_convention()?,
                    releases,
                })
            }

            async fn apply_release(
                &self,
                deployment: DeploymentId,
                release: &osa_core::hook::NewRelease,
            ) -> Result<osa_core::hook::ReleaseOutcome> {
                let mut tx = self.begin().await?;
                let outcome = crate::registry::Registry::<$backend>::create_release_in(&mut tx, release).await?;
                set_status_in(&mut tx, deployment, DeploymentStatus::Succeeded, None).await?;
                tx.commit().await.map_err(db("applying a release"))?;
                Ok(outcome)
            }

            async fn apply_live(
                &self,
                deployment: DeploymentId,
                hook: &osa_core::id::HookName,
                version: u32,
            ) -> Result<osa_core::hook::LiveChange> {
                let mut tx = self.begin().await?;
                let change = crate::registry::Registry::<$backend>::set_live_in(&mut tx, hook, version).await?;
                // The release it replaced, as read under the hook's lock (a concurrent
                // change cannot slip in between).
                sqlx::query("UPDATE deployments SET rollback_of = $1 WHERE id = $2")
                    .bind(change.previous.as_ref().map(|r| r.id.0))
                    .bind(deployment.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("recording the replaced release"))?;
                set_status_in(&mut tx, deployment, DeploymentStatus::Succeeded, None).await?;
                tx.commit().await.map_err(db("moving the live pointer"))?;
                Ok(change)
            }

            async fn get_deployment(&self, id: DeploymentId) -> Result<Option<Deployment>> {
                let mut conn = self.read_pool().acquire().await.map_err(db("reading a deployment"))?;
                deployment_in(&mut conn, id, false).await
            }

            async fn list_deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>> {
                let mut conditions = vec!["TRUE".to_string()];
                let mut n = 0;
                let mut next = || {
                    n += 1;
                    format!("${n}")
                };
                if filter.target.is_some() {
                    conditions.push(format!("target = {}", next()));
                }
                if filter.status.is_some() {
                    conditions.push(format!("status = {}", next()));
                }
                if filter.since.is_some() {
                    conditions.push(format!("created_at >= {}", next()));
                }
                if filter.until.is_some() {
                    conditions.push(format!("created_at < {}", next()));
                }
                if filter.before.is_some() {
                    let (a, b, c) = (next(), next(), next());
                    conditions.push(format!("(created_at < {a} OR (created_at = {b} AND id < {c}))"));
                }
                let sql = format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE {} ORDER BY created_at DESC, id DESC LIMIT {}",
                    conditions.join(" AND "),
                    filter.limit.clamp(1, crate::MAX_PAGE),
                );
                let mut query = sqlx::query_as::<_, DeploymentRow>(&sql);
                if let Some(target) = &filter.target {
                    query = query.bind(target.clone());
                }
                if let Some(status) = filter.status {
                    query = query.bind(enum_name(&status));
                }
                if let Some(since) = filter.since {
                    query = query.bind(since);
                }
                if let Some(until) = filter.until {
                    query = query.bind(until);
                }
                if let Some((at, id)) = filter.before {
                    query = query.bind(at).bind(at).bind(id.0);
                }
                query
                    .fetch_all(self.read_pool())
                    .await
                    .map_err(db("listing deployments"))?
                    .into_iter()
                    .map(DeploymentRow::into_deployment)
                    .collect()
            }

            async fn deployment_events(&self, id: DeploymentId, after: u64) -> Result<Vec<DeploymentEvent>> {
                // The count and the rows from one snapshot, so the gap marker matches
                // the rows even while events are appended and evicted.
                let mut tx = self.begin_snapshot().await?;
                let total: Option<i64> = sqlx::query_scalar("SELECT event_count FROM deployments WHERE id = $1")
                    .bind(id.0)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("reading a deployment"))?;
                let total = total.ok_or_else(|| Error::not_found("deployment", id))?;
                let rows: Vec<(i64, chrono::DateTime<chrono::Utc>, String, Json<serde_json::Value>)> = sqlx::query_as(
                    "SELECT seq, at, message, data FROM deployment_events WHERE deployment_id = $1 AND seq > $2 \
                     ORDER BY seq",
                )
                .bind(id.0)
                .bind(i64::try_from(after).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await
                .map_err(db("reading deployment events"))?;
                tx.commit().await.map_err(db("reading deployment events"))?;
                let events = rows
                    .into_iter()
                    .map(|(seq, at, message, data)| crate::deployments::event(seq, at, message, data))
                    .collect::<Result<Vec<_>>>()?;
                Ok(if after < EventLog::HEAD {
                    EventLog::with_gap_marker(events, total as u64)
                } else {
                    events
                })
            }
        }

        #[async_trait]
        impl ConventionStore for $backend {
            async fn get_convention(&self, slug: &ConventionSlug) -> Result<Option<Convention>> {
                let sql = format!("SELECT {CONVENTION_COLUMNS} FROM conventions WHERE slug = $1");
                sqlx::query_as::<_, ConventionRow>(&sql)
                    .bind(slug.as_str())
                    .fetch_optional(self.read_pool())
                    .await
                    .map_err(db("reading a convention"))?
                    .map(ConventionRow::into_convention)
                    .transpose()
            }

            async fn list_conventions(&self) -> Result<Vec<Convention>> {
                let sql = format!("SELECT {CONVENTION_COLUMNS} FROM conventions ORDER BY created_at DESC, slug");
                sqlx::query_as::<_, ConventionRow>(&sql)
                    .fetch_all(self.read_pool())
                    .await
                    .map_err(db("listing conventions"))?
                    .into_iter()
                    .map(ConventionRow::into_convention)
                    .collect()
            }
        }
    };
}

pub(crate) use deployments_for;

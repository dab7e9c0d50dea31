//! `DeploymentLog` and `ConventionStore`, written once for both backends over
//! [`SqlBackend`].

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use osa_core::convention::{Convention, ConventionDocs, FileRequirements, SchemaSpec};
use osa_core::deploy::{
    DeployApplied, DeployPlan, Deployment, DeploymentEvent, DeploymentFilter, DeploymentStatus,
    EventLog, IngesterDeploy, NewDeployment,
};
use osa_core::feature::FeatureSpec;
use osa_core::hook::{LiveChange, NewRelease, ReleaseOutcome};
use osa_core::id::{ConventionSlug, DeploymentId, Digest, HookName, ReleaseId};
use osa_core::{Error, Result};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Database, Executor, IntoArguments};
use uuid::Uuid;

use crate::backend::{Bind, Column, Fetch, RowsAffected, SqlBackend};
use crate::error::{corrupt, db};
use crate::registry::Registry;
use crate::runs::{enum_name, parse_enum};

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

/// The statements of deployments and conventions for backend `B` (the bodies of
/// `DeploymentLog` and `ConventionStore`).
pub(crate) struct Deployments<B>(PhantomData<B>);

impl<B, DB> Deployments<B>
where
    B: SqlBackend<DB = DB>,
    DB: Database<QueryResult: RowsAffected>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Bind<'q, DB>,
    for<'q> &'q String: Bind<'q, DB>,
    for<'q> Option<&'q str>: Bind<'q, DB>,
    for<'q> Option<Uuid>: Bind<'q, DB>,
    for<'q> String: Bind<'q, DB>,
    for<'q> i64: Bind<'q, DB>,
    for<'q> i32: Bind<'q, DB>,
    for<'q> f64: Bind<'q, DB>,
    for<'q> Json<&'q FeatureSpec>: Bind<'q, DB>,
    for<'q> Json<&'q osa_core::runtime::RuntimeConfig>: Bind<'q, DB>,
    for<'q> Uuid: Bind<'q, DB>,
    for<'q> DateTime<Utc>: Bind<'q, DB>,
    for<'q> Json<&'q serde_json::Value>: Bind<'q, DB>,
    for<'q> Json<&'q SchemaSpec>: Bind<'q, DB>,
    for<'q> Json<&'q FileRequirements>: Bind<'q, DB>,
    for<'q> Json<&'q Vec<HookName>>: Bind<'q, DB>,
    for<'q> Option<Json<&'q IngesterDeploy>>: Bind<'q, DB>,
    for<'q> Json<&'q ConventionDocs>: Bind<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Column<DB>,
    i32: Column<DB>,
    String: Column<DB>,
    Uuid: Column<DB>,
    Json<FeatureSpec>: Column<DB>,
    crate::rows::HookRow: Fetch<DB>,
    crate::rows::ReleaseRow: Fetch<DB>,
    crate::rows::RunRow: Fetch<DB>,
    DeploymentRow: Fetch<DB>,
    ConventionRow: Fetch<DB>,
    (i64, DateTime<Utc>, String, Json<serde_json::Value>): Fetch<DB>,
{
    async fn deployment_in(
        conn: &mut DB::Connection,
        id: DeploymentId,
        lock: bool,
    ) -> Result<Option<Deployment>> {
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1{}",
            if lock { B::ROW_LOCK } else { "" }
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
        conn: &mut DB::Connection,
        id: DeploymentId,
        status: DeploymentStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let current = Self::deployment_in(conn, id, true)
            .await?
            .ok_or_else(|| Error::not_found("deployment", id))?;
        if !current.status.can_become(status) {
            return Err(Error::conflict(
                "deployment",
                id,
                format!("cannot move from {:?} to {:?}", current.status, status),
            ));
        }
        sqlx::query(
            "UPDATE deployments SET status = $1, error = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(enum_name(&status))
        .bind(error)
        .bind(crate::now())
        .bind(id.0)
        .execute(&mut *conn)
        .await
        .map_err(db("updating a deployment"))?;
        Ok(())
    }

    pub(crate) async fn record_deployment(
        backend: &B,
        deployment: &NewDeployment,
    ) -> Result<Deployment> {
        let now = crate::now();
        let mut tx = backend.begin().await?;
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
        .bind(
            i64::try_from(deployment.payload_size)
                .map_err(|_| Error::invalid("payload_size", "too large"))?,
        )
        .bind(&deployment.payload_ref)
        .bind(now)
        .bind(deployment.rollback_of.map(|r| r.0))
        .execute(&mut *tx)
        .await
        .map_err(db("recording a deployment"))?;
        let stored = Self::deployment_in(&mut tx, deployment.id, false)
            .await?
            .ok_or_else(|| Error::internal("a deployment vanished inside its transaction"))?;
        tx.commit().await.map_err(db("recording a deployment"))?;
        Ok(stored)
    }

    pub(crate) async fn set_deployment_status(
        backend: &B,
        id: DeploymentId,
        status: DeploymentStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let mut tx = backend.begin().await?;
        Self::set_status_in(&mut tx, id, status, error).await?;
        tx.commit().await.map_err(db("updating a deployment"))
    }

    pub(crate) async fn append_deployment_event(
        backend: &B,
        id: DeploymentId,
        message: &str,
        data: serde_json::Value,
    ) -> Result<DeploymentEvent> {
        let mut tx = backend.begin().await?;
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
        tx.commit()
            .await
            .map_err(db("recording a deployment event"))?;
        Ok(DeploymentEvent {
            seq: seq as u64,
            at,
            message: message.to_string(),
            data,
        })
    }

    pub(crate) async fn apply_deploy(
        backend: &B,
        deployment: DeploymentId,
        plan: &DeployPlan,
    ) -> Result<DeployApplied> {
        let mut tx = backend.begin().await?;
        // Hooks are locked in name order, whatever the payload's order: two
        // deploys sharing hooks listed in different orders would deadlock.
        let mut identities: Vec<_> = plan.identities.iter().collect();
        identities.sort_by(|a, b| a.name.cmp(&b.name));
        for identity in &identities {
            Registry::<B>::upsert_identity_in(&mut tx, identity).await?;
        }
        let mut order: Vec<usize> = (0..plan.releases.len()).collect();
        order.sort_by(|&a, &b| plan.releases[a].hook.cmp(&plan.releases[b].hook));
        let mut created = Vec::with_capacity(plan.releases.len());
        for i in order {
            created.push((
                i,
                Registry::<B>::create_release_in(&mut tx, &plan.releases[i]).await?,
            ));
        }
        // Reported in the payload's order.
        created.sort_by_key(|(i, _)| *i);
        let releases: Vec<_> = created.into_iter().map(|(_, outcome)| outcome).collect();
        for identity in &identities {
            crate::features::Features::<B>::ensure_table_in(&mut tx, backend.dialect(), identity)
                .await?;
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
        Self::set_status_in(&mut tx, deployment, DeploymentStatus::Succeeded, None).await?;
        tx.commit().await.map_err(db("applying a deploy"))?;
        Ok(DeployApplied {
            convention: row.into_convention()?,
            releases,
        })
    }

    pub(crate) async fn apply_release(
        backend: &B,
        deployment: DeploymentId,
        release: &NewRelease,
    ) -> Result<ReleaseOutcome> {
        let mut tx = backend.begin().await?;
        let outcome = Registry::<B>::create_release_in(&mut tx, release).await?;
        Self::set_status_in(&mut tx, deployment, DeploymentStatus::Succeeded, None).await?;
        tx.commit().await.map_err(db("applying a release"))?;
        Ok(outcome)
    }

    pub(crate) async fn apply_live(
        backend: &B,
        deployment: DeploymentId,
        hook: &HookName,
        version: u32,
    ) -> Result<LiveChange> {
        let mut tx = backend.begin().await?;
        let change = Registry::<B>::set_live_in(&mut tx, hook, version).await?;
        // The release it replaced, as read under the hook's lock (a concurrent
        // change cannot slip in between).
        sqlx::query("UPDATE deployments SET rollback_of = $1 WHERE id = $2")
            .bind(change.previous.as_ref().map(|r| r.id.0))
            .bind(deployment.0)
            .execute(&mut *tx)
            .await
            .map_err(db("recording the replaced release"))?;
        Self::set_status_in(&mut tx, deployment, DeploymentStatus::Succeeded, None).await?;
        tx.commit().await.map_err(db("moving the live pointer"))?;
        Ok(change)
    }

    pub(crate) async fn get_deployment(
        backend: &B,
        id: DeploymentId,
    ) -> Result<Option<Deployment>> {
        let mut conn = backend
            .read_pool()
            .acquire()
            .await
            .map_err(db("reading a deployment"))?;
        Self::deployment_in(&mut conn, id, false).await
    }

    pub(crate) async fn list_deployments(
        backend: &B,
        filter: &DeploymentFilter,
    ) -> Result<Vec<Deployment>> {
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
            conditions.push(format!(
                "(created_at < {a} OR (created_at = {b} AND id < {c}))"
            ));
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
            .fetch_all(backend.read_pool())
            .await
            .map_err(db("listing deployments"))?
            .into_iter()
            .map(DeploymentRow::into_deployment)
            .collect()
    }

    pub(crate) async fn deployment_events(
        backend: &B,
        id: DeploymentId,
        after: u64,
    ) -> Result<Vec<DeploymentEvent>> {
        // The count and the rows from one snapshot, so the gap marker matches
        // the rows even while events are appended and evicted.
        let mut tx = backend.begin_snapshot().await?;
        let total: Option<i64> =
            sqlx::query_scalar("SELECT event_count FROM deployments WHERE id = $1")
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
            .map(|(seq, at, message, data)| event(seq, at, message, data))
            .collect::<Result<Vec<_>>>()?;
        Ok(if after < EventLog::HEAD {
            EventLog::with_gap_marker(events, total as u64)
        } else {
            events
        })
    }

    pub(crate) async fn get_convention(
        backend: &B,
        slug: &ConventionSlug,
    ) -> Result<Option<Convention>> {
        let sql = format!("SELECT {CONVENTION_COLUMNS} FROM conventions WHERE slug = $1");
        sqlx::query_as::<_, ConventionRow>(&sql)
            .bind(slug.as_str())
            .fetch_optional(backend.read_pool())
            .await
            .map_err(db("reading a convention"))?
            .map(ConventionRow::into_convention)
            .transpose()
    }

    pub(crate) async fn list_conventions(backend: &B) -> Result<Vec<Convention>> {
        let sql =
            format!("SELECT {CONVENTION_COLUMNS} FROM conventions ORDER BY created_at DESC, slug");
        sqlx::query_as::<_, ConventionRow>(&sql)
            .fetch_all(backend.read_pool())
            .await
            .map_err(db("listing conventions"))?
            .into_iter()
            .map(ConventionRow::into_convention)
            .collect()
    }
}

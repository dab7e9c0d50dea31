//! `JobQueue` on SQLite: claims run inside `BEGIN IMMEDIATE`, so one writer at a time
//! picks jobs and no two claimers can take the same one.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use osa_core::id::JobId;
use osa_core::jobs::{ClaimedJob, FailOutcome, JobLease, JobQueue, NewJob};
use osa_core::{Error, Result};
use sqlx::types::Json;
use uuid::Uuid;

use super::{SqliteBackend, placeholders};
use crate::error::db;
use crate::rows::JobRow;

#[async_trait]
impl JobQueue for SqliteBackend {
    async fn enqueue(&self, job: &NewJob) -> Result<Option<JobId>> {
        let mut tx = self.begin().await?;
        let id = enqueue_in(&mut tx, job).await?;
        tx.commit().await.map_err(db("enqueueing a job"))?;
        Ok(id)
    }

    async fn claim(
        &self,
        kinds: &[&str],
        limit: u32,
        lease_for: Duration,
    ) -> Result<Vec<ClaimedJob>> {
        if kinds.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let now = crate::now();
        let locked_until = crate::lease_end(now, lease_for)?;
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT id FROM jobs WHERE kind IN ({}) AND \
             ((status = 'ready' AND run_at <= ?) OR (status = 'running' AND locked_until < ?)) \
             ORDER BY run_at, id LIMIT ?",
            placeholders(kinds.len())
        );
        let mut query = sqlx::query_scalar::<_, Uuid>(&sql);
        for kind in kinds {
            query = query.bind(*kind);
        }
        let ids = query
            .bind(now)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db("claiming jobs"))?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row: JobRow = sqlx::query_as(
                "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_token = ?, locked_until = ? \
                 WHERE id = ? RETURNING id, kind, payload, attempt, max_attempts, lease_token, locked_until",
            )
            .bind(Uuid::new_v4())
            .bind(locked_until)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("claiming jobs"))?;
            claimed.push(row.into_claimed()?);
        }
        tx.commit().await.map_err(db("claiming jobs"))?;
        Ok(claimed)
    }

    async fn heartbeat(&self, lease: &JobLease, lease_for: Duration) -> Result<bool> {
        let until = crate::lease_end(crate::now(), lease_for)?;
        let mut tx = self.begin().await?;
        let result = sqlx::query(
            "UPDATE jobs SET locked_until = ? WHERE id = ? AND lease_token = ? AND status = 'running'",
        )
        .bind(until)
        .bind(lease.job_id.0)
        .bind(lease.token)
        .execute(&mut *tx)
        .await
        .map_err(db("extending a job lease"))?;
        tx.commit().await.map_err(db("extending a job lease"))?;
        Ok(result.rows_affected() == 1)
    }

    async fn complete(&self, lease: &JobLease) -> Result<bool> {
        let mut tx = self.begin().await?;
        let done = complete_in(&mut tx, lease).await?;
        tx.commit().await.map_err(db("completing a job"))?;
        Ok(done)
    }

    async fn fail(
        &self,
        lease: &JobLease,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<FailOutcome> {
        let mut tx = self.begin().await?;
        let row: Option<(i32, i32)> = sqlx::query_as(
            "SELECT attempt, max_attempts FROM jobs WHERE id = ? AND lease_token = ? AND status = 'running'",
        )
        .bind(lease.job_id.0)
        .bind(lease.token)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("failing a job"))?;
        let Some((attempt, max_attempts)) = row else {
            return Ok(FailOutcome::LeaseLost);
        };
        let dead = attempt >= max_attempts;
        sqlx::query(
            "UPDATE jobs SET status = ?, run_at = ?, locked_until = NULL, lease_token = NULL, last_error = ? \
             WHERE id = ?",
        )
        .bind(if dead { "dead" } else { "ready" })
        .bind(crate::truncate_micros(retry_at))
        .bind(crate::cap_error(error))
        .bind(lease.job_id.0)
        .execute(&mut *tx)
        .await
        .map_err(db("failing a job"))?;
        tx.commit().await.map_err(db("failing a job"))?;
        Ok(if dead {
            FailOutcome::Dead
        } else {
            FailOutcome::Retrying {
                at: crate::truncate_micros(retry_at),
            }
        })
    }
}

/// Enqueues inside the caller's transaction; `None` when the dedupe key is taken.
pub(crate) async fn enqueue_in(
    tx: &mut sqlx::SqliteConnection,
    job: &NewJob,
) -> Result<Option<JobId>> {
    if job.max_attempts == 0 {
        return Err(Error::invalid(
            "max_attempts",
            "a job needs at least one attempt",
        ));
    }
    let id = JobId::new_random();
    let result = sqlx::query(
        "INSERT INTO jobs (id, kind, payload, status, max_attempts, run_at, dedupe_key, created_at) \
         VALUES (?, ?, ?, 'ready', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(id.0)
    .bind(&job.kind)
    .bind(Json(&job.payload))
    .bind(crate::rows::as_i32(job.max_attempts, "max_attempts")?)
    .bind(crate::truncate_micros(job.run_at))
    .bind(&job.dedupe_key)
    .bind(crate::now())
    .execute(&mut *tx)
    .await
    .map_err(db("enqueueing a job"))?;
    Ok((result.rows_affected() == 1).then_some(id))
}

/// Deletes a finished job if the lease is still held.
pub(crate) async fn complete_in(tx: &mut sqlx::SqliteConnection, lease: &JobLease) -> Result<bool> {
    let result =
        sqlx::query("DELETE FROM jobs WHERE id = ? AND lease_token = ? AND status = 'running'")
            .bind(lease.job_id.0)
            .bind(lease.token)
            .execute(&mut *tx)
            .await
            .map_err(db("completing a job"))?;
    Ok(result.rows_affected() == 1)
}

//! `JobQueue` on Postgres: claims take due or lease-expired jobs with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait for or share a job.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use osa_core::id::JobId;
use osa_core::jobs::{ClaimedJob, FailOutcome, JobLease, JobQueue, NewJob};
use osa_core::{Error, Result};
use sqlx::types::Json;

use super::PgBackend;
use crate::error::db;
use crate::rows::JobRow;

#[async_trait]
impl JobQueue for PgBackend {
    async fn enqueue(&self, job: &NewJob) -> Result<Option<JobId>> {
        let mut conn = self.pool.acquire().await.map_err(db("enqueueing a job"))?;
        enqueue_in(&mut conn, job).await
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
        let rows: Vec<JobRow> = sqlx::query_as(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_token = gen_random_uuid(), \
             locked_until = $1 \
             WHERE id IN (SELECT id FROM jobs WHERE kind = ANY($2) AND \
                 ((status = 'ready' AND run_at <= $3) OR (status = 'running' AND locked_until < $3)) \
                 ORDER BY run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id, kind, payload, attempt, max_attempts, lease_token, locked_until",
        )
        .bind(locked_until)
        .bind(kinds)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("claiming jobs"))?;
        rows.into_iter().map(JobRow::into_claimed).collect()
    }

    async fn heartbeat(&self, lease: &JobLease, lease_for: Duration) -> Result<bool> {
        let until = crate::lease_end(crate::now(), lease_for)?;
        let result = sqlx::query(
            "UPDATE jobs SET locked_until = $1 WHERE id = $2 AND lease_token = $3 AND status = 'running'",
        )
        .bind(until)
        .bind(lease.job_id.0)
        .bind(lease.token)
        .execute(&self.pool)
        .await
        .map_err(db("extending a job lease"))?;
        Ok(result.rows_affected() == 1)
    }

    async fn complete(&self, lease: &JobLease) -> Result<bool> {
        let mut conn = self.pool.acquire().await.map_err(db("completing a job"))?;
        complete_in(&mut conn, lease).await
    }

    async fn fail(
        &self,
        lease: &JobLease,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<FailOutcome> {
        // One statement: the lease check, the dead/ready decision and the update are
        // atomic, so only one caller can ever see `dead` for a job.
        let status: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET status = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'ready' END, \
             run_at = $1, locked_until = NULL, lease_token = NULL, last_error = $2 \
             WHERE id = $3 AND lease_token = $4 AND status = 'running' RETURNING status",
        )
        .bind(crate::truncate_micros(retry_at))
        .bind(crate::cap_error(error))
        .bind(lease.job_id.0)
        .bind(lease.token)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("failing a job"))?;
        Ok(match status.as_deref() {
            None => FailOutcome::LeaseLost,
            Some("dead") => FailOutcome::Dead,
            Some(_) => FailOutcome::Retrying {
                at: crate::truncate_micros(retry_at),
            },
        })
    }
}

/// Enqueues on the caller's connection or transaction; `None` when the dedupe key is
/// taken. Sends a `NOTIFY osa_jobs` hint (delivered on commit); polling stays the
/// source of truth.
pub(crate) async fn enqueue_in(
    conn: &mut sqlx::PgConnection,
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
         VALUES ($1, $2, $3, 'ready', $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(id.0)
    .bind(&job.kind)
    .bind(Json(&job.payload))
    .bind(crate::rows::as_i32(job.max_attempts, "max_attempts")?)
    .bind(crate::truncate_micros(job.run_at))
    .bind(&job.dedupe_key)
    .bind(crate::now())
    .execute(&mut *conn)
    .await
    .map_err(db("enqueueing a job"))?;
    if result.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query("SELECT pg_notify('osa_jobs', $1)")
        .bind(&job.kind)
        .execute(&mut *conn)
        .await
        .map_err(db("notifying workers"))?;
    Ok(Some(id))
}

/// Deletes a finished job if the lease is still held.
pub(crate) async fn complete_in(conn: &mut sqlx::PgConnection, lease: &JobLease) -> Result<bool> {
    let result =
        sqlx::query("DELETE FROM jobs WHERE id = $1 AND lease_token = $2 AND status = 'running'")
            .bind(lease.job_id.0)
            .bind(lease.token)
            .execute(&mut *conn)
            .await
            .map_err(db("completing a job"))?;
    Ok(result.rows_affected() == 1)
}

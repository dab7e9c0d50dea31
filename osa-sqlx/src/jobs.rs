//! `JobQueue`, written once for both backends over [`SqlBackend`].
//!
//! A claim is one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING …`: due jobs and
//! jobs whose lease expired are taken together, each with a fresh lease token and its
//! attempt counted. On Postgres the inner select skips rows locked by concurrent
//! claimers (`FOR UPDATE SKIP LOCKED`); on SQLite the write lock already serialises
//! claimers. `fail` decides dead-or-retry in the same single statement that checks the
//! lease, so only one caller can ever see a job die. Each of these is a single
//! statement, atomic on its own, so it runs without an explicit transaction.

use std::marker::PhantomData;
use std::time::Duration;

use chrono::{DateTime, Utc};
use osa_core::id::JobId;
use osa_core::jobs::{ClaimedJob, FailOutcome, JobCount, JobLease, NewJob};
use osa_core::{Error, Result};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Database, Executor, IntoArguments};
use uuid::Uuid;

use crate::backend::{Bind, Column, Fetch, RowsAffected, SqlBackend};
use crate::error::db;
use crate::rows::JobRow;

/// The queue's statements for backend `B` (transaction-level functions, and the
/// bodies of `JobQueue`).
pub(crate) struct Jobs<B>(PhantomData<B>);

/// Deletes a finished job if the lease (`$1` job, `$2` token) is still held.
const COMPLETE: &str = "DELETE FROM jobs WHERE id = $1 AND lease_token = $2 AND status = 'running'";

impl<B, DB> Jobs<B>
where
    B: SqlBackend<DB = DB>,
    DB: Database<QueryResult: RowsAffected>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Bind<'q, DB>,
    for<'q> &'q String: Bind<'q, DB>,
    for<'q> Option<&'q str>: Bind<'q, DB>,
    for<'q> String: Bind<'q, DB>,
    for<'q> i32: Bind<'q, DB>,
    for<'q> i64: Bind<'q, DB>,
    for<'q> Uuid: Bind<'q, DB>,
    for<'q> DateTime<Utc>: Bind<'q, DB>,
    for<'q> Json<&'q serde_json::Value>: Bind<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    i64: Column<DB>,
    JobRow: Fetch<DB>,
    (String, String, i64): Fetch<DB>,
{
    pub(crate) async fn enqueue(backend: &B, job: &NewJob) -> Result<Option<JobId>> {
        let mut tx = backend.begin().await?;
        let id = Self::enqueue_in(&mut tx, job).await?;
        tx.commit().await.map_err(db("enqueueing a job"))?;
        Ok(id)
    }

    pub(crate) async fn claim(
        backend: &B,
        kinds: &[&str],
        limit: u32,
        lease_for: Duration,
    ) -> Result<Vec<ClaimedJob>> {
        if kinds.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let now = crate::now();
        let locked_until = crate::lease_end(now, lease_for)?;
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_token = {}, locked_until = $1 \
             WHERE id IN (SELECT id FROM jobs WHERE kind {} AND \
                 ((status = 'ready' AND run_at <= $3) OR (status = 'running' AND locked_until < $3)) \
                 ORDER BY run_at, id LIMIT $4{}) \
             RETURNING id, kind, payload, attempt, max_attempts, lease_token, locked_until",
            B::NEW_LEASE_TOKEN,
            B::in_text_list("$2"),
            B::CLAIM_SKIP_LOCKED,
        );
        // One statement is atomic on its own: no explicit transaction (and no extra
        // round trips) around it. On SQLite a writing statement takes the write
        // lock before it reads, like `BEGIN IMMEDIATE`.
        let rows: Vec<JobRow> = sqlx::query_as(&sql)
            .bind(locked_until)
            .bind(B::text_list(kinds.iter().map(|k| k.to_string()).collect()))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(backend.writer())
            .await
            .map_err(db("claiming jobs"))?;
        let mut claimed = rows
            .into_iter()
            .map(JobRow::into_claimed)
            .collect::<Result<Vec<_>>>()?;
        claimed.sort_by_key(|j| j.lease.job_id);
        Ok(claimed)
    }

    pub(crate) async fn heartbeat(
        backend: &B,
        lease: &JobLease,
        lease_for: Duration,
    ) -> Result<bool> {
        let until = crate::lease_end(crate::now(), lease_for)?;
        let result = sqlx::query(
            "UPDATE jobs SET locked_until = $1 WHERE id = $2 AND lease_token = $3 AND status = 'running'",
        )
        .bind(until)
        .bind(lease.job_id.0)
        .bind(lease.token)
        .execute(backend.writer())
        .await
        .map_err(db("extending a job lease"))?;
        Ok(result.rows_affected() == 1)
    }

    pub(crate) async fn complete(backend: &B, lease: &JobLease) -> Result<bool> {
        let result = sqlx::query(COMPLETE)
            .bind(lease.job_id.0)
            .bind(lease.token)
            .execute(backend.writer())
            .await
            .map_err(db("completing a job"))?;
        Ok(result.rows_affected() == 1)
    }

    pub(crate) async fn counts(backend: &B) -> Result<Vec<JobCount>> {
        use osa_core::jobs::JobState;
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kind, CASE WHEN status = 'ready' AND run_at > $1 THEN 'scheduled' ELSE status END, \
             COUNT(*) FROM jobs GROUP BY 1, 2",
        )
        .bind(crate::now())
        .fetch_all(backend.read_pool())
        .await
        .map_err(db("counting jobs"))?;
        let mut counts = rows
            .into_iter()
            .map(|(kind, state, count)| {
                let state = match state.as_str() {
                    "ready" => JobState::Ready,
                    "scheduled" => JobState::Scheduled,
                    "running" => JobState::Running,
                    "dead" => JobState::Dead,
                    other => {
                        return Err(Error::internal(format!(
                            "a job in the unknown state {other:?}"
                        )));
                    }
                };
                Ok(JobCount {
                    kind,
                    state,
                    count: count.max(0) as u64,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        counts.sort_by(|a, b| (&a.kind, a.state).cmp(&(&b.kind, b.state)));
        Ok(counts)
    }

    pub(crate) async fn fail(
        backend: &B,
        lease: &JobLease,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<FailOutcome> {
        let status: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET status = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'ready' END, \
             run_at = $1, locked_until = NULL, lease_token = NULL, last_error = $2 \
             WHERE id = $3 AND lease_token = $4 AND status = 'running' RETURNING status",
        )
        .bind(crate::truncate_micros(retry_at))
        .bind(crate::cap_error(error))
        .bind(lease.job_id.0)
        .bind(lease.token)
        .fetch_optional(backend.writer())
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

    /// Enqueues inside the caller's transaction; `None` when the dedupe key is
    /// taken by a job that still exists.
    pub(crate) async fn enqueue_in(
        conn: &mut DB::Connection,
        job: &NewJob,
    ) -> Result<Option<JobId>> {
        if job.max_attempts == 0 {
            return Err(Error::invalid(
                "max_attempts",
                "a job needs at least one attempt",
            ));
        }
        let id = JobId::new_random();
        const INSERT: &str = "INSERT INTO jobs (id, kind, payload, status, max_attempts, run_at, dedupe_key, \
                              created_at) VALUES ($1, $2, $3, 'ready', $4, $5, $6, $7) ON CONFLICT DO NOTHING";
        // Where the backend wakes workers, the wake-up is part of the insert's
        // statement (sent only when a job was inserted, not for a taken dedupe key).
        let notify: Option<&str> = B::ENQUEUE_NOTIFY;
        let sql = match notify {
            Some(select) => format!("WITH j AS ({INSERT} RETURNING kind) {select}"),
            None => INSERT.to_string(),
        };
        let query = sqlx::query(&sql)
            .bind(id.0)
            .bind(&job.kind)
            .bind(Json(&job.payload))
            .bind(crate::rows::as_i32(job.max_attempts, "max_attempts")?)
            .bind(crate::truncate_micros(job.run_at))
            .bind(job.dedupe_key.as_deref())
            .bind(crate::now());
        let inserted = if notify.is_some() {
            use sqlx::Row;
            let row = query
                .fetch_one(&mut *conn)
                .await
                .map_err(db("enqueueing a job"))?;
            row.try_get::<i64, _>(0).map_err(db("enqueueing a job"))? > 0
        } else {
            query
                .execute(&mut *conn)
                .await
                .map_err(db("enqueueing a job"))?
                .rows_affected()
                > 0
        };
        Ok(inserted.then_some(id))
    }

    /// Enqueues inside the caller's transaction a job already leased to the caller
    /// for `lease_for` (first delivery), as if claimed right after the commit;
    /// `None` when the dedupe key is taken. No wake-up is sent: nobody else should
    /// take it.
    pub(crate) async fn enqueue_claimed_in(
        conn: &mut DB::Connection,
        job: &NewJob,
        lease_for: Duration,
    ) -> Result<Option<ClaimedJob>> {
        if job.max_attempts == 0 {
            return Err(Error::invalid(
                "max_attempts",
                "a job needs at least one attempt",
            ));
        }
        let id = JobId::new_random();
        let token = uuid::Uuid::new_v4();
        let now = crate::now();
        let locked_until = crate::lease_end(now, lease_for)?;
        let result = sqlx::query(
            "INSERT INTO jobs (id, kind, payload, status, attempt, max_attempts, run_at, dedupe_key, created_at, \
             lease_token, locked_until) VALUES ($1, $2, $3, 'running', 1, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id.0)
        .bind(&job.kind)
        .bind(Json(&job.payload))
        .bind(crate::rows::as_i32(job.max_attempts, "max_attempts")?)
        .bind(crate::truncate_micros(job.run_at))
        .bind(job.dedupe_key.as_deref())
        .bind(now)
        .bind(token)
        .bind(locked_until)
        .execute(&mut *conn)
        .await
        .map_err(db("enqueueing a job"))?;
        if result.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some(ClaimedJob {
            kind: job.kind.clone(),
            payload: job.payload.clone(),
            attempt: 1,
            max_attempts: job.max_attempts,
            lease: JobLease {
                job_id: id,
                token,
                locked_until,
            },
        }))
    }

    /// Deletes a finished job if the lease is still held.
    pub(crate) async fn complete_in(conn: &mut DB::Connection, lease: &JobLease) -> Result<bool> {
        let result = sqlx::query(COMPLETE)
            .bind(lease.job_id.0)
            .bind(lease.token)
            .execute(&mut *conn)
            .await
            .map_err(db("completing a job"))?;
        Ok(result.rows_affected() == 1)
    }
}

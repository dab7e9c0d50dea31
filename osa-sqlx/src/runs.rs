//! `ValidationRunStore`, written once for both backends over [`SqlBackend`].
//!
//! Every `apply_*` runs in one transaction that first locks the run's row (Postgres
//! `FOR UPDATE`; SQLite holds the write lock from `BEGIN IMMEDIATE`), so a redelivered
//! plan sees the committed `current_step` and becomes a no-op.

use std::marker::PhantomData;
use std::time::Duration;

use chrono::{DateTime, Utc};
use osa_core::feature::FeatureSpec;
use osa_core::feature_store::FeatureBatch;
use osa_core::hook::OutcomeCounts;
use osa_core::id::{ConventionSlug, HookRunId, RecordId, ValidationRunId};
use osa_core::jobs::{ClaimedJob, JobLease};
use osa_core::validation::{
    Applied, FeatureChunks, FinalizePlan, RecordChunks, RecordVerdict, RunEvent, RunEventKind,
    RunProgress, RunStatus, StagedReplace, StepPlan, StepProgress, StepRelease, SubmitPlan,
    ValidationRun, ValidationRunView, Verdict,
};
use osa_core::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Database, Executor, IntoArguments};
use uuid::Uuid;

use crate::backend::{Bind, Column, Fetch, RowsAffected, SqlBackend};
use crate::error::{corrupt, db};
use crate::features::Features;
use crate::jobs::Jobs;
use crate::registry::Registry;
use crate::rows::as_i32;

/// The lower-case wire name of a serde enum (`running`, `passed`).
pub(crate) fn enum_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("status enums serialise as strings, got {other:?}"),
    }
}

/// Parses a stored enum name.
pub(crate) fn parse_enum<T: DeserializeOwned>(what: &'static str, name: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|e| corrupt(what, e))
}

/// Statuses a run can no longer leave, as an SQL list.
/// Most record ids in one row of `validation_run_record_chunks`: a page of records
/// reads (SQLite: parses) only the chunks it overlaps. The migration that introduced
/// chunks split earlier lists at the same size.
const RECORD_CHUNK: usize = 10_000;

pub(crate) const TERMINAL: &str = "('completed', 'rejected', 'failed', 'cancelled')";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RunRow {
    pub id: Uuid,
    pub convention: String,
    pub status: String,
    pub current_step: i32,
    pub steps: Json<Vec<StepRelease>>,
    pub record_count: i32,
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RunRow {
    pub(crate) fn into_run(self) -> Result<ValidationRun> {
        Ok(ValidationRun {
            id: ValidationRunId(self.id),
            convention: ConventionSlug::new(self.convention)
                .map_err(|e| corrupt("convention slug", e))?,
            status: parse_enum("run status", &self.status)?,
            current_step: u32::try_from(self.current_step)
                .map_err(|e| corrupt("current step", e))?,
            steps: self.steps.0,
            record_count: u32::try_from(self.record_count)
                .map_err(|e| corrupt("record count", e))?,
            failure: self.failure,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StepRow {
    pub step: i32,
    pub status: String,
    pub hook_run_id: Uuid,
    pub passed: i32,
    pub rejected: i32,
    pub errored: i32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outputs_ref: String,
}

/// Builds the view: every planned step with its committed row, if any, and every
/// record in submit order with its verdict. A record without a settled verdict row is
/// accepted when the run completed and pending otherwise.
pub(crate) fn view(
    run: ValidationRun,
    steps: Vec<StepRow>,
    record_ids: Vec<String>,
    settled: Vec<(String, Json<Verdict>)>,
) -> Result<ValidationRunView> {
    let progress = step_progress(&run, &steps)?;
    let mut settled: std::collections::HashMap<String, Verdict> = settled
        .into_iter()
        .map(|(id, verdict)| (id, verdict.0))
        .collect();
    let unsettled = unsettled_verdict(&run.status);
    let verdicts = record_ids
        .into_iter()
        .map(|id| {
            let verdict = settled.remove(&id).unwrap_or_else(|| unsettled.clone());
            Ok(RecordVerdict {
                record_id: RecordId::new(id).map_err(|e| corrupt("record id", e))?,
                verdict,
            })
        })
        .collect::<Result<_>>()?;
    Ok(ValidationRunView {
        run,
        steps: progress,
        verdicts,
    })
}

/// The verdict of a record without a settled verdict row in a run of `status`.
fn unsettled_verdict(status: &RunStatus) -> Verdict {
    if *status == RunStatus::Completed {
        Verdict::Accepted
    } else {
        Verdict::Pending
    }
}

/// Builds the progress: the view's run and steps, how many records are still pending,
/// and whether any record errored.
pub(crate) fn progress(
    run: ValidationRun,
    steps: Vec<StepRow>,
    in_play: i64,
    any_errored: bool,
) -> Result<RunProgress> {
    let steps = step_progress(&run, &steps)?;
    let in_play = u32::try_from(in_play).map_err(|e| corrupt("records in play", e))?;
    Ok(RunProgress {
        run,
        steps,
        in_play,
        any_errored,
    })
}

/// Every planned step with its committed row, if any.
fn step_progress(run: &ValidationRun, steps: &[StepRow]) -> Result<Vec<StepProgress>> {
    let count = |v: i32| u32::try_from(v).map_err(|e| corrupt("step count", e));
    let mut progress = Vec::with_capacity(run.steps.len());
    for release in &run.steps {
        let row = steps
            .iter()
            .find(|s| i64::from(s.step) == i64::from(release.index));
        progress.push(match row {
            Some(row) => StepProgress {
                release: release.clone(),
                status: parse_enum("step status", &row.status)?,
                hook_run_id: Some(HookRunId(row.hook_run_id)),
                counts: OutcomeCounts {
                    passed: count(row.passed)?,
                    rejected: count(row.rejected)?,
                    errored: count(row.errored)?,
                },
                started_at: Some(row.started_at),
                finished_at: Some(row.finished_at),
                outputs_ref: Some(row.outputs_ref.clone()),
            },
            None => StepProgress::pending(release.clone()),
        });
    }
    Ok(progress)
}

/// Decodes a stored event.
pub(crate) fn event(seq: i64, at: DateTime<Utc>, kind: Json<RunEventKind>) -> Result<RunEvent> {
    Ok(RunEvent {
        seq: u64::try_from(seq).map_err(|e| corrupt("event sequence", e))?,
        at,
        kind: kind.0,
    })
}

/// Whether a status string is terminal.
pub(crate) fn is_terminal(status: &str) -> Result<bool> {
    Ok(parse_enum::<RunStatus>("run status", status)?.is_terminal())
}

/// The run store's statements for backend `B` (transaction-level functions, and the
/// bodies of `ValidationRunStore`).
pub(crate) struct Runs<B>(PhantomData<B>);

impl<B, DB> Runs<B>
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
    for<'q> f64: Bind<'q, DB>,
    for<'q> Uuid: Bind<'q, DB>,
    for<'q> DateTime<Utc>: Bind<'q, DB>,
    for<'q> Json<&'q FeatureSpec>: Bind<'q, DB>,
    for<'q> Json<&'q osa_core::runtime::RuntimeConfig>: Bind<'q, DB>,
    for<'q> Json<&'q serde_json::Value>: Bind<'q, DB>,
    for<'q> Json<serde_json::Value>: Bind<'q, DB>,
    for<'q> Json<&'q RunEventKind>: Bind<'q, DB>,
    for<'q> Json<&'q Vec<StepRelease>>: Bind<'q, DB>,
    for<'q> Option<String>: Bind<'q, DB>,
    for<'q> chrono::NaiveDate: Bind<'q, DB>,
    for<'q> bool: Bind<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    f64: Column<DB>,
    bool: Column<DB>,
    DateTime<Utc>: Column<DB>,
    chrono::NaiveDate: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
    String: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    Uuid: Column<DB>,
    Json<FeatureSpec>: Column<DB>,
    crate::rows::HookRow: Fetch<DB>,
    crate::rows::ReleaseRow: Fetch<DB>,
    crate::rows::RunRow: Fetch<DB>,
    crate::rows::JobRow: Fetch<DB>,
    (String, String, i64): Fetch<DB>,
    RunRow: Fetch<DB>,
    StepRow: Fetch<DB>,
    (String, i32): Fetch<DB>,
    (String, Json<Verdict>): Fetch<DB>,
    (String, Option<Json<Verdict>>): Fetch<DB>,
    (i64, DateTime<Utc>, Json<RunEventKind>): Fetch<DB>,
{
    /// Appends events with gap-free sequence numbers (the run row is locked).
    async fn append_events(
        conn: &mut DB::Connection,
        run: ValidationRunId,
        events: &[RunEventKind],
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let last: i64 = sqlx::query_scalar(
            "UPDATE validation_runs SET event_seq = event_seq + $1 WHERE id = $2 RETURNING event_seq",
        )
        .bind(events.len() as i64)
        .bind(run.0)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("numbering run events"))?;
        Self::insert_events(conn, run, last, events).await
    }

    /// Inserts events numbered up to `last` (already reserved in `event_seq`) in one
    /// statement.
    async fn insert_events(
        conn: &mut DB::Connection,
        run: ValidationRunId,
        last: i64,
        events: &[RunEventKind],
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = (0..events.len())
            .map(|i| format!("($1, ${}, $2, ${})", 3 + 2 * i, 4 + 2 * i))
            .collect();
        let sql = format!(
            "INSERT INTO validation_events (run_id, seq, at, event) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(run.0).bind(crate::now());
        for (i, event) in events.iter().enumerate() {
            query = query
                .bind(last - events.len() as i64 + 1 + i as i64)
                .bind(Json(event));
        }
        query
            .execute(&mut *conn)
            .await
            .map_err(db("recording run events"))?;
        Ok(())
    }

    async fn run_row(conn: &mut DB::Connection, run: ValidationRunId) -> Result<Option<RunRow>> {
        sqlx::query_as(
            "SELECT id, convention, status, current_step, steps, record_count, failure, created_at, \
             updated_at FROM validation_runs WHERE id = $1",
        )
        .bind(run.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading a validation run"))
    }

    async fn step_rows(conn: &mut DB::Connection, run: ValidationRunId) -> Result<Vec<StepRow>> {
        sqlx::query_as(
            "SELECT step, status, hook_run_id, passed, rejected, errored, started_at, finished_at, \
             outputs_ref FROM validation_steps WHERE run_id = $1 ORDER BY step",
        )
        .bind(run.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("reading validation steps"))
    }

    /// Locks the run and returns (status, current_step); NotFound when absent.
    async fn lock_run(conn: &mut DB::Connection, run: ValidationRunId) -> Result<(String, i32)> {
        sqlx::query_as(&format!(
            "SELECT status, current_step FROM validation_runs WHERE id = $1{}",
            B::ROW_LOCK
        ))
        .bind(run.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading a validation run"))?
        .ok_or_else(|| Error::not_found("validation run", run))
    }

    /// Records the verdicts a step settled, in one statement: they travel as one
    /// JSON object keyed by record id.
    async fn insert_verdicts<'a>(
        conn: &mut DB::Connection,
        run: ValidationRunId,
        verdicts: impl IntoIterator<Item = (&'a RecordId, &'a Verdict)>,
    ) -> Result<()> {
        let by_record: serde_json::Map<String, serde_json::Value> = verdicts
            .into_iter()
            .map(|(id, verdict)| {
                (
                    id.to_string(),
                    serde_json::to_value(verdict).expect("verdicts serialise"),
                )
            })
            .collect();
        if by_record.is_empty() {
            return Ok(());
        }
        sqlx::query(B::INSERT_VERDICTS)
            .bind(Json(serde_json::Value::Object(by_record)))
            .bind(run.0)
            .execute(&mut *conn)
            .await
            .map_err(db("recording verdicts"))?;
        Ok(())
    }

    /// Commits a step plan (see `apply_step`); with `claim_next`, the next job is
    /// inserted already leased to the caller for that long and returned.
    async fn apply_step_in(
        conn: &mut DB::Connection,
        plan: &StepPlan,
        claim_next: Option<Duration>,
    ) -> Result<(Applied, Option<ClaimedJob>)> {
        let step = as_i32(plan.step, "step")?;
        // Advancing the run locks its row, checks that this step is the current one,
        // and reserves the numbers of the step's events, in one statement.
        let advanced: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE validation_runs SET current_step = $1, status = 'running', updated_at = $2, \
             event_seq = event_seq + $3 WHERE id = $4 AND current_step = $5 AND status NOT IN {TERMINAL} \
             RETURNING event_seq"
        ))
        .bind(step + 1)
        .bind(crate::now())
        .bind(plan.events.len() as i64)
        .bind(plan.run_id.0)
        .bind(step)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("advancing a validation run"))?;
        let Some(last) = advanced else {
            let (status, current) = Self::lock_run(conn, plan.run_id).await?;
            if is_terminal(&status)? || step < current {
                Self::complete_lease(conn, plan.completes.as_ref()).await?;
                return Ok((Applied::AlreadyApplied, None));
            }
            return Err(Error::conflict(
                "validation run",
                plan.run_id,
                format!("step {step} cannot commit before step {current}"),
            ));
        };
        Registry::<B>::insert_run(conn, &plan.hook_run).await?;
        let run = &plan.hook_run;
        sqlx::query(
            "INSERT INTO validation_steps (run_id, step, status, hook_run_id, passed, rejected, errored, \
             outputs_ref, started_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(plan.run_id.0)
        .bind(step)
        .bind(enum_name(&plan.status))
        .bind(run.id.0)
        .bind(as_i32(run.counts.passed, "passed")?)
        .bind(as_i32(run.counts.rejected, "rejected")?)
        .bind(as_i32(run.counts.errored, "errored")?)
        .bind(&plan.outputs_ref)
        .bind(crate::truncate_micros(run.started_at))
        .bind(crate::truncate_micros(run.finished_at))
        .execute(&mut *conn)
        .await
        .map_err(db("recording a step"))?;
        Self::insert_verdicts(
            conn,
            plan.run_id,
            plan.verdicts.iter().map(|v| (&v.record_id, &v.verdict)),
        )
        .await?;
        Self::insert_events(conn, plan.run_id, last, &plan.events).await?;
        let next = match claim_next {
            Some(lease_for) => {
                Jobs::<B>::enqueue_claimed_in(conn, &plan.next_job, lease_for).await?
            }
            None => {
                Jobs::<B>::enqueue_in(conn, &plan.next_job).await?;
                None
            }
        };
        Self::complete_lease(conn, plan.completes.as_ref()).await?;
        Ok((Applied::Applied, next))
    }

    /// The finalize's statements in `tx` (see `apply_finalize`). `staged`: batches
    /// `tx` has already written and replaces it has already cleared (see
    /// `StagedFeatures::replace`); then a run that has already ended is reported as
    /// `AlreadyApplied` without acknowledging the job (the caller rolls `tx` back
    /// and applies the plan afresh, which does).
    pub(crate) async fn finalize_in(
        backend: &B,
        tx: &mut DB::Connection,
        plan: &FinalizePlan,
        staged: Option<(&[FeatureBatch], &[StagedReplace])>,
        more: Option<&mut dyn FeatureChunks>,
    ) -> Result<Applied> {
        // Ending the run locks its row, checks it has not ended, and reserves the
        // numbers of the events, in one statement.
        let finished: Option<i64> = if plan.status.is_terminal() {
            sqlx::query_scalar(&format!(
                "UPDATE validation_runs SET status = $1, updated_at = $2, event_seq = event_seq + $3, \
                 failure = $5 WHERE id = $4 AND status NOT IN {TERMINAL} RETURNING event_seq"
            ))
            .bind(enum_name(&plan.status))
            .bind(crate::now())
            .bind(plan.events.len() as i64)
            .bind(plan.run_id.0)
            .bind(plan.failure.as_deref())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("finishing a validation run"))?
        } else {
            None
        };
        let Some(last) = finished else {
            let (status, _) = Self::lock_run(tx, plan.run_id).await?;
            if is_terminal(&status)? {
                if staged.is_none() {
                    Self::complete_lease(tx, plan.completes.as_ref()).await?;
                }
                return Ok(Applied::AlreadyApplied);
            }
            return Err(Error::invalid(
                "status",
                "a run finalizes into a terminal status",
            ));
        };
        // All batches at once, so the replace locks of every hook are taken in one
        // global order.
        let (written, replaced) = staged.unwrap_or_default();
        Features::<B>::replace_batches_in(backend, tx, &plan.features, written, replaced).await?;
        if let Some(more) = more {
            while let Some(chunk) = more.next_chunk().await? {
                Features::<B>::replace_batches_in(backend, tx, &chunk, &[], &[]).await?;
            }
        }
        Self::insert_events(tx, plan.run_id, last, &plan.events).await?;
        Self::complete_lease(tx, plan.completes.as_ref()).await?;
        Ok(Applied::Applied)
    }

    async fn complete_lease(conn: &mut DB::Connection, lease: Option<&JobLease>) -> Result<()> {
        if let Some(lease) = lease {
            Jobs::<B>::complete_in(conn, lease).await?;
        }
        Ok(())
    }

    /// Stores `ids` as the record chunks of `run` starting at submit position
    /// `*next`, which it advances.
    async fn insert_record_chunks(
        conn: &mut DB::Connection,
        run: ValidationRunId,
        next: &mut usize,
        ids: &[RecordId],
    ) -> Result<()> {
        for chunk in ids.chunks(RECORD_CHUNK) {
            let start = i32::try_from(*next)
                .map_err(|_| Error::invalid("records", format!("{next} records are too many")))?;
            sqlx::query(
                "INSERT INTO validation_run_record_chunks (run_id, start_pos, id_count, record_ids) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(run.0)
            .bind(start)
            .bind(chunk.len() as i32)
            .bind(B::text_list(chunk.iter().map(|r| r.to_string()).collect()))
            .execute(&mut *conn)
            .await
            .map_err(db("recording submitted records"))?;
            *next += chunk.len();
        }
        Ok(())
    }

    pub(crate) async fn create_run(
        backend: &B,
        plan: &SubmitPlan,
        more: Option<&mut dyn RecordChunks>,
    ) -> Result<()> {
        let run = &plan.run;
        let twice = |id: &dyn std::fmt::Display| {
            Error::invalid(
                "records",
                format!("record `{id}` appears twice in the submission"),
            )
        };
        if more.is_none() {
            let mut seen = std::collections::HashSet::with_capacity(plan.records.len());
            if let Some(id) = plan.records.iter().find(|id| !seen.insert(*id)) {
                return Err(twice(id));
            }
        }
        let mut tx = backend.begin().await?;
        sqlx::query(
            "INSERT INTO validation_runs (id, convention, status, current_step, steps, record_count, \
             inputs_ref, failure, created_at, updated_at, event_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(run.id.0)
        .bind(run.convention.as_str())
        .bind(enum_name(&run.status))
        .bind(as_i32(run.current_step, "current_step")?)
        .bind(Json(&run.steps))
        .bind(as_i32(run.record_count, "record_count")?)
        .bind(&plan.inputs_ref)
        .bind(run.failure.as_deref())
        .bind(crate::truncate_micros(run.created_at))
        .bind(crate::truncate_micros(run.updated_at))
        // The submit's events are numbered from 1 as the run is created.
        .bind(plan.events.len() as i64)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                Error::conflict("validation run", run.id, "a run with this id exists")
            }
            _ => db("creating a validation run")(e),
        })?;
        // The record ids, in submit order, in chunks of at most `RECORD_CHUNK` ids;
        // verdicts are added only as hooks settle them.
        let mut count = 0;
        Self::insert_record_chunks(&mut tx, run.id, &mut count, &plan.records).await?;
        if let Some(more) = more {
            // The rest as it comes, appended chunk after chunk; repeats are looked for
            // once every id is in.
            while let Some(chunk) = more.next_chunk().await? {
                Self::insert_record_chunks(&mut tx, run.id, &mut count, &chunk).await?;
            }
            if count != run.record_count as usize {
                return Err(Error::invalid(
                    "records",
                    format!(
                        "the run counts {} records, the submission has {count}",
                        run.record_count
                    ),
                ));
            }
            let repeated: Option<String> = sqlx::query_scalar(B::REPEATED_RECORD)
                .bind(run.id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("checking submitted records"))?;
            if let Some(id) = repeated {
                return Err(twice(&id));
            }
        }
        Self::insert_events(&mut tx, run.id, plan.events.len() as i64, &plan.events).await?;
        if let Some(job) = &plan.first_job {
            Jobs::<B>::enqueue_in(&mut tx, job).await?;
        }
        tx.commit().await.map_err(db("creating a validation run"))
    }

    pub(crate) async fn apply_step(backend: &B, plan: &StepPlan) -> Result<Applied> {
        let mut tx = backend.begin().await?;
        let (applied, _) = Self::apply_step_in(&mut tx, plan, None).await?;
        tx.commit().await.map_err(db("committing a step"))?;
        Ok(applied)
    }

    pub(crate) async fn apply_step_claiming_next(
        backend: &B,
        plan: &StepPlan,
        lease_for: Duration,
    ) -> Result<(Applied, Option<ClaimedJob>)> {
        let mut tx = backend.begin().await?;
        let applied = Self::apply_step_in(&mut tx, plan, Some(lease_for)).await?;
        tx.commit().await.map_err(db("committing a step"))?;
        Ok(applied)
    }

    pub(crate) async fn apply_finalize(
        backend: &B,
        plan: &FinalizePlan,
        more: Option<&mut dyn FeatureChunks>,
    ) -> Result<Applied> {
        let mut tx = backend.begin().await?;
        let applied = Self::finalize_in(backend, &mut tx, plan, None, more).await?;
        tx.commit()
            .await
            .map_err(db("finalizing a validation run"))?;
        Ok(applied)
    }

    pub(crate) async fn end_run(
        backend: &B,
        run: ValidationRunId,
        status: RunStatus,
        reason: &str,
    ) -> Result<bool> {
        // Only a finalize completes (or rejects) a run: it publishes the features
        // that make its unsettled records accepted.
        if !matches!(status, RunStatus::Failed | RunStatus::Cancelled) {
            return Err(Error::invalid(
                "status",
                "a run is ended as failed or cancelled",
            ));
        }
        let mut tx = backend.begin().await?;
        Self::lock_run(&mut tx, run).await?;
        let sql = format!(
            "UPDATE validation_runs SET status = $1, failure = $2, updated_at = $3 \
             WHERE id = $4 AND status NOT IN {TERMINAL}"
        );
        let ended = sqlx::query(&sql)
            .bind(enum_name(&status))
            .bind(reason)
            .bind(crate::now())
            .bind(run.0)
            .execute(&mut *tx)
            .await
            .map_err(db("ending a validation run"))?
            .rows_affected()
            == 1;
        if ended {
            let event = RunEventKind::Finished {
                status,
                accepted: 0,
                reason: Some(reason.to_string()),
            };
            Self::append_events(&mut tx, run, &[event]).await?;
        }
        tx.commit().await.map_err(db("ending a validation run"))?;
        Ok(ended)
    }

    pub(crate) async fn run_view(
        backend: &B,
        run: ValidationRunId,
    ) -> Result<Option<ValidationRunView>> {
        // One snapshot: the run, its steps and its verdicts agree with each other.
        let mut tx = backend.begin_snapshot().await?;
        let Some(row) = Self::run_row(&mut tx, run).await? else {
            return Ok(None);
        };
        let steps = Self::step_rows(&mut tx, run).await?;
        let record_ids = sqlx::query_scalar::<_, B::IdList>(
            "SELECT record_ids FROM validation_run_record_chunks WHERE run_id = $1 ORDER BY start_pos",
        )
        .bind(run.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("reading a run's records"))?
        .into_iter()
        .flat_map(B::id_list)
        .collect();
        let settled = sqlx::query_as::<_, (String, Json<Verdict>)>(
            "SELECT record_id, verdict FROM validation_records WHERE run_id = $1",
        )
        .bind(run.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("reading verdicts"))?;
        tx.commit().await.map_err(db("reading a validation run"))?;
        view(row.into_run()?, steps, record_ids, settled).map(Some)
    }

    pub(crate) async fn record_page(
        backend: &B,
        run: ValidationRunId,
        from: u32,
        limit: u32,
    ) -> Result<Option<Vec<RecordVerdict>>> {
        let mut tx = backend.begin_snapshot().await?;
        let Some(row) = Self::run_row(&mut tx, run).await? else {
            return Ok(None);
        };
        // No record sits at or past the run's count: nothing to read (and no
        // position the queries' 32-bit arithmetic would overflow on).
        if i64::from(from) >= i64::from(row.record_count) || limit == 0 {
            tx.commit().await.map_err(db("reading a validation run"))?;
            return Ok(Some(Vec::new()));
        }
        let start = i32::try_from(from).unwrap_or(i32::MAX);
        let end = start.saturating_add(i32::try_from(limit).unwrap_or(i32::MAX));
        let records = sqlx::query_as::<_, (String, Option<Json<Verdict>>)>(B::RECORD_PAGE)
            .bind(run.0)
            .bind(start)
            .bind(end)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("reading a run's records"))?;
        tx.commit().await.map_err(db("reading a validation run"))?;
        let unsettled = unsettled_verdict(&parse_enum("run status", &row.status)?);
        records
            .into_iter()
            .map(|(id, verdict)| {
                Ok(RecordVerdict {
                    record_id: RecordId::new(id).map_err(|e| corrupt("record id", e))?,
                    verdict: verdict.map_or_else(|| unsettled.clone(), |v| v.0),
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub(crate) async fn run_progress(
        backend: &B,
        run: ValidationRunId,
    ) -> Result<Option<RunProgress>> {
        let mut tx = backend.begin_snapshot().await?;
        let Some(row) = Self::run_row(&mut tx, run).await? else {
            return Ok(None);
        };
        let steps = Self::step_rows(&mut tx, run).await?;
        // How many records are still in play, and whether any errored; not the
        // records themselves.
        let (in_play, any_errored) = sqlx::query_as::<_, (Option<i64>, Option<bool>)>(B::IN_PLAY)
            .bind(run.0)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("reading verdicts"))?;
        tx.commit().await.map_err(db("reading a validation run"))?;
        let in_play = in_play.unwrap_or(0);
        progress(
            row.into_run()?,
            steps,
            in_play,
            any_errored.unwrap_or(false),
        )
        .map(Some)
    }

    pub(crate) async fn run_status(backend: &B, run: ValidationRunId) -> Result<Option<RunStatus>> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM validation_runs WHERE id = $1")
                .bind(run.0)
                .fetch_optional(backend.read_pool())
                .await
                .map_err(db("reading a validation run"))?;
        status.map(|s| parse_enum("run status", &s)).transpose()
    }

    pub(crate) async fn run_events(
        backend: &B,
        run: ValidationRunId,
        after: u64,
    ) -> Result<Vec<RunEvent>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows: Vec<(i64, chrono::DateTime<chrono::Utc>, Json<RunEventKind>)> = sqlx::query_as(
            "SELECT seq, at, event FROM validation_events WHERE run_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(run.0)
        .bind(after)
        .fetch_all(backend.read_pool())
        .await
        .map_err(db("reading run events"))?;
        rows.into_iter()
            .map(|(seq, at, kind)| event(seq, at, kind))
            .collect()
    }
}

//! `ValidationRunStore`, written once for both backends (see [`runs_for!`]).
//!
//! Every `apply_*` runs in one transaction that first locks the run's row (Postgres
//! `FOR UPDATE`; SQLite holds the write lock from `BEGIN IMMEDIATE`), so a redelivered
//! plan sees the committed `current_step` and becomes a no-op.

use chrono::{DateTime, Utc};
use osa_core::Result;
use osa_core::hook::OutcomeCounts;
use osa_core::id::{ConventionSlug, HookRunId, RecordId, ValidationRunId};
use osa_core::validation::{
    RecordVerdict, RunEvent, RunEventKind, RunProgress, RunStatus, StepProgress, StepRelease,
    ValidationRun, ValidationRunView, Verdict,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::corrupt;

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
    let unsettled = if run.status == RunStatus::Completed {
        Verdict::Accepted
    } else {
        Verdict::Pending
    };
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

/// Builds the progress: the view's run and steps, the ids of the records still
/// pending (in submit order), and whether any record errored.
pub(crate) fn progress(
    run: ValidationRun,
    steps: Vec<StepRow>,
    in_play: Vec<String>,
    any_errored: bool,
) -> Result<RunProgress> {
    let steps = step_progress(&run, &steps)?;
    let in_play = in_play
        .into_iter()
        .map(|id| RecordId::new(id).map_err(|e| corrupt("record id", e)))
        .collect::<Result<_>>()?;
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

/// Implements `ValidationRunStore` for a backend. Invoke inside the backend's `runs`
/// module with its row-lock clause.
macro_rules! runs_for {
    ($backend:ty, $conn:ty, lock = $lock:literal) => {
        use std::time::Duration;

        use async_trait::async_trait;
        use osa_core::id::{RecordId, ValidationRunId};
        use osa_core::jobs::{ClaimedJob, JobLease};
        use osa_core::validation::{
            Applied, FinalizePlan, RunEvent, RunEventKind, RunProgress, RunStatus, StagedFeatures,
            StagedReplace, StepPlan, SubmitPlan, ValidationRunStore, ValidationRunView, Verdict,
        };
        use osa_core::feature_store::FeatureBatch;
        use osa_core::{Error, Result};
        use sqlx::types::Json;

        use crate::error::db;
        use crate::rows::as_i32;
        use crate::runs::{RunRow, StepRow, TERMINAL, enum_name, is_terminal, parse_enum};

        /// Appends events with gap-free sequence numbers (the run row is locked).
        async fn append_events(conn: &mut $conn, run: ValidationRunId, events: &[RunEventKind]) -> Result<()> {
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
            insert_events(conn, run, last, events).await
        }

        /// Inserts events numbered up to `last` (already reserved in `event_seq`) in one
        /// statement.
        async fn insert_events(
            conn: &mut $conn,
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
            query.execute(&mut *conn).await.map_err(db("recording run events"))?;
            Ok(())
        }

        async fn run_row(conn: &mut $conn, run: ValidationRunId) -> Result<Option<RunRow>> {
            sqlx::query_as(
                "SELECT id, convention, status, current_step, steps, record_count, failure, created_at, \
                 updated_at FROM validation_runs WHERE id = $1",
            )
            .bind(run.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading a validation run"))
        }

        async fn step_rows(conn: &mut $conn, run: ValidationRunId) -> Result<Vec<StepRow>> {
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
        async fn lock_run(conn: &mut $conn, run: ValidationRunId) -> Result<(String, i32)> {
            sqlx::query_as(concat!("SELECT status, current_step FROM validation_runs WHERE id = $1", $lock))
                .bind(run.0)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("reading a validation run"))?
                .ok_or_else(|| Error::not_found("validation run", run))
        }

        /// Records the verdicts a step settled, in one statement: they travel as one
        /// JSON object keyed by record id.
        async fn insert_verdicts<'a>(
            conn: &mut $conn,
            run: ValidationRunId,
            verdicts: impl IntoIterator<Item = (&'a RecordId, &'a Verdict)>,
        ) -> Result<()> {
            let by_record: serde_json::Map<String, serde_json::Value> = verdicts
                .into_iter()
                .map(|(id, verdict)| {
                    (id.to_string(), serde_json::to_value(verdict).expect("verdicts serialise"))
                })
                .collect();
            if by_record.is_empty() {
                return Ok(());
            }
            sqlx::query(super::INSERT_VERDICTS)
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
            conn: &mut $conn,
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
                let (status, current) = lock_run(conn, plan.run_id).await?;
                if is_terminal(&status)? || step < current {
                    complete_lease(conn, plan.completes.as_ref()).await?;
                    return Ok((Applied::AlreadyApplied, None));
                }
                return Err(Error::conflict(
                    "validation run",
                    plan.run_id,
                    format!("step {step} cannot commit before step {current}"),
                ));
            };
            super::registry::insert_run(conn, &plan.hook_run).await?;
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
            insert_verdicts(conn, plan.run_id, plan.verdicts.iter().map(|v| (&v.record_id, &v.verdict))).await?;
            insert_events(conn, plan.run_id, last, &plan.events).await?;
            let next = match claim_next {
                Some(lease_for) => super::jobs::enqueue_claimed_in(conn, &plan.next_job, lease_for).await?,
                None => {
                    super::jobs::enqueue_in(conn, &plan.next_job).await?;
                    None
                }
            };
            complete_lease(conn, plan.completes.as_ref()).await?;
            Ok((Applied::Applied, next))
        }

        /// The finalize's statements in `tx` (see `apply_finalize`). `staged`: batches
        /// `tx` has already written and replaces it has already cleared (see
        /// `replace_staged`); then a run that has already ended is reported as
        /// `AlreadyApplied` without acknowledging the job (the caller rolls `tx` back
        /// and applies the plan afresh, which does).
        async fn finalize_in(
            backend: &$backend,
            tx: &mut $conn,
            plan: &FinalizePlan,
            staged: Option<(&[FeatureBatch], &[StagedReplace])>,
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
                let (status, _) = lock_run(tx, plan.run_id).await?;
                if is_terminal(&status)? {
                    if staged.is_none() {
                        complete_lease(tx, plan.completes.as_ref()).await?;
                    }
                    return Ok(Applied::AlreadyApplied);
                }
                return Err(Error::invalid("status", "a run finalizes into a terminal status"));
            };
            // All batches at once, so the replace locks of every hook are taken in one
            // global order.
            let (written, replaced) = staged.unwrap_or_default();
            backend
                .replace_batches_in(tx, &plan.features, written, replaced)
                .await?;
            insert_events(tx, plan.run_id, last, &plan.events).await?;
            complete_lease(tx, plan.completes.as_ref()).await?;
            Ok(Applied::Applied)
        }

        async fn complete_lease(conn: &mut $conn, lease: Option<&JobLease>) -> Result<()> {
            if let Some(lease) = lease {
                super::jobs::complete_in(conn, lease).await?;
            }
            Ok(())
        }

        #[async_trait]
        impl ValidationRunStore for $backend {
            async fn create_run(&self, plan: &SubmitPlan) -> Result<()> {
                let run = &plan.run;
                let mut seen = std::collections::HashSet::with_capacity(plan.records.len());
                if let Some(twice) = plan.records.iter().find(|id| !seen.insert(*id)) {
                    return Err(Error::invalid(
                        "records",
                        format!("record `{twice}` appears twice in the submission"),
                    ));
                }
                let mut tx = self.begin().await?;
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
                .bind(&run.failure)
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
                // The record ids, in submit order, as one row; verdicts are added only as
                // hooks settle them.
                sqlx::query("INSERT INTO validation_run_records (run_id, record_ids) VALUES ($1, $2)")
                    .bind(run.id.0)
                    .bind(super::text_list(plan.records.iter().map(|r| r.to_string()).collect()))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("recording submitted records"))?;
                insert_events(&mut tx, run.id, plan.events.len() as i64, &plan.events).await?;
                if let Some(job) = &plan.first_job {
                    super::jobs::enqueue_in(&mut tx, job).await?;
                }
                tx.commit().await.map_err(db("creating a validation run"))
            }

            async fn apply_step(&self, plan: &StepPlan) -> Result<Applied> {
                if let Some((applied, _)) = self.commit_step_at_once(plan, None).await? {
                    return Ok(applied);
                }
                let mut tx = self.begin().await?;
                let (applied, _) = apply_step_in(&mut tx, plan, None).await?;
                tx.commit().await.map_err(db("committing a step"))?;
                Ok(applied)
            }

            async fn apply_step_claiming_next(
                &self,
                plan: &StepPlan,
                lease_for: Duration,
            ) -> Result<(Applied, Option<ClaimedJob>)> {
                if let Some(done) = self.commit_step_at_once(plan, Some(lease_for)).await? {
                    return Ok(done);
                }
                let mut tx = self.begin().await?;
                let applied = apply_step_in(&mut tx, plan, Some(lease_for)).await?;
                tx.commit().await.map_err(db("committing a step"))?;
                Ok(applied)
            }

            async fn apply_finalize(&self, plan: &FinalizePlan) -> Result<Applied> {
                let mut tx = self.begin().await?;
                let applied = finalize_in(self, &mut tx, plan, None).await?;
                tx.commit().await.map_err(db("finalizing a validation run"))?;
                Ok(applied)
            }

            fn stages_features(&self) -> bool {
                Self::STAGES_FEATURES
            }

            async fn stage_features(&self, batches: Vec<FeatureBatch>) -> Result<Option<StagedFeatures>> {
                let Some(mut staging) = self.begin_staging().await? else {
                    return Ok(None);
                };
                self.stage_batches_in(&mut staging.tx, &batches).await?;
                Ok(Some(StagedFeatures {
                    batches,
                    replaced: Vec::new(),
                    transaction: Box::new(staging),
                }))
            }

            async fn replace_staged(
                &self,
                staged: &mut StagedFeatures,
                targets: Vec<StagedReplace>,
            ) -> Result<()> {
                let staging = staged
                    .transaction
                    .downcast_mut::<crate::Staging<<$conn as sqlx::Connection>::Database>>()
                    .ok_or_else(|| Error::internal("staged features of another backend"))?;
                self.clear_replaced_in(&mut staging.tx, &targets, &staged.batches).await?;
                staged.replaced.extend(targets);
                Ok(())
            }

            async fn apply_finalize_staged(
                &self,
                plan: &FinalizePlan,
                staged: StagedFeatures,
            ) -> Result<Applied> {
                type Staging = crate::Staging<<$conn as sqlx::Connection>::Database>;
                let StagedFeatures {
                    batches,
                    replaced,
                    transaction,
                } = staged;
                if let Ok(staging) = transaction.downcast::<Staging>() {
                    let mut tx = staging.tx;
                    match finalize_in(self, &mut tx, plan, Some((&batches, &replaced))).await {
                        Ok(Applied::Applied) => match tx.commit().await {
                            Ok(()) => return Ok(Applied::Applied),
                            // Whether it committed is unknown: the plan applied afresh
                            // finds the run ended if it did.
                            Err(e) => tracing::warn!(error = %e, "committing staged features failed; finalizing afresh"),
                        },
                        Ok(Applied::AlreadyApplied) => {
                            let _ = tx.rollback().await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "staged features unusable; finalizing afresh");
                            let _ = tx.rollback().await;
                        }
                    }
                }
                self.apply_finalize(plan).await
            }

            async fn end_run(&self, run: ValidationRunId, status: RunStatus, reason: &str) -> Result<bool> {
                // Only a finalize completes (or rejects) a run: it publishes the features
                // that make its unsettled records accepted.
                if !matches!(status, RunStatus::Failed | RunStatus::Cancelled) {
                    return Err(Error::invalid("status", "a run is ended as failed or cancelled"));
                }
                let mut tx = self.begin().await?;
                lock_run(&mut tx, run).await?;
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
                    append_events(&mut tx, run, &[event]).await?;
                }
                tx.commit().await.map_err(db("ending a validation run"))?;
                Ok(ended)
            }

            async fn run_view(&self, run: ValidationRunId) -> Result<Option<ValidationRunView>> {
                // One snapshot: the run, its steps and its verdicts agree with each other.
                let mut tx = self.begin_snapshot().await?;
                let Some(row) = run_row(&mut tx, run).await? else {
                    return Ok(None);
                };
                let steps = step_rows(&mut tx, run).await?;
                let record_ids = sqlx::query_scalar::<_, super::IdList>(
                    "SELECT record_ids FROM validation_run_records WHERE run_id = $1",
                )
                .bind(run.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading a run's records"))?
                .map(super::id_list)
                .unwrap_or_default();
                let settled = sqlx::query_as::<_, (String, Json<Verdict>)>(
                    "SELECT record_id, verdict FROM validation_records WHERE run_id = $1",
                )
                .bind(run.0)
                .fetch_all(&mut *tx)
                .await
                .map_err(db("reading verdicts"))?;
                tx.commit().await.map_err(db("reading a validation run"))?;
                crate::runs::view(row.into_run()?, steps, record_ids, settled).map(Some)
            }

            async fn run_progress(&self, run: ValidationRunId) -> Result<Option<RunProgress>> {
                let mut tx = self.begin_snapshot().await?;
                let Some(row) = run_row(&mut tx, run).await? else {
                    return Ok(None);
                };
                let steps = step_rows(&mut tx, run).await?;
                // Only the records still in play, as one list in submit order, and
                // whether any errored; not every settled verdict.
                let (in_play, any_errored) =
                    sqlx::query_as::<_, (Option<super::IdList>, Option<bool>)>(super::IN_PLAY)
                        .bind(run.0)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db("reading verdicts"))?;
                tx.commit().await.map_err(db("reading a validation run"))?;
                let in_play = in_play.map(super::id_list).unwrap_or_default();
                crate::runs::progress(row.into_run()?, steps, in_play, any_errored.unwrap_or(false)).map(Some)
            }

            async fn run_status(&self, run: ValidationRunId) -> Result<Option<RunStatus>> {
                let status: Option<String> = sqlx::query_scalar("SELECT status FROM validation_runs WHERE id = $1")
                    .bind(run.0)
                    .fetch_optional(self.read_pool())
                    .await
                    .map_err(db("reading a validation run"))?;
                status.map(|s| parse_enum("run status", &s)).transpose()
            }

            async fn run_events(&self, run: ValidationRunId, after: u64) -> Result<Vec<RunEvent>> {
                let after = i64::try_from(after).unwrap_or(i64::MAX);
                let rows: Vec<(i64, chrono::DateTime<chrono::Utc>, Json<RunEventKind>)> = sqlx::query_as(
                    "SELECT seq, at, event FROM validation_events WHERE run_id = $1 AND seq > $2 ORDER BY seq",
                )
                .bind(run.0)
                .bind(after)
                .fetch_all(self.read_pool())
                .await
                .map_err(db("reading run events"))?;
                rows.into_iter().map(|(seq, at, kind)| crate::runs::event(seq, at, kind)).collect()
            }
        }
    };
}

pub(crate) use runs_for;

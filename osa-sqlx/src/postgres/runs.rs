//! `ValidationRunStore` on Postgres (the shared implementation in `crate::runs`), with
//! what only Postgres does: the single-statement step commit, and feature rows staged
//! in an open transaction ahead of a finalize.

use std::time::Duration;

use async_trait::async_trait;
use osa_core::Result;
use osa_core::feature_store::FeatureBatch;
use osa_core::id::ValidationRunId;
use osa_core::jobs::ClaimedJob;
use osa_core::validation::{
    Applied, FeatureChunks, FeatureStaging, FinalizePlan, RecordChunks, RecordVerdict, RunEvent,
    RunProgress, RunStatus, StagedFeatures, StagedReplace, StepHandOff, StepPlan, SubmitPlan,
    ValidationRunStore, ValidationRunView,
};
use sqlx::Postgres;

use super::PgBackend;

type Runs = crate::runs::Runs<PgBackend>;
type Staging = crate::Staging<Postgres>;

#[async_trait]
impl ValidationRunStore for PgBackend {
    async fn create_run(&self, plan: &SubmitPlan) -> Result<()> {
        Runs::create_run(self, plan, None).await
    }

    async fn create_run_streaming(
        &self,
        plan: &SubmitPlan,
        more: &mut dyn RecordChunks,
    ) -> Result<()> {
        Runs::create_run(self, plan, Some(more)).await
    }

    async fn apply_step(&self, plan: &StepPlan) -> Result<Applied> {
        if let Some((applied, _)) = self.commit_step_at_once(plan, None).await? {
            return Ok(applied);
        }
        Runs::apply_step(self, plan).await
    }

    fn step_hand_off(&self) -> Option<&dyn StepHandOff> {
        Some(self)
    }

    fn feature_staging(&self) -> Option<&dyn FeatureStaging> {
        Some(self)
    }

    async fn apply_finalize(&self, plan: &FinalizePlan) -> Result<Applied> {
        Runs::apply_finalize(self, plan, None).await
    }

    async fn apply_finalize_streaming(
        &self,
        plan: &FinalizePlan,
        more: &mut dyn FeatureChunks,
    ) -> Result<Applied> {
        Runs::apply_finalize(self, plan, Some(more)).await
    }

    async fn end_run(&self, run: ValidationRunId, status: RunStatus, reason: &str) -> Result<bool> {
        Runs::end_run(self, run, status, reason).await
    }

    async fn run_view(&self, run: ValidationRunId) -> Result<Option<ValidationRunView>> {
        Runs::run_view(self, run).await
    }

    async fn record_page(
        &self,
        run: ValidationRunId,
        from: u32,
        limit: u32,
    ) -> Result<Option<Vec<RecordVerdict>>> {
        Runs::record_page(self, run, from, limit).await
    }

    async fn run_progress(&self, run: ValidationRunId) -> Result<Option<RunProgress>> {
        Runs::run_progress(self, run).await
    }

    async fn run_status(&self, run: ValidationRunId) -> Result<Option<RunStatus>> {
        Runs::run_status(self, run).await
    }

    async fn run_events(&self, run: ValidationRunId, after: u64) -> Result<Vec<RunEvent>> {
        Runs::run_events(self, run, after).await
    }
}

/// The single-statement step commit.
mod at_once {
    use std::time::Duration;

    use osa_core::id::JobId;
    use osa_core::jobs::{ClaimedJob, JobLease};
    use osa_core::validation::{Applied, StepPlan};
    use osa_core::{Error, Result};
    use sqlx::types::Json;

    use crate::rows::as_i32;
    use crate::runs::{TERMINAL, enum_name};

    impl super::super::PgBackend {
        /// Commits a step plan in one statement, in one round trip (a statement is its own
        /// transaction): data-modifying `WITH` clauses that all depend on advancing the
        /// run, so a step that is not the current one changes nothing. `None` when the run
        /// did not advance; the caller then sorts redelivery from conflict in a
        /// transaction of its own. With `claim_next`, the next job is inserted already
        /// leased to the caller for that long and returned; an unleased job wakes idle
        /// workers (`NOTIFY`, as an enqueue does).
        pub(crate) async fn commit_step_at_once(
            &self,
            plan: &StepPlan,
            claim_next: Option<Duration>,
        ) -> Result<Option<(Applied, Option<ClaimedJob>)>> {
            let step = as_i32(plan.step, "step")?;
            let run = &plan.hook_run;
            let next = &plan.next_job;
            if next.max_attempts == 0 {
                return Err(Error::invalid(
                    "max_attempts",
                    "a job needs at least one attempt",
                ));
            }
            let now = crate::now();
            let job_id = JobId::new_random();
            let lease = match claim_next {
                Some(lease_for) => Some((uuid::Uuid::new_v4(), crate::lease_end(now, lease_for)?)),
                None => None,
            };
            let (completed_job, completed_token) = plan
                .completes
                .as_ref()
                .map_or((None, None), |l| (Some(l.job_id.0), Some(l.token)));
            let sql = format!(
                "WITH adv AS (\
                   UPDATE validation_runs SET current_step = $1, status = 'running', updated_at = $2, \
                   event_seq = event_seq + $3 WHERE id = $4 AND current_step = $5 AND status NOT IN {TERMINAL} \
                   RETURNING event_seq), \
                 hr AS (\
                   INSERT INTO hook_runs (id, release_id, status, started_at, finished_at, duration_s, \
                   oom_retries, log_ref, input_sha256, passed, rejected, errored) \
                   SELECT $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 FROM adv \
                   ON CONFLICT (id) DO NOTHING), \
                 st AS (\
                   INSERT INTO validation_steps (run_id, step, status, hook_run_id, passed, rejected, \
                   errored, outputs_ref, started_at, finished_at) \
                   SELECT $4, $5, $18, $6, $15, $16, $17, $19, $9, $10 FROM adv), \
                 vd AS (\
                   INSERT INTO validation_records (run_id, record_id, verdict) \
                   SELECT $4, j.key, j.value FROM adv, jsonb_each($20) j), \
                 ev AS (\
                   INSERT INTO validation_events (run_id, seq, at, event) \
                   SELECT $4, adv.event_seq - $3 + e.ord, $2, e.event \
                   FROM adv, jsonb_array_elements($21) WITH ORDINALITY AS e(event, ord)), \
                 nj AS (\
                   INSERT INTO jobs (id, kind, payload, status, attempt, max_attempts, run_at, dedupe_key, \
                   created_at, lease_token, locked_until) \
                   SELECT $22, $23, $24, CASE WHEN $28::uuid IS NULL THEN 'ready' ELSE 'running' END, \
                   CASE WHEN $28::uuid IS NULL THEN 0 ELSE 1 END, $25, $26, $27, $2, $28, $29 FROM adv \
                   ON CONFLICT DO NOTHING RETURNING kind, status), \
                 done AS (\
                   DELETE FROM jobs WHERE id = $30 AND lease_token = $31 AND status = 'running' \
                   AND EXISTS (SELECT 1 FROM adv)) \
                 SELECT (SELECT event_seq FROM adv), (SELECT count(*) FROM nj), \
                 (SELECT count(*) FROM (SELECT kind FROM nj WHERE status = 'ready') r, \
             pg_notify('osa_jobs', r.kind))"
            );
            let verdicts: serde_json::Map<String, serde_json::Value> = plan
                .verdicts
                .iter()
                .map(|v| {
                    let verdict = serde_json::to_value(&v.verdict).expect("verdicts serialise");
                    (v.record_id.to_string(), verdict)
                })
                .collect();
            let query = sqlx::query_as(&sql)
                .bind(step + 1)
                .bind(now)
                .bind(plan.events.len() as i64)
                .bind(plan.run_id.0)
                .bind(step);
            let (advanced, inserted, _woken): (Option<i64>, i64, i64) =
                crate::backend::bind_hook_run(query, run)?
                    .bind(enum_name(&plan.status))
                    .bind(&plan.outputs_ref)
                    .bind(Json(serde_json::Value::Object(verdicts)))
                    .bind(Json(&plan.events))
                    .bind(job_id.0)
                    .bind(&next.kind)
                    .bind(Json(&next.payload))
                    .bind(as_i32(next.max_attempts, "max_attempts")?)
                    .bind(crate::truncate_micros(next.run_at))
                    .bind(&next.dedupe_key)
                    .bind(lease.map(|(token, _)| token))
                    .bind(lease.map(|(_, until)| until))
                    .bind(completed_job)
                    .bind(completed_token)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(crate::registry::hook_run_error(run, "committing a step"))?;
            if advanced.is_none() {
                return Ok(None);
            }
            let claimed = match lease {
                Some((token, locked_until)) if inserted == 1 => Some(ClaimedJob {
                    kind: next.kind.clone(),
                    payload: next.payload.clone(),
                    attempt: 1,
                    max_attempts: next.max_attempts,
                    lease: JobLease {
                        job_id,
                        token,
                        locked_until,
                    },
                }),
                _ => None,
            };
            Ok(Some((Applied::Applied, claimed)))
        }
    }
}

#[async_trait]
impl StepHandOff for PgBackend {
    async fn apply_step_claiming_next(
        &self,
        plan: &StepPlan,
        lease_for: Duration,
    ) -> Result<(Applied, Option<ClaimedJob>)> {
        if let Some(done) = self.commit_step_at_once(plan, Some(lease_for)).await? {
            return Ok(done);
        }
        Runs::apply_step_claiming_next(self, plan, lease_for).await
    }
}

#[async_trait]
impl FeatureStaging for PgBackend {
    async fn stage_features(
        &self,
        batches: Vec<FeatureBatch>,
    ) -> Result<Option<Box<dyn StagedFeatures>>> {
        let Some(mut staging) = self.begin_staging().await? else {
            return Ok(None);
        };
        crate::features::Features::<PgBackend>::stage_batches_in(self, &mut staging.tx, &batches)
            .await?;
        Ok(Some(Box::new(PgStaged {
            backend: self.clone(),
            staging,
            batches,
            replaced: Vec::new(),
        })))
    }
}

/// Feature rows staged in an open Postgres transaction.
struct PgStaged {
    backend: PgBackend,
    staging: Staging,
    batches: Vec<FeatureBatch>,
    replaced: Vec<StagedReplace>,
}

#[async_trait]
impl StagedFeatures for PgStaged {
    fn batches(&self) -> &[FeatureBatch] {
        &self.batches
    }

    async fn replace(&mut self, targets: Vec<StagedReplace>) -> Result<()> {
        crate::features::Features::<PgBackend>::clear_replaced_in(
            &self.backend,
            &mut self.staging.tx,
            &targets,
            &self.batches,
        )
        .await?;
        self.replaced.extend(targets);
        Ok(())
    }

    async fn finalize(self: Box<Self>, plan: &FinalizePlan) -> Result<Applied> {
        let PgStaged {
            backend,
            staging,
            batches,
            replaced,
        } = *self;
        let mut tx = staging.tx;
        match Runs::finalize_in(&backend, &mut tx, plan, Some((&batches, &replaced)), None).await {
            Ok(Applied::Applied) => match tx.commit().await {
                Ok(()) => return Ok(Applied::Applied),
                // Whether it committed is unknown: the plan applied afresh finds the
                // run ended if it did.
                Err(e) => {
                    tracing::warn!(error = %e, "committing staged features failed; finalizing afresh")
                }
            },
            Ok(Applied::AlreadyApplied) => {
                let _ = tx.rollback().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "staged features unusable; finalizing afresh");
                let _ = tx.rollback().await;
            }
        }
        Runs::apply_finalize(&backend, plan, None).await
    }
}

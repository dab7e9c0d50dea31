//! What a step or a finalize decides, apart from how it is carried out.
//!
//! A step job is split in two. The driver ([`Engine::run_step`](super::Engine)) does
//! the I/O: it reads the run's progress, prepares the batch directory, runs the hook
//! under the failure policy while watching the run's status, stores the log and the
//! outputs, and commits through the storage port. The planner here does none of that:
//! [`plan_step`] takes the facts the driver gathered ([`StepFacts`]: the run's
//! progress, the step, the release, the delivery, the times, and how the hook ended)
//! and returns a [`StepDecision`]: skip the job (the run ended meanwhile), fail the
//! run, retry the job, or commit a [`StepPlan`] and go on with the next step or the
//! finalize. The finalize is split the same way: [`plan_finalize`] turns the run's
//! progress and the feature rows read for it into the [`FinalizePlan`] to commit.
//!
//! The planner reads no clock, no storage and no file, and spawns nothing: the same
//! facts always give the same plan, so its decisions are unit-tested below.

use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;

use super::{FINALIZE_JOB, STEP_JOB, job_at};
use crate::blob::BlobKeys;
use crate::contract::{BatchOutcome, RecordOutcome};
use crate::feature_store::FeatureBatch;
use crate::hook::{HookRun, OutcomeCounts};
use crate::id::{Digest, HookName, HookRunId, RecordId, ReleaseId};
use crate::jobs::JobLease;
use crate::policy::{Decision, PriorAttempts};
use crate::validation::{
    FinalizePlan, RecordVerdict, RunEventKind, RunProgress, RunStatus, StagedReplace, StepPlan,
    StepProgress, StepStatus, Verdict,
};
use crate::{Error, Result};

/// Whether a delivered step still has work: its run is in progress and has not
/// committed the step yet (a redelivery after the commit has nothing to do).
pub(crate) fn step_due(progress: &RunProgress, step: u32) -> bool {
    !progress.run.status.is_terminal() && step >= progress.run.current_step
}

/// Whether a run whose status reads `status` (`None`: the run is gone) may start a
/// further hook.
pub(crate) fn run_goes_on(status: Option<RunStatus>) -> bool {
    status.is_some_and(|s| !s.is_terminal())
}

/// What the failure policy counts against the step on its `attempt`-th delivery (1
/// for the first): every earlier delivery was a retry.
pub(crate) fn prior_attempts(attempt: u32) -> PriorAttempts {
    PriorAttempts {
        retries: attempt.saturating_sub(1),
        ..PriorAttempts::default()
    }
}

/// Everything [`plan_step`] decides from.
#[derive(Debug, Clone)]
pub(crate) struct StepFacts {
    /// The run's progress before this step (the step not committed yet).
    pub progress: RunProgress,
    /// The step.
    pub step: u32,
    /// The release that ran (the step's snapshot).
    pub release_id: ReleaseId,
    /// This execution of the step (its blobs are keyed by it).
    pub execution_id: uuid::Uuid,
    /// sha256 of the `records.jsonl` the hook read.
    pub input_sha256: Digest,
    /// When the hook started.
    pub started_at: DateTime<Utc>,
    /// When the hook finished; the next job is due then.
    pub finished_at: DateTime<Utc>,
    /// The job the commit completes (`None` when run inline).
    pub completes: Option<JobLease>,
    /// Deliveries the next job gets.
    pub max_attempts: u32,
    /// How the hook's execution ended.
    pub hook: HookEnd,
}

/// How a step's hook execution ended.
#[derive(Debug, Clone)]
pub(crate) enum HookEnd {
    /// The run ended (cancelled, failed elsewhere) while the hook ran, and the hook
    /// was stopped.
    RunEnded,
    /// The hook ran to the end under the failure policy.
    Finished(Box<HookResult>),
}

/// The classified result of a hook's execution (OOM retries included), without its
/// log.
#[derive(Debug, Clone)]
pub(crate) struct HookResult {
    /// Records that passed, whose rows the driver has stored already (they are not in
    /// `outcome`).
    pub passed: u32,
    /// The merged outcomes of the other records; `missing` lists the records still
    /// without one.
    pub outcome: BatchOutcome,
    /// What the failure policy decided about the last attempt's failure, if any.
    pub decision: Option<Decision>,
    /// Whether the last attempt failed.
    pub failed: bool,
    /// Why the hook's outputs could not be read, if they could not.
    pub output_error: Option<String>,
    /// Wall-clock time of all attempts.
    pub duration: Duration,
    /// Memory doublings performed.
    pub oom_retries: u32,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StepDecision {
    /// Nothing is committed: the run ended meanwhile. The job is acknowledged.
    Skip,
    /// The run fails (the hook cannot run in this environment); only the job's holder
    /// ends it.
    FailRun {
        /// Why.
        reason: String,
    },
    /// Nothing is committed; the job is retried with backoff.
    Retry {
        /// Why.
        reason: String,
    },
    /// The step commits.
    Commit(Box<StepCommit>),
}

/// Where a run goes after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// The step of this index.
    Step(u32),
    /// The finalize (the last step ran, or no record is left in play).
    Finalize,
}

/// A step's commit: what to store, the plan, and the progress it leaves.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepCommit {
    /// The plan committed through the storage port.
    pub plan: StepPlan,
    /// Where the passed records' rows are stored (the plan's `outputs_ref`).
    pub outputs_key: Path,
    /// Where the hook's log is stored (the plan's `log_ref`), when it is kept: the
    /// execution failed or some record errored.
    pub log_key: Option<Path>,
    /// The job after this step.
    pub next: Next,
    /// The run's progress as this commit leaves it; its `in_play` are the records
    /// the next step gets, or that the finalize accepts.
    pub after: RunProgress,
}

impl StepCommit {
    /// The feature replaces a finalize right after this (last) step makes for the
    /// records still in play, `accepted`: one per hook run of the steps up to this
    /// one.
    pub(crate) fn staged_replaces(&self, accepted: &[RecordId]) -> Vec<StagedReplace> {
        let step = self.plan.step as usize;
        self.after.steps[..step]
            .iter()
            .filter_map(|p| p.hook_run_id.map(|run_id| (p.release.hook.clone(), run_id)))
            .chain([(self.hook().clone(), self.plan.hook_run.id)])
            .map(|(hook, run_id)| StagedReplace {
                hook,
                run_id,
                records: accepted.to_vec(),
            })
            .collect()
    }

    /// The step's hook.
    pub(crate) fn hook(&self) -> &HookName {
        &self.after.run.steps[self.plan.step as usize].hook
    }
}

/// Decides what a step does from `facts`. Errors only on a progress without the
/// step.
pub(crate) fn plan_step(facts: StepFacts) -> Result<StepDecision> {
    let StepFacts {
        progress,
        step,
        release_id,
        execution_id,
        input_sha256,
        started_at,
        finished_at,
        completes,
        max_attempts,
        hook,
    } = facts;
    let run_id = progress.run.id;
    let snapshot = progress
        .run
        .steps
        .get(step as usize)
        .cloned()
        .ok_or_else(|| Error::internal(format!("run {run_id} has no step {step}")))?;
    let result = match hook {
        HookEnd::RunEnded => return Ok(StepDecision::Skip),
        HookEnd::Finished(result) => *result,
    };
    let give_up_reason = match result.decision {
        Some(Decision::AbortRun { reason, .. }) => return Ok(StepDecision::FailRun { reason }),
        Some(Decision::Retry { reason }) => return Ok(StepDecision::Retry { reason }),
        Some(Decision::GiveUp { reason }) => Some(reason),
        Some(Decision::RetryWithMoreMemory { .. }) | None => None,
    };

    let hook_run_id = HookRunId::for_step(run_id, step, &snapshot.hook);
    // Records the hook left without an outcome error with the reason the execution
    // failed, else with "hook produced no outcome".
    let mut outcome = result.outcome;
    let missing_reason = match (&result.output_error, &give_up_reason) {
        (Some(error), _) => Some(format!("hook outputs unreadable: {error}")),
        (None, Some(reason)) => Some(format!("hook failed: {reason}")),
        (None, None) => None,
    };
    if let Some(reason) = missing_reason {
        for id in std::mem::take(&mut outcome.missing) {
            outcome.outcomes.insert(
                id,
                RecordOutcome::Errored {
                    error: reason.clone(),
                    retryable: false,
                },
            );
        }
    }
    let outcome = outcome.finish();
    let mut counts: OutcomeCounts = outcome.counts();
    counts.passed += result.passed;
    let failed_execution = result.failed || result.output_error.is_some();
    let log_key = (failed_execution || counts.errored > 0)
        .then(|| BlobKeys::step_log(run_id, step, execution_id));

    let mut verdicts: Vec<RecordVerdict> = Vec::new();
    for (id, record_outcome) in &outcome.outcomes {
        match record_outcome {
            // Counted above; the driver stores passed records' rows as they come.
            RecordOutcome::Passed { .. } => {}
            RecordOutcome::Rejected { reason } => verdicts.push(RecordVerdict {
                record_id: id.clone(),
                verdict: Verdict::Rejected {
                    step,
                    hook: snapshot.hook.clone(),
                    reason: reason.clone(),
                },
            }),
            RecordOutcome::Errored { error, .. } => verdicts.push(RecordVerdict {
                record_id: id.clone(),
                verdict: Verdict::Errored {
                    step,
                    hook: snapshot.hook.clone(),
                    error: error.clone(),
                },
            }),
        }
    }
    // The records still in play after this step: what the next step gets, or what the
    // finalize accepts.
    let remaining = progress.in_play.saturating_sub(verdicts.len() as u32);
    let last = step as usize + 1 >= progress.run.steps.len();
    let next = if last || counts.passed == 0 {
        Next::Finalize
    } else {
        Next::Step(step + 1)
    };
    let next_job = match next {
        Next::Finalize => job_at(FINALIZE_JOB, run_id, 0, max_attempts, finished_at),
        Next::Step(next) => job_at(STEP_JOB, run_id, next, max_attempts, finished_at),
    };
    let status = if failed_execution || counts.errored > 0 {
        StepStatus::Error
    } else if counts.rejected > 0 {
        StepStatus::Failed
    } else {
        StepStatus::Passed
    };
    let outputs_key = BlobKeys::step_outputs(run_id, step, execution_id);
    let hook_run = HookRun {
        id: hook_run_id,
        release_id,
        status: counts.status(),
        started_at,
        finished_at,
        duration_s: result.duration.as_secs_f64(),
        oom_retries: result.oom_retries,
        log_ref: log_key.as_ref().map(|key| key.to_string()),
        input_sha256: Some(input_sha256),
        counts,
    };
    let mut events: Vec<RunEventKind> = outcome
        .progress
        .iter()
        .map(|p| RunEventKind::HookProgress {
            step,
            label: p.step.clone(),
            status: p.status.clone(),
            message: p.message.clone(),
        })
        .collect();
    events.push(RunEventKind::StepFinished {
        step,
        hook: snapshot.hook.clone(),
        status,
        counts,
    });
    // The progress this commit leaves, for the worker that runs the next job.
    let mut after = progress;
    after.in_play = remaining;
    after.any_errored |= verdicts
        .iter()
        .any(|v| matches!(v.verdict, Verdict::Errored { .. }));
    after.run.current_step = step + 1;
    after.run.status = RunStatus::Running;
    if let Some(slot) = after.steps.get_mut(step as usize) {
        *slot = StepProgress {
            release: snapshot,
            status,
            hook_run_id: Some(hook_run_id),
            counts,
            started_at: Some(started_at),
            finished_at: Some(finished_at),
            outputs_ref: Some(outputs_key.to_string()),
        };
    }
    let plan = StepPlan {
        run_id,
        step,
        hook_run,
        status,
        verdicts,
        outputs_ref: outputs_key.to_string(),
        next_job,
        completes,
        events,
    };
    Ok(StepDecision::Commit(Box::new(StepCommit {
        plan,
        outputs_key,
        log_key,
        next,
        after,
    })))
}

/// The end of a run whose steps have all committed (or that has no record left in
/// play): the records still in play are accepted with `features`, their rows. A run
/// accepting nothing is rejected, or failed when some record errored.
pub(crate) fn plan_finalize(
    progress: RunProgress,
    features: Vec<FeatureBatch>,
    completes: Option<JobLease>,
) -> FinalizePlan {
    let accepted = progress.in_play;
    let status = match (accepted == 0, progress.any_errored) {
        (false, _) => RunStatus::Completed,
        (true, true) => RunStatus::Failed,
        (true, false) => RunStatus::Rejected,
    };
    // A run that accepted nothing because records errored says so.
    let failure = (status == RunStatus::Failed).then(|| {
        let (rejected, errored) = progress.steps.iter().fold((0, 0), |(r, e), s| {
            (r + s.counts.rejected, e + s.counts.errored)
        });
        format!("no record was accepted: {errored} errored, {rejected} rejected")
    });
    let events = vec![RunEventKind::Finished {
        status,
        accepted,
        reason: failure.clone(),
    }];
    FinalizePlan {
        run_id: progress.run.id,
        status,
        failure,
        accepted,
        features,
        completes,
        events,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::{Value, json};

    use super::*;
    use crate::contract::ProgressEntry;
    use crate::feature::FeatureValue;
    use crate::hook::HookRunStatus;
    use crate::id::{ConventionSlug, JobId, ValidationRunId};
    use crate::policy::FailurePolicy;
    use crate::runner::{FailureKind, RunFailure};
    use crate::validation::{StepRelease, ValidationRun};

    const RUN: ValidationRunId = ValidationRunId(uuid::Uuid::from_u128(1));
    const EXECUTION: uuid::Uuid = uuid::Uuid::from_u128(7);
    const MAX_ATTEMPTS: u32 = 5;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
    }

    fn hook(index: u32) -> HookName {
        HookName::new(format!("hook{index}")).unwrap()
    }

    fn release(index: u32) -> ReleaseId {
        ReleaseId(uuid::Uuid::from_u128(100 + u128::from(index)))
    }

    fn id(name: &str) -> RecordId {
        RecordId::new(name).unwrap()
    }

    fn ids(names: &[&str]) -> Vec<RecordId> {
        names.iter().map(|n| id(n)).collect()
    }

    fn lease() -> JobLease {
        JobLease {
            job_id: JobId(uuid::Uuid::from_u128(9)),
            token: uuid::Uuid::from_u128(10),
            locked_until: at(60),
        }
    }

    fn digest() -> Digest {
        Digest::of_bytes(b"records.jsonl")
    }

    /// A run of `steps` hooks at `step`: the earlier steps committed, `in_play` left.
    fn progress(steps: u32, step: u32, in_play: &[&str], any_errored: bool) -> RunProgress {
        let releases: Vec<StepRelease> = (0..steps)
            .map(|index| StepRelease {
                index,
                hook: hook(index),
                release_id: release(index),
                version: 1,
            })
            .collect();
        let steps_progress = releases
            .iter()
            .map(|r| {
                let mut p = StepProgress::pending(r.clone());
                if r.index < step {
                    p.status = StepStatus::Passed;
                    p.hook_run_id = Some(HookRunId::for_step(RUN, r.index, &r.hook));
                    p.outputs_ref = Some(format!("earlier/{}", r.index));
                }
                p
            })
            .collect();
        RunProgress {
            run: ValidationRun {
                id: RUN,
                convention: ConventionSlug::new("test-convention").unwrap(),
                status: if step == 0 {
                    RunStatus::Pending
                } else {
                    RunStatus::Running
                },
                current_step: step,
                steps: releases,
                record_count: 3,
                failure: None,
                created_at: at(0),
                updated_at: at(0),
            },
            steps: steps_progress,
            in_play: in_play.len() as u32,
            any_errored,
        }
    }

    /// A record and its rows as JSON values.
    type RecordRows = (&'static str, Vec<Vec<Value>>);

    /// A record's outcome in a case.
    #[derive(Clone, Copy)]
    enum Out {
        /// Passed with one row holding this integer (`None`: no rows).
        Pass(Option<i64>),
        Reject(&'static str),
        Error(&'static str),
    }

    /// How the hook ended in a case.
    #[derive(Clone)]
    struct Ran {
        outcomes: Vec<(&'static str, Out)>,
        missing: Vec<&'static str>,
        /// The last attempt's failure: its kind, the memory doublings before it and
        /// the memory it ran with (the real policy decides about it, on the case's
        /// delivery attempt).
        failure: Option<(FailureKind, u32, &'static str)>,
        output_error: Option<&'static str>,
        oom_retries: u32,
        progress: Vec<&'static str>,
    }

    fn ran(outcomes: &[(&'static str, Out)]) -> Ran {
        Ran {
            outcomes: outcomes.to_vec(),
            missing: Vec::new(),
            failure: None,
            output_error: None,
            oom_retries: 0,
            progress: Vec::new(),
        }
    }

    /// What the real failure policy decides about `kind` on delivery `attempt`, after
    /// `bumps` memory doublings at `memory`.
    fn policy(kind: FailureKind, attempt: u32, bumps: u32, memory: &str) -> Decision {
        let mut failure = RunFailure::new(kind, "detail");
        if kind == FailureKind::HookExit {
            failure.exit_code = Some(3);
        }
        let prior = PriorAttempts {
            memory_bumps: bumps,
            ..prior_attempts(attempt)
        };
        FailurePolicy::default().decide(&failure, prior, memory.parse().unwrap())
    }

    /// What a case expects committed (written out, not derived).
    struct Committed {
        status: StepStatus,
        hook_status: HookRunStatus,
        counts: (u32, u32, u32),
        verdicts: Vec<(&'static str, Out)>,
        rows: Vec<RecordRows>,
        in_play: Vec<&'static str>,
        any_errored: bool,
        log: bool,
        next: Next,
    }

    enum Expected {
        Skip,
        FailRun(&'static str),
        Retry(&'static str),
        Commit(Committed),
    }

    struct Case {
        name: &'static str,
        steps: u32,
        step: u32,
        in_play: Vec<&'static str>,
        any_errored: bool,
        attempt: u32,
        hook: Option<Ran>,
        expected: Expected,
    }

    fn facts(case: &Case) -> StepFacts {
        driven(case).0
    }

    /// The facts of `case` as the driver plans them, and the rows it stores for the
    /// passed records before planning, as `(record, rows)`.
    fn driven(case: &Case) -> (StepFacts, Vec<RecordRows>) {
        let mut stored = Vec::new();
        let hook = match &case.hook {
            None => HookEnd::RunEnded,
            Some(ran) => {
                let mut outcome = BatchOutcome::default();
                for (record, out) in &ran.outcomes {
                    let out = match *out {
                        Out::Pass(value) => RecordOutcome::Passed {
                            rows: value
                                .map(|v| vec![vec![FeatureValue::Integer(v)]])
                                .unwrap_or_default(),
                        },
                        Out::Reject(reason) => RecordOutcome::Rejected {
                            reason: reason.into(),
                        },
                        Out::Error(error) => RecordOutcome::Errored {
                            error: error.into(),
                            retryable: false,
                        },
                    };
                    outcome.outcomes.insert(id(record), out);
                }
                outcome.missing = ids(&ran.missing);
                outcome.progress = ran
                    .progress
                    .iter()
                    .map(|message| ProgressEntry {
                        step: Some("check".into()),
                        status: "running".into(),
                        message: Some((*message).into()),
                    })
                    .collect();
                // What the driver does before planning: the passed records' rows are
                // stored, only their number is planned with.
                let positions: Vec<(u32, RecordId)> = case
                    .in_play
                    .iter()
                    .enumerate()
                    .map(|(p, record)| (p as u32, id(record)))
                    .collect();
                let passed = super::super::handlers::take_passed(&positions, &mut outcome);
                for line in &passed {
                    let record = case.in_play.iter().find(|r| **r == line.id.as_str());
                    stored.push((*record.expect("a record in play"), line.rows.clone()));
                }
                HookEnd::Finished(Box::new(HookResult {
                    passed: passed.len() as u32,
                    outcome,
                    decision: ran
                        .failure
                        .map(|(kind, bumps, memory)| policy(kind, case.attempt, bumps, memory)),
                    failed: ran.failure.is_some(),
                    output_error: ran.output_error.map(Into::into),
                    duration: Duration::from_millis(1500),
                    oom_retries: ran.oom_retries,
                }))
            }
        };
        let facts = StepFacts {
            progress: progress(case.steps, case.step, &case.in_play, case.any_errored),
            step: case.step,
            release_id: release(case.step),
            execution_id: EXECUTION,
            input_sha256: digest(),
            started_at: at(1),
            finished_at: at(3),
            completes: Some(lease()),
            max_attempts: MAX_ATTEMPTS,
            hook,
        };
        (facts, stored)
    }

    /// The full decision `expected` describes for `case`.
    fn expected(case: &Case) -> StepDecision {
        let c = match &case.expected {
            Expected::Skip => return StepDecision::Skip,
            Expected::FailRun(reason) => {
                return StepDecision::FailRun {
                    reason: (*reason).into(),
                };
            }
            Expected::Retry(reason) => {
                return StepDecision::Retry {
                    reason: (*reason).into(),
                };
            }
            Expected::Commit(c) => c,
        };
        let step = case.step;
        let hook_name = hook(step);
        let hook_run_id = HookRunId::for_step(RUN, step, &hook_name);
        let outputs = format!(
            "runs/{RUN}/steps/{step}/{}/outputs.json",
            EXECUTION.simple()
        );
        let log = format!("runs/{RUN}/steps/{step}/{}/hook.log", EXECUTION.simple());
        let counts = OutcomeCounts {
            passed: c.counts.0,
            rejected: c.counts.1,
            errored: c.counts.2,
        };
        let verdicts = c
            .verdicts
            .iter()
            .map(|(record, out)| RecordVerdict {
                record_id: id(record),
                verdict: match *out {
                    Out::Reject(reason) => Verdict::Rejected {
                        step,
                        hook: hook_name.clone(),
                        reason: reason.into(),
                    },
                    Out::Error(error) => Verdict::Errored {
                        step,
                        hook: hook_name.clone(),
                        error: error.into(),
                    },
                    Out::Pass(_) => unreachable!("a passed record has no verdict"),
                },
            })
            .collect();
        let mut events: Vec<RunEventKind> = case
            .hook
            .iter()
            .flat_map(|ran| &ran.progress)
            .map(|message| RunEventKind::HookProgress {
                step,
                label: Some("check".into()),
                status: "running".into(),
                message: Some((*message).into()),
            })
            .collect();
        events.push(RunEventKind::StepFinished {
            step,
            hook: hook_name.clone(),
            status: c.status,
            counts,
        });
        let (next_kind, next_step) = match c.next {
            Next::Step(next) => (STEP_JOB, next),
            Next::Finalize => (FINALIZE_JOB, 0),
        };
        let next_job = crate::jobs::NewJob {
            kind: next_kind.into(),
            payload: json!({"run": RUN, "step": next_step}),
            run_at: at(3),
            max_attempts: MAX_ATTEMPTS,
            dedupe_key: Some(format!("{RUN}/{next_kind}/{next_step}")),
        };
        let plan = StepPlan {
            run_id: RUN,
            step,
            hook_run: HookRun {
                id: hook_run_id,
                release_id: release(step),
                status: c.hook_status,
                started_at: at(1),
                finished_at: at(3),
                duration_s: 1.5,
                oom_retries: case.hook.as_ref().map_or(0, |r| r.oom_retries),
                log_ref: c.log.then(|| log.clone()),
                input_sha256: Some(digest()),
                counts,
            },
            status: c.status,
            verdicts,
            outputs_ref: outputs.clone(),
            next_job,
            completes: Some(lease()),
            events,
        };
        let mut after = progress(case.steps, step, &c.in_play, c.any_errored);
        after.run.current_step = step + 1;
        after.run.status = RunStatus::Running;
        let slot = &mut after.steps[step as usize];
        slot.status = c.status;
        slot.hook_run_id = Some(hook_run_id);
        slot.counts = counts;
        slot.started_at = Some(at(1));
        slot.finished_at = Some(at(3));
        slot.outputs_ref = Some(outputs.clone());
        StepDecision::Commit(Box::new(StepCommit {
            plan,
            outputs_key: Path::from(outputs),
            log_key: c.log.then(|| Path::from(log)),
            next: c.next,
            after,
        }))
    }

    fn cases() -> Vec<Case> {
        let abc = vec!["a", "b", "c"];
        let all_pass = ran(&[
            ("a", Out::Pass(Some(1))),
            ("b", Out::Pass(Some(2))),
            ("c", Out::Pass(None)),
        ]);
        let all_rows = vec![
            ("a", vec![vec![json!(1)]]),
            ("b", vec![vec![json!(2)]]),
            ("c", vec![]),
        ];
        let case = |name, steps, step, hook, expected| Case {
            name,
            steps,
            step,
            in_play: abc.clone(),
            any_errored: false,
            attempt: 1,
            hook,
            expected,
        };
        vec![
            case(
                "all accepted, not last: the next step gets every record",
                2,
                0,
                Some(Ran {
                    progress: vec!["half way"],
                    ..all_pass.clone()
                }),
                Expected::Commit(Committed {
                    status: StepStatus::Passed,
                    hook_status: HookRunStatus::Passed,
                    counts: (3, 0, 0),
                    verdicts: vec![],
                    rows: all_rows.clone(),
                    in_play: abc.clone(),
                    any_errored: false,
                    log: false,
                    next: Next::Step(1),
                }),
            ),
            case(
                "all accepted, last step: the finalize is next",
                2,
                1,
                Some(all_pass.clone()),
                Expected::Commit(Committed {
                    status: StepStatus::Passed,
                    hook_status: HookRunStatus::Passed,
                    counts: (3, 0, 0),
                    verdicts: vec![],
                    rows: all_rows.clone(),
                    in_play: abc.clone(),
                    any_errored: false,
                    log: false,
                    next: Next::Finalize,
                }),
            ),
            case(
                "some rejected: they leave play, the step failed, no log",
                3,
                1,
                Some(ran(&[
                    ("a", Out::Pass(Some(1))),
                    ("b", Out::Reject("too blurry")),
                    ("c", Out::Pass(Some(3))),
                ])),
                Expected::Commit(Committed {
                    status: StepStatus::Failed,
                    hook_status: HookRunStatus::Failed,
                    counts: (2, 1, 0),
                    verdicts: vec![("b", Out::Reject("too blurry"))],
                    rows: vec![("a", vec![vec![json!(1)]]), ("c", vec![vec![json!(3)]])],
                    in_play: vec!["a", "c"],
                    any_errored: false,
                    log: false,
                    next: Next::Step(2),
                }),
            ),
            case(
                "every record rejected before the last step: the finalize is next",
                3,
                0,
                Some(ran(&[
                    ("a", Out::Reject("no")),
                    ("b", Out::Reject("no")),
                    ("c", Out::Reject("no")),
                ])),
                Expected::Commit(Committed {
                    status: StepStatus::Failed,
                    hook_status: HookRunStatus::Failed,
                    counts: (0, 3, 0),
                    verdicts: vec![
                        ("a", Out::Reject("no")),
                        ("b", Out::Reject("no")),
                        ("c", Out::Reject("no")),
                    ],
                    rows: vec![],
                    in_play: vec![],
                    any_errored: false,
                    log: false,
                    next: Next::Finalize,
                }),
            ),
            case(
                "record-level errors: errored verdicts, the log is kept",
                2,
                0,
                Some(Ran {
                    missing: vec!["c"],
                    ..ran(&[
                        ("a", Out::Pass(Some(1))),
                        ("b", Out::Error("column x: not an integer")),
                    ])
                }),
                Expected::Commit(Committed {
                    status: StepStatus::Error,
                    hook_status: HookRunStatus::Error,
                    counts: (1, 0, 2),
                    verdicts: vec![
                        ("b", Out::Error("column x: not an integer")),
                        ("c", Out::Error("hook produced no outcome")),
                    ],
                    rows: vec![("a", vec![vec![json!(1)]])],
                    in_play: vec!["a"],
                    any_errored: true,
                    log: true,
                    next: Next::Step(1),
                }),
            ),
            Case {
                in_play: vec!["a"],
                any_errored: true,
                ..case(
                    "an earlier error stays known",
                    2,
                    1,
                    Some(ran(&[("a", Out::Pass(Some(1)))])),
                    Expected::Commit(Committed {
                        status: StepStatus::Passed,
                        hook_status: HookRunStatus::Passed,
                        counts: (1, 0, 0),
                        verdicts: vec![],
                        rows: vec![("a", vec![vec![json!(1)]])],
                        in_play: vec!["a"],
                        any_errored: true,
                        log: false,
                        next: Next::Finalize,
                    }),
                )
            },
            Case {
                in_play: vec![],
                ..case(
                    "empty batch: nothing settled, the finalize is next",
                    2,
                    0,
                    Some(ran(&[])),
                    Expected::Commit(Committed {
                        status: StepStatus::Passed,
                        hook_status: HookRunStatus::Passed,
                        counts: (0, 0, 0),
                        verdicts: vec![],
                        rows: vec![],
                        in_play: vec![],
                        any_errored: false,
                        log: false,
                        next: Next::Finalize,
                    }),
                )
            },
            case(
                "hook crashed (runtime) with retries left: retry, nothing committed",
                2,
                0,
                Some(Ran {
                    missing: abc.clone(),
                    failure: Some((FailureKind::Runtime, 0, "1g")),
                    ..ran(&[])
                }),
                Expected::Retry("runtime: detail"),
            ),
            Case {
                attempt: 3,
                ..case(
                    "timeout on the third delivery: still a retry",
                    2,
                    0,
                    Some(Ran {
                        missing: abc.clone(),
                        failure: Some((FailureKind::Timeout, 0, "1g")),
                        ..ran(&[])
                    }),
                    Expected::Retry("timeout: detail"),
                )
            },
            Case {
                attempt: 4,
                ..case(
                    "timeout, retries exhausted: the rest error, the passed go on",
                    2,
                    0,
                    Some(Ran {
                        missing: vec!["b", "c"],
                        failure: Some((FailureKind::Timeout, 0, "1g")),
                        ..ran(&[("a", Out::Pass(Some(1)))])
                    }),
                    Expected::Commit(Committed {
                        status: StepStatus::Error,
                        hook_status: HookRunStatus::Error,
                        counts: (1, 0, 2),
                        verdicts: vec![
                            (
                                "b",
                                Out::Error(
                                    "hook failed: timeout: detail (gave up after 3 retries)",
                                ),
                            ),
                            (
                                "c",
                                Out::Error(
                                    "hook failed: timeout: detail (gave up after 3 retries)",
                                ),
                            ),
                        ],
                        rows: vec![("a", vec![vec![json!(1)]])],
                        in_play: vec!["a"],
                        any_errored: true,
                        log: true,
                        next: Next::Step(1),
                    }),
                )
            },
            Case {
                attempt: 4,
                ..case(
                    "runtime crash, retries exhausted, nothing passed: the finalize is next",
                    2,
                    0,
                    Some(Ran {
                        missing: abc.clone(),
                        failure: Some((FailureKind::Runtime, 0, "1g")),
                        ..ran(&[])
                    }),
                    Expected::Commit(Committed {
                        status: StepStatus::Error,
                        hook_status: HookRunStatus::Error,
                        counts: (0, 0, 3),
                        verdicts: ["a", "b", "c"]
                            .map(|r| {
                                (
                                    r,
                                    Out::Error(
                                        "hook failed: runtime: detail (gave up after 3 retries)",
                                    ),
                                )
                            })
                            .to_vec(),
                        rows: vec![],
                        in_play: vec![],
                        any_errored: true,
                        log: true,
                        next: Next::Finalize,
                    }),
                )
            },
            case(
                "out of memory after every bump: the rest error with the policy's reason",
                2,
                1,
                Some(Ran {
                    missing: vec!["c"],
                    failure: Some((FailureKind::Oom, 3, "8g")),
                    oom_retries: 3,
                    ..ran(&[("a", Out::Pass(Some(1))), ("b", Out::Reject("no"))])
                }),
                Expected::Commit(Committed {
                    status: StepStatus::Error,
                    hook_status: HookRunStatus::Error,
                    counts: (1, 1, 1),
                    verdicts: vec![
                        ("b", Out::Reject("no")),
                        (
                            "c",
                            Out::Error("hook failed: out of memory at 8g after 3 memory bumps"),
                        ),
                    ],
                    rows: vec![("a", vec![vec![json!(1)]])],
                    in_play: vec!["a"],
                    any_errored: true,
                    log: true,
                    next: Next::Finalize,
                }),
            ),
            case(
                "out of memory, then passed with more memory: a plain commit",
                2,
                0,
                Some(Ran {
                    oom_retries: 1,
                    ..all_pass.clone()
                }),
                Expected::Commit(Committed {
                    status: StepStatus::Passed,
                    hook_status: HookRunStatus::Passed,
                    counts: (3, 0, 0),
                    verdicts: vec![],
                    rows: all_rows.clone(),
                    in_play: abc.clone(),
                    any_errored: false,
                    log: false,
                    next: Next::Step(1),
                }),
            ),
            case(
                "hook exited non-zero after writing every outcome: an errored step, records kept",
                2,
                0,
                Some(Ran {
                    failure: Some((FailureKind::HookExit, 0, "1g")),
                    ..all_pass.clone()
                }),
                Expected::Commit(Committed {
                    status: StepStatus::Error,
                    hook_status: HookRunStatus::Passed,
                    counts: (3, 0, 0),
                    verdicts: vec![],
                    rows: all_rows.clone(),
                    in_play: abc.clone(),
                    any_errored: false,
                    log: true,
                    next: Next::Step(1),
                }),
            ),
            case(
                "hook exited non-zero: records without an outcome error with the exit code",
                1,
                0,
                Some(Ran {
                    missing: vec!["b", "c"],
                    failure: Some((FailureKind::HookExit, 0, "1g")),
                    ..ran(&[("a", Out::Pass(None))])
                }),
                Expected::Commit(Committed {
                    status: StepStatus::Error,
                    hook_status: HookRunStatus::Error,
                    counts: (1, 0, 2),
                    verdicts: vec![
                        ("b", Out::Error("hook failed: hook exited with code 3")),
                        ("c", Out::Error("hook failed: hook exited with code 3")),
                    ],
                    rows: vec![("a", vec![])],
                    in_play: vec!["a"],
                    any_errored: true,
                    log: true,
                    next: Next::Finalize,
                }),
            ),
            case(
                "outputs unreadable: the records left error with the read error",
                2,
                0,
                Some(Ran {
                    missing: vec!["b", "c"],
                    output_error: Some("features.jsonl too large"),
                    ..ran(&[("a", Out::Pass(Some(1)))])
                }),
                Expected::Commit(Committed {
                    status: StepStatus::Error,
                    hook_status: HookRunStatus::Error,
                    counts: (1, 0, 2),
                    verdicts: vec![
                        (
                            "b",
                            Out::Error("hook outputs unreadable: features.jsonl too large"),
                        ),
                        (
                            "c",
                            Out::Error("hook outputs unreadable: features.jsonl too large"),
                        ),
                    ],
                    rows: vec![("a", vec![vec![json!(1)]])],
                    in_play: vec!["a"],
                    any_errored: true,
                    log: true,
                    next: Next::Step(1),
                }),
            ),
            case(
                "image missing: the run fails",
                2,
                0,
                Some(Ran {
                    missing: abc.clone(),
                    failure: Some((FailureKind::ImagePull, 0, "1g")),
                    ..ran(&[])
                }),
                Expected::FailRun("image_pull: detail"),
            ),
            case(
                "bad configuration: the run fails",
                2,
                1,
                Some(Ran {
                    missing: abc.clone(),
                    failure: Some((FailureKind::Config, 0, "1g")),
                    ..ran(&[])
                }),
                Expected::FailRun("config: detail"),
            ),
            case(
                "run ended while the hook ran: nothing committed",
                2,
                0,
                None,
                Expected::Skip,
            ),
        ]
    }

    #[test]
    fn step_plans() {
        let cases = cases();
        assert!(cases.len() >= 15);
        for case in &cases {
            let (facts, stored) = driven(case);
            let decision = plan_step(facts).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(decision, expected(case), "{}", case.name);
            if let Expected::Commit(c) = &case.expected {
                assert_eq!(stored, c.rows, "{}: the rows stored", case.name);
            }
            if let StepDecision::Commit(commit) = &decision {
                assert_eq!(
                    commit.hook(),
                    &hook(case.step),
                    "{}: the step's hook",
                    case.name
                );
            }
        }
    }

    #[test]
    fn a_step_the_run_lacks_is_an_error() {
        let case = Case {
            name: "no such step",
            steps: 1,
            step: 0,
            in_play: vec!["a"],
            any_errored: false,
            attempt: 1,
            hook: Some(ran(&[])),
            expected: Expected::Skip,
        };
        let mut facts = facts(&case);
        facts.step = 1;
        let error = plan_step(facts).unwrap_err();
        assert!(error.to_string().contains("has no step 1"), "{error}");
    }

    #[test]
    fn staged_replaces_cover_every_hook_run_up_to_the_step() {
        let case = Case {
            name: "last of three",
            steps: 3,
            step: 2,
            in_play: vec!["a", "b"],
            any_errored: false,
            attempt: 1,
            hook: Some(ran(&[("a", Out::Pass(Some(1))), ("b", Out::Reject("no"))])),
            expected: Expected::Skip,
        };
        let StepDecision::Commit(commit) = plan_step(facts(&case)).unwrap() else {
            panic!("expected a commit");
        };
        let replace = |index: u32| StagedReplace {
            hook: hook(index),
            run_id: HookRunId::for_step(RUN, index, &hook(index)),
            records: ids(&["a"]),
        };
        assert_eq!(
            commit.staged_replaces(&ids(&["a"])),
            vec![replace(0), replace(1), replace(2)]
        );
    }

    #[test]
    fn gates() {
        let mut p = progress(2, 1, &["a"], false);
        // (name, status, current step, step delivered, due)
        let table = [
            ("the current step", RunStatus::Running, 1, 1, true),
            (
                "redelivered after its commit",
                RunStatus::Running,
                2,
                1,
                false,
            ),
            ("a later step", RunStatus::Running, 1, 2, true),
            ("cancelled", RunStatus::Cancelled, 1, 1, false),
            ("failed", RunStatus::Failed, 1, 1, false),
            ("pending, step 0", RunStatus::Pending, 0, 0, true),
        ];
        for (name, status, current, step, due) in table {
            p.run.status = status;
            p.run.current_step = current;
            assert_eq!(step_due(&p, step), due, "{name}");
        }
        let statuses = [
            (None, false),
            (Some(RunStatus::Pending), true),
            (Some(RunStatus::Running), true),
            (Some(RunStatus::Completed), false),
            (Some(RunStatus::Rejected), false),
            (Some(RunStatus::Failed), false),
            (Some(RunStatus::Cancelled), false),
        ];
        for (status, goes_on) in statuses {
            assert_eq!(run_goes_on(status), goes_on, "{status:?}");
        }
        for (attempt, retries) in [(0, 0), (1, 0), (2, 1), (4, 3)] {
            assert_eq!(
                prior_attempts(attempt),
                PriorAttempts {
                    memory_bumps: 0,
                    retries
                },
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn finalize_plans() {
        let batch = FeatureBatch {
            hook: hook(0),
            run_id: HookRunId::for_step(RUN, 0, &hook(0)),
            validation_run_id: Some(RUN),
            records: ids(&["a"]),
            rows: vec![],
        };
        // (name, in play, any errored, per-step (rejected, errored), status, failure)
        type Row = (
            &'static str,
            &'static [&'static str],
            bool,
            [(u32, u32); 2],
            RunStatus,
            Option<&'static str>,
        );
        let table: [Row; 4] = [
            (
                "some accepted",
                &["a"],
                true,
                [(1, 1), (0, 0)],
                RunStatus::Completed,
                None,
            ),
            (
                "every record rejected",
                &[],
                false,
                [(2, 0), (1, 0)],
                RunStatus::Rejected,
                None,
            ),
            (
                "nothing accepted, some errored",
                &[],
                true,
                [(1, 1), (0, 1)],
                RunStatus::Failed,
                Some("no record was accepted: 2 errored, 1 rejected"),
            ),
            (
                "no records at all",
                &[],
                false,
                [(0, 0), (0, 0)],
                RunStatus::Rejected,
                None,
            ),
        ];
        for (name, in_play, any_errored, counts, status, failure) in table {
            let mut p = progress(2, 2, in_play, any_errored);
            for (slot, (rejected, errored)) in p.steps.iter_mut().zip(counts) {
                slot.counts = OutcomeCounts {
                    passed: 0,
                    rejected,
                    errored,
                };
            }
            let features = if in_play.is_empty() {
                vec![]
            } else {
                vec![batch.clone()]
            };
            let plan = plan_finalize(p, features.clone(), Some(lease()));
            assert_eq!(
                plan,
                FinalizePlan {
                    run_id: RUN,
                    status,
                    failure: failure.map(Into::into),
                    accepted: in_play.len() as u32,
                    features,
                    completes: Some(lease()),
                    events: vec![RunEventKind::Finished {
                        status,
                        accepted: in_play.len() as u32,
                        reason: failure.map(Into::into),
                    }],
                },
                "{name}"
            );
        }
    }
}

//! The metrics OSA records, through the [`metrics`] facade: nothing is collected until
//! the application installs a recorder (`osa-server` installs a Prometheus one and
//! serves it at `/metrics`). Each process records what it does; a deployment with
//! several workers scrapes each of them.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `osa_runs_submitted_total` | counter | | validation runs submitted here |
//! | `osa_runs_finished_total` | counter | `status` | runs this process finalized |
//! | `osa_steps_committed_total` | counter | `hook`, `status` | committed steps |
//! | `osa_step_duration_seconds` | histogram | `hook` | a step from its claim to its commit |
//! | `osa_hook_duration_seconds` | histogram | `hook` | the hook's own execution |
//! | `osa_oom_retries_total` | counter | `hook` | runs of a hook again with more memory |
//! | `osa_job_retries_total` | counter | `kind` | failed deliveries that will be retried |
//! | `osa_jobs_dead_total` | counter | `kind` | jobs out of attempts |
//!
//! Job counts by state (`osa_jobs`) are read from the queue when they are scraped
//! ([`JobQueue::counts`](crate::jobs::JobQueue::counts)), so they are the archive's,
//! not one process's.

use std::time::Duration;

pub const RUNS_SUBMITTED: &str = "osa_runs_submitted_total";
pub const RUNS_FINISHED: &str = "osa_runs_finished_total";
pub const STEPS_COMMITTED: &str = "osa_steps_committed_total";
pub const STEP_DURATION: &str = "osa_step_duration_seconds";
pub const HOOK_DURATION: &str = "osa_hook_duration_seconds";
pub const OOM_RETRIES: &str = "osa_oom_retries_total";
pub const JOB_RETRIES: &str = "osa_job_retries_total";
pub const JOBS_DEAD: &str = "osa_jobs_dead_total";

/// Describes every metric above to the installed recorder (units and help texts).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(RUNS_SUBMITTED, "Validation runs submitted");
    describe_counter!(RUNS_FINISHED, "Validation runs finalized, by status");
    describe_counter!(STEPS_COMMITTED, "Committed steps, by hook and status");
    describe_histogram!(
        STEP_DURATION,
        Unit::Seconds,
        "Steps from claim to commit, by hook"
    );
    describe_histogram!(HOOK_DURATION, Unit::Seconds, "Hook executions, by hook");
    describe_counter!(
        OOM_RETRIES,
        "Hook executions repeated with more memory, by hook"
    );
    describe_counter!(
        JOB_RETRIES,
        "Failed job deliveries that will be retried, by kind"
    );
    describe_counter!(JOBS_DEAD, "Jobs out of attempts, by kind");
}

/// The wire name of a status (`passed`, `completed`) as a label value.
pub(crate) fn label(status: &impl serde::Serialize) -> String {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "unknown".to_string(),
    }
}

pub(crate) fn run_submitted() {
    metrics::counter!(RUNS_SUBMITTED).increment(1);
}

pub(crate) fn run_finished(status: &str) {
    metrics::counter!(RUNS_FINISHED, "status" => status.to_string()).increment(1);
}

pub(crate) fn step_committed(
    hook: &str,
    status: &str,
    step: Duration,
    hook_run: Duration,
    oom_retries: u32,
) {
    let hook = hook.to_string();
    metrics::counter!(STEPS_COMMITTED, "hook" => hook.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!(STEP_DURATION, "hook" => hook.clone()).record(step.as_secs_f64());
    metrics::histogram!(HOOK_DURATION, "hook" => hook.clone()).record(hook_run.as_secs_f64());
    if oom_retries > 0 {
        metrics::counter!(OOM_RETRIES, "hook" => hook).increment(u64::from(oom_retries));
    }
}

pub(crate) fn job_retried(kind: &str) {
    metrics::counter!(JOB_RETRIES, "kind" => kind.to_string()).increment(1);
}

pub(crate) fn job_dead(kind: &str) {
    metrics::counter!(JOBS_DEAD, "kind" => kind.to_string()).increment(1);
}

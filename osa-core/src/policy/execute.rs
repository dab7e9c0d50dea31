//! The OOM policy, for every runner: checkpoint, feed the rest smallest
//! first, double the memory, at most [`FailurePolicy::max_memory_bumps`] times.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{Decision, FailurePolicy, PriorAttempts};
use crate::contract::{
    BatchOutcome, BatchRecord, ContractError, OutputLimits, PreparedBatch, read_outcomes,
};
use crate::feature::FeatureSpec;
use crate::id::RecordId;
use crate::runner::{CapturedLog, HookRunner, RunFailure, RunJob};
use crate::runtime::{Limits, MemorySize};

/// The result of running one step's hook over its batch, OOM retries included.
#[derive(Debug)]
pub struct StepExecution {
    /// Outcomes of every attempt, merged; [`BatchOutcome::missing`] lists the records
    /// still without an outcome (the caller turns them into errors with
    /// [`BatchOutcome::finish`]).
    pub outcome: BatchOutcome,
    /// The hook's outputs could not be read (too large, malformed, I/O). Outcomes of
    /// earlier attempts are kept in `outcome`; the records of the failed read stay
    /// missing.
    pub output_error: Option<ContractError>,
    /// Executions performed (1 + `oom_retries`).
    pub attempts: u32,
    /// Memory doublings performed.
    pub oom_retries: u32,
    /// The limits of the last attempt.
    pub limits: Limits,
    /// Wall-clock time of the whole step.
    pub duration: Duration,
    /// Captured output of every attempt; from two attempts on, each starts with an
    /// `[osa] attempt N (memory M)` line.
    pub log: CapturedLog,
    /// How the last attempt failed, if it did.
    pub failure: Option<RunFailure>,
    /// What the policy decided about `failure`, for the caller to act on: `Retry`
    /// (the step, with backoff), `GiveUp` or `AbortRun`. Never `RetryWithMoreMemory`:
    /// that one is carried out here.
    pub decision: Option<Decision>,
}

impl StepExecution {
    /// The last attempt exited 0 and its outputs were read.
    pub fn succeeded(&self) -> bool {
        self.failure.is_none() && self.output_error.is_none()
    }

    /// Folds in the execution of the step's next batch (other records than this
    /// one's): outcomes and missing records add up, so do attempts, memory doublings
    /// and time; the failure, decision and limits become the later batch's, whose log
    /// is appended after a `[osa] batch …` line. Progress entries and stray ids stay
    /// within `limits`, and the joined log within `limits.max_log_bytes` (its first and
    /// latest parts kept).
    pub fn append(&mut self, later: StepExecution, label: &str, limits: &OutputLimits) {
        let outcome = &mut self.outcome;
        outcome.outcomes.extend(later.outcome.outcomes);
        outcome.missing.extend(later.outcome.missing);
        let kept = limits
            .max_progress_entries
            .saturating_sub(outcome.progress.len());
        let dropped = later.outcome.progress.len().saturating_sub(kept);
        outcome
            .progress
            .extend(later.outcome.progress.into_iter().take(kept));
        outcome.progress_omitted += later.outcome.progress_omitted + dropped;
        let kept = limits.max_stray_ids.saturating_sub(outcome.stray_ids.len());
        let dropped = later.outcome.stray_ids.len().saturating_sub(kept);
        outcome
            .stray_ids
            .extend(later.outcome.stray_ids.into_iter().take(kept));
        outcome.stray_ids_omitted += later.outcome.stray_ids_omitted + dropped;
        outcome.torn_lines.extend(later.outcome.torn_lines);

        self.output_error = later.output_error;
        self.attempts += later.attempts;
        self.oom_retries += later.oom_retries;
        self.limits = later.limits;
        self.duration += later.duration;
        let log = &mut self.log.bytes;
        if !log.is_empty() && !log.ends_with(b"\n") {
            log.push(b'\n');
        }
        log.extend_from_slice(format!("[osa] {label}\n").as_bytes());
        log.extend_from_slice(&later.log.bytes);
        if log.len() > limits.max_log_bytes {
            *log = crate::contract::cap_log(log, limits.max_log_bytes);
            self.log.truncated = true;
        }
        self.log.truncated |= later.log.truncated;
        self.failure = later.failure;
        self.decision = later.decision;
    }
}

/// Runs `job` with `runner`, applying the OOM policy: after an `oom` failure it keeps
/// the outcomes already written (checkpoint), rewrites `records.jsonl` with only the
/// records still missing an outcome, smallest `size_hint_mb` first, empties `out/`,
/// and retries with the memory [`FailurePolicy::decide`] chose (doubled), as long as
/// the policy allows. Every other failure ends the loop with the policy's decision.
///
/// `batch` and `records` describe the batch `job.batch` was prepared from (same
/// records; `records` supplies the metadata for rewriting `records.jsonl`).
pub async fn execute_with_policy(
    runner: &dyn HookRunner,
    job: &RunJob,
    batch: &PreparedBatch,
    records: &[BatchRecord],
    spec: &FeatureSpec,
    policy: &FailurePolicy,
    output_limits: &OutputLimits,
) -> StepExecution {
    execute_with_policy_after(
        PriorAttempts::default(),
        runner,
        job,
        batch,
        records,
        spec,
        policy,
        output_limits,
    )
    .await
}

/// [`execute_with_policy`] for a step that has been tried before: `prior.retries`
/// earlier deliveries count against the policy's `max_retries` (a step that keeps
/// timing out gives up instead of being retried until its job runs out of attempts).
#[allow(clippy::too_many_arguments)]
pub async fn execute_with_policy_after(
    prior: PriorAttempts,
    runner: &dyn HookRunner,
    job: &RunJob,
    batch: &PreparedBatch,
    records: &[BatchRecord],
    spec: &FeatureSpec,
    policy: &FailurePolicy,
    output_limits: &OutputLimits,
) -> StepExecution {
    let started = Instant::now();
    let mut job = job.clone();
    let mut pending: Vec<RecordId> = batch.records.iter().map(|(id, _)| id.clone()).collect();
    let mut outcome = BatchOutcome {
        missing: pending.clone(),
        ..BatchOutcome::default()
    };
    let mut prior = prior;
    let mut logs = Vec::new();

    let (failure, decision, output_error) = loop {
        let result = runner.run(&job).await;
        let log = match &result {
            Ok(execution) => execution.log.clone(),
            Err(failure) => failure.log.clone(),
        };
        logs.push((job.limits.memory, log));
        let read = read_off_runtime(&job.batch.output, &pending, spec, output_limits).await;
        let failure = match (result, read) {
            (Ok(_), Ok(read)) => {
                outcome.absorb(read);
                break (None, None, None);
            }
            (result, Err(error)) => {
                let decision = result.as_ref().err().map(|failure| {
                    match policy.decide(failure, prior, job.limits.memory) {
                        Decision::RetryWithMoreMemory { .. } => Decision::GiveUp {
                            reason: format!(
                                "out of memory, and the outputs written so far are unreadable: \
                                 {error}"
                            ),
                        },
                        other => other,
                    }
                });
                break (result.err(), decision, Some(error));
            }
            (Err(failure), Ok(read)) => {
                outcome.absorb(read);
                failure
            }
        };
        let decision = policy.decide(&failure, prior, job.limits.memory);
        let Decision::RetryWithMoreMemory { memory } = decision else {
            break (Some(failure), Some(decision), None);
        };
        if outcome.missing.is_empty() {
            let decision = Decision::GiveUp {
                reason: "out of memory after every record had an outcome".into(),
            };
            break (Some(failure), Some(decision), None);
        }
        match feed_remaining(&job, batch, records, &outcome.missing) {
            Ok(order) => pending = order,
            Err(error) => {
                let decision = Decision::Retry {
                    reason: format!("preparing the retry with more memory failed: {error}"),
                };
                break (Some(failure), Some(decision), Some(error));
            }
        }
        prior.memory_bumps += 1;
        job.limits = Limits {
            memory,
            ..job.limits
        };
    };

    StepExecution {
        outcome,
        output_error,
        attempts: logs.len() as u32,
        oom_retries: prior.memory_bumps,
        limits: job.limits,
        duration: started.elapsed(),
        log: join_logs(logs),
        failure,
        decision,
    }
}

/// Rewrites `records.jsonl` with the `missing` records, smallest size hint first (ties
/// keep input order), and empties `out/`. Returns the new order.
fn feed_remaining(
    job: &RunJob,
    batch: &PreparedBatch,
    records: &[BatchRecord],
    missing: &[RecordId],
) -> Result<Vec<RecordId>, ContractError> {
    let missing: HashSet<&RecordId> = missing.iter().collect();
    let sizes: HashMap<&RecordId, f64> = batch.records.iter().map(|(id, s)| (id, *s)).collect();
    let mut remaining: Vec<(&BatchRecord, f64)> = records
        .iter()
        .filter(|r| missing.contains(&r.id))
        .map(|r| (r, sizes.get(&r.id).copied().unwrap_or(0.0)))
        .collect();
    // Stable: equal sizes keep their input order.
    remaining.sort_by(|a, b| a.1.total_cmp(&b.1));
    job.batch.write_records(&remaining)?;
    job.batch.reset_output()?;
    Ok(remaining.iter().map(|(r, _)| r.id.clone()).collect())
}

/// [`read_outcomes`] on a blocking thread: reading and validating up to the output
/// limits (64 MiB per file by default) would otherwise hold an async runtime thread,
/// and every task queued on it, for as long.
async fn read_off_runtime(
    output: &std::path::Path,
    pending: &[RecordId],
    spec: &FeatureSpec,
    limits: &OutputLimits,
) -> Result<BatchOutcome, ContractError> {
    let dir = output.to_path_buf();
    let (output, pending, spec, limits) = (dir.clone(), pending.to_vec(), spec.clone(), *limits);
    match tokio::task::spawn_blocking(move || read_outcomes(&output, &pending, &spec, &limits))
        .await
    {
        Ok(read) => read,
        // The read panicked: a bug, passed on as one.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(ContractError::io(
            "reading",
            dir,
            std::io::Error::other(e.to_string()),
        )),
    }
}

/// One log for the step; attempt headers only when there was more than one attempt.
fn join_logs(logs: Vec<(MemorySize, CapturedLog)>) -> CapturedLog {
    if logs.len() == 1 {
        return logs
            .into_iter()
            .next()
            .map(|(_, log)| log)
            .unwrap_or_default();
    }
    let mut joined = CapturedLog::default();
    for (n, (memory, log)) in logs.into_iter().enumerate() {
        joined
            .bytes
            .extend_from_slice(format!("[osa] attempt {} (memory {memory})\n", n + 1).as_bytes());
        joined.bytes.extend_from_slice(&log.bytes);
        if !log.bytes.ends_with(b"\n") && !log.bytes.is_empty() {
            joined.bytes.push(b'\n');
        }
        joined.truncated |= log.truncated;
    }
    joined
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::fs;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::contract::{
        BatchFile, BatchLayout, BatchLimits, FEATURES_FILE, RECORDS_FILE, RecordOutcome,
    };
    use crate::feature::{Cardinality, ColumnDef, JsonType};
    use crate::id::{ColumnName, Digest, FileName, HookName, ReleaseId};
    use crate::runner::{Execution, FailureKind};
    use crate::runtime::RuntimeConfig;

    /// What one scripted attempt does: pass these ids, then end like this.
    struct Attempt {
        passes: Vec<&'static str>,
        end: Option<FailureKind>,
    }

    /// A runner that follows a script and records what each attempt was fed.
    #[derive(Debug, Default)]
    struct ScriptedRunner {
        script: Mutex<VecDeque<(Vec<&'static str>, Option<FailureKind>)>>,
        /// (memory, ids in records.jsonl, files left in out/ at start) per attempt.
        seen: Mutex<Vec<(String, Vec<String>, usize)>>,
    }

    impl ScriptedRunner {
        fn new(script: Vec<Attempt>) -> Self {
            ScriptedRunner {
                script: Mutex::new(script.into_iter().map(|a| (a.passes, a.end)).collect()),
                seen: Mutex::default(),
            }
        }
    }

    #[async_trait]
    impl HookRunner for ScriptedRunner {
        fn name(&self) -> &'static str {
            "scripted"
        }

        async fn run(&self, job: &RunJob) -> Result<Execution, RunFailure> {
            let fed: Vec<String> = fs::read_to_string(job.batch.input.join(RECORDS_FILE))
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            let leftovers = fs::read_dir(&job.batch.output).unwrap().count();
            self.seen
                .lock()
                .unwrap()
                .push((job.limits.memory.to_string(), fed, leftovers));
            let (passes, end) = self.script.lock().unwrap().pop_front().expect("script");
            let lines: String = passes
                .iter()
                .map(|id| format!("{}\n", json!({"id": id, "features": [{"n": 1}]})))
                .collect();
            fs::write(job.batch.output.join(FEATURES_FILE), lines).unwrap();
            fs::write(job.batch.output.join("scratch.tmp"), "x").unwrap();
            let log = CapturedLog {
                bytes: b"hook says hi".to_vec(),
                truncated: false,
            };
            match end {
                None => Ok(Execution {
                    duration: Duration::ZERO,
                    log,
                }),
                Some(kind) => {
                    let mut failure = RunFailure::new(kind, "scripted");
                    failure.log = log;
                    Err(failure)
                }
            }
        }
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        records: Vec<BatchRecord>,
        batch: PreparedBatch,
        job: RunJob,
        spec: FeatureSpec,
    }

    /// Records a (no file), b (3 KiB), c (1 KiB), d (no file), in that input order.
    fn fixture(memory: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let file = |name: &str, size: usize| {
            let source = tmp.path().join(name);
            fs::write(&source, vec![b'x'; size]).unwrap();
            vec![BatchFile {
                name: FileName::new("data.bin").unwrap(),
                source,
            }]
        };
        let record = |id: &str, files| BatchRecord {
            id: RecordId::new(id).unwrap(),
            metadata: json!({}),
            files,
        };
        let records = vec![
            record("a", vec![]),
            record("b", file("b", 3 << 10)),
            record("c", file("c", 1 << 10)),
            record("d", vec![]),
        ];
        let batch = BatchLayout::prepare(
            tmp.path().join("batch"),
            &records,
            &serde_json::Map::new(),
            &BatchLimits::default(),
        )
        .unwrap();
        let limits = Limits {
            memory: memory.parse().unwrap(),
            ..Limits::default()
        };
        let job = RunJob {
            hook: HookName::new("scripted").unwrap(),
            release_id: ReleaseId::new_random(),
            runtime: RuntimeConfig::Process {
                command: vec!["true".into()],
                digest: Digest::of_bytes(b"scripted"),
                config: serde_json::Map::new(),
                limits,
            },
            limits,
            batch: batch.layout.clone(),
            max_log_bytes: 1024,
        };
        let spec = FeatureSpec::table(
            Cardinality::One,
            vec![ColumnDef {
                name: ColumnName::new("n").unwrap(),
                json_type: JsonType::Integer,
                format: None,
                required: true,
                description: None,
                unit: None,
            }],
        )
        .unwrap();
        Fixture {
            _tmp: tmp,
            records,
            batch,
            job,
            spec,
        }
    }

    async fn execute(f: &Fixture, runner: &ScriptedRunner) -> StepExecution {
        execute_with_policy(
            runner,
            &f.job,
            &f.batch,
            &f.records,
            &f.spec,
            &FailurePolicy::default(),
            &OutputLimits::default(),
        )
        .await
    }

    fn ids(names: &[&str]) -> Vec<RecordId> {
        names.iter().map(|n| RecordId::new(*n).unwrap()).collect()
    }

    #[tokio::test]
    async fn oom_keeps_checkpoint_and_feeds_the_rest_smallest_first() {
        let f = fixture("1g");
        let runner = ScriptedRunner::new(vec![
            Attempt {
                passes: vec!["a"],
                end: Some(FailureKind::Oom),
            },
            Attempt {
                passes: vec!["d", "c"],
                end: Some(FailureKind::Oom),
            },
            Attempt {
                passes: vec!["b"],
                end: None,
            },
        ]);
        let step = execute(&f, &runner).await;
        let seen = runner.seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (
                    "1g".into(),
                    vec!["a".into(), "b".into(), "c".into(), "d".into()],
                    0
                ),
                ("2g".into(), vec!["d".into(), "c".into(), "b".into()], 0),
                ("4g".into(), vec!["b".into()], 0),
            ],
            "records without an outcome, smallest first, into an emptied out/"
        );
        assert!(step.succeeded(), "{step:?}");
        assert_eq!((step.attempts, step.oom_retries), (3, 2));
        assert_eq!(step.limits.memory.to_string(), "4g");
        assert!(step.outcome.missing.is_empty());
        assert_eq!(step.outcome.counts().passed, 4);
        assert!(step.failure.is_none() && step.decision.is_none());
        let log = String::from_utf8(step.log.bytes).unwrap();
        assert!(
            log.starts_with("[osa] attempt 1 (memory 1g)\nhook says hi\n"),
            "{log}"
        );
        assert!(log.contains("[osa] attempt 3 (memory 4g)\n"), "{log}");
    }

    #[tokio::test]
    async fn oom_gives_up_after_three_doublings() {
        let f = fixture("1g");
        let oom = || Attempt {
            passes: vec![],
            end: Some(FailureKind::Oom),
        };
        let runner = ScriptedRunner::new(vec![oom(), oom(), oom(), oom()]);
        let step = execute(&f, &runner).await;
        let memories: Vec<String> = runner
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.0.clone())
            .collect();
        assert_eq!(memories, ["1g", "2g", "4g", "8g"]);
        assert_eq!((step.attempts, step.oom_retries), (4, 3));
        assert_eq!(
            step.failure.as_ref().map(|f| f.kind),
            Some(FailureKind::Oom)
        );
        assert_eq!(
            step.decision,
            Some(Decision::GiveUp {
                reason: "out of memory at 8g after 3 memory bumps".into()
            })
        );
        assert_eq!(step.outcome.missing, ids(&["a", "d", "c", "b"]));
        let finished = step.outcome.finish();
        assert_eq!(finished.counts().errored, 4);
    }

    #[tokio::test]
    async fn other_failures_end_the_loop_with_the_policy_decision() {
        for (kind, label) in [
            (FailureKind::HookExit, "give_up"),
            (FailureKind::Timeout, "retry"),
            (FailureKind::Config, "abort_run"),
        ] {
            let f = fixture("1g");
            let runner = ScriptedRunner::new(vec![Attempt {
                passes: vec!["b"],
                end: Some(kind),
            }]);
            let step = execute(&f, &runner).await;
            assert_eq!(step.attempts, 1);
            assert_eq!(step.oom_retries, 0);
            assert_eq!(step.decision.as_ref().map(Decision::label), Some(label));
            assert!(matches!(
                step.outcome.outcomes[&RecordId::new("b").unwrap()],
                RecordOutcome::Passed { .. }
            ));
            assert_eq!(step.outcome.missing, ids(&["a", "c", "d"]));
        }
    }

    #[tokio::test]
    async fn oom_after_every_outcome_is_not_retried() {
        let f = fixture("1g");
        let runner = ScriptedRunner::new(vec![Attempt {
            passes: vec!["a", "b", "c", "d"],
            end: Some(FailureKind::Oom),
        }]);
        let step = execute(&f, &runner).await;
        assert_eq!(step.attempts, 1);
        assert_eq!(step.decision.as_ref().map(Decision::label), Some("give_up"));
        assert_eq!(step.outcome.counts().passed, 4);
    }

    #[tokio::test]
    async fn unreadable_output_stops_the_loop() {
        let f = fixture("1g");
        let runner = ScriptedRunner::new(vec![Attempt {
            passes: vec!["a"],
            end: Some(FailureKind::Oom),
        }]);
        let limits = OutputLimits {
            max_file_bytes: 4,
            ..OutputLimits::default()
        };
        let step = execute_with_policy(
            &runner,
            &f.job,
            &f.batch,
            &f.records,
            &f.spec,
            &FailurePolicy::default(),
            &limits,
        )
        .await;
        assert_eq!(step.attempts, 1);
        assert!(matches!(
            step.output_error,
            Some(ContractError::OutputTooLarge { .. })
        ));
        assert_eq!(step.decision.as_ref().map(Decision::label), Some("give_up"));
        assert_eq!(step.outcome.missing, ids(&["a", "b", "c", "d"]));
        assert!(!step.succeeded());
    }

    /// An execution of `passed` records (each with no rows), `missing` ones, the given
    /// progress entries and a log.
    fn batch_execution(
        passed: &[&str],
        missing: &[&str],
        progress: usize,
        log: &str,
    ) -> StepExecution {
        let outcome = BatchOutcome {
            outcomes: passed
                .iter()
                .map(|id| {
                    (
                        RecordId::new(*id).unwrap(),
                        RecordOutcome::Passed { rows: vec![] },
                    )
                })
                .collect(),
            missing: ids(missing),
            progress: (0..progress)
                .map(|n| crate::contract::ProgressEntry {
                    step: Some(format!("p{n}")),
                    status: "running".into(),
                    message: None,
                })
                .collect(),
            stray_ids: vec!["stray".into()],
            ..BatchOutcome::default()
        };
        StepExecution {
            outcome,
            output_error: None,
            attempts: 1,
            oom_retries: 1,
            limits: Limits::default(),
            duration: Duration::from_millis(10),
            log: CapturedLog {
                bytes: log.as_bytes().to_vec(),
                truncated: false,
            },
            failure: None,
            decision: None,
        }
    }

    #[test]
    fn a_later_batch_adds_up_within_the_output_limits() {
        let limits = OutputLimits {
            max_progress_entries: 3,
            max_stray_ids: 1,
            max_log_bytes: 200,
            ..OutputLimits::default()
        };
        let mut step = batch_execution(&["a", "b"], &[], 2, "first batch");
        let mut later = batch_execution(&["c"], &["d"], 2, "second batch\n");
        later.failure = Some(RunFailure::new(FailureKind::HookExit, "exit 3"));
        step.append(later, "batch 2 of 2", &limits);

        assert_eq!(step.outcome.outcomes.len(), 3);
        assert_eq!(step.outcome.missing, ids(&["d"]));
        assert_eq!(
            step.outcome.progress.len(),
            3,
            "capped at max_progress_entries"
        );
        assert_eq!(step.outcome.progress_omitted, 1);
        assert_eq!(step.outcome.stray_ids, ["stray"]);
        assert_eq!(step.outcome.stray_ids_omitted, 1);
        assert_eq!((step.attempts, step.oom_retries), (2, 2));
        assert_eq!(step.duration, Duration::from_millis(20));
        assert_eq!(
            String::from_utf8(step.log.bytes.clone()).unwrap(),
            "first batch\n[osa] batch 2 of 2\nsecond batch\n"
        );
        assert!(!step.log.truncated);
        assert!(!step.succeeded(), "the later batch's failure is the step's");

        // A log past the cap keeps its first and latest parts.
        let long = "x".repeat(300);
        step.append(
            batch_execution(&["e"], &[], 0, &long),
            "batch 3 of 3",
            &limits,
        );
        assert!(step.log.bytes.len() <= 200);
        assert!(step.log.truncated);
        assert!(step.log.bytes.starts_with(b"first batch"));
        assert!(step.log.bytes.ends_with(b"xxxx"));
        assert!(step.succeeded(), "the latest batch decides");
    }
}

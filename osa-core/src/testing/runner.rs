//! Runner conformance suite: the behaviour every [`HookRunner`] must show, checked
//! against the scripted test hook (`tests/hooks/test_hook.py`, `examples/test_hook.rs`,
//! or an image built from either).
//!
//! A runner's own tests build a [`Harness`] (the runner, a [`HookFactory`] that turns a
//! test config into the runtime of the test hook, a scratch directory) and call the
//! cases one by one (one `#[test]` each, so failures are reported per case) or all at
//! once with [`run_all`]. Every case returns `Err` with a message saying what was
//! expected, what happened, and the tail of the hook's log.
//!
//! Process checks (timeout, cancellation, background children) look for the test
//! hook's child in `/proc` by a marker in its argv, so they need the hook's processes
//! visible in this machine's `/proc`: true for the process runner with or without
//! bwrap, and for rootful Docker or Podman on the same Linux host.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use osa_core::runner::process::ProcessRunner;
//! use osa_core::runtime::RuntimeConfig;
//! use osa_core::testing::runner::{Harness, run_all};
//!
//! let runner = ProcessRunner::new();
//! let hook = |config, limits| RuntimeConfig::Process {
//!     command: vec!["python3".into(), "/src/osa/tests/hooks/test_hook.py".into()],
//!     digest: osa_core::testing::digest(1),
//!     config,
//!     limits,
//! };
//! let scratch = std::env::temp_dir();
//! run_all(&Harness::new(&runner, &hook, &scratch)).await
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::contract::{
    BatchFile, BatchLayout, BatchLimits, BatchRecord, ContractError, FEATURES_FILE, OutputLimits,
    PreparedBatch, RECORDS_FILE, RecordOutcome, record_dir_name,
};
use crate::feature::{Cardinality, FeatureSpec, FeatureValue, JsonType};
use crate::id::{FileName, HookName, RecordId, ReleaseId};
use crate::policy::{Decision, FailurePolicy, StepExecution, execute_with_policy};
use crate::runner::{CapturedLog, FailureKind, HookRunner, RunJob};
use crate::runtime::{Limits, MemorySize};
use crate::testing::column;

/// Builds the runtime of the test hook for one case, from the hook's config
/// (`config.json`) and the limits of the case.
pub type HookFactory =
    dyn Fn(Map<String, Value>, Limits) -> crate::runtime::RuntimeConfig + Send + Sync;

/// The hook name the suite runs under (exported as `OSA_HOOK_NAME`).
pub const HOOK_NAME: &str = "conformance_hook";

/// Memory sizes for the OOM cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OomCase {
    /// The memory limit of the first attempt.
    pub base_memory: MemorySize,
    /// What the "OOM then success" record allocates, in MiB: more than `base_memory`,
    /// and less than twice `base_memory` minus the hook's own baseline.
    pub alloc_mb: u64,
}

impl Default for OomCase {
    /// 64m first, 128m after one doubling; 80 MiB fails at 64m and fits at 128m with
    /// room for a Python interpreter (about 20 MiB of address space).
    fn default() -> Self {
        OomCase {
            base_memory: MemorySize::from_bytes(64 << 20).expect("64m is a valid size"),
            alloc_mb: 80,
        }
    }
}

/// What the suite needs to drive a runner.
#[derive(Clone)]
pub struct Harness<'a> {
    /// The runner under test.
    pub runner: &'a dyn HookRunner,
    /// The test hook's runtime, per case.
    pub hook: &'a HookFactory,
    /// Where batch directories are created (must be visible to the runner).
    pub scratch: &'a Path,
    /// Whether the runner isolates the hook (no network, read-only inputs, no writes
    /// outside `$OSA_OUT`). Plain runners are checked for the opposite, so that the
    /// probes themselves are known to work.
    pub sandboxed: bool,
    /// Environment variables allowed besides the four `OSA_*` ones.
    pub extra_env: Vec<String>,
    /// Memory sizes for the OOM cases.
    pub oom: OomCase,
}

impl fmt::Debug for Harness<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("runner", &self.runner)
            .field("scratch", &self.scratch)
            .field("sandboxed", &self.sandboxed)
            .field("extra_env", &self.extra_env)
            .field("oom", &self.oom)
            .finish_non_exhaustive()
    }
}

impl<'a> Harness<'a> {
    /// A harness for an unsandboxed runner that sets `PATH` and `HOME`, with the
    /// default OOM sizes.
    pub fn new(runner: &'a dyn HookRunner, hook: &'a HookFactory, scratch: &'a Path) -> Self {
        Harness {
            runner,
            hook,
            scratch,
            sandboxed: false,
            extra_env: vec!["PATH".into(), "HOME".into()],
            oom: OomCase::default(),
        }
    }

    /// Declares whether the runner isolates the hook.
    pub fn sandboxed(mut self, sandboxed: bool) -> Self {
        self.sandboxed = sandboxed;
        self
    }

    /// Sets the environment variables allowed besides the `OSA_*` ones.
    pub fn extra_env(mut self, names: &[&str]) -> Self {
        self.extra_env = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Sets the OOM sizes.
    pub fn oom(mut self, oom: OomCase) -> Self {
        self.oom = oom;
        self
    }
}

/// The feature contract of the test hook: one row per record, `label` (the action)
/// and `detail` (what the action observed).
pub fn conformance_spec() -> FeatureSpec {
    FeatureSpec::table(
        Cardinality::One,
        vec![
            column("label", JsonType::String, None, true),
            column("detail", JsonType::Object, None, false),
        ],
    )
    .expect("distinct columns")
}

/// Generates one `#[tokio::test]` per conformance case. `$env` is an expression
/// (it may `.await`) giving a value whose `harness()` returns the [`Harness`] of the
/// runner under test; it is evaluated afresh in every test.
///
/// The rule `@cases` holds the one list of the cases, which both these tests and
/// [`run_all`] expand.
#[macro_export]
macro_rules! runner_conformance {
    ($env:expr) => {
        $crate::runner_conformance!(@cases [@tests $env]);
    };
    // The list of the cases, handed to the rule in brackets.
    (@cases [$($rule:tt)*]) => {
        $crate::runner_conformance!($($rule)*;
            passes,
            contract_environment,
            per_record_outcomes,
            progress_rejection,
            nonzero_exit,
            timeout_kills_everything,
            background_children_are_killed,
            cancellation_kills_everything,
            oom_then_success,
            oom_exhausted,
            oversized_output_refused,
            log_is_captured_and_capped,
            files_visible_read_only,
            writes_outside_out_fail,
            no_network,
        );
    };
    (@tests $env:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let env = $env;
                if let Err(e) = $crate::testing::runner::$case(&env.harness()).await {
                    panic!("{e}");
                }
            }
        )*
    };
    // Runs every case on the harness `$h`, pushing each failure onto `$failures`.
    (@run_all $h:ident, $failures:ident; $($case:ident),* $(,)?) => {
        $(
            if let Err(e) = $crate::testing::runner::$case($h).await {
                $failures.push(format!("{}: {e}", stringify!($case)));
            }
        )*
    };
}

/// Runs every case and reports all failures together.
pub async fn run_all(h: &Harness<'_>) -> Result<(), String> {
    let mut failures: Vec<String> = Vec::new();
    crate::runner_conformance!(@cases [@run_all h, failures]);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n\n"))
    }
}

/// Every record passes with the row the hook wrote; progress lines are read.
pub async fn passes(h: &Harness<'_>) -> Result<(), String> {
    let ids = ["rec-1", "urn:osa:rec/2@1", "3"];
    let case = Case::new(
        h,
        "passes",
        ids.iter().map(|id| record(id, json!({}))).collect(),
        json!({"mode": "pass"}),
    )?;
    let step = case.step(h).await;
    expect_success(&step)?;
    for id in ids {
        let detail = passed_detail(&step, id, "pass")?;
        check(detail["record"] == json!(id), &step, || {
            format!("record {id}: row detail {detail}, expected {{\"record\": {id:?}}}")
        })?;
    }
    check(
        step.outcome
            .progress
            .iter()
            .any(|p| p.status == "completed"),
        &step,
        || {
            format!(
                "expected a `completed` progress line, got {:?}",
                step.outcome.progress
            )
        },
    )
}

/// The hook sees exactly the contract environment.
pub async fn contract_environment(h: &Harness<'_>) -> Result<(), String> {
    let case = Case::new(
        h,
        "environment",
        vec![record("env", json!({}))],
        json!({"mode": "env"}),
    )?;
    let step = case.step(h).await;
    expect_success(&step)?;
    let detail = passed_detail(&step, "env", "env")?;
    let env = detail["env"].as_object().cloned().unwrap_or_default();
    let names: BTreeSet<&str> = env.keys().map(String::as_str).collect();
    let mut expected: BTreeSet<&str> = ["OSA_IN", "OSA_OUT", "OSA_FILES", "OSA_HOOK_NAME"].into();
    expected.extend(h.extra_env.iter().map(String::as_str));
    check(names == expected, &step, || {
        format!("environment {names:?}, expected exactly {expected:?}")
    })?;
    check(env["OSA_HOOK_NAME"] == json!(HOOK_NAME), &step, || {
        format!(
            "OSA_HOOK_NAME is {}, expected {HOOK_NAME:?}",
            env["OSA_HOOK_NAME"]
        )
    })?;
    let dirs: BTreeSet<&str> = ["OSA_IN", "OSA_OUT", "OSA_FILES"]
        .iter()
        .filter_map(|k| env[*k].as_str().filter(|v| !v.is_empty()))
        .collect();
    check(dirs.len() == 3, &step, || {
        format!("OSA_IN, OSA_OUT and OSA_FILES must be three distinct directories, got {env:?}")
    })
}

/// One batch mixes passes, rejections and errors (retryable or not).
pub async fn per_record_outcomes(h: &Harness<'_>) -> Result<(), String> {
    let records = vec![
        record("p1", json!({"action": "pass"})),
        record("r1", json!({"action": "reject", "reason": "too blurry"})),
        record(
            "e1",
            json!({"action": "error", "error": "bad cif", "retryable": true}),
        ),
        record("e2", json!({"action": "error"})),
        record("p2", json!({})),
    ];
    let case = Case::new(h, "per-record", records, json!({"mode": "pass"}))?;
    let step = case.step(h).await;
    expect_success(&step)?;
    passed_detail(&step, "p1", "pass")?;
    passed_detail(&step, "p2", "pass")?;
    expect_outcome(
        &step,
        "r1",
        &RecordOutcome::Rejected {
            reason: "too blurry".into(),
        },
    )?;
    expect_outcome(
        &step,
        "e1",
        &RecordOutcome::Errored {
            error: "bad cif".into(),
            retryable: true,
        },
    )?;
    expect_outcome(
        &step,
        "e2",
        &RecordOutcome::Errored {
            error: "test hook error".into(),
            retryable: false,
        },
    )
}

/// A `progress.jsonl` entry with `"status": "rejected"` rejects the whole batch.
pub async fn progress_rejection(h: &Harness<'_>) -> Result<(), String> {
    let records = vec![record("a", json!({})), record("b", json!({}))];
    let case = Case::new(
        h,
        "progress-rejection",
        records,
        json!({"mode": "reject_batch", "reason": "no CIF file"}),
    )?;
    let step = case.step(h).await;
    expect_success(&step)?;
    for id in ["a", "b"] {
        expect_outcome(
            &step,
            id,
            &RecordOutcome::Rejected {
                reason: "no CIF file".into(),
            },
        )?;
    }
    Ok(())
}

/// A non-zero exit is `hook_exit` with the code; outcomes written before it are kept
/// and the policy gives up on the rest.
pub async fn nonzero_exit(h: &Harness<'_>) -> Result<(), String> {
    let case = Case::new(
        h,
        "exit",
        vec![record("a", json!({}))],
        json!({"mode": "exit", "exit_code": 3}),
    )?;
    match h.runner.run(&case.job).await {
        Ok(execution) => {
            return Err(format!(
                "expected a hook_exit failure, got success{}",
                log_tail(&execution.log)
            ));
        }
        Err(failure) if failure.kind == FailureKind::HookExit && failure.exit_code == Some(3) => {}
        Err(failure) => {
            return Err(format!(
                "expected hook_exit with exit code 3, got {} (exit code {:?}): {}{}",
                failure.kind,
                failure.exit_code,
                failure.detail,
                log_tail(&failure.log)
            ));
        }
    }

    let records = vec![
        record("first", json!({})),
        record("quits", json!({"action": "exit", "exit_code": 3})),
        record("never", json!({})),
    ];
    let case = Case::new(h, "exit-midway", records, json!({"mode": "pass"}))?;
    let step = case.step(h).await;
    passed_detail(&step, "first", "pass")?;
    expect_missing(&step, &["quits", "never"])?;
    check(
        step.decision
            == Some(Decision::GiveUp {
                reason: "hook exited with code 3".into(),
            }),
        &step,
        || {
            format!(
                "expected the policy to give up (hook exited with code 3), got {:?}",
                step.decision
            )
        },
    )
}

/// The wall-clock limit kills the hook and everything it started, reported as
/// `timeout` within the limit plus 2 s.
pub async fn timeout_kills_everything(h: &Harness<'_>) -> Result<(), String> {
    let marker = new_marker();
    let limits = Limits {
        // 2 s, not 1: the hook must get to start its child even on a loaded machine.
        timeout_seconds: 2,
        ..default_limits()
    };
    let case = Case::with_limits(
        h,
        "timeout",
        vec![record("slow", json!({}))],
        json!({"mode": "sleep", "sleep_seconds": 60, "spawn_child": marker}),
        limits,
    )?;
    let timed_run = async {
        let started = Instant::now();
        let result = h.runner.run(&case.job).await;
        (result, started.elapsed())
    };
    let ((result, elapsed), seen) =
        tokio::join!(timed_run, watch_for(&marker, Duration::from_secs(5)));
    let failure = match result {
        Ok(execution) => {
            return Err(format!(
                "expected a timeout, got success{}",
                log_tail(&execution.log)
            ));
        }
        Err(failure) => failure,
    };
    if failure.kind != FailureKind::Timeout {
        return Err(format!(
            "expected a timeout, got {}: {}{}",
            failure.kind,
            failure.detail,
            log_tail(&failure.log)
        ));
    }
    let bound = Duration::from_secs(u64::from(limits.timeout_seconds) + 2);
    if elapsed > bound {
        return Err(format!(
            "the timeout was reported after {elapsed:?}, more than {bound:?} ({}){}",
            failure.detail,
            log_tail(&failure.log)
        ));
    }
    if !seen {
        return Err(
            "the hook's background child never appeared; the leftover check would prove nothing"
                .into(),
        );
    }
    expect_no_leftovers(&marker, "after a timeout")
}

/// Background processes a hook leaves behind are killed when it exits 0.
pub async fn background_children_are_killed(h: &Harness<'_>) -> Result<(), String> {
    let marker = new_marker();
    let case = Case::new(
        h,
        "background",
        vec![record(
            "a",
            json!({"action": "sleep", "sleep_seconds": 0.5}),
        )],
        json!({"mode": "pass", "spawn_child": marker}),
    )?;
    let (result, seen) = tokio::join!(
        h.runner.run(&case.job),
        watch_for(&marker, Duration::from_secs(10))
    );
    if let Err(failure) = result {
        return Err(format!(
            "expected success, got {failure}{}",
            log_tail(&failure.log)
        ));
    }
    if !seen {
        return Err(
            "the hook's background child never appeared; the leftover check would prove nothing"
                .into(),
        );
    }
    expect_no_leftovers(&marker, "after the hook exited 0")
}

/// Dropping the `run` future kills the hook and everything it started.
pub async fn cancellation_kills_everything(h: &Harness<'_>) -> Result<(), String> {
    let marker = new_marker();
    let case = Case::new(
        h,
        "cancel",
        vec![record("slow", json!({}))],
        json!({"mode": "sleep", "sleep_seconds": 60, "spawn_child": marker}),
    )?;
    let seen = tokio::select! {
        result = h.runner.run(&case.job) => {
            let result = result.map(|_| ());
            return Err(format!("the hook finished before it could be cancelled: {result:?}"));
        }
        seen = watch_for(&marker, Duration::from_secs(10)) => seen,
    };
    // The run future is dropped here, at the end of the select.
    if !seen {
        return Err("the hook's background child never appeared within 10 s".into());
    }
    expect_no_leftovers(&marker, "after the run future was dropped")
}

/// An OOM keeps the outcomes written so far, reruns the rest smallest first with
/// doubled memory, and succeeds there.
pub async fn oom_then_success(h: &Harness<'_>) -> Result<(), String> {
    let limits = Limits {
        memory: h.oom.base_memory,
        ..default_limits()
    };
    let alloc_mb = h.oom.alloc_mb;
    let records = vec![
        record("small", json!({})),
        record_with_file(
            h,
            "big",
            json!({"action": "alloc", "alloc_mb": alloc_mb}),
            2048,
        )?,
        record("tiny", json!({})),
    ];
    let case = Case::with_limits(h, "oom-success", records, json!({"mode": "pass"}), limits)?;
    let step = case.step(h).await;
    expect_success(&step)?;
    let doubled = h
        .oom
        .base_memory
        .doubled()
        .ok_or("base memory cannot be doubled")?;
    check(step.attempts == 2 && step.oom_retries == 1, &step, || {
        format!(
            "expected 2 attempts and 1 OOM retry, got {} and {}",
            step.attempts, step.oom_retries
        )
    })?;
    check(step.limits.memory == doubled, &step, || {
        format!(
            "expected the last attempt at {doubled}, got {}",
            step.limits.memory
        )
    })?;
    passed_detail(&step, "small", "pass")?;
    passed_detail(&step, "tiny", "pass")?;
    let detail = passed_detail(&step, "big", "alloc")?;
    check(detail["alloc_mb"] == json!(alloc_mb), &step, || {
        format!("big: detail {detail}")
    })?;
    let fed = fed_ids(&case.batch.layout)?;
    check(fed == ["tiny", "big"], &step, || {
        format!(
            "the retry must feed only the records without outcome, smallest first: \
             expected [tiny, big], got {fed:?}"
        )
    })
}

/// An OOM at every size gives up after 3 doublings (4 attempts); the record stays
/// without outcome.
pub async fn oom_exhausted(h: &Harness<'_>) -> Result<(), String> {
    let base = h.oom.base_memory;
    let last = (0..3)
        .try_fold(base, |m, _| m.doubled())
        .ok_or("base memory too large to double 3 times")?;
    let alloc_mb = (last.bytes() >> 20) * 2;
    let limits = Limits {
        memory: base,
        ..default_limits()
    };
    let case = Case::with_limits(
        h,
        "oom-exhausted",
        vec![record(
            "huge",
            json!({"action": "alloc", "alloc_mb": alloc_mb}),
        )],
        json!({"mode": "pass"}),
        limits,
    )?;
    let step = case.step(h).await;
    check(step.attempts == 4 && step.oom_retries == 3, &step, || {
        format!(
            "expected 4 attempts and 3 OOM retries, got {} and {}",
            step.attempts, step.oom_retries
        )
    })?;
    check(step.limits.memory == last, &step, || {
        format!(
            "expected the last attempt at {last}, got {}",
            step.limits.memory
        )
    })?;
    check(
        step.failure.as_ref().map(|f| f.kind) == Some(FailureKind::Oom),
        &step,
        || {
            format!(
                "expected the last failure to be oom, got {:?}",
                step.failure
            )
        },
    )?;
    check(
        matches!(step.decision, Some(Decision::GiveUp { .. })),
        &step,
        || format!("expected the policy to give up, got {:?}", step.decision),
    )?;
    expect_missing(&step, &["huge"])
}

/// Output over the size limit is refused when read (`OutputTooLarge`).
pub async fn oversized_output_refused(h: &Harness<'_>) -> Result<(), String> {
    let case = Case::new(
        h,
        "big-output",
        vec![record("a", json!({}))],
        json!({"mode": "big_output", "big_output_mb": 2}),
    )?;
    let limits = OutputLimits {
        max_file_bytes: 1 << 20,
        ..OutputLimits::default()
    };
    let step = case.step_with(h, &limits).await;
    check(step.failure.is_none(), &step, || {
        format!("the hook itself must succeed, got {:?}", step.failure)
    })?;
    check(
        matches!(
            step.output_error,
            Some(ContractError::OutputTooLarge {
                file: FEATURES_FILE,
                ..
            })
        ),
        &step,
        || {
            format!(
                "expected OutputTooLarge for {FEATURES_FILE}, got {:?}",
                step.output_error
            )
        },
    )?;
    expect_missing(&step, &["a"])
}

/// Heavy output on both pipes neither blocks the hook nor grows the log past its cap.
pub async fn log_is_captured_and_capped(h: &Harness<'_>) -> Result<(), String> {
    let mut case = Case::new(
        h,
        "log",
        vec![record("a", json!({}))],
        json!({"mode": "pass", "log_kb": 1024}),
    )?;
    let cap = 64 << 10;
    case.job.max_log_bytes = cap;
    let execution = h.runner.run(&case.job).await.map_err(|f| {
        format!(
            "expected success with 1 MiB on each pipe, got {f}{}",
            log_tail(&f.log)
        )
    })?;
    let log = &execution.log;
    if !log.truncated || log.bytes.len() > cap {
        return Err(format!(
            "expected a truncated log of at most {cap} bytes, got {} bytes (truncated: {})",
            log.bytes.len(),
            log.truncated
        ));
    }
    if !(log.bytes.starts_with(b"stdout-start") || log.bytes.starts_with(b"stderr-start")) {
        return Err(format!(
            "the log must keep the beginning of the output, got {:?}",
            String::from_utf8_lossy(&log.bytes[..log.bytes.len().min(40)])
        ));
    }
    Ok(())
}

/// Each record's files are visible at `$OSA_FILES/<record dir>` with their sizes; in
/// sandboxed runners they cannot be written.
pub async fn files_visible_read_only(h: &Harness<'_>) -> Result<(), String> {
    let mut records = Vec::new();
    let mut expected: BTreeMap<&str, Value> = BTreeMap::new();
    for (id, files) in [
        (
            "urn:osa:rec/1@2",
            vec![("structure.cif", 1234usize), ("notes.txt", 10)],
        ),
        ("plain", vec![("a.bin", 7)]),
    ] {
        let mut batch_files = Vec::new();
        let mut listing = Map::new();
        for (name, size) in files {
            batch_files.push(source_file(h, name, size)?);
            listing.insert(name.to_string(), json!(size));
        }
        records.push(BatchRecord {
            id: RecordId::new(id).map_err(|e| e.to_string())?,
            metadata: json!({}),
            files: batch_files,
        });
        expected.insert(id, Value::Object(listing));
    }
    let case = Case::new(h, "files", records, json!({"mode": "files"}))?;
    let step = case.step(h).await;
    expect_success(&step)?;
    for (id, listing) in expected {
        let detail = passed_detail(&step, id, "files")?;
        check(detail["dir"] == json!(record_dir_name(id)), &step, || {
            format!(
                "record {id}: files looked up in {}, expected {}",
                detail["dir"],
                record_dir_name(id)
            )
        })?;
        check(detail["files"] == listing, &step, || {
            format!(
                "record {id}: the hook saw {}, expected {listing}",
                detail["files"]
            )
        })?;
        if h.sandboxed {
            let write = detail["write"].as_str().unwrap_or_default();
            check(write.starts_with("denied"), &step, || {
                format!("record {id}: writing into its files directory must fail, got {write:?}")
            })?;
        }
    }
    Ok(())
}

/// Sandboxed: nothing outside `$OSA_OUT` is writable (inputs, files, `/usr`, the parent
/// of `HOME`). Plain: inputs are writable, which shows the probe works.
pub async fn writes_outside_out_fail(h: &Harness<'_>) -> Result<(), String> {
    let case = Case::new(
        h,
        "write-outside",
        vec![record("w", json!({}))],
        json!({"mode": "write_outside"}),
    )?;
    let step = case.step(h).await;
    expect_success(&step)?;
    let detail = passed_detail(&step, "w", "write_outside")?;
    let result = |key: &str| detail[key].as_str().unwrap_or("<missing>").to_string();
    check(result("out") == "written", &step, || {
        format!("writing $OSA_OUT must work, got {:?}", result("out"))
    })?;
    if h.sandboxed {
        for key in ["in", "files", "usr", "home_parent"] {
            check(result(key).starts_with("denied"), &step, || {
                format!(
                    "writing outside $OSA_OUT ({key}) must fail in a sandbox, got {:?}",
                    result(key)
                )
            })?;
        }
        Ok(())
    } else {
        check(result("in") == "written", &step, || {
            format!(
                "an unsandboxed hook can write $OSA_IN; the probe reported {:?}",
                result("in")
            )
        })
    }
}

/// Sandboxed: no connection to a port listening on the host's loopback. Plain: the
/// connection works, which shows the probe works.
pub async fn no_network(h: &Harness<'_>) -> Result<(), String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("binding a local port: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let case = Case::new(
        h,
        "net",
        vec![record("n", json!({}))],
        json!({"mode": "net", "port": port}),
    )?;
    let step = case.step(h).await;
    drop(listener);
    expect_success(&step)?;
    let detail = passed_detail(&step, "n", "net")?;
    let expected = if h.sandboxed { "blocked" } else { "connected" };
    check(detail["net"] == json!(expected), &step, || {
        format!("connecting to 127.0.0.1:{port}: expected {expected}, got {detail}")
    })
}

// ---------------------------------------------------------------------------------

/// One prepared batch and its job.
struct Case {
    records: Vec<BatchRecord>,
    batch: PreparedBatch,
    job: RunJob,
}

impl Case {
    fn new(
        h: &Harness<'_>,
        name: &str,
        records: Vec<BatchRecord>,
        config: Value,
    ) -> Result<Self, String> {
        Case::with_limits(h, name, records, config, default_limits())
    }

    fn with_limits(
        h: &Harness<'_>,
        name: &str,
        records: Vec<BatchRecord>,
        config: Value,
        limits: Limits,
    ) -> Result<Self, String> {
        let Value::Object(config) = config else {
            return Err("a test config must be a JSON object".into());
        };
        let runtime = (h.hook)(config, limits);
        let root = h.scratch.join(format!("{name}-{}", uuid::Uuid::new_v4()));
        let batch =
            BatchLayout::prepare(&root, &records, runtime.config(), &BatchLimits::default())
                .map_err(|e| format!("preparing the batch in {}: {e}", root.display()))?;
        let job = RunJob {
            hook: HookName::new(HOOK_NAME).map_err(|e| e.to_string())?,
            release_id: ReleaseId::new_random(),
            runtime,
            limits,
            batch: batch.layout.clone(),
            max_log_bytes: OutputLimits::default().max_log_bytes,
        };
        Ok(Case {
            records,
            batch,
            job,
        })
    }

    async fn step(&self, h: &Harness<'_>) -> StepExecution {
        self.step_with(h, &OutputLimits::default()).await
    }

    async fn step_with(&self, h: &Harness<'_>, limits: &OutputLimits) -> StepExecution {
        execute_with_policy(
            h.runner,
            &self.job,
            &self.batch,
            &self.records,
            &conformance_spec(),
            &FailurePolicy::default(),
            limits,
        )
        .await
    }
}

/// Generous limits for cases that are not about limits: nothing should ever hit them.
fn default_limits() -> Limits {
    Limits {
        timeout_seconds: 60,
        memory: MemorySize::from_bytes(512 << 20).expect("512m is a valid size"),
        ..Limits::default()
    }
}

fn record(id: &str, metadata: Value) -> BatchRecord {
    BatchRecord {
        id: RecordId::new(id).expect("suite record ids are valid"),
        metadata,
        files: Vec::new(),
    }
}

fn record_with_file(
    h: &Harness<'_>,
    id: &str,
    metadata: Value,
    size: usize,
) -> Result<BatchRecord, String> {
    let mut record = record(id, metadata);
    record.files.push(source_file(h, "data.bin", size)?);
    Ok(record)
}

/// A source file of `size` bytes in the scratch directory.
fn source_file(h: &Harness<'_>, name: &str, size: usize) -> Result<BatchFile, String> {
    let dir = h.scratch.join(format!("sources-{}", uuid::Uuid::new_v4()));
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let source = dir.join(name);
    fs::write(&source, vec![b's'; size])
        .map_err(|e| format!("writing {}: {e}", source.display()))?;
    Ok(BatchFile {
        name: FileName::new(name).map_err(|e| e.to_string())?,
        source,
    })
}

/// The ids in `records.jsonl` (what the last attempt was fed).
fn fed_ids(layout: &BatchLayout) -> Result<Vec<String>, String> {
    let path = layout.input.join(RECORDS_FILE);
    let text = fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(value["id"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

fn check(ok: bool, step: &StepExecution, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{}{}", message(), step_context(step)))
    }
}

fn expect_success(step: &StepExecution) -> Result<(), String> {
    check(step.succeeded(), step, || {
        "expected the step to succeed".into()
    })
}

fn expect_outcome(step: &StepExecution, id: &str, expected: &RecordOutcome) -> Result<(), String> {
    let got = outcome(step, id)?;
    check(got == expected, step, || {
        format!("record {id}: expected {expected:?}, got {got:?}")
    })
}

fn expect_missing(step: &StepExecution, ids: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = step.outcome.missing.iter().map(RecordId::as_str).collect();
    check(missing == ids, step, || {
        format!("expected {ids:?} without outcome, got {missing:?}")
    })
}

fn outcome<'s>(step: &'s StepExecution, id: &str) -> Result<&'s RecordOutcome, String> {
    let key = RecordId::new(id).map_err(|e| e.to_string())?;
    step.outcome
        .outcomes
        .get(&key)
        .ok_or_else(|| format!("record {id} has no outcome{}", step_context(step)))
}

/// The `detail` of a passed record's single row, after checking its `label`.
fn passed_detail(step: &StepExecution, id: &str, label: &str) -> Result<Value, String> {
    let RecordOutcome::Passed { rows } = outcome(step, id)? else {
        return Err(format!(
            "record {id}: expected a pass, got {:?}{}",
            outcome(step, id)?,
            step_context(step)
        ));
    };
    let [row] = rows.as_slice() else {
        return Err(format!(
            "record {id}: expected one row, got {rows:?}{}",
            step_context(step)
        ));
    };
    match row.as_slice() {
        [FeatureValue::Text(got), detail] if got == label => Ok(detail.to_json()),
        other => Err(format!(
            "record {id}: expected label {label:?}, got row {other:?}{}",
            step_context(step)
        )),
    }
}

/// Failure, decision and log tail of a step, for error messages.
fn step_context(step: &StepExecution) -> String {
    format!(
        "\n  attempts: {}, oom retries: {}, failure: {}, decision: {:?}, output error: {}{}",
        step.attempts,
        step.oom_retries,
        step.failure
            .as_ref()
            .map_or_else(|| "none".into(), ToString::to_string),
        step.decision,
        step.output_error
            .as_ref()
            .map_or_else(|| "none".into(), ToString::to_string),
        log_tail(&step.log)
    )
}

fn log_tail(log: &CapturedLog) -> String {
    if log.bytes.is_empty() {
        return "\n  (hook log empty)".into();
    }
    let text = String::from_utf8_lossy(&log.bytes);
    let chars: Vec<char> = text.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(2000)..].iter().collect();
    format!("\n  hook log (tail):\n{tail}")
}

fn new_marker() -> String {
    format!("osa-conformance-{}", uuid::Uuid::new_v4())
}

/// Live (not zombie) processes whose command line contains `marker`.
pub fn live_processes_with(marker: &str) -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if !cmdline.contains(marker) {
                return None;
            }
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
            (state != "Z" && state != "X").then(|| (pid, cmdline.trim().to_string()))
        })
        .collect()
}

/// Whether process `pid` has ended: gone, or dead and not yet reaped (a zombie runs
/// nothing).
pub fn process_ended(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

/// Polls until process `pid` has ended ([`process_ended`]); an error naming it after
/// `bound`.
pub async fn wait_until_ended(pid: u32, bound: Duration) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    while !process_ended(pid) {
        if Instant::now() >= deadline {
            return Err(format!("process {pid} still runs after {bound:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Polls `/proc` until a process with `marker` appears; `false` after `bound`.
async fn watch_for(marker: &str, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if !live_processes_with(marker).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn expect_no_leftovers(marker: &str, when: &str) -> Result<(), String> {
    let left = live_processes_with(marker);
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "processes of the hook still alive {when}: {left:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_processes_by_marker() {
        let marker = new_marker();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("IGNORED", &marker)
            .spawn()
            .expect("sleep runs");
        assert!(
            live_processes_with(&marker).is_empty(),
            "the marker is only in the environment"
        );
        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");
        // `read` is a builtin: sh starts no child that could briefly share its argv.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read -r line", &marker])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        // Right after spawn the child may not have exec'd yet (its argv is still the
        // test's): look again until sh shows up, for at most two seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut found = live_processes_with(&marker);
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = live_processes_with(&marker);
        }
        child.kill().expect("kill sh");
        child.wait().expect("reap sh");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(live_processes_with(&marker).is_empty());
    }
}

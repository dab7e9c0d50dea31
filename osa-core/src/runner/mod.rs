//! The runner abstraction: execute a release over a prepared batch in a sandbox.
//!
//! [`HookRunner`] is the port; [`process::ProcessRunner`] runs `process` releases
//! locally (optionally inside bubblewrap), `oci::OciRunner` (feature `oci`) runs `oci`
//! releases as hardened containers through the Docker Engine API (Docker or Podman),
//! and [`DispatchRunner`] hands each release to the runner of its runtime type. A
//! runner does not retry: [`crate::policy::execute_with_policy`] wraps any runner in
//! the OOM retry policy (checkpoint, smallest records first, doubled memory).
//!
//! The runners share the capture of a hook's output (`log`: the capped log, the stderr
//! tail the OOM markers are looked for in, the runner's `[osa]` notes) and the
//! classification of how an execution ended (`exit`: limits, exit codes, signals,
//! [`OOM_MARKERS`]), so that the same ending is reported the same way by each.

mod dispatch;
#[cfg(unix)]
mod exit;
#[cfg(unix)]
mod group;
#[cfg(unix)]
mod log;
#[cfg(all(unix, feature = "oci"))]
pub mod oci;
#[cfg(unix)]
pub mod process;
#[cfg(unix)]
mod spawner;

pub use dispatch::DispatchRunner;
#[cfg(unix)]
pub use exit::OOM_MARKERS;
#[cfg(all(unix, feature = "oci"))]
pub use oci::{OciRunner, PullPolicy};
#[cfg(unix)]
pub use process::{ProcessRunner, Sandbox};

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::contract::BatchLayout;
use crate::id::{HookName, ReleaseId};
use crate::runtime::{Limits, RuntimeConfig};

/// One execution request: a release snapshot, the batch directory and the limits in
/// force (which may be raised above the release's own after an OOM).
#[derive(Debug, Clone)]
pub struct RunJob {
    /// The hook (exported as `OSA_HOOK_NAME`).
    pub hook: HookName,
    /// The release being run.
    pub release_id: ReleaseId,
    /// How to run it.
    pub runtime: RuntimeConfig,
    /// Limits for this attempt.
    pub limits: Limits,
    /// The prepared batch (inputs written, `out/` empty).
    pub batch: BatchLayout,
    /// Most bytes of stdout+stderr to keep.
    pub max_log_bytes: usize,
}

/// Captured stdout and stderr, capped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedLog {
    /// The bytes kept.
    pub bytes: Vec<u8>,
    /// Whether output past the cap was dropped.
    pub truncated: bool,
}

/// A finished execution: the hook exited 0. Its outcomes are read from `batch.output`
/// by the caller (the same way for every runner).
#[derive(Debug, Clone)]
pub struct Execution {
    /// Wall-clock time of the execution.
    pub duration: Duration,
    /// Captured output.
    pub log: CapturedLog,
}

/// Classified facts about a failed execution. Runners report; the
/// [`crate::policy::FailurePolicy`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The image could not be found or pulled.
    ImagePull,
    /// The release cannot run as configured (bad command, bad limits).
    Config,
    /// The hook was killed for exceeding its memory limit.
    Oom,
    /// The hook ran past its wall-clock limit and was killed.
    Timeout,
    /// The hook exited non-zero.
    HookExit,
    /// The runtime itself failed (engine error, spawn failure).
    Runtime,
    /// Anything else.
    Unknown,
}

impl FailureKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::ImagePull => "image_pull",
            FailureKind::Config => "config",
            FailureKind::Oom => "oom",
            FailureKind::Timeout => "timeout",
            FailureKind::HookExit => "hook_exit",
            FailureKind::Runtime => "runtime",
            FailureKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed execution.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct RunFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// Human detail.
    pub detail: String,
    /// The exit code, when the hook exited.
    pub exit_code: Option<i32>,
    /// Captured output, when any.
    pub log: CapturedLog,
    /// Wall-clock time until the failure.
    pub duration: Duration,
}

impl RunFailure {
    /// A failure with no exit code and no log.
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        RunFailure {
            kind,
            detail: detail.into(),
            exit_code: None,
            log: CapturedLog::default(),
            duration: Duration::ZERO,
        }
    }
}

/// Runs a release over a batch in a sandbox.
///
/// Guarantees every implementation gives:
/// - the hook sees exactly the contract environment (`OSA_IN`, `OSA_OUT`, `OSA_FILES`,
///   `OSA_HOOK_NAME`, plus what the sandbox needs such as `PATH`/`HOME`), inputs and
///   files read-only, `out/` writable;
/// - `job.limits` are enforced: the wall-clock timeout kills everything the hook
///   started, and nothing of the execution (process, container) remains after `run`
///   returns, on every path including cancellation of the future;
/// - stdout and stderr are captured up to `job.max_log_bytes`;
/// - failures are classified ([`FailureKind`]); a hook that exits 0 is an
///   [`Execution`] even if some records errored (outcomes are read from the files).
///
/// A runner does not retry; retries are the policy's decision.
#[async_trait]
pub trait HookRunner: Send + Sync + fmt::Debug {
    /// A short name for logs and benchmarks (`process`, `bwrap`, `oci`).
    fn name(&self) -> &'static str;

    /// Executes `job` once.
    async fn run(&self, job: &RunJob) -> Result<Execution, RunFailure>;
}

/// Runs a short blocking wait from a `Drop` (which cannot await) without stalling the
/// other tasks of the async runtime: on a multi-thread runtime the worker thread hands
/// them to another thread first. A job dropped because its run was cancelled ends up
/// here while the server goes on.
pub(crate) fn wait_in_drop<R>(wait: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

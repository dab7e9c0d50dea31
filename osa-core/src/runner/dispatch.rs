//! A runner that hands each release to the runner of its runtime type.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Execution, FailureKind, HookRunner, RunFailure, RunJob};
use crate::runtime::RuntimeConfig;

/// Runs `process` releases on one runner and `oci` releases on another, so that one
/// engine serves conventions whose hooks mix both.
///
/// A release whose runtime type has no runner fails as a
/// [`FailureKind::Config`] failure naming the missing runner (the failure policy
/// aborts the run: retrying cannot help).
///
/// ```
/// use std::sync::Arc;
/// use osa_core::runner::{DispatchRunner, ProcessRunner};
///
/// let runner = DispatchRunner::new().with_process(Arc::new(ProcessRunner::new()));
/// assert_eq!(runner.runtime_types(), ["process"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct DispatchRunner {
    process: Option<Arc<dyn HookRunner>>,
    oci: Option<Arc<dyn HookRunner>>,
}

impl DispatchRunner {
    /// A dispatcher with no runner yet (every release fails until one is added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `process` releases (commands on the worker's machine) with `runner`.
    pub fn with_process(mut self, runner: Arc<dyn HookRunner>) -> Self {
        self.process = Some(runner);
        self
    }

    /// Runs `oci` releases (container images) with `runner`.
    pub fn with_oci(mut self, runner: Arc<dyn HookRunner>) -> Self {
        self.oci = Some(runner);
        self
    }

    /// The runtime types this dispatcher has a runner for, in a fixed order.
    pub fn runtime_types(&self) -> Vec<&'static str> {
        [("process", &self.process), ("oci", &self.oci)]
            .into_iter()
            .filter_map(|(name, runner)| runner.as_ref().map(|_| name))
            .collect()
    }

    /// The runner of `runtime`'s type, if one is configured.
    pub fn runner_for(&self, runtime: &RuntimeConfig) -> Option<&Arc<dyn HookRunner>> {
        match runtime {
            RuntimeConfig::Process { .. } => self.process.as_ref(),
            RuntimeConfig::Oci { .. } => self.oci.as_ref(),
        }
    }
}

#[async_trait]
impl HookRunner for DispatchRunner {
    fn name(&self) -> &'static str {
        "dispatch"
    }

    async fn run(&self, job: &RunJob) -> Result<Execution, RunFailure> {
        match self.runner_for(&job.runtime) {
            Some(runner) => runner.run(job).await,
            None => {
                let configured = self.runtime_types();
                let configured = if configured.is_empty() {
                    "none".to_string()
                } else {
                    configured.join(", ")
                };
                Err(RunFailure::new(
                    FailureKind::Config,
                    format!(
                        "no runner for `{}` releases is configured here (configured: {configured})",
                        job.runtime.type_name()
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::contract::BatchLayout;
    use crate::id::{Digest, HookName, ReleaseId};
    use crate::runner::CapturedLog;
    use crate::runtime::Limits;

    /// A fake runner that records which runtime types it was given (the dispatch
    /// decision is all that is tested here; the real runners have their own suites).
    #[derive(Debug, Default)]
    struct Recording(Mutex<Vec<&'static str>>);

    #[async_trait]
    impl HookRunner for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }
        async fn run(&self, job: &RunJob) -> Result<Execution, RunFailure> {
            self.0.lock().unwrap().push(job.runtime.type_name());
            Ok(Execution {
                duration: std::time::Duration::ZERO,
                log: CapturedLog::default(),
            })
        }
    }

    fn job(runtime: serde_json::Value) -> RunJob {
        RunJob {
            hook: HookName::new("dispatched").unwrap(),
            release_id: ReleaseId::new_random(),
            runtime: serde_json::from_value(runtime).unwrap(),
            limits: Limits::default(),
            batch: BatchLayout::at("/nonexistent"),
            max_log_bytes: 1024,
        }
    }

    fn process_job() -> RunJob {
        job(serde_json::json!({"type": "process", "command": ["true"],
                               "digest": Digest::of_bytes(b"p")}))
    }

    fn oci_job() -> RunJob {
        job(
            serde_json::json!({"type": "oci", "image": "example.org/hook",
                               "digest": Digest::of_bytes(b"o")}),
        )
    }

    #[tokio::test]
    async fn each_release_goes_to_the_runner_of_its_type() {
        let process = Arc::new(Recording::default());
        let oci = Arc::new(Recording::default());
        let runner = DispatchRunner::new()
            .with_process(process.clone())
            .with_oci(oci.clone());
        assert_eq!(runner.runtime_types(), ["process", "oci"]);
        runner.run(&process_job()).await.unwrap();
        runner.run(&oci_job()).await.unwrap();
        runner.run(&process_job()).await.unwrap();
        assert_eq!(*process.0.lock().unwrap(), ["process", "process"]);
        assert_eq!(*oci.0.lock().unwrap(), ["oci"]);
    }

    #[tokio::test]
    async fn a_type_without_a_runner_is_a_config_failure_naming_it() {
        let runner = DispatchRunner::new().with_process(Arc::new(Recording::default()));
        let failure = runner.run(&oci_job()).await.unwrap_err();
        assert_eq!(failure.kind, FailureKind::Config);
        assert!(
            failure.detail.contains("`oci` releases") && failure.detail.contains("process"),
            "{}",
            failure.detail
        );
        let empty = DispatchRunner::new().run(&process_job()).await.unwrap_err();
        assert!(
            empty.detail.contains("configured: none"),
            "{}",
            empty.detail
        );
    }
}

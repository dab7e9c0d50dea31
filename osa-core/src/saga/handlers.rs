//! The step and finalize jobs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::plan::{
    HookEnd, HookResult, Next, StepCommit, StepDecision, StepFacts, plan_finalize, plan_step,
    prior_attempts, run_goes_on, step_due,
};
use super::spool::{InputsReader, LinesWriter, RowsLine, RowsReader};
use super::{AbortOnDrop, Engine, FINALIZE_JOB, STEP_JOB};
use crate::blob::BlobKeys;
use crate::contract::{
    BatchFile, BatchLayout, BatchRecord, PreparedBatch, RECORDS_FILE, write_hook_log,
    write_run_json,
};
use crate::contract::{BatchOutcome, RecordOutcome};
use crate::feature::FeatureSpec;
use crate::feature_store::{FeatureBatch, NewFeatureRow};
use crate::hook::HookRelease;
use crate::id::{Digest, RecordId, ValidationRunId};
use crate::jobs::{ClaimedJob, JobLease};
use crate::policy::{StepExecution, execute_with_policy_after};
use crate::runner::RunJob;
use crate::validation::{
    Applied, FeatureChunks, RunProgress, RunStatus, StagedFeatures, StepProgress,
    ValidationRunStore, Verdict,
};

/// Feature rows staged ahead of a finalize, as the backend holds them.
type Staged = Box<dyn StagedFeatures>;
use crate::{Error, Result};

/// Attempts at failing the run of a dead job (100 ms apart, doubling).
const EXHAUSTED_ATTEMPTS: u32 = 5;

/// How a step job was delivered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepDelivery<'a> {
    /// The job's lease (`None` when run inline, without the queue).
    pub lease: Option<&'a JobLease>,
    /// The job's delivery (1 for the first): earlier deliveries count as retries
    /// against the failure policy's `max_retries`.
    pub attempt: u32,
    /// When set, the step's commit leases the next job to the caller for that long
    /// and returns it in [`Handled::DoneWithNext`].
    pub hand_off: Option<Duration>,
    /// How often the run's status is read while the hook runs (an end made through
    /// this engine is noticed at once).
    pub watch: Duration,
}

/// What a handler asks the worker to do with its job.
#[derive(Debug)]
pub(crate) enum Handled {
    /// The job is finished (completed inside the handler's commit or explicitly).
    Done,
    /// The job is finished, and its commit leased the run's next job to this worker.
    DoneWithNext(ClaimedJob, Box<HandOver>),
    /// Retry the job later with backoff.
    Retry {
        /// Why.
        reason: String,
    },
}

/// What a step's commit hands to the job it leased to its own worker.
#[derive(Debug)]
pub(crate) struct HandOver {
    /// The run's progress as that commit left it.
    pub progress: RunProgress,
    /// For a finalize: the earlier hooks' feature rows, staged while the last hook ran.
    pub staged: Option<Staged>,
    /// For a step: its batch, prepared while the previous step committed.
    pub prepared: Option<PreparedStep>,
    /// For a finalize: the records it accepts, when the last step knew them all.
    pub accepted: Option<Vec<Positioned>>,
}

/// What [`Engine::commit_step`] needs besides the plan: the driver's own state.
struct CommitContext<'a> {
    /// When the job was claimed (for telemetry).
    claimed_at: Instant,
    /// The batch the hook ran over (its output directory gets the log and `run.json`).
    layout: &'a BatchLayout,
    /// The hook's captured log.
    log: &'a [u8],
    /// Wall-clock time of the hook's execution.
    duration: Duration,
    /// See [`StepDelivery::hand_off`].
    hand_off: Option<Duration>,
    /// The finalize's features being staged while the last hook ran, if they are.
    staging: Option<AbortOnDrop<Result<Option<Staged>>>>,
    /// The passed records' rows.
    rows: PassedRows,
}

/// A step's batch, written and ready for its hook: prepared by the step before it
/// while that one commits (see [`HandOver`]), or by the step itself.
pub(crate) struct PreparedStep {
    run: ValidationRunId,
    step: u32,
    execution_id: uuid::Uuid,
    work: WorkDir,
    /// The batch's records with their submit positions.
    positions: Vec<Positioned>,
    /// Whether these are all the records in play (known when the step before
    /// prepared it from its own outcome).
    complete: bool,
    records: Vec<BatchRecord>,
    batch: PreparedBatch,
}

/// A record id with its submit position.
pub(crate) type Positioned = (u32, RecordId);

/// The records of a run still in play, read a page of positions at a time, handed out
/// in batches in submit order.
struct InPlay {
    run: ValidationRunId,
    /// The next position to read.
    next: u32,
    /// The run's record count.
    end: u32,
    /// Positions per read.
    page: u32,
    /// Records read but not handed out.
    buffer: std::collections::VecDeque<Positioned>,
}

impl InPlay {
    fn new(run: ValidationRunId, record_count: u32, page: usize) -> Self {
        InPlay {
            run,
            next: 0,
            end: record_count,
            page: u32::try_from(page).unwrap_or(u32::MAX).max(1),
            buffer: Default::default(),
        }
    }

    /// A run's records in play known already (handed over by the commit that left
    /// them): nothing is read.
    fn known(run: ValidationRunId, records: Vec<Positioned>) -> Self {
        InPlay {
            run,
            next: 0,
            end: 0,
            page: 1,
            buffer: records.into(),
        }
    }

    /// The next `n` records in play (fewer at the end).
    async fn next_batch(&mut self, engine: &Engine, n: usize) -> Result<Vec<Positioned>> {
        while self.buffer.len() < n && self.next < self.end {
            let page = engine
                .storage()
                .record_page(self.run, self.next, self.page)
                .await?
                .ok_or_else(|| Error::not_found("validation run", self.run))?;
            if page.is_empty() {
                break;
            }
            let from = self.next;
            self.next = from.saturating_add(page.len() as u32);
            self.buffer.extend(
                page.into_iter()
                    .enumerate()
                    .filter(|(_, v)| v.verdict == Verdict::Pending)
                    .map(|(i, v)| (from + i as u32, v.record_id)),
            );
        }
        let n = n.min(self.buffer.len());
        Ok(self.buffer.drain(..n).collect())
    }

    /// Every record still in play from here on.
    async fn rest(&mut self, engine: &Engine) -> Result<Vec<Positioned>> {
        let mut all = Vec::new();
        loop {
            let batch = self.next_batch(engine, self.page as usize).await?;
            if batch.is_empty() {
                return Ok(all);
            }
            all.extend(batch);
        }
    }
}

impl std::fmt::Debug for PreparedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedStep")
            .field("run", &self.run)
            .field("step", &self.step)
            .field("dir", &self.work.path)
            .finish_non_exhaustive()
    }
}

/// Removes a batch directory when dropped (also when the handler is cancelled).
struct WorkDir {
    path: PathBuf,
    /// Where the directory is moved before it is deleted.
    trash: PathBuf,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Deleting files can take milliseconds per file (filesystems mounted with
        // `discard`), so the directory is moved aside at once, out of the way of a
        // re-execution of the step, and deleted in the background.
        let aside = self.trash.join(uuid::Uuid::new_v4().to_string());
        let moved =
            std::fs::create_dir_all(&self.trash).and_then(|()| std::fs::rename(&self.path, &aside));
        match (moved, tokio::runtime::Handle::try_current()) {
            (Ok(()), Ok(runtime)) => {
                runtime.spawn_blocking(move || {
                    let _ = std::fs::remove_dir_all(aside);
                });
            }
            (Ok(()), Err(_)) => {
                let _ = std::fs::remove_dir_all(aside);
            }
            (Err(_), _) => {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }
}

/// Where batch directories are moved before they are deleted, under the work dir.
const TRASH_DIR: &str = ".trash";

/// The batch directory of one execution of a step, directly under the work dir (no
/// per-run parent that would be left behind empty).
fn batch_dir_name(run: ValidationRunId, step: u32, execution: uuid::Uuid) -> String {
    format!("{run}-step-{step}-{}", execution.simple())
}

/// The run a work-dir entry belongs to: a batch directory (`<run>-step-<k>-<execution>`)
/// or a run's directory of the earlier nested layout (`<run>`).
fn batch_dir_run(name: &str) -> Option<ValidationRunId> {
    let run = name.rsplit_once("-step-").map_or(name, |(run, _)| run);
    run.parse().ok()
}

impl Engine {
    /// Removes what earlier processes left in the work dir: the contents of the trash
    /// (directories moved aside but not yet deleted when their process exited), blob
    /// copies a dead process left in the spool directory, and
    /// batch directories of runs that have ended (a worker killed in the middle of a
    /// step whose run was then finished elsewhere). Directories of runs still in
    /// progress are left to the step that re-executes them, and those of runs this
    /// storage does not know (another archive sharing the directory) are left alone.
    /// Returns the number of entries removed. A worker runs this once when it starts.
    pub async fn sweep_work_dir(&self) -> Result<usize> {
        let root = self.config().work_dir.clone();
        let trash = root.join(TRASH_DIR);
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error("reading", &root, e)),
        };
        let mut doomed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(run) = name.to_str().and_then(batch_dir_run) else {
                continue;
            };
            let ended = self
                .storage()
                .run_status(run)
                .await?
                .is_some_and(|status| status.is_terminal());
            if ended {
                doomed.push(entry.path());
            }
        }
        if let Ok(entries) = std::fs::read_dir(&trash) {
            doomed.extend(entries.flatten().map(|entry| entry.path()));
        }
        // Downloaded copies of blobs left by a process that died while downloading
        // (a copy is unlinked once open, and other spool files have no name); a day
        // old, so that no download in progress is taken.
        if let Ok(entries) = std::fs::read_dir(root.join(super::SPOOL_DIR)) {
            let day_ago = std::time::SystemTime::now() - Duration::from_secs(24 * 3600);
            doomed.extend(entries.flatten().filter_map(|entry| {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|modified| modified < day_ago);
                let copy = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|name| name.starts_with(super::spool::COPY_PREFIX));
                (stale && copy).then(|| entry.path())
            }));
        }
        tokio::task::spawn_blocking(move || {
            doomed
                .iter()
                .filter(|path| {
                    std::fs::remove_dir_all(path).is_ok() || std::fs::remove_file(path).is_ok()
                })
                .count()
        })
        .await
        .map_err(|e| Error::internal(format!("sweeping the work dir: {e}")))
    }

    /// The run, its steps and the records still in play (not the settled verdicts).
    /// `known` is the progress this process's own commit left (the job was handed to
    /// this worker by its commit of the previous step, or the run was submitted here):
    /// then nothing is read, and the caller finds out otherwise whether the run has
    /// ended since (a step reads its status while preparing its batch; a finalize's
    /// commit does nothing to an ended run). `None` when the run has ended.
    async fn progress(
        &self,
        run: ValidationRunId,
        known: Option<RunProgress>,
    ) -> Result<Option<RunProgress>> {
        let progress = match known {
            // Not read here: a step reads the run's status while it prepares its
            // batch, and every commit checks the run itself.
            Some(known) if known.run.id == run => Some(known),
            _ => self
                .storage()
                .run_progress(run)
                .await?
                .ok_or_else(|| Error::not_found("validation run", run))
                .map(Some)?,
        };
        Ok(progress.filter(|p| !p.run.status.is_terminal()))
    }

    /// Resolves once `run` has ended (or does not exist): woken at once by run ends
    /// made through this engine, and reading the run's status at first and then at
    /// least every `poll` for ends made elsewhere. A transient read error is retried at
    /// the next wake-up; a permanent one is returned.
    pub(crate) async fn run_ended(&self, run: ValidationRunId, poll: Duration) -> Result<()> {
        loop {
            // Registered before the check, so an end right after it still wakes us.
            let changed = self.runs_ended().notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            match self.storage().run_status(run).await {
                Ok(Some(status)) if status.is_terminal() => return Ok(()),
                Ok(None) => return Ok(()),
                Err(e) if !e.is_transient() => return Err(e),
                _ => {}
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Ends a run and wakes whoever waits on it.
    pub(crate) async fn end(
        &self,
        run: ValidationRunId,
        status: RunStatus,
        reason: &str,
    ) -> Result<bool> {
        let ended = self.storage().end_run(run, status, reason).await?;
        if ended {
            tracing::warn!(run = %run, status = ?status, reason, "run ended");
        }
        self.forget_run(run);
        self.runs_ended().notify_waiters();
        Ok(ended)
    }

    /// Whether this caller still holds the job of `lease` (a caller without a lease,
    /// running a job inline, always does). Renews the lease briefly when it does.
    pub(crate) async fn holds(&self, lease: Option<&JobLease>) -> Result<bool> {
        match lease {
            Some(lease) => {
                self.storage()
                    .heartbeat(lease, Duration::from_secs(60))
                    .await
            }
            None => Ok(true),
        }
    }

    async fn ack(&self, lease: Option<&JobLease>) -> Result<()> {
        if let Some(lease) = lease {
            self.storage().complete(lease).await?;
        }
        Ok(())
    }

    /// Runs step `step` of `run` and commits it, as `delivery` says. `known`: see
    /// [`Engine::progress`].
    pub(crate) async fn run_step(
        &self,
        run_id: ValidationRunId,
        step: u32,
        delivery: StepDelivery<'_>,
        known: Option<RunProgress>,
        prepared: Option<PreparedStep>,
    ) -> Result<Handled> {
        let claimed_at = Instant::now();
        let StepDelivery {
            lease,
            attempt,
            hand_off,
            watch,
        } = delivery;
        // The first delivery of a run's first step starts from the progress its submit
        // committed, when the run was submitted through this engine.
        let handed_progress = known.as_ref().is_some_and(|k| k.run.id == run_id);
        let mut submitted_in_play = None;
        let known = known.or_else(|| {
            let (progress, in_play) = (attempt == 1 && step == 0)
                .then(|| self.take_submitted(run_id))
                .flatten()?;
            submitted_in_play = in_play;
            Some(progress)
        });
        // Progress this process committed is used as it is; whether the run has ended
        // since (a cancel from elsewhere) is read while the batch is prepared, so a run
        // that ended between two steps starts no further hook.
        let status = known.is_some().then(|| {
            let engine = self.clone();
            AbortOnDrop(tokio::spawn(async move {
                engine.storage().run_status(run_id).await
            }))
        });
        let view = match self.progress(run_id, known).await? {
            Some(view) if step_due(&view, step) => view,
            // Redelivered, or the run ended meanwhile.
            _ => {
                self.ack(lease).await?;
                return Ok(Handled::Done);
            }
        };
        let snapshot = view
            .run
            .steps
            .get(step as usize)
            .cloned()
            .ok_or_else(|| Error::internal(format!("run {run_id} has no step {step}")))?;
        let release = self.release(snapshot.release_id).await?;
        let spec = self.contract(&snapshot.hook).await?;

        // The hook runs over the records in play one batch of at most
        // `batch_limits.max_records` after the other, read a page at a time; the step
        // commits once, after the last.
        let in_play = view.in_play as usize;
        let per_batch = self.batch_size();
        let batches = in_play.div_ceil(per_batch).max(1);
        // A batch the step before prepared from its own outcome, holding every record
        // in play of the progress it committed, needs no read.
        let handed = prepared.as_ref().is_some_and(|p| {
            p.run == run_id && p.step == step && p.complete && p.positions.len() == in_play
        }) && handed_progress;
        let mut cursor = match (&prepared, handed, submitted_in_play) {
            (Some(p), true, _) => InPlay::known(run_id, p.positions.clone()),
            // The records of a submit made here, which kept them.
            (_, _, Some(records)) if records.len() == in_play => InPlay::known(run_id, records),
            _ => InPlay::new(run_id, view.run.record_count, per_batch),
        };
        let first = cursor.next_batch(self, per_batch).await?;
        let mut inputs = None;
        // `work` removes the batch directory when the step ends, however it ends.
        let mut current = match prepared {
            Some(prepared)
                if prepared.run == run_id
                    && prepared.step == step
                    && prepared.positions == first =>
            {
                prepared
            }
            _ => {
                let reader = inputs.insert(self.inputs(run_id).await?);
                self.prepare_step(run_id, step, first, reader, &release)
                    .await?
            }
        };
        let execution_id = current.execution_id;
        if let Some(status) = status {
            let status = status
                .join()
                .await
                .map_err(|e| Error::internal(format!("reading the run's status: {e}")))??;
            if !run_goes_on(status) {
                self.ack(lease).await?;
                return Ok(Handled::Done);
            }
        }
        let last = step as usize + 1 >= view.run.steps.len();
        // The last hook's run is spent writing, in a transaction the finalize commits,
        // the earlier hooks' rows of the records still in play, when this worker will
        // run the finalize itself and they fit one batch. Nothing of it is visible
        // before that commit.
        let staging = (last
            && step > 0
            && hand_off.is_some()
            && in_play > 0
            && batches == 1
            && self.config().stage_features
            && self.storage().feature_staging().is_some())
        .then(|| {
            let engine = self.clone();
            let steps = view.steps[..step as usize].to_vec();
            let records = current.positions.clone();
            AbortOnDrop(tokio::spawn(async move {
                let batches = engine.feature_batches(run_id, &steps, &records).await?;
                match engine.storage().feature_staging() {
                    Some(staging) => staging.stage_features(batches).await,
                    None => Ok(None),
                }
            }))
        });
        let started_at = Utc::now();
        // One batch: the digest of its `records.jsonl`; several: of their concatenation.
        let mut input_sha256 = (batches > 1).then(sha2::Sha256::default);
        let mut execution: Option<StepExecution> = None;
        let mut rows = PassedRows::new(&self.spool_dir()?, per_batch)?;
        let mut done = 0;
        let output_limits = self.config().output_limits;
        let execution = loop {
            let batch = done / per_batch + 1;
            if let Some(hasher) = &mut input_sha256 {
                hash_file(hasher, &current.batch.layout.input.join(RECORDS_FILE))?;
            }
            let run_job = RunJob {
                hook: snapshot.hook.clone(),
                release_id: release.id,
                runtime: release.runtime.clone(),
                limits: release.runtime.limits(),
                batch: current.batch.layout.clone(),
                max_log_bytes: output_limits.max_log_bytes,
            };
            let Some(mut this) = self
                .run_hook(
                    run_id,
                    watch,
                    attempt,
                    &run_job,
                    &current.batch,
                    &current.records,
                    &spec,
                )
                .await
            else {
                break None;
            };
            // The passed records' rows go to the step's rows blob at once.
            rows.take(&current.positions, &mut this.outcome)?;
            done += current.positions.len();
            let succeeded = this.succeeded();
            let label = format!(
                "batch {batch} of {batches} (records {} to {})",
                done - current.positions.len() + 1,
                done
            );
            let merged = match execution.take() {
                None if batches == 1 => this,
                None => {
                    let mut first = this;
                    let log = std::mem::take(&mut first.log.bytes);
                    let mut merged = StepExecution {
                        log: Default::default(),
                        ..first
                    };
                    merged.log.bytes = format!("[osa] {label}\n").into_bytes();
                    merged.log.bytes.extend_from_slice(&log);
                    merged
                }
                Some(mut merged) => {
                    merged.append(this, &label, &output_limits);
                    merged
                }
            };
            let next = if succeeded {
                cursor.next_batch(self, per_batch).await?
            } else {
                Vec::new()
            };
            if next.is_empty() {
                let mut merged = merged;
                if !succeeded {
                    // Records of the batches not run have no outcome.
                    merged
                        .outcome
                        .missing
                        .extend(cursor.rest(self).await?.into_iter().map(|(_, id)| id));
                }
                break Some(merged);
            }
            execution = Some(merged);
            let reader = match &mut inputs {
                Some(reader) => reader,
                None => inputs.insert(self.inputs(run_id).await?),
            };
            current = self
                .prepare_step(run_id, step, next, reader, &release)
                .await?;
        };
        let finished_at = Utc::now();
        let passed = rows.passed();
        let (hook, log, duration) = split_execution(execution, passed);
        let input_sha256 = match input_sha256 {
            Some(hasher) => Digest::from_hasher(hasher),
            None => current.batch.input_sha256.clone(),
        };
        let decision = plan_step(StepFacts {
            progress: view,
            step,
            release_id: release.id,
            execution_id,
            input_sha256,
            started_at,
            finished_at,
            completes: lease.cloned(),
            max_attempts: self.config().max_attempts,
            hook,
        })?;
        let commit = match decision {
            StepDecision::Commit(commit) => commit,
            StepDecision::Skip => {
                tracing::info!(hook = %snapshot.hook, "the run ended while its hook ran; the hook was stopped");
                self.ack(lease).await?;
                return Ok(Handled::Done);
            }
            StepDecision::FailRun { reason } => {
                tracing::warn!(hook = %snapshot.hook, reason = %reason, "the hook cannot run; the run fails");
                // Only the holder of the job ends the run: after a lost lease, another
                // worker may have taken the step over.
                if self.holds(lease).await? {
                    self.end(run_id, RunStatus::Failed, &reason).await?;
                    self.ack(lease).await?;
                }
                return Ok(Handled::Done);
            }
            StepDecision::Retry { reason } => {
                tracing::info!(hook = %snapshot.hook, reason = %reason, "the hook's run will be retried");
                return Ok(Handled::Retry { reason });
            }
        };
        self.commit_step(
            *commit,
            CommitContext {
                claimed_at,
                layout: &current.batch.layout,
                rows,
                log: &log,
                duration,
                hand_off,
                staging,
            },
        )
        .await
    }

    /// Runs a step's hook over its batch under the failure policy (a delivery's
    /// `attempt` counts against its retries). `None` when the run ended meanwhile and
    /// the hook was stopped.
    #[allow(clippy::too_many_arguments)]
    async fn run_hook(
        &self,
        run_id: ValidationRunId,
        watch: Duration,
        attempt: u32,
        run_job: &RunJob,
        prepared: &PreparedBatch,
        records: &[BatchRecord],
        spec: &FeatureSpec,
    ) -> Option<StepExecution> {
        let execute = execute_with_policy_after(
            prior_attempts(attempt),
            self.runner(),
            run_job,
            prepared,
            records,
            spec,
            &self.config().policy,
            &self.config().output_limits,
        );
        // A run that ends while its hook runs (a cancel, here or in another process:
        // noticed at once in this process, else within `watch`) stops the hook:
        // dropping the execution kills it, and nothing of the step is committed. Only
        // the execution is raced; the commit is never cut short. The status is read
        // once more as the hook starts (while it runs, off the step's critical path),
        // so a cancel during the batch's preparation is not left to `watch`.
        let ended = async {
            if self.run_ended(run_id, watch).await.is_err() {
                // Without a readable status the hook runs on; the commit checks the run.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            execution = execute => Some(execution),
            () = ended => None,
        }
    }

    /// Carries out a step's [`StepCommit`]: stores the hook's log and outputs, starts
    /// what the next job of this worker can do ahead (its batch, or the finalize's
    /// staged features), commits the plan, and hands the next job over.
    async fn commit_step(&self, commit: StepCommit, context: CommitContext<'_>) -> Result<Handled> {
        let CommitContext {
            claimed_at,
            layout,
            log,
            duration,
            hand_off,
            staging,
            rows,
        } = context;
        let storage = self.storage();
        let run_id = commit.plan.run_id;
        let step = commit.plan.step;
        let hook = commit.hook().clone();
        if let Some(key) = &commit.log_key {
            let max_log_bytes = self.config().output_limits.max_log_bytes;
            let _ = write_hook_log(&layout.output, log, max_log_bytes);
            let capped = crate::contract::cap_log(log, max_log_bytes);
            self.blobs().put(key, capped).await?;
        }
        let _ = write_run_json(
            &layout.output,
            commit.plan.hook_run.id,
            commit.plan.hook_run.release_id,
        );
        // The last hook has settled its records, so the finalize's replaces are known:
        // their locks and deletes go into the staged transaction while this step
        // commits. A run that accepts nothing publishes nothing staged.
        // (Staging is only done when every record fits one batch: `rows.first()` is
        // every passed record.)
        let staging = staging.map(|staging| {
            let accepted = commit.after.in_play > 0;
            let targets = if accepted {
                let records: Vec<RecordId> =
                    rows.first().iter().map(|(_, id)| id.clone()).collect();
                commit.staged_replaces(&records)
            } else {
                Vec::new()
            };
            AbortOnDrop(tokio::spawn(async move {
                let staged = staging
                    .join()
                    .await
                    .map_err(|e| Error::internal(format!("staging features: {e}")))??;
                match staged {
                    Some(mut staged) if accepted => {
                        staged.replace(targets).await?;
                        Ok(Some(staged))
                    }
                    _ => Ok::<_, Error>(None),
                }
            }))
        });
        // When this worker will run the next step, its batch is written while this one
        // commits.
        let next_batch = match (hand_off, commit.next) {
            (Some(_), Next::Step(next)) => {
                let engine = self.clone();
                // The next step's records in play are this one's passed records.
                let next_in_play = rows.first().to_vec();
                let complete = rows.complete();
                let release_id = commit.after.run.steps[next as usize].release_id;
                Some(AbortOnDrop(tokio::spawn(async move {
                    let release = engine.release(release_id).await?;
                    let mut inputs = engine.inputs(run_id).await?;
                    let mut prepared = engine
                        .prepare_step(run_id, next, next_in_play, &mut inputs, &release)
                        .await?;
                    prepared.complete = complete;
                    Ok::<_, Error>(prepared)
                })))
            }
            _ => None,
        };
        // The finalize's accepted records, when this step's passed records are all
        // known.
        let accepted =
            (commit.next == Next::Finalize && rows.complete()).then(|| rows.first().to_vec());
        let stored_rows = rows.upload(self.blobs(), &commit.outputs_key).await?;

        let StepCommit { plan, after, .. } = commit;
        let next = match (hand_off, storage.step_hand_off()) {
            (Some(lease_for), Some(hand_off)) => {
                hand_off.apply_step_claiming_next(&plan, lease_for).await?
            }
            _ => (storage.apply_step(&plan).await?, None),
        };
        if next.0 == Applied::Applied {
            let counts = plan.hook_run.counts;
            tracing::info!(
                hook = %hook,
                status = ?plan.status,
                passed = counts.passed,
                rejected = counts.rejected,
                errored = counts.errored,
                hook_ms = duration.as_millis() as u64,
                "step committed"
            );
            crate::telemetry::step_committed(
                hook.as_str(),
                &crate::telemetry::label(&plan.status),
                claimed_at.elapsed(),
                duration,
                plan.hook_run.oom_retries,
            );
            // These rows are the committed step's: its finalize may use them from memory.
            if let Some(stored_rows) = stored_rows {
                self.remember_step_rows(run_id, step, stored_rows);
            }
        }
        match next {
            (_, Some(job)) => {
                let finalize_next = job.kind == FINALIZE_JOB;
                let staged = match staging {
                    Some(staging) if job.kind == FINALIZE_JOB => match staging.join().await {
                        Ok(Ok(staged)) => staged,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "staging features failed; the finalize writes them");
                            None
                        }
                        Err(_) => None,
                    },
                    _ => None,
                };
                let prepared = match next_batch {
                    Some(next_batch) if job.kind == STEP_JOB => match next_batch.join().await {
                        Ok(Ok(prepared)) => Some(prepared),
                        // The step prepares its batch itself and reports what fails.
                        Ok(Err(_)) | Err(_) => None,
                    },
                    _ => None,
                };
                Ok(Handled::DoneWithNext(
                    job,
                    Box::new(HandOver {
                        progress: after,
                        staged,
                        prepared,
                        accepted: accepted.filter(|_| finalize_next),
                    }),
                ))
            }
            (_, None) => {
                // Enqueued for any worker: wake the idle ones in this process.
                self.jobs_enqueued().notify_waiters();
                Ok(Handled::Done)
            }
        }
    }

    /// Publishes the accepted records' features and ends the run. `known`: see
    /// [`Engine::progress`].
    /// `staged`: rows written ahead of it (see [`HandOver`]).
    pub(crate) async fn finalize(
        &self,
        run_id: ValidationRunId,
        lease: Option<&JobLease>,
        known: Option<RunProgress>,
        staged: Option<Staged>,
        accepted: Option<Vec<Positioned>>,
    ) -> Result<Handled> {
        let handed = known.as_ref().is_some_and(|k| k.run.id == run_id);
        let Some(view) = self.progress(run_id, known).await? else {
            self.ack(lease).await?;
            return Ok(Handled::Done);
        };
        let runs: &dyn ValidationRunStore = self.storage();
        // Handed over by the last step's commit, which knew them all: nothing is read.
        let mut accepted = match accepted {
            Some(records) if handed && records.len() == view.in_play as usize => {
                InPlay::known(run_id, records)
            }
            _ => InPlay::new(run_id, view.run.record_count, self.batch_size()),
        };
        let mut plan = plan_finalize(view.clone(), Vec::new(), lease.cloned());
        let applied = match staged {
            // Staged only when every record fits one batch: the plan lists them all.
            Some(staged) => {
                let records = accepted.rest(self).await?;
                plan.features = self.feature_batches(run_id, &view.steps, &records).await?;
                staged.finalize(&plan).await?
            }
            // The accepted records' rows are read and written a batch at a time, in the
            // finalize's transaction.
            None => {
                let mut chunks = FinalizeChunks {
                    engine: self,
                    run: run_id,
                    steps: &view.steps,
                    accepted,
                    readers: Vec::new(),
                };
                runs.apply_finalize_streaming(&plan, &mut chunks).await?
            }
        };
        if applied == Applied::Applied {
            tracing::info!(status = ?plan.status, accepted = plan.accepted, "run finished");
            crate::telemetry::run_finished(&crate::telemetry::label(&plan.status));
        }
        self.forget_run(run_id);
        self.runs_ended().notify_waiters();
        Ok(Handled::Done)
    }

    /// Most records the hook of a step gets in one batch.
    fn batch_size(&self) -> usize {
        self.config().batch_limits.max_records.max(1)
    }

    /// Writes the batch of `step` for `in_play` (in submit order), reading their
    /// stored inputs from `inputs`: its own directory (another execution of the same
    /// step never touches it), the records with their files, the layout.
    async fn prepare_step(
        &self,
        run_id: ValidationRunId,
        step: u32,
        in_play: Vec<Positioned>,
        inputs: &mut InputsReader,
        release: &HookRelease,
    ) -> Result<PreparedStep> {
        // This execution's own batch directory, outputs and log: another execution of
        // the same step (after a lease expired) never touches them.
        let execution_id = uuid::Uuid::new_v4();
        let work = WorkDir {
            path: self
                .config()
                .work_dir
                .join(batch_dir_name(run_id, step, execution_id)),
            trash: self.config().work_dir.join(TRASH_DIR),
        };
        let staging = work.path.join("staging");
        let mut records = Vec::with_capacity(in_play.len());
        for (position, id) in &in_play {
            let input = inputs.record_at(*position, id)?;
            let position = *position as usize;
            let mut files = Vec::with_capacity(input.files.len());
            for file in &input.files {
                // The key a submit stores for this file; a stored key is never used as
                // given (read back as text, it would need parsing, and a changed row
                // could point anywhere in the store).
                let key = BlobKeys::run_file(run_id, position, &file.name);
                if key.as_ref() != file.key {
                    return Err(Error::internal(format!(
                        "record {id}: stored file key `{}` is not the run's key for `{}`",
                        file.key, file.name
                    )));
                }
                if let Some(path) = self.blobs().local_file(&key) {
                    // A local blob is copied into the batch straight from its file.
                    files.push(BatchFile {
                        name: file.name.clone(),
                        source: path,
                    });
                    continue;
                }
                let dir = staging.join(position.to_string());
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| io_error("creating", &dir, e))?;
                let path = dir.join(file.name.as_str());
                // Streamed: a record file may be larger than the memory to spare.
                self.blobs().get_to_file(&key, &path).await?;
                files.push(BatchFile {
                    name: file.name.clone(),
                    source: path,
                });
            }
            records.push(BatchRecord {
                id: input.id,
                metadata: input.metadata,
                files,
            });
        }
        let batch = BatchLayout::prepare(
            work.path.join("batch"),
            &records,
            release.runtime.config(),
            &self.config().batch_limits,
        )?;
        Ok(PreparedStep {
            run: run_id,
            step,
            execution_id,
            work,
            positions: in_play,
            complete: false,
            records,
            batch,
        })
    }

    /// The feature rows of `records` (in submit order) from each committed step of
    /// `steps`, one batch per hook run (what a finalize publishes for its accepted
    /// records).
    async fn feature_batches(
        &self,
        run_id: ValidationRunId,
        steps: &[StepProgress],
        records: &[Positioned],
    ) -> Result<Vec<FeatureBatch>> {
        let mut readers = Vec::new();
        self.feature_batches_with(run_id, steps, records, &mut readers)
            .await
    }

    /// [`feature_batches`](Self::feature_batches) reading on with `readers` (one per
    /// committed step, opened as needed), for successive batches of a run's records.
    async fn feature_batches_with(
        &self,
        run_id: ValidationRunId,
        steps: &[StepProgress],
        records: &[Positioned],
        readers: &mut Vec<RowsReader>,
    ) -> Result<Vec<FeatureBatch>> {
        let mut features = Vec::new();
        if records.is_empty() {
            return Ok(features);
        }
        let ran: Vec<_> = steps
            .iter()
            .filter_map(|p| p.hook_run_id.map(|id| (p, id)))
            .collect();
        for (n, (progress, hook_run_id)) in ran.into_iter().enumerate() {
            let index = progress.release.index;
            if readers.len() <= n {
                let outputs_ref = progress.outputs_ref.as_deref().ok_or_else(|| {
                    Error::internal(format!("step {index} of run {run_id} committed no outputs"))
                })?;
                readers.push(self.step_rows(run_id, index, outputs_ref).await?);
            }
            let reader = &mut readers[n];
            let spec = self.contract(&progress.release.hook).await?;
            let mut batch_rows = Vec::new();
            for (position, record) in records {
                let rows = reader.rows_at(*position, record)?;
                for (row_index, values) in rows.iter().enumerate() {
                    let values = spec.coerce_values(values).map_err(|e| {
                        Error::internal(format!("stored step output no longer validates: {e}"))
                    })?;
                    batch_rows.push(NewFeatureRow {
                        record_id: record.clone(),
                        row_index: row_index as u32,
                        values,
                    });
                }
            }
            features.push(FeatureBatch {
                hook: progress.release.hook.clone(),
                run_id: hook_run_id,
                validation_run_id: Some(run_id),
                records: records.iter().map(|(_, id)| id.clone()).collect(),
                rows: batch_rows,
            });
        }
        Ok(features)
    }

    /// A job ran out of attempts: the run fails with the last error.
    pub(crate) async fn exhausted(
        &self,
        run_id: ValidationRunId,
        kind: &str,
        step: u32,
        error: &str,
    ) -> Result<()> {
        let what = if kind == STEP_JOB {
            format!("step {step}")
        } else {
            "finalize".to_string()
        };
        let reason = format!("{what} gave up after its last attempt: {error}");
        // The job is dead already: nothing would redeliver it, so a transient failure
        // here would leave the run in progress forever. Try a few times.
        let mut delay = Duration::from_millis(100);
        for _ in 0..EXHAUSTED_ATTEMPTS - 1 {
            match self.end(run_id, RunStatus::Failed, &reason).await {
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "failing the run of a dead job failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other.map(drop),
            }
        }
        self.end(run_id, RunStatus::Failed, &reason).await.map(drop)
    }
}

/// How a hook's execution ended, for the planner, and what the driver keeps of it:
/// the captured log and the execution's duration.
fn split_execution(execution: Option<StepExecution>, passed: u32) -> (HookEnd, Vec<u8>, Duration) {
    match execution {
        Some(StepExecution {
            outcome,
            output_error,
            log,
            failure,
            decision,
            duration,
            oom_retries,
            ..
        }) => {
            let result = HookResult {
                passed,
                outcome,
                decision,
                failed: failure.is_some(),
                output_error: output_error.map(|e| e.to_string()),
                duration,
                oom_retries,
            };
            (HookEnd::Finished(Box::new(result)), log.bytes, duration)
        }
        None => (HookEnd::RunEnded, Vec::new(), Duration::ZERO),
    }
}

/// The rows of a step's passed records, written to the spool of its rows blob as each
/// batch's outcomes come in, and the first records that passed (the next step's first
/// batch).
pub(crate) struct PassedRows {
    writer: LinesWriter,
    passed: u32,
    first: Vec<Positioned>,
    keep: usize,
    /// The lines written, while there are at most [`super::CACHED_RECORDS`].
    lines: Option<Vec<RowsLine>>,
}

impl PassedRows {
    /// Rows spooled in `dir`, keeping the first `keep` passed records.
    fn new(dir: &std::path::Path, keep: usize) -> Result<Self> {
        Ok(PassedRows {
            writer: LinesWriter::create(dir)?,
            passed: 0,
            first: Vec::new(),
            keep,
            lines: Some(Vec::new()),
        })
    }

    /// Moves the passed records of a batch (`positions`, in batch order) out of
    /// `outcome`, their rows into the spool.
    fn take(&mut self, positions: &[Positioned], outcome: &mut BatchOutcome) -> Result<()> {
        for line in take_passed(positions, outcome) {
            self.writer.push(&line)?;
            self.passed += 1;
            if self.first.len() < self.keep {
                self.first.push((line.p, line.id.clone()));
            }
            if self.passed as usize > super::CACHED_RECORDS {
                self.lines = None;
            }
            if let Some(lines) = &mut self.lines {
                lines.push(line);
            }
        }
        Ok(())
    }

    /// How many records passed.
    fn passed(&self) -> u32 {
        self.passed
    }

    /// The first records that passed, at most `keep`.
    fn first(&self) -> &[Positioned] {
        &self.first
    }

    /// Whether [`first`](Self::first) is every record that passed.
    fn complete(&self) -> bool {
        self.first.len() == self.passed as usize
    }

    /// Stores the rows at `key`; returns them when few enough to keep in memory.
    async fn upload(
        self,
        blobs: &crate::blob::Blobs,
        key: &object_store::path::Path,
    ) -> Result<Option<Vec<RowsLine>>> {
        self.writer.upload(blobs, key).await?;
        Ok(self.lines)
    }
}

/// Takes the passed records of a batch (`positions`, in batch order) out of `outcome`:
/// one rows line each, in batch order, with the rows as JSON values.
pub(crate) fn take_passed(positions: &[Positioned], outcome: &mut BatchOutcome) -> Vec<RowsLine> {
    let mut lines = Vec::new();
    for (position, id) in positions {
        if !matches!(outcome.outcomes.get(id), Some(RecordOutcome::Passed { .. })) {
            continue;
        }
        let Some(RecordOutcome::Passed { rows }) = outcome.outcomes.remove(id) else {
            continue;
        };
        let rows = rows
            .iter()
            .map(|row| row.iter().map(|v| v.to_json()).collect())
            .collect();
        lines.push(RowsLine {
            p: *position,
            id: id.clone(),
            rows,
        });
    }
    lines
}

/// The accepted records' feature batches of a finalize, a batch of records at a time.
struct FinalizeChunks<'a> {
    engine: &'a Engine,
    run: ValidationRunId,
    steps: &'a [StepProgress],
    accepted: InPlay,
    readers: Vec<RowsReader>,
}

#[async_trait::async_trait]
impl FeatureChunks for FinalizeChunks<'_> {
    async fn next_chunk(&mut self) -> Result<Option<Vec<FeatureBatch>>> {
        let records = self
            .accepted
            .next_batch(self.engine, self.engine.batch_size())
            .await?;
        if records.is_empty() {
            return Ok(None);
        }
        self.engine
            .feature_batches_with(self.run, self.steps, &records, &mut self.readers)
            .await
            .map(Some)
    }
}

/// Feeds the file at `path` to `hasher`.
fn hash_file(hasher: &mut sha2::Sha256, path: &std::path::Path) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error("reading", path, e))?;
    std::io::copy(&mut file, hasher).map_err(|e| io_error("reading", path, e))?;
    Ok(())
}

fn io_error(action: &'static str, path: &std::path::Path, e: std::io::Error) -> Error {
    Error::Unavailable {
        what: "work directory",
        detail: format!("{action} {}: {e}", path.display()),
        source: Some(Box::new(e)),
    }
}

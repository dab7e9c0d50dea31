//! Validation runs (sagas): their state, the plans that advance them, and the ports.

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::feature_store::FeatureBatch;
use crate::hook::{HookRun, OutcomeCounts};
use crate::id::{
    ConventionSlug, FileName, HookName, HookRunId, RecordId, ReleaseId, ValidationRunId,
};
use crate::jobs::{ClaimedJob, JobLease, NewJob};

/// The state of a validation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RunStatus {
    /// Created, no step finished.
    Pending,
    /// At least one step finished.
    Running,
    /// Every step ran; at least one record was accepted, or there were no hooks.
    Completed,
    /// Every record was rejected by a hook.
    Rejected,
    /// No record was accepted and at least one errored, or the run was aborted
    /// (environment failure, exhausted retries).
    Failed,
    /// Cancelled by a caller.
    Cancelled,
}

impl RunStatus {
    /// Whether the run can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Rejected | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// The release a step runs, fixed when the run is submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepRelease {
    /// Step index (0-based).
    pub index: u32,
    /// The hook.
    pub hook: HookName,
    /// The release snapshotted at submit time.
    pub release_id: ReleaseId,
    /// Its version (for display).
    pub version: u32,
}

/// A validation run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ValidationRun {
    /// Run id.
    pub id: ValidationRunId,
    /// The convention validated against.
    pub convention: ConventionSlug,
    /// Current state.
    pub status: RunStatus,
    /// Index of the next step to commit (`steps.len()` when all are done).
    pub current_step: u32,
    /// The release of every step.
    pub steps: Vec<StepRelease>,
    /// Number of records submitted.
    pub record_count: u32,
    /// Why the run failed, when it did.
    pub failure: Option<String>,
    /// Submit time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The status of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StepStatus {
    /// Not run yet.
    Pending,
    /// Every record in play passed.
    Passed,
    /// Some records were rejected.
    Failed,
    /// The execution failed or some records errored.
    Error,
    /// Not run: no record was left in play.
    Skipped,
}

/// Progress of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepProgress {
    /// The step's release.
    pub release: StepRelease,
    /// Its status.
    pub status: StepStatus,
    /// The hook run that committed it.
    pub hook_run_id: Option<HookRunId>,
    /// Outcome counts.
    pub counts: OutcomeCounts,
    /// Execution start.
    pub started_at: Option<DateTime<Utc>>,
    /// Commit time.
    pub finished_at: Option<DateTime<Utc>>,
    /// Where the committed execution stored its validated rows (a blob key; internal,
    /// never serialised).
    #[serde(skip)]
    pub outputs_ref: Option<String>,
}

impl StepProgress {
    /// A step that has not committed yet.
    pub fn pending(release: StepRelease) -> Self {
        StepProgress {
            release,
            status: StepStatus::Pending,
            hook_run_id: None,
            counts: OutcomeCounts::default(),
            started_at: None,
            finished_at: None,
            outputs_ref: None,
        }
    }
}

/// Where a record stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "verdict", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Verdict {
    /// Still being validated.
    Pending,
    /// Passed every hook; its features are stored.
    Accepted,
    /// Rejected by a hook.
    Rejected {
        /// The step.
        step: u32,
        /// The hook.
        hook: HookName,
        /// The hook's reason.
        reason: String,
    },
    /// Errored in a hook.
    Errored {
        /// The step.
        step: u32,
        /// The hook.
        hook: HookName,
        /// What went wrong.
        error: String,
    },
}

impl Verdict {
    /// The verdict's name as serialized (`pending`, `accepted`, `rejected`, `errored`).
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Pending => "pending",
            Verdict::Accepted => "accepted",
            Verdict::Rejected { .. } => "rejected",
            Verdict::Errored { .. } => "errored",
        }
    }
}

/// The verdict of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecordVerdict {
    /// The record.
    pub record_id: RecordId,
    /// Its verdict.
    pub verdict: Verdict,
}

/// A record's file at submit time. Unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum FileSource {
    /// A local path, copied into the object store at submit.
    Local {
        /// The path.
        path: PathBuf,
    },
    /// An object-store key already holding the file.
    Object {
        /// The key.
        key: String,
    },
}

/// A file of a submitted record. Unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// Name under the record's directory.
    pub name: FileName,
    /// Where it is.
    pub source: FileSource,
}

/// A record submitted for validation. Unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputRecord {
    /// Record id.
    pub id: RecordId,
    /// Metadata (a JSON object).
    pub metadata: serde_json::Value,
    /// Files.
    #[serde(default)]
    pub files: Vec<InputFile>,
}

/// Everything written when a run is submitted, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitPlan {
    /// The run (status pending, or completed when there are no hooks).
    pub run: ValidationRun,
    /// The records, in submit order (each appears once).
    pub records: Vec<RecordId>,
    /// Object-store key of the stored inputs.
    pub inputs_ref: String,
    /// The first job (step 0 or, without hooks, none).
    pub first_job: Option<NewJob>,
    /// Events to persist.
    pub events: Vec<RunEventKind>,
}

/// The commit of one step, applied in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    /// The run.
    pub run_id: ValidationRunId,
    /// The step (must equal the run's `current_step`, else the plan is a no-op).
    pub step: u32,
    /// Provenance of the execution (insert-once).
    pub hook_run: HookRun,
    /// Step status.
    pub status: StepStatus,
    /// Verdicts of records rejected or errored in this step.
    pub verdicts: Vec<RecordVerdict>,
    /// Object-store key of the step's outputs (features are inserted at finalize).
    pub outputs_ref: String,
    /// The next job (next step or finalize).
    pub next_job: NewJob,
    /// The job being completed with this commit, when run by a worker.
    pub completes: Option<JobLease>,
    /// Events to persist.
    pub events: Vec<RunEventKind>,
}

/// The end of a run, applied in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalizePlan {
    /// The run.
    pub run_id: ValidationRunId,
    /// Final status.
    pub status: RunStatus,
    /// Why the run failed, when `status` is `failed` (stored as the run's `failure`).
    pub failure: Option<String>,
    /// How many records are accepted (passed every hook): exactly the run's records
    /// without a settled verdict. Stores need not record them: once a run is
    /// `completed`, a record without a rejected or errored verdict is accepted.
    pub accepted: u32,
    /// Features of accepted records, per hook, stamped with each hook's run id (with
    /// [`ValidationRunStore::apply_finalize_streaming`], followed by the chunks of its
    /// source).
    pub features: Vec<FeatureBatch>,
    /// The job being completed with this commit.
    pub completes: Option<JobLease>,
    /// Events to persist.
    pub events: Vec<RunEventKind>,
}

/// Record ids a submit stores after those of its plan, pulled one chunk at a time
/// inside its transaction (see [`ValidationRunStore::create_run_streaming`]).
#[async_trait]
pub trait RecordChunks: Send {
    /// The next chunk of ids, in submit order, or `None` after the last.
    async fn next_chunk(&mut self) -> Result<Option<Vec<RecordId>>>;
}

/// Feature batches a finalize writes after those of its plan, pulled one chunk at a
/// time inside its transaction, so that a run's rows never need to be in memory at
/// once (see [`ValidationRunStore::apply_finalize_streaming`]).
#[async_trait]
pub trait FeatureChunks: Send {
    /// The next chunk: batches (one per hook run) of records no earlier chunk had, or
    /// `None` after the last.
    async fn next_chunk(&mut self) -> Result<Option<Vec<FeatureBatch>>>;
}

/// Whether a plan changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The plan was applied.
    Applied,
    /// The plan's step was already committed (redelivery): nothing changed.
    AlreadyApplied,
}

/// What happened in a run, persisted and streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunEventKind {
    /// The run was created.
    Submitted {
        /// Records submitted.
        records: u32,
        /// Steps planned.
        steps: u32,
    },
    /// A step started executing.
    StepStarted {
        /// Step index.
        step: u32,
        /// Hook.
        hook: HookName,
        /// Records fed.
        records: u32,
    },
    /// A hook wrote a progress line.
    HookProgress {
        /// Step index.
        step: u32,
        /// Progress step label.
        label: Option<String>,
        /// Progress status.
        status: String,
        /// Message.
        message: Option<String>,
    },
    /// A step attempt failed and will be retried.
    StepRetrying {
        /// Step index.
        step: u32,
        /// Why.
        reason: String,
    },
    /// A step committed.
    StepFinished {
        /// Step index.
        step: u32,
        /// Hook.
        hook: HookName,
        /// Status.
        status: StepStatus,
        /// Counts.
        counts: OutcomeCounts,
    },
    /// The run reached a terminal state.
    Finished {
        /// Final status.
        status: RunStatus,
        /// Records accepted.
        accepted: u32,
        /// Failure reason.
        reason: Option<String>,
    },
}

/// A persisted run event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunEvent {
    /// Sequence number within the run, from 1.
    pub seq: u64,
    /// When it was persisted.
    pub at: DateTime<Utc>,
    /// What happened.
    #[serde(flatten)]
    pub kind: RunEventKind,
}

/// A run with its steps and every verdict, as readable at any moment (one snapshot).
///
/// It holds one verdict per record of the run, however many that is: a view of a
/// large run is read a page at a time instead, with [`ValidationService::summary`]
/// and [`ValidationService::records`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ValidationRunView {
    /// The run.
    pub run: ValidationRun,
    /// Per-step progress, in order.
    pub steps: Vec<StepProgress>,
    /// Per-record verdicts, in submit order.
    pub verdicts: Vec<RecordVerdict>,
}

/// The most verdicts one page of a run's records holds
/// ([`ValidationService::records`], [`ValidationService::summary`]).
pub const MAX_RECORD_PAGE: u32 = 10_000;

/// How many records of a run have each verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct VerdictCounts {
    /// Records still being validated.
    pub pending: u32,
    /// Records that passed every hook (only once the run is `completed`).
    pub accepted: u32,
    /// Records rejected by a hook.
    pub rejected: u32,
    /// Records that errored in a hook.
    pub errored: u32,
}

impl VerdictCounts {
    /// Every record counted.
    pub fn total(&self) -> u32 {
        self.pending + self.accepted + self.rejected + self.errored
    }

    /// The counts of a run's verdicts from its progress: the rejected and errored
    /// records its committed steps counted, and the records in play, which are
    /// accepted once the run is `completed` and pending before (as a view lists them).
    pub fn of_progress(progress: &RunProgress) -> Self {
        let (rejected, errored) = progress.steps.iter().fold((0u32, 0u32), |(r, e), step| {
            (
                r.saturating_add(step.counts.rejected),
                e.saturating_add(step.counts.errored),
            )
        });
        let unsettled = progress.in_play;
        let completed = progress.run.status == RunStatus::Completed;
        VerdictCounts {
            pending: if completed { 0 } else { unsettled },
            accepted: if completed { unsettled } else { 0 },
            rejected,
            errored,
        }
    }

    /// The counts of a list of verdicts.
    pub fn of_verdicts<'a>(verdicts: impl IntoIterator<Item = &'a RecordVerdict>) -> Self {
        let mut counts = VerdictCounts::default();
        for v in verdicts {
            match v.verdict {
                Verdict::Pending => counts.pending += 1,
                Verdict::Accepted => counts.accepted += 1,
                Verdict::Rejected { .. } => counts.rejected += 1,
                Verdict::Errored { .. } => counts.errored += 1,
            }
        }
        counts
    }
}

/// One page of a run's verdicts, in submit order ([`ValidationService::records`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct RecordPage {
    /// The records of the page with their verdicts.
    pub records: Vec<RecordVerdict>,
    /// The submit position of the next page's first record (`from` of the next
    /// request); `None` after the run's last record.
    pub next: Option<u32>,
}

/// A run, its steps, how many records have each verdict, and the first page of its
/// verdicts ([`ValidationService::summary`]): a bounded [`ValidationRunView`].
///
/// For a run of at most the page's limit of records, `verdicts` lists them all and
/// `next` is `None`: it is the full view with its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct ValidationRunSummary {
    /// The run.
    pub run: ValidationRun,
    /// Per-step progress, in order.
    pub steps: Vec<StepProgress>,
    /// How many of the run's records have each verdict.
    pub counts: VerdictCounts,
    /// The verdicts of the run's first records, in submit order.
    pub verdicts: Vec<RecordVerdict>,
    /// The submit position of the first record not in `verdicts` (`from` of
    /// [`ValidationService::records`] for the next page); `None` when `verdicts`
    /// lists every record.
    pub next: Option<u32>,
}

/// What the saga needs to advance a run: the run, its steps, and only the records
/// still in play (a [`ValidationRunView`] without the settled verdicts).
#[derive(Debug, Clone, PartialEq)]
pub struct RunProgress {
    /// The run.
    pub run: ValidationRun,
    /// Per-step progress, in order.
    pub steps: Vec<StepProgress>,
    /// How many records are still pending (in play); which they are is read a page
    /// at a time with [`ValidationRunStore::record_page`].
    pub in_play: u32,
    /// Whether any record has errored.
    pub any_errored: bool,
}

impl RunProgress {
    /// The progress part of a full view.
    pub fn from_view(view: ValidationRunView) -> Self {
        let any_errored = view
            .verdicts
            .iter()
            .any(|v| matches!(v.verdict, Verdict::Errored { .. }));
        let in_play = view
            .verdicts
            .iter()
            .filter(|v| v.verdict == Verdict::Pending)
            .count() as u32;
        RunProgress {
            run: view.run,
            steps: view.steps,
            in_play,
            any_errored,
        }
    }
}

/// Feature rows a run's finalize will publish, written ahead of it (while the run's
/// last hook executes) in an open transaction of the backend's that only
/// [`finalize`](Self::finalize) commits; dropping it rolls the rows back. Made by
/// [`FeatureStaging::stage_features`].
#[async_trait]
pub trait StagedFeatures: Send {
    /// The batches written, as they were given.
    fn batches(&self) -> &[FeatureBatch];

    /// Takes, in the staged transaction, the replace locks of `targets` and removes
    /// what replacing them removes: their records' rows from other hook runs and the
    /// staged rows of records a target leaves out. Called once the last hook has
    /// settled its records, while its step commits elsewhere; a finalize whose batches
    /// are these replaces then only writes its unstaged rows. The locks are held until
    /// the staged transaction ends.
    async fn replace(&mut self, targets: Vec<StagedReplace>) -> Result<()>;

    /// [`ValidationRunStore::apply_finalize`] in the staged transaction. Every staged
    /// batch must be, in the plan, a batch of the same hook run whose rows are the
    /// staged rows of the plan's records: those rows are kept instead of being written
    /// again, the staged rows of records the plan leaves out are removed, and the
    /// records' rows from other hook runs are replaced as usual. The outcome is the one
    /// `apply_finalize(plan)` would have had: when the staged transaction cannot be
    /// used (it failed, the plan does not match it, the run has ended), it is rolled
    /// back and the plan is applied by `apply_finalize`.
    async fn finalize(self: Box<Self>, plan: &FinalizePlan) -> Result<Applied>;
}

impl std::fmt::Debug for dyn StagedFeatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedFeatures")
            .field("batches", &self.batches().len())
            .finish_non_exhaustive()
    }
}

/// A storage capability: writing feature rows of a run ahead of its finalize. Offered
/// through [`ValidationRunStore::feature_staging`] by backends that can hold a
/// transaction open beside others (Postgres).
#[async_trait]
pub trait FeatureStaging: Send + Sync {
    /// Writes feature batches of a run ahead of its finalize, in a transaction of its
    /// own that stays open, holding no lock another run's finalize waits for, until
    /// [`StagedFeatures::finalize`] commits it. Nothing written is visible to anyone
    /// else before that commit; dropping the result rolls it back. `None` when the
    /// backend does not stage now (it bounds how many staged transactions it holds):
    /// the finalize then writes every row itself.
    async fn stage_features(
        &self,
        batches: Vec<FeatureBatch>,
    ) -> Result<Option<Box<dyn StagedFeatures>>>;
}

/// A storage capability: a step commit that also leases the run's next job to the
/// committer. Offered through [`ValidationRunStore::step_hand_off`].
#[async_trait]
pub trait StepHandOff: Send + Sync {
    /// [`ValidationRunStore::apply_step`], with the plan's next job inserted already
    /// leased to the caller for `lease_for` and returned (a claim without the extra
    /// transaction), so the worker that commits a step runs the next one at once.
    /// `None` when the plan was already applied or the job was a duplicate. A job
    /// handed over this way is an ordinary claimed job: if its holder dies, its lease
    /// expires and any worker claims it again.
    async fn apply_step_claiming_next(
        &self,
        plan: &StepPlan,
        lease_for: std::time::Duration,
    ) -> Result<(Applied, Option<ClaimedJob>)>;
}

/// The records whose feature rows of one hook a finalize replaces with the rows of
/// one hook run (what a [`FeatureBatch`] replaces, without its rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedReplace {
    /// The hook.
    pub hook: HookName,
    /// The hook run whose rows stay.
    pub run_id: HookRunId,
    /// The records replaced.
    pub records: Vec<RecordId>,
}

impl StagedReplace {
    /// Whether this is the replace `batch` makes.
    pub fn is_of(&self, batch: &FeatureBatch) -> bool {
        self.hook == batch.hook && self.run_id == batch.run_id && self.records == batch.records
    }
}

/// Storage of validation runs.
///
/// Guarantees every backend gives:
/// - each `apply_*` call runs in ONE transaction: everything in the plan is written,
///   or nothing is;
/// - [`apply_step`](Self::apply_step) is a no-op returning
///   [`Applied::AlreadyApplied`] when `plan.step` is below the run's `current_step`
///   (redelivery) or the run is terminal; the hook run is inserted once;
/// - events get gap-free sequence numbers per run, in commit order.
#[async_trait]
pub trait ValidationRunStore: Send + Sync {
    /// Creates a run, its list of records (all pending), the first job and events; an
    /// invalid-input error when a record id appears twice.
    async fn create_run(&self, plan: &SubmitPlan) -> Result<()>;

    /// [`create_run`](Self::create_run) of `plan` with the record ids of `more` after
    /// the plan's, in the same one transaction: what a large submission uses. The
    /// run's `record_count` counts them all; when it does not, or an id appears twice
    /// anywhere, or a chunk fails, nothing is written. The default collects every
    /// chunk first; backends override it to store each chunk as it comes.
    async fn create_run_streaming(
        &self,
        plan: &SubmitPlan,
        more: &mut dyn RecordChunks,
    ) -> Result<()> {
        let mut plan = plan.clone();
        while let Some(chunk) = more.next_chunk().await? {
            plan.records.extend(chunk);
        }
        if plan.records.len() != plan.run.record_count as usize {
            return Err(crate::Error::invalid(
                "records",
                "the record count does not match the records",
            ));
        }
        self.create_run(&plan).await
    }

    /// Commits one step.
    async fn apply_step(&self, plan: &StepPlan) -> Result<Applied>;

    /// Inserts the accepted records' features and completes the run.
    async fn apply_finalize(&self, plan: &FinalizePlan) -> Result<Applied>;

    /// The backend's [`StepHandOff`], when it offers one; without it the worker that
    /// commits a step claims the next job from the queue like any other.
    fn step_hand_off(&self) -> Option<&dyn StepHandOff> {
        None
    }

    /// The backend's [`FeatureStaging`], when it offers one; without it every finalize
    /// writes all its rows itself.
    fn feature_staging(&self) -> Option<&dyn FeatureStaging> {
        None
    }

    /// [`apply_finalize`](Self::apply_finalize) of `plan` with the batches of `more`
    /// added to the plan's, in the same one transaction: what the finalize of a large
    /// run uses. The default collects every chunk first; backends override it to write
    /// each chunk as it comes. A failing chunk fails the whole finalize, and nothing of
    /// it is written.
    async fn apply_finalize_streaming(
        &self,
        plan: &FinalizePlan,
        more: &mut dyn FeatureChunks,
    ) -> Result<Applied> {
        let mut plan = plan.clone();
        while let Some(chunk) = more.next_chunk().await? {
            plan.features.extend(chunk);
        }
        self.apply_finalize(&plan).await
    }

    /// Marks a non-terminal run failed (or cancelled) with a reason; `false` when it
    /// was already terminal. Any other status is invalid: only a finalize completes or
    /// rejects a run.
    async fn end_run(&self, run: ValidationRunId, status: RunStatus, reason: &str) -> Result<bool>;

    /// The run with steps and verdicts.
    async fn run_view(&self, run: ValidationRunId) -> Result<Option<ValidationRunView>>;

    /// One page of the verdicts [`run_view`](Self::run_view) lists: the records at
    /// submit positions `from` to `from + limit - 1` (fewer at the end of the list, none
    /// past it), in submit order, with their verdicts; `None` for an unknown run. What a
    /// step or finalize reads, a page at a time, so a run's size does not bound by
    /// memory. Backends override it to read only the page.
    async fn record_page(
        &self,
        run: ValidationRunId,
        from: u32,
        limit: u32,
    ) -> Result<Option<Vec<RecordVerdict>>> {
        Ok(self.run_view(run).await?.map(|view| {
            view.verdicts
                .into_iter()
                .skip(from as usize)
                .take(limit as usize)
                .collect()
        }))
    }

    /// The run with its steps and the records still in play; what a step or finalize
    /// reads. Must equal [`RunProgress::from_view`] of [`run_view`](Self::run_view);
    /// backends override it to skip the settled verdicts.
    async fn run_progress(&self, run: ValidationRunId) -> Result<Option<RunProgress>> {
        Ok(self.run_view(run).await?.map(RunProgress::from_view))
    }

    /// Only the run's status (cheap; for waiting on a run).
    async fn run_status(&self, run: ValidationRunId) -> Result<Option<RunStatus>> {
        Ok(self.run_view(run).await?.map(|v| v.run.status))
    }

    /// Events with `seq > after`, in order.
    async fn run_events(&self, run: ValidationRunId, after: u64) -> Result<Vec<RunEvent>>;
}

/// A request to validate records against a convention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitValidation {
    /// The convention.
    pub convention: ConventionSlug,
    /// The records.
    pub records: Vec<InputRecord>,
}

/// Validates records against a convention's hooks as a durable saga.
///
/// Guarantees: `submit` snapshots the live release of every hook (a concurrent deploy or
/// rollback never splits a run across versions) and returns once the run and its first
/// job are committed; each step commits atomically; a record rejected or errored by a
/// hook is not fed to later hooks; features become visible atomically at the end, only
/// for accepted records; redelivered or re-executed steps never duplicate provenance.
#[async_trait]
pub trait ValidationService: Send + Sync {
    /// Creates a run; zero hooks → completed at once.
    async fn submit(&self, request: SubmitValidation) -> Result<ValidationRunId>;

    /// The run's progress with the verdict of every record, in one snapshot. Unknown
    /// run → NotFound.
    ///
    /// It loads every verdict of the run, as many as the run has records (up to a
    /// million): to read a run of any size in bounded memory, use
    /// [`summary`](Self::summary) and [`records`](Self::records).
    async fn get(&self, run: ValidationRunId) -> Result<ValidationRunView>;

    /// The run, its steps, its counts per verdict and the verdicts of its first
    /// `limit` records; `next` is where [`records`](Self::records) goes on. Unknown run
    /// → NotFound; a `limit` of 0 or above [`MAX_RECORD_PAGE`] → Invalid (`limit`).
    ///
    /// The run with its steps and counts is read in one snapshot, the page right
    /// after it: while the run advances, the page may already show what the next
    /// step settled. Once the run is terminal, both agree.
    async fn summary(&self, run: ValidationRunId, limit: u32) -> Result<ValidationRunSummary>;

    /// The verdicts of the run's records at submit positions `from` to
    /// `from + limit - 1`, in submit order (fewer at the end of the run, none past
    /// it); `next` is `from` of the following page, `None` after the last record.
    /// Unknown run → NotFound; a `limit` of 0 or above [`MAX_RECORD_PAGE`] → Invalid
    /// (`limit`).
    async fn records(&self, run: ValidationRunId, from: u32, limit: u32) -> Result<RecordPage>;

    /// Persisted events, then live ones until the run ends.
    async fn events(&self, run: ValidationRunId) -> Result<BoxStream<'static, Result<RunEvent>>>;

    /// Cancels a non-terminal run; `false` when it had already ended. A hook running
    /// for the run is stopped (by a worker of the same engine at once, by workers
    /// elsewhere within their heartbeat interval) and its step is not committed.
    async fn cancel(&self, run: ValidationRunId) -> Result<bool>;
}

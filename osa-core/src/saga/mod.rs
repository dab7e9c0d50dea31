//! The validation saga: [`Engine`] implements [`ValidationService`] on top of the
//! storage ports, a [`HookRunner`] and an object store, and [`Worker`] runs its jobs.
//!
//! A run is a sequence of jobs: one `validation.step` per hook, then one
//! `validation.finalize`. A step runs hook *k* over the records still in play, then
//! commits one [`StepPlan`](crate::validation::StepPlan) (hook run, step row, verdicts, `current_step`, next job,
//! and the job's own completion) in one transaction. Finalize inserts the features of
//! the records that passed every hook and ends the run, in one transaction. A
//! redelivered job finds its step already committed and does nothing; a step
//! re-executed after a crash gets the same hook-run id, so provenance is never
//! duplicated. No transaction is held open while a hook runs.
//!
//! A [`Worker`] that commits a step gets the run's next job leased to it by that same
//! commit and runs it at once, with the progress it just committed (only whether the
//! run was cancelled meanwhile is read back); the job is an ordinary leased job, so if
//! the worker dies another claims it when the lease expires.
//!
//! Memory does not grow with a run's records: a step reads the records in play a page
//! at a time and runs its hook over them in batches of at most
//! [`BatchLimits::max_records`], reading the stored inputs (a JSON-lines blob) forward
//! and writing the passed records' rows to a JSON-lines blob as each batch ends; the
//! finalize writes the accepted records' rows a batch at a time inside its one
//! transaction. Small blobs of a run stay in memory for its next jobs in the same
//! process (the blobs remain the source of truth).

mod handlers;
mod plan;
mod spool;

use spool::{InputsReader, LinesSource, LinesWriter, RowsLine, RowsReader, SubmittedIds};
mod worker;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use worker::{Worker, WorkerConfig};

use crate::blob::{BlobKeys, Blobs, Streamed};
use crate::contract::{BatchLimits, OutputLimits};
use crate::feature::FeatureSpec;
use crate::hook::HookRelease;
use crate::id::{ConventionSlug, FileName, HookName, RecordId, ReleaseId, ValidationRunId};
use crate::jobs::{Backoff, NewJob};
use crate::policy::FailurePolicy;
use crate::runner::HookRunner;
use crate::storage::Storage;
use crate::validation::{
    FileSource, InputRecord, MAX_RECORD_PAGE, RecordPage, RunEvent, RunEventKind, RunProgress,
    RunStatus, StepProgress, StepRelease, SubmitPlan, SubmitValidation, ValidationRun,
    ValidationRunSummary, ValidationRunView, ValidationService, VerdictCounts,
};
use crate::{Error, Result};

/// Job kind of a step.
pub const STEP_JOB: &str = "validation.step";
/// Job kind of the finalize.
pub const FINALIZE_JOB: &str = "validation.finalize";

/// Tunables of the engine.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Where batch directories are prepared (one per step execution, removed after).
    pub work_dir: PathBuf,
    /// The failure policy.
    pub policy: FailurePolicy,
    /// Backoff between retries of a step.
    pub backoff: Backoff,
    /// Deliveries of a job before it is dead (and the run failed).
    pub max_attempts: u32,
    /// Limits on reading hook outputs.
    pub output_limits: OutputLimits,
    /// Limits on preparing batches.
    pub batch_limits: BatchLimits,
    /// Most records in one submission.
    pub max_records: usize,
    /// How often an event stream polls for new persisted events.
    pub event_poll: Duration,
    /// Write the earlier hooks' feature rows while a run's last hook executes, when
    /// the storage can (Postgres: see
    /// [`FeatureStaging::stage_features`](crate::validation::FeatureStaging::stage_features))
    /// and the worker running the last step will run the finalize itself. The
    /// finalize then writes only the last hook's rows, so a run ends sooner after its
    /// last hook. The price: per run in its last step, one pooled connection and one
    /// open transaction (holding no lock another run waits for) for as long as that
    /// hook runs. The writes use the database's CPU while the hook runs: on a machine
    /// where both share a few cores, they slow the hook by about what they save.
    /// Default `true`.
    pub stage_features: bool,
}

impl EngineConfig {
    /// Defaults with batch directories under `work_dir`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            work_dir: work_dir.into(),
            policy: FailurePolicy::default(),
            backoff: Backoff::default(),
            max_attempts: 5,
            output_limits: OutputLimits::default(),
            batch_limits: BatchLimits::default(),
            max_records: 100_000,
            event_poll: Duration::from_millis(200),
            stage_features: true,
        }
    }
}

/// A file of a stored input record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredFile {
    pub name: FileName,
    pub key: String,
}

/// A record as stored at submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredRecord {
    pub id: RecordId,
    pub metadata: serde_json::Value,
    pub files: Vec<StoredFile>,
}

/// A [`StoredRecord`] borrowed from a submission, as it is written.
#[derive(Serialize)]
struct StoredRecordRef<'a> {
    id: &'a RecordId,
    metadata: &'a serde_json::Value,
    files: &'a [StoredFile],
}

/// Payload of step and finalize jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobPayload {
    pub run: ValidationRunId,
    pub step: u32,
}

/// The validation engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Arc<dyn Storage>,
    runner: Arc<dyn HookRunner>,
    blobs: Blobs,
    config: EngineConfig,
    /// Signalled when this engine enqueued a job, so idle workers in this process
    /// claim it at once instead of at their next poll.
    jobs_enqueued: tokio::sync::Notify,
    /// Signalled when a run handled by this engine ended, so waiters re-check at once
    /// (waiters for a run's end: a step commit does not wake them).
    runs_ended: tokio::sync::Notify,
    /// Releases never change once created.
    releases: Mutex<HashMap<ReleaseId, HookRelease>>,
    /// A hook's feature contract never changes once registered.
    contracts: Mutex<HashMap<HookName, FeatureSpec>>,
    /// Inputs and step rows of recent runs, so the jobs of a run handled in this
    /// process do not re-read and re-parse its blobs.
    runs: Mutex<RunCache>,
}

/// Where temporary files of the engine (blobs being written or read) live, under the
/// work dir.
pub(crate) const SPOOL_DIR: &str = ".spool";

/// Record ids a submit hands to the storage at a time.
const ID_CHUNK: usize = 100_000;

/// A spawned task that is aborted when its handle is dropped (it never outlives the
/// future that started it).
#[derive(Debug)]
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// Waits for the task's output.
    pub(crate) async fn join(mut self) -> std::result::Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs whose data is kept in memory at most (the most recently used).
const CACHED_RUNS: usize = 4;
/// Runs with more records (steps with more passed records) always read their blobs.
pub(crate) const CACHED_RECORDS: usize = 10_000;

/// The inputs and step rows blobs of a few recent runs, and the progress of runs just
/// submitted. The blobs stay the source of truth (another process may run a run's next
/// job); a miss reads them. Inputs never change; step rows are kept only by the process
/// whose commit of the step succeeded, and each execution stores its rows under its own
/// key, so a cached copy never goes stale. A submit's progress is taken once, by the
/// first delivery of the run's first step (a claim counts deliveries, so a redelivery
/// never sees it), and it is current but for the run's status, which that step reads.
#[derive(Default)]
struct RunCache {
    runs: VecDeque<(ValidationRunId, CachedRun)>,
}

#[derive(Default)]
struct CachedRun {
    /// The stored inputs, parsed, of a run of at most [`CACHED_RECORDS`] records.
    inputs: Option<Arc<Vec<StoredRecord>>>,
    /// The progress a submit through this engine committed, until its first step
    /// takes it.
    submitted: Option<RunProgress>,
    /// The records in play of that progress, when the submit kept them.
    submitted_in_play: Option<Vec<handlers::Positioned>>,
    /// The rows, parsed, of steps this process committed with at most
    /// [`CACHED_RECORDS`] passed records.
    outputs: BTreeMap<u32, Arc<Vec<RowsLine>>>,
}

impl RunCache {
    fn get(&mut self, run: ValidationRunId) -> Option<&mut CachedRun> {
        self.runs
            .iter_mut()
            .find(|(id, _)| *id == run)
            .map(|(_, cached)| cached)
    }

    /// The entry of `run`, created (evicting the oldest) if absent.
    fn entry(&mut self, run: ValidationRunId) -> &mut CachedRun {
        if let Some(i) = self.runs.iter().position(|(id, _)| *id == run) {
            return &mut self.runs[i].1;
        }
        if self.runs.len() >= CACHED_RUNS {
            self.runs.pop_front();
        }
        self.runs.push_back((run, CachedRun::default()));
        &mut self.runs.back_mut().expect("just pushed").1
    }

    fn forget(&mut self, run: ValidationRunId) {
        self.runs.retain(|(id, _)| *id != run);
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("runner", &self.inner.runner)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn job(kind: &str, run: ValidationRunId, step: u32, max_attempts: u32) -> NewJob {
    job_at(kind, run, step, max_attempts, Utc::now())
}

/// A job of `kind` for `step` of `run`, due at `run_at`.
pub(crate) fn job_at(
    kind: &str,
    run: ValidationRunId,
    step: u32,
    max_attempts: u32,
    run_at: chrono::DateTime<Utc>,
) -> NewJob {
    NewJob {
        kind: kind.into(),
        payload: serde_json::to_value(JobPayload { run, step }).expect("job payloads serialise"),
        run_at,
        max_attempts,
        dedupe_key: Some(format!("{run}/{kind}/{step}")),
    }
}

impl Engine {
    /// An engine over `storage` (any type implementing every storage port), running
    /// hooks with `runner`, keeping blobs in `blobs`.
    pub fn new<S: Storage>(
        storage: Arc<S>,
        runner: Arc<dyn HookRunner>,
        blobs: Blobs,
        config: EngineConfig,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                storage,
                runner,
                blobs,
                config,
                jobs_enqueued: tokio::sync::Notify::new(),
                runs_ended: tokio::sync::Notify::new(),
                releases: Mutex::default(),
                contracts: Mutex::default(),
                runs: Mutex::default(),
            }),
        }
    }

    /// Notified when this engine enqueued a job.
    pub(crate) fn jobs_enqueued(&self) -> &tokio::sync::Notify {
        &self.inner.jobs_enqueued
    }

    /// Notified when a run handled by this engine ended.
    pub(crate) fn runs_ended(&self) -> &tokio::sync::Notify {
        &self.inner.runs_ended
    }

    /// A release by id (cached: releases are immutable).
    pub(crate) async fn release(&self, id: ReleaseId) -> Result<HookRelease> {
        if let Some(release) = self
            .inner
            .releases
            .lock()
            .expect("release cache poisoned")
            .get(&id)
        {
            return Ok(release.clone());
        }
        let release = self
            .storage()
            .get_release_by_id(id)
            .await?
            .ok_or_else(|| Error::not_found("release", id))?;
        self.inner
            .releases
            .lock()
            .expect("release cache poisoned")
            .insert(id, release.clone());
        Ok(release)
    }

    fn run_cache(&self) -> std::sync::MutexGuard<'_, RunCache> {
        self.inner.runs.lock().expect("run cache poisoned")
    }

    /// The stored inputs of a run, read forward by position (from memory when this
    /// process has them).
    pub(crate) async fn inputs(&self, run: ValidationRunId) -> Result<InputsReader> {
        let key = BlobKeys::run_inputs(run);
        let cached = self.run_cache().get(run).and_then(|c| c.inputs.clone());
        match cached {
            Some(records) => Ok(InputsReader::cached(records)),
            None => InputsReader::new(
                LinesSource::open(&self.inner.blobs, &key, &self.spool_dir()?).await?,
            ),
        }
    }

    /// The directory of the engine's temporary files, under the work dir (created if
    /// absent).
    pub(crate) fn spool_dir(&self) -> Result<PathBuf> {
        let dir = self.inner.config.work_dir.join(SPOOL_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Unavailable {
            what: "work directory",
            detail: format!("creating {}: {e}", dir.display()),
            source: Some(Box::new(e)),
        })?;
        Ok(dir)
    }

    /// Stores the files of `record`, at submit position `position`, under the run's
    /// keys (local files read within the size limit, store objects copied and measured
    /// on the copy) and writes the record, with its files' keys, as a line of `stored`;
    /// `written` lists every key stored, also when an error stops it half way.
    async fn store_record(
        &self,
        run_id: ValidationRunId,
        position: usize,
        record: &InputRecord,
        written: &mut Vec<object_store::path::Path>,
        stored: &mut LinesWriter,
    ) -> Result<Vec<StoredFile>> {
        let blobs = &self.inner.blobs;
        let limit = self.inner.config.batch_limits.max_file_bytes;
        {
            let mut files = Vec::with_capacity(record.files.len());
            for file in &record.files {
                let key = BlobKeys::run_file(run_id, position, &file.name);
                match &file.source {
                    FileSource::Local { path } => {
                        let unreadable = |e: std::io::Error| {
                            Error::invalid(
                                format!("records[{position}].files"),
                                format!("cannot read {}: {e}", path.display()),
                            )
                        };
                        let meta = tokio::fs::metadata(path).await.map_err(unreadable)?;
                        if meta.len() > limit {
                            return Err(file_too_large(position, &file.name, meta.len(), limit));
                        }
                        // Streamed into the store, at most one byte past the limit:
                        // a file that grew since its size was read is refused, not
                        // read whole.
                        let reader = tokio::fs::File::open(path).await.map_err(unreadable)?;
                        match blobs.put_stream(&key, reader, limit).await? {
                            Streamed::Stored { .. } => written.push(key.clone()),
                            Streamed::TooLarge { read } => {
                                return Err(file_too_large(position, &file.name, read, limit));
                            }
                        }
                    }
                    FileSource::Object { key: source } => {
                        blobs
                            .copy(&object_store::path::Path::from(source.as_str()), &key)
                            .await?;
                        written.push(key.clone());
                        // Measured on the run's own copy: the source may change
                        // after any earlier look at it.
                        let size = blobs.size(&key).await?;
                        if size > limit {
                            return Err(file_too_large(position, &file.name, size, limit));
                        }
                    }
                }
                files.push(StoredFile {
                    name: file.name.clone(),
                    key: key.to_string(),
                });
            }
            stored.push(&StoredRecordRef {
                id: &record.id,
                metadata: &record.metadata,
                files: &files,
            })?;
            Ok(files)
        }
    }

    /// Keeps the progress a submit committed (with its inputs) for the run's first
    /// step.
    fn remember_submitted(
        &self,
        plan: &SubmitPlan,
        records: u32,
        in_play: Option<Vec<handlers::Positioned>>,
    ) {
        let mut cache = self.run_cache();
        let Some(cached) = cache.get(plan.run.id) else {
            return;
        };
        let steps = plan
            .run
            .steps
            .iter()
            .map(|release| StepProgress::pending(release.clone()))
            .collect();
        cached.submitted = Some(RunProgress {
            run: plan.run.clone(),
            steps,
            in_play: records,
            any_errored: false,
        });
        cached.submitted_in_play = in_play;
    }

    /// The progress a submit through this engine committed, once, with its records
    /// when it kept them.
    pub(crate) fn take_submitted(
        &self,
        run: ValidationRunId,
    ) -> Option<(RunProgress, Option<Vec<handlers::Positioned>>)> {
        let mut cache = self.run_cache();
        let cached = cache.get(run)?;
        let progress = cached.submitted.take()?;
        Some((progress, cached.submitted_in_play.take()))
    }

    fn remember_inputs(&self, run: ValidationRunId, inputs: Vec<StoredRecord>) {
        self.run_cache().entry(run).inputs = Some(Arc::new(inputs));
    }

    /// The rows a committed step stored at `outputs_ref` (the key its step row
    /// records), read forward by position (from memory when this process committed it
    /// and they are small).
    pub(crate) async fn step_rows(
        &self,
        run: ValidationRunId,
        step: u32,
        outputs_ref: &str,
    ) -> Result<RowsReader> {
        let cached = self
            .run_cache()
            .get(run)
            .and_then(|c| c.outputs.get(&step).cloned());
        let source = match cached {
            Some(lines) => return Ok(RowsReader::cached(lines)),
            None => {
                let key = object_store::path::Path::parse(outputs_ref)
                    .ok()
                    .filter(|key| BlobKeys::is_step_outputs(key, run, step))
                    .ok_or_else(|| {
                        Error::internal(format!(
                            "step {step} of run {run}: `{outputs_ref}` is not an outputs key of this step"
                        ))
                    })?;
                LinesSource::open(&self.inner.blobs, &key, &self.spool_dir()?).await?
            }
        };
        RowsReader::new(source)
    }

    /// Keeps the rows of a step this process committed.
    pub(crate) fn remember_step_rows(&self, run: ValidationRunId, step: u32, rows: Vec<RowsLine>) {
        self.run_cache()
            .entry(run)
            .outputs
            .insert(step, Arc::new(rows));
    }

    /// Drops what is kept of a finished run.
    pub(crate) fn forget_run(&self, run: ValidationRunId) {
        self.run_cache().forget(run);
    }

    /// A hook's feature contract (cached: a registered identity never changes).
    pub(crate) async fn contract(&self, hook: &HookName) -> Result<FeatureSpec> {
        if let Some(spec) = self
            .inner
            .contracts
            .lock()
            .expect("contract cache poisoned")
            .get(hook)
        {
            return Ok(spec.clone());
        }
        let spec = self
            .storage()
            .get_hook(hook)
            .await?
            .ok_or_else(|| Error::not_found("hook", hook))?
            .identity
            .feature;
        self.inner
            .contracts
            .lock()
            .expect("contract cache poisoned")
            .insert(hook.clone(), spec.clone());
        Ok(spec)
    }

    /// The blob store.
    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub(crate) fn storage(&self) -> &dyn Storage {
        self.inner.storage.as_ref()
    }

    pub(crate) fn runner(&self) -> &dyn HookRunner {
        self.inner.runner.as_ref()
    }

    /// Reads the captured log of a hook run (by its stored locator).
    pub async fn hook_log(&self, run: crate::id::HookRunId) -> Result<bytes::Bytes> {
        let run = self
            .storage()
            .get_run(run)
            .await?
            .ok_or_else(|| Error::not_found("hook run", run))?;
        let log_ref = run
            .log_ref
            .ok_or_else(|| Error::not_found("log of hook run", run.id))?;
        self.inner.blobs.read_log(&log_ref).await
    }

    /// The provenance chain of one feature row: row, hook run (status, timing,
    /// oom_retries, log locator) and release (version, digest, runtime, config, limits,
    /// source_ref, built_by, built_at).
    pub async fn provenance(
        &self,
        hook: &crate::id::HookName,
        row_id: i64,
    ) -> Result<crate::feature_store::Provenance> {
        self.storage()
            .provenance(hook, row_id)
            .await?
            .ok_or_else(|| Error::not_found("feature row", format!("{hook}/{row_id}")))
    }

    /// Checks a submission before anything is stored.
    /// The checks of a whole submission that need every record at once (how many,
    /// repeated ids), with the index of the offending record; the stream path leaves
    /// repeats to the storage.
    fn check_submission(&self, request: &SubmitValidation) -> Result<()> {
        if request.records.is_empty() {
            return Err(Error::invalid("records", "submit at least one record"));
        }
        if request.records.len() > self.inner.config.max_records {
            return Err(self.too_many_records());
        }
        let mut ids = HashSet::new();
        for (i, record) in request.records.iter().enumerate() {
            if !ids.insert(&record.id) {
                return Err(Error::invalid(
                    format!("records[{i}].id"),
                    format!("{:?} appears twice", record.id.as_str()),
                ));
            }
        }
        Ok(())
    }

    fn too_many_records(&self) -> Error {
        Error::invalid(
            "records",
            format!(
                "at most {} records per submission",
                self.inner.config.max_records
            ),
        )
    }

    /// The checks of one record, the `i`-th of its submission.
    fn check_record(i: usize, record: &InputRecord) -> Result<()> {
        if !record.metadata.is_object() {
            return Err(Error::invalid(
                format!("records[{i}].metadata"),
                "must be a JSON object",
            ));
        }
        let mut names = HashSet::new();
        for (j, file) in record.files.iter().enumerate() {
            if !names.insert(&file.name) {
                return Err(Error::invalid(
                    format!("records[{i}].files[{j}].name"),
                    format!("`{}` appears twice", file.name),
                ));
            }
        }
        Ok(())
    }

    /// Validates records against a convention's hooks, as [`ValidationService::submit`]
    /// does, taking them one at a time from `records`: each is checked, its files
    /// stored and the record written to the run's inputs as it comes, so the memory a
    /// submission takes does not grow with its records (for submissions larger than
    /// one would hold in memory: JSON lines read from a file, an upstream source). The
    /// first error of the stream, or of a record, ends the submission and nothing of
    /// it stays: no run, and none of the files stored so far. A record id that appears
    /// twice is refused by the storage, when the run is created.
    pub async fn submit_stream(
        &self,
        convention: ConventionSlug,
        records: impl futures::Stream<Item = Result<InputRecord>> + Send,
    ) -> Result<ValidationRunId> {
        let records = std::pin::pin!(records);
        self.submit_records(convention, records).await
    }

    async fn submit_records(
        &self,
        convention_slug: ConventionSlug,
        mut records: std::pin::Pin<&mut (dyn futures::Stream<Item = Result<InputRecord>> + Send)>,
    ) -> Result<ValidationRunId> {
        use futures::StreamExt as _;

        let storage = self.storage();
        let convention = storage
            .get_convention(&convention_slug)
            .await?
            .ok_or_else(|| Error::not_found("convention", &convention_slug))?;
        // The snapshot: every step of this run uses these releases, whatever happens
        // to the live pointers afterwards.
        let releases = storage.resolve_live(&convention.hooks).await?;
        let run_id = ValidationRunId::new_random();
        let blobs = &self.inner.blobs;
        let mut written = Vec::new();
        let inputs_ref = BlobKeys::run_inputs(run_id);
        let spool = self.spool_dir()?;
        let mut stored = LinesWriter::create(&spool)?;
        let mut ids = SubmittedIds::new(&spool, ID_CHUNK);
        // A small run's inputs, and its records in play, stay in memory for its first
        // step.
        let mut kept: Option<Vec<StoredRecord>> = Some(Vec::new());
        let read: Result<()> = async {
            let mut count = 0usize;
            // Hooks find a record's files under its directory name: two ids of one
            // submission with the same name would share one directory.
            let mut dirs: HashMap<String, RecordId> = HashMap::new();
            while let Some(record) = records.next().await {
                let record = record?;
                if count >= self.inner.config.max_records {
                    return Err(self.too_many_records());
                }
                Self::check_record(count, &record)?;
                let dir = crate::id::record_dir_name(record.id.as_str());
                match dirs.get(&dir) {
                    Some(other) if *other != record.id => {
                        return Err(Error::invalid(
                            format!("records[{count}].id"),
                            format!(
                                "{:?} and {:?} map to the same files directory `{dir}`; \
                                 rename one of them",
                                other.as_str(),
                                record.id.as_str()
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        dirs.insert(dir, record.id.clone());
                    }
                }
                let files = self
                    .store_record(run_id, count, &record, &mut written, &mut stored)
                    .await?;
                if count >= CACHED_RECORDS {
                    kept = None;
                }
                if let Some(kept) = &mut kept {
                    kept.push(StoredRecord {
                        id: record.id.clone(),
                        metadata: record.metadata,
                        files,
                    });
                }
                ids.push(record.id)?;
                count += 1;
            }
            if count == 0 {
                return Err(Error::invalid("records", "submit at least one record"));
            }
            stored.upload(blobs, &inputs_ref).await
        }
        .await;
        match read {
            Ok(()) => {}
            Err(error) => {
                // Nothing refers to the files stored so far: they go too.
                for key in &written {
                    let _ = blobs.delete(key).await;
                }
                return Err(error);
            }
        }
        let now = Utc::now();
        let steps: Vec<StepRelease> = releases
            .iter()
            .enumerate()
            .map(|(index, release)| StepRelease {
                index: index as u32,
                hook: release.hook.clone(),
                release_id: release.id,
                version: release.version,
            })
            .collect();
        let record_count = ids.count();
        // Zero hooks: every record is accepted in the submit's own transaction (there
        // are no features to publish), so no run is ever left without a job.
        let no_hooks = steps.is_empty();
        let mut events = vec![RunEventKind::Submitted {
            records: record_count,
            steps: steps.len() as u32,
        }];
        if no_hooks {
            events.push(RunEventKind::Finished {
                status: RunStatus::Completed,
                accepted: record_count,
                reason: None,
            });
        }
        let run = ValidationRun {
            id: run_id,
            convention: convention.slug.clone(),
            status: if no_hooks {
                RunStatus::Completed
            } else {
                RunStatus::Pending
            },
            current_step: 0,
            steps,
            record_count,
            failure: None,
            created_at: now,
            updated_at: now,
        };
        let plan = SubmitPlan {
            run,
            records: ids.take_first(),
            inputs_ref: inputs_ref.to_string(),
            first_job: (!no_hooks)
                .then(|| job(STEP_JOB, run_id, 0, self.inner.config.max_attempts)),
            events,
        };
        let created = match ids.rest() {
            Ok(None) => storage.create_run(&plan).await,
            Ok(Some(mut rest)) => storage.create_run_streaming(&plan, &mut rest).await,
            Err(error) => Err(error),
        };
        if let Err(error) = created {
            // Refused (a repeated id): nothing refers to the files and inputs stored
            // for it. After any other failure the run may exist (a commit whose answer
            // was lost), so what it needs stays.
            if matches!(
                error.kind(),
                crate::ErrorKind::Invalid | crate::ErrorKind::Conflict
            ) {
                for key in &written {
                    let _ = blobs.delete(key).await;
                }
                let _ = blobs.delete(&inputs_ref).await;
            }
            return Err(error);
        }
        tracing::info!(
            run = %run_id,
            convention = %convention.slug,
            records = record_count,
            steps = convention.hooks.len(),
            "run submitted"
        );
        crate::telemetry::run_submitted();
        if no_hooks {
            self.runs_ended().notify_waiters();
        } else {
            let in_play = kept
                .as_ref()
                .map(|records| (0u32..).zip(records.iter().map(|r| r.id.clone())).collect());
            if let Some(kept) = kept {
                self.remember_inputs(run_id, kept);
            }
            self.remember_submitted(&plan, record_count, in_play);
            self.inner.jobs_enqueued.notify_waiters();
        }
        Ok(run_id)
    }
}

#[async_trait]
impl ValidationService for Engine {
    async fn submit(&self, request: SubmitValidation) -> Result<ValidationRunId> {
        self.check_submission(&request)?;
        let records = futures::stream::iter(request.records.into_iter().map(Ok));
        self.submit_stream(request.convention, records).await
    }

    async fn get(&self, run: ValidationRunId) -> Result<ValidationRunView> {
        self.storage()
            .run_view(run)
            .await?
            .ok_or_else(|| Error::not_found("validation run", run))
    }

    async fn summary(&self, run: ValidationRunId, limit: u32) -> Result<ValidationRunSummary> {
        check_page_limit(limit)?;
        let progress = self
            .storage()
            .run_progress(run)
            .await?
            .ok_or_else(|| Error::not_found("validation run", run))?;
        let counts = VerdictCounts::of_progress(&progress);
        let page = self.records(run, 0, limit).await?;
        Ok(ValidationRunSummary {
            run: progress.run,
            steps: progress.steps,
            counts,
            verdicts: page.records,
            next: page.next,
        })
    }

    async fn records(&self, run: ValidationRunId, from: u32, limit: u32) -> Result<RecordPage> {
        check_page_limit(limit)?;
        // One record more than asked says whether another page follows (a run's
        // records are fixed at submit), without reading the run's record count.
        let mut records = self
            .storage()
            .record_page(run, from, limit + 1)
            .await?
            .ok_or_else(|| Error::not_found("validation run", run))?;
        let next = (records.len() > limit as usize).then(|| {
            records.truncate(limit as usize);
            from.saturating_add(limit)
        });
        Ok(RecordPage { records, next })
    }

    async fn events(&self, run: ValidationRunId) -> Result<BoxStream<'static, Result<RunEvent>>> {
        // Only whether the run exists (its status row), not its verdicts.
        self.storage()
            .run_status(run)
            .await?
            .ok_or_else(|| Error::not_found("validation run", run))?;
        let engine = self.clone();
        let poll = self.inner.config.event_poll;
        // Replay persisted events, then tail them by polling the store (the source of
        // truth, also across processes) until the run's `finished` event.
        let stream = futures::stream::unfold(
            (engine, 0u64, Vec::<RunEvent>::new(), false),
            move |(engine, after, mut buffered, done)| async move {
                loop {
                    if let Some(event) = (!buffered.is_empty()).then(|| buffered.remove(0)) {
                        let finished = matches!(event.kind, RunEventKind::Finished { .. });
                        let seq = event.seq;
                        return Some((Ok(event), (engine, seq, buffered, finished)));
                    }
                    if done {
                        return None;
                    }
                    match engine.storage().run_events(run, after).await {
                        Ok(events) if events.is_empty() => tokio::time::sleep(poll).await,
                        Ok(events) => buffered = events,
                        Err(e) => return Some((Err(e), (engine, after, buffered, true))),
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }

    async fn cancel(&self, run: ValidationRunId) -> Result<bool> {
        let ended = self
            .storage()
            .end_run(run, RunStatus::Cancelled, "cancelled")
            .await?;
        if ended {
            tracing::info!(run = %run, "run cancelled");
        }
        self.forget_run(run);
        self.inner.runs_ended.notify_waiters();
        Ok(ended)
    }
}

/// A page size is 1 to [`MAX_RECORD_PAGE`] records.
fn check_page_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_RECORD_PAGE {
        return Err(Error::invalid(
            "limit",
            format!("must be 1..={MAX_RECORD_PAGE}, not {limit}"),
        ));
    }
    Ok(())
}

/// The error of a record file over the size limit.
fn file_too_large(position: usize, name: &FileName, size: u64, limit: u64) -> Error {
    Error::invalid(
        format!("records[{position}].files"),
        format!("file `{name}` is {size} bytes, over the limit of {limit} bytes"),
    )
}

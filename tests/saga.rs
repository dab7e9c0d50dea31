//! End-to-end tests of the validation saga, deploys and provenance, on SQLite files
//! and on Postgres, with real Python hooks run by the process runner.

#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use osa::blob::Blobs;
use osa::deploy::{Deployer, DeploymentFilter, DeploymentStatus};
use osa::feature::FeatureValue;
use osa::feature_store::FeatureQuery;
use osa::hook::HookRunStatus;
use osa::id::{
    ConventionSlug, DeploymentId, Digest, FileName, HookName, RecordId, ValidationRunId,
};
use osa::jobs::Backoff;
use osa::runner::{Execution, HookRunner, ProcessRunner, RunFailure, RunJob};
use osa::saga::{Engine, EngineConfig, FINALIZE_JOB, STEP_JOB, Worker, WorkerConfig};
use osa::testing::runner::process_ended;
use osa::validation::{
    FileSource, InputFile, InputRecord, MAX_RECORD_PAGE, RecordVerdict, RunEventKind, RunStatus,
    StepStatus, SubmitValidation, ValidationService, Verdict, VerdictCounts,
};
use osa::{ErrorKind, Storage};
use osa_sqlx::{PgBackend, PgConfig, SqliteBackend};
use serde_json::{Value, json};
use tempfile::TempDir;

const HOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hooks/saga_hook.py");

/// The process runner, counting the hook executions it starts (a hook killed before
/// it wrote anything still counts).
#[derive(Debug, Default)]
struct CountingRunner {
    inner: ProcessRunner,
    started: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl HookRunner for CountingRunner {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn run(&self, job: &RunJob) -> Result<Execution, RunFailure> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.inner.run(job).await
    }
}

/// A fresh archive: storage, engine, deployer, a temp dir (blobs, work, side-effect
/// logs). The crash of a worker process is tested with `osa-server worker`
/// (examples/server/tests/workers.rs).
struct Archive<S> {
    storage: Arc<S>,
    engine: Engine,
    /// Hook executions started by `engine`.
    started: Arc<AtomicUsize>,
    deployer: Deployer,
    dir: TempDir,
    _cleanup: Option<Cleanup>,
}

/// Drops a Postgres test's schemas at the end.
struct Cleanup(PgBackend);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let backend = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async { backend.drop_schemas().await })
        })
        .join();
    }
}

fn engine_config(dir: &Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir.join("work"));
    config.backoff = Backoff {
        base: Duration::from_millis(100),
        factor: 2.0,
        cap: Duration::from_secs(1),
        jitter: 0.0,
    };
    config.event_poll = Duration::from_millis(50);
    // More deliveries than the longest proptest schedule (7 actions) can burn on one
    // job, so a schedule of crashes alone never exhausts a job: the model is the
    // crash-free run. Exhaustion itself is covered by the storage conformance suite.
    config.max_attempts = 10;
    config
}

fn archive<S: Storage + Clone>(storage: S, dir: TempDir, cleanup: Option<Cleanup>) -> Archive<S> {
    let storage = Arc::new(storage);
    let blobs = Blobs::local(dir.path().join("blobs")).expect("blobs");
    let runner = CountingRunner::default();
    let started = runner.started.clone();
    let engine = Engine::new(
        storage.clone(),
        Arc::new(runner),
        blobs.clone(),
        engine_config(dir.path()),
    );
    let deployer = Deployer::new(storage.clone(), blobs);
    Archive {
        storage,
        engine,
        started,
        deployer,
        dir,
        _cleanup: cleanup,
    }
}

async fn sqlite() -> Archive<SqliteBackend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("osa.db");
    let backend = SqliteBackend::open(&db).await.expect("open");
    backend.migrate().await.expect("migrate");
    archive(backend, dir, None)
}

async fn postgres() -> Archive<PgBackend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("e2e_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let config = PgConfig::new(&url).with_schemas(schema.clone(), format!("{schema}_features"));
    let backend = PgBackend::connect(config)
        .await
        .expect("Postgres must be reachable");
    backend.migrate().await.expect("migrate");
    let cleanup = Cleanup(backend.clone());
    archive(backend, dir, Some(cleanup))
}

/// Runs each scenario on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(super::sqlite().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(super::postgres().await).await;
                }
            }
        )*
    };
}

on_both_backends!(
    rejected_records_skip_later_hooks,
    a_run_is_read_a_page_at_a_time,
    a_streamed_submission_stores_records_as_they_come,
    a_step_feeds_its_hook_batches_of_at_most_max_records,
    zero_hooks_complete_at_once,
    failing_hook_fails_the_run_with_a_readable_log,
    transient_failure_is_retried,
    live_changes_do_not_split_a_run,
    duplicate_deliveries_change_nothing,
    deploys_are_audited,
    work_dir_is_left_clean,
    a_losing_execution_leaves_the_committed_step_alone,
    a_worker_without_its_lease_does_not_end_the_run,
    a_step_that_keeps_timing_out_gives_up,
    a_dropped_worker_releases_its_lease,
    a_cancel_stops_the_running_hook,
    a_run_cancelled_while_queued_starts_no_hook,
    record_files_reach_the_hook,
    oversized_store_files_are_refused_at_submit,
    a_dropped_deploy_still_closes_its_audit_row,
    a_deployment_stream_waits_for_the_closing_event,
    concurrent_deploys_sharing_hooks_succeed,
    concurrent_live_changes_record_what_they_replaced,
    unparsable_release_bodies_are_audited,
    abandoned_deployments_are_closed,
);

impl<S: Storage + Clone> Archive<S> {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A deploy body with one process hook per `(name, config)`.
    fn payload(&self, title: &str, hooks: &[(&str, Value)], timeout_seconds: u32) -> Vec<u8> {
        let body =
            osa::testing::process_convention(title, hooks, &["python3", HOOK], timeout_seconds);
        serde_json::to_vec(&body).expect("payload")
    }

    async fn deploy(&self, title: &str, hooks: &[(&str, Value)]) -> ConventionSlug {
        self.deploy_with_timeout(title, hooks, 30).await
    }

    /// [`deploy`](Self::deploy) with hooks limited to `timeout_seconds`.
    async fn deploy_with_timeout(
        &self,
        title: &str,
        hooks: &[(&str, Value)],
        timeout_seconds: u32,
    ) -> ConventionSlug {
        let outcome = self
            .deployer
            .deploy(&self.payload(title, hooks, timeout_seconds), "tester")
            .await
            .expect("deploy");
        outcome.applied.convention.slug
    }

    async fn submit(&self, convention: &ConventionSlug, ids: &[&str]) -> ValidationRunId {
        let records = ids
            .iter()
            .map(|id| InputRecord {
                id: RecordId::new(*id).expect("record id"),
                metadata: json!({"title": id}),
                files: vec![],
            })
            .collect();
        self.engine
            .submit(SubmitValidation {
                convention: convention.clone(),
                records,
            })
            .await
            .expect("submit")
    }

    fn worker(&self) -> Worker {
        Worker::new(
            self.engine.clone(),
            WorkerConfig::default()
                .with_poll_interval(Duration::from_millis(20))
                .with_lease(Duration::from_secs(5))
                .with_heartbeat(Duration::from_secs(1)),
        )
    }

    async fn finish(&self, run: ValidationRunId) -> RunStatus {
        tokio::time::timeout(
            Duration::from_secs(90),
            self.worker().run_until_finished(run),
        )
        .await
        .expect("the run finishes within 90 s")
        .expect("worker")
    }

    /// Another engine on the same storage and blobs, as another process would have
    /// (nothing it does notifies `engine`).
    fn engine_elsewhere(&self) -> Engine {
        Engine::new(
            self.storage.clone(),
            Arc::new(ProcessRunner::new()),
            Blobs::local(self.path("blobs")).expect("blobs"),
            engine_config(self.dir.path()),
        )
    }

    /// Claims the queued step job (leased for 5 s), which must exist.
    async fn claim_step(&self) -> osa::jobs::ClaimedJob {
        self.storage
            .claim(&[STEP_JOB], 1, Duration::from_secs(5))
            .await
            .expect("claim")
            .pop()
            .expect("a step job is queued")
    }

    /// Whether the queue holds no claimable job of the saga.
    async fn no_jobs_left(&self) -> bool {
        self.storage
            .claim(&[STEP_JOB, FINALIZE_JOB], 10, Duration::from_secs(5))
            .await
            .expect("claim")
            .is_empty()
    }

    fn side_effects(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("side-effects.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// (record, hook label, score) of every row of `hook`, sorted.
    async fn rows(&self, hook: &str) -> Vec<(String, String, f64)> {
        self.rows_matching(hook, None).await
    }

    /// The rows of `hook` that validation run `run` published (a later run of the same
    /// records replaces them).
    async fn rows_of(&self, hook: &str, run: ValidationRunId) -> Vec<(String, String, f64)> {
        self.rows_matching(hook, Some(run)).await
    }

    async fn rows_matching(
        &self,
        hook: &str,
        run: Option<ValidationRunId>,
    ) -> Vec<(String, String, f64)> {
        let page = self
            .storage
            .rows(
                &HookName::new(hook).expect("hook"),
                &FeatureQuery {
                    limit: 1000,
                    ..FeatureQuery::default()
                },
            )
            .await
            .expect("rows");
        let mut rows: Vec<_> = page
            .rows
            .into_iter()
            .filter(|r| run.is_none_or(|run| r.validation_run_id == Some(run)))
            .map(|r| {
                let FeatureValue::Text(label) = &r.values[0] else {
                    panic!("hook label")
                };
                let FeatureValue::Float(score) = r.values[1] else {
                    panic!("score")
                };
                (r.record_id.to_string(), label.clone(), score)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    /// Records a pending deployment by hand, like `like` but for `target` (a
    /// deployment as a process would leave it, without the deployer).
    async fn record_deployment_like(
        &self,
        like: &osa::deploy::Deployment,
        target: &str,
    ) -> DeploymentId {
        let id = DeploymentId::new_random();
        self.storage
            .record_deployment(&osa::deploy::NewDeployment {
                id,
                kind: like.kind,
                target: target.into(),
                principal: like.principal.clone(),
                payload_sha256: like.payload_sha256.clone(),
                payload_size: like.payload_size,
                payload_ref: like.payload_ref.clone(),
                rollback_of: None,
            })
            .await
            .expect("record");
        id
    }

    fn hook_config(&self, name: &str) -> Value {
        json!({"name": name, "log": self.path("side-effects.log")})
    }
}

/// A record rejected by hook 1 is not given to hook 2 and has no features; an errored
/// record stops too; accepted records get rows in every hook's table with provenance.
async fn rejected_records_skip_later_hooks<S: Storage + Clone>(archive: Archive<S>) {
    let mut first = archive.hook_config("first");
    first["reject_prefix"] = json!("bad-");
    let mut second = archive.hook_config("second");
    second["error_prefix"] = json!("err-");
    let third = archive.hook_config("third");
    let slug = archive
        .deploy(
            "Three Hooks",
            &[("first", first), ("second", second), ("third", third)],
        )
        .await;
    let run = archive
        .submit(&slug, &["ok-1", "bad-1", "err-1", "ok-22"])
        .await;
    let mut events = archive.engine.events(run).await.expect("events");
    assert_eq!(archive.finish(run).await, RunStatus::Completed);

    assert_eq!(archive.side_effects(), ["first 4", "second 3", "third 2"]);
    let view = archive.engine.get(run).await.expect("view");
    let verdict = |id: &str| {
        view.verdicts
            .iter()
            .find(|v| v.record_id.as_str() == id)
            .expect("verdict")
            .verdict
            .clone()
    };
    assert_eq!(verdict("ok-1"), Verdict::Accepted);
    assert!(
        matches!(verdict("bad-1"), Verdict::Rejected { step: 0, ref reason, .. } if reason == "first rejects bad-1")
    );
    assert!(
        matches!(verdict("err-1"), Verdict::Errored { step: 1, ref error, .. } if error == "second cannot read err-1")
    );
    assert_eq!(
        view.steps.iter().map(|s| s.status).collect::<Vec<_>>(),
        [StepStatus::Failed, StepStatus::Error, StepStatus::Passed]
    );
    assert_eq!(
        (view.steps[0].counts.passed, view.steps[0].counts.rejected),
        (3, 1)
    );
    for hook in ["first", "second", "third"] {
        let rows = archive.rows(hook).await;
        assert_eq!(
            rows,
            [
                ("ok-1".into(), hook.into(), 4.0),
                ("ok-22".into(), hook.into(), 5.0)
            ],
            "{hook}"
        );
    }
    let row = archive
        .storage
        .rows(
            &HookName::new("second").unwrap(),
            &FeatureQuery {
                limit: 1,
                ..FeatureQuery::default()
            },
        )
        .await
        .expect("rows")
        .rows
        .remove(0);
    let provenance = archive
        .engine
        .provenance(&HookName::new("second").unwrap(), row.id)
        .await
        .expect("provenance");
    assert_eq!(provenance.row.validation_run_id, Some(run));
    assert_eq!(Some(provenance.run.id), view.steps[1].hook_run_id);
    assert_eq!(provenance.run.status, HookRunStatus::Error);
    assert_eq!(provenance.release.version, 1);
    assert_eq!(provenance.release.built_by.as_deref(), Some("tester"));
    assert!(
        provenance.run.log_ref.is_some(),
        "a step with errored records keeps its log"
    );

    let mut kinds = Vec::new();
    while let Some(event) = events.next().await {
        kinds.push(event.expect("event").kind);
    }
    assert!(matches!(
        kinds.first(),
        Some(RunEventKind::Submitted {
            records: 4,
            steps: 3
        })
    ));
    assert!(matches!(
        kinds.last(),
        Some(RunEventKind::Finished {
            status: RunStatus::Completed,
            accepted: 2,
            ..
        })
    ));
    assert_eq!(
        kinds
            .iter()
            .filter(|k| matches!(k, RunEventKind::StepFinished { .. }))
            .count(),
        3
    );
}

/// `Engine::submit_stream` takes records one at a time: a stream that ends normally is
/// a run like any other; one that fails half way, or brings a bad record, leaves no
/// run and none of the files stored so far; a repeated id is refused by the storage.
async fn a_streamed_submission_stores_records_as_they_come<S: Storage + Clone>(
    archive: Archive<S>,
) {
    let slug = archive
        .deploy("Streamed", &[("only", archive.hook_config("only"))])
        .await;
    let file = archive.path("notes.txt");
    std::fs::write(&file, "notes").expect("file");
    let record = |id: &str, files: Vec<InputFile>| InputRecord {
        id: RecordId::new(id).expect("id"),
        metadata: json!({"title": id}),
        files,
    };
    let records = vec![
        record("s-1", vec![local_input("notes.txt", file.clone())]),
        record("s-22", vec![]),
        record("s-333", vec![]),
    ];
    let run = archive
        .engine
        .submit_stream(
            slug.clone(),
            futures::stream::iter(records.clone().into_iter().map(Ok)),
        )
        .await
        .expect("submit");
    assert_eq!(archive.finish(run).await, RunStatus::Completed);
    let view = archive.engine.get(run).await.expect("view");
    let ids: Vec<&str> = view.verdicts.iter().map(|v| v.record_id.as_str()).collect();
    assert_eq!(ids, ["s-1", "s-22", "s-333"]);
    assert!(view.verdicts.iter().all(|v| v.verdict == Verdict::Accepted));
    assert_eq!(archive.rows_of("only", run).await.len(), 3);

    let blob_files = || walk(&archive.path("blobs")).len();
    let before = blob_files();
    let failing = futures::stream::iter([
        Ok(records[0].clone()),
        Ok(records[1].clone()),
        Err(osa::Error::invalid("source", "the upstream went away")),
    ]);
    let error = archive
        .engine
        .submit_stream(slug.clone(), failing)
        .await
        .expect_err("a failing stream");
    assert!(
        error.to_string().contains("the upstream went away"),
        "{error}"
    );
    assert_eq!(blob_files(), before, "the files stored so far are deleted");

    let mut bad = records[1].clone();
    bad.metadata = json!(["not", "an", "object"]);
    let error = archive
        .engine
        .submit_stream(
            slug.clone(),
            futures::stream::iter([Ok(records[0].clone()), Ok(bad)]),
        )
        .await
        .expect_err("a bad record");
    assert_eq!(error.kind(), ErrorKind::Invalid);
    assert!(error.to_string().contains("records[1].metadata"), "{error}");
    assert_eq!(blob_files(), before);

    let error = archive
        .engine
        .submit_stream(
            slug.clone(),
            futures::stream::iter([Ok(records[1].clone()), Ok(records[1].clone())]),
        )
        .await
        .expect_err("a repeated id");
    assert_eq!(error.kind(), ErrorKind::Invalid);
    assert!(error.to_string().contains("s-22"), "{error}");
    assert_eq!(
        blob_files(),
        before,
        "a run the storage refused leaves no inputs"
    );

    // `d:1` and `d_1` would share the files directory `d_1`: refused, naming both,
    // and nothing stays (the first one's file included).
    let error = archive
        .engine
        .submit_stream(
            slug,
            futures::stream::iter([
                Ok(record("d:1", vec![local_input("notes.txt", file.clone())])),
                Ok(record("d_1", vec![])),
            ]),
        )
        .await
        .expect_err("ids sharing a files directory");
    assert_eq!(error.kind(), ErrorKind::Invalid);
    assert_eq!(error.field(), Some("records[1].id"));
    let message = error.to_string();
    assert!(
        message.contains(r#""d:1" and "d_1" map to the same files directory `d_1`"#),
        "{message}"
    );
    assert_eq!(blob_files(), before);
}

/// With `batch_limits.max_records` below the records in play, a step runs its hook
/// over consecutive batches of at most that many and commits once: the verdicts, rows
/// and counts are those of one batch, and the hook run's input digest is that of the
/// whole `records.jsonl` a single batch would have had.
async fn a_step_feeds_its_hook_batches_of_at_most_max_records<S: Storage + Clone>(
    archive: Archive<S>,
) {
    let mut first = archive.hook_config("first");
    first["reject_prefix"] = json!("bad-");
    let mut second = archive.hook_config("second");
    second["error_prefix"] = json!("err-");
    let slug = archive
        .deploy("Batched", &[("first", first), ("second", second)])
        .await;
    let ids = ["ok-1", "bad-1", "ok-22", "err-1", "ok-333"];
    let whole = archive.submit(&slug, &ids).await;
    assert_eq!(archive.finish(whole).await, RunStatus::Completed);
    assert_eq!(archive.side_effects(), ["first 5", "second 4"]);
    let whole_view = archive.engine.get(whole).await.expect("view");
    let whole_rows = archive.rows_of("second", whole).await;

    let mut config = engine_config(archive.dir.path());
    config.batch_limits.max_records = 2;
    let batched = Archive {
        engine: Engine::new(
            archive.storage.clone(),
            Arc::new(ProcessRunner::new()),
            Blobs::local(archive.path("blobs")).expect("blobs"),
            config,
        ),
        ..archive
    };
    let run = batched.submit(&slug, &ids).await;
    assert_eq!(batched.finish(run).await, RunStatus::Completed);
    assert_eq!(
        batched.side_effects()[2..],
        ["first 2", "first 2", "first 1", "second 2", "second 2"]
    );
    let view = batched.engine.get(run).await.expect("view");
    let verdicts = |view: &osa::validation::ValidationRunView| -> Vec<(String, Verdict)> {
        view.verdicts
            .iter()
            .map(|v| (v.record_id.to_string(), v.verdict.clone()))
            .collect()
    };
    assert_eq!(verdicts(&view), verdicts(&whole_view));
    assert_eq!(view.steps.len(), 2);
    for (step, whole_step) in view.steps.iter().zip(&whole_view.steps) {
        assert_eq!(step.counts, whole_step.counts);
        assert_eq!(step.status, whole_step.status);
        let mut runs = Vec::new();
        for id in [step.hook_run_id, whole_step.hook_run_id] {
            let id = id.expect("ran");
            runs.push(
                batched
                    .storage
                    .get_run(id)
                    .await
                    .expect("hook run")
                    .expect("exists"),
            );
        }
        let (batched_run, whole_run) = (&runs[0], &runs[1]);
        assert_eq!(batched_run.input_sha256, whole_run.input_sha256);
        assert_eq!(batched_run.counts, whole_run.counts);
    }
    assert_eq!(batched.rows_of("second", run).await, whole_rows);
    assert_eq!(batched.rows_of("first", run).await.len(), 3);
    // The errored record's step keeps a log naming each batch.
    let log_ref = batched
        .storage
        .get_run(view.steps[1].hook_run_id.expect("ran"))
        .await
        .expect("hook run")
        .expect("exists")
        .log_ref
        .expect("a step with an errored record keeps its log");
    let log = batched
        .engine
        .blobs()
        .get(&object_store::path::Path::from(log_ref))
        .await
        .expect("log");
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("[osa] batch 1 of 2 (records 1 to 2)"), "{log}");
    assert!(log.contains("[osa] batch 2 of 2 (records 3 to 4)"), "{log}");
}

/// A convention without hooks accepts every record in the submit's own transaction:
/// completed, with its finished event, and no job left.
async fn zero_hooks_complete_at_once<S: Storage + Clone>(archive: Archive<S>) {
    let slug = archive.deploy("No Hooks", &[]).await;
    let run = archive.submit(&slug, &["a", "b"]).await;
    let view = archive.engine.get(run).await.expect("view");
    assert_eq!(view.run.status, RunStatus::Completed);
    assert!(view.verdicts.iter().all(|v| v.verdict == Verdict::Accepted));
    let events: Vec<RunEventKind> = archive
        .storage
        .run_events(run, 0)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        events,
        [
            RunEventKind::Submitted {
                records: 2,
                steps: 0
            },
            RunEventKind::Finished {
                status: RunStatus::Completed,
                accepted: 2,
                reason: None
            }
        ]
    );
    assert_eq!(archive.finish(run).await, RunStatus::Completed);
    assert!(archive.no_jobs_left().await);
}

/// A run's verdicts read a page at a time: pages of `limit` records in submit order
/// with the cursor of the next, together the full view's verdicts; the summary's
/// counts per verdict, before and after the run; bad limits and unknown runs refused.
async fn a_run_is_read_a_page_at_a_time<S: Storage + Clone>(archive: Archive<S>) {
    let mut first = archive.hook_config("first");
    first["reject_prefix"] = json!("bad-");
    let mut second = archive.hook_config("second");
    second["error_prefix"] = json!("err-");
    let slug = archive
        .deploy("Paged", &[("first", first), ("second", second)])
        .await;
    let ids = ["ok-1", "bad-1", "err-1", "ok-22", "ok-333"];
    let run = archive.submit(&slug, &ids).await;
    let record_ids = |records: &[RecordVerdict]| -> Vec<String> {
        records.iter().map(|r| r.record_id.to_string()).collect()
    };

    // Before any step: every record pending.
    let pending = archive.engine.summary(run, 2).await.expect("summary");
    assert_eq!(pending.run.status, RunStatus::Pending);
    assert_eq!(pending.run.record_count, 5);
    assert_eq!(pending.steps.len(), 2);
    assert_eq!(
        (
            pending.counts.pending,
            pending.counts.accepted,
            pending.counts.rejected,
            pending.counts.errored
        ),
        (5, 0, 0, 0)
    );
    assert_eq!(record_ids(&pending.verdicts), ["ok-1", "bad-1"]);
    assert!(
        pending
            .verdicts
            .iter()
            .all(|v| v.verdict == Verdict::Pending)
    );
    assert_eq!(pending.next, Some(2));

    assert_eq!(archive.finish(run).await, RunStatus::Completed);
    let view = archive.engine.get(run).await.expect("view");

    // Pages of 2: [0, 1], [2, 3], [4], each with the cursor of the next.
    let mut pages = Vec::new();
    let mut from = Some(0);
    while let Some(at) = from {
        let page = archive.engine.records(run, at, 2).await.expect("page");
        from = page.next;
        pages.push((at, record_ids(&page.records), page.next, page.records));
        assert!(pages.len() <= 3, "more pages than records: {pages:?}");
    }
    let shape: Vec<_> = pages
        .iter()
        .map(|(at, ids, next, _)| (*at, ids.clone(), *next))
        .collect();
    assert_eq!(
        shape,
        [
            (0, vec!["ok-1".to_string(), "bad-1".into()], Some(2)),
            (2, vec!["err-1".to_string(), "ok-22".into()], Some(4)),
            (4, vec!["ok-333".to_string()], None),
        ]
    );
    let paged: Vec<RecordVerdict> = pages.into_iter().flat_map(|p| p.3).collect();
    assert_eq!(paged, view.verdicts);
    assert_eq!(paged[0].verdict, Verdict::Accepted);
    assert!(matches!(
        paged[1].verdict,
        Verdict::Rejected { step: 0, .. }
    ));
    assert!(matches!(paged[2].verdict, Verdict::Errored { step: 1, .. }));

    // A page that ends at the last record has no next; past the end, nothing.
    let last = archive.engine.records(run, 3, 2).await.expect("page");
    assert_eq!(record_ids(&last.records), ["ok-22", "ok-333"]);
    assert_eq!(last.next, None);
    for from in [5, 6, u32::MAX] {
        let past = archive.engine.records(run, from, 2).await.expect("page");
        assert!(past.records.is_empty(), "{from}: {past:?}");
        assert_eq!(past.next, None);
    }

    // The summary: counts that agree with the full view, the first page, its cursor.
    let summary = archive.engine.summary(run, 2).await.expect("summary");
    assert_eq!(summary.run, view.run);
    assert_eq!(summary.steps, view.steps);
    assert_eq!(summary.counts, VerdictCounts::of_verdicts(&view.verdicts));
    assert_eq!(
        (
            summary.counts.pending,
            summary.counts.accepted,
            summary.counts.rejected,
            summary.counts.errored
        ),
        (0, 3, 1, 1)
    );
    assert_eq!(summary.verdicts, view.verdicts[..2]);
    assert_eq!(summary.next, Some(2));
    // A limit as large as the run lists it all: the full view with its counts.
    for limit in [5, MAX_RECORD_PAGE] {
        let whole = archive.engine.summary(run, limit).await.expect("summary");
        assert_eq!(whole.verdicts, view.verdicts, "limit {limit}");
        assert_eq!(whole.next, None, "limit {limit}");
    }

    // Limits outside 1..=MAX_RECORD_PAGE name `limit`; an unknown run is not found.
    for limit in [0, MAX_RECORD_PAGE + 1, u32::MAX] {
        let e = archive.engine.records(run, 0, limit).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{limit}: {e}");
        assert_eq!(e.field(), Some("limit"), "{limit}: {e}");
        let e = archive.engine.summary(run, limit).await.unwrap_err();
        assert_eq!(e.field(), Some("limit"), "{limit}: {e}");
    }
    let unknown = ValidationRunId::new_random();
    for e in [
        archive.engine.records(unknown, 0, 2).await.unwrap_err(),
        archive.engine.summary(unknown, 2).await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }
}

/// A finished run leaves nothing in the work dir but the trash and an empty spool
/// directory; the sweep a worker runs
/// at start removes the trash and the batch directories of ended runs, and leaves those
/// of runs in progress and of runs this archive does not know.
async fn work_dir_is_left_clean<S: Storage + Clone>(archive: Archive<S>) {
    // Two hooks: the second step's batch is written while the first step commits.
    let slug = archive
        .deploy(
            "Sweep",
            &[
                ("only", archive.hook_config("only")),
                ("then", archive.hook_config("then")),
            ],
        )
        .await;
    let done = archive.submit(&slug, &["a"]).await;
    assert_eq!(archive.finish(done).await, RunStatus::Completed);
    let work = archive.path("work");
    let listing = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(
        listing(&work),
        [".spool", ".trash"],
        "only the spool and the trash stay"
    );
    assert!(
        listing(&work.join(".spool")).is_empty(),
        "no spool file is left"
    );
    // The step's directory is deleted in the background.
    for _ in 0..100 {
        if listing(&work.join(".trash")).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listing(&work.join(".trash")).is_empty(), "trash emptied");

    let pending = archive.submit(&slug, &["b"]).await;
    let unknown = ValidationRunId::new_random();
    let leftovers = [
        format!("{done}-step-0"),
        done.to_string(),
        format!("{pending}-step-0"),
        format!("{unknown}-step-1"),
        "notes".to_string(),
    ];
    for name in &leftovers {
        std::fs::create_dir_all(work.join(name).join("staging")).expect("leftover");
        std::fs::write(work.join(name).join("records.jsonl"), "{}").expect("file");
    }
    std::fs::create_dir_all(work.join(".trash").join("aside")).expect("trash");
    // Copies of blobs being downloaded when their process died: a stale one, and one
    // that may still be in progress.
    let stale = std::fs::File::create(work.join(".spool").join("copy-stale")).expect("copy");
    stale
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600))
        .expect("mtime");
    std::fs::write(work.join(".spool").join("copy-fresh"), "{}\n").expect("copy");

    let removed = archive.engine.sweep_work_dir().await.expect("sweep");
    assert_eq!(
        removed, 4,
        "two of the ended run, one in the trash, one stale copy"
    );
    assert_eq!(listing(&work.join(".spool")), ["copy-fresh"]);
    let mut kept = vec![
        ".spool".to_string(),
        ".trash".to_string(),
        format!("{pending}-step-0"),
        format!("{unknown}-step-1"),
        "notes".to_string(),
    ];
    kept.sort();
    assert_eq!(listing(&work), kept);
    assert!(listing(&work.join(".trash")).is_empty());
}

/// What an execution of [`TwoMinds`] does with record `a`.
#[derive(Debug, Clone, Copy)]
enum Mind {
    Pass,
    Reject,
    Fail(osa::runner::FailureKind),
}

/// A runner (a fake: it runs no process) whose first execution does `first.1` after
/// `first.0`, and whose later executions do `later.1` after `later.0`.
#[derive(Debug)]
struct TwoMinds {
    calls: std::sync::atomic::AtomicUsize,
    first: (Duration, Mind),
    later: (Duration, Mind),
}

#[async_trait::async_trait]
impl osa::runner::HookRunner for TwoMinds {
    fn name(&self) -> &'static str {
        "two-minds"
    }

    async fn run(
        &self,
        job: &osa::runner::RunJob,
    ) -> Result<osa::runner::Execution, osa::runner::RunFailure> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (pause, mind) = if call == 0 { self.first } else { self.later };
        tokio::time::sleep(pause).await;
        let (file, line) = match mind {
            Mind::Pass => (
                "features.jsonl",
                format!(r#"{{"id":"a","features":[{{"hook":"call {call}","score":1.0}}]}}"#),
            ),
            Mind::Reject => (
                "rejections.jsonl",
                r#"{"id":"a","reason":"changed its mind"}"#.to_string(),
            ),
            Mind::Fail(kind) => {
                return Err(osa::runner::RunFailure::new(kind, "failing on purpose"));
            }
        };
        std::fs::write(job.batch.output.join(file), format!("{line}\n")).expect("output");
        Ok(osa::runner::Execution {
            duration: pause,
            log: osa::runner::CapturedLog::default(),
        })
    }
}

/// Runs one step of a one-record run twice with `runner`: the first execution's lease
/// runs out while its hook runs (no heartbeat within the lease), and a second worker
/// claims the job again and runs it too; both finish. Then a worker of a third engine
/// (nothing in memory) takes the run to its end. Returns the run, its final state and
/// that engine.
async fn two_executions_of_one_step<S: Storage + Clone>(
    archive: &Archive<S>,
    runner: Arc<TwoMinds>,
) -> (ValidationRunId, RunStatus, Engine) {
    let slug = archive
        .deploy("Two Minds", &[("scored", archive.hook_config("scored"))])
        .await;
    let blobs = archive.engine.blobs().clone();
    let engine = |work: &str| {
        Engine::new(
            archive.storage.clone(),
            runner.clone(),
            blobs.clone(),
            engine_config(&archive.path(work)),
        )
    };
    let (first, second, third) = (engine("a"), engine("b"), engine("c"));
    let run = first
        .submit(SubmitValidation {
            convention: slug,
            records: vec![InputRecord {
                id: RecordId::new("a").expect("id"),
                metadata: json!({}),
                files: vec![],
            }],
        })
        .await
        .expect("submit");
    let slow_heartbeat = WorkerConfig::default()
        .with_lease(Duration::from_millis(500))
        .with_heartbeat(Duration::from_secs(60));
    let job = archive
        .storage
        .claim(&[STEP_JOB], 1, Duration::from_millis(500))
        .await
        .expect("claim")
        .remove(0);
    let one = tokio::spawn({
        let worker = Worker::new(first, slow_heartbeat);
        async move { worker.process(job).await }
    });
    tokio::time::sleep(Duration::from_millis(900)).await;
    let again = archive
        .storage
        .claim(&[STEP_JOB], 1, Duration::from_secs(30))
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(
        again.attempt, 2,
        "the expired lease lets the job be claimed again"
    );
    let two = tokio::spawn({
        let worker = Worker::new(second, slow_heartbeat);
        async move { worker.process(again).await }
    });
    one.await.expect("first execution");
    two.await.expect("second execution");
    assert_eq!(runner.calls.load(std::sync::atomic::Ordering::SeqCst), 2);

    let status = tokio::time::timeout(
        Duration::from_secs(60),
        Worker::new(
            third.clone(),
            WorkerConfig::default().with_poll_interval(Duration::from_millis(20)),
        )
        .run_until_finished(run),
    )
    .await
    .expect("the run finishes")
    .expect("worker");
    (run, status, third)
}

/// Two executions of one step: the first commits, the second's commit is refused, and
/// what the second stored must not replace what the committed step refers to; the
/// finalize publishes the committed execution's rows.
async fn a_losing_execution_leaves_the_committed_step_alone<S: Storage + Clone>(
    archive: Archive<S>,
) {
    let runner = Arc::new(TwoMinds {
        calls: 0.into(),
        first: (Duration::from_millis(1500), Mind::Pass),
        later: (Duration::from_millis(3000), Mind::Reject),
    });
    let (run, status, engine) = two_executions_of_one_step(&archive, runner).await;
    assert_eq!(status, RunStatus::Completed);
    let view = engine.get(run).await.expect("view");
    assert_eq!(view.verdicts[0].verdict, Verdict::Accepted);
    assert_eq!(
        archive.rows("scored").await,
        [("a".to_string(), "call 0".to_string(), 1.0)],
        "the committed execution's rows are published"
    );
}

/// An execution whose lease expired fails in a way that would abort the run (the
/// image cannot be pulled), after another worker took the job over and committed the
/// step: it no longer holds the job, so it leaves the run alone.
async fn a_worker_without_its_lease_does_not_end_the_run<S: Storage + Clone>(archive: Archive<S>) {
    let runner = Arc::new(TwoMinds {
        calls: 0.into(),
        first: (
            Duration::from_millis(1500),
            Mind::Fail(osa::runner::FailureKind::ImagePull),
        ),
        later: (Duration::ZERO, Mind::Pass),
    });
    let (run, status, engine) = two_executions_of_one_step(&archive, runner).await;
    let view = engine.get(run).await.expect("view");
    assert_eq!(status, RunStatus::Completed, "{:?}", view.run.failure);
    assert_eq!(
        archive.rows("scored").await,
        [("a".to_string(), "call 1".to_string(), 1.0)]
    );
}

/// One record, hook 1 exits non-zero: the run fails, the hook run is `error` with its
/// log stored and readable; files reach the hook.
async fn failing_hook_fails_the_run_with_a_readable_log<S: Storage + Clone>(archive: Archive<S>) {
    let mut config = archive.hook_config("broken");
    config["exit_code"] = json!(3);
    let slug = archive
        .deploy(
            "Broken Hook",
            &[("broken", config), ("never", archive.hook_config("never"))],
        )
        .await;
    let file = archive.path("input.txt");
    std::fs::write(&file, "hello").expect("file");
    let run = archive
        .engine
        .submit(one_record(
            slug,
            "only",
            vec![local_input("input.txt", file)],
        ))
        .await
        .expect("submit");
    assert_eq!(archive.finish(run).await, RunStatus::Failed);
    assert_eq!(
        archive.side_effects(),
        ["broken 1"],
        "the second hook never ran"
    );
    let view = archive.engine.get(run).await.expect("view");
    assert!(
        matches!(&view.verdicts[0].verdict, Verdict::Errored { error, .. } if error.contains("hook exited with code 3"))
    );
    assert_eq!(
        view.run.failure.as_deref(),
        Some("no record was accepted: 1 errored, 0 rejected")
    );
    let hook_run_id = view.steps[0].hook_run_id.expect("hook run");
    let hook_run = archive
        .storage
        .get_run(hook_run_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(hook_run.status, HookRunStatus::Error);
    assert!(hook_run.log_ref.is_some());
    let log = archive.engine.hook_log(hook_run_id).await.expect("log");
    assert!(String::from_utf8_lossy(&log).contains("broken: failing on purpose"));
    assert_eq!(view.steps[1].status, StepStatus::Pending);
}

/// Record files reach the hook with their names, however awkward (characters the
/// object store escapes in keys), from a local path and from the object store; a file
/// in the store is copied, so changing it after the submit changes nothing.
async fn record_files_reach_the_hook<S: Storage + Clone>(archive: Archive<S>) {
    let mut config = archive.hook_config("reader");
    config["files_log"] = json!(archive.path("files.log"));
    let slug = archive.deploy("Files", &[("reader", config)]).await;
    let local = archive.path("local input");
    std::fs::write(&local, "from disk").expect("file");
    // A key as the uploader names it; the store escapes `%` and `#` in its paths.
    let raw_key = "uploads/u1/100% #2.cif";
    let upload = object_store::path::Path::from(raw_key);
    archive
        .engine
        .blobs()
        .put(&upload, "from the store")
        .await
        .expect("upload");
    let run = archive
        .engine
        .submit(one_record(
            slug,
            "only",
            vec![
                local_input("a b?.cif", local),
                store_input("c#1.txt", raw_key),
            ],
        ))
        .await
        .expect("submit");
    archive
        .engine
        .blobs()
        .put(&upload, "changed after the submit")
        .await
        .expect("overwrite");
    let status = archive.finish(run).await;
    let view = archive.engine.get(run).await.expect("view");
    assert_eq!(status, RunStatus::Completed, "{:?}", view.verdicts);
    let mut seen: Vec<String> = std::fs::read_to_string(archive.path("files.log"))
        .expect("files log")
        .lines()
        .map(str::to_string)
        .collect();
    seen.sort();
    assert_eq!(seen, ["a b?.cif from disk", "c#1.txt from the store"]);
}

/// A file from the object store over the size limit is refused at submit, measured on
/// the run's own copy, and nothing of the refused submit stays in the store.
async fn oversized_store_files_are_refused_at_submit<S: Storage + Clone>(archive: Archive<S>) {
    let slug = archive
        .deploy("Small Files", &[("reader", archive.hook_config("reader"))])
        .await;
    let mut config = engine_config(archive.dir.path());
    config.batch_limits.max_file_bytes = 4;
    let strict = Engine::new(
        archive.storage.clone(),
        Arc::new(ProcessRunner::new()),
        archive.engine.blobs().clone(),
        config,
    );
    let key = "uploads/u2/big.txt";
    strict
        .blobs()
        .put(&object_store::path::Path::from(key), "ten bytes!")
        .await
        .expect("upload");
    let small = archive.path("small.txt");
    std::fs::write(&small, "ok").expect("file");
    let refused = strict
        .submit(one_record(
            slug,
            "big",
            vec![
                // Stored first, then removed with the rest of the refused submit.
                local_input("small.txt", small),
                store_input("big.txt", key),
            ],
        ))
        .await
        .expect_err("over the limit");
    assert_eq!(refused.kind(), ErrorKind::Invalid, "{refused}");
    assert!(
        refused.to_string().contains("over the limit of 4 bytes"),
        "{refused}"
    );
    let left: Vec<_> = walk(&archive.path("blobs").join("runs"));
    assert!(left.is_empty(), "the run's files were removed: {left:?}");
}

/// A submission of one record `id` (empty metadata) with `files`.
fn one_record(convention: ConventionSlug, id: &str, files: Vec<InputFile>) -> SubmitValidation {
    SubmitValidation {
        convention,
        records: vec![InputRecord {
            id: RecordId::new(id).unwrap(),
            metadata: json!({}),
            files,
        }],
    }
}

/// A record file `name` read from the local path `path`.
fn local_input(name: &str, path: PathBuf) -> InputFile {
    InputFile {
        name: FileName::new(name).unwrap(),
        source: FileSource::Local { path },
    }
}

/// A record file `name` copied from the object store's `key`.
fn store_input(name: &str, key: &str) -> InputFile {
    InputFile {
        name: FileName::new(name).unwrap(),
        source: FileSource::Object { key: key.into() },
    }
}

/// Every file under `dir` (none when it does not exist).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// A deploy whose caller stops waiting at once (a client gone) is still applied, and
/// its audit row is closed: it is not left pending or applying.
async fn a_dropped_deploy_still_closes_its_audit_row<S: Storage + Clone>(archive: Archive<S>) {
    let body = archive.payload("Dropped", &[("only", archive.hook_config("only"))], 30);
    let dropped =
        tokio::time::timeout(Duration::ZERO, archive.deployer.deploy(&body, "impatient")).await;
    assert!(dropped.is_err(), "the deploy cannot have finished already");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = archive
            .deployer
            .list(&DeploymentFilter::default())
            .await
            .expect("list");
        if let [row] = rows.as_slice()
            && row.status == DeploymentStatus::Succeeded
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deployment never closed: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deployments a dead process left `pending` or `applying` are closed as failed, with
/// the event that ends their streams; younger ones, and ended ones, are left alone.
async fn abandoned_deployments_are_closed<S: Storage + Clone>(archive: Archive<S>) {
    let body = archive.payload("Finished", &[("only", archive.hook_config("only"))], 30);
    let done = archive
        .deployer
        .deploy(&body, "deployer")
        .await
        .expect("deploy")
        .deployment;
    let storage = &archive.storage;
    let mut stuck = Vec::new();
    for status in [None, Some(DeploymentStatus::Applying)] {
        let id = archive.record_deployment_like(&done, "stuck").await;
        if let Some(status) = status {
            storage
                .set_deployment_status(id, status, None)
                .await
                .expect("status");
        }
        stuck.push(id);
    }
    assert_eq!(
        archive
            .deployer
            .close_abandoned(Duration::from_secs(3600))
            .await
            .expect("close"),
        0,
        "nothing is an hour old"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        archive
            .deployer
            .close_abandoned(Duration::ZERO)
            .await
            .expect("close"),
        2
    );
    for id in stuck {
        let row = archive.deployer.get(id).await.expect("get");
        assert_eq!(row.status, DeploymentStatus::Failed);
        assert!(row.error.as_deref().unwrap_or("").starts_with("abandoned"));
        let events = archive
            .deployer
            .events(id, Duration::from_millis(20))
            .await
            .expect("stream");
        let messages: Vec<String> =
            tokio::time::timeout(Duration::from_secs(10), events.collect::<Vec<_>>())
                .await
                .expect("the stream ends")
                .into_iter()
                .map(|e| e.expect("event").message)
                .collect();
        assert_eq!(messages.last().map(String::as_str), Some("failed"));
    }
    assert_eq!(
        archive.deployer.get(done.id).await.expect("get").status,
        DeploymentStatus::Succeeded
    );
    assert_eq!(
        archive
            .deployer
            .close_abandoned(Duration::ZERO)
            .await
            .expect("close"),
        0
    );
}

/// A deployment's event stream ends with its closing event, also when the stream sees
/// the terminal status before that event is written (a succeeded deploy commits its
/// status first and appends what it applied right after).
async fn a_deployment_stream_waits_for_the_closing_event<S: Storage + Clone>(archive: Archive<S>) {
    let body = archive.payload("Streamed", &[("only", archive.hook_config("only"))], 30);
    let outcome = archive
        .deployer
        .deploy(&body, "streamer")
        .await
        .expect("deploy");
    // The same shape by hand: a deployment already succeeded, its last events late.
    let id = archive
        .record_deployment_like(&outcome.deployment, "late")
        .await;
    let storage = &archive.storage;
    for status in [DeploymentStatus::Applying, DeploymentStatus::Succeeded] {
        storage
            .set_deployment_status(id, status, None)
            .await
            .expect("status");
    }
    let late = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for message in ["release created", "succeeded"] {
            storage
                .append_deployment_event(id, message, json!({}))
                .await
                .expect("event");
        }
    };
    let stream = archive
        .deployer
        .events(id, Duration::from_millis(20))
        .await
        .expect("stream");
    let (events, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>()),
        late
    );
    let messages: Vec<String> = events
        .expect("the stream ends")
        .into_iter()
        .map(|e| e.expect("event").message)
        .collect();
    assert_eq!(messages, ["release created", "succeeded"]);
}

/// Two conventions sharing hooks, listed in opposite orders, deployed at the same time
/// with new releases, round after round: every deploy succeeds (hooks are locked in
/// one order, so the two transactions never wait on each other in a cycle).
async fn concurrent_deploys_sharing_hooks_succeed<S: Storage + Clone>(archive: Archive<S>) {
    for round in 0..12 {
        let x = ("shared_x", json!({"name": "x", "round": round}));
        let y = ("shared_y", json!({"name": "y", "round": round}));
        let forward = archive.payload("Forward", &[x.clone(), y.clone()], 30);
        let backward = archive.payload("Backward", &[y, x], 30);
        let (a, b) = tokio::join!(
            archive.deployer.deploy(&forward, "a"),
            archive.deployer.deploy(&backward, "b")
        );
        for (which, outcome) in [("forward", a), ("backward", b)] {
            if let Err(e) = outcome {
                panic!("round {round}: the {which} deploy failed: {e}");
            }
        }
    }
}

/// Concurrent live changes of one hook each record, as `rollback_of`, the release that
/// was live just before it in the order they were applied.
async fn concurrent_live_changes_record_what_they_replaced<S: Storage + Clone>(
    archive: Archive<S>,
) {
    let mut releases = Vec::new();
    for version in 1..=3 {
        let config = json!({"name": "pinned", "version": version});
        let outcome = archive
            .deployer
            .deploy(&archive.payload("Pinned", &[("pinned", config)], 30), "a")
            .await
            .expect("deploy");
        releases.push(outcome.applied.releases[0].release.clone());
    }
    let hook = releases[0].hook.clone();
    let id_of = |version: u32| releases[version as usize - 1].id;
    for round in 0..8 {
        archive
            .deployer
            .set_live(&hook, 3, "reset")
            .await
            .expect("reset");
        let (a, b) = tokio::join!(
            archive.deployer.set_live(&hook, 1, "a"),
            archive.deployer.set_live(&hook, 2, "b")
        );
        let (a, b) = (a.expect("to 1"), b.expect("to 2"));
        // Whichever applied first replaced version 3; the other replaced the first.
        let recorded = (a.deployment.rollback_of, b.deployment.rollback_of);
        let one_then_two = (Some(id_of(3)), Some(id_of(1)));
        let two_then_one = (Some(id_of(2)), Some(id_of(3)));
        assert!(
            recorded == one_then_two || recorded == two_then_one,
            "round {round}: {recorded:?}"
        );
    }
}

/// A release body that does not parse is refused and audited, as a convention body
/// is.
async fn unparsable_release_bodies_are_audited<S: Storage + Clone>(archive: Archive<S>) {
    let hook = HookName::new("some_hook").unwrap();
    let refused = archive
        .deployer
        .create_release(&hook, b"{\"command\": [", "releaser")
        .await
        .expect_err("not JSON");
    assert_eq!(refused.kind(), ErrorKind::Invalid);
    let rows = archive
        .deployer
        .list(&DeploymentFilter::default())
        .await
        .expect("list");
    let [row] = rows.as_slice() else {
        panic!("one audit row: {rows:?}");
    };
    assert_eq!(row.status, DeploymentStatus::Failed);
    assert_eq!(row.target, "some_hook");
    assert_eq!(row.principal, "releaser");
}

/// A hook that times out once is retried with backoff and the run completes.
async fn transient_failure_is_retried<S: Storage + Clone>(archive: Archive<S>) {
    let mut config = archive.hook_config("flaky");
    config["sleep_once"] = json!(archive.path("slept-once"));
    config["sleep_seconds"] = json!(10);
    let slug = archive
        .deploy_with_timeout("Flaky Hook", &[("flaky", config)], 1)
        .await;
    let run = archive.submit(&slug, &["a"]).await;
    assert_eq!(archive.finish(run).await, RunStatus::Completed);
    assert_eq!(
        archive.side_effects(),
        ["flaky 1", "flaky 1"],
        "executed twice: timeout, then success"
    );
    assert_eq!(archive.rows("flaky").await.len(), 1);
}

/// A hook that always times out is retried as often as the failure policy allows
/// (`max_retries`, counted over the job's deliveries), then the step gives up: its
/// records are errored with the reason and the run fails on its own, long before the
/// job would run out of deliveries.
async fn a_step_that_keeps_timing_out_gives_up<S: Storage + Clone>(archive: Archive<S>) {
    let mut config = archive.hook_config("stuck");
    config["sleep_always"] = json!(true);
    config["sleep_seconds"] = json!(10);
    let slug = archive
        .deploy_with_timeout("Stuck Hook", &[("stuck", config)], 1)
        .await;
    let run = archive.submit(&slug, &["a"]).await;
    assert_eq!(archive.finish(run).await, RunStatus::Failed);
    let retries = osa::policy::FailurePolicy::default().max_retries as usize;
    assert!(retries < engine_config(archive.dir.path()).max_attempts as usize);
    assert_eq!(
        archive.side_effects().len(),
        1 + retries,
        "the first execution and {retries} retries"
    );
    let view = archive.engine.get(run).await.expect("view");
    let Verdict::Errored { error, .. } = &view.verdicts[0].verdict else {
        panic!("{:?}", view.verdicts[0].verdict)
    };
    assert!(
        error.contains(&format!("gave up after {retries} retries")),
        "{error}"
    );
    assert_eq!(
        view.run.failure.as_deref(),
        Some("no record was accepted: 1 errored, 0 rejected")
    );
}

/// The `Worker::run` future is dropped while its hook runs: the job's lease is no longer
/// renewed, so once it expires the job is claimable again (second delivery) and another
/// worker finishes the run.
async fn a_dropped_worker_releases_its_lease<S: Storage + Clone>(archive: Archive<S>) {
    const LEASE: Duration = Duration::from_secs(2);
    let mut config = archive.hook_config("slow");
    config["sleep_once"] = json!(archive.path("slept"));
    config["sleep_seconds"] = json!(30);
    let slug = archive
        .deploy_with_timeout("Slow Hook", &[("slow", config)], 60)
        .await;
    let run = archive.submit(&slug, &["rec-1"]).await;
    let worker = || {
        Worker::new(
            archive.engine.clone(),
            WorkerConfig::default()
                .with_poll_interval(Duration::from_millis(20))
                .with_lease(LEASE)
                .with_heartbeat(Duration::from_millis(200)),
        )
    };

    let started = async {
        while archive.side_effects().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let first = worker();
    tokio::select! {
        result = first.run(std::future::pending()) => panic!("the worker stopped: {result:?}"),
        _ = tokio::time::timeout(Duration::from_secs(60), started) => {}
    }
    assert_eq!(
        archive.side_effects(),
        ["slow 1"],
        "the hook started before the worker was dropped"
    );
    let dropped = std::time::Instant::now();

    // Several heartbeats fit in the lease, so a renewal still running after the drop
    // would keep the job from ever being claimed.
    let deadline = dropped + LEASE * 4;
    let job = loop {
        let mut jobs = archive
            .storage
            .claim(&[STEP_JOB, FINALIZE_JOB], 1, LEASE)
            .await
            .expect("claim");
        if let Some(job) = jobs.pop() {
            break job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job of a dropped worker is claimable once its lease expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        dropped.elapsed() >= LEASE / 2,
        "the job was still leased right after the drop"
    );
    assert_eq!((job.kind.as_str(), job.attempt), (STEP_JOB, 2));

    let second = worker();
    second.process(job).await;
    let status = tokio::time::timeout(Duration::from_secs(60), second.run_until_finished(run))
        .await
        .expect("the run finishes within 60 s")
        .expect("worker");
    assert_eq!(status, RunStatus::Completed);
    assert_eq!(archive.side_effects(), ["slow 1", "slow 1"]);
}

/// A run cancelled from another engine (as from another process: no in-process
/// notification) while its hook runs: the worker notices within a heartbeat, kills the
/// hook, commits nothing of the step and completes the job; later hooks never run.
async fn a_cancel_stops_the_running_hook<S: Storage + Clone>(archive: Archive<S>) {
    let pid_file = archive.path("slow.pid");
    let mut slow = archive.hook_config("slow");
    slow["sleep_always"] = json!(true);
    slow["sleep_seconds"] = json!(60);
    slow["pid_file"] = json!(pid_file);
    let after = archive.hook_config("after");
    let slug = archive
        .deploy_with_timeout("Cancelled Run", &[("slow", slow), ("after", after)], 120)
        .await;
    let run = archive.submit(&slug, &["rec-1"]).await;
    let job = archive.claim_step().await;
    let worker = Worker::new(
        archive.engine.clone(),
        WorkerConfig::default()
            .with_lease(Duration::from_secs(5))
            .with_heartbeat(Duration::from_millis(200)),
    );
    let elsewhere = archive.engine_elsewhere();
    let cancel = async {
        let started = std::time::Instant::now();
        while !pid_file.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the hook never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .expect("pid")
            .parse()
            .expect("pid number");
        assert!(elsewhere.cancel(run).await.expect("cancel"));
        (pid, std::time::Instant::now())
    };
    let ((), (pid, cancelled_at)) = tokio::join!(worker.process(job), cancel);
    let stopped_after = cancelled_at.elapsed();
    assert!(
        stopped_after < Duration::from_secs(20),
        "the job ended {stopped_after:?} after the cancel; the hook sleeps 60 s"
    );
    assert!(process_ended(pid), "the hook process {pid} still runs");
    let view = archive.engine.get(run).await.expect("view");
    assert_eq!(view.run.status, RunStatus::Cancelled);
    assert!(
        view.steps.iter().all(|s| s.hook_run_id.is_none()),
        "no step committed: {:?}",
        view.steps
    );
    assert_eq!(view.verdicts[0].verdict, Verdict::Pending);
    assert_eq!(archive.side_effects(), ["slow 1"]);
    // The job was completed, not abandoned: nothing to claim, even once its lease
    // would have expired.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(archive.no_jobs_left().await);
}

/// A run cancelled from another engine (no in-process notification) while its first
/// job waits in the queue: the worker of the engine that submitted it starts no hook,
/// commits nothing and completes the job.
async fn a_run_cancelled_while_queued_starts_no_hook<S: Storage + Clone>(archive: Archive<S>) {
    let slug = archive
        .deploy("Queued Run", &[("first", archive.hook_config("first"))])
        .await;
    let run = archive.submit(&slug, &["rec-1", "rec-2"]).await;
    let elsewhere = archive.engine_elsewhere();
    assert!(elsewhere.cancel(run).await.expect("cancel"));
    let job = archive.claim_step().await;
    archive.worker().process(job).await;
    assert_eq!(archive.started.load(Ordering::SeqCst), 0, "a hook started");
    let view = archive.engine.get(run).await.expect("view");
    assert_eq!(view.run.status, RunStatus::Cancelled);
    assert!(view.steps.iter().all(|s| s.hook_run_id.is_none()));
    assert!(archive.side_effects().is_empty());
    assert!(archive.no_jobs_left().await, "the job was completed");
}

/// A `set_live` during a run does not change the release the run uses; the next run
/// uses the new live release.
async fn live_changes_do_not_split_a_run<S: Storage + Clone>(archive: Archive<S>) {
    let slug = archive
        .deploy("Versioned", &[("versioned", archive.hook_config("v1"))])
        .await;
    let before = archive.submit(&slug, &["a"]).await;
    let hook = HookName::new("versioned").unwrap();
    let v2 = json!({
        "command": ["python3", HOOK],
        "digest": Digest::of_bytes(b"v2"),
        "config": archive.hook_config("v2"),
        "source_ref": "git:v2"
    });
    let created = archive
        .deployer
        .create_release(&hook, &serde_json::to_vec(&v2).unwrap(), "tester")
        .await
        .expect("release");
    assert!(created.applied.created);
    assert_eq!(created.applied.release.version, 2);
    assert_eq!(archive.finish(before).await, RunStatus::Completed);
    assert_eq!(
        archive.rows("versioned").await,
        [("a".into(), "v1".into(), 1.0)]
    );
    let after = archive.submit(&slug, &["b"]).await;
    assert_eq!(archive.finish(after).await, RunStatus::Completed);
    let rows = archive.rows("versioned").await;
    assert_eq!(rows[1], ("b".into(), "v2".into(), 1.0));
    // Roll back: the next run uses version 1 again.
    let rollback = archive
        .deployer
        .set_live(&hook, 1, "tester")
        .await
        .expect("rollback");
    assert_eq!(
        rollback.deployment.rollback_of,
        Some(created.applied.release.id)
    );
    let third = archive.submit(&slug, &["c"]).await;
    assert_eq!(archive.finish(third).await, RunStatus::Completed);
    assert_eq!(
        archive.rows("versioned").await[2],
        ("c".into(), "v1".into(), 1.0)
    );
}

/// Every job delivered twice gives the same final state as single delivery.
async fn duplicate_deliveries_change_nothing<S: Storage + Clone>(archive: Archive<S>) {
    let mut first = archive.hook_config("first");
    first["reject_prefix"] = json!("bad-");
    let slug = archive
        .deploy(
            "Twice",
            &[("first", first), ("second", archive.hook_config("second"))],
        )
        .await;
    let ids = ["ok-1", "bad-1", "ok-333"];
    let single = archive.submit(&slug, &ids).await;
    assert_eq!(archive.finish(single).await, RunStatus::Completed);
    let single_view = archive.engine.get(single).await.expect("view");
    let single_rows = (
        archive.rows_of("first", single).await,
        archive.rows_of("second", single).await,
    );
    assert!(!single_rows.0.is_empty() && !single_rows.1.is_empty());

    let twice = archive.submit(&slug, &ids).await;
    let worker = archive.worker();
    let mut deliveries = 0;
    loop {
        let jobs = archive
            .storage
            .claim(&[STEP_JOB, FINALIZE_JOB], 1, Duration::from_secs(30))
            .await
            .expect("claim");
        let Some(job) = jobs.into_iter().next() else {
            break;
        };
        worker.process(job.clone()).await;
        worker.process(job).await;
        deliveries += 2;
    }
    assert_eq!(
        deliveries, 6,
        "two steps and a finalize, each delivered twice"
    );
    let twice_view = archive.engine.get(twice).await.expect("view");
    assert_eq!(twice_view.run.status, RunStatus::Completed);
    assert_eq!(twice_view.verdicts, single_view.verdicts);
    assert_eq!(
        twice_view
            .steps
            .iter()
            .map(|s| (s.status, s.counts))
            .collect::<Vec<_>>(),
        single_view
            .steps
            .iter()
            .map(|s| (s.status, s.counts))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        (
            archive.rows_of("first", twice).await,
            archive.rows_of("second", twice).await
        ),
        single_rows
    );
    for step in &twice_view.steps {
        let run = archive
            .storage
            .get_run(step.hook_run_id.expect("hook run"))
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(run.counts, step.counts);
    }
    let events = archive
        .engine
        .events(twice)
        .await
        .expect("events")
        .collect::<Vec<_>>()
        .await;
    let finished = events
        .iter()
        .filter(|e| matches!(e.as_ref().unwrap().kind, RunEventKind::Finished { .. }))
        .count();
    assert_eq!(finished, 1);
}

/// The same payload twice: one release, two succeeded audit rows with one sha256; a
/// conflicting deploy leaves nothing but a failed audit row; the principal comes from
/// the caller only.
async fn deploys_are_audited<S: Storage + Clone>(archive: Archive<S>) {
    let body = archive.payload(
        "Audited",
        &[("audited", archive.hook_config("audited"))],
        30,
    );
    let first = archive
        .deployer
        .deploy(&body, "alice")
        .await
        .expect("first");
    let second = archive
        .deployer
        .deploy(&body, "alice")
        .await
        .expect("second");
    assert_eq!(
        archive
            .storage
            .list_releases(&HookName::new("audited").unwrap())
            .await
            .expect("releases")
            .len(),
        1
    );
    assert!(!second.applied.releases[0].created);
    assert_eq!(first.deployment.status, DeploymentStatus::Succeeded);
    assert_eq!(second.deployment.status, DeploymentStatus::Succeeded);
    assert_eq!(
        first.deployment.payload_sha256,
        second.deployment.payload_sha256
    );
    assert_eq!(first.deployment.principal, "alice");
    let stored = archive
        .engine
        .blobs()
        .get(&object_store::path::Path::from(
            first.deployment.payload_ref.as_str(),
        ))
        .await
        .expect("payload");
    assert_eq!(Digest::of_bytes(&stored), first.deployment.payload_sha256);
    assert_eq!(stored.len() as u64, first.deployment.payload_size);

    let mut conflicting: Value = serde_json::from_slice(&body).unwrap();
    conflicting["hooks"][0]["feature"]["cardinality"] = json!("many");
    conflicting["hooks"][0]["release"]["digest"] = json!(Digest::of_bytes(b"new"));
    let err = archive
        .deployer
        .deploy(&serde_json::to_vec(&conflicting).unwrap(), "bob")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        archive
            .storage
            .list_releases(&HookName::new("audited").unwrap())
            .await
            .expect("releases")
            .len(),
        1
    );

    let mut smuggled: Value = serde_json::from_slice(&body).unwrap();
    smuggled["principal"] = json!("root");
    let err = archive
        .deployer
        .deploy(&serde_json::to_vec(&smuggled).unwrap(), "mallory")
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("principal"));

    let all = archive
        .storage
        .list_deployments(&DeploymentFilter {
            limit: 10,
            ..DeploymentFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].principal, "mallory");
    assert_eq!(all[0].status, DeploymentStatus::Failed);
    assert_eq!(all[1].principal, "bob");
    assert_eq!(all[1].status, DeploymentStatus::Failed);
    assert!(
        all[1]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("fixed forever")
    );
    assert!(all.iter().all(|d| d.principal != "root"));
    let events = archive
        .storage
        .deployment_events(first.deployment.id, 0)
        .await
        .expect("events");
    // The deployer's stream replays the same events and ends (the deploy is over).
    let streamed: Vec<_> = archive
        .deployer
        .events(first.deployment.id, Duration::from_millis(10))
        .await
        .expect("stream")
        .map(|e| e.expect("event"))
        .collect()
        .await;
    assert_eq!(streamed, events);
    assert_eq!(
        archive
            .deployer
            .get(first.deployment.id)
            .await
            .expect("get"),
        first.deployment
    );
    let missing = DeploymentId::new_random();
    assert_eq!(
        archive.deployer.get(missing).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        archive
            .deployer
            .events(missing, Duration::from_millis(10))
            .await
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
    let audited = archive
        .deployer
        .list(&DeploymentFilter {
            target: Some("audited".into()),
            status: Some(DeploymentStatus::Succeeded),
            limit: 10,
            ..DeploymentFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        audited.iter().map(|d| d.id).collect::<Vec<_>>(),
        [second.deployment.id, first.deployment.id]
    );
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        ["received", "applying", "release created", "succeeded"]
    );
}

/// One scheduling decision of the interleaving test.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// Claim the next job and process it.
    Deliver,
    /// Process the last finished job again (a redelivery after completion).
    Duplicate,
    /// Claim a job and abandon it (a worker that died right after claiming).
    CrashAfterClaim,
    /// Claim a job and cancel its processing mid-way (a worker that died while the
    /// hook ran); its lease then expires.
    CrashMidStep,
}

/// Interleavings of deliveries, duplicates and crashes against a reference model: the
/// crash-free run of the same records. Whatever the schedule, the run ends in the
/// model's state: same verdicts, step statuses and counts, features, one hook run per
/// step.
async fn interleavings_match_the_reference_model<S: Storage + Clone>(archive: Archive<S>) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let mut first = archive.hook_config("first");
    first["reject_prefix"] = json!("bad-");
    let slug = archive
        .deploy(
            "Interleaved",
            &[("first", first), ("second", archive.hook_config("second"))],
        )
        .await;
    let ids = ["ok-1", "bad-1", "ok-22"];
    let reference = archive.submit(&slug, &ids).await;
    assert_eq!(archive.finish(reference).await, RunStatus::Completed);
    let model = archive.engine.get(reference).await.expect("view");
    let model_rows = (
        archive.rows_of("first", reference).await,
        archive.rows_of("second", reference).await,
    );
    assert!(!model_rows.0.is_empty() && !model_rows.1.is_empty());

    let actions = prop::collection::vec(
        prop_oneof![
            3 => Just(Action::Deliver),
            2 => Just(Action::Duplicate),
            1 => Just(Action::CrashAfterClaim),
            1 => Just(Action::CrashMidStep),
        ],
        1..8,
    );
    let mut runner = TestRunner::new(Config {
        cases: 6,
        failure_persistence: None,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let result = runner.run(&actions, |schedule| {
        let outcome = tokio::task::block_in_place(|| {
            handle.block_on(async {
                let run = archive.submit(&slug, &ids).await;
                let worker = archive.worker();
                let lease = Duration::from_millis(300);
                let mut last_done = None;
                for action in &schedule {
                    let claimed = match action {
                        Action::Duplicate => None,
                        _ => archive
                            .storage
                            .claim(&[STEP_JOB, FINALIZE_JOB], 1, lease)
                            .await
                            .expect("claim")
                            .into_iter()
                            .next(),
                    };
                    match (action, claimed) {
                        (Action::Deliver, Some(job)) => {
                            worker.process(job.clone()).await;
                            last_done = Some(job);
                        }
                        (Action::Duplicate, _) => {
                            if let Some(job) = last_done.clone() {
                                worker.process(job).await;
                            }
                        }
                        (Action::CrashAfterClaim, Some(_)) => tokio::time::sleep(lease * 2).await,
                        (Action::CrashMidStep, Some(job)) => {
                            let _ = tokio::time::timeout(
                                Duration::from_millis(15),
                                worker.process(job),
                            )
                            .await;
                            tokio::time::sleep(lease * 2).await;
                        }
                        (_, None) => {}
                    }
                }
                let status = archive.finish(run).await;
                let view = archive.engine.get(run).await.expect("view");
                assert_eq!(status, RunStatus::Completed, "{schedule:?}\n{view:#?}");
                let rows = (
                    archive.rows_of("first", run).await,
                    archive.rows_of("second", run).await,
                );
                (view, rows)
            })
        });
        let (view, rows) = outcome;
        prop_assert_eq!(&view.verdicts, &model.verdicts);
        prop_assert_eq!(
            view.steps
                .iter()
                .map(|s| (s.status, s.counts))
                .collect::<Vec<_>>(),
            model
                .steps
                .iter()
                .map(|s| (s.status, s.counts))
                .collect::<Vec<_>>()
        );
        prop_assert_eq!(&rows, &model_rows);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

on_both_backends!(interleavings_match_the_reference_model);

/// On Postgres the earlier hooks' rows are written while the last hook runs, in a
/// transaction nobody sees until the finalize commits it: while the last hook waits,
/// that transaction holds the first hook's table and no row is visible; once the run
/// completes, the rows are those of the accepted records only (the record the last
/// hook rejected had staged rows, which are gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_hook_runs_beside_the_earlier_rows_being_written() {
    let archive = postgres().await;
    let release = archive.path("release-last-hook");
    let mut last = archive.hook_config("last");
    last["reject_prefix"] = json!("bad-");
    last["wait_for"] = json!(release);
    let slug = archive
        .deploy(
            "Staged Rows",
            &[("first", archive.hook_config("first")), ("last", last)],
        )
        .await;
    let run = archive.submit(&slug, &["ok-1", "ok-22", "bad-3"]).await;
    let features_schema = archive.storage.config().features_schema.clone();
    let staged = async {
        let started = std::time::Instant::now();
        loop {
            let writers: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = 'first' AND l.mode = 'RowExclusiveLock' AND l.granted",
            )
            .bind(&features_schema)
            .fetch_one(archive.storage.pool())
            .await
            .expect("locks");
            if writers > 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no transaction wrote the first hook's rows while the last hook ran"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            archive
                .engine
                .get(run)
                .await
                .expect("view")
                .run
                .current_step,
            1,
            "the last hook is running"
        );
        assert!(
            archive.rows("first").await.is_empty(),
            "staged rows are not visible"
        );
        std::fs::write(&release, b"").expect("release the last hook");
    };
    let (status, ()) = tokio::join!(archive.finish(run), staged);
    assert_eq!(status, RunStatus::Completed);
    assert_eq!(archive.side_effects(), ["first 3", "last 3"]);
    for hook in ["first", "last"] {
        assert_eq!(
            archive.rows(hook).await,
            [
                ("ok-1".into(), hook.into(), 4.0),
                ("ok-22".into(), hook.into(), 5.0)
            ]
        );
    }
}

/// On Postgres a job enqueued by another process wakes an idle worker at once: the
/// worker polls only every minute here, and a submit through a second engine on its
/// own connection pool (as from another process: no in-process wake-up) is still
/// picked up within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_elsewhere_wakes_an_idle_postgres_worker() {
    let archive = postgres().await;
    let slug = archive
        .deploy("Woken", &[("woken", archive.hook_config("woken"))])
        .await;
    let worker = Worker::new(
        archive.engine.clone(),
        WorkerConfig::default().with_poll_interval(Duration::from_secs(60)),
    );
    let elsewhere_storage = PgBackend::connect(archive.storage.config().clone())
        .await
        .expect("a second pool");
    let elsewhere = Engine::new(
        Arc::new(elsewhere_storage),
        Arc::new(ProcessRunner::new()),
        Blobs::local(archive.path("blobs")).expect("blobs"),
        engine_config(archive.dir.path()),
    );
    let waited = async {
        // Let the worker claim (nothing) and start waiting first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let run = elsewhere
            .submit(SubmitValidation {
                convention: slug.clone(),
                records: vec![InputRecord {
                    id: RecordId::new("rec-1").unwrap(),
                    metadata: json!({}),
                    files: vec![],
                }],
            })
            .await
            .expect("submit");
        let submitted = std::time::Instant::now();
        loop {
            let status = elsewhere.get(run).await.expect("view").run.status;
            if status.is_terminal() {
                return (status, submitted.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (status, after) = tokio::select! {
        result = worker.run(std::future::pending()) => panic!("the worker stopped: {result:?}"),
        done = tokio::time::timeout(Duration::from_secs(30), waited) => {
            done.expect("the run finished within 30 s, long before the worker's next poll")
        }
    };
    assert_eq!(status, RunStatus::Completed);
    assert!(
        after < Duration::from_secs(20),
        "finished {after:?} after the submit"
    );
}

//! The lease of a job whose worker stops processing it: when the `Worker::run` future is
//! dropped mid-step, the job's lease renewal stops with it, the lease expires and
//! another worker re-runs the job. On SQLite files and on Postgres, with the saga's
//! Python test hook run by the process runner.

#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use osa::blob::Blobs;
use osa::deploy::{Deployer, DeploymentLog};
use osa::id::{ConventionSlug, Digest, RecordId};
use osa::runner::ProcessRunner;
use osa::saga::{Engine, EngineConfig, FINALIZE_JOB, STEP_JOB, SagaStorage, Worker, WorkerConfig};
use osa::validation::{InputRecord, RunStatus, SubmitValidation, ValidationService};
use osa_sqlx::{PgBackend, PgConfig, SqliteBackend};
use serde_json::json;
use tempfile::TempDir;

const HOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hooks/saga_hook.py");

/// Lease taken by the workers of these tests.
const LEASE: Duration = Duration::from_secs(2);

trait TestStorage: SagaStorage + DeploymentLog {}
impl<T: SagaStorage + DeploymentLog> TestStorage for T {}

/// A fresh archive: storage, engine, deployer and a temp dir (blobs, work, side-effect
/// log).
struct Archive<S> {
    storage: Arc<S>,
    engine: Engine,
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

fn archive<S: TestStorage>(storage: S, dir: TempDir, cleanup: Option<Cleanup>) -> Archive<S> {
    let storage = Arc::new(storage);
    let blobs = Blobs::local(dir.path().join("blobs")).expect("blobs");
    let engine = Engine::new(
        storage.clone(),
        Arc::new(ProcessRunner::new()),
        blobs.clone(),
        EngineConfig::new(dir.path().join("work")),
    );
    let deployer = Deployer::new(storage.clone(), blobs);
    Archive {
        storage,
        engine,
        deployer,
        dir,
        _cleanup: cleanup,
    }
}

async fn sqlite() -> Archive<SqliteBackend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteBackend::open(&dir.path().join("osa.db"))
        .await
        .expect("open");
    backend.migrate().await.expect("migrate");
    archive(backend, dir, None)
}

async fn postgres() -> Archive<PgBackend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("lease_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
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

on_both_backends!(dropped_worker_releases_the_lease);

impl<S: TestStorage> Archive<S> {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Deploys a convention with one process hook `slow` whose first execution sleeps
    /// 30 s (after logging that it started).
    async fn deploy_slow_hook(&self) -> ConventionSlug {
        let config = json!({
            "name": "slow",
            "log": self.path("side-effects.log"),
            "sleep_once": self.path("slept"),
            "sleep_seconds": 30,
        });
        let payload = json!({
            "title": "Slow Hook",
            "description": "Lease test convention",
            "schema": {"id": "test-schema", "version": "1.0.0", "fields": []},
            "file_requirements": {"accepted_types": [".txt"], "max_count": 3, "max_file_size": 1048576},
            "hooks": [{
                "name": "slow",
                "feature": {"kind": "table", "cardinality": "one", "columns": [
                    {"name": "hook", "json_type": "string", "required": true},
                    {"name": "score", "json_type": "number", "required": true}
                ]},
                "config": config,
                "limits": {"timeout_seconds": 60, "memory": "1g", "cpu": "1"},
                "release": {
                    "command": ["python3", HOOK],
                    "digest": Digest::of_bytes(config.to_string().as_bytes()),
                    "source_ref": "git:test"
                }
            }],
            "docs": {
                "purpose": "Testing job leases",
                "example_questions": ["Which records pass?", "Which fail?"],
                "examples": [{"question": "What scores?", "query": "score > 1", "interpretation": "long ids"}]
            }
        });
        let payload = serde_json::to_vec(&payload).expect("payload");
        let outcome = self
            .deployer
            .deploy(&payload, "tester")
            .await
            .expect("deploy");
        outcome.applied.convention.slug
    }

    fn worker(&self) -> Worker {
        Worker::new(
            self.engine.clone(),
            WorkerConfig {
                poll_interval: Duration::from_millis(20),
                lease: LEASE,
                heartbeat: Duration::from_millis(200),
                ..WorkerConfig::default()
            },
        )
    }

    fn side_effects(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("side-effects.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Returns once `path`'s side-effect log has `lines` lines.
async fn wait_for_lines(path: &Path, lines: usize) {
    loop {
        let logged = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count();
        if logged >= lines {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `Worker::run` future is dropped while its hook runs: the job's lease is no longer
/// renewed, so once it expires the job is claimable again (second delivery) and another
/// worker finishes the run.
async fn dropped_worker_releases_the_lease<S: TestStorage>(archive: Archive<S>) {
    let slug = archive.deploy_slow_hook().await;
    let run = archive
        .engine
        .submit(SubmitValidation {
            convention: slug,
            records: vec![InputRecord {
                id: RecordId::new("rec-1").expect("record id"),
                metadata: json!({"title": "rec-1"}),
                files: vec![],
            }],
        })
        .await
        .expect("submit");

    let first = archive.worker();
    let log = archive.path("side-effects.log");
    let started = wait_for_lines(&log, 1);
    tokio::select! {
        result = first.run(std::future::pending()) => panic!("the worker stopped: {result:?}"),
        _ = tokio::time::timeout(Duration::from_secs(60), started) => {}
    }
    assert_eq!(
        archive.side_effects(),
        ["slow 1"],
        "the hook started before the worker was dropped"
    );
    let dropped = Instant::now();

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
            Instant::now() < deadline,
            "the job of a dropped worker is claimable once its lease expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        dropped.elapsed() >= LEASE / 2,
        "the job was still leased right after the drop"
    );
    assert_eq!((job.kind.as_str(), job.attempt), (STEP_JOB, 2));

    let second = archive.worker();
    second.process(job).await;
    let status = tokio::time::timeout(Duration::from_secs(60), second.run_until_finished(run))
        .await
        .expect("the run finishes within 60 s")
        .expect("worker");
    assert_eq!(status, RunStatus::Completed);
    assert_eq!(archive.side_effects(), ["slow 1", "slow 1"]);
}

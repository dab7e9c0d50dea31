//! The embedded archive: one directory holding a SQLite database, a local blob store
//! and the batch work directories, with hooks run as local processes.
//!
//! This is the default way to use OSA inside one application (and what the Python
//! package's `osa test` runs on): nothing to install, nothing to start.
//!
//! ```no_run
//! # async fn demo() -> osa::Result<()> {
//! use osa::local::LocalArchive;
//!
//! let archive = LocalArchive::open("./my-archive").await?;
//! let payload = std::fs::read("convention.json").expect("a deploy payload");
//! let deployed = archive.deployer().deploy(&payload, "me").await?;
//! # let _ = deployed;
//! # Ok(()) }
//! ```
//!
//! Layout of the directory: `archive.db` (SQLite, WAL), `blobs/` (inputs, outputs,
//! logs and deploy payloads), `work/` (one batch directory per step execution,
//! removed after it).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use osa_core::blob::Blobs;
use osa_core::deploy::Deployer;
use osa_core::id::ValidationRunId;
use osa_core::runner::{HookRunner, ProcessRunner};
use osa_core::saga::{Engine, EngineConfig, Worker, WorkerConfig};
use osa_core::validation::{RunEvent, SubmitValidation, ValidationRunView, ValidationService};
use osa_core::{Error, Result};
use osa_sqlx::SqliteBackend;

/// File name of the SQLite database inside the archive directory.
pub const DATABASE_FILE: &str = "archive.db";
/// Directory of the blob store inside the archive directory.
pub const BLOBS_DIR: &str = "blobs";
/// Directory of batch work directories inside the archive directory.
pub const WORK_DIR: &str = "work";

/// Options of [`LocalArchive::open_with`].
#[derive(Clone)]
#[non_exhaustive]
pub struct LocalOptions {
    /// Runs the hooks; a plain [`ProcessRunner`] when `None`.
    pub runner: Option<Arc<dyn HookRunner>>,
    /// The worker that [`LocalArchive::wait`] runs in process.
    pub worker: WorkerConfig,
    /// How often event streams look for new events.
    pub event_poll: Duration,
}

impl std::fmt::Debug for LocalOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalOptions")
            .field("runner", &self.runner.as_ref().map(|_| "custom"))
            .field("worker", &self.worker)
            .field("event_poll", &self.event_poll)
            .finish()
    }
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            runner: None,
            worker: WorkerConfig::default()
                // Steps of one run are sequential; a local archive favours latency.
                .with_concurrency(2)
                .with_poll_interval(Duration::from_millis(20)),
            event_poll: Duration::from_millis(25),
        }
    }
}

/// An archive in a local directory (SQLite + local blobs + process runner).
///
/// Cheap to clone; every clone shares the same database pools.
#[derive(Debug, Clone)]
pub struct LocalArchive {
    root: PathBuf,
    storage: Arc<SqliteBackend>,
    engine: Engine,
    deployer: Deployer,
    worker: WorkerConfig,
}

impl LocalArchive {
    /// Opens the archive in `root`, creating the directory, the database and its
    /// tables when absent. A relative `root` is resolved against the current directory
    /// once, here.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(root, LocalOptions::default()).await
    }

    /// [`open`](Self::open) with options.
    pub async fn open_with(root: impl AsRef<Path>, options: LocalOptions) -> Result<Self> {
        // Absolute, so the archive stays where it was opened whatever directory the
        // process (or a hook it runs) is in later.
        let root = std::path::absolute(root.as_ref()).map_err(|e| Error::Unavailable {
            what: "archive directory",
            detail: format!("resolving {}: {e}", root.as_ref().display()),
            source: Some(Box::new(e)),
        })?;
        std::fs::create_dir_all(&root).map_err(|e| Error::Unavailable {
            what: "archive directory",
            detail: format!("creating {}: {e}", root.display()),
            source: Some(Box::new(e)),
        })?;
        let storage = Arc::new(SqliteBackend::open(root.join(DATABASE_FILE)).await?);
        storage.migrate().await?;
        let blobs = Blobs::local(root.join(BLOBS_DIR))?;
        let mut config = EngineConfig::new(root.join(WORK_DIR));
        config.event_poll = options.event_poll;
        let runner = options
            .runner
            .unwrap_or_else(|| Arc::new(ProcessRunner::new()));
        let engine = Engine::new(storage.clone(), runner, blobs.clone(), config);
        let deployer = Deployer::new(storage.clone(), blobs);
        Ok(LocalArchive {
            root,
            storage,
            engine,
            deployer,
            worker: options.worker,
        })
    }

    /// The archive directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The storage backend (registry, feature tables, runs, jobs, deployments).
    pub fn storage(&self) -> &Arc<SqliteBackend> {
        &self.storage
    }

    /// The validation engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The deploy service (every deploy is audited).
    pub fn deployer(&self) -> &Deployer {
        &self.deployer
    }

    /// A worker over this archive's queue, with the archive's worker settings.
    pub fn worker(&self) -> Worker {
        Worker::new(self.engine.clone(), self.worker)
    }

    /// Submits a validation and waits for its end; see [`wait`](Self::wait).
    pub async fn validate<F>(
        &self,
        request: SubmitValidation,
        on_event: F,
    ) -> Result<ValidationRunView>
    where
        F: FnMut(&RunEvent) -> Result<()>,
    {
        let run = self.engine.submit(request).await?;
        self.wait(run, on_event, std::future::pending()).await
    }

    /// Runs a worker in this process until `run` is terminal, handing every event of
    /// the run (persisted ones first) to `on_event`; returns the final view.
    ///
    /// Stops early when `on_event` returns an error or `interrupt` resolves: the
    /// worker stops claiming and the step in flight (if any) runs to its commit. The
    /// run itself goes on and can be waited for again (by this or any other worker).
    pub async fn wait<F, I>(
        &self,
        run: ValidationRunId,
        mut on_event: F,
        interrupt: I,
    ) -> Result<ValidationRunView>
    where
        F: FnMut(&RunEvent) -> Result<()>,
        I: Future<Output = Error>,
    {
        let mut events = self.engine.events(run).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = self.worker();
        let mut worker_task = tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        let follow = async {
            while let Some(event) = events.next().await {
                on_event(&event?)?;
            }
            Ok(())
        };
        let mut worker_ended = false;
        let outcome: Result<()> = tokio::select! {
            outcome = follow => outcome,
            error = interrupt => Err(error),
            ended = &mut worker_task => {
                worker_ended = true;
                Err(match ended {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => Error::internal("the worker stopped before the run ended"),
                    Err(e) => Error::internal(format!("the worker panicked: {e}")),
                })
            }
        };
        let _ = stop.send(());
        if !worker_ended {
            worker_task
                .await
                .map_err(|e| Error::internal(format!("the worker panicked: {e}")))??;
        }
        outcome?;
        self.engine.get(run).await
    }
}

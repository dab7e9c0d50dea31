//! The local engine binding: [`osa::local::LocalArchive`] for Python.
//!
//! Every method releases the GIL while Rust works (the archive runs on its own tokio
//! runtime), so other Python threads, `asyncio.to_thread` callers included, go on
//! meanwhile. Results cross the boundary as JSON text that the Python layer
//! (`osa.local`) turns into typed objects; engine errors become the exception classes
//! below, chosen by the error's kind.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use osa::feature_store::FeatureQuery;
use osa::id::{ConventionSlug, HookName, HookRunId, RecordId, ValidationRunId};
use osa::local::LocalArchive;
use osa::validation::{InputRecord, SubmitValidation, ValidationService};
use osa::{ConventionStore, Error, ErrorKind, FeatureStore, HookRegistry};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::Serialize;
use serde_json::json;

create_exception!(
    osa._native,
    EngineError,
    PyException,
    "An error reported by the engine; `kind` is `not_found`, `conflict`, `invalid`, `unavailable`, `unauthenticated`, `forbidden` or `internal`."
);
create_exception!(
    osa._native,
    NotFoundError,
    EngineError,
    "The addressed object (run, hook, row, convention) does not exist."
);
create_exception!(
    osa._native,
    ConflictError,
    EngineError,
    "The request contradicts stored state (a changed hook contract)."
);
create_exception!(
    osa._native,
    InvalidRequestError,
    EngineError,
    "The input is malformed or breaks a rule; the message names the field."
);
create_exception!(
    osa._native,
    UnavailableError,
    EngineError,
    "A dependency (database, blob store, runner) failed; retrying may succeed."
);

/// The Python exception of an engine error, with `kind` set to the error's kind (the
/// kinds without a class of their own, such as `unauthenticated`, raise `EngineError`).
pub(crate) fn engine_error(py: Python<'_>, error: &Error) -> PyErr {
    let kind = error.kind();
    let message = error.to_string();
    let err = match kind {
        ErrorKind::NotFound => NotFoundError::new_err(message),
        ErrorKind::Conflict => ConflictError::new_err(message),
        ErrorKind::Invalid => InvalidRequestError::new_err(message),
        ErrorKind::Unavailable => UnavailableError::new_err(message),
        _ => EngineError::new_err(message),
    };
    // Setting an attribute on a fresh exception instance cannot fail in practice;
    // the message still names the error if it did.
    let _ = err.value(py).setattr("kind", kind.as_str());
    err
}

fn to_json<T: Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| EngineError::new_err(format!("encoding: {e}")))
}

/// Parses an identifier argument; a bad one raises `InvalidRequestError` naming it.
fn arg<'a, T, E: std::fmt::Display>(
    field: &str,
    value: &'a str,
    parse: impl FnOnce(&'a str) -> Result<T, E>,
) -> PyResult<T> {
    parse(value).map_err(|e| InvalidRequestError::new_err(format!("{field}: {e}")))
}

/// The body of [`Archive::submit`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    records: Vec<InputRecord>,
}

/// A local archive: a directory holding a SQLite database, blobs and work directories;
/// hooks run as local processes.
#[pyclass(module = "osa._native", frozen)]
#[derive(Debug)]
pub struct Archive {
    archive: LocalArchive,
    runtime: tokio::runtime::Runtime,
}

impl Archive {
    /// Runs `work` on the archive's runtime with the GIL released; maps engine errors.
    fn block<T, F>(&self, py: Python<'_>, work: F) -> PyResult<T>
    where
        T: Send,
        F: AsyncFnOnce(&LocalArchive) -> osa::Result<T> + Send,
    {
        let archive = &self.archive;
        py.detach(|| self.runtime.block_on(work(archive)))
            .map_err(|e| engine_error(py, &e))
    }
}

#[pymethods]
impl Archive {
    /// Opens (creating when absent) the archive in `path`.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("osa-archive")
            .enable_all()
            .build()
            .map_err(|e| EngineError::new_err(format!("starting the runtime: {e}")))?;
        let archive = py
            .detach(|| runtime.block_on(LocalArchive::open(&path)))
            .map_err(|e| engine_error(py, &e))?;
        Ok(Archive { archive, runtime })
    }

    /// The archive directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.archive.root().to_path_buf()
    }

    /// Deploys one convention payload (JSON); returns the audited outcome as JSON
    /// `{deployment, convention, releases: [{release, created}]}`.
    #[pyo3(signature = (payload, principal = "local"))]
    fn deploy(&self, py: Python<'_>, payload: &str, principal: &str) -> PyResult<String> {
        let outcome = self.block(py, async |a| {
            a.deployer().deploy(payload.as_bytes(), principal).await
        })?;
        to_json(&json!({
            "deployment": outcome.deployment,
            "convention": outcome.applied.convention,
            "releases": outcome.applied.releases,
        }))
    }

    /// Points `hook`'s live release at `version` (a rollback or a pin); returns
    /// `{deployment, previous, current}` as JSON.
    #[pyo3(signature = (hook, version, principal = "local"))]
    fn set_live(
        &self,
        py: Python<'_>,
        hook: &str,
        version: u32,
        principal: &str,
    ) -> PyResult<String> {
        let hook = arg("hook", hook, HookName::new)?;
        let outcome = self.block(py, async |a| {
            a.deployer().set_live(&hook, version, principal).await
        })?;
        to_json(&json!({
            "deployment": outcome.deployment,
            "previous": outcome.applied.previous,
            "current": outcome.applied.current,
        }))
    }

    /// The deployed conventions (JSON list).
    fn conventions(&self, py: Python<'_>) -> PyResult<String> {
        let list = self.block(py, async |a| a.storage().list_conventions().await)?;
        to_json(&list)
    }

    /// A hook with its contract and live release (JSON), or `None`.
    fn hook(&self, py: Python<'_>, name: &str) -> PyResult<Option<String>> {
        let name = arg("hook", name, HookName::new)?;
        let hook = self.block(py, async |a| a.storage().get_hook(&name).await)?;
        hook.map(|h| to_json(&h)).transpose()
    }

    /// A hook's releases, oldest first (JSON list).
    fn releases(&self, py: Python<'_>, hook: &str) -> PyResult<String> {
        let name = arg("hook", hook, HookName::new)?;
        let list = self.block(py, async |a| a.storage().list_releases(&name).await)?;
        to_json(&list)
    }

    /// Submits records (JSON `{"records": [{id, metadata, files: [{name, source}]}]}`)
    /// to a convention's live hooks; returns the validation run id.
    fn submit(&self, py: Python<'_>, convention: &str, records: &str) -> PyResult<String> {
        let convention = arg("convention", convention, ConventionSlug::new)?;
        let SubmitBody { records } =
            osa::deploy::parse_payload(records.as_bytes()).map_err(|e| engine_error(py, &e))?;
        let run = self.block(py, async |a| {
            a.engine()
                .submit(SubmitValidation {
                    convention,
                    records,
                })
                .await
        })?;
        Ok(run.to_string())
    }

    /// Runs a worker in this process until the run ends and returns its view (JSON).
    ///
    /// `on_event` receives each run event as JSON, persisted ones first. Stops early
    /// when `on_event` raises, after `timeout` seconds (`TimeoutError`), or on Ctrl-C;
    /// a hook already running finishes and its step is committed first. The run goes
    /// on and can be waited for again.
    #[pyo3(signature = (run_id, on_event = None, timeout = None))]
    fn wait(
        &self,
        py: Python<'_>,
        run_id: &str,
        on_event: Option<Py<PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<String> {
        let run = arg("run_id", run_id, str::parse::<ValidationRunId>)?;
        let timeout = timeout
            .map(|s| {
                Duration::try_from_secs_f64(s)
                    .map_err(|e| InvalidRequestError::new_err(format!("timeout: {e}")))
            })
            .transpose()?;
        // The Python error that stopped the wait (raised by the callback, a signal
        // handler or the timeout), re-raised once the GIL is back.
        let raised: Mutex<Option<PyErr>> = Mutex::new(None);
        let stash = |err: PyErr| {
            let mut slot = raised.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(err);
            Error::internal("stopped by Python")
        };
        let result = py.detach(|| {
            self.runtime.block_on(async {
                let on_event = |event: &osa::validation::RunEvent| -> osa::Result<()> {
                    let Some(callback) = &on_event else {
                        return Ok(());
                    };
                    let text = serde_json::to_string(event)
                        .map_err(|e| Error::internal(format!("encoding an event: {e}")))?;
                    Python::attach(|py| callback.call1(py, (text,)).map(drop)).map_err(&stash)
                };
                let interrupt = async {
                    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
                    loop {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            return stash(e);
                        }
                        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                            return stash(PyTimeoutError::new_err(format!(
                                "run {run} did not end within {:.1} s",
                                timeout.unwrap_or_default().as_secs_f64()
                            )));
                        }
                    }
                };
                self.archive.wait(run, on_event, interrupt).await
            })
        });
        if let Some(err) = raised.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(err);
        }
        to_json(&result.map_err(|e| engine_error(py, &e))?)
    }

    /// The run's status, per-step progress and the verdict of every record (JSON),
    /// however many records the run has; [`summary`](Self::summary) and
    /// [`records`](Self::records) read a page at a time.
    fn run(&self, py: Python<'_>, run_id: &str) -> PyResult<String> {
        let run = arg("run_id", run_id, str::parse::<ValidationRunId>)?;
        let view = self.block(py, async |a| a.engine().get(run).await)?;
        to_json(&view)
    }

    /// The run's status, per-step progress, counts per verdict and the verdicts of its
    /// first `limit` records (JSON `{run, steps, counts, verdicts, next}`; `next` is
    /// the `from` of [`records`](Self::records) for the rest, `null` when none).
    #[pyo3(signature = (run_id, limit = 1000))]
    fn summary(&self, py: Python<'_>, run_id: &str, limit: u32) -> PyResult<String> {
        let run = arg("run_id", run_id, str::parse::<ValidationRunId>)?;
        let summary = self.block(py, async |a| a.engine().summary(run, limit).await)?;
        to_json(&summary)
    }

    /// The verdicts of the run's records at submit positions `from_` to
    /// `from_ + limit - 1` (JSON `{records, next}`; `next` is the `from_` of the
    /// following page, `null` after the last record).
    #[pyo3(signature = (run_id, from_ = 0, limit = 1000))]
    fn records(&self, py: Python<'_>, run_id: &str, from_: u32, limit: u32) -> PyResult<String> {
        let run = arg("run_id", run_id, str::parse::<ValidationRunId>)?;
        let page = self.block(py, async |a| a.engine().records(run, from_, limit).await)?;
        to_json(&page)
    }

    /// Cancels a run; `False` when it had already ended.
    fn cancel(&self, py: Python<'_>, run_id: &str) -> PyResult<bool> {
        let run = arg("run_id", run_id, str::parse::<ValidationRunId>)?;
        self.block(py, async |a| a.engine().cancel(run).await)
    }

    /// A page of a hook's feature rows (JSON `{columns, rows, next_after}`, each row's
    /// `values` keyed by column), in row-id order after the `after` cursor.
    #[pyo3(signature = (hook, record_id = None, after = None, limit = 100))]
    fn features(
        &self,
        py: Python<'_>,
        hook: &str,
        record_id: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> PyResult<String> {
        let name = arg("hook", hook, HookName::new)?;
        let record_id = record_id
            .map(|r| arg("record_id", r, RecordId::new))
            .transpose()?;
        let (hook, page) = self.block(py, async |a| {
            let hook = a
                .storage()
                .get_hook(&name)
                .await?
                .ok_or_else(|| Error::not_found("hook", &name))?;
            let page = a
                .storage()
                .rows(
                    &name,
                    &FeatureQuery {
                        record_id,
                        after,
                        limit,
                        ..FeatureQuery::default()
                    },
                )
                .await?;
            Ok((hook, page))
        })?;
        to_json(&page.to_keyed_json(hook.identity.feature.stored_columns()))
    }

    /// The provenance chain of one feature row (JSON `{hook, row, run, release}`).
    fn provenance(&self, py: Python<'_>, hook: &str, row_id: i64) -> PyResult<String> {
        let name = arg("hook", hook, HookName::new)?;
        let provenance = self.block(py, async |a| a.engine().provenance(&name, row_id).await)?;
        to_json(&provenance)
    }

    /// The captured log of a hook run.
    fn hook_log<'py>(&self, py: Python<'py>, hook_run_id: &str) -> PyResult<Bound<'py, PyBytes>> {
        let id = arg("hook_run_id", hook_run_id, str::parse::<HookRunId>)?;
        let bytes = self.block(py, async |a| a.engine().hook_log(id).await)?;
        Ok(PyBytes::new(py, &bytes))
    }

    fn __repr__(&self) -> String {
        format!("Archive({:?})", self.archive.root())
    }
}

/// Registers the binding's class and exceptions.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Archive>()?;
    m.add("EngineError", py.get_type::<EngineError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("ConflictError", py.get_type::<ConflictError>())?;
    m.add("InvalidRequestError", py.get_type::<InvalidRequestError>())?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    // Every class carries its kind as a class attribute, so each instance has `kind`,
    // however it was raised (the engine, this module or Python code).
    for (class, kind) in [
        (py.get_type::<EngineError>(), ErrorKind::Internal),
        (py.get_type::<NotFoundError>(), ErrorKind::NotFound),
        (py.get_type::<ConflictError>(), ErrorKind::Conflict),
        (py.get_type::<InvalidRequestError>(), ErrorKind::Invalid),
        (py.get_type::<UnavailableError>(), ErrorKind::Unavailable),
    ] {
        class.setattr("kind", kind.as_str())?;
    }
    Ok(())
}

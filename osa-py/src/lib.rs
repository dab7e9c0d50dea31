//! `osa._native`: the Rust half of the `osa` Python package.
//!
//! The Python layer stays thin. What is pure or touches the hook contract is
//! implemented here, once, on top of `osa-core`, so the SDK and the engine apply the
//! same rules:
//!
//! - identifier rules and the record directory mapping of the hook contract;
//! - the mapping of hook output fields to feature columns ([`columns`]);
//! - the streaming reader of `records.jsonl` ([`records::RecordReader`]);
//! - the outcome writer that validates rows like the engine ([`writer::OutputWriter`]);
//! - the check of a convention manifest against the deploy payload ([`payload`]);
//! - the local engine ([`engine::Archive`]): a SQLite archive with process-run hooks,
//!   driven from Python with the GIL released;
//! - the OSA server itself (`server_main`): `osa-server` shipped in the wheel, what
//!   `osa start` runs.

pub mod columns;
mod convert;
pub mod engine;
pub mod payload;
pub mod records;
pub mod writer;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The module's own allocations (the engine's, not Python's objects) go through
/// mimalloc, as in osa-server: glibc's per-thread arenas keep what a long run freed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The directory name of a record's files under `$OSA_FILES` (same mapping as runners).
#[pyfunction]
fn record_dir_name(record_id: &str) -> String {
    osa_core::contract::record_dir_name(record_id)
}

/// Validates a hook name; raises `ValueError` naming the rule when it is invalid.
#[pyfunction]
fn validate_hook_name(name: &str) -> PyResult<()> {
    osa_core::id::HookName::new(name)
        .map(drop)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Validates a metadata schema id (`__schema_id__`); raises `ValueError` naming the
/// rule when it is invalid.
#[pyfunction]
fn validate_schema_id(schema_id: &str) -> PyResult<()> {
    osa_core::id::SchemaId::new(schema_id)
        .map(drop)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The slug the engine derives from a convention title (`"PDB Pockets"` →
/// `"pdb-pockets"`); raises `ValueError` when the title has no usable character.
#[pyfunction]
fn convention_slug(title: &str) -> PyResult<String> {
    osa_core::id::ConventionSlug::from_title(title)
        .map(|s| s.to_string())
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Maps field descriptions (a JSON list of `{name, type, optional, has_default,
/// description, unit}`) to feature columns (a JSON list of column definitions).
///
/// Raises `ValueError` for a name the engine refuses as a column, a repeated column or
/// an unknown `type`.
#[pyfunction]
fn columns_for_fields(fields_json: &str) -> PyResult<String> {
    columns::columns_json(fields_json).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Checks one convention manifest body (JSON; releases optional) against the engine's
/// deploy payload rules; raises `ValueError` naming the offending path.
#[pyfunction]
fn check_convention_payload(body_json: &str) -> PyResult<()> {
    payload::check_convention(body_json).map_err(PyValueError::new_err)
}

/// Runs the OSA server program (`osa-server`) with `args` (the program name first);
/// returns its exit code. The GIL is released for the whole run, which lasts until
/// the server stops (SIGTERM or SIGINT for `serve` and `worker`).
#[pyfunction]
fn server_main(py: Python<'_>, args: Vec<String>) -> u8 {
    py.detach(|| osa_server::main_with_args(args))
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_RECORD_LINE_BYTES", records::MAX_RECORD_LINE_BYTES)?;
    m.add_function(wrap_pyfunction!(record_dir_name, m)?)?;
    m.add_function(wrap_pyfunction!(validate_hook_name, m)?)?;
    m.add_function(wrap_pyfunction!(validate_schema_id, m)?)?;
    m.add_function(wrap_pyfunction!(columns_for_fields, m)?)?;
    m.add_function(wrap_pyfunction!(convention_slug, m)?)?;
    m.add_function(wrap_pyfunction!(check_convention_payload, m)?)?;
    m.add_function(wrap_pyfunction!(server_main, m)?)?;
    m.add_class::<records::InputRecord>()?;
    m.add_class::<records::RecordReader>()?;
    m.add_class::<writer::OutputWriter>()?;
    engine::register(m)?;
    Ok(())
}

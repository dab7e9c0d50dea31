//! `osa._native`: the Rust half of the `osa` Python package.
//!
//! The Python layer stays thin; what is pure (identifier rules, the record directory
//! mapping of the hook contract) is implemented once in `osa-core` and exposed here.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

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

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(record_dir_name, m)?)?;
    m.add_function(wrap_pyfunction!(validate_hook_name, m)?)?;
    Ok(())
}

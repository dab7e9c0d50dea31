//! Writer of a hook's outcome files, validating feature rows as the engine does.
//!
//! Every row is checked against the hook's columns with
//! [`FeatureSpec::coerce_row`](osa_core::feature::FeatureSpec::coerce_row) before it is
//! written; a record whose rows the engine would refuse gets an `errors.jsonl` line
//! with the engine's message instead. Lines and files are kept within the engine's
//! [`OutputLimits`], so one record's oversized output never makes the engine refuse
//! the whole batch. Each line is flushed as soon as it is written: a hook killed
//! mid-batch (out of memory, timeout) keeps the outcomes of the records it finished.
//!
//! Text arguments never make a write fail: a Python `str` may hold lone surrogates
//! (`os.listdir` decodes a non-UTF-8 file name `bad\xff.cif` to `"bad\udcff.cif"`),
//! which UTF-8 cannot encode; each one is written as U+FFFD (see [`utf8_lossy`]).

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use osa_core::contract::{ERRORS_FILE, FEATURES_FILE, OutputLimits, REJECTIONS_FILE};
use osa_core::feature::{Cardinality, ColumnDef, FeatureSpec, describe_value};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use serde::Serialize;
use serde_json::Value;

/// Longest `reason` or `error` text written (longer ones are cut, with a marker): the
/// engine's own bound, so what the writer cut the engine keeps as it is.
pub use osa_core::contract::MAX_MESSAGE_CHARS;

/// Checks the rows of one record against `spec`, as the engine's reader does.
///
/// `rows` must be a JSON array; `null` items mean "no row" and are dropped. Returns the
/// rows to write, or the error message the engine would give (`row 0: column ...`).
pub fn check_rows(
    rows: Value,
    spec: &FeatureSpec,
    limits: &OutputLimits,
) -> Result<Vec<Value>, String> {
    let Value::Array(items) = rows else {
        return Err(format!(
            "hook output must be a list of rows, got {}",
            describe_value(&rows)
        ));
    };
    let rows: Vec<Value> = items.into_iter().filter(|v| !v.is_null()).collect();
    if spec.cardinality() == Cardinality::One && rows.len() > 1 {
        return Err(format!(
            "hook has cardinality `one` but produced {} rows for this record",
            rows.len()
        ));
    }
    if rows.len() > limits.max_rows_per_record {
        return Err(format!(
            "hook produced {} rows for this record, over the limit of {}",
            rows.len(),
            limits.max_rows_per_record
        ));
    }
    for (index, row) in rows.iter().enumerate() {
        let Value::Object(object) = row else {
            return Err(format!(
                "row {index}: a feature row must be a JSON object, got {}",
                describe_value(row)
            ));
        };
        spec.coerce_row(object)
            .map_err(|e| format!("row {index}: {e}"))?;
    }
    Ok(rows)
}

/// The text of a Python `str` as UTF-8, each lone surrogate replaced by U+FFFD.
///
/// Valid text is borrowed as is. Otherwise the string is taken as UTF-16 (surrogates
/// passed through) and decoded lossily, so one lone surrogate becomes exactly one
/// U+FFFD and a high-low surrogate pair becomes the character it encodes.
pub fn utf8_lossy<'a>(text: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    if let Ok(valid) = text.to_str() {
        return Ok(Cow::Borrowed(valid));
    }
    let encoded = text.call_method1("encode", ("utf-16-le", "surrogatepass"))?;
    let units: Vec<u16> = encoded
        .cast::<PyBytes>()?
        .as_bytes()
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    Ok(Cow::Owned(String::from_utf16_lossy(&units)))
}

/// Cuts `text` to [`MAX_MESSAGE_CHARS`] characters, marking the cut (the engine's
/// cut).
fn cap_message(text: &str) -> String {
    osa_core::contract::cap_message(text, MAX_MESSAGE_CHARS)
}

#[derive(Serialize)]
struct FeaturesLine<'a> {
    id: &'a str,
    features: &'a [Value],
}

#[derive(Serialize)]
struct RejectionLine<'a> {
    id: &'a str,
    reason: &'a str,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    id: &'a str,
    error: &'a str,
    retryable: bool,
}

/// One open output file and the bytes written to it.
#[derive(Debug)]
struct Sink {
    name: &'static str,
    file: BufWriter<File>,
    bytes: u64,
}

impl Sink {
    fn create(dir: &Path, name: &'static str) -> std::io::Result<Self> {
        let path = dir.join(name);
        // A leftover symlink is replaced, never followed.
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            fs::remove_file(&path)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(Sink {
            name,
            file: BufWriter::new(file),
            bytes: 0,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.file.write_all(line)?;
        self.file.write_all(b"\n")?;
        self.file.flush()?;
        self.bytes += line.len() as u64 + 1;
        Ok(())
    }
}

/// Writes `features.jsonl`, `rejections.jsonl` and `errors.jsonl` into an output
/// directory (created if needed; the three files are truncated and always exist).
///
/// `columns_json` is the hook's columns as a JSON list of column definitions and
/// `cardinality` is `"one"` or `"many"`; both raise `ValueError` when invalid.
#[pyclass(module = "osa._native")]
#[derive(Debug)]
pub struct OutputWriter {
    dir: PathBuf,
    spec: FeatureSpec,
    limits: OutputLimits,
    sinks: Option<[Sink; 3]>,
    passed: u64,
    rejected: u64,
    errored: u64,
}

const FEATURES: usize = 0;
const REJECTIONS: usize = 1;
const ERRORS: usize = 2;

impl OutputWriter {
    fn sink(&mut self, which: usize) -> PyResult<&mut Sink> {
        match self.sinks.as_mut() {
            Some(sinks) => Ok(&mut sinks[which]),
            None => Err(PyValueError::new_err(
                "I/O operation on a closed OutputWriter",
            )),
        }
    }

    fn error_line(&mut self, id: &str, error: &str, retryable: bool) -> PyResult<()> {
        let written = self.message_line(ERRORS, &cap_message(error), |error| {
            serde_json::to_vec(&ErrorLine {
                id,
                error,
                retryable,
            })
            .expect("an error line always serialises")
        })?;
        self.errored += u64::from(written);
        Ok(())
    }

    /// Writes the line `line(message)` to sink `which`, keeping the file within the
    /// engine's `max_file_bytes` (a bigger file would make the engine refuse the whole
    /// batch). When the line does not fit, the message is replaced by a note saying
    /// so; when even that does not fit, nothing is written and the record is left
    /// without an outcome, which the engine reads as an error of that record. Returns
    /// whether a line was written.
    fn message_line(
        &mut self,
        which: usize,
        message: &str,
        line: impl Fn(&str) -> Vec<u8>,
    ) -> PyResult<bool> {
        let limit = self.limits.max_file_bytes;
        let sink = self.sink(which)?;
        // The line and its newline end at or before the limit.
        let fits = |line: &[u8]| sink.bytes + (line.len() as u64) < limit;
        let full = line(message);
        let chosen = if fits(&full) {
            full
        } else {
            let short = line(&format!(
                "(message omitted: {} reached the engine's limit of {limit} bytes)",
                sink.name
            ));
            if !fits(&short) {
                return Ok(false);
            }
            short
        };
        sink.write_line(&chosen)?;
        Ok(true)
    }

    /// The features line for `rows`, or why it cannot be written.
    fn features_line(&self, id: &str, rows_json: &str) -> Result<Vec<u8>, String> {
        let rows: Value = serde_json::from_str(rows_json)
            .map_err(|e| format!("hook output is not valid JSON: {e}"))?;
        let rows = check_rows(rows, &self.spec, &self.limits)?;
        let line = serde_json::to_vec(&FeaturesLine {
            id,
            features: &rows,
        })
        .expect("JSON values always serialise");
        if line.len() + 1 > self.limits.max_line_bytes {
            return Err(format!(
                "the features of this record take {} bytes, over the engine's limit of {} bytes per line",
                line.len() + 1,
                self.limits.max_line_bytes
            ));
        }
        Ok(line)
    }
}

#[pymethods]
impl OutputWriter {
    /// Creates `out_dir` and opens (truncates) the three outcome files.
    #[new]
    #[pyo3(signature = (out_dir, columns_json = "[]", cardinality = "many"))]
    fn new(out_dir: PathBuf, columns_json: &str, cardinality: &str) -> PyResult<Self> {
        let columns: Vec<ColumnDef> = serde_json::from_str(columns_json)
            .map_err(|e| PyValueError::new_err(format!("invalid columns: {e}")))?;
        let cardinality = match cardinality {
            "one" => Cardinality::One,
            "many" => Cardinality::Many,
            other => {
                return Err(PyValueError::new_err(format!(
                    "cardinality must be \"one\" or \"many\", got {other:?}"
                )));
            }
        };
        let spec = FeatureSpec::table(cardinality, columns)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        fs::create_dir_all(&out_dir)?;
        let sinks = [
            Sink::create(&out_dir, FEATURES_FILE)?,
            Sink::create(&out_dir, REJECTIONS_FILE)?,
            Sink::create(&out_dir, ERRORS_FILE)?,
        ];
        Ok(OutputWriter {
            dir: out_dir,
            spec,
            limits: OutputLimits::default(),
            sinks: Some(sinks),
            passed: 0,
            rejected: 0,
            errored: 0,
        })
    }

    /// Writes the features of record `id`. `rows_json` is a JSON array of row objects
    /// (`null` items mean no row).
    ///
    /// Returns `None` when the features line was written. When the rows break the
    /// hook's contract (or the engine's size limits) an errors line is written instead
    /// and its message is returned. Lone surrogates in `id` or `rows_json` are written
    /// as U+FFFD.
    fn write_features(
        &mut self,
        id: &Bound<'_, PyString>,
        rows_json: &Bound<'_, PyString>,
    ) -> PyResult<Option<String>> {
        let id = utf8_lossy(id)?;
        let id = id.as_ref();
        let rows_json = utf8_lossy(rows_json)?;
        let rows_json = rows_json.as_ref();
        let written = self.sink(FEATURES)?.bytes;
        let checked = self.features_line(id, rows_json).and_then(|line| {
            if written + line.len() as u64 + 1 > self.limits.max_file_bytes {
                Err(format!(
                    "{FEATURES_FILE} would grow past the engine's limit of {} bytes; this record's features were not written",
                    self.limits.max_file_bytes
                ))
            } else {
                Ok(line)
            }
        });
        match checked {
            Ok(line) => {
                self.sink(FEATURES)?.write_line(&line)?;
                self.passed += 1;
                Ok(None)
            }
            Err(message) => {
                self.error_line(id, &message, false)?;
                Ok(Some(message))
            }
        }
    }

    /// Writes a rejection of record `id` with `reason` (lone surrogates become U+FFFD).
    fn write_rejection(
        &mut self,
        id: &Bound<'_, PyString>,
        reason: &Bound<'_, PyString>,
    ) -> PyResult<()> {
        let id = utf8_lossy(id)?;
        let reason = cap_message(&utf8_lossy(reason)?);
        let written = self.message_line(REJECTIONS, &reason, |reason| {
            serde_json::to_vec(&RejectionLine { id: &id, reason })
                .expect("a rejection line always serialises")
        })?;
        self.rejected += u64::from(written);
        Ok(())
    }

    /// Writes an error of record `id` (lone surrogates become U+FFFD).
    #[pyo3(signature = (id, error, retryable = false))]
    fn write_error(
        &mut self,
        id: &Bound<'_, PyString>,
        error: &Bound<'_, PyString>,
        retryable: bool,
    ) -> PyResult<()> {
        self.error_line(&utf8_lossy(id)?, &utf8_lossy(error)?, retryable)
    }

    /// Flushes and closes the three files; later writes raise `ValueError`.
    fn close(&mut self) -> PyResult<()> {
        if let Some(sinks) = self.sinks.take() {
            for mut sink in sinks {
                sink.file
                    .flush()
                    .map_err(|e| PyOSError::new_err(format!("writing {}: {e}", sink.name)))?;
            }
        }
        Ok(())
    }

    /// Whether [`close`](Self::close) was called.
    #[getter]
    fn closed(&self) -> bool {
        self.sinks.is_none()
    }

    /// The output directory.
    #[getter]
    fn out_dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// Records with a features line.
    #[getter]
    fn passed(&self) -> u64 {
        self.passed
    }

    /// Records with a rejections line.
    #[getter]
    fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Records with an errors line.
    #[getter]
    fn errored(&self) -> u64 {
        self.errored
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &mut self,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc_type, exc, tb);
        self.close()?;
        Ok(false)
    }
}

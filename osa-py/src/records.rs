//! Streaming reader of `$OSA_IN/records.jsonl`.
//!
//! One line is read at a time (with a cap on its length), so memory stays flat however
//! many records a batch holds. Every non-blank line yields an [`InputRecord`]: either a
//! record (id and metadata object) or the reason the line is malformed. Reading never
//! raises for bad content; only I/O failures raise.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use osa_core::id::RecordId;
use pyo3::prelude::*;
use serde_json::{Map, Value};

use crate::convert::to_python;

/// Longest records.jsonl line accepted (64 MiB); longer lines become malformed lines.
pub const MAX_RECORD_LINE_BYTES: usize = 64 << 20;

/// What one line of `records.jsonl` holds, before any Python object is built.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedLine {
    /// A well-formed record.
    Record {
        /// The record id.
        id: String,
        /// The record's SRN, when the line carries one.
        srn: Option<String>,
        /// The metadata object.
        metadata: Map<String, Value>,
    },
    /// A line that is not a record; `id` is the line's id when it could be read.
    Malformed {
        /// The id of the line, when present and a string.
        id: Option<String>,
        /// What is wrong (`malformed record: ...`).
        error: String,
    },
}

/// Parses one non-blank line.
pub fn parse_line(bytes: &[u8]) -> ParsedLine {
    let malformed = |id: Option<String>, detail: String| ParsedLine::Malformed {
        id,
        error: format!("malformed record: {detail}"),
    };
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return malformed(None, format!("invalid JSON: {e}")),
    };
    let Value::Object(mut object) = value else {
        return malformed(
            None,
            format!("expected a JSON object, got {}", kind_of(&value)),
        );
    };
    let id = match object.remove("id") {
        Some(Value::String(id)) => match RecordId::new(id.as_str()) {
            Ok(_) => id,
            Err(e) => return malformed(None, format!("`id` is invalid: {}", e.rule())),
        },
        Some(other) => {
            return malformed(
                None,
                format!("`id` must be a string, got {}", kind_of(&other)),
            );
        }
        None => return malformed(None, "missing field `id`".into()),
    };
    let srn = match object.remove("srn") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    match object.remove("metadata") {
        Some(Value::Object(metadata)) => ParsedLine::Record { id, srn, metadata },
        Some(other) => malformed(
            Some(id),
            format!("`metadata` must be a JSON object, got {}", kind_of(&other)),
        ),
        None => malformed(Some(id), "missing field `metadata`".into()),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One non-blank line of `records.jsonl`.
///
/// `error` is `None` for a record; otherwise the line is malformed and `error` says
/// why (then `metadata` is `None` and `id` is the line's id if it had one).
#[pyclass(module = "osa._native", frozen, get_all)]
#[derive(Debug)]
pub struct InputRecord {
    /// 1-based line number (blank lines count).
    pub line: usize,
    /// The record id (`None` when the line has none).
    pub id: Option<String>,
    /// The record's SRN, when the line carries one.
    pub srn: Option<String>,
    /// The metadata object (`None` for malformed lines).
    pub metadata: Option<Py<PyAny>>,
    /// Why the line is malformed (`None` for records).
    pub error: Option<String>,
}

#[pymethods]
impl InputRecord {
    /// The id to report outcomes under: the record id, or `line-N` when the line has
    /// none.
    #[getter]
    fn outcome_id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("line-{}", self.line))
    }

    fn __repr__(&self) -> String {
        match &self.error {
            None => format!("InputRecord(line={}, id={:?})", self.line, self.id),
            Some(e) => format!(
                "InputRecord(line={}, id={:?}, error={:?})",
                self.line, self.id, e
            ),
        }
    }
}

/// Iterates over the records of a `records.jsonl` file, one line at a time.
///
/// Raises `FileNotFoundError`/`OSError` when the file cannot be opened or read.
#[pyclass(module = "osa._native")]
#[derive(Debug)]
pub struct RecordReader {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    line: usize,
    buf: Vec<u8>,
}

#[pymethods]
impl RecordReader {
    /// Opens `path` for reading.
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        let file = File::open(&path)?;
        if !file.metadata()?.is_file() {
            return Err(pyo3::exceptions::PyIsADirectoryError::new_err(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        Ok(RecordReader {
            path,
            reader: Some(BufReader::with_capacity(1 << 16, file)),
            line: 0,
            buf: Vec::new(),
        })
    }

    /// The file being read.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Lines read so far (blank lines included).
    #[getter]
    fn lines_read(&self) -> usize {
        self.line
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<InputRecord>> {
        loop {
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            self.buf.clear();
            let complete = read_capped_line(reader, &mut self.buf, MAX_RECORD_LINE_BYTES)?;
            let Some(too_long) = complete else {
                self.reader = None;
                return Ok(None);
            };
            self.line += 1;
            if too_long {
                return Ok(Some(InputRecord {
                    line: self.line,
                    id: None,
                    srn: None,
                    metadata: None,
                    error: Some(format!(
                        "malformed record: line is longer than {MAX_RECORD_LINE_BYTES} bytes"
                    )),
                }));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(match parse_line(&self.buf) {
                ParsedLine::Record { id, srn, metadata } => InputRecord {
                    line: self.line,
                    id: Some(id),
                    srn,
                    metadata: Some(to_python(py, &Value::Object(metadata))?.unbind()),
                    error: None,
                },
                ParsedLine::Malformed { id, error } => InputRecord {
                    line: self.line,
                    id,
                    srn: None,
                    metadata: None,
                    error: Some(error),
                },
            }));
        }
    }

    /// Closes the file; iteration then stops.
    fn close(&mut self) {
        self.reader = None;
    }
}

/// Reads one line (without its `\n`) into `buf`, keeping at most `cap` bytes.
///
/// Returns `None` at end of file, `Some(true)` when the line was longer than `cap`
/// (the rest of it is skipped), `Some(false)` otherwise.
fn read_capped_line(
    reader: &mut BufReader<File>,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Option<bool>> {
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let n = reader.by_ref().take(limit).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Some(false));
    }
    if buf.len() <= cap {
        // The last line of a file without a final newline.
        return Ok(Some(false));
    }
    // Over the cap: skip to the end of the line without keeping it.
    buf.clear();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        if let Some(pos) = available.iter().position(|&b| b == b'\n') {
            reader.consume(pos + 1);
            break;
        }
        let len = available.len();
        reader.consume(len);
    }
    Ok(Some(true))
}

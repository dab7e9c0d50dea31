//! Reading a hook's outputs and merging them into per-record outcomes.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    ContractError, ERRORS_FILE, FEATURES_FILE, HOOK_LOG_FILE, OutputLimits, PROGRESS_FILE,
    REJECTIONS_FILE, RUN_FILE,
};
use crate::feature::{Cardinality, FeatureSpec, FeatureValue, describe_value};
use crate::id::{HookRunId, RecordId, ReleaseId};

/// What happened to one record in one hook execution.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RecordOutcome {
    /// The record passed; its rows are validated and in column order.
    Passed {
        /// Coerced rows (empty for validators that produce no features).
        rows: Vec<Vec<FeatureValue>>,
    },
    /// The hook rejected the record.
    Rejected {
        /// The hook's reason.
        reason: String,
    },
    /// The record errored: the hook said so, or its output broke the contract.
    Errored {
        /// What went wrong (names the column and value for contract violations).
        error: String,
        /// Whether the hook marked the error as retryable.
        retryable: bool,
    },
}

impl RecordOutcome {
    fn errored(error: impl Into<String>) -> Self {
        RecordOutcome::Errored {
            error: error.into(),
            retryable: false,
        }
    }
}

/// One line of `progress.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgressEntry {
    /// Optional step label.
    pub step: Option<String>,
    /// Status (`unknown` when absent); `rejected` rejects the batch.
    pub status: String,
    /// Optional message (the rejection reason for `rejected`).
    pub message: Option<String>,
}

/// The merged outcomes of one execution.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchOutcome {
    /// Outcome per record of the batch that has one.
    pub outcomes: BTreeMap<RecordId, RecordOutcome>,
    /// Records of the batch (input order) with no outcome yet.
    pub missing: Vec<RecordId>,
    /// Progress lines, in order, at most [`OutputLimits::max_progress_entries`] (the
    /// last one an `omitted` summary when the hook wrote more).
    pub progress: Vec<ProgressEntry>,
    /// Progress lines not kept in [`BatchOutcome::progress`].
    pub progress_omitted: usize,
    /// Ids found in outputs that are not in the batch (ignored), one per line, at most
    /// [`OutputLimits::max_stray_ids`].
    pub stray_ids: Vec<String>,
    /// Lines with a stray id not listed in [`BatchOutcome::stray_ids`].
    pub stray_ids_omitted: usize,
    /// Unterminated, unparseable final lines (an interrupted write), dropped.
    pub torn_lines: Vec<&'static str>,
}

impl BatchOutcome {
    /// Turns every missing record into an error ("hook produced no outcome").
    pub fn finish(mut self) -> Self {
        for id in std::mem::take(&mut self.missing) {
            self.outcomes
                .insert(id, RecordOutcome::errored("hook produced no outcome"));
        }
        self
    }

    /// Adds the outcomes of a later attempt (which only saw records still missing).
    pub fn absorb(&mut self, later: BatchOutcome) {
        self.outcomes.extend(later.outcomes);
        self.missing = later.missing;
        self.progress.extend(later.progress);
        self.progress_omitted += later.progress_omitted;
        self.stray_ids.extend(later.stray_ids);
        self.stray_ids_omitted += later.stray_ids_omitted;
        self.torn_lines.extend(later.torn_lines);
    }

    /// Per-outcome counts.
    pub fn counts(&self) -> crate::hook::OutcomeCounts {
        let mut counts = crate::hook::OutcomeCounts::default();
        for outcome in self.outcomes.values() {
            match outcome {
                RecordOutcome::Passed { .. } => counts.passed += 1,
                RecordOutcome::Rejected { .. } => counts.rejected += 1,
                RecordOutcome::Errored { .. } => counts.errored += 1,
            }
        }
        counts.errored += self.missing.len() as u32;
        counts
    }
}

/// Reads the outputs in `out_dir` for a batch of `batch` records (input order) and
/// validates every feature row against `spec`.
///
/// Guarantees: never panics on any file content; files larger than the limits, lines
/// that cannot be attributed to a record, symlinks and special files are a typed
/// [`ContractError`]; a record-level problem (wrong type, unknown column, missing
/// required value, too many rows, several outcomes) becomes that record's
/// [`RecordOutcome::Errored`] with a message naming the row and column. A
/// `progress.jsonl` entry with `"status": "rejected"` rejects every record without
/// another outcome. Records with no outcome are listed in [`BatchOutcome::missing`].
///
/// Files are read one line at a time: each line is parsed, folded into the outcome and
/// dropped, so memory stays bounded by one line and what [`OutputLimits`] lets the
/// outcome keep, however many lines a file holds.
pub fn read_outcomes(
    out_dir: &Path,
    batch: &[RecordId],
    spec: &FeatureSpec,
    limits: &OutputLimits,
) -> Result<BatchOutcome, ContractError> {
    let in_batch: HashMap<&str, &RecordId> = batch.iter().map(|id| (id.as_str(), id)).collect();
    let mut outcome = BatchOutcome::default();
    // First outcome per record, and the places (and count) of all its outcomes.
    let mut found: HashMap<RecordId, Found> = HashMap::new();

    for file in [FEATURES_FILE, REJECTIONS_FILE, ERRORS_FILE] {
        let BatchOutcome {
            stray_ids,
            stray_ids_omitted,
            torn_lines,
            ..
        } = &mut outcome;
        for_each_line(out_dir, file, limits, torn_lines, |line_no, object| {
            let Some(Value::String(id)) = object.get("id") else {
                return Err(ContractError::MalformedLine {
                    file,
                    line: line_no,
                    detail: "missing string field `id`".into(),
                });
            };
            let Some(record) = in_batch.get(id.as_str()) else {
                if stray_ids.len() < limits.max_stray_ids {
                    stray_ids.push(truncate(id, 80));
                } else {
                    *stray_ids_omitted += 1;
                }
                return Ok(());
            };
            let here = || format!("{file} line {line_no}");
            if let Some(seen) = found.get_mut(*record) {
                seen.count += 1;
                if seen.places.len() < limits.max_outcome_places {
                    seen.places.push(here());
                }
                return Ok(());
            }
            let parsed = match file {
                FEATURES_FILE => features_outcome(&object, spec, limits),
                REJECTIONS_FILE => rejection_outcome(&object, limits),
                _ => error_outcome(&object, limits),
            };
            let places = if limits.max_outcome_places > 0 {
                vec![here()]
            } else {
                Vec::new()
            };
            found.insert(
                (*record).clone(),
                Found {
                    outcome: parsed,
                    places,
                    count: 1,
                },
            );
            Ok(())
        })?;
    }

    let mut batch_rejection: Option<String> = None;
    let mut progress_lines = 0usize;
    {
        let BatchOutcome {
            progress,
            torn_lines,
            ..
        } = &mut outcome;
        for_each_line(
            out_dir,
            PROGRESS_FILE,
            limits,
            torn_lines,
            |line_no, object| {
                // Judged on the hook's text, whatever `max_message_chars` cuts.
                let rejects =
                    matches!(object.get("status"), Some(Value::String(s)) if s == "rejected");
                let entry = progress_entry(&object, limits).map_err(|detail| {
                    ContractError::MalformedLine {
                        file: PROGRESS_FILE,
                        line: line_no,
                        detail,
                    }
                })?;
                if batch_rejection.is_none() && rejects {
                    batch_rejection = Some(
                        entry
                            .message
                            .clone()
                            .unwrap_or_else(|| "rejected by hook".into()),
                    );
                }
                progress_lines += 1;
                if progress.len() < limits.max_progress_entries {
                    progress.push(entry);
                }
                Ok(())
            },
        )?;
    }
    if progress_lines > outcome.progress.len() {
        // Over the cap: the last kept entry gives way to a summary of what was left out.
        outcome.progress.pop();
        let omitted = progress_lines - outcome.progress.len();
        outcome.progress_omitted = omitted;
        if limits.max_progress_entries > 0 {
            outcome.progress.push(ProgressEntry {
                step: None,
                status: "omitted".into(),
                message: Some(format!(
                    "{omitted} more progress lines omitted (at most {} are kept)",
                    limits.max_progress_entries
                )),
            });
        }
    }

    for (record, seen) in found {
        let parsed = if seen.count > 1 {
            RecordOutcome::errored(cap_message(
                &duplicate_message(&seen.places, seen.count),
                limits.max_message_chars,
            ))
        } else {
            seen.outcome
        };
        outcome.outcomes.insert(record, parsed);
    }

    for id in batch {
        if outcome.outcomes.contains_key(id) {
            continue;
        }
        match &batch_rejection {
            Some(reason) => {
                outcome.outcomes.insert(
                    id.clone(),
                    RecordOutcome::Rejected {
                        reason: reason.clone(),
                    },
                );
            }
            None => outcome.missing.push(id.clone()),
        }
    }
    Ok(outcome)
}

/// The first outcome found for a record, and where its outcomes are.
struct Found {
    /// The outcome of the first line naming the record.
    outcome: RecordOutcome,
    /// The first [`OutputLimits::max_outcome_places`] places (`file line n`).
    places: Vec<String>,
    /// How many lines name the record.
    count: usize,
}

/// The error of a record with `count` outcomes, naming the `places` kept.
fn duplicate_message(places: &[String], count: usize) -> String {
    if places.len() == count {
        format!(
            "hook produced more than one outcome ({})",
            places.join(", ")
        )
    } else if places.is_empty() {
        format!("hook produced more than one outcome ({count} in all)")
    } else {
        format!(
            "hook produced more than one outcome ({count} in all: {}, and {} more)",
            places.join(", "),
            count - places.len()
        )
    }
}

/// Cuts `text` to `max` characters followed by `… (cut)`. The Python SDK's writer
/// applies the same cut, so text it already cut is returned unchanged here.
pub fn cap_message(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => {
            let mut out = String::with_capacity(end + 8);
            out.push_str(&text[..end]);
            out.push_str("… (cut)");
            out
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// Checks that `object` has only the `allowed` keys; returns the first stray one.
fn stray_key<'a>(object: &'a Map<String, Value>, allowed: &[&str]) -> Option<&'a str> {
    object
        .keys()
        .map(String::as_str)
        .find(|k| !allowed.contains(k))
}

fn features_outcome(
    object: &Map<String, Value>,
    spec: &FeatureSpec,
    limits: &OutputLimits,
) -> RecordOutcome {
    if let Some(key) = stray_key(object, &["id", "features"]) {
        return RecordOutcome::errored(format!(
            "unexpected key `{}` in a features line (expected `id` and `features`)",
            truncate(key, 60)
        ));
    }
    let Some(Value::Array(items)) = object.get("features") else {
        return RecordOutcome::errored("a features line needs `features`: an array of row objects");
    };
    // `null` items are what validators returning None emit: no row.
    let rows: Vec<(usize, &Value)> = items
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_null())
        .collect();
    if spec.cardinality() == Cardinality::One && rows.len() > 1 {
        return RecordOutcome::errored(format!(
            "hook has cardinality `one` but produced {} rows for this record",
            rows.len()
        ));
    }
    if rows.len() > limits.max_rows_per_record {
        return RecordOutcome::errored(format!(
            "hook produced {} rows for this record, over the limit of {}",
            rows.len(),
            limits.max_rows_per_record
        ));
    }
    let mut coerced = Vec::with_capacity(rows.len());
    for (index, row) in rows {
        let Value::Object(row) = row else {
            return RecordOutcome::errored(format!(
                "row {index}: a feature row must be a JSON object, got {}",
                describe_value(row)
            ));
        };
        match spec.coerce_row(row) {
            Ok(values) => coerced.push(values),
            Err(e) => return RecordOutcome::errored(format!("row {index}: {e}")),
        }
    }
    RecordOutcome::Passed { rows: coerced }
}

fn rejection_outcome(object: &Map<String, Value>, limits: &OutputLimits) -> RecordOutcome {
    if let Some(key) = stray_key(object, &["id", "reason"]) {
        return RecordOutcome::errored(format!(
            "unexpected key `{}` in a rejections line (expected `id` and `reason`)",
            truncate(key, 60)
        ));
    }
    match object.get("reason") {
        Some(Value::String(reason)) => RecordOutcome::Rejected {
            reason: cap_message(reason, limits.max_message_chars),
        },
        None | Some(Value::Null) => RecordOutcome::Rejected {
            reason: String::new(),
        },
        Some(other) => RecordOutcome::errored(format!(
            "a rejection's `reason` must be a string, got {}",
            describe_value(other)
        )),
    }
}

fn error_outcome(object: &Map<String, Value>, limits: &OutputLimits) -> RecordOutcome {
    if let Some(key) = stray_key(object, &["id", "error", "retryable"]) {
        return RecordOutcome::errored(format!(
            "unexpected key `{}` in an errors line (expected `id`, `error`, `retryable`)",
            truncate(key, 60)
        ));
    }
    let error = match object.get("error") {
        Some(Value::String(e)) => cap_message(e, limits.max_message_chars),
        None | Some(Value::Null) => "hook reported an error without a message".into(),
        Some(other) => cap_message(&other.to_string(), limits.max_message_chars),
    };
    let retryable = matches!(object.get("retryable"), Some(Value::Bool(true)));
    RecordOutcome::Errored { error, retryable }
}

fn progress_entry(
    object: &Map<String, Value>,
    limits: &OutputLimits,
) -> Result<ProgressEntry, String> {
    let text = |key: &str| -> Result<Option<String>, String> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(cap_message(s, limits.max_message_chars))),
            Some(other) => Err(format!(
                "`{key}` must be a string, got {}",
                describe_value(other)
            )),
        }
    };
    Ok(ProgressEntry {
        step: text("step")?,
        status: text("status")?.unwrap_or_else(|| "unknown".into()),
        message: text("message")?,
    })
}

/// Calls `fold` with every line of one output file, parsed as a JSON object, and its
/// 1-based line number; a missing file has no lines. Blank lines are skipped but
/// counted. One line is in memory at a time; `fold`'s first error stops the reading.
fn for_each_line(
    out_dir: &Path,
    file: &'static str,
    limits: &OutputLimits,
    torn: &mut Vec<&'static str>,
    mut fold: impl FnMut(usize, Map<String, Value>) -> Result<(), ContractError>,
) -> Result<(), ContractError> {
    let path = out_dir.join(file);
    let Some(handle) = open_capped(&path, file, limits.max_file_bytes)? else {
        return Ok(());
    };
    // The file may still grow (a hook left running); never read past the limit.
    let mut reader = BufReader::new(handle.take(limits.max_file_bytes + 1));
    let line_cap = u64::try_from(limits.max_line_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut line = Vec::new();
    let mut total: u64 = 0;
    let mut line_no = 0;
    loop {
        line.clear();
        // At most one byte more than a line may hold (its newline, or the proof that
        // it is too long).
        let read = (&mut reader)
            .take(line_cap)
            .read_until(b'\n', &mut line)
            .map_err(|e| ContractError::io("reading", &path, e))?;
        if read == 0 {
            return Ok(());
        }
        total += read as u64;
        if total > limits.max_file_bytes {
            return Err(ContractError::OutputTooLarge {
                file,
                size: total,
                limit: limits.max_file_bytes,
            });
        }
        line_no += 1;
        let terminated = line.last() == Some(&b'\n');
        if terminated {
            line.pop();
        }
        if line.len() > limits.max_line_bytes {
            return Err(ContractError::LineTooLong {
                file,
                line: line_no,
                limit: limits.max_line_bytes,
            });
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(&line) {
            Ok(Value::Object(object)) => fold(line_no, object)?,
            Ok(other) => {
                return Err(ContractError::MalformedLine {
                    file,
                    line: line_no,
                    detail: format!("expected a JSON object, got {}", describe_value(&other)),
                });
            }
            // A final line without its newline that does not parse is a write the
            // hook did not finish (killed mid-write); its record has no outcome yet.
            // Only the last line of a file can lack its newline.
            Err(_) if !terminated => torn.push(file),
            Err(e) => {
                return Err(ContractError::MalformedLine {
                    file,
                    line: line_no,
                    detail: format!("not valid JSON: {e}"),
                });
            }
        }
    }
}

/// Opens `path` without following symlinks and without blocking on FIFOs and checks it
/// is a regular file within `limit` bytes. `None` when it does not exist.
fn open_capped(
    path: &Path,
    file: &'static str,
    limit: u64,
) -> Result<Option<fs::File>, ContractError> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    }
    let handle = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(ContractError::NotARegularFile { file });
        }
        Err(e) => return Err(ContractError::io("reading", path, e)),
    };
    let meta = handle
        .metadata()
        .map_err(|e| ContractError::io("reading", path, e))?;
    if !meta.is_file() {
        return Err(ContractError::NotARegularFile { file });
    }
    if meta.len() > limit {
        return Err(ContractError::OutputTooLarge {
            file,
            size: meta.len(),
            limit,
        });
    }
    Ok(Some(handle))
}

/// Writes `bytes` to `dir/name`, replacing whatever the hook left there (a symlink
/// is removed, never followed).
fn write_replacing(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ContractError> {
    let path = dir.join(name);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(&path).map_err(|e| ContractError::io("removing", &path, e))?;
        }
        Ok(_) => fs::remove_file(&path).map_err(|e| ContractError::io("removing", &path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ContractError::io("reading", &path, e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    let mut handle = options
        .open(&path)
        .map_err(|e| ContractError::io("writing", &path, e))?;
    std::io::Write::write_all(&mut handle, bytes)
        .map_err(|e| ContractError::io("writing", &path, e))
}

/// Writes `run.json` (`{"run_id", "release_id"}`) next to the outputs.
pub fn write_run_json(
    out_dir: &Path,
    run_id: HookRunId,
    release_id: ReleaseId,
) -> Result<(), ContractError> {
    let body = serde_json::json!({"run_id": run_id, "release_id": release_id});
    write_replacing(out_dir, RUN_FILE, body.to_string().as_bytes())
}

/// Writes `hook.log`, keeping at most `cap` bytes (the head and the tail, with a marker
/// between them when cut). Returns the bytes written.
pub fn write_hook_log(out_dir: &Path, log: &[u8], cap: usize) -> Result<usize, ContractError> {
    let capped = cap_log(log, cap);
    write_replacing(out_dir, HOOK_LOG_FILE, &capped)?;
    Ok(capped.len())
}

/// Keeps the first and last halves of `log` within `cap` bytes, with a marker.
pub fn cap_log(log: &[u8], cap: usize) -> Vec<u8> {
    if log.len() <= cap {
        return log.to_vec();
    }
    let marker = format!("\n… {} bytes of log omitted …\n", log.len() - cap);
    let keep = cap.saturating_sub(marker.len());
    let head = keep / 2;
    let tail = keep - head;
    let mut out = Vec::with_capacity(cap);
    out.extend_from_slice(&log[..head]);
    out.extend_from_slice(marker.as_bytes());
    out.extend_from_slice(&log[log.len() - tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::{ColumnDef, JsonType};
    use crate::id::ColumnName;
    use serde_json::json;

    fn spec(cardinality: Cardinality) -> FeatureSpec {
        let col = |name: &str, json_type, format: Option<&str>, required| ColumnDef {
            name: ColumnName::new(name).unwrap(),
            json_type,
            format: format.map(String::from),
            required,
            description: None,
            unit: None,
        };
        FeatureSpec::table(
            cardinality,
            vec![
                col("score", JsonType::Number, None, true),
                col("seen_at", JsonType::String, Some("date-time"), false),
            ],
        )
        .unwrap()
    }

    fn ids(names: &[&str]) -> Vec<RecordId> {
        names.iter().map(|n| RecordId::new(*n).unwrap()).collect()
    }

    fn write(dir: &Path, file: &str, lines: &[Value]) {
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        fs::write(dir.join(file), body).unwrap();
    }

    fn read(dir: &Path, batch: &[RecordId], cardinality: Cardinality) -> BatchOutcome {
        read_outcomes(dir, batch, &spec(cardinality), &OutputLimits::default()).unwrap()
    }

    fn error_of(outcome: &BatchOutcome, id: &str) -> String {
        match &outcome.outcomes[&RecordId::new(id).unwrap()] {
            RecordOutcome::Errored { error, .. } => error.clone(),
            other => panic!("expected an error for {id}, got {other:?}"),
        }
    }

    #[test]
    fn merges_the_three_outcome_files() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            FEATURES_FILE,
            &[json!({"id": "a", "features": [{"score": 1.0}, {"score": 2}]})],
        );
        write(
            dir.path(),
            REJECTIONS_FILE,
            &[json!({"id": "b", "reason": "too blurry"})],
        );
        write(
            dir.path(),
            ERRORS_FILE,
            &[json!({"id": "c", "error": "boom", "retryable": true})],
        );
        let out = read(dir.path(), &ids(&["a", "b", "c", "d"]), Cardinality::Many);
        assert_eq!(
            out.outcomes[&RecordId::new("a").unwrap()],
            RecordOutcome::Passed {
                rows: vec![
                    vec![FeatureValue::Float(1.0), FeatureValue::Null],
                    vec![FeatureValue::Float(2.0), FeatureValue::Null]
                ]
            }
        );
        assert_eq!(
            out.outcomes[&RecordId::new("b").unwrap()],
            RecordOutcome::Rejected {
                reason: "too blurry".into()
            }
        );
        assert_eq!(
            out.outcomes[&RecordId::new("c").unwrap()],
            RecordOutcome::Errored {
                error: "boom".into(),
                retryable: true
            }
        );
        assert_eq!(out.missing, ids(&["d"]));
        let counts = out.counts();
        assert_eq!((counts.passed, counts.rejected, counts.errored), (1, 1, 2));
        let finished = out.finish();
        assert_eq!(error_of(&finished, "d"), "hook produced no outcome");
    }

    #[test]
    fn progress_rejection_rejects_records_without_outcome() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            FEATURES_FILE,
            &[json!({"id": "a", "features": [{"score": 1}]})],
        );
        write(
            dir.path(),
            PROGRESS_FILE,
            &[
                json!({"step": "load", "status": "info"}),
                json!({"status": "rejected", "message": "no CIF file"}),
            ],
        );
        let out = read(dir.path(), &ids(&["a", "b"]), Cardinality::One);
        assert!(matches!(
            out.outcomes[&RecordId::new("a").unwrap()],
            RecordOutcome::Passed { .. }
        ));
        assert_eq!(
            out.outcomes[&RecordId::new("b").unwrap()],
            RecordOutcome::Rejected {
                reason: "no CIF file".into()
            }
        );
        assert!(out.missing.is_empty());
        assert_eq!(out.progress.len(), 2);
        assert_eq!(out.progress[0].step.as_deref(), Some("load"));
    }

    #[test]
    fn row_violations_are_record_errors_naming_the_column() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            FEATURES_FILE,
            &[
                json!({"id": "r-17", "features": [{"score": "high"}]}),
                json!({"id": "unknown", "features": [{"score": 1, "colour": "red"}]}),
                json!({"id": "missing", "features": [{"seen_at": "2024-01-01T00:00:00Z"}]}),
                json!({"id": "two", "features": [{"score": 1}, {"score": 2}]}),
                json!({"id": "nulls", "features": [null]}),
                json!({"id": "scalar", "features": [3]}),
                json!({"id": "shape", "features": {"score": 1}}),
            ],
        );
        let out = read(
            dir.path(),
            &ids(&[
                "r-17", "unknown", "missing", "two", "nulls", "scalar", "shape",
            ]),
            Cardinality::One,
        );
        assert_eq!(
            error_of(&out, "r-17"),
            "row 0: column `score` expects a number, got string \"high\""
        );
        assert!(error_of(&out, "unknown").contains("unknown column `colour`"));
        assert_eq!(
            error_of(&out, "missing"),
            "row 0: column `score` is required but missing or null"
        );
        assert!(error_of(&out, "two").contains("cardinality `one` but produced 2 rows"));
        assert_eq!(
            out.outcomes[&RecordId::new("nulls").unwrap()],
            RecordOutcome::Passed { rows: vec![] }
        );
        assert!(error_of(&out, "scalar").contains("must be a JSON object, got number 3"));
        assert!(error_of(&out, "shape").contains("array of row objects"));
    }

    #[test]
    fn date_time_is_coerced() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            FEATURES_FILE,
            &[
                json!({"id": "a", "features": [{"score": 1, "seen_at": "2024-03-01T08:30:00+01:00"}]}),
            ],
        );
        let out = read(dir.path(), &ids(&["a"]), Cardinality::One);
        let RecordOutcome::Passed { rows } = &out.outcomes[&RecordId::new("a").unwrap()] else {
            panic!("expected a pass");
        };
        assert_eq!(
            rows[0][1],
            FeatureValue::Timestamp("2024-03-01T07:30:00Z".parse().unwrap())
        );
    }

    #[test]
    fn several_outcomes_for_one_record_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            FEATURES_FILE,
            &[json!({"id": "a", "features": []})],
        );
        write(
            dir.path(),
            REJECTIONS_FILE,
            &[json!({"id": "a", "reason": "x"})],
        );
        let out = read(dir.path(), &ids(&["a"]), Cardinality::Many);
        assert_eq!(
            error_of(&out, "a"),
            "hook produced more than one outcome (features.jsonl line 1, rejections.jsonl line 1)"
        );
    }

    #[test]
    fn stray_ids_and_blank_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(REJECTIONS_FILE),
            "\n{\"id\": \"zzz\", \"reason\": \"x\"}\n\n{\"id\": \"a\", \"reason\": \"y\"}\n",
        )
        .unwrap();
        let out = read(dir.path(), &ids(&["a"]), Cardinality::Many);
        assert_eq!(out.stray_ids, vec!["zzz".to_string()]);
        assert!(matches!(
            out.outcomes[&RecordId::new("a").unwrap()],
            RecordOutcome::Rejected { .. }
        ));
    }

    #[test]
    fn malformed_lines_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FEATURES_FILE),
            "{\"id\": \"a\", \"features\": []}\nnot json\n",
        )
        .unwrap();
        let err = read_outcomes(
            dir.path(),
            &ids(&["a"]),
            &spec(Cardinality::One),
            &OutputLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                ContractError::MalformedLine {
                    file: FEATURES_FILE,
                    line: 2,
                    ..
                }
            ),
            "{err}"
        );
        fs::write(dir.path().join(FEATURES_FILE), "[1, 2]\n").unwrap();
        let err = read_outcomes(
            dir.path(),
            &ids(&["a"]),
            &spec(Cardinality::One),
            &OutputLimits::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("expected a JSON object, got array"),
            "{err}"
        );
        fs::write(dir.path().join(FEATURES_FILE), "{\"features\": []}\n").unwrap();
        let err = read_outcomes(
            dir.path(),
            &ids(&["a"]),
            &spec(Cardinality::One),
            &OutputLimits::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("missing string field `id`"),
            "{err}"
        );
    }

    #[test]
    fn torn_final_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FEATURES_FILE),
            "{\"id\": \"a\", \"features\": []}\n{\"id\": \"b\", \"feat",
        )
        .unwrap();
        let out = read(dir.path(), &ids(&["a", "b"]), Cardinality::Many);
        assert_eq!(out.missing, ids(&["b"]));
        assert_eq!(out.torn_lines, vec![FEATURES_FILE]);
    }

    #[test]
    fn oversized_features_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = fs::File::create(dir.path().join(FEATURES_FILE)).unwrap();
        // Sparse: 70 MiB without writing 70 MiB.
        file.set_len(70 << 20).unwrap();
        let err = read_outcomes(
            dir.path(),
            &ids(&["a"]),
            &spec(Cardinality::One),
            &OutputLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ContractError::OutputTooLarge { file: FEATURES_FILE, size, .. } if size == 70 << 20)
        );
        assert_eq!(
            err.to_string(),
            "features.jsonl is 73400320 bytes, over the limit of 67108864 bytes; the hook must write less output per batch"
        );
    }

    #[test]
    fn long_lines_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutputLimits {
            max_line_bytes: 64,
            ..OutputLimits::default()
        };
        fs::write(
            dir.path().join(ERRORS_FILE),
            format!("{{\"id\": \"a\", \"error\": \"{}\"}}\n", "x".repeat(100)),
        )
        .unwrap();
        let err =
            read_outcomes(dir.path(), &ids(&["a"]), &spec(Cardinality::One), &limits).unwrap_err();
        assert!(matches!(err, ContractError::LineTooLong { line: 1, .. }));
    }

    #[test]
    fn too_many_rows_for_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutputLimits {
            max_rows_per_record: 2,
            ..OutputLimits::default()
        };
        write(
            dir.path(),
            FEATURES_FILE,
            &[json!({"id": "a", "features": [{"score": 1}, {"score": 2}, {"score": 3}]})],
        );
        let out =
            read_outcomes(dir.path(), &ids(&["a"]), &spec(Cardinality::Many), &limits).unwrap();
        assert!(error_of(&out, "a").contains("over the limit of 2"));
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let line = r#"{"id": "a", "reason": "x"}"#;
        let exact = OutputLimits {
            max_line_bytes: line.len(),
            ..OutputLimits::default()
        };
        for body in [
            format!("{line}\n"),
            line.to_string(),
            format!("\n{line}\n\n"),
        ] {
            fs::write(dir.path().join(REJECTIONS_FILE), &body).unwrap();
            let out =
                read_outcomes(dir.path(), &ids(&["a"]), &spec(Cardinality::One), &exact).unwrap();
            assert_eq!(
                out.outcomes[&RecordId::new("a").unwrap()],
                RecordOutcome::Rejected { reason: "x".into() },
                "{body:?}"
            );
        }
        let short = OutputLimits {
            max_line_bytes: line.len() - 1,
            ..OutputLimits::default()
        };
        for (body, at) in [(format!("{line}\n"), 1), (format!("\n{line}"), 2)] {
            fs::write(dir.path().join(REJECTIONS_FILE), &body).unwrap();
            let err = read_outcomes(dir.path(), &ids(&["a"]), &spec(Cardinality::One), &short)
                .unwrap_err();
            assert!(
                matches!(err, ContractError::LineTooLong { line, .. } if line == at),
                "{body:?}: {err}"
            );
        }
    }

    #[test]
    fn small_caps_bound_what_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutputLimits {
            max_progress_entries: 2,
            max_stray_ids: 1,
            max_outcome_places: 0,
            max_message_chars: 3,
            ..OutputLimits::default()
        };
        write(
            dir.path(),
            REJECTIONS_FILE,
            &[
                json!({"id": "x", "reason": "r"}),
                json!({"id": "y", "reason": "r"}),
                json!({"id": "a", "reason": "abcdef"}),
                json!({"id": "b", "reason": "r"}),
                json!({"id": "b", "reason": "r"}),
            ],
        );
        write(
            dir.path(),
            PROGRESS_FILE,
            &[
                json!({"step": "one", "status": "running"}),
                json!({"status": "running", "message": "halfway"}),
                json!({"status": "rejected", "message": "too late"}),
            ],
        );
        let out = read_outcomes(
            dir.path(),
            &ids(&["a", "b", "c"]),
            &spec(Cardinality::One),
            &limits,
        )
        .unwrap();
        assert_eq!(out.stray_ids, vec!["x".to_string()]);
        assert_eq!(out.stray_ids_omitted, 1);
        assert_eq!(
            out.outcomes[&RecordId::new("a").unwrap()],
            RecordOutcome::Rejected {
                reason: "abc… (cut)".into()
            }
        );
        assert_eq!(error_of(&out, "b"), "hoo… (cut)");
        assert_eq!(
            out.outcomes[&RecordId::new("c").unwrap()],
            RecordOutcome::Rejected {
                reason: "too… (cut)".into()
            }
        );
        assert_eq!(out.progress.len(), 2);
        assert_eq!(out.progress[0].step.as_deref(), Some("one"));
        assert_eq!(out.progress[1].status, "omitted");
        assert_eq!(
            out.progress[1].message.as_deref(),
            Some("2 more progress lines omitted (at most 2 are kept)")
        );
        assert_eq!(out.progress_omitted, 2);

        let mut first = out.clone();
        first.absorb(out);
        assert_eq!((first.stray_ids_omitted, first.progress_omitted), (2, 4));

        let none = OutputLimits {
            max_progress_entries: 0,
            ..OutputLimits::default()
        };
        let out = read_outcomes(dir.path(), &ids(&["a"]), &spec(Cardinality::One), &none).unwrap();
        assert!(out.progress.is_empty());
        assert_eq!(out.progress_omitted, 3);
    }

    #[test]
    fn duplicate_message_names_the_places_kept() {
        let places = |n: usize| -> Vec<String> { (1..=n).map(|i| format!("f line {i}")).collect() };
        assert_eq!(
            duplicate_message(&places(2), 2),
            "hook produced more than one outcome (f line 1, f line 2)"
        );
        assert_eq!(
            duplicate_message(&places(2), 7),
            "hook produced more than one outcome (7 in all: f line 1, f line 2, and 5 more)"
        );
        assert_eq!(
            duplicate_message(&[], 7),
            "hook produced more than one outcome (7 in all)"
        );
        assert_eq!(cap_message("ab", 2), "ab");
        assert_eq!(cap_message("abc", 2), "ab… (cut)");
        assert_eq!(cap_message("ab… (cut)", 2), "ab… (cut)");
        assert_eq!(cap_message("éèê", 1), "é… (cut)");
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_and_fifos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(FEATURES_FILE)).unwrap();
        let err = read_outcomes(
            dir.path(),
            &ids(&["a"]),
            &spec(Cardinality::One),
            &OutputLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ContractError::NotARegularFile { .. }),
            "{err}"
        );
        fs::remove_file(dir.path().join(FEATURES_FILE)).unwrap();
        let fifo = dir.path().join(ERRORS_FILE);
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let err = read_outcomes(
            dir.path(),
            &ids(&["a"]),
            &spec(Cardinality::One),
            &OutputLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ContractError::NotARegularFile { file: ERRORS_FILE }),
            "{err}"
        );
    }

    #[test]
    fn run_json_and_log_replace_what_the_hook_left() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("outside");
        fs::write(&target, "keep").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, dir.path().join(RUN_FILE)).unwrap();
        let run = HookRunId::new_random();
        let release = ReleaseId::new_random();
        write_run_json(dir.path(), run, release).unwrap();
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            "keep",
            "symlink must not be followed"
        );
        let body: Value =
            serde_json::from_slice(&fs::read(dir.path().join(RUN_FILE)).unwrap()).unwrap();
        assert_eq!(body, json!({"run_id": run, "release_id": release}));

        let log: Vec<u8> = (0..10_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let written = write_hook_log(dir.path(), &log, 1024).unwrap();
        assert!(written <= 1024);
        let kept = fs::read_to_string(dir.path().join(HOOK_LOG_FILE)).unwrap();
        assert!(kept.starts_with("line 0\n"));
        assert!(kept.contains("bytes of log omitted"));
        assert!(kept.ends_with("line 9999\n"));
    }
}

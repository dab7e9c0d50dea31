//! The hook contract: one file-based interface for every runner.
//!
//! A hook execution processes a *batch* of records. The engine prepares a batch
//! directory ([`BatchLayout::prepare`]):
//!
//! | path | content |
//! |---|---|
//! | `in/records.jsonl` | one `{"id", "metadata", "size_hint_mb"}` per line |
//! | `in/config.json` | the release config, only when non-empty |
//! | `files/<record dir>/` | each record's files ([`record_dir_name`]) |
//! | `out/` | the hook's outputs |
//!
//! The hook sees them as `$OSA_IN`, `$OSA_FILES` and `$OSA_OUT` (for OCI: `/osa/in`,
//! `/osa/files`, `/osa/out`) and writes JSON lines to `features.jsonl`,
//! `rejections.jsonl`, `errors.jsonl` and `progress.jsonl`. The engine reads them with
//! hard limits ([`read_outcomes`]), validates every feature row against the hook's
//! columns, and merges everything into one [`RecordOutcome`] per record.
//!
//! This is the contract the published `osa-py` SDK (0.7+) writes, so SDK-built hook
//! images run unchanged.

mod batch;
mod output;

use std::path::PathBuf;

pub use batch::{BatchFile, BatchLayout, BatchLimits, BatchRecord, PreparedBatch};
pub use output::{
    BatchOutcome, ProgressEntry, RecordOutcome, cap_log, cap_message, read_outcomes,
    write_hook_log, write_run_json,
};

use crate::error::{ErrorKind, RetryClass};

/// Input file with one record per line.
pub const RECORDS_FILE: &str = "records.jsonl";
/// Input file with the release config (only when non-empty).
pub const CONFIG_FILE: &str = "config.json";
/// Output: `{"id", "features": [...]}` per line.
pub const FEATURES_FILE: &str = "features.jsonl";
/// Output: `{"id", "reason"}` per line.
pub const REJECTIONS_FILE: &str = "rejections.jsonl";
/// Output: `{"id", "error", "retryable"}` per line.
pub const ERRORS_FILE: &str = "errors.jsonl";
/// Output: `{"step"?, "status", "message"?}` per line.
pub const PROGRESS_FILE: &str = "progress.jsonl";
/// Written by the engine after an execution: `{"run_id", "release_id"}`.
pub const RUN_FILE: &str = "run.json";
/// Written by the engine for failed executions: captured stdout and stderr.
pub const HOOK_LOG_FILE: &str = "hook.log";

/// Environment variable naming the input directory.
pub const ENV_IN: &str = "OSA_IN";
/// Environment variable naming the output directory.
pub const ENV_OUT: &str = "OSA_OUT";
/// Environment variable naming the files directory.
pub const ENV_FILES: &str = "OSA_FILES";
/// Environment variable naming the hook being run.
pub const ENV_HOOK_NAME: &str = "OSA_HOOK_NAME";

/// Mount points inside an OCI container.
pub mod container_paths {
    /// `$OSA_IN` inside a container.
    pub const IN: &str = "/osa/in";
    /// `$OSA_OUT` inside a container.
    pub const OUT: &str = "/osa/out";
    /// `$OSA_FILES` inside a container.
    pub const FILES: &str = "/osa/files";
}

/// The directory name of a record's files: the id with every character outside
/// `[A-Za-z0-9._-]` replaced by `_`. The SDK applies the same mapping.
pub fn record_dir_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Most characters kept of one message a hook writes (a rejection reason, an error, a
/// progress field). Longer text is cut to this many characters followed by `… (cut)`,
/// the same cut the Python SDK's writer applies, so text it already cut passes
/// unchanged.
pub const MAX_MESSAGE_CHARS: usize = 16 * 1024;

/// Hard limits applied when reading a hook's outputs.
///
/// The reader handles one line at a time, so its memory is bounded by one line plus
/// what it keeps: one outcome per record of the batch (each at most
/// `max_rows_per_record` rows and `max_message_chars` characters of text), at most
/// `max_progress_entries` progress entries and `max_stray_ids` stray ids, however many
/// lines the files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Largest output file accepted (default 64 MiB).
    pub max_file_bytes: u64,
    /// Longest line accepted (default 4 MiB).
    pub max_line_bytes: usize,
    /// Most feature rows one record may produce (default 10,000).
    pub max_rows_per_record: usize,
    /// Most bytes of captured log kept (default 1 MiB).
    pub max_log_bytes: usize,
    /// Most `progress.jsonl` entries kept (default 1,000). When a hook writes more
    /// lines, the first `max_progress_entries - 1` are kept, followed by one entry with
    /// status `omitted` whose message counts the lines left out
    /// ([`BatchOutcome::progress_omitted`]). Every line is still checked, and a
    /// `rejected` entry rejects the batch wherever it is.
    pub max_progress_entries: usize,
    /// Most stray ids (ids not in the batch, one per line) listed (default 100); the
    /// lines beyond are counted in [`BatchOutcome::stray_ids_omitted`].
    pub max_stray_ids: usize,
    /// Most places (`file line n`) named in the error of a record with more than one
    /// outcome (default 10); the message gives the total and how many are not named.
    pub max_outcome_places: usize,
    /// Most characters kept of a rejection reason, an error message or a progress
    /// field (default [`MAX_MESSAGE_CHARS`]); longer text ends with `… (cut)`.
    pub max_message_chars: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            max_file_bytes: 64 << 20,
            max_line_bytes: 4 << 20,
            max_rows_per_record: 10_000,
            max_log_bytes: 1 << 20,
            max_progress_entries: 1_000,
            max_stray_ids: 100,
            max_outcome_places: 10,
            max_message_chars: MAX_MESSAGE_CHARS,
        }
    }
}

/// A batch that cannot be prepared, or outputs that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// An output file is larger than [`OutputLimits::max_file_bytes`].
    #[error(
        "{file} is {size} bytes, over the limit of {limit} bytes; the hook must write less output per batch"
    )]
    OutputTooLarge {
        /// The output file.
        file: &'static str,
        /// Its size (or a lower bound).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A line is longer than [`OutputLimits::max_line_bytes`].
    #[error("{file} line {line} is longer than {limit} bytes")]
    LineTooLong {
        /// The output file.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// A line that cannot be attributed to a record (not JSON, not an object, no id).
    #[error("{file} line {line} is malformed: {detail}")]
    MalformedLine {
        /// The output file.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// An output is a symlink, a directory, a FIFO or a device.
    #[error("{file} is not a regular file (symlinks, FIFOs and devices are refused)")]
    NotARegularFile {
        /// The output file.
        file: &'static str,
    },
    /// Two record ids of one batch map to the same files directory.
    #[error(
        "record ids {first:?} and {second:?} both map to the files directory `{dir}`; ids of one batch must differ after the mapping"
    )]
    DirNameCollision {
        /// First id.
        first: String,
        /// Second id.
        second: String,
        /// The shared directory name.
        dir: String,
    },
    /// The same record id appears twice in one batch.
    #[error("record id {0:?} appears twice in the batch")]
    DuplicateRecord(String),
    /// A record's file is larger than [`BatchLimits::max_file_bytes`].
    #[error("file `{name}` of record {record:?} is {size} bytes, over the limit of {limit} bytes")]
    InputFileTooLarge {
        /// The record.
        record: String,
        /// The file name.
        name: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A record's file appears twice.
    #[error("record {record:?} lists the file `{name}` twice")]
    DuplicateFile {
        /// The record.
        record: String,
        /// The file name.
        name: String,
    },
    /// A batch with more records than [`BatchLimits::max_records`].
    #[error("a batch holds at most {limit} records, got {count}")]
    TooManyRecords {
        /// Records given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A record's metadata is not a JSON object.
    #[error("metadata of record {record:?} must be a JSON object")]
    MetadataNotObject {
        /// The record.
        record: String,
    },
    /// Reading or writing the batch directory failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted (`reading`, `copying`).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ContractError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ContractError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Input errors are Invalid; I/O errors are Unavailable; a hook's broken output
    /// is Invalid (the hook, not the engine, is at fault).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ContractError::Io { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::Invalid,
        }
    }

    /// Only I/O errors may go away on a retry.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            ContractError::Io { .. } => RetryClass::Transient,
            _ => RetryClass::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_name_mapping() {
        assert_eq!(
            record_dir_name("urn:osa:localhost:rec:abc@1"),
            "urn_osa_localhost_rec_abc_1"
        );
        assert_eq!(record_dir_name("4TOS"), "4TOS");
        assert_eq!(record_dir_name("a b/c"), "a_b_c");
        assert_eq!(record_dir_name("é"), "_");
        assert_eq!(record_dir_name("v1.2-x_y"), "v1.2-x_y");
    }
}

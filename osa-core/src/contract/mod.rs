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

pub use batch::{BatchFile, BatchLayout, BatchLimits, BatchRecord, PreparedBatch};
pub use output::{
    BatchOutcome, ProgressEntry, RecordOutcome, cap_log, cap_message, read_outcomes,
    write_hook_log, write_run_json,
};

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

pub use crate::id::record_dir_name;

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
#[non_exhaustive]
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

pub use crate::error::ContractError;

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

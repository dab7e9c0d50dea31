//! The output reader's memory and the outcome it keeps are bounded by the records of
//! the batch, not by the number of lines a hook writes: files that stay within every
//! byte limit but repeat tiny lines millions of times must not blow up.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use osa_core::contract::{
    BatchOutcome, ERRORS_FILE, FEATURES_FILE, OutputLimits, PROGRESS_FILE, REJECTIONS_FILE,
    RecordOutcome, read_outcomes,
};
use osa_core::feature::FeatureSpec;
use osa_core::id::RecordId;

const LINES: usize = 500_000;

fn spec() -> FeatureSpec {
    serde_json::from_value(serde_json::json!({
        "kind": "table",
        "cardinality": "many",
        "columns": [{"name": "score", "json_type": "number", "required": false}],
    }))
    .unwrap()
}

fn batch() -> Vec<RecordId> {
    vec![RecordId::new("a").unwrap()]
}

/// Writes `line` (without its newline) `count` times to `dir/file`.
fn repeat(dir: &Path, file: &str, line: &str, count: usize) {
    let mut out = BufWriter::new(fs::File::create(dir.join(file)).unwrap());
    for _ in 0..count {
        out.write_all(line.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}

fn read(dir: &Path) -> BatchOutcome {
    read_outcomes(dir, &batch(), &spec(), &OutputLimits::default()).unwrap()
}

fn outcome_of(out: &BatchOutcome) -> &RecordOutcome {
    &out.outcomes[&RecordId::new("a").unwrap()]
}

#[test]
fn duplicate_outcomes_give_a_short_message_naming_the_count() {
    let dir = tempfile::tempdir().unwrap();
    repeat(
        dir.path(),
        FEATURES_FILE,
        r#"{"id":"a","features":[]}"#,
        LINES,
    );
    let out = read(dir.path());
    let RecordOutcome::Errored { error, retryable } = outcome_of(&out) else {
        panic!("expected an error, got {:?}", outcome_of(&out));
    };
    assert!(!retryable);
    assert!(
        error.len() < 1_000,
        "{} bytes: {}…",
        error.len(),
        &error[..200]
    );
    assert!(
        error.starts_with("hook produced more than one outcome"),
        "{error}"
    );
    assert!(error.contains("500000"), "{error}");
    assert!(error.contains("features.jsonl line 1,"), "{error}");
    assert!(error.contains("and 499990 more"), "{error}");
}

#[test]
fn duplicates_across_files_are_counted_together() {
    let dir = tempfile::tempdir().unwrap();
    repeat(dir.path(), FEATURES_FILE, r#"{"id":"a","features":[]}"#, 6);
    repeat(dir.path(), ERRORS_FILE, r#"{"id":"a","error":"x"}"#, 6);
    let out = read(dir.path());
    let RecordOutcome::Errored { error, .. } = outcome_of(&out) else {
        panic!("expected an error, got {:?}", outcome_of(&out));
    };
    assert_eq!(
        error,
        "hook produced more than one outcome (12 in all: features.jsonl line 1, \
         features.jsonl line 2, features.jsonl line 3, features.jsonl line 4, \
         features.jsonl line 5, features.jsonl line 6, errors.jsonl line 1, \
         errors.jsonl line 2, errors.jsonl line 3, errors.jsonl line 4, and 2 more)"
    );
}

#[test]
fn stray_ids_are_capped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    repeat(dir.path(), REJECTIONS_FILE, r#"{"id":"zz"}"#, LINES);
    let out = read(dir.path());
    let limit = OutputLimits::default().max_stray_ids;
    assert_eq!(limit, 100);
    assert_eq!(out.stray_ids.len(), limit);
    assert!(out.stray_ids.iter().all(|id| id == "zz"));
    assert_eq!(out.stray_ids_omitted, LINES - limit);
    assert_eq!(out.missing, batch());
}

#[test]
fn progress_entries_are_capped_and_a_late_rejection_still_counts() {
    let dir = tempfile::tempdir().unwrap();
    repeat(dir.path(), PROGRESS_FILE, "{}", LINES);
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(PROGRESS_FILE))
        .unwrap();
    writeln!(file, r#"{{"status": "rejected", "message": "late"}}"#).unwrap();
    let out = read(dir.path());
    let limit = OutputLimits::default().max_progress_entries;
    assert_eq!(limit, 1_000);
    assert_eq!(out.progress.len(), limit);
    assert!(
        out.progress[..limit - 1]
            .iter()
            .all(|p| p.status == "unknown")
    );
    let summary = &out.progress[limit - 1];
    assert_eq!(summary.status, "omitted");
    let omitted = LINES + 1 - (limit - 1);
    assert_eq!(
        summary.message.as_deref(),
        Some(format!("{omitted} more progress lines omitted (at most {limit} are kept)").as_str())
    );
    assert_eq!(out.progress_omitted, omitted);
    assert_eq!(
        outcome_of(&out),
        &RecordOutcome::Rejected {
            reason: "late".into()
        }
    );
}

#[test]
fn long_reasons_and_errors_are_cut() {
    let limit = OutputLimits::default().max_message_chars;
    assert_eq!(limit, 16 * 1024);
    // Two fields of 512 KiB fit in one line of the default 4 MiB.
    let long = "é".repeat(256 << 10);
    for (file, line) in [
        (
            REJECTIONS_FILE,
            serde_json::json!({"id": "a", "reason": long}),
        ),
        (ERRORS_FILE, serde_json::json!({"id": "a", "error": long})),
        (
            PROGRESS_FILE,
            serde_json::json!({"step": long, "status": "rejected", "message": long}),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(file), format!("{line}\n")).unwrap();
        let out = read(dir.path());
        let text = match outcome_of(&out) {
            RecordOutcome::Rejected { reason } => reason,
            RecordOutcome::Errored { error, .. } => error,
            other => panic!("{file}: {other:?}"),
        };
        assert_eq!(
            text.chars().count(),
            limit + "… (cut)".chars().count(),
            "{file}"
        );
        assert!(text.ends_with("é… (cut)"), "{file}");
        for entry in &out.progress {
            for field in [entry.step.as_deref(), entry.message.as_deref()] {
                assert!(field.unwrap().chars().count() <= limit + 10, "{file}");
            }
        }
    }
}

/// Runs only as the child of [`reading_tiny_lines_keeps_peak_memory_flat`]: reads the
/// outputs in `$OSA_OUTPUT_BOUNDS_DIR` and prints how much the peak RSS grew.
#[test]
fn peak_memory_child() {
    let Some(dir) = std::env::var_os("OSA_OUTPUT_BOUNDS_DIR") else {
        return;
    };
    let before = peak_rss_kib();
    let out = read(Path::new(&dir));
    let after = peak_rss_kib();
    println!("peak-growth-kib={}", after - before);
    assert!(out.stray_ids.len() <= OutputLimits::default().max_stray_ids);
}

fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn reading_tiny_lines_keeps_peak_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    // 2 MiB per file of the tiniest lines each file accepts.
    let file_bytes = 2 << 20;
    for (file, line) in [
        (FEATURES_FILE, r#"{"id":"a","features":[]}"#),
        (REJECTIONS_FILE, r#"{"id":"zz"}"#),
        (PROGRESS_FILE, "{}"),
    ] {
        repeat(dir.path(), file, line, file_bytes / (line.len() + 1));
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "peak_memory_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OSA_OUTPUT_BOUNDS_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let growth: u64 = stdout
        .lines()
        .find_map(|l| l.split("peak-growth-kib=").nth(1))
        .unwrap_or_else(|| panic!("no measurement in {stdout}"))
        .trim()
        .parse()
        .unwrap();
    // The files hold 6 MiB of lines; reading them line by line needs a buffer for one
    // line and the batch's outcomes, less than the size of any one file.
    assert!(
        growth < 2 << 10,
        "peak RSS grew by {growth} KiB while reading 6 MiB of tiny lines"
    );
}

//! The worker says what it did through `tracing`. In a test binary of its own: `tracing`
//! caches per call site whether anyone listens, so a subscriber set for one test of a
//! binary whose other tests log on other threads can miss events.

#![cfg(feature = "sqlite")]

use std::sync::{Arc, Mutex};

use osa::id::{Digest, RecordId};
use osa::local::LocalArchive;
use osa::validation::{InputRecord, RunStatus, SubmitValidation, ValidationService};
use serde_json::json;
use tracing_subscriber::util::SubscriberInitExt;

const HOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hooks/saga_hook.py");

/// A `tracing` writer into a shared buffer.
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The deploy, the submit, each committed step with its counts inside a span naming
/// the job, and how the run ended.
#[tokio::test]
async fn the_worker_reports_through_tracing() {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let logs = logs.clone();
        move || LogBuffer(logs.clone())
    };
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .finish()
        .init();

    let dir = tempfile::tempdir().expect("temp dir");
    let archive = LocalArchive::open(dir.path()).await.expect("archive");
    let payload = json!({
        "title": "Logged Hook",
        "description": "A hook that fails",
        "schema": {"id": "test-schema", "version": "1.0.0", "fields": []},
        "file_requirements": {"accepted_types": [], "max_count": 0, "max_file_size": 0},
        "hooks": [{
            "name": "broken",
            "feature": {"kind": "table", "cardinality": "one", "columns": [
                {"name": "score", "json_type": "number", "required": true}
            ]},
            "config": {"name": "broken", "exit_code": 3},
            "release": {"command": ["python3", HOOK], "digest": Digest::of_bytes(b"broken"),
                        "source_ref": "git:test"}
        }],
        "docs": {"purpose": "Testing logs", "example_questions": ["a?", "b?"],
                 "examples": [{"question": "c?", "query": "q", "interpretation": "i"}]}
    });
    let slug = archive
        .deployer()
        .deploy(payload.to_string().as_bytes(), "tester")
        .await
        .expect("deploy")
        .applied
        .convention
        .slug;
    let run = archive
        .engine()
        .submit(SubmitValidation {
            convention: slug,
            records: vec![InputRecord {
                id: RecordId::new("only").unwrap(),
                metadata: json!({}),
                files: vec![],
            }],
        })
        .await
        .expect("submit");
    let status = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        archive.worker().run_until_finished(run),
    )
    .await
    .expect("the run finishes")
    .expect("worker");
    assert_eq!(status, RunStatus::Failed);

    let text = String::from_utf8(logs.lock().expect("logs").clone()).expect("utf-8");
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_string()
    };
    assert!(line("deployment succeeded").contains("INFO"));
    assert!(line("run submitted").contains(&format!("run={run}")));
    let step = line("step committed");
    assert!(
        step.contains(&format!(
            "osa_job{{kind=validation.step run={run} step=0 attempt=1}}"
        )),
        "{step}"
    );
    assert!(
        step.contains("hook=broken") && step.contains("errored=1"),
        "{step}"
    );
    let finished = line("run finished");
    assert!(finished.contains("status=Failed"), "{finished}");
    assert!(finished.contains("kind=validation.finalize"), "{finished}");
}

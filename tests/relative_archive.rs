//! An archive opened at a relative path runs its hooks: they get absolute `OSA_IN`,
//! `OSA_OUT` and `OSA_FILES` although they run in their batch directory. In a test
//! binary of its own: it changes the process's working directory.

#![cfg(feature = "sqlite")]

use osa::id::{Digest, FileName, RecordId};
use osa::local::LocalArchive;
use osa::validation::{FileSource, InputFile, InputRecord, RunStatus, SubmitValidation};
use serde_json::json;

const HOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hooks/saga_hook.py");

#[tokio::test]
async fn a_relative_archive_runs_its_hooks() {
    let cwd = tempfile::tempdir().expect("temp dir");
    std::env::set_current_dir(cwd.path()).expect("chdir");
    std::fs::write("structure.cif", b"data_x").expect("record file");

    let archive = LocalArchive::open("./archive").await.expect("archive");
    assert!(archive.root().is_absolute(), "{}", archive.root().display());
    assert_eq!(
        archive.root(),
        std::fs::canonicalize(cwd.path()).unwrap().join("archive")
    );
    let files_log = cwd.path().join("files.log");
    let payload = json!({
        "title": "Relative Archive",
        "description": "Hooks of an archive opened at a relative path",
        "schema": {"id": "test-schema", "version": "1.0.0", "fields": []},
        "file_requirements": {"accepted_types": [], "max_count": 1, "max_file_size": 1000},
        "hooks": [{
            "name": "scored",
            "feature": {"kind": "table", "cardinality": "one", "columns": [
                {"name": "hook", "json_type": "string", "required": true},
                {"name": "score", "json_type": "number", "required": true}
            ]},
            "config": {"name": "scored", "files_log": files_log},
            "release": {"command": ["python3", HOOK], "digest": Digest::of_bytes(b"scored"),
                        "source_ref": "git:test"}
        }],
        "docs": {"purpose": "Testing paths", "example_questions": ["a?", "b?"],
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
    let request = SubmitValidation {
        convention: slug,
        records: vec![InputRecord {
            id: RecordId::new("rec:1").unwrap(),
            metadata: json!({}),
            files: vec![InputFile {
                name: FileName::new("structure.cif").unwrap(),
                // Relative to the working directory, like the archive.
                source: FileSource::Local {
                    path: "structure.cif".into(),
                },
            }],
        }],
    };
    let view = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        archive.validate(request, |_| Ok(())),
    )
    .await
    .expect("the run finishes")
    .expect("validate");
    assert_eq!(view.run.status, RunStatus::Completed, "{view:?}");
    assert_eq!(
        std::fs::read_to_string(&files_log).expect("the hook saw the record's file"),
        "structure.cif data_x\n"
    );
}

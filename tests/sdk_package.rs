//! A hook package written against the published Python SDK runs on OSA: the example
//! convention `examples/pdb-pockets`, installed next to OSA's `osa` wheel, is deployed
//! from `osa manifest`, and its sample records are validated through the saga, with
//! each hook run by the process runner as `osa-run-hook` (cleared environment, hook
//! chosen by `OSA_HOOK_NAME`).
//!
//! Needs a venv with the wheel and the example package installed:
//! `scripts/python-tests.sh` builds it at `target/py-venv`; `OSA_PY_VENV` points
//! elsewhere (relative paths are taken from the repository root). A missing venv fails
//! the test; it is never skipped.

#![cfg(feature = "sqlite")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use osa::blob::Blobs;
use osa::deploy::{DeployConvention, Deployer, parse_payload};
use osa::feature::{Cardinality, FeatureValue};
use osa::feature_store::FeatureQuery;
use osa::hook::HookRunStatus;
use osa::id::{Digest, FileName, HookName, RecordId};
use osa::runner::ProcessRunner;
use osa::runtime::RuntimeConfig;
use osa::saga::{Engine, EngineConfig, Worker, WorkerConfig};
use osa::validation::{
    FileSource, InputFile, InputRecord, RunStatus, StepStatus, SubmitValidation, ValidationService,
    Verdict,
};
use osa::{FeatureStore, HookRegistry};
use osa_sqlx::SqliteBackend;
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pdb-pockets");
/// The sample records the example ships (also its ingester's default mirror).
const SAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/pdb-pockets/src/pdb_pockets/samples"
);
const TITLE: &str = "PDB Ligand Pockets";
const SOURCE_REF: &str = "examples/pdb-pockets";

/// The venv of `OSA_PY_VENV` (default `target/py-venv`), with its `osa` and
/// `osa-run-hook` console scripts; an error says how to build it.
fn venv_from(setting: Option<PathBuf>) -> Result<(PathBuf, PathBuf), String> {
    let venv = setting.unwrap_or_else(|| PathBuf::from("target/py-venv"));
    let venv = if venv.is_absolute() {
        venv
    } else {
        Path::new(ROOT).join(venv)
    };
    let bin = venv.join("bin");
    let (osa, run_hook) = (bin.join("osa"), bin.join("osa-run-hook"));
    for script in [&osa, &run_hook] {
        if !script.is_file() {
            return Err(format!(
                "{} is missing: this test needs a venv with OSA's `osa` wheel and the example \
                 package examples/pdb-pockets installed; build it with scripts/python-tests.sh \
                 (default target/py-venv) or set OSA_PY_VENV to such a venv",
                script.display()
            ));
        }
    }
    // The process runner gives hooks a cleared environment: the script must find its
    // interpreter (and so the venv) by itself, through its absolute shebang.
    let run_hook = run_hook
        .canonicalize()
        .map_err(|e| format!("{}: {e}", run_hook.display()))?;
    Ok((osa, run_hook))
}

fn venv() -> (PathBuf, PathBuf) {
    venv_from(std::env::var_os("OSA_PY_VENV").map(PathBuf::from)).unwrap_or_else(|e| panic!("{e}"))
}

/// The example's body from `osa manifest`, with a process release on every hook and on
/// the ingester.
fn deploy_payload(osa: &Path, run_hook: &Path) -> Value {
    let output = Command::new(osa)
        .arg("manifest")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} manifest: {e}", osa.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "osa manifest failed ({}): {stderr}",
        output.status
    );
    let document: Value = serde_json::from_slice(&output.stdout).expect("osa manifest prints JSON");
    assert_eq!(document["manifest_version"], 1);
    let mut body = document["conventions"]
        .as_array()
        .expect("conventions")
        .iter()
        .find(|c| c["title"] == TITLE)
        .unwrap_or_else(|| {
            panic!(
                "osa manifest has no convention {TITLE:?}: install examples/pdb-pockets into \
                 the venv (scripts/python-tests.sh does); it printed {document}"
            )
        })
        .clone();
    // The code a release runs: the convention module pins what the digest names.
    let code = std::fs::read(Path::new(EXAMPLE).join("src/pdb_pockets/convention.py"))
        .expect("the example's convention module");
    for hook in body["hooks"].as_array_mut().expect("hooks") {
        let name = hook["name"].as_str().expect("hook name").to_string();
        let digest = Digest::of_bytes(&[name.as_bytes(), b"\n", &code].concat());
        hook["release"] = json!({
            "command": [run_hook],
            "digest": digest,
            "source_ref": SOURCE_REF,
        });
    }
    // The ingester gets its release too (stored with the convention; OSA does not run
    // ingesters yet): `osa-run-ingester` next to `osa-run-hook`.
    let ingester = body["ingester"]
        .as_object_mut()
        .expect("the example has an ingester");
    let code = std::fs::read(Path::new(EXAMPLE).join("src/pdb_pockets/ingest.py"))
        .expect("the example's ingester module");
    ingester.insert(
        "release".into(),
        json!({
            "command": [run_hook.with_file_name("osa-run-ingester")],
            "digest": Digest::of_bytes(&code),
            "source_ref": SOURCE_REF,
        }),
    );
    body
}

/// The sample batch: `samples/in/records.jsonl` with each record's files from
/// `samples/files/<record dir>/`.
fn sample_records() -> Vec<InputRecord> {
    let samples = Path::new(SAMPLES);
    let text = std::fs::read_to_string(samples.join("in/records.jsonl")).expect("sample records");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let sample: Value = serde_json::from_str(line).expect("a JSON record");
            let id = RecordId::new(sample["id"].as_str().expect("id")).expect("record id");
            let dir = samples
                .join("files")
                .join(osa::contract::record_dir_name(id.as_str()));
            let mut files: Vec<InputFile> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|entry| {
                    let entry = entry.expect("dir entry");
                    InputFile {
                        name: FileName::new(entry.file_name().to_str().expect("utf-8 name"))
                            .expect("file name"),
                        source: FileSource::Local { path: entry.path() },
                    }
                })
                .collect();
            files.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
            InputRecord {
                id,
                metadata: sample["metadata"].clone(),
                files,
            }
        })
        .collect()
}

fn text(s: &str) -> FeatureValue {
    FeatureValue::Text(s.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_package_deploys_from_its_manifest_and_runs_under_the_process_runner() {
    let (osa_cli, run_hook) = venv();
    let body = deploy_payload(&osa_cli, &run_hook);
    let bytes = serde_json::to_vec(&body).expect("payload");

    // The manifest plus releases is a deploy body the engine accepts as it is.
    let parsed: DeployConvention = parse_payload(&bytes).expect("the engine parses the payload");
    assert_eq!(parsed.schema.id.as_str(), "pdb-structure");
    let hooks: Vec<(&str, Cardinality, usize)> = parsed
        .hooks
        .iter()
        .map(|h| {
            (
                h.name.as_str(),
                h.feature.cardinality(),
                h.feature.columns().len(),
            )
        })
        .collect();
    assert_eq!(
        hooks,
        [
            ("check_structure", Cardinality::One, 0),
            ("detect_pockets", Cardinality::Many, 7)
        ]
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Arc::new(
        SqliteBackend::open(dir.path().join("osa.db"))
            .await
            .expect("open"),
    );
    storage.migrate().await.expect("migrate");
    let blobs = Blobs::local(dir.path().join("blobs")).expect("blobs");
    let mut config = EngineConfig::new(dir.path().join("work"));
    config.event_poll = Duration::from_millis(50);
    let engine = Engine::new(
        storage.clone(),
        Arc::new(ProcessRunner::new()),
        blobs.clone(),
        config,
    );
    let deployed = Deployer::new(storage.clone(), blobs.clone())
        .deploy(&bytes, "sdk-test")
        .await
        .expect("deploy");
    let slug = deployed.applied.convention.slug.clone();
    assert_eq!(slug.as_str(), "pdb-ligand-pockets");

    let run = engine
        .submit(SubmitValidation {
            convention: slug,
            records: sample_records(),
        })
        .await
        .expect("submit");
    let worker = Worker::new(
        engine.clone(),
        WorkerConfig::default().with_poll_interval(Duration::from_millis(20)),
    );
    let status = tokio::time::timeout(Duration::from_secs(180), worker.run_until_finished(run))
        .await
        .expect("the run finishes within 180 s")
        .expect("worker");
    let view = engine.get(run).await.expect("run view");
    assert_eq!(status, RunStatus::Completed, "{view:#?}");

    // Verdicts: the hooks' own outcomes, written by `osa-run-hook`.
    let verdict = |id: &str| {
        view.verdicts
            .iter()
            .find(|v| v.record_id.as_str() == id)
            .unwrap_or_else(|| panic!("no verdict for {id}"))
            .verdict
            .clone()
    };
    assert_eq!(verdict("pdb:9PK1"), Verdict::Accepted);
    assert_eq!(verdict("pdb:9PK2"), Verdict::Accepted);
    let check = HookName::new("check_structure").expect("hook name");
    assert_eq!(
        verdict("pdb:9PK3"),
        Verdict::Rejected {
            step: 0,
            hook: check.clone(),
            reason: "Resolution too low for reliable analysis".into()
        }
    );
    assert_eq!(
        verdict("pdb:9PK4"),
        Verdict::Rejected {
            step: 0,
            hook: check.clone(),
            reason: "At least one CIF file is required".into()
        }
    );
    match verdict("pdb:9PK5") {
        Verdict::Errored { step, hook, error } => {
            assert_eq!((step, &hook), (0, &check));
            assert!(
                error.starts_with("metadata validation: 1 validation error for PDBStructure")
                    && error.contains("chain_count"),
                "{error}"
            );
        }
        other => panic!("pdb:9PK5 should have errored, got {other:?}"),
    }
    assert_eq!(view.verdicts.len(), 5);
    assert_eq!(
        view.steps.iter().map(|s| s.status).collect::<Vec<_>>(),
        [StepStatus::Error, StepStatus::Passed]
    );
    let counts = &view.steps[0].counts;
    assert_eq!((counts.passed, counts.rejected, counts.errored), (2, 2, 1));

    // Feature rows: only the two accepted records reached `detect_pockets`, and only
    // the holo structure has pockets (ATP and Mg, cardinality many).
    let pockets = HookName::new("detect_pockets").expect("hook name");
    let page = storage
        .rows(
            &pockets,
            &FeatureQuery {
                limit: 100,
                ..FeatureQuery::default()
            },
        )
        .await
        .expect("rows");
    let rows: Vec<(&str, u32, &[FeatureValue])> = page
        .rows
        .iter()
        .map(|r| (r.record_id.as_str(), r.row_index, r.values.as_slice()))
        .collect();
    use FeatureValue::{Float, Integer};
    assert_eq!(
        rows,
        [
            (
                "pdb:9PK1",
                0,
                &[
                    Integer(1),
                    text("ATP"),
                    text("A"),
                    Integer(5),
                    Integer(6),
                    Float(2.0),
                    Float(0.5)
                ][..]
            ),
            (
                "pdb:9PK1",
                1,
                &[
                    Integer(2),
                    text("MG"),
                    text("A"),
                    Integer(1),
                    Integer(2),
                    Float(0.0),
                    Float(0.17)
                ][..]
            ),
        ]
    );

    // Provenance: the rows come from `osa-run-hook` of the venv, as deployed.
    let provenance = engine
        .provenance(&pockets, page.rows[0].id)
        .await
        .expect("provenance");
    assert_eq!(provenance.run.status, HookRunStatus::Passed);
    assert_eq!(provenance.release.source_ref, SOURCE_REF);
    assert_eq!(provenance.release.built_by.as_deref(), Some("sdk-test"));
    let RuntimeConfig::Process {
        command, limits, ..
    } = &provenance.release.runtime
    else {
        panic!("a process release, got {:?}", provenance.release.runtime);
    };
    assert_eq!(command, &[run_hook.display().to_string()]);
    assert_eq!(
        (limits.timeout_seconds, limits.memory.to_string()),
        (120, "1g".to_string())
    );
    let live = storage
        .get_hook(&pockets)
        .await
        .expect("hook")
        .and_then(|h| h.live)
        .map(|r| r.id);
    assert_eq!(live, Some(provenance.release.id));

    // The step with an errored record keeps its log: the SDK entrypoint's own lines.
    let step_run = view.steps[0].hook_run_id.expect("hook run of step 0");
    let hook_run = storage
        .get_run(step_run)
        .await
        .expect("get run")
        .expect("the hook run exists");
    assert_eq!(hook_run.status, HookRunStatus::Error);
    let log = engine.hook_log(step_run).await.expect("log");
    let log = String::from_utf8_lossy(&log);
    assert!(
        log.contains("HOOK DONE 5 total, 2 passed, 2 rejected, 1 errored"),
        "{log}"
    );
}

#[test]
fn a_missing_venv_is_a_clear_failure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = venv_from(Some(dir.path().join("nowhere"))).expect_err("no venv there");
    assert!(err.contains("nowhere/bin/osa is missing"), "{err}");
    assert!(err.contains("scripts/python-tests.sh"), "{err}");
    assert!(err.contains("OSA_PY_VENV"), "{err}");
    let err = venv_from(Some("target/no-such-venv".into())).expect_err("relative path");
    assert!(
        err.contains(&format!("{ROOT}/target/no-such-venv/bin/osa is missing")),
        "{err}"
    );
}

/// Runs `osa test --convention <the example> --json --archive DIR` with `args`; checks
/// the summary line and the verdicts of the five samples; returns the JSON report.
fn osa_test_on_the_samples(osa: &Path, archive: &Path, args: &[&std::ffi::OsStr]) -> Value {
    let output = Command::new(osa)
        .args(["test", "--convention", TITLE, "--json", "--archive"])
        .arg(archive)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} test: {e}", osa.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "osa test failed: {stderr}");
    assert!(
        stderr.contains("5 record(s): 2 accepted, 2 rejected, 1 errored"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("osa test --json");
    assert_eq!(report["status"], "completed");
    let verdicts: Vec<(&str, &str)> = report["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("pdb:9PK1", "accepted"),
            ("pdb:9PK2", "accepted"),
            ("pdb:9PK3", "rejected"),
            ("pdb:9PK4", "rejected"),
            ("pdb:9PK5", "errored"),
        ]
    );
    report
}

/// `osa test` without records pulls them with the convention's ingester (the example's
/// mirror ingester, whose default mirror is the bundled samples): the same verdicts, and
/// the files the ingester fetched reach the hooks (the holo structure's two pockets).
#[tokio::test]
async fn example_package_ingests_under_osa_test() {
    let (osa, _) = venv();
    let archive_dir = tempfile::tempdir().expect("temp dir");
    let report = osa_test_on_the_samples(
        &osa,
        archive_dir.path(),
        &["--limit".as_ref(), "5".as_ref()],
    );
    let pockets: Vec<(&str, &str)> = report["features"]["detect_pockets"]
        .as_array()
        .expect("reported rows")
        .iter()
        .map(|r| {
            (
                r["record_id"].as_str().unwrap(),
                r["values"]["ligand"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(pockets, [("pdb:9PK1", "ATP"), ("pdb:9PK1", "MG")]);
}

/// `osa test` on the example: the same package, records and verdicts, deployed by the
/// SDK itself (process releases of the venv's interpreter) to a local archive the test
/// then opens from Rust.
#[tokio::test]
async fn example_package_runs_under_osa_test() {
    let (osa, _) = venv();
    let samples = Path::new(SAMPLES);
    let archive_dir = tempfile::tempdir().expect("temp dir");
    let records = samples.join("in/records.jsonl");
    let files = samples.join("files");
    let report = osa_test_on_the_samples(
        &osa,
        archive_dir.path(),
        &[
            "--records".as_ref(),
            records.as_os_str(),
            "--files".as_ref(),
            files.as_os_str(),
        ],
    );

    // The archive `osa test` left is an ordinary OSA archive.
    let archive = osa::local::LocalArchive::open(archive_dir.path())
        .await
        .expect("open the archive");
    let hook = archive
        .storage()
        .get_hook(&HookName::new("detect_pockets").expect("hook name"))
        .await
        .expect("registry")
        .expect("detect_pockets deployed");
    let release = hook.live.expect("a live release");
    match &release.runtime {
        RuntimeConfig::Process { command, .. } => {
            assert_eq!(command[1..], ["-m", "osa.runtime.entrypoint"]);
            assert!(Path::new(&command[0]).is_file(), "{command:?}");
        }
        other => panic!("expected a process release, got {other:?}"),
    }
    let rows = archive
        .storage()
        .rows(
            &hook.identity.name,
            &FeatureQuery {
                limit: 100,
                ..FeatureQuery::default()
            },
        )
        .await
        .expect("rows");
    // Only the holo structure has pockets (ATP and Mg), as in the run driven from Rust.
    let stored: Vec<(&str, u32)> = rows
        .rows
        .iter()
        .map(|r| (r.record_id.as_str(), r.row_index))
        .collect();
    assert_eq!(stored, [("pdb:9PK1", 0), ("pdb:9PK1", 1)]);
    // The report printed the same rows, values included.
    let reported = report["features"]["detect_pockets"]
        .as_array()
        .expect("reported rows");
    assert_eq!(reported.len(), rows.rows.len());
    for (row, printed) in rows.rows.iter().zip(reported) {
        assert_eq!(printed["id"], row.id);
        let values: Vec<Value> = row.values.iter().map(|v| v.to_json()).collect();
        let printed: Vec<Value> = hook
            .identity
            .feature
            .columns()
            .iter()
            .map(|c| printed["values"][c.name.as_str()].clone())
            .collect();
        assert_eq!(printed, values);
    }
}

//! An archive across processes, as an operator runs it: Postgres, blobs in an
//! S3-protocol test server (moto's server, scripts/s3-setup.sh), hooks in podman
//! containers and in local processes. One `osa-server serve --no-worker` and two
//! `osa-server worker`s; the example convention package (examples/pdb-pockets) is
//! deployed over HTTP with its first hook as an OCI release (a local image running
//! `osa-run-hook` from OSA's wheel, built by scripts/python-image.sh without a
//! registry) and its second as a process release; the sample files are uploaded over
//! HTTP and validated; the first worker is SIGKILLed mid-run and the second finishes
//! it; verdicts, features and provenance are read over HTTP, and the blobs are in the
//! bucket, none on disk.
//!
//! Needs what the test command prepares: the venv with the wheel and the example
//! (scripts/python-tests.sh, `OSA_PY_VENV`), podman (scripts/podman-setup.sh) and the
//! Python hook image; a missing piece is built here or fails the test, never skips it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::python::{oci_runner_env, podman_and_image, submitter_token, upload_samples, venv};
use common::{Process, Served, get, post};
use osa::id::Digest;
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef-end-to-end";

/// The example's deploy body from `osa manifest`: check_structure as an OCI release of
/// `image`, detect_pockets (and the ingester) as process releases.
fn deploy_body(osa: &Path, run_hook: &Path, image: &str) -> Value {
    let output = Command::new(osa)
        .arg("manifest")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("osa manifest");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let mut body = document["conventions"]
        .as_array()
        .expect("conventions")
        .iter()
        .find(|c| c["title"] == "PDB Ligand Pockets")
        .expect("the example convention")
        .clone();
    let (repository, digest) = image.split_once('@').expect("pinned");
    for hook in body["hooks"].as_array_mut().expect("hooks") {
        let name = hook["name"].as_str().expect("name").to_string();
        hook["release"] = match name.as_str() {
            "check_structure" => {
                json!({"image": repository, "digest": digest, "source_ref": "examples/pdb-pockets"})
            }
            _ => json!({
                "command": [run_hook],
                "digest": Digest::of_bytes(format!("process {name}").as_bytes()),
                "source_ref": "examples/pdb-pockets",
            }),
        };
    }
    body["ingester"]["release"] = json!({
        "command": [run_hook.with_file_name("osa-run-ingester")],
        "digest": Digest::of_bytes(b"ingester"),
        "source_ref": "examples/pdb-pockets",
    });
    body
}

#[test]
fn an_archive_on_postgres_s3_and_podman_across_processes() {
    let (image, socket) = podman_and_image();
    let (osa_cli, run_hook) = venv();
    let tag = common::unique("e2e");
    let (mut env, _cleanup) = common::postgres_env(&tag, SECRET);
    let (blobs, endpoint) = common::s3_env(&tag);
    env.extend(blobs);
    let prefix = tag;
    env.extend(oci_runner_env(&socket));
    env.extend([
        ("OSA_WORKER__LEASE", "3s".into()),
        ("OSA_WORKER__POLL", "50ms".into()),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let served = Served::start(dir.path(), &["--no-worker"], &env);
    let token = |args: &[&str]| common::mint(dir.path(), &env, args);
    // Process releases need an admin; the depositor's machine needs only scopes.
    let admin = token(&["--subject", "operator", "--role", "admin"]);
    let client = submitter_token(dir.path(), &env);

    let slug = common::deploy(&served, &admin, &deploy_body(&osa_cli, &run_hook, &image));
    let records = upload_samples(&served, &client);
    assert_eq!(records.len(), 5);
    let submitted = post(
        &served.url("/validations"),
        &client,
        &json!({"convention": slug, "records": records}),
    );
    assert_eq!(submitted.status, 202, "{:?}", submitted.body);
    let run = submitted.body["id"].as_str().expect("id").to_string();

    // The first worker runs the container step; once it has committed, it is killed.
    let mut first = Process::spawn(dir.path(), &["worker"], &env);
    first.wait_for("worker   ");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let view = get(&served.url(&format!("/validations/{run}")), Some(&client)).body;
        assert_ne!(view["run"]["status"], "failed", "{view:?}");
        if view["run"]["current_step"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the OCI step did not commit: {view:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill();
    let mut second = Process::spawn(dir.path(), &["worker"], &env);
    second.wait_for("worker   ");
    let view = common::wait_for_run(&served.base, &client, &run);
    assert_eq!(view["run"]["status"], "completed", "{view:?}");

    let steps = view["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2);
    let hook_runs: std::collections::BTreeSet<&str> = steps
        .iter()
        .map(|s| s["hook_run_id"].as_str().expect("hook run"))
        .collect();
    assert_eq!(hook_runs.len(), 2, "one hook run per step");
    assert_eq!(
        steps[0]["counts"],
        json!({"passed": 2, "rejected": 2, "errored": 1})
    );
    let verdicts: BTreeMap<String, String> = view["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .map(|v| {
            let id = v["record_id"].as_str().expect("record id").to_string();
            let verdict = &v["verdict"];
            let kind = verdict["verdict"]
                .as_str()
                .or(verdict.as_str())
                .unwrap_or("?")
                .to_string();
            (id, kind)
        })
        .collect();
    assert_eq!(verdicts.len(), 5, "{:?}", view["verdicts"]);
    for accepted in ["pdb:9PK1", "pdb:9PK2"] {
        assert_eq!(verdicts[accepted], "accepted", "{:?}", view["verdicts"]);
    }

    // Features of the accepted records (only the holo structure has pockets: ATP and
    // Mg), each row traced to its hook run and release.
    let page = get(&served.url("/features/detect_pockets"), None).body;
    let rows = page["rows"].as_array().expect("rows");
    let ids: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["record_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["pdb:9PK1"]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = rows[0]["id"].as_i64().expect("row id");
    let provenance = get(
        &served.url(&format!("/features/detect_pockets/{row}/provenance")),
        None,
    )
    .body;
    assert_eq!(
        provenance["run"]["id"], steps[1]["hook_run_id"],
        "{provenance:?}"
    );
    assert_eq!(provenance["release"]["version"], 1, "{provenance:?}");
    let structure = get(&served.url("/hooks/check_structure/releases/1"), None).body;
    assert_eq!(
        structure["runtime"]["image"],
        json!(image.split('@').next()),
        "{structure:?}"
    );

    // Every blob is in the bucket: record files, hook outputs, logs, the deploy payload.
    assert!(
        !dir.path().join("osa-archive/blobs").exists(),
        "{:?}",
        common::tree(dir.path())
    );
    let keys = common::bucket_keys(&endpoint, &prefix);
    for part in ["uploads/", "runs/", "deployments/"] {
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("{prefix}/{part}"))),
            "{part} in the bucket: {keys:?}"
        );
    }
}

//! `osa deploy` as an author runs it: the wheel's CLI, in a copy of the example
//! convention package (examples/pdb-pockets), builds its hook and ingester images with
//! podman (no registry: FROM the local Python base image scripts/python-image.sh made,
//! OSA's wheel staged into the build), checks its token on `/auth/me`, and registers
//! the convention on a running `osa-server`; a validation submitted over HTTP then runs
//! both hooks from those images under the OCI runner.
//!
//! Needs what the test command prepares (the venv, podman, the base image); a missing
//! piece is built here or fails the test, never skips it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::python::{
    EXAMPLE, oci_runner_env, python_image, submitter_token, upload_samples, venv,
};
use common::{Served, get, post};
use serde_json::json;

/// Copies the package's sources (no caches, build outputs or hidden files).
fn copy_package(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read package") {
        let entry = entry.expect("entry");
        let name = entry.file_name().into_string().expect("utf-8");
        if name.starts_with('.')
            || name == "__pycache__"
            || name.ends_with(".egg-info")
            || name == "build"
            || name == "dist"
        {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().expect("type").is_dir() {
            copy_package(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// `podman image inspect --format FORMAT REF` with the test's containers.conf.
fn inspect(vars: &BTreeMap<String, String>, reference: &str, format: &str) -> Option<String> {
    let output = Command::new("podman")
        .env("CONTAINERS_CONF", &vars["CONTAINERS_CONF"])
        .args(["image", "inspect", "--format", format, reference])
        .output()
        .expect("podman");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[test]
fn osa_deploy_builds_the_images_and_the_oci_runner_validates_with_them() {
    let (vars, socket) = python_image();
    let (osa_cli, _) = venv();
    let dir = tempfile::tempdir().expect("temp dir");
    let env = oci_runner_env(&socket);
    let served = Served::start(dir.path(), &[], &env);
    let author = common::mint(
        dir.path(),
        &env,
        &["--subject", "author", "--scope", "conventions:write"],
    );
    let client = submitter_token(dir.path(), &env);

    let project = dir.path().join("pdb-pockets");
    copy_package(Path::new(EXAMPLE), &project);
    let mut deploy = Command::new(&osa_cli);
    deploy
        .current_dir(&project)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .env("CONTAINERS_CONF", &vars["CONTAINERS_CONF"])
        .env("OSA_CONTAINER_ENGINE", "podman")
        .env("OSA_BASE_IMAGE", &vars["OSA_PYTHON_BASE"])
        .env("OSA_SDK_WHEEL", &vars["OSA_PYTHON_WHEEL"])
        // No registry: the base is local, and pip reaches the package index directly.
        .env("OSA_BUILD_ARGS", "--pull=never --network host")
        .args(["deploy", "--server", &common::origin(&served.base)])
        .args(["--token", &author]);
    if let Some(cert) = std::env::var_os("PIP_CERT") {
        deploy.env("PIP_CERT", cert);
    }
    let output = deploy.output().expect("osa deploy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "osa deploy failed:\n{stderr}");
    for line in [
        "Deploying to http://127.0.0.1:",
        "✓ Checking authentication (author",
        "✓ Building hook check_structure (sha256:",
        "✓ Building hook detect_pockets (sha256:",
        "✓ Building ingester pdb_mirror (sha256:",
        "✓ Registering PDB Ligand Pockets (pdb-structure@1.0.0, slug pdb-ligand-pockets)",
        "osa ingestion start --convention pdb-ligand-pockets",
    ] {
        assert!(stderr.contains(line), "{line:?} in:\n{stderr}");
    }
    assert!(output.stdout.is_empty(), "data only on stdout");
    let leftovers: Vec<_> = std::fs::read_dir(&project)
        .expect("project")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|n| n.starts_with(".osa"))
        .collect();
    assert!(leftovers.is_empty(), "staged files removed: {leftovers:?}");

    // Each release is the image podman built, pinned by the manifest digest podman
    // recorded for it.
    for (hook, tag) in [
        ("check_structure", "osa-hooks/check_structure:latest"),
        ("detect_pockets", "osa-hooks/detect_pockets:latest"),
    ] {
        let digest = inspect(&vars, tag, "{{.Digest}}").expect("the image was built");
        let release = get(&served.url(&format!("/hooks/{hook}/releases/1")), None).body;
        assert_eq!(release["runtime"]["type"], "oci", "{release:?}");
        assert_eq!(release["runtime"]["image"], json!(tag), "{release:?}");
        assert_eq!(release["runtime"]["digest"], json!(digest), "{release:?}");
        let entrypoint = inspect(&vars, tag, "{{json .Config.Entrypoint}}").expect("entrypoint");
        assert_eq!(entrypoint, r#"["osa-run-hook"]"#);
    }
    let entrypoint = inspect(
        &vars,
        "osa-hooks-ingesters/pdb_mirror:latest",
        "{{json .Config.Entrypoint}}",
    )
    .expect("the ingester image was built");
    assert_eq!(entrypoint, r#"["osa-run-ingester"]"#);

    let records = upload_samples(&served, &client);
    let submitted = post(
        &served.url("/validations"),
        &client,
        &json!({"convention": "pdb-ligand-pockets", "records": records}),
    );
    assert_eq!(submitted.status, 202, "{:?}", submitted.body);
    let run = submitted.body["id"].as_str().expect("id").to_string();
    let view = common::wait_for_run(&served.base, &client, &run);
    assert_eq!(view["run"]["status"], "completed", "{view:?}");
    let steps = view["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{view:?}");
    assert_eq!(
        steps[0]["counts"],
        json!({"passed": 2, "rejected": 2, "errored": 1}),
        "{view:?}"
    );
    let page = get(&served.url("/features/detect_pockets"), None).body;
    let rows = page["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "the holo structure's two pockets: {rows:?}");
}

//! The published SDK's `osa deploy` (osa-py 0.9.0 from PyPI, in the venv
//! scripts/python-tests.sh makes for it with the example package installed) against
//! `osa-server`, with `--registry` and `--skip-build`: the published client builds
//! nothing and asks `docker manifest inspect <registry>/<name>:latest --verbose` for each
//! image's digest. No registry is reachable here, so a registry stand-in answers that
//! one question: a `docker` script first on the client's PATH that gives the manifest
//! digest of the local Python hook image (scripts/python-image.sh), which holds the
//! example's hooks. The published client then checks its token on `/auth/me` and posts
//! the convention; a validation over HTTP runs both hooks from that image under the OCI
//! runner (Podman resolves `any-name@sha256:…` by the digest alone).
//!
//! What the published client cannot do here: build and push images (no registry is
//! reachable; its build runs `docker build`/`docker push`, and there is no Docker
//! daemon), so the images come from scripts/python-image.sh.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::python::{EXAMPLE, oci_runner_env, python_image, submitter_token, upload_samples};
use common::{Served, get, post};
use serde_json::json;

/// The registry the published client is told about (never contacted).
const REGISTRY: &str = "registry.invalid/osa";

/// The venv with the published SDK and the example (`<OSA_PY_VENV>-published`).
fn published_venv() -> PathBuf {
    let venv = std::env::var_os("OSA_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(common::python::ROOT).join("target/py-venv"));
    let mut name = venv.file_name().expect("venv name").to_os_string();
    name.push("-published");
    let published = venv.with_file_name(name);
    assert!(
        published.join("bin/osa").is_file(),
        "{} has no published `osa`: scripts/python-tests.sh makes it",
        published.display()
    );
    published
}

/// A `docker` that answers only `manifest inspect TAG --verbose`, with `digest`.
fn registry_stand_in(dir: &Path, digest: &str) -> PathBuf {
    let bin = dir.join("stand-in-bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let script = bin.join("docker");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             # Registry stand-in: the digest of the local Python hook image for any tag.\n\
             if [ \"$1\" = manifest ] && [ \"$2\" = inspect ]; then\n\
             \x20   printf '%s\\n' '{{\"Descriptor\": {{\"digest\": \"{digest}\"}}}}'\n\
             \x20   exit 0\n\
             fi\n\
             echo \"docker stand-in: only 'manifest inspect' is served ($*)\" >&2\n\
             exit 1\n"
        ),
    )
    .expect("write stand-in");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

#[test]
fn the_published_osa_deploy_with_skip_build_deploys_to_osa() {
    let (vars, socket) = python_image();
    let venv = published_venv();
    let digest = &vars["OSA_PYTHON_IMAGE_DIGEST"];
    let dir = tempfile::tempdir().expect("temp dir");
    let env = oci_runner_env(&socket);
    let served = Served::start(dir.path(), &[], &env);
    let author = common::mint(
        dir.path(),
        &env,
        &["--subject", "author", "--scope", "conventions:write"],
    );
    let client = submitter_token(dir.path(), &env);

    let stand_in = registry_stand_in(dir.path(), digest);
    let path = std::env::join_paths(std::iter::once(stand_in).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");
    let output = Command::new(venv.join("bin/osa"))
        .current_dir(EXAMPLE)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .args(["deploy", "--server", &common::origin(&served.base)])
        .args(["--token", &author, "--registry", REGISTRY, "--skip-build"])
        .output()
        .expect("the published osa deploy");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "published osa deploy failed:\n{stdout}\n{stderr}"
    );
    let printed = format!("{stdout}{stderr}");
    assert!(
        printed.contains("osa ingestion start --convention pdb-ligand-pockets"),
        "{printed}"
    );

    // The releases are the registry references the published client sent, pinned by
    // the stand-in's digest.
    for hook in ["check_structure", "detect_pockets"] {
        let release = get(&served.url(&format!("/hooks/{hook}/releases/1")), None).body;
        assert_eq!(release["runtime"]["type"], "oci", "{release:?}");
        assert_eq!(
            release["runtime"]["image"],
            json!(format!("{REGISTRY}/{hook}:latest")),
            "{release:?}"
        );
        assert_eq!(release["runtime"]["digest"], json!(digest), "{release:?}");
        assert!(
            release["source_ref"]
                .as_str()
                .is_some_and(|s| s.starts_with("git:")),
            "{release:?}"
        );
    }
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
    assert_eq!(
        steps[0]["counts"],
        json!({"passed": 2, "rejected": 2, "errored": 1}),
        "{view:?}"
    );
    let rows = get(&served.url("/features/detect_pockets"), None).body;
    assert_eq!(rows["rows"].as_array().map(Vec::len), Some(2), "{rows:?}");
}

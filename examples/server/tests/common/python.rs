//! The Python side of the server's end-to-end tests: the venv with OSA's wheel and the
//! example convention package (scripts/python-tests.sh), podman and the Python hook
//! image (scripts/podman-setup.sh, scripts/python-image.sh), and the example's samples.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use osa::id::Digest;
use serde_json::{Value, json};

use super::{Served, put_bytes};

/// The repository's root.
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// The example convention package.
pub const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/pdb-pockets");
/// Its sample batch (`in/records.jsonl` and `files/`).
pub const SAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/pdb-pockets/src/pdb_pockets/samples"
);

/// `KEY=value` lines of a file a setup script wrote.
pub fn env_file(path: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect(),
    )
}

pub fn script(name: &str, args: &[&str]) {
    let status = Command::new("bash")
        .arg(Path::new(ROOT).join("scripts").join(name))
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"));
    assert!(status.success(), "scripts/{name} failed");
}

/// What scripts/python-image.sh recorded (`OSA_PYTHON_IMAGE`, `OSA_PYTHON_BASE`,
/// `OSA_PYTHON_WHEEL`, `CONTAINERS_CONF`, ...) and the podman socket, after running
/// the setup scripts that have not run yet.
pub fn python_image() -> (BTreeMap<String, String>, PathBuf) {
    let oci = Path::new(ROOT).join("target/oci");
    let socket = oci.join("podman.sock");
    if std::os::unix::net::UnixStream::connect(&socket).is_err() {
        script("podman-setup.sh", &[]);
    }
    let image_env = oci.join("python-image.env");
    // Made again when missing, older than this file's keys, or naming images podman no
    // longer has (another run re-imported the base).
    let current = env_file(&image_env).is_some_and(|vars| {
        vars.contains_key("OSA_PYTHON_BASE")
            && ["OSA_PYTHON_BASE", "OSA_PYTHON_IMAGE_ID"]
                .iter()
                .all(|key| podman_has(&vars, &vars[*key]))
    });
    if !current {
        script("python-image.sh", &["examples/pdb-pockets"]);
    }
    let vars = env_file(&image_env).expect("scripts/python-image.sh wrote python-image.env");
    (vars, socket)
}

/// The settings that turn the OCI runner on, on podman's API `socket`, running only
/// images podman has (no pulls).
pub fn oci_runner_env(socket: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("OSA_RUNNERS__OCI__ENABLED", "true".to_string()),
        (
            "OSA_RUNNERS__OCI__HOST",
            format!("unix://{}", socket.display()),
        ),
        ("OSA_RUNNERS__OCI__PULL", "never".into()),
    ]
}

/// A depositor's machine token (subject `ci`): it submits validations and reads runs.
pub fn submitter_token(dir: &Path, env: &[(&str, String)]) -> String {
    super::mint(
        dir,
        env,
        &[
            "--subject",
            "ci",
            "--scope",
            "validations:write",
            "--scope",
            "runs:read",
        ],
    )
}

/// Whether podman has the image `reference`.
fn podman_has(vars: &BTreeMap<String, String>, reference: &str) -> bool {
    let mut podman = Command::new("podman");
    if let Some(conf) = vars.get("CONTAINERS_CONF") {
        podman.env("CONTAINERS_CONF", conf);
    }
    podman
        .args(["image", "exists", reference])
        .status()
        .is_ok_and(|status| status.success())
}

/// The Python hook image (pinned reference) and the podman socket.
pub fn podman_and_image() -> (String, PathBuf) {
    let (vars, socket) = python_image();
    let pinned = format!(
        "{}@{}",
        vars["OSA_PYTHON_IMAGE"], vars["OSA_PYTHON_IMAGE_DIGEST"]
    );
    (pinned, socket)
}

/// The venv's `osa` and `osa-run-hook` (absolute).
pub fn venv() -> (PathBuf, PathBuf) {
    let venv = std::env::var_os("OSA_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/py-venv"));
    let venv = if venv.is_absolute() {
        venv
    } else {
        Path::new(ROOT).join(venv)
    };
    let bin = venv.join("bin");
    for script in ["osa", "osa-run-hook"] {
        assert!(
            bin.join(script).is_file(),
            "{} is missing: build the venv with scripts/python-tests.sh or set OSA_PY_VENV",
            bin.join(script).display()
        );
    }
    (
        bin.join("osa"),
        bin.join("osa-run-hook")
            .canonicalize()
            .expect("osa-run-hook"),
    )
}

/// Uploads each sample record's files over HTTP; the submission's records.
pub fn upload_samples(served: &Served, token: &str) -> Vec<Value> {
    let samples = Path::new(SAMPLES);
    let text = std::fs::read_to_string(samples.join("in/records.jsonl")).expect("samples");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let sample: Value = serde_json::from_str(line).expect("record");
            let id = sample["id"].as_str().expect("id").to_string();
            let dir = samples
                .join("files")
                .join(osa::contract::record_dir_name(&id));
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .expect("files")
                .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
                .collect();
            names.sort();
            let files: Vec<Value> = names
                .iter()
                .map(|name| {
                    let bytes = std::fs::read(dir.join(name)).expect("read");
                    let up = put_bytes(
                        &served.url(&format!("/uploads/{name}")),
                        Some(token),
                        &bytes,
                        false,
                    );
                    assert_eq!(up.status, 201, "{:?}", up.body);
                    assert_eq!(up.body["sha256"], json!(Digest::of_bytes(&bytes)));
                    json!({"name": name, "source": {"source": "object", "key": up.body["key"]}})
                })
                .collect();
            json!({"id": id, "metadata": sample["metadata"], "files": files})
        })
        .collect()
}

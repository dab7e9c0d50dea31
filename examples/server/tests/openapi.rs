//! The served OpenAPI document against the served API, with schemathesis (a
//! schema-driven fuzzer from PyPI, installed by `scripts/schemathesis-setup.sh`): a
//! bounded number of generated requests per operation, and no answer may be a 5xx or
//! differ from the document (status, content type, headers, body schema, SSE events);
//! requests that break the document must be refused.
//!
//! Not run: schemathesis' `positive_data_acceptance` check, which expects every
//! request the schemas allow to succeed. The API enforces rules no schema states (a
//! convention's docs gate, hooks and runs that exist, metadata that is an object,
//! cursors that name a deployment), and refuses such requests with a 4xx by design.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Served, post};
use serde_json::json;

/// Requests generated per operation and test phase.
const EXAMPLES: &str = "25";

fn schemathesis() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(root.join("scripts/schemathesis-setup.sh"))
        .output()
        .expect("run scripts/schemathesis-setup.sh");
    assert!(
        output.status.success(),
        "scripts/schemathesis-setup.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    PathBuf::from(stdout.lines().last().expect("the path of st").trim())
}

#[test]
fn the_served_api_keeps_to_its_document() {
    let st = schemathesis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut served = Served::start(dir.path(), &[], &[]);
    let admin = served.process.wait_for("admin token (1 h): ");

    // Something to read: a deployed convention, a finished run with feature rows.
    let slug = common::deploy(
        &served,
        &admin,
        &common::convention("Fuzzed", &[("scored", json!({"name": "scored"}))]),
    );
    let submitted = post(
        &served.url("/validations"),
        &admin,
        &json!({"convention": slug, "records": common::records(&["r1", "r2"])}),
    );
    assert_eq!(submitted.status, 202, "{:?}", submitted.body);
    let run = submitted.body["id"].as_str().expect("id").to_string();
    let view = common::wait_for_run(&served.base, &admin, &run);
    assert_eq!(view["run"]["status"], "completed", "{view:#}");

    // Every scope, no role: the fuzzer may deploy OCI releases, never a process one
    // (that needs the admin role), so nothing it sends runs as a program here.
    let mut args = vec!["--subject", "fuzzer", "--ttl", "1h"];
    for scope in osa::auth::Scope::ALL {
        args.extend(["--scope", scope.as_str()]);
    }
    let token = common::mint(dir.path(), &[], &args);

    let report = dir.path().join("schemathesis.txt");
    // In the temp dir: schemathesis keeps a cache in its working directory.
    let output = Command::new(&st)
        .current_dir(dir.path())
        .args([
            "run",
            &served.url("/openapi.json"),
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            EXAMPLES,
            "--seed",
            "20261207",
            "--no-color",
            "--header",
            &format!("Authorization: Bearer {token}"),
        ])
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(&report, &text).expect("write the report");
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{text}"
    );
    // It did test: every operation, and many requests.
    let generated = text
        .lines()
        .find_map(|line| line.trim().split_once(" generated,"))
        .and_then(|(n, _)| n.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no count of generated cases in:\n{text}"));
    assert!(generated >= 500, "only {generated} cases:\n{text}");
    let count = |label: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map(|rest| rest.trim().to_string())
            .unwrap_or_else(|| panic!("no {label} in:\n{text}"))
    };
    let selected = count("Selected:");
    let (selected, of) = selected.split_once('/').expect("Selected: n/m");
    assert_eq!(selected, of, "operations left out:\n{text}");
    assert_eq!(count("Tested:"), selected, "operations not tested:\n{text}");

    // The server is still well and answers as before.
    let health = common::get(&served.url("/health"), None);
    assert_eq!(health.status, 200);
    served.process.terminate();
}

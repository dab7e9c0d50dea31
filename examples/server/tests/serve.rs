//! `osa-server serve` with no configuration, started in a fresh directory as a new
//! user would: it serves the embedded archive in the relative `./osa-archive`, a
//! validation submitted over HTTP runs its hooks to the end, tokens minted by
//! `osa-server token` are accepted, and a restart keeps the archive and its secret.

mod common;

use common::{Served, get, post};
use serde_json::{Value, json};

fn token(dir: &std::path::Path, args: &[&str]) -> String {
    common::mint(dir, &[], args)
}

#[test]
fn with_no_configuration_it_serves_the_archive_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut served = Served::start(dir.path(), &[], &[]);
    let admin = served.process.wait_for("admin token (1 h): ");

    // The archive is where the default says, relative to the working directory.
    let archive = dir.path().join("osa-archive");
    for part in ["archive.db", "blobs", "work", "node-secret"] {
        assert!(archive.join(part).exists(), "osa-archive/{part} exists");
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(archive.join("node-secret"))
            .expect("secret")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the node secret is the owner's alone");
    }
    let me = get(&served.url("/auth/me"), Some(&admin));
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["roles"], json!(["admin"]));

    let slug = common::deploy(
        &served,
        &admin,
        &common::convention(
            "Served",
            &[
                ("first", json!({"name": "first"})),
                ("second", json!({"name": "second", "reject_prefix": "bad"})),
            ],
        ),
    );

    let submitted = post(
        &served.url("/validations"),
        &admin,
        &json!({"convention": slug, "records": common::records(&["r-1", "r-22", "bad-3"])}),
    );
    assert_eq!(submitted.status, 202, "{:?}", submitted.body);
    let run = submitted.body["id"].as_str().expect("run id").to_string();
    let view = common::wait_for_run(&served.base, &admin, &run);
    assert_eq!(view["run"]["status"], "completed", "{view:?}");
    let steps = view["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2);
    assert_eq!(
        steps[0]["counts"],
        json!({"passed": 3, "rejected": 0, "errored": 0})
    );
    assert_eq!(
        steps[1]["counts"],
        json!({"passed": 2, "rejected": 1, "errored": 0})
    );
    let rows = get(&served.url("/features/first"), None);
    assert_eq!(rows.status, 200, "{:?}", rows.body);
    let scored: Vec<(String, f64)> = rows.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let id = r["record_id"].as_str().expect("record id").to_string();
            (id, r["values"]["score"].as_f64().expect("score"))
        })
        .collect();
    assert_eq!(
        scored,
        [("r-1".to_string(), 3.0), ("r-22".to_string(), 4.0)],
        "features of the accepted records"
    );

    // Tokens from `osa-server token` in the same directory: the same archive secret.
    let curator = token(
        dir.path(),
        &["--subject", "carol", "--role", "curator", "--ttl", "10m"],
    );
    let me = get(&served.url("/auth/me"), Some(&curator));
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["roles"], json!(["curator"]));
    assert_eq!(me.body["subject"], "carol");
    let reader = token(
        dir.path(),
        &["--subject", "ci", "--scope", "runs:read", "--ttl", "600"],
    );
    assert_eq!(
        get(&served.url(&format!("/validations/{run}")), Some(&reader)).status,
        200
    );
    let refused = post(&served.url("/conventions"), &reader, &Value::Null);
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(refused.body["code"], "access_denied", "{:?}", refused.body);
    assert_eq!(refused.body["detail"]["code"], "access_denied");

    // SIGTERM stops it cleanly; a restart serves the same archive with the same secret.
    assert!(served.process.terminate().success());
    let served = Served::start(dir.path(), &[], &[]);
    assert_eq!(get(&served.url("/auth/me"), Some(&curator)).status, 200);
    let again = get(&served.url(&format!("/validations/{run}")), Some(&admin));
    assert_eq!(again.body["run"]["status"], "completed");
}

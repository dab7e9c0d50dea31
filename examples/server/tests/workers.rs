//! One `osa-server serve --no-worker` and two `osa-server worker` processes share an
//! archive (SQLite file or Postgres): a run deployed and submitted over HTTP is run by
//! the workers; the worker running its last hook is SIGKILLed mid-step, and the other
//! worker resumes the run from the committed steps: the run completes with one hook
//! run per step and the features of a crash-free run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Process, Served, get, post};
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef-workers";

fn side_effects(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The parent of process `pid` (from /proc).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces, so parse after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// `record id → score` of a hook's rows written by hook run `hook_run`.
fn rows_of(base: &str, hook: &str, hook_run: &Value) -> Vec<(String, f64)> {
    let run = hook_run.as_str().expect("hook run id");
    let page = get(&format!("{base}/features/{hook}?run_id={run}"), None);
    assert_eq!(page.status, 200, "{:?}", page.body);
    let mut rows: Vec<(String, f64)> = page.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["record_id"].as_str().expect("id").to_string(),
                r["values"]["score"].as_f64().expect("score"),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// Runs the scenario; returns the temp dir it ran in (the archive directory inside).
fn a_killed_worker_is_replaced_by_another(env: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = env.to_vec();
    env.push(("OSA_WORKER__LEASE", "2s".into()));
    env.push(("OSA_WORKER__POLL", "50ms".into()));
    let served = Served::start(dir.path(), &["--no-worker"], &env);
    let admin = common::mint(dir.path(), &env, &["--role", "admin"]);
    let log = dir.path().join("side-effects.log");
    let pid_file = dir.path().join("third.pid");
    let hook = |name: &str| json!({"name": name, "log": log});
    let mut third = hook("third");
    third["sleep_once"] = json!(dir.path().join("third-slept"));
    third["sleep_seconds"] = json!(8);
    third["pid_file"] = json!(pid_file);
    let body = common::convention(
        "Crash Safe",
        &[
            ("first", hook("first")),
            ("second", hook("second")),
            ("third", third),
        ],
    );
    let slug = common::deploy(&served, &admin, &body);
    let submit = |ids: &[&str]| {
        let answer = post(
            &served.url("/validations"),
            &admin,
            &json!({"convention": slug, "records": common::records(ids)}),
        );
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        answer.body["id"].as_str().expect("run id").to_string()
    };
    let ids = ["r-1", "r-22", "r-333"];
    let run = submit(&ids);

    let mut workers = [
        Process::spawn(dir.path(), &["worker"], &env),
        Process::spawn(dir.path(), &["worker"], &env),
    ];
    for worker in &mut workers {
        worker.wait_for("worker   ");
    }
    // The third hook has started (and written its pid): kill the worker running it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let hook_pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse::<u32>()
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the third hook started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let parent = parent_of(hook_pid).expect("the hook's parent");
    let running = workers
        .iter()
        .position(|w| w.child.id() == parent)
        .unwrap_or_else(|| panic!("the hook's parent {parent} is one of the workers"));
    // SIGKILL: no chance to clean up or release the lease.
    workers[running].kill();
    // The hook it was running dies with it (parent-death signal), not 8 s later.
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(hook_pid) {
        assert!(
            Instant::now() < deadline,
            "the hook outlived its killed worker"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let view = get(&served.url(&format!("/validations/{run}")), Some(&admin)).body;
    assert_eq!(
        view["run"]["current_step"], 2,
        "steps 0 and 1 were committed: {view:?}"
    );

    let view = common::wait_for_run(&served.base, &admin, &run);
    assert_eq!(view["run"]["status"], "completed", "{view:?}");
    assert_eq!(
        side_effects(&log),
        ["first 3", "second 3", "third 3", "third 3"],
        "each hook ran once, but the one whose worker was killed, which ran again"
    );
    let steps = view["steps"].as_array().expect("steps").clone();
    let hook_runs: std::collections::BTreeSet<String> = steps
        .iter()
        .map(|s| s["hook_run_id"].as_str().expect("a hook run").to_string())
        .collect();
    assert_eq!(hook_runs.len(), 3, "one hook run per step");
    let names = ["first", "second", "third"];
    let crashed: Vec<_> = names
        .iter()
        .zip(&steps)
        .map(|(name, step)| rows_of(&served.base, name, &step["hook_run_id"]))
        .collect();

    // A crash-free run of the same records, by the surviving worker.
    let clean = submit(&ids);
    let clean_view = common::wait_for_run(&served.base, &admin, &clean);
    assert_eq!(clean_view["run"]["status"], "completed");
    let clean_rows: Vec<_> = names
        .iter()
        .zip(clean_view["steps"].as_array().expect("steps"))
        .map(|(name, step)| rows_of(&served.base, name, &step["hook_run_id"]))
        .collect();
    assert_eq!(crashed, clean_rows);
    assert_eq!(crashed[2].len(), 3);
    drop(workers);
    dir
}

#[test]
fn on_sqlite() {
    let dir = a_killed_worker_is_replaced_by_another(&[]);
    assert!(
        dir.path().join("osa-archive/blobs/runs").is_dir(),
        "blobs in the archive directory"
    );
}

#[test]
fn on_postgres() {
    let (env, _cleanup) = common::postgres_env(&common::unique("srv"), SECRET);
    a_killed_worker_is_replaced_by_another(&env);
}

/// Postgres plus blobs in an S3-protocol test server (moto's server, started by
/// scripts/s3-setup.sh): the blobs are in the bucket, none on disk.
#[test]
fn on_postgres_and_s3() {
    let (mut env, _cleanup) = common::postgres_env(&common::unique("srv"), SECRET);
    let prefix = common::unique("server");
    let (blobs, endpoint) = common::s3_env(&prefix);
    env.extend(blobs);
    let dir = a_killed_worker_is_replaced_by_another(&env);
    assert!(
        !dir.path().join("osa-archive/blobs").exists(),
        "no blob on disk: {:?}",
        common::tree(dir.path())
    );
    let keys = common::bucket_keys(&endpoint, &prefix);
    for part in ["runs/", "deployments/"] {
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("{prefix}/{part}"))),
            "{part} in the bucket: {keys:?}"
        );
    }
}

//! The runner conformance suite against `ProcessRunner`, in plain mode and inside
//! bubblewrap, with the Python test hook (`tests/hooks/test_hook.py`), plus the
//! process runner's own configuration errors.
//!
//! Needs `python3` on PATH and `bwrap` (scripts/sandbox-setup.sh installs it); the
//! bwrap tests fail, never skip, when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use osa_core::contract::{BatchLayout, BatchLimits};
use osa_core::id::{HookName, ReleaseId};
use osa_core::runner::process::{ProcessRunner, Sandbox};
use osa_core::runner::{FailureKind, HookRunner, RunJob};
use osa_core::runtime::{Limits, RuntimeConfig};
use osa_core::testing::runner::{HOOK_NAME, Harness, wait_until_ended};
use serde_json::{Map, Value};

/// The Python interpreter behind `python3` on PATH and its installation prefix.
struct Python {
    executable: PathBuf,
    prefix: PathBuf,
}

fn python() -> &'static Python {
    static PYTHON: OnceLock<Python> = OnceLock::new();
    PYTHON.get_or_init(|| {
        // Resolve shims (pyenv) to the real interpreter: the sandbox only sees what is
        // bound, and the interpreter needs its prefix (stdlib) too.
        let output = Command::new("python3")
            .args([
                "-c",
                "import sys; print(sys.executable); print(sys.base_prefix)",
            ])
            .output()
            .expect("python3 must be on PATH to run the process runner tests");
        assert!(output.status.success(), "python3 failed: {output:?}");
        let text = String::from_utf8(output.stdout).expect("utf-8 paths");
        let mut lines = text.lines();
        Python {
            executable: lines.next().expect("sys.executable").into(),
            prefix: lines.next().expect("sys.base_prefix").into(),
        }
    })
}

fn hook_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/hooks/test_hook.py")
        .canonicalize()
        .expect("tests/hooks/test_hook.py exists")
}

fn python_hook(config: Map<String, Value>, limits: Limits) -> RuntimeConfig {
    RuntimeConfig::Process {
        command: vec![
            python().executable.to_string_lossy().into_owned(),
            hook_script().to_string_lossy().into_owned(),
        ],
        digest: osa_core::testing::digest(1),
        config,
        limits,
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Plain,
    Bwrap,
}

/// A runner in one mode, with its scratch directory.
struct Env {
    runner: ProcessRunner,
    scratch: tempfile::TempDir,
    sandboxed: bool,
}

impl Env {
    fn new(mode: Mode) -> Self {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let (runner, sandboxed) = match mode {
            Mode::Plain => (ProcessRunner::new(), false),
            Mode::Bwrap => {
                if let Err(e) = Sandbox::Bwrap.check() {
                    panic!("the bwrap runner tests need bubblewrap: {e}");
                }
                // The script file only, not its directory (the other hooks there stay
                // invisible).
                let runner = ProcessRunner::with_sandbox(Sandbox::Bwrap)
                    .bind_read_only(hook_script())
                    .bind_read_only(&python().prefix);
                (runner, true)
            }
        };
        Env {
            runner,
            scratch,
            sandboxed,
        }
    }

    fn harness(&self) -> Harness<'_> {
        Harness::new(&self.runner, &python_hook, self.scratch.path()).sandboxed(self.sandboxed)
    }
}

mod plain {
    use super::*;

    osa_core::runner_conformance!(Env::new(Mode::Plain));
}

mod bwrap {
    use super::*;

    osa_core::runner_conformance!(Env::new(Mode::Bwrap));

    #[test]
    fn detect_finds_bwrap_here() {
        assert_eq!(
            Sandbox::detect(),
            Sandbox::Bwrap,
            "bwrap must work on this machine ({:?}); run scripts/sandbox-setup.sh",
            Sandbox::Bwrap.check()
        );
    }
}

/// A job for `runtime` over an empty one-record batch.
fn job(scratch: &Path, runtime: RuntimeConfig) -> RunJob {
    let record = osa_core::contract::BatchRecord {
        id: "a".parse().expect("valid id"),
        metadata: serde_json::json!({}),
        files: Vec::new(),
    };
    let batch = BatchLayout::prepare(
        scratch.join("batch"),
        &[record],
        runtime.config(),
        &BatchLimits::default(),
    )
    .expect("batch");
    RunJob {
        hook: HookName::new(HOOK_NAME).expect("valid hook name"),
        release_id: ReleaseId::new_random(),
        limits: runtime.limits(),
        runtime,
        batch: batch.layout,
        max_log_bytes: 1 << 20,
    }
}

fn process(command: &[&str]) -> RuntimeConfig {
    RuntimeConfig::Process {
        command: command.iter().map(|s| s.to_string()).collect(),
        digest: osa_core::testing::digest(2),
        config: Map::new(),
        limits: Limits::default(),
    }
}

async fn config_failure(runner: &ProcessRunner, runtime: RuntimeConfig) -> String {
    let scratch = tempfile::tempdir().expect("scratch dir");
    match runner.run(&job(scratch.path(), runtime)).await {
        Ok(_) => panic!("expected a config failure, got success"),
        Err(f) => {
            assert_eq!(f.kind, FailureKind::Config, "{f}");
            f.detail
        }
    }
}

#[tokio::test]
async fn unrunnable_commands_are_config_failures() {
    for runner in [
        ProcessRunner::new(),
        ProcessRunner::with_sandbox(Sandbox::Bwrap),
    ] {
        let detail = config_failure(&runner, process(&["osa-no-such-program"])).await;
        assert!(
            detail.contains("`osa-no-such-program` not found in PATH"),
            "{detail}"
        );
        let detail = config_failure(&runner, process(&["/opt/osa/no/such/hook"])).await;
        assert!(detail.contains("/opt/osa/no/such/hook"), "{detail}");
        let detail = config_failure(&runner, process(&["hooks/check.py"])).await;
        assert!(detail.contains("relative path"), "{detail}");
        let detail = config_failure(&runner, process(&[])).await;
        assert!(detail.contains("empty"), "{detail}");
        let oci = RuntimeConfig::Oci {
            image: "ghcr.io/x/hook".into(),
            digest: osa_core::testing::digest(3),
            config: Map::new(),
            limits: Limits::default(),
        };
        let detail = config_failure(&runner, oci).await;
        assert!(detail.contains("`oci`"), "{detail}");
    }
}

#[tokio::test]
async fn a_non_executable_file_is_a_config_failure() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let script = scratch.path().join("hook.sh");
    std::fs::write(&script, "echo hi\n").expect("write script");
    let detail = config_failure(
        &ProcessRunner::new(),
        process(&[script.to_str().expect("utf-8 path")]),
    )
    .await;
    assert!(detail.contains("permission denied"), "{detail}");
}

#[tokio::test]
async fn the_runner_names_its_mode() {
    assert_eq!(ProcessRunner::new().name(), "process");
    assert_eq!(ProcessRunner::with_sandbox(Sandbox::Bwrap).name(), "bwrap");
}

/// In plain mode, the contract directories are the batch's host paths and `HOME` is a
/// private directory that is gone afterwards.
#[tokio::test]
async fn plain_mode_environment_values() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut config = Map::new();
    config.insert("mode".into(), "env".into());
    let job = job(scratch.path(), python_hook(config, Limits::default()));
    let execution = ProcessRunner::new().run(&job).await;
    assert!(execution.is_ok(), "{execution:?}");
    let features =
        std::fs::read_to_string(job.batch.output.join("features.jsonl")).expect("features");
    let line: Value =
        serde_json::from_str(features.lines().next().expect("one line")).expect("json");
    let env = &line["features"][0]["detail"]["env"];
    assert_eq!(env["OSA_IN"], job.batch.input.to_string_lossy().as_ref());
    assert_eq!(env["OSA_OUT"], job.batch.output.to_string_lossy().as_ref());
    assert_eq!(env["OSA_FILES"], job.batch.files.to_string_lossy().as_ref());
    let home = PathBuf::from(env["HOME"].as_str().expect("HOME"));
    assert!(home.starts_with(std::env::temp_dir()), "{}", home.display());
    assert!(
        !home.exists(),
        "the private HOME {} must be removed",
        home.display()
    );
}

/// A bwrap runner with nothing extra bound.
fn bwrap_runner() -> ProcessRunner {
    if let Err(e) = Sandbox::Bwrap.check() {
        panic!("the bwrap runner tests need bubblewrap: {e}");
    }
    ProcessRunner::with_sandbox(Sandbox::Bwrap)
}

fn limits(memory: &str) -> Limits {
    Limits::default().with_memory(memory.parse().expect("valid size"))
}

/// Writes `script` as an executable shell hook at `path`.
fn shell_hook(path: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{script}")).expect("write hook");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Runs the executable `program` in the bwrap sandbox; panics with the log unless it
/// exits 0.
async fn run_sandboxed(program: &Path, args: &[&str], limits: Limits) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut command = vec![program.to_str().expect("utf-8 path")];
    command.extend_from_slice(args);
    let runtime = RuntimeConfig::Process {
        command: command.iter().map(|s| s.to_string()).collect(),
        digest: osa_core::testing::digest(4),
        config: Map::new(),
        limits,
    };
    let job = job(scratch.path(), runtime);
    if let Err(f) = bwrap_runner().run(&job).await {
        panic!("{f}\n{}", String::from_utf8_lossy(&f.log.bytes));
    }
}

/// Only the program file is bound, not its directory: its neighbours stay invisible.
#[tokio::test]
async fn bwrap_hides_the_files_next_to_the_program() {
    let dir = tempfile::tempdir().expect("hook dir");
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "do not read").expect("write secret");
    let hook = dir.path().join("hook.sh");
    shell_hook(
        &hook,
        &format!(
            "test -e '{hook}' || {{ echo 'the program is not visible'; exit 1; }}\n\
             if test -e '{secret}'; then echo 'a file next to the program is visible'; exit 1; fi\n",
            hook = hook.display(),
            secret = secret.display(),
        ),
    );
    run_sandboxed(&hook, &[], Limits::default()).await;
}

/// A program directly under `/tmp` does not bring the host's `/tmp` in: the private
/// tmpfs (also `HOME`) stays private and writable.
#[tokio::test]
async fn bwrap_program_in_tmp_does_not_expose_the_hosts_tmp() {
    let id = uuid::Uuid::new_v4();
    let marker = std::env::temp_dir().join(format!("osa-host-marker-{id}"));
    std::fs::write(&marker, "host").expect("write marker");
    let hook = Path::new("/tmp").join(format!("osa-hook-{id}.sh"));
    shell_hook(
        &hook,
        &format!(
            "if test -e '{marker}'; then echo 'the host /tmp is visible'; exit 1; fi\n\
             echo x > \"$HOME/written\" || {{ echo 'HOME is not writable'; exit 1; }}\n",
            marker = marker.display(),
        ),
    );
    let _cleanup = RemoveOnDrop(vec![marker.clone(), hook.clone()]);
    run_sandboxed(&hook, &[], Limits::default()).await;
}

/// Removes its files when dropped (also when the test panics).
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds that would expose the host's files are refused, not silently made.
#[tokio::test]
async fn bwrap_refuses_binds_of_the_root_or_tmp() {
    for path in ["/", "/tmp"] {
        let runner = bwrap_runner().bind_read_only(path);
        let detail = config_failure(&runner, process(&["/bin/true"])).await;
        assert!(detail.contains("would expose the host's files"), "{detail}");
    }
    let detail = config_failure(&bwrap_runner(), process(&["/tmp"])).await;
    assert!(detail.contains("not a regular file"), "{detail}");
}

/// `/tmp` is a tmpfs the size of the memory limit: writing past it fails.
#[tokio::test]
async fn bwrap_tmp_is_sized_by_the_memory_limit() {
    run_sandboxed(
        Path::new("/bin/sh"),
        &[
            "-c",
            "if dd if=/dev/zero of=/tmp/big bs=1M count=100 2>/dev/null; then \
               echo 'wrote 100 MiB to /tmp under a 64 MiB limit'; exit 1; fi; \
             rm -f /tmp/big; echo small > /tmp/small || exit 1",
        ],
        limits("64m"),
    )
    .await;
}

/// `/dev/shm` is a small private tmpfs and `/dev` itself is read-only.
#[tokio::test]
async fn bwrap_dev_shm_is_bounded_and_dev_read_only() {
    run_sandboxed(
        Path::new("/bin/sh"),
        &[
            "-c",
            "if dd if=/dev/zero of=/dev/shm/big bs=1M count=100 2>/dev/null; then \
               echo 'wrote 100 MiB to /dev/shm'; exit 1; fi; \
             rm -f /dev/shm/big; echo small > /dev/shm/small || exit 1; \
             if touch /dev/osa-file 2>/dev/null; then echo '/dev is writable'; exit 1; fi; \
             echo ok > /dev/null || exit 1",
        ],
        limits("256m"),
    )
    .await;
}

/// The hook keeps the engine's uid and can write `$OSA_OUT`, but cannot create a user
/// namespace of its own.
#[tokio::test]
async fn bwrap_keeps_the_uid_and_disables_nested_user_namespaces() {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    run_sandboxed(
        Path::new("/bin/sh"),
        &[
            "-c",
            &format!(
                "test \"$(id -u)\" = {uid} || {{ echo \"uid $(id -u), expected {uid}\"; exit 1; }}; \
                 echo ok > \"$OSA_OUT/probe\" || exit 1; \
                 if unshare -U true 2>/dev/null; then echo 'nested user namespace created'; exit 1; fi"
            ),
        ],
        Limits::default(),
    )
    .await;
}

/// A hook outlives the runtime thread that happened to spawn it. Hooks are started
/// with a parent-death signal (bwrap's `--die-with-parent`; `PR_SET_PDEATHSIG` in
/// plain mode), which the kernel sends when the *thread* that forked exits, not the
/// process; a Tokio worker thread can exit while the process goes on (here: its core
/// handed away by `block_in_place`, then idle past the keep-alive).
#[test]
fn a_hook_outlives_the_thread_that_spawned_it() {
    for (mode, runner) in [("plain", ProcessRunner::new()), ("bwrap", bwrap_runner())] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_keep_alive(std::time::Duration::from_millis(20))
            .enable_all()
            .build()
            .expect("runtime");
        let scratch = tempfile::tempdir().expect("scratch dir");
        let job = job(scratch.path(), process(&["/bin/sh", "-c", "sleep 1.5"]));
        let result = runtime.block_on(async move {
            let running = tokio::spawn(async move { runner.run(&job).await });
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            // The only worker thread (which polled the run when it started the hook)
            // gives its core to a new thread and ends up in the blocking pool, where it
            // exits once idle, while the hook sleeps on.
            tokio::spawn(async {
                tokio::task::block_in_place(|| {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                })
            })
            .await
            .expect("block_in_place task");
            running.await.expect("run task")
        });
        if let Err(f) = result {
            panic!("{mode}: the hook was killed: {f}");
        }
    }
}

/// A `run` future dropped while its hook is being started (a cancel racing the start)
/// leaves no hook running: the start is skipped, or the started hook is killed.
#[tokio::test]
async fn a_run_dropped_while_starting_leaves_no_hook() {
    for round in 0..5 {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let pid_file = scratch.path().join("hook.pid");
        // Written aside and renamed: a hook killed while it writes leaves no pid file
        // (one that runs on always gets to write it).
        let script = format!(
            "echo $$ > {0}.tmp && mv {0}.tmp {0}; exec sleep 5",
            pid_file.display()
        );
        let job = job(scratch.path(), process(&["/bin/sh", "-c", &script]));
        let runner = ProcessRunner::new();
        // Polled once (up to the start request), then dropped.
        let dropped = tokio::time::timeout(std::time::Duration::ZERO, runner.run(&job)).await;
        assert!(dropped.is_err(), "the hook cannot have finished already");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let Ok(pid) = std::fs::read_to_string(&pid_file) else {
            continue; // never started, or killed as it started
        };
        let pid: u32 = pid.trim().parse().expect("pid number");
        if let Err(e) = wait_until_ended(pid, std::time::Duration::from_secs(2)).await {
            panic!("round {round}: the hook runs on after its run was dropped: {e}");
        }
    }
}

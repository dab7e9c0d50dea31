//! The local process runner: spawns a release's `command` over a batch directory.
//!
//! # What each mode isolates
//!
//! **Plain mode** ([`Sandbox::None`], the default) isolates *nothing* beyond resource
//! limits. The hook runs as the engine's user, with the engine's filesystem view and
//! network. What it does get:
//! - a cleared environment: exactly `OSA_IN`, `OSA_OUT`, `OSA_FILES`, `OSA_HOOK_NAME`,
//!   `PATH` (the engine's) and `HOME` (a fresh private directory, removed afterwards);
//!   the working directory is the batch root; stdin is `/dev/null`;
//! - its own process group; the wall-clock timeout, the end of the run and the
//!   cancellation of the `run` future all SIGKILL the group and every descendant
//!   still linked to the hook, and `run` waits until they are dead;
//! - `RLIMIT_AS` = the memory limit (address space, not resident memory) and
//!   `RLIMIT_CORE` = 0, set in the child before `exec`.
//!
//! It does **not** stop the hook from reading or writing anything the engine's user
//! can (including its inputs and the files of the batch), from using the network,
//! from seeing other processes, or from escaping the kill: a child that leaves the
//! hook's process group (`setsid cmd &` is enough) survives once the hook itself has
//! exited, because it is then no longer linked to the hook. The cpu
//! quota is not enforced. If the engine process itself is killed, the kernel kills the
//! hook process (a parent-death signal), but not what it started in the background,
//! and its `HOME` stays behind. Use it for trusted hooks and for development.
//!
//! **bwrap mode** ([`Sandbox::Bwrap`], needs [bubblewrap]) adds Linux namespaces:
//! - network: a new, empty network namespace (no interfaces but loopback, so no
//!   connection leaves the sandbox and no host port, including `127.0.0.1`, is
//!   reachable);
//! - filesystem: a read-only root containing only `/usr`, `/bin`, `/sbin`, `/lib`,
//!   `/lib64` and `/etc` (read-only), a private `/proc`, a minimal read-only `/dev`
//!   (device nodes only) with a private tmpfs `/dev/shm` of at most 64 MiB (the
//!   memory limit when that is smaller), a private tmpfs `/tmp` (also `HOME`) whose
//!   size is the job's memory limit, `$OSA_IN` and `$OSA_FILES` read-only, `$OSA_OUT`
//!   read-write, and read-only at their own paths: the program *file* (and, when it
//!   is a symlink, its canonical target; never the directory holding it) and every
//!   path given to [`ProcessRunner::bind_read_only`]. Every other host path is
//!   invisible; the only writable places are `$OSA_OUT`, `/tmp` and `/dev/shm`, so
//!   a hook can put at most its memory limit plus 64 MiB into memory-backed files
//!   (tmpfs pages are not counted by `RLIMIT_AS`). The other arguments of the command
//!   (a script given to an interpreter) are not bound: bind them, or a directory
//!   holding only hook code, with [`ProcessRunner::bind_read_only`];
//! - binds that would expose the host are refused as a `config` failure: a program
//!   that is not a regular file, and a program or [`ProcessRunner::bind_read_only`]
//!   path that is `/`, `/tmp`, the batch root or an ancestor of one of them;
//! - processes: a new pid namespace (the hook sees only its own processes, and when
//!   the sandbox ends every process in it is killed by the kernel), IPC and UTS
//!   namespaces, a new session (no access to the engine's terminal), no capabilities
//!   (empty bounding set, `no_new_privs`), and `--die-with-parent` (the sandbox dies
//!   with the engine);
//! - a new user namespace that maps only the engine's uid and gid (to themselves) and
//!   in which no further user namespace can be created (`--disable-userns`), so a
//!   hook cannot `unshare -U` its way back to a full capability set.
//!
//! The environment is the same as in plain mode except `HOME`, which is the private
//! `/tmp` (bwrap's own `PWD` is removed with `env -u PWD`).
//!
//! It does **not** change the user id: the hook runs as the engine's user, so files
//! under `/etc` that this user can read (as root: `/etc/shadow`) are readable. There is
//! no seccomp filter, no cpu quota, and memory is limited only by `RLIMIT_AS` and the
//! tmpfs sizes above. Run the engine as an unprivileged user, or use the OCI runner,
//! for untrusted hooks.
//!
//! # OOM classification
//!
//! `RLIMIT_AS` makes an allocation past the limit *fail* instead of killing the
//! process, so an out-of-memory hook usually exits on its own: Python raises
//! `MemoryError` (exit 1), Rust aborts with "memory allocation of N bytes failed"
//! (SIGABRT), C++ terminates on `std::bad_alloc`. A failed execution is classified
//! [`FailureKind::Oom`] when, and only when, the run did not time out and
//! - the hook died of SIGKILL that the runner did not send (how the kernel OOM killer
//!   and cgroup limits end a process), or
//! - the last 4 KiB of its stderr contain an allocation-failure marker
//!   ([`OOM_MARKERS`], matched case-insensitively) and it exited non-zero or died of a
//!   signal.
//!
//! Exit codes 129..=192 are read as "killed by signal code−128", because `bwrap` and
//! shells report a signalled child that way (so `exit 137` counts as SIGKILL).
//! Limits of the heuristic: a hook that prints a marker for another reason and then
//! fails is retried with more memory (at most three times; the policy then gives up);
//! a program that crashes without saying why (a C extension dereferencing a failed
//! `malloc` dies of SIGSEGV) is a plain `hook_exit`; and `RLIMIT_AS` counts reserved
//! address space, so runtimes that reserve much more than they use (JVM, Go, glibc's
//! per-thread malloc arenas in threaded programs) need a limit well above their real
//! footprint.
//!
//! [bubblewrap]: https://github.com/containers/bubblewrap

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use super::group::ProcessGroup;
use super::{CapturedLog, Execution, FailureKind, HookRunner, RunFailure, RunJob};
use crate::contract::{BatchLayout, ENV_FILES, ENV_HOOK_NAME, ENV_IN, ENV_OUT};
use crate::runtime::RuntimeConfig;

/// Markers of an allocation failure in a hook's stderr (see the module docs).
pub const OOM_MARKERS: &[&str] = &[
    // Python
    "MemoryError",
    // Rust's default alloc error handler: "memory allocation of N bytes failed"
    "memory allocation of",
    // C++
    "std::bad_alloc",
    // JVM
    "OutOfMemoryError",
    // Go ("fatal error: runtime: out of memory"), Node ("heap out of memory"), C tools
    "out of memory",
];

/// `PATH` for hooks when the engine itself has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// System directories bound read-only into the bwrap sandbox.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"];
/// `HOME` inside the bwrap sandbox: its private tmpfs.
const SANDBOX_HOME: &str = "/tmp";
/// The largest size of the sandbox's `/dev/shm` tmpfs (smaller when the memory limit
/// is).
const SHM_MAX_BYTES: u64 = 64 << 20;
/// How much of the stderr head is kept to recognise bwrap's own errors.
const STDERR_HEAD: usize = 512;
/// How much of the stderr tail is kept for the OOM markers, independently of the log
/// cap (the marker comes last, exactly the part a capped log drops).
const STDERR_TAIL: usize = 4096;
/// How long `run` waits for killed processes to die before reporting them.
const KILL_WAIT: Duration = Duration::from_secs(1);
/// How long output is still read after the hook's processes are gone; only a process
/// that escaped the process group can keep the pipes open longer.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// How the process runner confines a hook. See the [module docs](self) for exactly
/// what each mode isolates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Sandbox {
    /// Plain process: environment, process group, timeout and rlimits only.
    #[default]
    None,
    /// bubblewrap namespaces: no network, read-only root, only the batch dirs bound.
    Bwrap,
}

impl Sandbox {
    /// [`Sandbox::Bwrap`] when `bwrap` is on `PATH` and can create its namespaces
    /// here, else [`Sandbox::None`]. Runs `bwrap` once (blocking, a few milliseconds).
    pub fn detect() -> Sandbox {
        match Sandbox::Bwrap.check() {
            Ok(()) => Sandbox::Bwrap,
            Err(_) => Sandbox::None,
        }
    }

    /// Checks that this mode can run here: always `Ok` for [`Sandbox::None`]; for
    /// [`Sandbox::Bwrap`], that `bwrap` is installed and
    /// `bwrap --unshare-all --ro-bind / / true` succeeds. The error says what to do.
    /// Blocking (spawns `bwrap` once).
    pub fn check(self) -> Result<(), String> {
        match self {
            Sandbox::None => Ok(()),
            Sandbox::Bwrap => {
                let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
                let bwrap = find_in_path("bwrap", &path).ok_or_else(|| {
                    "bwrap is not installed (not found in PATH); install bubblewrap \
                     (`apt-get install bubblewrap`, or scripts/sandbox-setup.sh)"
                        .to_string()
                })?;
                let output = std::process::Command::new(&bwrap)
                    .args(["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/"])
                    .arg("true")
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", bwrap.display()))?;
                if output.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} cannot create its sandbox here ({}): {}; user namespaces may be \
                         disabled (kernel.unprivileged_userns_clone, or a container without \
                         CAP_SYS_ADMIN)",
                        bwrap.display(),
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    ))
                }
            }
        }
    }
}

/// Runs `process` releases as local processes, optionally inside bubblewrap.
///
/// ```no_run
/// use osa_core::runner::process::{ProcessRunner, Sandbox};
///
/// // The strongest mode available on this machine; a Python hook whose interpreter
/// // and script live outside the system directories needs them bound.
/// let runner = ProcessRunner::with_sandbox(Sandbox::detect())
///     .bind_read_only("/opt/hooks")
///     .bind_read_only("/opt/python3.12");
/// ```
///
/// The command is never passed through a shell. A bare program name is looked up in
/// the engine's `PATH`; otherwise the program must be an absolute path (a relative
/// path would depend on the engine's working directory, so it is refused).
#[derive(Debug, Clone, Default)]
pub struct ProcessRunner {
    sandbox: Sandbox,
    read_only: Vec<PathBuf>,
}

impl ProcessRunner {
    /// A runner in plain mode ([`Sandbox::None`]).
    pub fn new() -> Self {
        ProcessRunner::default()
    }

    /// A runner in the given mode. For [`Sandbox::Bwrap`] call [`Sandbox::check`]
    /// first to fail early; otherwise every run reports a `config` failure when
    /// `bwrap` is missing.
    pub fn with_sandbox(sandbox: Sandbox) -> Self {
        ProcessRunner {
            sandbox,
            read_only: Vec::new(),
        }
    }

    /// Makes `path` visible read-only at the same place inside the bwrap sandbox
    /// (an interpreter's prefix, a directory of hook scripts). No effect in plain
    /// mode, where everything is visible anyway. Paths under the system directories
    /// are already bound.
    pub fn bind_read_only(mut self, path: impl Into<PathBuf>) -> Self {
        self.read_only.push(path.into());
        self
    }

    /// The mode of this runner.
    pub fn sandbox(&self) -> Sandbox {
        self.sandbox
    }
}

impl ProcessRunner {
    /// The command to spawn: the program itself, or bwrap around it.
    fn command(
        &self,
        job: &RunJob,
        program: &Path,
        args: &[String],
        path_var: &OsStr,
    ) -> Result<Command, RunFailure> {
        if self.sandbox == Sandbox::None {
            let mut cmd = Command::new(program);
            cmd.args(args);
            return Ok(cmd);
        }
        let bwrap = find_in_path("bwrap", path_var).ok_or_else(|| {
            RunFailure::new(
                FailureKind::Config,
                "the runner is configured for the bwrap sandbox but `bwrap` is not installed \
                 (not found in PATH); install bubblewrap",
            )
        })?;
        // bwrap always exports PWD; `env -u PWD` keeps the environment exactly the
        // contract's.
        let env = ["/usr/bin/env", "/bin/env"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                RunFailure::new(
                    FailureKind::Config,
                    "the bwrap sandbox needs /usr/bin/env (coreutils) to clear PWD",
                )
            })?;
        let mut cmd = Command::new(bwrap);
        cmd.args(bwrap_args(
            &job.batch,
            program,
            &self.read_only,
            job.limits.memory.bytes(),
        )?)
        .arg("--")
        .arg(env)
        .args(["-u", "PWD", "--"])
        .arg(program)
        .args(args);
        Ok(cmd)
    }
}

#[async_trait]
impl HookRunner for ProcessRunner {
    fn name(&self) -> &'static str {
        match self.sandbox {
            Sandbox::None => "process",
            Sandbox::Bwrap => "bwrap",
        }
    }

    async fn run(&self, job: &RunJob) -> Result<Execution, RunFailure> {
        let started = Instant::now();
        let with_duration = |mut failure: RunFailure| {
            failure.duration = started.elapsed();
            failure
        };
        let command = match &job.runtime {
            RuntimeConfig::Process { command, .. } => command,
            other => {
                return Err(with_duration(RunFailure::new(
                    FailureKind::Config,
                    format!(
                        "the process runner runs `process` releases; this release is `{}`",
                        other.type_name()
                    ),
                )));
            }
        };
        let path_var = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
        let (program, args) = command.split_first().ok_or_else(|| {
            with_duration(RunFailure::new(
                FailureKind::Config,
                "the release's command is empty",
            ))
        })?;
        let program = resolve_program(program, &path_var).map_err(with_duration)?;
        let home = match self.sandbox {
            Sandbox::None => Some(PrivateHome::create().map_err(with_duration)?),
            Sandbox::Bwrap => None,
        };
        let home_path = home
            .as_ref()
            .map_or_else(|| PathBuf::from(SANDBOX_HOME), |h| h.0.clone());

        let mut cmd = self
            .command(job, &program, args, &path_var)
            .map_err(with_duration)?;
        cmd.env_clear()
            .env(ENV_IN, &job.batch.input)
            .env(ENV_OUT, &job.batch.output)
            .env(ENV_FILES, &job.batch.files)
            .env(ENV_HOOK_NAME, job.hook.as_str())
            .env("PATH", &path_var)
            .env("HOME", &home_path)
            .current_dir(&job.batch.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let memory = job.limits.memory.bytes();
        let engine = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the forked child between fork and exec, where only
        // async-signal-safe work is allowed; `apply_rlimits` and `die_with_engine` call
        // nothing but setrlimit(2), prctl(2) and getppid(2) and read errno, and the
        // closure captures plain integers.
        unsafe {
            cmd.pre_exec(move || {
                apply_rlimits(memory)?;
                die_with_engine(engine)
            });
        }

        // Forked from a thread that lives as long as the process, so the parent-death
        // signal fires when the engine dies, not when a runtime thread does.
        // From here on, dropping this future kills everything the hook started (the
        // group's guard is created with the child).
        let (child, mut group) = super::spawner::spawn_leader(cmd)
            .await
            .map_err(|e| with_duration(spawn_failure(&e, &program, self.sandbox)))?;
        let sink = Mutex::new(LogSink::new(job.max_log_bytes));
        let timeout = Duration::from_secs(job.limits.timeout_seconds.into());
        let (status, timed_out, notes) = supervise(child, &mut group, &sink, timeout).await;
        group.disarm();
        drop(home);
        let duration = started.elapsed();
        let sink = sink.into_inner().unwrap_or_else(PoisonError::into_inner);
        let classification = match status {
            Ok(status) => classify(
                Ending::from(status),
                timed_out.then_some(job.limits.timeout_seconds),
                self.sandbox,
                &sink.stderr_head,
                sink.stderr_tail(),
            ),
            Err(e) => Some(Classified {
                kind: FailureKind::Runtime,
                detail: format!("waiting for the hook process failed: {e}"),
                exit_code: None,
            }),
        };
        let log = sink.finish(&notes);
        match classification {
            None => Ok(Execution { duration, log }),
            Some(Classified {
                kind,
                detail,
                exit_code,
            }) => Err(RunFailure {
                kind,
                detail,
                exit_code,
                log,
                duration,
            }),
        }
    }
}

/// Waits for the hook to exit, or kills it at the deadline, while draining its output;
/// then kills whatever it left behind and waits for that to die. Returns the exit
/// status, whether the deadline struck, and notes for the log.
async fn supervise(
    mut child: Child,
    group: &mut ProcessGroup,
    sink: &Mutex<LogSink>,
    timeout: Duration,
) -> (io::Result<ExitStatus>, bool, Vec<String>) {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut drain = pin!(async {
        futures::join!(pump(stdout, sink, false), pump(stderr, sink, true));
    });
    let mut drained = false;
    let (status, timed_out) = {
        let mut exit = pin!(async {
            match tokio::time::timeout(timeout, child.wait()).await {
                Ok(status) => (status, false),
                Err(_) => {
                    group.kill();
                    (child.wait().await, true)
                }
            }
        });
        // Output is read while waiting: a hook blocked on a full pipe never exits.
        loop {
            tokio::select! {
                ended = &mut exit => break ended,
                () = &mut drain, if !drained => drained = true,
            }
        }
    };
    // The hook may have left background processes behind even after a clean exit.
    let survivors = group.kill_and_wait(KILL_WAIT).await;
    let mut notes = Vec::new();
    if survivors > 0 {
        notes.push(format!(
            "{survivors} process(es) of the hook were still alive {} ms after SIGKILL",
            KILL_WAIT.as_millis()
        ));
    }
    if !drained && tokio::time::timeout(DRAIN_GRACE, &mut drain).await.is_err() {
        notes.push(
            "stopped reading output: a process outside the hook's process group still \
             holds its stdout or stderr open"
                .into(),
        );
    }
    (status, timed_out, notes)
}

/// Sets the memory limit and disables core dumps. Runs between fork and exec: only
/// async-signal-safe calls, no allocation.
fn apply_rlimits(memory_bytes: u64) -> io::Result<()> {
    let memory = libc::rlimit {
        rlim_cur: memory_bytes as libc::rlim_t,
        rlim_max: memory_bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads a valid, initialised rlimit struct; it is
    // async-signal-safe.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &memory) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // An aborting hook (Rust's allocation failure) would otherwise dump a core the
    // size of its memory limit into the batch directory.
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel to SIGKILL the child when its parent, the engine, dies (a SIGKILLed
/// worker would otherwise leave its hooks running), and fails when the engine died
/// already. Runs between fork and exec: only async-signal-safe calls, no allocation.
fn die_with_engine(engine: libc::pid_t) -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number; async-signal-safe.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getppid has no arguments and cannot fail.
    if unsafe { libc::getppid() } != engine {
        // Orphaned before the call above took effect: nothing would signal us.
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// Resolves the program to an absolute path: bare names through `path_var`, absolute
/// paths as they are, relative paths refused.
fn resolve_program(program: &str, path_var: &OsStr) -> Result<PathBuf, RunFailure> {
    if program.trim().is_empty() {
        return Err(RunFailure::new(
            FailureKind::Config,
            "the release's command names no program",
        ));
    }
    let path = Path::new(program);
    if path.is_absolute() {
        if !path.exists() {
            return Err(RunFailure::new(
                FailureKind::Config,
                format!("program `{program}` does not exist"),
            ));
        }
        return Ok(path.to_path_buf());
    }
    if program.contains('/') {
        return Err(RunFailure::new(
            FailureKind::Config,
            format!(
                "program `{program}` is a relative path; use an absolute path or a bare name \
                 found in PATH"
            ),
        ));
    }
    find_in_path(program, path_var).ok_or_else(|| {
        RunFailure::new(
            FailureKind::Config,
            format!(
                "program `{program}` not found in PATH ({})",
                path_var.to_string_lossy()
            ),
        )
    })
}

/// The first executable regular file named `name` in the absolute entries of
/// `path_var`.
fn find_in_path(name: &str, path_var: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Classifies a spawn error: what the release configured cannot run (`config`), or the
/// machine failed (`runtime`).
fn spawn_failure(error: &io::Error, program: &Path, sandbox: Sandbox) -> RunFailure {
    let what = match sandbox {
        Sandbox::None => format!("program `{}`", program.display()),
        Sandbox::Bwrap => format!("the sandbox `bwrap` (for `{}`)", program.display()),
    };
    let config =
        |reason: &str| RunFailure::new(FailureKind::Config, format!("cannot run {what}: {reason}"));
    match error.kind() {
        io::ErrorKind::NotFound => config("no such file"),
        io::ErrorKind::PermissionDenied => config(&format!(
            "permission denied ({error}); is it executable, and is the memory limit within \
             the engine's own hard RLIMIT_AS?"
        )),
        _ if error.raw_os_error() == Some(libc::ENOEXEC) => {
            config("not an executable (a script needs a `#!` line)")
        }
        _ => RunFailure::new(
            FailureKind::Runtime,
            format!("spawning {what} failed: {error}"),
        ),
    }
}

/// A private `HOME` for a plain-mode hook, removed when dropped (also when the `run`
/// future is cancelled).
#[derive(Debug)]
struct PrivateHome(PathBuf);

impl PrivateHome {
    fn create() -> Result<Self, RunFailure> {
        let path = std::env::temp_dir().join(format!("osa-home-{}", uuid::Uuid::new_v4()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| {
                RunFailure::new(
                    FailureKind::Runtime,
                    format!("creating the hook's HOME {}: {e}", path.display()),
                )
            })?;
        Ok(PrivateHome(path))
    }
}

impl Drop for PrivateHome {
    fn drop(&mut self) {
        // Best effort: a leftover empty temp dir is not worth failing a run for.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The bwrap arguments before `--` for a run of `program` over `batch`, with
/// `memory_bytes` (the job's memory limit) sizing the private tmpfs mounts.
fn bwrap_args(
    batch: &BatchLayout,
    program: &Path,
    extra: &[PathBuf],
    memory_bytes: u64,
) -> Result<Vec<OsString>, RunFailure> {
    let mut args: Vec<OsString> = [
        "--unshare-all",
        // Explicit (not just `--unshare-all`'s "try"), so that nested user namespaces
        // can be disabled below.
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let mut push = |items: &[&OsStr]| args.extend(items.iter().map(|s| s.to_os_string()));
    for dir in SYSTEM_DIRS {
        let path = Path::new(dir);
        match std::fs::read_link(path) {
            // Merged-/usr systems: keep `/bin -> usr/bin` a symlink, as on the host.
            Ok(target) => push(&["--symlink".as_ref(), target.as_os_str(), path.as_os_str()]),
            Err(_) if path.is_dir() => {
                push(&["--ro-bind".as_ref(), path.as_os_str(), path.as_os_str()])
            }
            Err(_) => {}
        }
    }
    let tmp_size = OsString::from(memory_bytes.max(1).to_string());
    let shm_size = OsString::from(memory_bytes.clamp(1, SHM_MAX_BYTES).to_string());
    push(&[
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--size".as_ref(),
        &shm_size,
        "--tmpfs".as_ref(),
        "/dev/shm".as_ref(),
        // Not recursive: /dev/shm stays writable, /dev itself does not.
        "--remount-ro".as_ref(),
        "/dev".as_ref(),
        "--size".as_ref(),
        &tmp_size,
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
    ]);
    let forbidden = forbidden_binds(&batch.root);
    let refuse = |path: &Path, why: &str| {
        RunFailure::new(
            FailureKind::Config,
            format!("cannot bind {} into the sandbox: {why}", path.display()),
        )
    };
    // After the /tmp tmpfs, so that paths under /tmp stay visible.
    for path in extra {
        if !path.is_absolute() {
            return Err(refuse(path, "only absolute paths can be bound"));
        }
        if !path.exists() {
            return Err(refuse(path, "it does not exist"));
        }
        check_not_ancestor(path, &forbidden).map_err(|why| refuse(path, &why))?;
        if is_system_path(path) {
            continue;
        }
        push(&["--ro-bind".as_ref(), path.as_os_str(), path.as_os_str()]);
    }
    for path in program_files(program) {
        let as_program = |why: &str| {
            RunFailure::new(
                FailureKind::Config,
                format!(
                    "program `{}` cannot run in the sandbox: {why}",
                    program.display()
                ),
            )
        };
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            return Err(as_program(&format!(
                "{} is not a regular file (only the program file itself is bound, never a \
                 directory)",
                path.display()
            )));
        }
        check_not_ancestor(&path, &forbidden).map_err(|why| as_program(&why))?;
        if is_system_path(&path) || extra.iter().any(|dir| path.starts_with(dir)) {
            continue;
        }
        push(&["--ro-bind".as_ref(), path.as_os_str(), path.as_os_str()]);
    }
    // Last, so they win over any bind above that contains them.
    push(&[
        "--ro-bind".as_ref(),
        batch.input.as_os_str(),
        batch.input.as_os_str(),
    ]);
    push(&[
        "--ro-bind".as_ref(),
        batch.files.as_os_str(),
        batch.files.as_os_str(),
    ]);
    push(&[
        "--bind".as_ref(),
        batch.output.as_os_str(),
        batch.output.as_os_str(),
    ]);
    push(&["--remount-ro".as_ref(), "/".as_ref()]);
    push(&["--chdir".as_ref(), batch.root.as_os_str()]);
    Ok(args)
}

/// The paths no bind may cover: `/`, the batch root and `/tmp`, each as given and
/// canonicalised. Binding one of them, or an ancestor, would expose other batches or
/// hide the private `/tmp`.
fn forbidden_binds(batch_root: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for path in [Path::new("/"), batch_root, Path::new(SANDBOX_HOME)] {
        paths.push(path.to_path_buf());
        if let Ok(real) = std::fs::canonicalize(path) {
            paths.push(real);
        }
    }
    paths
}

/// Refuses `path` (as given or canonicalised) when it is one of `forbidden` or an
/// ancestor of one.
fn check_not_ancestor(path: &Path, forbidden: &[PathBuf]) -> Result<(), String> {
    let real = std::fs::canonicalize(path).ok();
    for candidate in std::iter::once(path).chain(real.as_deref()) {
        if let Some(covered) = forbidden.iter().find(|f| f.starts_with(candidate)) {
            return Err(format!(
                "it is {} or contains it; binding it would expose the host's files \
                 (bind the program file or a dedicated directory instead)",
                covered.display()
            ));
        }
    }
    Ok(())
}

/// The files to bind for `program`: the path itself and, when that is (or runs
/// through) a symlink, its canonical target.
fn program_files(program: &Path) -> Vec<PathBuf> {
    let mut files = vec![program.to_path_buf()];
    if let Ok(real) = std::fs::canonicalize(program)
        && real != program
    {
        files.push(real);
    }
    files
}

/// Whether `path` is inside one of the system directories bound anyway.
fn is_system_path(path: &Path) -> bool {
    SYSTEM_DIRS.iter().any(|dir| {
        path.starts_with(dir) || std::fs::canonicalize(dir).is_ok_and(|real| path.starts_with(real))
    })
}

/// Reads a pipe to its end into the shared sink.
async fn pump<R: AsyncRead + Unpin>(pipe: Option<R>, sink: &Mutex<LogSink>, stderr: bool) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => sink
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(&buf[..n], stderr),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Stop reading this pipe; the hook then gets EPIPE on writes, which is
                // better than spinning on a broken pipe.
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .notes
                    .push(format!("reading the hook's output failed: {e}"));
                return;
            }
        }
    }
}

/// Captured output: stdout and stderr interleaved up to a cap, plus the head and tail
/// of stderr kept apart for classification.
#[derive(Debug)]
struct LogSink {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
    stderr_head: Vec<u8>,
    stderr_tail: Vec<u8>,
    notes: Vec<String>,
}

impl LogSink {
    fn new(cap: usize) -> Self {
        LogSink {
            bytes: Vec::new(),
            cap,
            truncated: false,
            stderr_head: Vec::new(),
            stderr_tail: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn push(&mut self, chunk: &[u8], stderr: bool) {
        let room = self.cap.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        if stderr {
            let head_room = STDERR_HEAD.saturating_sub(self.stderr_head.len());
            self.stderr_head
                .extend_from_slice(&chunk[..chunk.len().min(head_room)]);
            self.stderr_tail.extend_from_slice(chunk);
            // Trim in bulk (amortised) rather than on every chunk.
            if self.stderr_tail.len() > 2 * STDERR_TAIL {
                let excess = self.stderr_tail.len() - STDERR_TAIL;
                self.stderr_tail.drain(..excess);
            }
        }
    }

    fn stderr_tail(&self) -> &[u8] {
        let len = self.stderr_tail.len();
        &self.stderr_tail[len.saturating_sub(STDERR_TAIL)..]
    }

    /// The captured log, with the runner's own notes appended (marked `[osa]`).
    fn finish(mut self, notes: &[String]) -> CapturedLog {
        for note in self.notes.iter().chain(notes) {
            self.bytes
                .extend_from_slice(format!("\n[osa] {note}\n").as_bytes());
        }
        CapturedLog {
            bytes: self.bytes,
            truncated: self.truncated,
        }
    }
}

/// How the hook's top process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exited(i32),
    Signaled(i32),
}

impl From<ExitStatus> for Ending {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(signal)) => Ending::Signaled(signal),
            // Stopped/continued statuses are never returned by wait(); treat as a crash.
            (None, None) => Ending::Signaled(0),
        }
    }
}

/// A classified failure (shared with the OCI runner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified {
    pub(crate) kind: FailureKind,
    pub(crate) detail: String,
    pub(crate) exit_code: Option<i32>,
}

/// Classifies an ending (see the module docs); `None` is success.
fn classify(
    ending: Ending,
    timed_out_after: Option<u32>,
    sandbox: Sandbox,
    stderr_head: &[u8],
    stderr_tail: &[u8],
) -> Option<Classified> {
    let exit_code = match ending {
        Ending::Exited(code) => Some(code),
        Ending::Signaled(_) => None,
    };
    let failure = |kind, detail: String| {
        Some(Classified {
            kind,
            detail,
            exit_code,
        })
    };
    if let Some(seconds) = timed_out_after {
        return failure(
            FailureKind::Timeout,
            format!(
                "the hook ran past its wall-clock limit of {seconds} s; its processes were killed"
            ),
        );
    }
    let how = match ending {
        Ending::Exited(0) => return None,
        Ending::Exited(code) => format!("the hook exited with code {code}"),
        Ending::Signaled(signal) => format!("the hook was killed by {}", signal_name(signal)),
    };
    if sandbox == Sandbox::Bwrap
        && ending == Ending::Exited(1)
        && let Some(message) = stderr_head.strip_prefix(b"bwrap: ")
    {
        // bwrap reports its own setup errors this way, before the hook ever runs.
        let message = String::from_utf8_lossy(message);
        let message = message.lines().next().unwrap_or_default();
        let kind = if message.starts_with("execvp") {
            FailureKind::Config
        } else {
            FailureKind::Runtime
        };
        return failure(
            kind,
            format!("the bwrap sandbox could not start the hook: {message}"),
        );
    }
    let signal = match ending {
        Ending::Signaled(signal) => Some(signal),
        Ending::Exited(code @ 129..=192) => Some(code - 128),
        Ending::Exited(_) => None,
    };
    Some(classify_death(
        how,
        signal == Some(libc::SIGKILL),
        stderr_tail,
        exit_code,
    ))
}

/// The last step of classifying a hook that ended non-zero (`how` says how), shared by
/// the runners: a SIGKILL the runner did not send, or an allocation failure reported
/// in the last lines of stderr ([`OOM_MARKERS`]), is an OOM; anything else is a hook
/// exit.
pub(crate) fn classify_death(
    how: String,
    killed_by_sigkill: bool,
    stderr_tail: &[u8],
    exit_code: Option<i32>,
) -> Classified {
    let failure = |kind, detail: String| Classified {
        kind,
        detail,
        exit_code,
    };
    if killed_by_sigkill {
        return failure(
            FailureKind::Oom,
            format!(
                "{how}, which the runner did not send; the kernel OOM killer ends processes \
                 this way"
            ),
        );
    }
    let tail = String::from_utf8_lossy(stderr_tail).to_ascii_lowercase();
    if let Some(marker) = OOM_MARKERS
        .iter()
        .find(|m| tail.contains(&m.to_ascii_lowercase()))
    {
        return failure(
            FailureKind::Oom,
            format!("{how} after reporting an allocation failure (`{marker}` in stderr)"),
        );
    }
    failure(FailureKind::HookExit, how)
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {signal}"),
    };
    format!("signal {signal} ({name})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ending: Ending, stderr: &str) -> FailureKind {
        classify(
            ending,
            None,
            Sandbox::None,
            stderr.as_bytes(),
            stderr.as_bytes(),
        )
        .map_or_else(|| panic!("{ending:?} should fail"), |c| c.kind)
    }

    #[test]
    fn success_and_timeout() {
        assert_eq!(
            classify(Ending::Exited(0), None, Sandbox::None, b"", b""),
            None
        );
        let timed_out = classify(
            Ending::Signaled(libc::SIGKILL),
            Some(2),
            Sandbox::None,
            b"",
            b"",
        )
        .unwrap();
        assert_eq!(timed_out.kind, FailureKind::Timeout);
        assert!(timed_out.detail.contains("2 s"), "{}", timed_out.detail);
        // Our own timeout kill wins over everything, even a clean exit at the deadline.
        assert_eq!(
            classify(Ending::Exited(0), Some(1), Sandbox::None, b"", b"")
                .unwrap()
                .kind,
            FailureKind::Timeout
        );
    }

    #[test]
    fn oom_heuristic() {
        let python =
            "Traceback (most recent call last):\n  File \"hook.py\", line 3\nMemoryError\n";
        assert_eq!(kind(Ending::Exited(1), python), FailureKind::Oom);
        let rust = "memory allocation of 83886080 bytes failed\n";
        assert_eq!(
            kind(Ending::Signaled(libc::SIGABRT), rust),
            FailureKind::Oom
        );
        // bwrap and shells report a signalled child as 128 + signal.
        assert_eq!(kind(Ending::Exited(134), rust), FailureKind::Oom);
        assert_eq!(kind(Ending::Signaled(libc::SIGKILL), ""), FailureKind::Oom);
        assert_eq!(kind(Ending::Exited(137), ""), FailureKind::Oom);
        assert_eq!(
            kind(Ending::Exited(2), "fatal error: runtime: Out Of Memory"),
            FailureKind::Oom
        );
        // Without a marker, an abort or a crash is the hook's own failure.
        assert_eq!(
            kind(Ending::Signaled(libc::SIGABRT), "panicked at x"),
            FailureKind::HookExit
        );
        assert_eq!(
            kind(Ending::Signaled(libc::SIGSEGV), ""),
            FailureKind::HookExit
        );
        assert_eq!(
            kind(Ending::Exited(3), "ValueError: bad\n"),
            FailureKind::HookExit
        );
    }

    #[test]
    fn exit_code_and_detail() {
        let c = classify(Ending::Exited(3), None, Sandbox::None, b"", b"").unwrap();
        assert_eq!(c.exit_code, Some(3));
        assert_eq!(c.detail, "the hook exited with code 3");
        let c = classify(
            Ending::Signaled(libc::SIGSEGV),
            None,
            Sandbox::None,
            b"",
            b"",
        )
        .unwrap();
        assert_eq!(c.exit_code, None);
        assert_eq!(c.detail, "the hook was killed by signal 11 (SIGSEGV)");
    }

    #[test]
    fn bwrap_setup_errors() {
        let c = classify(
            Ending::Exited(1),
            None,
            Sandbox::Bwrap,
            b"bwrap: Can't mount proc on /newroot/proc: Operation not permitted\n",
            b"",
        )
        .unwrap();
        assert_eq!(c.kind, FailureKind::Runtime);
        assert!(c.detail.contains("Can't mount proc"), "{}", c.detail);
        let c = classify(
            Ending::Exited(1),
            None,
            Sandbox::Bwrap,
            b"bwrap: execvp /opt/x: No such file or directory\n",
            b"",
        )
        .unwrap();
        assert_eq!(c.kind, FailureKind::Config);
        // In plain mode the same text is just the hook's output.
        let c = classify(Ending::Exited(1), None, Sandbox::None, b"bwrap: x\n", b"").unwrap();
        assert_eq!(c.kind, FailureKind::HookExit);
    }

    #[test]
    fn log_sink_caps_and_keeps_stderr_tail() {
        let mut sink = LogSink::new(10);
        sink.push(b"0123456", false);
        sink.push(b"789abcdef", true);
        for _ in 0..3000 {
            sink.push(b"noise ", true);
        }
        sink.push(b"MemoryError\n", true);
        assert!(sink.truncated);
        assert_eq!(sink.bytes, b"0123456789");
        assert_eq!(&sink.stderr_head[..9], b"789abcdef");
        assert!(sink.stderr_tail().len() <= STDERR_TAIL);
        assert!(sink.stderr_tail().ends_with(b"MemoryError\n"));
        let log = sink.finish(&["note".into()]);
        assert!(log.truncated);
        assert!(log.bytes.ends_with(b"[osa] note\n"));
    }

    #[test]
    fn program_resolution() {
        let path: OsString = "relative:/usr/bin:/bin".into();
        assert!(resolve_program("sh", &path).unwrap().is_absolute());
        let err = resolve_program("./hook.py", &path).unwrap_err();
        assert_eq!(err.kind, FailureKind::Config);
        assert!(err.detail.contains("relative path"), "{}", err.detail);
        let err = resolve_program("osa-no-such-program", &path).unwrap_err();
        assert_eq!(err.kind, FailureKind::Config);
        assert!(
            err.detail.contains("`osa-no-such-program` not found"),
            "{}",
            err.detail
        );
        assert_eq!(
            resolve_program("/bin/sh", &path).unwrap(),
            PathBuf::from("/bin/sh")
        );
        let err = resolve_program("/opt/osa/none", &path).unwrap_err();
        assert_eq!(err.detail, "program `/opt/osa/none` does not exist");
    }

    #[test]
    fn bwrap_arguments() {
        let batch = BatchLayout::at("/tmp/osa-batch");
        let args = bwrap_args(&batch, Path::new("/usr/bin/true"), &[], 64 << 20).unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        for expected in [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop ALL",
            "--proc /proc",
            "--dev /dev",
            "--size 67108864 --tmpfs /dev/shm",
            "--remount-ro /dev",
            "--size 67108864 --tmpfs /tmp",
            "--ro-bind /tmp/osa-batch/in /tmp/osa-batch/in",
            "--ro-bind /tmp/osa-batch/files /tmp/osa-batch/files",
            "--bind /tmp/osa-batch/out /tmp/osa-batch/out",
            "--remount-ro /",
            "--chdir /tmp/osa-batch",
        ] {
            assert!(
                joined.contains(expected),
                "missing `{expected}` in {joined}"
            );
        }
        // A system program needs no extra bind; the batch binds come after /tmp.
        assert!(!joined.contains("--ro-bind /usr/bin /usr/bin"), "{joined}");
        let tmpfs = joined.find("--tmpfs /tmp").unwrap();
        assert!(joined.find("/tmp/osa-batch/in").unwrap() > tmpfs);
        // /dev/shm is capped below a large memory limit.
        let large = bwrap_args(&batch, Path::new("/usr/bin/true"), &[], 4 << 30).unwrap();
        let large: Vec<String> = large
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let large = large.join(" ");
        assert!(
            large.contains("--size 67108864 --tmpfs /dev/shm"),
            "{large}"
        );
        assert!(large.contains("--size 4294967296 --tmpfs /tmp"), "{large}");
        let err = bwrap_args(
            &batch,
            Path::new("/usr/bin/true"),
            &["/osa/no/such".into()],
            64 << 20,
        )
        .unwrap_err();
        assert_eq!(err.kind, FailureKind::Config);
    }

    #[test]
    fn bwrap_binds_the_program_file_not_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real-hook");
        std::fs::write(&real, "#!/bin/sh\n").unwrap();
        let link = dir.path().join("hook");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let batch = BatchLayout::at("/srv/osa-batch");
        let args = bwrap_args(&batch, &link, &[], 64 << 20).unwrap();
        let dir = dir.path().canonicalize().unwrap();
        let real = real.canonicalize().unwrap();
        let bound: Vec<&OsString> = args
            .windows(3)
            .filter(|w| w[0] == "--ro-bind")
            .map(|w| &w[1])
            .collect();
        assert!(bound.contains(&&link.clone().into_os_string()), "{args:?}");
        assert!(bound.contains(&&real.into_os_string()), "{args:?}");
        assert!(
            !bound
                .iter()
                .any(|b| Path::new(b) == dir || Path::new(b) == link.parent().unwrap()),
            "{args:?}"
        );
    }

    #[test]
    fn bwrap_refuses_binds_that_expose_the_host() {
        let scratch = tempfile::tempdir().unwrap();
        let batch = BatchLayout::at(scratch.path().join("batch"));
        std::fs::create_dir_all(&batch.root).unwrap();
        // A directory is no program: binding it would expose the whole tree.
        let err = bwrap_args(&batch, Path::new("/"), &[], 64 << 20).unwrap_err();
        assert_eq!(err.kind, FailureKind::Config);
        assert!(err.detail.contains("not a regular file"), "{}", err.detail);
        for path in [
            PathBuf::from("/"),
            PathBuf::from("/tmp"),
            scratch.path().to_path_buf(),
            batch.root.clone(),
        ] {
            let err = bwrap_args(
                &batch,
                Path::new("/usr/bin/true"),
                std::slice::from_ref(&path),
                64 << 20,
            )
            .unwrap_err();
            assert_eq!(err.kind, FailureKind::Config, "{}", path.display());
            assert!(
                err.detail.contains("would expose the host's files"),
                "{}",
                err.detail
            );
        }
        // A sibling directory of the batch is fine.
        let hooks = scratch.path().join("hooks");
        std::fs::create_dir(&hooks).unwrap();
        bwrap_args(&batch, Path::new("/usr/bin/true"), &[hooks], 64 << 20).unwrap();
    }
}

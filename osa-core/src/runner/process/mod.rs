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

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

mod sandbox;

pub use super::exit::OOM_MARKERS;
pub use sandbox::Sandbox;

use super::exit::{self, Classified, Ending, Facts, Limit, SignalCodes};
use super::group::ProcessGroup;
use super::log::LogBuffer;
use super::{Execution, FailureKind, HookRunner, RunFailure, RunJob};
use crate::contract::{ENV_FILES, ENV_HOOK_NAME, ENV_IN, ENV_OUT};
use crate::runtime::RuntimeConfig;
use sandbox::{SANDBOX_HOME, STDERR_HEAD};

/// `PATH` for hooks when the engine itself has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// How long `run` waits for killed processes to die before reporting them.
const KILL_WAIT: Duration = Duration::from_secs(1);
/// How long output is still read after the hook's processes are gone; only a process
/// that escaped the process group can keep the pipes open longer.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

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
        sandbox::bwrap_command(
            &job.batch,
            job.limits.memory.bytes(),
            program,
            args,
            &self.read_only,
            path_var,
        )
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
        let sink = Mutex::new(LogBuffer::new(job.max_log_bytes).with_stderr_head(STDERR_HEAD));
        let timeout = Duration::from_secs(job.limits.timeout_seconds.into());
        let (status, timed_out, notes) = supervise(child, &mut group, &sink, timeout).await;
        group.disarm();
        drop(home);
        let duration = started.elapsed();
        let mut sink = sink.into_inner().unwrap_or_else(PoisonError::into_inner);
        let classification = match status {
            Ok(status) => classify(
                Ending::from(status),
                timed_out.then_some(job.limits.timeout_seconds),
                self.sandbox,
                sink.stderr_head(),
                sink.stderr_tail(),
            ),
            Err(e) => Some(Classified {
                kind: FailureKind::Runtime,
                detail: format!("waiting for the hook process failed: {e}"),
                exit_code: None,
            }),
        };
        sink.add_notes(notes);
        exit::outcome(classification, sink.finish(), duration)
    }
}

/// Waits for the hook to exit, or kills it at the deadline, while draining its output;
/// then kills whatever it left behind and waits for that to die. Returns the exit
/// status, whether the deadline struck, and notes for the log.
async fn supervise(
    mut child: Child,
    group: &mut ProcessGroup,
    sink: &Mutex<LogBuffer>,
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

/// Reads a pipe to its end into the shared sink.
async fn pump<R: AsyncRead + Unpin>(pipe: Option<R>, sink: &Mutex<LogBuffer>, stderr: bool) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                // Past the cap the output is still read (and dropped): a hook blocked on
                // a full pipe never exits.
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(&buf[..n], stderr);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Stop reading this pipe; the hook then gets EPIPE on writes, which is
                // better than spinning on a broken pipe.
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .note(format!("reading the hook's output failed: {e}"));
                return;
            }
        }
    }
}

/// Classifies an ending (see the module docs); `None` is success. `timed_out_after` is
/// the wall-clock limit when it struck; the stderr head and tail come from the log.
fn classify(
    ending: Ending,
    timed_out_after: Option<u32>,
    sandbox: Sandbox,
    stderr_head: &[u8],
    stderr_tail: &[u8],
) -> Option<Classified> {
    if timed_out_after.is_none()
        && sandbox == Sandbox::Bwrap
        && let Some(setup) = sandbox::setup_failure(ending, stderr_head)
    {
        return Some(setup);
    }
    exit::classify(&Facts {
        ending: Some(ending),
        limit: timed_out_after.map(|seconds| {
            Limit::Timeout(format!(
                "the hook ran past its wall-clock limit of {seconds} s; its processes were killed"
            ))
        }),
        stderr_tail,
        // A signalled hook is reported as such; a code above 128 is what the hook (or
        // its shell, or bwrap) said.
        signal_codes: SignalCodes::AsExit,
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

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
}

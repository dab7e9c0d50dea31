//! The bubblewrap side of the process runner: the [`Sandbox`] modes and the check that
//! bwrap works here, the bwrap command line around a hook (namespaces, the read-only
//! binds and the tmpfs sizes), the binds it refuses, and the recognition of bwrap's own
//! setup errors in the hook's stderr. What each mode isolates is described in the
//! [process runner's docs](super).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::{DEFAULT_PATH, find_in_path};
use crate::contract::BatchLayout;
use crate::runner::exit::{Classified, Ending};
use crate::runner::{FailureKind, RunFailure};

/// System directories bound read-only into the bwrap sandbox.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"];
/// `HOME` inside the bwrap sandbox: its private tmpfs.
pub(super) const SANDBOX_HOME: &str = "/tmp";
/// The largest size of the sandbox's `/dev/shm` tmpfs (smaller when the memory limit
/// is).
const SHM_MAX_BYTES: u64 = 64 << 20;
/// How much of the stderr head is kept to recognise bwrap's own errors.
pub(super) const STDERR_HEAD: usize = 512;

/// How the process runner confines a hook. See the [process runner's docs](super) for
/// exactly what each mode isolates.
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

/// The command that runs `program` with `args` over `batch` inside bwrap, with
/// `memory_bytes` (the job's memory limit) sizing the private tmpfs mounts and
/// `read_only` the extra paths to bind.
pub(super) fn bwrap_command(
    batch: &BatchLayout,
    memory_bytes: u64,
    program: &Path,
    args: &[String],
    read_only: &[PathBuf],
    path_var: &OsStr,
) -> Result<Command, RunFailure> {
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
    cmd.args(bwrap_args(batch, program, read_only, memory_bytes)?)
        .arg("--")
        .arg(env)
        .args(["-u", "PWD", "--"])
        .arg(program)
        .args(args);
    Ok(cmd)
}

/// bwrap's own report that it could not set the sandbox up (it exits 1 and says
/// `bwrap: …` on stderr before the hook ever runs): `config` when the program cannot
/// be executed, `runtime` otherwise. `None` when the hook's stderr starts otherwise.
pub(super) fn setup_failure(ending: Ending, stderr_head: &[u8]) -> Option<Classified> {
    if ending != Ending::Exited(1) {
        return None;
    }
    let message = stderr_head.strip_prefix(b"bwrap: ")?;
    let message = String::from_utf8_lossy(message);
    let message = message.lines().next().unwrap_or_default();
    let kind = if message.starts_with("execvp") {
        FailureKind::Config
    } else {
        FailureKind::Runtime
    };
    Some(Classified {
        kind,
        detail: format!("the bwrap sandbox could not start the hook: {message}"),
        exit_code: ending.exit_code(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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

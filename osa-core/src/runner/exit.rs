//! How an execution ended, classified into what a runner reports: an [`Execution`]
//! (the hook exited 0) or a [`RunFailure`] with its [`FailureKind`], a detail and the
//! exit code. The same for every runner.
//!
//! A runner gathers the [`Facts`]: how the hook's top process ended ([`Ending`]),
//! whether a limit ended the execution first ([`Limit`]: the runner's own kill at the
//! wall-clock limit, or a kill for memory its engine reports), and the last bytes of
//! stderr. They are classified in this order:
//!
//! 1. a limit that struck is the failure (`timeout` or `oom`), whatever the exit;
//! 2. exit code 0 is success;
//! 3. a death by SIGKILL is `oom`: the runner only sends SIGKILL when a limit strikes
//!    (step 1), and the kernel OOM killer and cgroup memory limits end a process this
//!    way;
//! 4. a non-zero exit or a death by another signal after an allocation-failure marker
//!    ([`OOM_MARKERS`], matched case-insensitively) in the stderr tail is `oom`;
//! 5. anything else is `hook_exit`.
//!
//! Exit codes 129..=192 are read as "killed by signal code−128", because shells,
//! bwrap and container engines report a signalled child that way (so `exit 137` counts
//! as SIGKILL). Runners word such a code differently in the detail ([`SignalCodes`]).
//! Classifications that only one runner can make (bwrap's own setup errors, say) are
//! that runner's, before it asks for this one.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use super::{CapturedLog, Execution, FailureKind, RunFailure};

/// Markers of an allocation failure in a hook's stderr: a hook that fails after
/// printing one of them (case-insensitively) in the last lines of its stderr is
/// classified [`FailureKind::Oom`].
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

/// How the hook's top process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// It exited with this code (container engines report codes as 64-bit numbers).
    Exited(i64),
    /// This signal killed it (only a local process reports that directly).
    Signaled(i32),
}

impl Ending {
    /// The exit code, when it exited with one that fits the report.
    pub(crate) fn exit_code(self) -> Option<i32> {
        match self {
            Ending::Exited(code) => i32::try_from(code).ok(),
            Ending::Signaled(_) => None,
        }
    }

    /// The signal that killed it: the signal itself, or an exit code 129..=192 read as
    /// `128 + signal`.
    pub(crate) fn signal(self) -> Option<i32> {
        match self {
            Ending::Signaled(signal) => Some(signal),
            Ending::Exited(code @ 129..=192) => i32::try_from(code - 128).ok(),
            Ending::Exited(_) => None,
        }
    }
}

impl From<ExitStatus> for Ending {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exited(code.into()),
            (None, Some(signal)) => Ending::Signaled(signal),
            // Stopped/continued statuses are never returned by wait(); treat as a crash.
            (None, None) => Ending::Signaled(0),
        }
    }
}

/// A limit that ended the execution, with the failure's detail (the runner words it:
/// what it stopped, and where).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Limit {
    /// The runner killed the execution at its wall-clock limit.
    Timeout(String),
    /// The engine killed the hook for exceeding its memory limit (reported by the
    /// OCI runner only).
    #[cfg_attr(not(feature = "oci"), allow(dead_code))]
    Memory(String),
}

/// How a failure's detail words an exit code 129..=192, which is read as a death by
/// signal either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignalCodes {
    /// As the exit code it is: "the hook exited with code 137". For a local process,
    /// which reports a death by signal as such, so that such a code is the hook's own
    /// (or its shell's, or bwrap's) report.
    AsExit,
    /// As the signal it stands for: "the hook was killed by signal 9 (exit code 137)".
    /// For container engines, which report every death by signal this way.
    AsSignal,
}

/// What a runner learnt about how an execution ended.
#[derive(Debug, Clone)]
pub(crate) struct Facts<'a> {
    /// How the hook's top process ended; `None` when the runner never learnt it (a
    /// limit struck before).
    pub(crate) ending: Option<Ending>,
    /// The limit that ended the execution, if one did.
    pub(crate) limit: Option<Limit>,
    /// The last bytes of the hook's stderr.
    pub(crate) stderr_tail: &'a [u8],
    /// How exit codes that stand for a signal are worded.
    pub(crate) signal_codes: SignalCodes,
}

/// A classified failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified {
    pub(crate) kind: FailureKind,
    pub(crate) detail: String,
    pub(crate) exit_code: Option<i32>,
}

impl Classified {
    /// The failure, with the execution's log and duration.
    pub(crate) fn into_failure(self, log: CapturedLog, duration: Duration) -> RunFailure {
        RunFailure {
            kind: self.kind,
            detail: self.detail,
            exit_code: self.exit_code,
            log,
            duration,
        }
    }
}

/// Classifies how an execution ended (see the [module docs](self)); `None` is success.
pub(crate) fn classify(facts: &Facts<'_>) -> Option<Classified> {
    let exit_code = facts.ending.and_then(Ending::exit_code);
    let failure = |kind, detail: String| Classified {
        kind,
        detail,
        exit_code,
    };
    match &facts.limit {
        Some(Limit::Timeout(detail)) => return Some(failure(FailureKind::Timeout, detail.clone())),
        Some(Limit::Memory(detail)) => return Some(failure(FailureKind::Oom, detail.clone())),
        None => {}
    }
    let ending = facts.ending?;
    let how = match (ending, ending.signal()) {
        (Ending::Exited(0), _) => return None,
        (Ending::Signaled(signal), _) => {
            format!("the hook was killed by {}", signal_name(signal))
        }
        (Ending::Exited(code), Some(signal)) if facts.signal_codes == SignalCodes::AsSignal => {
            format!("the hook was killed by signal {signal} (exit code {code})")
        }
        (Ending::Exited(code), _) => format!("the hook exited with code {code}"),
    };
    if ending.signal() == Some(libc::SIGKILL) {
        return Some(failure(
            FailureKind::Oom,
            format!(
                "{how}, which the runner did not send; the kernel OOM killer ends processes \
                 this way"
            ),
        ));
    }
    let tail = String::from_utf8_lossy(facts.stderr_tail).to_ascii_lowercase();
    if let Some(marker) = OOM_MARKERS
        .iter()
        .find(|m| tail.contains(&m.to_ascii_lowercase()))
    {
        return Some(failure(
            FailureKind::Oom,
            format!("{how} after reporting an allocation failure (`{marker}` in stderr)"),
        ));
    }
    Some(failure(FailureKind::HookExit, how))
}

/// What a runner returns: the execution, or the classified failure, with the log and
/// duration either way.
pub(crate) fn outcome(
    classified: Option<Classified>,
    log: CapturedLog,
    duration: Duration,
) -> Result<Execution, RunFailure> {
    match classified {
        None => Ok(Execution { duration, log }),
        Some(classified) => Err(classified.into_failure(log, duration)),
    }
}

/// `signal 11 (SIGSEGV)`, or `signal N` for a signal without a well-known name.
pub(crate) fn signal_name(signal: i32) -> String {
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

    use Ending::{Exited, Signaled};
    use FailureKind::{HookExit, Oom, Timeout};
    use SignalCodes::{AsExit, AsSignal};

    /// Facts without a limit.
    fn ended(ending: Ending, stderr_tail: &str, signal_codes: SignalCodes) -> Facts<'_> {
        Facts {
            ending: Some(ending),
            limit: None,
            stderr_tail: stderr_tail.as_bytes(),
            signal_codes,
        }
    }

    const SIGKILL_DETAIL: &str =
        ", which the runner did not send; the kernel OOM killer ends processes this way";

    #[test]
    fn how_an_ending_is_classified() {
        let python = "Traceback (most recent call last):\n  File \"hook.py\"\nMemoryError\n";
        let rust = "memory allocation of 83886080 bytes failed\n";
        // (facts, kind (None: success), exit code, detail)
        let cases: Vec<(Facts<'_>, Option<FailureKind>, Option<i32>, String)> = vec![
            (ended(Exited(0), "", AsExit), None, None, String::new()),
            // A marker does not turn a success into a failure.
            (
                ended(Exited(0), python, AsSignal),
                None,
                None,
                String::new(),
            ),
            (
                ended(Exited(3), "ValueError: bad\n", AsExit),
                Some(HookExit),
                Some(3),
                "the hook exited with code 3".into(),
            ),
            (
                ended(Exited(3), "", AsSignal),
                Some(HookExit),
                Some(3),
                "the hook exited with code 3".into(),
            ),
            (
                ended(Exited(-1), "", AsSignal),
                Some(HookExit),
                Some(-1),
                "the hook exited with code -1".into(),
            ),
            (
                ended(Exited(1), python, AsExit),
                Some(Oom),
                Some(1),
                "the hook exited with code 1 after reporting an allocation failure \
                 (`MemoryError` in stderr)"
                    .into(),
            ),
            (
                ended(Exited(2), "fatal error: runtime: Out Of Memory", AsExit),
                Some(Oom),
                Some(2),
                "the hook exited with code 2 after reporting an allocation failure \
                 (`out of memory` in stderr)"
                    .into(),
            ),
            // SIGKILL, directly or as 128 + 9, with or without a marker.
            (
                ended(Signaled(libc::SIGKILL), "", AsExit),
                Some(Oom),
                None,
                format!("the hook was killed by signal 9 (SIGKILL){SIGKILL_DETAIL}"),
            ),
            (
                ended(Signaled(libc::SIGKILL), python, AsExit),
                Some(Oom),
                None,
                format!("the hook was killed by signal 9 (SIGKILL){SIGKILL_DETAIL}"),
            ),
            (
                ended(Exited(137), "", AsExit),
                Some(Oom),
                Some(137),
                format!("the hook exited with code 137{SIGKILL_DETAIL}"),
            ),
            (
                ended(Exited(137), "", AsSignal),
                Some(Oom),
                Some(137),
                format!("the hook was killed by signal 9 (exit code 137){SIGKILL_DETAIL}"),
            ),
            // Another signal is an OOM only after a marker.
            (
                ended(Signaled(libc::SIGABRT), rust, AsExit),
                Some(Oom),
                None,
                "the hook was killed by signal 6 (SIGABRT) after reporting an allocation \
                 failure (`memory allocation of` in stderr)"
                    .into(),
            ),
            (
                ended(Exited(134), rust, AsExit),
                Some(Oom),
                Some(134),
                "the hook exited with code 134 after reporting an allocation failure \
                 (`memory allocation of` in stderr)"
                    .into(),
            ),
            (
                ended(
                    Exited(134),
                    "terminate called after std::BAD_ALLOC",
                    AsSignal,
                ),
                Some(Oom),
                Some(134),
                "the hook was killed by signal 6 (exit code 134) after reporting an \
                 allocation failure (`std::bad_alloc` in stderr)"
                    .into(),
            ),
            (
                ended(Signaled(libc::SIGABRT), "panicked at x", AsExit),
                Some(HookExit),
                None,
                "the hook was killed by signal 6 (SIGABRT)".into(),
            ),
            (
                ended(Signaled(libc::SIGSEGV), "", AsSignal),
                Some(HookExit),
                None,
                "the hook was killed by signal 11 (SIGSEGV)".into(),
            ),
            (
                ended(Signaled(64), "", AsExit),
                Some(HookExit),
                None,
                "the hook was killed by signal 64".into(),
            ),
            (
                ended(Exited(139), "", AsSignal),
                Some(HookExit),
                Some(139),
                "the hook was killed by signal 11 (exit code 139)".into(),
            ),
            (
                ended(Exited(139), "", AsExit),
                Some(HookExit),
                Some(139),
                "the hook exited with code 139".into(),
            ),
            // The signal range ends at 128 + 64.
            (
                ended(Exited(129), "", AsSignal),
                Some(HookExit),
                Some(129),
                "the hook was killed by signal 1 (exit code 129)".into(),
            ),
            (
                ended(Exited(128), "", AsSignal),
                Some(HookExit),
                Some(128),
                "the hook exited with code 128".into(),
            ),
            (
                ended(Exited(192), "", AsSignal),
                Some(HookExit),
                Some(192),
                "the hook was killed by signal 64 (exit code 192)".into(),
            ),
            (
                ended(Exited(193), "", AsSignal),
                Some(HookExit),
                Some(193),
                "the hook exited with code 193".into(),
            ),
            // A code too large for the report is still described.
            (
                ended(Exited(1 << 32), "", AsSignal),
                Some(HookExit),
                None,
                "the hook exited with code 4294967296".into(),
            ),
        ];
        for (facts, kind, exit_code, detail) in cases {
            let got = classify(&facts);
            let context = format!("{facts:?} -> {got:?}");
            assert_eq!(got.as_ref().map(|c| c.kind), kind, "{context}");
            if let Some(got) = got {
                assert_eq!(got.exit_code, exit_code, "{context}");
                assert_eq!(got.detail, detail, "{context}");
            }
        }
    }

    #[test]
    fn a_limit_wins_over_the_ending() {
        let limited = |ending: Option<Ending>, limit: Limit| Facts {
            ending,
            limit: Some(limit),
            stderr_tail: b"MemoryError",
            signal_codes: AsSignal,
        };
        let timeout = || Limit::Timeout("ran past 2 s".into());
        let memory = || Limit::Memory("OOMKilled".into());
        // (facts, kind, exit code, detail)
        let cases = [
            // The runner's own kill at the deadline is no OOM.
            (
                limited(Some(Signaled(libc::SIGKILL)), timeout()),
                Timeout,
                None,
                "ran past 2 s",
            ),
            (
                limited(Some(Exited(137)), timeout()),
                Timeout,
                Some(137),
                "ran past 2 s",
            ),
            // Even a clean exit at the deadline.
            (
                limited(Some(Exited(0)), timeout()),
                Timeout,
                Some(0),
                "ran past 2 s",
            ),
            (limited(None, timeout()), Timeout, None, "ran past 2 s"),
            // The engine's memory kill wins even over a clean-looking exit code.
            (
                limited(Some(Exited(0)), memory()),
                Oom,
                Some(0),
                "OOMKilled",
            ),
            (
                limited(Some(Exited(137)), memory()),
                Oom,
                Some(137),
                "OOMKilled",
            ),
            (
                limited(Some(Exited(3)), memory()),
                Oom,
                Some(3),
                "OOMKilled",
            ),
        ];
        for (facts, kind, exit_code, detail) in cases {
            let got = classify(&facts).unwrap_or_else(|| panic!("{facts:?} should fail"));
            assert_eq!(
                got,
                Classified {
                    kind,
                    detail: detail.into(),
                    exit_code
                },
                "{facts:?}"
            );
        }
        // No limit and no ending: nothing failed.
        let unknown = Facts {
            ending: None,
            limit: None,
            stderr_tail: b"",
            signal_codes: AsExit,
        };
        assert_eq!(classify(&unknown), None);
    }

    #[test]
    fn endings_of_exit_statuses() {
        let status = |raw: i32| Ending::from(ExitStatus::from_raw(raw));
        // wait(2) statuses: the code in the second byte, or the signal in the first.
        assert_eq!(status(0), Exited(0));
        assert_eq!(status(3 << 8), Exited(3));
        assert_eq!(status(137 << 8), Exited(137));
        assert_eq!(status(libc::SIGKILL), Signaled(libc::SIGKILL));
        assert_eq!(status(libc::SIGSEGV | 0x80), Signaled(libc::SIGSEGV));
        assert_eq!(Exited(137).signal(), Some(libc::SIGKILL));
        assert_eq!(Exited(9).signal(), None);
        assert_eq!(Signaled(libc::SIGABRT).exit_code(), None);
    }

    #[test]
    fn outcomes_carry_the_log_and_duration() {
        let log = CapturedLog {
            bytes: b"out".to_vec(),
            truncated: true,
        };
        let duration = Duration::from_millis(7);
        let execution = outcome(None, log.clone(), duration).unwrap();
        assert_eq!((execution.log, execution.duration), (log.clone(), duration));
        let failure = outcome(
            Some(Classified {
                kind: HookExit,
                detail: "the hook exited with code 3".into(),
                exit_code: Some(3),
            }),
            log.clone(),
            duration,
        )
        .unwrap_err();
        assert_eq!(failure.kind, HookExit);
        assert_eq!(failure.detail, "the hook exited with code 3");
        assert_eq!(failure.exit_code, Some(3));
        assert_eq!((failure.log, failure.duration), (log, duration));
    }
}

//! The failure policy: one pure function from facts to decisions, and
//! [`execute_with_policy`], which applies it to any runner (OOM retries).

mod execute;

use serde::{Deserialize, Serialize};

pub use execute::{StepExecution, execute_with_policy, execute_with_policy_after};

use crate::runner::{FailureKind, RunFailure};
use crate::runtime::MemorySize;

/// What happened before the failure being decided on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorAttempts {
    /// Memory doublings already performed for this step.
    pub memory_bumps: u32,
    /// Plain retries (timeout / runtime) already performed for this step.
    pub retries: u32,
}

/// What to do about a failed execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decision {
    /// The environment is broken (missing image, bad config): abort the whole run.
    AbortRun {
        /// Why.
        reason: String,
        /// The failure kind that caused it.
        kind: FailureKind,
    },
    /// Retry the step later, with backoff.
    Retry {
        /// Why.
        reason: String,
    },
    /// Rerun the records without an outcome with doubled memory.
    RetryWithMoreMemory {
        /// The memory limit of the next attempt.
        memory: MemorySize,
    },
    /// Stop: records without an outcome become errors.
    GiveUp {
        /// Why.
        reason: String,
    },
}

impl Decision {
    /// Precedence for [`most_severe`]: abort > retry > more memory > give up.
    fn severity(&self) -> u8 {
        match self {
            Decision::AbortRun { .. } => 3,
            Decision::Retry { .. } => 2,
            Decision::RetryWithMoreMemory { .. } => 1,
            Decision::GiveUp { .. } => 0,
        }
    }

    /// `abort_run`, `retry`, `retry_with_more_memory` or `give_up`.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::AbortRun { .. } => "abort_run",
            Decision::Retry { .. } => "retry",
            Decision::RetryWithMoreMemory { .. } => "retry_with_more_memory",
            Decision::GiveUp { .. } => "give_up",
        }
    }
}

/// The policy's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailurePolicy {
    /// Most memory doublings per step (default 3: 1g → 2g → 4g → 8g).
    pub max_memory_bumps: u32,
    /// Most retries of a step after a timeout or runtime failure (default 3).
    pub max_retries: u32,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            max_memory_bumps: 3,
            max_retries: 3,
        }
    }
}

impl FailurePolicy {
    /// Decides what to do about `failure`, given the attempts so far and the memory
    /// limit of the attempt that failed.
    ///
    /// | kind | decision |
    /// |---|---|
    /// | image_pull, config | abort the run |
    /// | oom | retry with doubled memory while bumps < max, else give up |
    /// | timeout, runtime | retry with backoff while retries < max, else give up |
    /// | hook_exit | give up (deterministic; no blind rerun) |
    /// | unknown | give up |
    pub fn decide(
        &self,
        failure: &RunFailure,
        prior: PriorAttempts,
        memory: MemorySize,
    ) -> Decision {
        match failure.kind {
            FailureKind::ImagePull | FailureKind::Config => Decision::AbortRun {
                reason: format!("{}: {}", failure.kind, failure.detail),
                kind: failure.kind,
            },
            FailureKind::Oom => match memory.doubled() {
                Some(next) if prior.memory_bumps < self.max_memory_bumps => {
                    Decision::RetryWithMoreMemory { memory: next }
                }
                _ => Decision::GiveUp {
                    reason: format!(
                        "out of memory at {memory} after {} memory bumps",
                        prior.memory_bumps
                    ),
                },
            },
            FailureKind::Timeout | FailureKind::Runtime if prior.retries < self.max_retries => {
                Decision::Retry {
                    reason: format!("{}: {}", failure.kind, failure.detail),
                }
            }
            FailureKind::Timeout | FailureKind::Runtime => Decision::GiveUp {
                reason: format!(
                    "{}: {} (gave up after {} retries)",
                    failure.kind, failure.detail, prior.retries
                ),
            },
            FailureKind::HookExit => Decision::GiveUp {
                reason: match failure.exit_code {
                    Some(code) => format!("hook exited with code {code}"),
                    None => format!("hook exited abnormally: {}", failure.detail),
                },
            },
            FailureKind::Unknown => Decision::GiveUp {
                reason: failure.detail.clone(),
            },
        }
    }
}

/// The dominant decision of a batch: abort > retry > more memory > give up; the first
/// seen wins a tie; `None` for no decisions.
pub fn most_severe<'a>(decisions: impl IntoIterator<Item = &'a Decision>) -> Option<&'a Decision> {
    decisions
        .into_iter()
        .fold(None, |best: Option<&Decision>, d| match best {
            Some(b) if b.severity() >= d.severity() => Some(b),
            _ => Some(d),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: FailureKind) -> RunFailure {
        let mut f = RunFailure::new(kind, "detail");
        if kind == FailureKind::HookExit {
            f.exit_code = Some(3);
        }
        f
    }

    fn mem(s: &str) -> MemorySize {
        s.parse().unwrap()
    }

    #[test]
    fn policy_matrix() {
        let policy = FailurePolicy::default();
        let fresh = PriorAttempts::default();
        let m = mem("1g");
        for kind in [FailureKind::ImagePull, FailureKind::Config] {
            assert!(
                matches!(policy.decide(&failure(kind), fresh, m), Decision::AbortRun { kind: k, .. } if k == kind)
            );
        }
        assert_eq!(
            policy.decide(&failure(FailureKind::Oom), fresh, m),
            Decision::RetryWithMoreMemory { memory: mem("2g") }
        );
        for kind in [FailureKind::Timeout, FailureKind::Runtime] {
            assert_eq!(policy.decide(&failure(kind), fresh, m).label(), "retry");
            let exhausted = PriorAttempts {
                retries: 3,
                ..fresh
            };
            assert_eq!(
                policy.decide(&failure(kind), exhausted, m).label(),
                "give_up"
            );
        }
        assert_eq!(
            policy.decide(&failure(FailureKind::HookExit), fresh, m),
            Decision::GiveUp {
                reason: "hook exited with code 3".into()
            }
        );
        assert_eq!(
            policy
                .decide(&failure(FailureKind::Unknown), fresh, m)
                .label(),
            "give_up"
        );
    }

    #[test]
    fn oom_doubles_at_most_three_times() {
        let policy = FailurePolicy::default();
        let mut memory = mem("1g");
        let mut prior = PriorAttempts::default();
        let mut seen = vec![memory.to_string()];
        loop {
            match policy.decide(&failure(FailureKind::Oom), prior, memory) {
                Decision::RetryWithMoreMemory { memory: next } => {
                    memory = next;
                    prior.memory_bumps += 1;
                    seen.push(memory.to_string());
                }
                Decision::GiveUp { reason } => {
                    assert_eq!(reason, "out of memory at 8g after 3 memory bumps");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, ["1g", "2g", "4g", "8g"]);
    }

    #[test]
    fn most_severe_precedence() {
        let give_up = Decision::GiveUp { reason: "a".into() };
        let more = Decision::RetryWithMoreMemory { memory: mem("2g") };
        let retry1 = Decision::Retry {
            reason: "first".into(),
        };
        let retry2 = Decision::Retry {
            reason: "second".into(),
        };
        let abort = Decision::AbortRun {
            reason: "x".into(),
            kind: FailureKind::ImagePull,
        };
        assert_eq!(most_severe([]), None);
        assert_eq!(most_severe([&give_up, &more]), Some(&more));
        assert_eq!(
            most_severe([&give_up, &retry1, &more, &retry2]),
            Some(&retry1)
        );
        assert_eq!(most_severe([&retry1, &abort, &give_up]), Some(&abort));
    }
}

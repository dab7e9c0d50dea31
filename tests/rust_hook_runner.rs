//! The runner conformance suite against `ProcessRunner` with the Rust test hook
//! (`examples/test_hook.rs`), in plain mode and inside bubblewrap.
//!
//! The Rust hook fails allocations the way every Rust program does (SIGABRT after
//! "memory allocation of N bytes failed"), so these tests cover the abort branch of the
//! OOM classification, which the Python hook (MemoryError, exit 1) does not.
//!
//! `cargo test` builds the example; when a single test target is selected
//! (`--test rust_hook_runner`) build it first with `cargo build --example test_hook`.

use std::path::{Path, PathBuf};

use osa_core::runner::process::{ProcessRunner, Sandbox};
use osa_core::runtime::{Limits, RuntimeConfig};
use osa_core::testing::runner::{Harness, OomCase};
use serde_json::{Map, Value};

/// `target/<profile>/examples/test_hook`, next to this test's `deps/` directory.
fn hook_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let hook = profile_dir.join("examples").join("test_hook");
    assert!(
        hook.is_file(),
        "{} is missing; build it with `cargo build --example test_hook` (cargo test builds \
         it unless a single --test target is selected)",
        hook.display()
    );
    hook
}

fn rust_hook(config: Map<String, Value>, limits: Limits) -> RuntimeConfig {
    RuntimeConfig::Process {
        command: vec![hook_binary().to_string_lossy().into_owned()],
        digest: osa_core::testing::digest(10),
        config,
        limits,
    }
}

struct Env {
    runner: ProcessRunner,
    scratch: tempfile::TempDir,
    sandboxed: bool,
}

impl Env {
    fn new(sandbox: Sandbox) -> Self {
        if let Err(e) = sandbox.check() {
            panic!("the bwrap runner tests need bubblewrap: {e}");
        }
        Env {
            // The runner binds the hook binary itself (it is the program).
            runner: ProcessRunner::with_sandbox(sandbox),
            scratch: tempfile::tempdir().expect("scratch dir"),
            sandboxed: sandbox == Sandbox::Bwrap,
        }
    }

    fn harness(&self) -> Harness<'_> {
        Harness::new(&self.runner, &rust_hook, self.scratch.path())
            .sandboxed(self.sandboxed)
            // A Rust hook needs only a few MiB of address space: tighter sizes than the
            // Python default still separate "fails at 32m" from "fits at 64m".
            .oom(OomCase {
                base_memory: "32m".parse().expect("valid size"),
                alloc_mb: 40,
            })
    }
}

mod plain {
    use super::*;

    osa_core::runner_conformance!(Env::new(Sandbox::None));
}

mod bwrap {
    use super::*;

    osa_core::runner_conformance!(Env::new(Sandbox::Bwrap));
}

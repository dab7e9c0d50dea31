//! Start-to-outcome latency and throughput of the runners, against a bare fork+exec of
//! the same program, measured in one run.
//!
//! ```text
//! OSA_TEST_HOOK_PROFILE=release scripts/podman-setup.sh
//! cargo bench --bench runners --features oci
//! ```
//!
//! Every runner executes the Rust test hook (`examples/test_hook.rs`): the binary
//! recorded by `scripts/podman-setup.sh` for the process modes, the image built from
//! that same binary for the container modes (pinned by digest). Scenarios:
//!
//! - `fork+exec`: `std::process::Command` of the hook with the contract environment,
//!   until it exits (the floor every runner is compared with);
//! - `ProcessRunner`, `ProcessRunner+bwrap`: [`HookRunner::run`] until it returns;
//! - `OciRunner`: [`HookRunner::run`] through the Podman API service;
//! - `podman run`: the CLI (`podman run --rm` with the same hardening flags, binds and
//!   environment as the OciRunner) until it exits.
//!
//! Latency: a no-op hook (one record, mode `pass`), the median of `LATENCY_ROUNDS`
//! runs per scenario. Throughput: a 1,000-record batch through each scenario,
//! records per second from the median of `BATCH_ROUNDS` runs. Rounds interleave the
//! scenarios so that drift of the machine hits all of them alike. `out/` is emptied
//! between runs, outside the timing. Containers get 2 cpus (this machine's all) so
//! that the quota does not throttle the batch, and 512m of memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use osa_core::contract::{BatchLayout, BatchLimits, BatchRecord, PreparedBatch};
use osa_core::id::{Digest, HookName, ReleaseId};
use osa_core::runner::oci::{OciRunner, PullPolicy};
use osa_core::runner::process::{ProcessRunner, Sandbox};
use osa_core::runner::{HookRunner, RunJob};
use osa_core::runtime::{Limits, RuntimeConfig};
use serde_json::{Map, Value, json};

const LATENCY_ROUNDS: usize = 25;
const BATCH_ROUNDS: usize = 5;
const BATCH_RECORDS: usize = 1_000;
const HOOK: &str = "bench_hook";

/// What `scripts/podman-setup.sh` recorded.
struct Setup {
    image: String,
    digest: Digest,
    socket: PathBuf,
    containers_conf: PathBuf,
    hook: PathBuf,
    state_dir: PathBuf,
}

fn setup() -> Setup {
    let path = std::env::var_os("OSA_OCI_ENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/oci/test-image.env"),
        PathBuf::from,
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "run scripts/podman-setup.sh first (OSA_TEST_HOOK_PROFILE=release for an optimised \
             hook): {} cannot be read: {e}",
            path.display()
        )
    });
    let vars: HashMap<&str, &str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let var = |key: &str| {
        vars.get(key)
            .map(|v| v.to_string())
            .unwrap_or_else(|| panic!("{} has no {key}", path.display()))
    };
    Setup {
        image: var("OSA_TEST_IMAGE"),
        digest: Digest::new(var("OSA_TEST_IMAGE_DIGEST")).expect("a valid digest"),
        socket: var("OSA_PODMAN_SOCKET").into(),
        containers_conf: var("CONTAINERS_CONF").into(),
        hook: var("OSA_TEST_HOOK_BINARY").into(),
        state_dir: path
            .parent()
            .expect("the env file's directory")
            .to_path_buf(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    ForkExec,
    Process,
    Bwrap,
    Oci,
    PodmanCli,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::ForkExec,
        Scenario::Process,
        Scenario::Bwrap,
        Scenario::Oci,
        Scenario::PodmanCli,
    ];

    fn label(self) -> &'static str {
        match self {
            Scenario::ForkExec => "bare fork+exec",
            Scenario::Process => "ProcessRunner",
            Scenario::Bwrap => "ProcessRunner+bwrap",
            Scenario::Oci => "OciRunner (Podman API)",
            Scenario::PodmanCli => "`podman run` CLI",
        }
    }

    fn is_container(self) -> bool {
        matches!(self, Scenario::Oci | Scenario::PodmanCli)
    }
}

struct Bench {
    setup: Setup,
    process: ProcessRunner,
    bwrap: ProcessRunner,
    oci: OciRunner,
    limits: Limits,
}

impl Bench {
    fn job(&self, scenario: Scenario, batch: &PreparedBatch) -> RunJob {
        let mut config = Map::new();
        config.insert("mode".into(), "pass".into());
        let runtime = if scenario.is_container() {
            RuntimeConfig::Oci {
                image: self.setup.image.clone(),
                digest: self.setup.digest.clone(),
                config,
                limits: self.limits,
            }
        } else {
            RuntimeConfig::Process {
                command: vec![self.setup.hook.to_string_lossy().into_owned()],
                digest: Digest::of_bytes(b"bench"),
                config,
                limits: self.limits,
            }
        };
        RunJob {
            hook: HookName::new(HOOK).expect("valid hook name"),
            release_id: ReleaseId::new_random(),
            runtime,
            limits: self.limits,
            batch: batch.layout.clone(),
            max_log_bytes: 1 << 20,
        }
    }

    /// One run of `scenario` over `batch`, timed from the start to the outcome.
    async fn once(&self, scenario: Scenario, batch: &PreparedBatch) -> Duration {
        batch.layout.reset_output().expect("reset out/");
        let job = self.job(scenario, batch);
        let layout = &batch.layout;
        let started = Instant::now();
        match scenario {
            Scenario::ForkExec => {
                let status = tokio::process::Command::new(&self.setup.hook)
                    .env_clear()
                    .env("OSA_IN", &layout.input)
                    .env("OSA_OUT", &layout.output)
                    .env("OSA_FILES", &layout.files)
                    .env("OSA_HOOK_NAME", HOOK)
                    .current_dir(&layout.root)
                    .stdin(Stdio::null())
                    .status()
                    .await
                    .expect("the hook runs");
                assert!(status.success(), "bare hook: {status}");
            }
            Scenario::Process => run(&self.process, &job).await,
            Scenario::Bwrap => run(&self.bwrap, &job).await,
            Scenario::Oci => run(&self.oci, &job).await,
            Scenario::PodmanCli => self.podman_run(layout).await,
        }
        let elapsed = started.elapsed();
        let features = std::fs::read_to_string(layout.output.join("features.jsonl"))
            .unwrap_or_else(|e| panic!("{}: no features.jsonl ({e})", scenario.label()));
        assert_eq!(
            features.lines().count(),
            batch.records.len(),
            "{}: one row per record",
            scenario.label()
        );
        elapsed
    }

    /// `podman run --rm` with the OciRunner's hardening, binds and environment.
    async fn podman_run(&self, layout: &BatchLayout) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&layout.output, std::fs::Permissions::from_mode(0o777))
            .expect("chmod out/");
        let memory = self.limits.memory.to_string();
        let bind =
            |host: &Path, target: &str, mode: &str| format!("{}:{target}:{mode}", host.display());
        let status = tokio::process::Command::new("podman")
            .env("CONTAINERS_CONF", &self.setup.containers_conf)
            .current_dir(&self.setup.state_dir)
            .args(["run", "--rm", "--user", "65534:65534", "--network", "none"])
            .args(["--read-only", "--cap-drop", "ALL"])
            .args(["--security-opt", "no-new-privileges", "--pids-limit", "256"])
            .args(["--memory", &memory, "--memory-swap", &memory])
            .args(["--cpus", &self.limits.cpu.to_string()])
            .args(["--tmpfs", "/tmp:rw,noexec,nosuid,size=100m"])
            .args(["-v", &bind(&layout.input, "/osa/in", "ro")])
            .args(["-v", &bind(&layout.files, "/osa/files", "ro")])
            .args(["-v", &bind(&layout.output, "/osa/out", "rw")])
            .args(["-e", "OSA_IN=/osa/in", "-e", "OSA_OUT=/osa/out"])
            .args([
                "-e",
                "OSA_FILES=/osa/files",
                "-e",
                &format!("OSA_HOOK_NAME={HOOK}"),
            ])
            .args(["-e", "HOME=/tmp"])
            .arg(format!("{}@{}", self.setup.image, self.setup.digest))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .await
            .expect("podman runs");
        assert!(status.success(), "podman run: {status}");
    }
}

async fn run(runner: &dyn HookRunner, job: &RunJob) {
    if let Err(failure) = runner.run(job).await {
        panic!(
            "{}: {failure}\n{}",
            runner.name(),
            String::from_utf8_lossy(&failure.log.bytes)
        );
    }
}

fn batch(dir: &Path, name: &str, records: usize) -> PreparedBatch {
    let records: Vec<BatchRecord> = (0..records)
        .map(|i| BatchRecord {
            id: format!("rec-{i}").parse().expect("valid id"),
            metadata: json!({"title": format!("record {i}"), "n": i}),
            files: Vec::new(),
        })
        .collect();
    let mut config = Map::new();
    config.insert("mode".into(), Value::from("pass"));
    BatchLayout::prepare(dir.join(name), &records, &config, &BatchLimits::default()).expect("batch")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let setup = setup();
    if let Err(e) = Sandbox::Bwrap.check() {
        panic!("the bwrap scenario needs bubblewrap: {e}");
    }
    let oci = OciRunner::connect(&setup.socket)
        .unwrap_or_else(|e| panic!("{e}; run scripts/podman-setup.sh"))
        .pull_policy(PullPolicy::Never)
        .label("osa.bench", "runners");
    oci.ping()
        .await
        .unwrap_or_else(|e| panic!("{e}; run scripts/podman-setup.sh"));
    let bench = Bench {
        setup,
        process: ProcessRunner::new(),
        bwrap: ProcessRunner::with_sandbox(Sandbox::Bwrap),
        oci,
        limits: Limits::new(
            120,
            "512m".parse().expect("valid size"),
            "2".parse().expect("valid cpu"),
        ),
    };
    let scratch = tempfile::tempdir().expect("scratch dir");
    let single: Vec<PreparedBatch> = Scenario::ALL
        .iter()
        .enumerate()
        .map(|(i, _)| batch(scratch.path(), &format!("one-{i}"), 1))
        .collect();
    let large: Vec<PreparedBatch> = Scenario::ALL
        .iter()
        .enumerate()
        .map(|(i, _)| batch(scratch.path(), &format!("many-{i}"), BATCH_RECORDS))
        .collect();
    eprintln!(
        "hook binary: {}\nimage: {}@{}",
        bench.setup.hook.display(),
        bench.setup.image,
        bench.setup.digest
    );

    // Warm-up: page cache, image layers, the service's first-request costs.
    for (scenario, batch) in Scenario::ALL.iter().zip(&single) {
        bench.once(*scenario, batch).await;
    }
    let mut latency: Vec<Vec<Duration>> = vec![Vec::new(); Scenario::ALL.len()];
    for _ in 0..LATENCY_ROUNDS {
        for (i, scenario) in Scenario::ALL.iter().enumerate() {
            latency[i].push(bench.once(*scenario, &single[i]).await);
        }
    }
    let mut batches: Vec<Vec<Duration>> = vec![Vec::new(); Scenario::ALL.len()];
    for _ in 0..BATCH_ROUNDS {
        for (i, scenario) in Scenario::ALL.iter().enumerate() {
            batches[i].push(bench.once(*scenario, &large[i]).await);
        }
    }

    let latency: Vec<Duration> = latency.into_iter().map(median).collect();
    let throughput: Vec<f64> = batches
        .into_iter()
        .map(|samples| BATCH_RECORDS as f64 / median(samples).as_secs_f64())
        .collect();
    let (base_latency, base_rate) = (latency[0], throughput[0]);
    println!(
        "\nRunner latency and throughput (Rust test hook; median of {LATENCY_ROUNDS} no-op runs, \
         {BATCH_ROUNDS} runs of {BATCH_RECORDS} records)\n"
    );
    println!(
        "| runner | no-op latency | vs fork+exec | added | records/s (1,000-record batch) | vs fork+exec |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, scenario) in Scenario::ALL.iter().enumerate() {
        println!(
            "| {} | {:.2} ms | {:.2}× | {:+.2} ms | {:.0} | {:.2}× |",
            scenario.label(),
            latency[i].as_secs_f64() * 1e3,
            latency[i].as_secs_f64() / base_latency.as_secs_f64(),
            (latency[i].as_secs_f64() - base_latency.as_secs_f64()) * 1e3,
            throughput[i],
            throughput[i] / base_rate,
        );
    }
}

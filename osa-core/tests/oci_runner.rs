//! The runner conformance suite against `OciRunner` on rootful Podman, with the Rust
//! test hook packaged as a local image, plus the runner's own guarantees checked
//! through the engine's API: every hardening setting of a live container, removal
//! after a timeout and after cancellation, a missing image.
//!
//! Needs the Podman API service and the test image: run `scripts/podman-setup.sh`
//! first (it writes `target/oci/test-image.env`, which these tests read; another
//! location can be given with `OSA_OCI_ENV`). Every test fails, never skips, when
//! they are missing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use osa_core::contract::{BatchLayout, BatchLimits, BatchRecord};
use osa_core::id::{Digest, HookName, ReleaseId};
use osa_core::runner::oci::{
    CONTAINER_FILES, CONTAINER_IN, CONTAINER_OUT, LABEL_HOOK, LABEL_RELEASE, LABEL_RUNNER,
    OciRunner, PIDS_LIMIT, PullPolicy,
};
use osa_core::runner::{FailureKind, HookRunner, RunJob};
use osa_core::runtime::{Limits, MemorySize, RuntimeConfig};
use osa_core::testing::runner::{HOOK_NAME, Harness, OomCase};
use serde_json::{Map, Value, json};

/// A label on every container these tests create, to find them.
const TEST_LABEL: &str = "osa.test";
/// Environment variables the engine adds that the runner cannot remove through the
/// Docker API (see the `oci` module docs): the image's PATH (Podman's default here,
/// the test image sets none), HOSTNAME, and Podman's `container` and `TERM`; HOME is
/// the runner's own (`/tmp`).
const ENGINE_ENV: &[&str] = &["PATH", "HOME", "HOSTNAME", "TERM", "container"];

/// What `scripts/podman-setup.sh` recorded.
struct Setup {
    image: String,
    digest: Digest,
    image_id: String,
    socket: PathBuf,
}

fn env_file() -> PathBuf {
    std::env::var_os("OSA_OCI_ENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/oci/test-image.env"),
        PathBuf::from,
    )
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let path = env_file();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the OCI runner tests need the Podman API service and the test image: run \
                 scripts/podman-setup.sh first ({} cannot be read: {e})",
                path.display()
            )
        });
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect();
        let var = |key: &str| -> String {
            vars.get(key).map(|v| v.to_string()).unwrap_or_else(|| {
                panic!(
                    "{} has no {key}; run scripts/podman-setup.sh again",
                    path.display()
                )
            })
        };
        let digest = Digest::new(var("OSA_TEST_IMAGE_DIGEST")).unwrap_or_else(|e| {
            panic!(
                "{}: bad digest ({e}); run scripts/podman-setup.sh again",
                path.display()
            )
        });
        Setup {
            image: var("OSA_TEST_IMAGE"),
            digest,
            image_id: var("OSA_TEST_IMAGE_ID"),
            socket: var("OSA_PODMAN_SOCKET").into(),
        }
    })
}

/// A runner on the service, checked to answer.
async fn runner() -> OciRunner {
    let setup = setup();
    let runner = OciRunner::connect(&setup.socket)
        .unwrap_or_else(|e| {
            panic!("{e}; start the Podman API service with scripts/podman-setup.sh")
        })
        .pull_policy(PullPolicy::Never)
        .label(TEST_LABEL, "oci_runner");
    if let Err(e) = runner.ping().await {
        panic!("{e}; start the Podman API service with scripts/podman-setup.sh");
    }
    runner
}

/// A plain API client for the checks.
fn docker() -> Docker {
    Docker::connect_with_unix(
        &setup().socket.to_string_lossy(),
        30,
        bollard::API_DEFAULT_VERSION,
    )
    .expect("podman socket")
}

fn oci_hook(config: Map<String, Value>, limits: Limits) -> RuntimeConfig {
    let setup = setup();
    RuntimeConfig::Oci {
        image: setup.image.clone(),
        digest: setup.digest.clone(),
        config,
        limits,
    }
}

struct Env {
    runner: OciRunner,
    scratch: tempfile::TempDir,
}

impl Env {
    async fn new() -> Self {
        Env {
            runner: runner().await,
            scratch: tempfile::tempdir().expect("scratch dir"),
        }
    }

    fn harness(&self) -> Harness<'_> {
        Harness::new(&self.runner, &oci_hook, self.scratch.path())
            .sandboxed(true)
            .extra_env(ENGINE_ENV)
            // The Rust hook's baseline is a few MiB; the cgroup limit counts resident
            // memory, so 40 MiB fails at 32m and fits at 64m.
            .oom(OomCase {
                base_memory: "32m".parse().expect("valid size"),
                alloc_mb: 40,
            })
    }
}

mod conformance {
    use super::*;

    osa_core::runner_conformance!(Env::new().await);
}

/// A job for `runtime` over a one-record batch in `scratch`.
fn job(scratch: &Path, runtime: RuntimeConfig) -> RunJob {
    let record = BatchRecord {
        id: "a".parse().expect("valid id"),
        metadata: json!({}),
        files: Vec::new(),
    };
    let batch = BatchLayout::prepare(
        scratch.join(format!("batch-{}", uuid::Uuid::new_v4())),
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

fn sleeping(seconds: u64, limits: Limits) -> RuntimeConfig {
    let mut config = Map::new();
    config.insert("mode".into(), "sleep".into());
    config.insert("sleep_seconds".into(), seconds.into());
    oci_hook(config, limits)
}

/// Containers of one release, in every state.
async fn containers_of(release: ReleaseId) -> Vec<String> {
    let filters: HashMap<String, Vec<String>> =
        [("label".into(), vec![format!("{LABEL_RELEASE}={release}")])].into();
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    docker()
        .list_containers(Some(options))
        .await
        .expect("listing containers")
        .into_iter()
        .map(|c| {
            format!(
                "{} ({})",
                c.names.unwrap_or_default().join(","),
                c.state.map(|s| s.to_string()).unwrap_or_default()
            )
        })
        .collect()
}

/// Polls until a container of `release` exists and is running; returns its inspection.
async fn running_container(release: ReleaseId) -> ContainerInspectResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    let filters: HashMap<String, Vec<String>> = [
        ("label".into(), vec![format!("{LABEL_RELEASE}={release}")]),
        ("status".into(), vec!["running".into()]),
    ]
    .into();
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    loop {
        let found = docker()
            .list_containers(Some(options.clone()))
            .await
            .expect("listing containers");
        if let Some(id) = found.into_iter().find_map(|c| c.id) {
            return docker()
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .expect("inspecting the container");
        }
        assert!(
            Instant::now() < deadline,
            "no running container of release {release} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `Key:\tvalue` lines of `/proc/<pid>/status`.
fn proc_status(pid: i64) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e} (rootful podman on this host?)"));
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Every hardening setting of the OCI runner, read back from a live container through the
/// API and, where the API shows the request rather than the effect, from the kernel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_container_has_every_hardening_setting() {
    let runner = runner().await;
    let scratch = tempfile::tempdir().expect("scratch dir");
    let limits = Limits::new(
        60,
        "96m".parse().expect("valid size"),
        "0.25".parse().expect("valid cpu"),
    );
    let job = job(scratch.path(), sleeping(30, limits));
    let release = job.release_id;
    let run = {
        let runner = runner.clone();
        let job = job.clone();
        tokio::spawn(async move { runner.run(&job).await })
    };
    let inspect = running_container(release).await;
    let setup = setup();

    // Image: the pinned one, by id.
    assert_eq!(
        inspect.image.as_deref(),
        Some(setup.image_id.as_str()),
        "the container must run the image resolved from {}@{}",
        setup.image,
        setup.digest
    );
    let config = inspect.config.clone().expect("config");
    assert_eq!(config.user.as_deref(), Some("65534:65534"));
    let labels = config.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(LABEL_RUNNER).map(String::as_str), Some("oci"));
    assert_eq!(labels.get(LABEL_HOOK).map(String::as_str), Some(HOOK_NAME));
    assert_eq!(
        labels.get(TEST_LABEL).map(String::as_str),
        Some("oci_runner")
    );
    // Environment: the contract plus what the engine adds, nothing else.
    let env: BTreeMap<String, String> = config
        .env
        .clone()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(env.get("OSA_IN").map(String::as_str), Some(CONTAINER_IN));
    assert_eq!(env.get("OSA_OUT").map(String::as_str), Some(CONTAINER_OUT));
    assert_eq!(
        env.get("OSA_FILES").map(String::as_str),
        Some(CONTAINER_FILES)
    );
    assert_eq!(
        env.get("OSA_HOOK_NAME").map(String::as_str),
        Some(HOOK_NAME)
    );
    let unexpected: Vec<&String> = env
        .keys()
        .filter(|k| !k.starts_with("OSA_") && !ENGINE_ENV.contains(&k.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected environment {unexpected:?}"
    );
    // Entrypoint: the image's own.
    assert_eq!(inspect.path.as_deref(), Some("/hook"));

    let host = inspect.host_config.clone().expect("host config");
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert!(!host.privileged.unwrap_or(false));
    let cap_drop = host.cap_drop.clone().unwrap_or_default();
    // Docker echoes ["ALL"]; Podman lists every capability it dropped.
    assert!(
        cap_drop.iter().any(|c| c == "ALL")
            || [
                "CHOWN",
                "DAC_OVERRIDE",
                "KILL",
                "NET_RAW",
                "SETUID",
                "SYS_CHROOT"
            ]
            .iter()
            .all(|c| cap_drop.iter().any(|d| d.trim_start_matches("CAP_") == *c)),
        "cap_drop {cap_drop:?}"
    );
    assert!(host.cap_add.unwrap_or_default().is_empty());
    assert!(
        host.security_opt
            .clone()
            .unwrap_or_default()
            .iter()
            .any(|o| o.starts_with("no-new-privileges")),
        "security_opt {:?}",
        host.security_opt
    );
    assert_eq!(host.pids_limit, Some(PIDS_LIMIT));
    let memory = 96 << 20;
    assert_eq!(host.memory, Some(memory));
    assert_eq!(host.memory_swap, Some(memory), "memory+swap == memory");
    let nano = limits.cpu.nano_cpus();
    assert!(
        host.nano_cpus == Some(nano)
            || matches!((host.cpu_quota, host.cpu_period), (Some(q), Some(p)) if q * 1_000_000_000 / p == nano),
        "cpu quota: nano_cpus {:?}, quota {:?} / period {:?}",
        host.nano_cpus,
        host.cpu_quota,
        host.cpu_period
    );
    let tmpfs = host.tmpfs.clone().unwrap_or_default();
    let tmp: BTreeSet<&str> = tmpfs
        .get("/tmp")
        .map(|o| o.split(',').collect())
        .unwrap_or_default();
    for option in ["rw", "noexec", "nosuid", "size=100m"] {
        assert!(tmp.contains(option), "/tmp tmpfs options {tmpfs:?}");
    }
    // Binds: exactly the batch, inputs read-only.
    let mounts = inspect.mounts.clone().unwrap_or_default();
    let mount = |target: &str| {
        mounts
            .iter()
            .find(|m| m.destination.as_deref() == Some(target))
            .unwrap_or_else(|| panic!("no mount at {target}: {mounts:?}"))
    };
    for (target, source, rw) in [
        (CONTAINER_IN, &job.batch.input, false),
        (CONTAINER_FILES, &job.batch.files, false),
        (CONTAINER_OUT, &job.batch.output, true),
    ] {
        let m = mount(target);
        assert_eq!(
            m.source.as_deref(),
            Some(source.to_string_lossy().as_ref()),
            "{target}"
        );
        assert_eq!(m.rw, Some(rw), "{target} read-write must be {rw}");
    }

    // The effect, from the kernel: the hook's process (rootful: same pid namespace
    // view) runs as 65534 with no capability at all and no_new_privs.
    let pid = inspect
        .state
        .as_ref()
        .and_then(|s| s.pid)
        .expect("a running pid");
    let status = proc_status(pid);
    assert!(
        status["Uid"].split_whitespace().all(|u| u == "65534"),
        "Uid {}",
        status["Uid"]
    );
    assert!(
        status["Gid"].split_whitespace().all(|g| g == "65534"),
        "Gid {}",
        status["Gid"]
    );
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status[set], "0000000000000000", "{set}");
    }
    assert_eq!(status["NoNewPrivs"], "1");
    // Network namespace: only loopback.
    let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).expect("net/dev");
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "interfaces of the container");

    // Cancelling the run removes the container before the abort completes.
    run.abort();
    let _ = run.await;
    let left = containers_of(release).await;
    assert!(
        left.is_empty(),
        "containers left after cancellation: {left:?}"
    );
}

/// A hook sleeping past its limit is killed and reported as `timeout` within
/// timeout + 2 s, and no container of it remains, in any state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_reported_in_time_and_leaves_no_container() {
    let runner = runner().await;
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut limits =
        Limits::default().with_memory(MemorySize::from_bytes(64 << 20).expect("valid size"));
    limits.timeout_seconds = 2;
    let job = job(scratch.path(), sleeping(60, limits));
    let started = Instant::now();
    let result = runner.run(&job).await;
    let elapsed = started.elapsed();
    let failure = result.expect_err("a hook sleeping 60 s must time out");
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
    assert!(
        elapsed <= Duration::from_secs(4),
        "reported after {elapsed:?}, more than 2 s + 2 s"
    );
    assert!(failure.detail.contains("2 s"), "{}", failure.detail);
    let left = containers_of(job.release_id).await;
    assert!(left.is_empty(), "containers left after a timeout: {left:?}");
}

/// An image that the engine does not have (by digest) is an `image_pull` failure naming
/// the image, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_an_image_pull_failure() {
    let runner = runner().await;
    let scratch = tempfile::tempdir().expect("scratch dir");
    let missing = Digest::new(format!("sha256:{}", "0".repeat(64))).expect("valid digest");
    let runtime = RuntimeConfig::Oci {
        image: format!("{}:latest", setup().image),
        digest: missing.clone(),
        config: Map::new(),
        limits: Limits::default(),
    };
    let job = job(scratch.path(), runtime);
    let failure = runner
        .run(&job)
        .await
        .expect_err("a missing image must fail");
    assert_eq!(failure.kind, FailureKind::ImagePull, "{failure}");
    let pinned = format!("{}@{missing}", setup().image);
    assert!(
        failure.detail.contains(&pinned),
        "the message must name {pinned}: {}",
        failure.detail
    );
    assert!(failure.detail.contains("never"), "{}", failure.detail);
    assert!(containers_of(job.release_id).await.is_empty());
}

/// The tag of a release is never what runs: only the digest, which the engine must
/// resolve to an image carrying it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_is_ignored_in_favour_of_the_digest() {
    let runner = runner().await;
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut config = Map::new();
    config.insert("mode".into(), "pass".into());
    let runtime = RuntimeConfig::Oci {
        // A tag that does not exist: only the digest counts.
        image: format!("{}:no-such-tag", setup().image),
        digest: setup().digest.clone(),
        config,
        limits: Limits::default(),
    };
    assert_eq!(
        runtime.pinned_image().as_deref(),
        Some(format!("{}@{}", setup().image, setup().digest).as_str())
    );
    let job = job(scratch.path(), runtime);
    let execution = runner.run(&job).await.expect("the pinned image runs");
    // The output was streamed (attached), with no note of a fallback or a failure.
    let log = String::from_utf8_lossy(&execution.log.bytes);
    assert!(!log.contains("[osa]"), "{log}");
    assert!(containers_of(job.release_id).await.is_empty());
}

#[tokio::test]
async fn a_process_release_is_a_config_failure() {
    let runner = runner().await;
    let scratch = tempfile::tempdir().expect("scratch dir");
    let runtime = RuntimeConfig::Process {
        command: vec!["/bin/true".into()],
        digest: osa_core::testing::digest(1),
        config: Map::new(),
        limits: Limits::default(),
    };
    let failure = runner
        .run(&job(scratch.path(), runtime))
        .await
        .expect_err("a process release must fail");
    assert_eq!(failure.kind, FailureKind::Config);
    assert!(failure.detail.contains("`process`"), "{}", failure.detail);
    assert_eq!(runner.name(), "oci");
}

#[test]
fn connecting_to_a_missing_socket_fails_with_the_path() {
    let err = OciRunner::connect("/nonexistent/osa/podman.sock").expect_err("no socket");
    assert!(
        err.to_string().contains("/nonexistent/osa/podman.sock"),
        "{err}"
    );
    let err = OciRunner::connect_to("ssh://somewhere").expect_err("unsupported");
    assert!(err.to_string().contains("unsupported"), "{err}");
}

/// A hook allocating past its memory limit is killed by the kernel inside the
/// container's cgroup and reported as `oom`: from the engine's `OOMKilled` flag, or,
/// where the engine does not set it (Podman 4.3 with conmon 2.1 on cgroup v1, as on
/// this machine), from the SIGKILL (exit code 137) the runner did not send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_reported_from_the_engine() {
    let runner = runner().await;
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut config = Map::new();
    config.insert("mode".into(), "alloc".into());
    config.insert("alloc_mb".into(), 100.into());
    let limits = Limits::default().with_memory("32m".parse().expect("valid size"));
    let job = job(scratch.path(), oci_hook(config, limits));
    let failure = runner
        .run(&job)
        .await
        .expect_err("100 MiB cannot fit in 32m");
    assert_eq!(failure.kind, FailureKind::Oom, "{failure}");
    assert!(
        failure.detail.contains("OOMKilled") || failure.detail.contains("signal 9"),
        "{}",
        failure.detail
    );
    assert_eq!(failure.exit_code, Some(137));
    assert!(containers_of(job.release_id).await.is_empty());
}

/// The runner remembers what a pinned reference resolved to; when that image is
/// removed from the engine, the next run notices and resolves again (here: finds
/// nothing, with pulls disabled, and says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_image_is_resolved_again() {
    use bollard::models::{ContainerConfig, ContainerCreateBody};
    use bollard::query_parameters::{
        CommitContainerOptionsBuilder, CreateContainerOptions, RemoveContainerOptions,
        RemoveImageOptionsBuilder,
    };

    let runner = runner().await;
    let docker = docker();
    let scratch = tempfile::tempdir().expect("scratch dir");
    // A fresh image of our own (a commit of the test image with a new label), so that
    // removing it disturbs no other test.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let repo = format!("localhost/osa-cache-probe-{tag}");
    let body = ContainerCreateBody {
        image: Some(setup().image_id.clone()),
        labels: Some([(TEST_LABEL.to_string(), "cache-probe".to_string())].into()),
        ..ContainerCreateBody::default()
    };
    let base = docker
        .create_container(None::<CreateContainerOptions>, body)
        .await
        .expect("create a container to commit");
    let committed = docker
        .commit_container(
            CommitContainerOptionsBuilder::new()
                .container(&base.id)
                .repo(&repo)
                .tag("latest")
                .build(),
            ContainerConfig {
                labels: Some([("osa.probe".to_string(), tag.clone())].into()),
                ..ContainerConfig::default()
            },
        )
        .await;
    docker
        .remove_container(&base.id, None::<RemoveContainerOptions>)
        .await
        .expect("remove the committed container");
    let committed = committed.expect("commit");
    let image = docker
        .inspect_image(&committed.id)
        .await
        .expect("inspect the committed image");
    let digest = image
        .repo_digests
        .unwrap_or_default()
        .iter()
        .find_map(|d| d.split_once('@').map(|(_, digest)| digest.to_string()))
        .expect("a committed image has a manifest digest");
    let digest = Digest::new(digest).expect("valid digest");
    let mut config = Map::new();
    config.insert("mode".into(), "pass".into());
    let runtime = RuntimeConfig::Oci {
        image: repo.clone(),
        digest: digest.clone(),
        config,
        limits: Limits::default(),
    };
    let first = runner.run(&job(scratch.path(), runtime.clone())).await;
    assert!(first.is_ok(), "{first:?}");

    docker
        .remove_image(
            &committed.id,
            Some(RemoveImageOptionsBuilder::new().force(true).build()),
            None,
        )
        .await
        .expect("remove the probe image");
    let failure = runner
        .run(&job(scratch.path(), runtime))
        .await
        .expect_err("the image is gone");
    assert_eq!(failure.kind, FailureKind::ImagePull, "{failure}");
    assert!(
        failure.detail.contains(&format!("{repo}@{digest}")),
        "{}",
        failure.detail
    );
}

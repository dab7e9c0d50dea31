//! The OCI runner: runs `oci` releases as containers through the Docker Engine API,
//! which Docker serves and Podman serves too (`podman system service`).
//!
//! # What it runs
//!
//! Only `image@digest`, never a tag: the reference is
//! [`RuntimeConfig::pinned_image`] (a tag in the release's `image` is dropped). The
//! runner resolves that reference with the engine (pulling it first when it is missing
//! and the [`PullPolicy`] allows), checks that the image it got lists the pinned digest
//! among its repo digests, and creates the container from that image's *id*, so what
//! runs is exactly what was checked. Only the digest decides: Podman resolves
//! `any-name@sha256:…` by the digest alone. The image's own `ENTRYPOINT`/`CMD` run (a
//! hook image built with the SDK has `ENTRYPOINT ["osa-run-hook"]`).
//!
//! For an image that never came from a registry (`podman import`, `podman build`),
//! the digest to pin is the *manifest* digest the engine recorded for it: Podman's
//! `podman image inspect --format '{{.Digest}}'` (also in `RepoDigests`, as
//! `localhost/name@sha256:…`). The image *id* (`{{.Id}}`, the digest of its config)
//! does not resolve in `name@sha256:…` form on either engine.
//!
//! # What each container gets
//!
//! | setting | value |
//! |---|---|
//! | user | `65534:65534` ([`CONTAINER_USER`]), whatever the image says |
//! | network | `none`: loopback only, no route out, no host port reachable |
//! | root filesystem | read-only |
//! | capabilities | all dropped (`CapDrop ALL`), `no-new-privileges` |
//! | processes | at most 256 ([`PIDS_LIMIT`]) |
//! | memory | `job.limits.memory`, with memory+swap equal to it (no swap) |
//! | cpu | `job.limits.cpu` as a CFS quota (`NanoCpus`) |
//! | `/tmp` | a private tmpfs, `rw,noexec,nosuid,size=100m` ([`TMPFS_OPTIONS`]) |
//! | `/osa/in`, `/osa/files` | the batch's `in/` and `files/`, bound read-only |
//! | `/osa/out` | the batch's `out/`, bound read-write |
//! | environment | `OSA_IN`, `OSA_OUT`, `OSA_FILES`, `OSA_HOOK_NAME`, `HOME=/tmp` |
//! | labels | `osa.runner=oci`, `osa.hook`, `osa.release`, plus [`OciRunner::label`] |
//!
//! Things the engine adds that the runner cannot remove through the Docker API: the
//! image's own `ENV` (its `PATH` among them, which the runner keeps so that the
//! entrypoint is found), `HOSTNAME` (both engines), and under Podman `container=podman`
//! and `TERM=xterm`. Podman also mounts private tmpfs on `/run` and `/var/tmp` when
//! the root filesystem is read-only, and every engine creates the anonymous volumes an
//! image declares with `VOLUME` (removed with the container). Resource limits other
//! than those above (open files, core dumps) are the engine's defaults.
//!
//! The container user must be able to write `out/`, which the engine creates with its
//! own user as owner: before every run the runner makes `out/` mode `0777` and makes
//! sure `in/` and `files/` are readable by everyone (`o+r`, `o+x` on directories).
//! `chmod` rather than `chown`: changing the owner needs privileges, and under rootless
//! Podman or Docker's user-namespace remapping the container's 65534 is a different
//! host uid than 65534 anyway, while the mode works for every engine. Keep the batch
//! root in a directory other users cannot enter (a private temp dir is): for the time
//! of the run, anyone who can reach `out/` can write into it. Files the hook writes
//! belong to the container's user; an engine running as root reads and deletes them
//! as usual.
//!
//! # Guarantees
//!
//! - The wall-clock limit (`job.limits.timeout_seconds`) covers everything from the
//!   call on: resolving (and pulling) the image, creating and starting the container,
//!   and the hook's run. When it strikes, the container is killed (SIGKILL) and the
//!   failure is [`FailureKind::Timeout`].
//! - The container is removed (forced, with its anonymous volumes) on every path:
//!   success, failure, timeout, and when the `run` future is dropped. On the first
//!   three, `run` awaits the removal before it returns. A dropped future cannot await,
//!   so its guard removes the container from a helper thread (with its own connection
//!   to the engine) and blocks the dropping thread until that is done, at most
//!   [`DROP_WAIT`]: as with the process runner, nothing of the execution runs after
//!   the future is gone. The guard disarms only once the removal has succeeded (or
//!   the container is found gone), so a future dropped while `run` awaits the removal
//!   still removes it. If the engine refuses the removal, the failure is noted in the
//!   captured log (`[osa] …`) and the guard, still armed, tries once more from the
//!   helper thread as `run` returns.
//! - stdout and stderr are streamed while the hook runs (the runner attaches to the
//!   container before starting it) and kept up to `job.max_log_bytes`; the rest is
//!   read and dropped, so a chatty hook never blocks. Should attaching fail, the output
//!   is read back from the engine's log after the container stopped (noted in the
//!   log). The engine's log driver also keeps the full output, until the container is
//!   removed, right after the run.
//!
//! # Failure classification
//!
//! - [`FailureKind::ImagePull`]: the pinned image is not in the engine and the pull
//!   policy is [`PullPolicy::Never`], or pulling it failed, or the image the engine
//!   resolved does not carry the pinned digest. The message names the image.
//! - [`FailureKind::Config`]: the release is not `oci`, or the engine refused the
//!   container's configuration (HTTP 400: a limit it cannot apply), or the image's
//!   entrypoint cannot be executed.
//! - [`FailureKind::Oom`]: the engine reports `OOMKilled`; or the hook died of SIGKILL
//!   (exit code 137) that the runner did not send (the kernel's OOM killer ends
//!   processes that way; not every engine sets `OOMKilled`: Podman 4.3 with conmon 2.1
//!   on cgroup v1 does not); or it failed with an allocation-failure marker
//!   ([`OOM_MARKERS`](super::OOM_MARKERS)) in the last lines of its stderr. A
//!   hook that kills itself with SIGKILL is therefore retried with more memory, at most
//!   three times.
//! - [`FailureKind::Timeout`]: the wall-clock limit struck (see above).
//! - [`FailureKind::HookExit`]: any other non-zero exit, with the exit code (`128 + n`
//!   when signal `n` killed the hook).
//! - [`FailureKind::Runtime`]: the engine cannot be reached or failed an operation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as EngineError;
use bollard::models::{ContainerCreateBody, HostConfig, ImageInspect, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    KillContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures::{Stream, StreamExt};

mod client;

use super::exit::{self, Classified, Facts, Limit, SignalCodes};
use super::log::{LogBuffer, Tail};
use super::{Execution, FailureKind, HookRunner, RunFailure, RunJob};
use crate::contract::{BatchLayout, ENV_FILES, ENV_HOOK_NAME, ENV_IN, ENV_OUT};
use crate::id::Digest;
use crate::runtime::RuntimeConfig;
use client::{Endpoint, RawClient, StateReport};

/// `$OSA_IN` inside the container.
pub const CONTAINER_IN: &str = "/osa/in";
/// `$OSA_OUT` inside the container.
pub const CONTAINER_OUT: &str = "/osa/out";
/// `$OSA_FILES` inside the container.
pub const CONTAINER_FILES: &str = "/osa/files";
/// `HOME` inside the container: the private `/tmp`, the one writable place besides
/// `$OSA_OUT`.
pub const CONTAINER_HOME: &str = "/tmp";
/// The user and group every hook runs as (`nobody:nogroup`).
pub const CONTAINER_USER: &str = "65534:65534";
/// The most processes (threads included) a hook may have at once.
pub const PIDS_LIMIT: i64 = 256;
/// Mount options of the private `/tmp`.
pub const TMPFS_OPTIONS: &str = "rw,noexec,nosuid,size=100m";
/// Label carrying the runner's name (`oci`) on every container it creates.
pub const LABEL_RUNNER: &str = "osa.runner";
/// Label carrying the hook name.
pub const LABEL_HOOK: &str = "osa.hook";
/// Label carrying the release id.
pub const LABEL_RELEASE: &str = "osa.release";
/// The longest a dropped `run` future blocks its thread while its container is
/// removed (see the [module docs](self)).
pub const DROP_WAIT: Duration = Duration::from_secs(10);

/// Bound of one engine call on the cleanup paths (kill, remove, inspect).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of reading the logs back after a normal end.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound of reading the logs back after a timeout (the report is due within 2 s).
const LOG_TIMEOUT_AFTER_KILL: Duration = Duration::from_secs(1);
/// How long a killed container may take to stop before the logs are read anyway.
const STOP_WAIT: Duration = Duration::from_secs(1);
/// How long the state is polled for the exit after the container's streams ended.
const STOP_POLL: Duration = Duration::from_millis(500);
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Lines of stderr read back for the OOM markers (of which the last
/// [`STDERR_TAIL_BYTES`](super::log::STDERR_TAIL_BYTES) are kept).
const STDERR_TAIL_LINES: &str = "40";
/// Retries of a removal that found no container while its creation was in flight.
const CREATE_RACE_RETRIES: u32 = 3;
const CREATE_RACE_DELAY: Duration = Duration::from_millis(200);

/// Whether the runner pulls a pinned image the engine does not have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PullPolicy {
    /// Pull `image@digest` when the engine does not have it (counted in the timeout).
    #[default]
    IfMissing,
    /// Never pull: a missing image is an `image_pull` failure at once. For air-gapped
    /// engines and for images loaded out of band (`podman import`, `docker load`).
    Never,
}

/// A user name and password (or token) for pulling from one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// The registry host as image references name it (`ghcr.io`,
    /// `registry.example.org:5000`, `docker.io`).
    pub server: String,
    pub username: String,
    pub password: String,
}

impl RegistryCredentials {
    pub fn new(
        server: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        RegistryCredentials {
            server: server.into(),
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// The registry host of an image reference, as the Docker CLI reads it: the first
/// path component when it has a `.` or `:` or is `localhost`, else Docker Hub.
fn registry_host(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// The engine could not be reached or configured.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OciError {
    message: String,
    #[source]
    source: Option<EngineError>,
}

impl OciError {
    fn new(message: impl Into<String>, source: Option<EngineError>) -> Self {
        OciError {
            message: message.into(),
            source,
        }
    }
}

/// Runs `oci` releases as hardened containers through the Docker Engine API (Docker,
/// or Podman's compatible service). See the [module docs](self) for exactly what each
/// container gets, what is isolated, and how failures are classified.
///
/// ```no_run
/// # async fn demo() -> Result<(), osa_core::runner::oci::OciError> {
/// use osa_core::runner::oci::{OciRunner, PullPolicy};
///
/// // Rootful Podman: `podman system service --time=0 unix:///run/podman/podman.sock`
/// let runner = OciRunner::connect("/run/podman/podman.sock")?
///     .pull_policy(PullPolicy::Never)
///     .label("osa.instance", "archive-1");
/// runner.ping().await?;
/// # Ok(())
/// # }
/// ```
///
/// The image a pinned reference resolves to is remembered (by id) for later runs, so
/// a run costs one engine round trip less; a removed image is noticed and resolved
/// again. Cloning is cheap; clones share that memory.
#[derive(Debug, Clone)]
pub struct OciRunner {
    docker: Docker,
    raw: RawClient,
    endpoint: Endpoint,
    pull: PullPolicy,
    labels: BTreeMap<String, String>,
    /// Credentials for pulls, by registry host.
    registries: Vec<RegistryCredentials>,
    /// Pinned reference → id of the image it resolved to (and was checked against the
    /// digest). An image id names immutable content, so the entry stays right until
    /// the image is removed, which a create then reports (404) and the entry goes.
    images: Arc<Mutex<HashMap<String, String>>>,
}

impl OciRunner {
    /// A runner for the engine listening on the unix socket `socket_path`
    /// (`/var/run/docker.sock`, `/run/podman/podman.sock`, …). Fails when the socket
    /// does not exist; whether the engine answers is checked by [`OciRunner::ping`].
    pub fn connect(socket_path: impl AsRef<Path>) -> Result<Self, OciError> {
        OciRunner::with_endpoint(Endpoint::Unix(socket_path.as_ref().to_path_buf()))
    }

    /// A runner for the engine at `host`: `unix:///path/to.sock`, an absolute socket
    /// path, or `tcp://host:port` (plain HTTP; TLS is not supported).
    pub fn connect_to(host: &str) -> Result<Self, OciError> {
        OciRunner::with_endpoint(Endpoint::parse(host)?)
    }

    /// A runner for the engine named by `DOCKER_HOST` (as [`OciRunner::connect_to`]
    /// reads it), or `/var/run/docker.sock` when it is unset.
    pub fn from_env() -> Result<Self, OciError> {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.trim().is_empty() => OciRunner::connect_to(&host),
            _ => OciRunner::connect("/var/run/docker.sock"),
        }
    }

    fn with_endpoint(endpoint: Endpoint) -> Result<Self, OciError> {
        Ok(OciRunner {
            docker: endpoint.client()?,
            raw: RawClient::new(&endpoint),
            endpoint,
            pull: PullPolicy::default(),
            labels: BTreeMap::new(),
            registries: Vec::new(),
            images: Arc::default(),
        })
    }

    /// Sets whether missing images are pulled (default [`PullPolicy::IfMissing`]).
    pub fn pull_policy(mut self, pull: PullPolicy) -> Self {
        self.pull = pull;
        self
    }

    /// Pulls from `credentials.server` (a registry host such as `ghcr.io` or
    /// `registry.example.org:5000`; `docker.io` for Docker Hub) with these credentials.
    /// A later entry for the same server replaces an earlier one.
    pub fn registry_credentials(mut self, credentials: RegistryCredentials) -> Self {
        self.registries.retain(|r| r.server != credentials.server);
        self.registries.push(credentials);
        self
    }

    /// The credentials for pulling `reference`, by the registry host it names.
    fn credentials_for(&self, reference: &str) -> Option<&RegistryCredentials> {
        let host = registry_host(reference);
        self.registries.iter().find(|r| r.server == host)
    }

    /// Adds a label to every container this runner creates (to find them, or to tell
    /// several engines sharing one daemon apart). The runner's own labels
    /// ([`LABEL_RUNNER`], [`LABEL_HOOK`], [`LABEL_RELEASE`]) cannot be overridden.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The engine's address, as `unix:///path` or `tcp://host:port`.
    pub fn endpoint(&self) -> String {
        self.endpoint.to_string()
    }

    /// Checks that the engine answers (`GET /_ping`) within 10 s.
    pub async fn ping(&self) -> Result<(), OciError> {
        match tokio::time::timeout(CALL_TIMEOUT, self.docker.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(OciError::new(
                format!(
                    "the container engine at {} does not answer: {e}",
                    self.endpoint
                ),
                Some(e),
            )),
            Err(_) => Err(OciError::new(
                format!(
                    "the container engine at {} did not answer within {} s",
                    self.endpoint,
                    CALL_TIMEOUT.as_secs()
                ),
                None,
            )),
        }
    }
}

#[async_trait]
impl HookRunner for OciRunner {
    fn name(&self) -> &'static str {
        "oci"
    }

    async fn run(&self, job: &RunJob) -> Result<Execution, RunFailure> {
        let started = Instant::now();
        let with_duration = |mut failure: RunFailure| {
            failure.duration = started.elapsed();
            failure
        };
        let (pinned, digest) = match (&job.runtime, job.runtime.pinned_image()) {
            (RuntimeConfig::Oci { digest, .. }, Some(pinned)) => (pinned, digest.clone()),
            (other, _) => {
                return Err(with_duration(RunFailure::new(
                    FailureKind::Config,
                    format!(
                        "the OCI runner runs `oci` releases; this release is `{}`",
                        other.type_name()
                    ),
                )));
            }
        };
        let batch = job.batch.clone();
        tokio::task::spawn_blocking(move || open_batch_for_container(&batch))
            .await
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| {
                with_duration(RunFailure::new(
                    FailureKind::Runtime,
                    format!(
                        "preparing the batch {} for the container user: {e}",
                        job.batch.root.display()
                    ),
                ))
            })?;

        let timeout = Duration::from_secs(job.limits.timeout_seconds.into());
        let deadline = tokio::time::Instant::from_std(started) + timeout;
        let mut container = ContainerGuard::new(&self.endpoint, container_name(job));
        let mut phase = Phase::Resolving;
        let mut capture = Capture::new(job.max_log_bytes);
        let attempt = tokio::time::timeout_at(
            deadline,
            self.execute(
                job,
                &pinned,
                &digest,
                &mut container,
                &mut phase,
                &mut capture,
            ),
        )
        .await;

        let ending = match attempt {
            Ok(Ok(ending)) => Some(ending),
            Ok(Err(failure)) => {
                // The hook never ran (or its entrypoint failed to start); keep whatever
                // output a created container has.
                if let GuardState::Created(id) = &container.state
                    && !capture.streamed
                {
                    let id = id.clone();
                    self.read_log_into(&id, &mut capture.log, LOG_TIMEOUT).await;
                }
                capture.log.add_notes(container.remove(&self.docker).await);
                return Err(with_duration(RunFailure {
                    log: capture.log.finish(),
                    ..failure
                }));
            }
            Err(_elapsed) => {
                if let Some(target) = container.target() {
                    // The removal kills it anyway; killing first stops the hook at
                    // once, and a log that is read back needs it stopped.
                    let settle = !capture.streamed;
                    capture.log.add_notes(self.kill(&target, settle).await);
                }
                None
            }
        };
        let timed_out = ending.is_none();
        if let Some(target) = container.target()
            && !capture.streamed
        {
            // The output could not be streamed: read it back from the engine's log.
            let bound = if timed_out {
                LOG_TIMEOUT_AFTER_KILL
            } else {
                LOG_TIMEOUT
            };
            self.read_log_into(&target, &mut capture.log, bound).await;
            let failed_exit = ending
                .as_ref()
                .is_some_and(|e| e.exit_code != 0 && !e.oom_killed);
            if failed_exit && capture.log.is_truncated() {
                let tail = self.read_stderr_tail(&target).await;
                capture.log.replace_stderr_tail(tail);
            }
        }
        capture.log.add_notes(container.remove(&self.docker).await);
        let duration = started.elapsed();
        let classified = classify(
            ending.as_ref(),
            timed_out.then_some((job.limits.timeout_seconds, phase)),
            capture.log.stderr_tail(),
            &pinned,
        );
        exit::outcome(classified, capture.log.finish(), duration)
    }
}

/// Where an execution was when the deadline struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Resolving,
    Creating,
    Running,
}

/// How the container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ending {
    exit_code: i64,
    oom_killed: bool,
}

impl OciRunner {
    /// Resolves the image, creates and starts the container, and waits for it to stop.
    /// Runs under the deadline; everything it creates is in `container`.
    async fn execute(
        &self,
        job: &RunJob,
        pinned: &str,
        digest: &Digest,
        container: &mut ContainerGuard,
        phase: &mut Phase,
        capture: &mut Capture,
    ) -> Result<Ending, RunFailure> {
        let image_id = self.resolve_image(pinned, digest).await?;
        *phase = Phase::Creating;
        let body = self.container_body(job, &image_id);
        let options = CreateContainerOptionsBuilder::new()
            .name(&container.name)
            .build();
        container.state = GuardState::Creating;
        let created = match self
            .docker
            .create_container(Some(options.clone()), body)
            .await
        {
            Ok(created) => created,
            Err(e) if status_of(&e) == Some(404) => {
                // The image was removed from the engine since it was resolved: resolve
                // it again (pulling it if the policy allows), once.
                self.forget_image(pinned);
                let image_id = self.resolve_image(pinned, digest).await?;
                let body = self.container_body(job, &image_id);
                self.docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(|e| self.create_failure(pinned, e))?
            }
            Err(e) => return Err(self.create_failure(pinned, e)),
        };
        container.state = GuardState::Created(created.id.clone());
        let id = created.id;
        // Attached before the start, the output arrives as it is written (the cap
        // applies while streaming, the rest is read and dropped so the hook never
        // blocks on a full pipe), and Podman notices the exit at once instead of
        // hundreds of milliseconds later.
        let attach = AttachContainerOptionsBuilder::new()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .build();
        let attached = self.docker.attach_container(&id, Some(attach)).await;
        let attached = match attached {
            Ok(attached) => {
                capture.streamed = true;
                Some(attached)
            }
            Err(e) => {
                capture.log.note(format!(
                    "attaching to the container failed ({e}); its output is read back from \
                     the engine's log instead"
                ));
                None
            }
        };
        self.docker
            .start_container(&id, None)
            .await
            .map_err(|e| start_failure(pinned, e))?;
        *phase = Phase::Running;
        let (input, output) = match attached {
            Some(attached) => (Some(attached.input), Some(attached.output)),
            None => (None, None),
        };
        // The attached streams end when the container's processes are gone.
        let streamed_to_end = drain(output, &mut capture.log).await;
        // Kept open until here: closing our half of the attach connection may end the
        // stream early.
        drop(input);
        let state = self
            .stopped_state(&id, streamed_to_end)
            .await
            .map_err(|e| {
                RunFailure::new(
                    FailureKind::Runtime,
                    format!(
                        "learning how the container of {pinned} ended failed: {e} (container \
                         engine at {})",
                        self.endpoint
                    ),
                )
            })?;
        container.stopped = true;
        Ok(Ending {
            exit_code: state.exit_code,
            oom_killed: state.oom_killed,
        })
    }

    /// The state of a container that stopped, or is about to: its streams ended
    /// (`streamed_to_end`), or else it is waited for.
    ///
    /// Reads the state with [`RawClient`] rather than bollard's typed inspection, which
    /// rejects Podman's `stopped` status (exited, not yet cleaned up); Podman reports
    /// that status within milliseconds of the exit, while its `exited` status (and so
    /// the answer to a Docker `wait`) comes hundreds of milliseconds later.
    async fn stopped_state(&self, id: &str, streamed_to_end: bool) -> Result<StateReport, String> {
        if streamed_to_end {
            let until = Instant::now() + STOP_POLL;
            loop {
                let state = self.raw.container_state(id).await?;
                if state.has_stopped() {
                    return Ok(state);
                }
                if Instant::now() >= until {
                    break;
                }
                tokio::time::sleep(STOP_POLL_INTERVAL).await;
            }
        }
        // No stream, a stream that broke off, or an engine slow to record the exit.
        let wait = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        match self.docker.wait_container(id, Some(wait)).next().await {
            // bollard reports a non-zero status as an error; either way it stopped.
            Some(Ok(_)) | Some(Err(EngineError::DockerContainerWaitError { .. })) | None => {}
            Some(Err(e)) => return Err(format!("waiting for the container failed: {e}")),
        }
        let state = self.raw.container_state(id).await?;
        if state.has_stopped() {
            Ok(state)
        } else {
            Err(format!(
                "the engine reported the container stopped, then `{}`",
                state.status
            ))
        }
    }

    /// Finds (or pulls) `pinned` and returns the id of the image to run, after checking
    /// that it carries `digest`.
    async fn resolve_image(&self, pinned: &str, digest: &Digest) -> Result<String, RunFailure> {
        if let Some(id) = self.resolved_image(pinned) {
            return Ok(id);
        }
        let image = match self.docker.inspect_image(pinned).await {
            Ok(image) => image,
            Err(e) if status_of(&e) == Some(404) => {
                if self.pull == PullPolicy::Never {
                    return Err(RunFailure::new(
                        FailureKind::ImagePull,
                        format!(
                            "image {pinned} is not in the container engine at {} and the pull \
                             policy is `never`; load it into the engine first",
                            self.endpoint
                        ),
                    ));
                }
                self.pull(pinned).await?;
                self.docker.inspect_image(pinned).await.map_err(|e| {
                    RunFailure::new(
                        FailureKind::ImagePull,
                        format!("image {pinned} was pulled but cannot be inspected: {e}"),
                    )
                })?
            }
            Err(e) => return Err(self.engine_failure(&format!("inspecting image {pinned}"), &e)),
        };
        let id = check_pinned(&image, pinned, digest)?;
        self.images
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pinned.to_string(), id.clone());
        Ok(id)
    }

    /// The image id `pinned` resolved to before, if any.
    fn resolved_image(&self, pinned: &str) -> Option<String> {
        self.images
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(pinned)
            .cloned()
    }

    /// Forgets what `pinned` resolved to (the image was removed from the engine).
    fn forget_image(&self, pinned: &str) {
        self.images
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(pinned);
    }

    async fn pull(&self, pinned: &str) -> Result<(), RunFailure> {
        let options = CreateImageOptionsBuilder::new().from_image(pinned).build();
        let credentials = self
            .credentials_for(pinned)
            .map(|c| bollard::auth::DockerCredentials {
                username: Some(c.username.clone()),
                password: Some(c.password.clone()),
                serveraddress: Some(c.server.clone()),
                ..Default::default()
            });
        let mut progress = self.docker.create_image(Some(options), None, credentials);
        while let Some(item) = progress.next().await {
            let info = item.map_err(|e| {
                RunFailure::new(
                    FailureKind::ImagePull,
                    format!("pulling image {pinned} failed: {e}"),
                )
            })?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(RunFailure::new(
                    FailureKind::ImagePull,
                    format!("pulling image {pinned} failed: {error}"),
                ));
            }
        }
        Ok(())
    }

    /// The container's configuration (see the table in the module docs).
    fn container_body(&self, job: &RunJob, image_id: &str) -> ContainerCreateBody {
        let mut labels: HashMap<String, String> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert(LABEL_RUNNER.into(), "oci".into());
        labels.insert(LABEL_HOOK.into(), job.hook.as_str().into());
        labels.insert(LABEL_RELEASE.into(), job.release_id.to_string());
        let memory = i64::try_from(job.limits.memory.bytes()).unwrap_or(i64::MAX);
        let bind = |source: &Path, target: &str, read_only: bool| Mount {
            typ: Some(MountType::BIND),
            source: Some(source.to_string_lossy().into_owned()),
            target: Some(target.into()),
            read_only: Some(read_only),
            ..Mount::default()
        };
        let host_config = HostConfig {
            network_mode: Some("none".into()),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            pids_limit: Some(PIDS_LIMIT),
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some(job.limits.cpu.nano_cpus()),
            tmpfs: Some([("/tmp".to_string(), TMPFS_OPTIONS.to_string())].into()),
            mounts: Some(vec![
                bind(&job.batch.input, CONTAINER_IN, true),
                bind(&job.batch.files, CONTAINER_FILES, true),
                bind(&job.batch.output, CONTAINER_OUT, false),
            ]),
            privileged: Some(false),
            auto_remove: Some(false),
            ..HostConfig::default()
        };
        ContainerCreateBody {
            image: Some(image_id.into()),
            user: Some(CONTAINER_USER.into()),
            env: Some(vec![
                format!("{ENV_IN}={CONTAINER_IN}"),
                format!("{ENV_OUT}={CONTAINER_OUT}"),
                format!("{ENV_FILES}={CONTAINER_FILES}"),
                format!("{ENV_HOOK_NAME}={}", job.hook.as_str()),
                format!("HOME={CONTAINER_HOME}"),
            ]),
            labels: Some(labels),
            attach_stdin: Some(false),
            open_stdin: Some(false),
            tty: Some(false),
            network_disabled: Some(true),
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        }
    }

    fn create_failure(&self, pinned: &str, error: EngineError) -> RunFailure {
        match status_of(&error) {
            Some(404) => RunFailure::new(
                FailureKind::ImagePull,
                format!(
                    "image {pinned} vanished from the engine before its container was created: {error}"
                ),
            ),
            Some(400) => RunFailure::new(
                FailureKind::Config,
                format!("the container engine refused the container for {pinned}: {error}"),
            ),
            _ => self.engine_failure(&format!("creating the container for {pinned}"), &error),
        }
    }

    fn engine_failure(&self, what: &str, error: &EngineError) -> RunFailure {
        RunFailure::new(
            FailureKind::Runtime,
            format!(
                "{what} failed: {error} (container engine at {})",
                self.endpoint
            ),
        )
    }

    /// SIGKILLs the container; with `settle`, waits (at most [`STOP_WAIT`]) until the
    /// engine shows it stopped, so that its log is complete. Returns a note when the
    /// kill failed.
    async fn kill(&self, target: &str, settle: bool) -> Option<String> {
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        let killed = tokio::time::timeout(
            CALL_TIMEOUT,
            self.docker.kill_container(target, Some(options)),
        )
        .await;
        if let Ok(Err(e)) = &killed
            && !matches!(status_of(e), Some(404 | 409))
            && !is_not_running(e)
        {
            return Some(format!("killing container {target} failed: {e}"));
        }
        if settle {
            let _ = tokio::time::timeout(STOP_WAIT, async {
                while !self
                    .raw
                    .container_state(target)
                    .await
                    .is_ok_and(|state| state.has_stopped())
                {
                    tokio::time::sleep(STOP_POLL_INTERVAL).await;
                }
            })
            .await;
        }
        None
    }

    /// Reads stdout and stderr back from the engine's log into `log`, interleaved as
    /// written, until the cap (a fallback for when attaching failed).
    async fn read_log_into(&self, target: &str, log: &mut LogBuffer, bound: Duration) {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        let mut stream = self.docker.logs(target, Some(options));
        let mut failed = None;
        let read = tokio::time::timeout(bound, async {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(output) => {
                        if !push_output(log, output) {
                            // Past the cap: stop reading, the rest is dropped.
                            return;
                        }
                    }
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                }
            }
        })
        .await;
        if let Some(e) = failed {
            log.note(format!("reading the container's output failed: {e}"));
        }
        if read.is_err() {
            log.note(format!(
                "stopped reading the container's output after {} s",
                bound.as_secs_f32()
            ));
        }
    }

    /// The last lines of stderr (for the OOM markers), at most
    /// [`STDERR_TAIL_BYTES`](super::log::STDERR_TAIL_BYTES).
    async fn read_stderr_tail(&self, target: &str) -> Tail {
        let options = LogsOptionsBuilder::new()
            .stderr(true)
            .tail(STDERR_TAIL_LINES)
            .build();
        let mut tail = Tail::default();
        let mut stream = self.docker.logs(target, Some(options));
        let _ = tokio::time::timeout(LOG_TIMEOUT, async {
            while let Some(Ok(output)) = stream.next().await {
                tail.push(&output.into_bytes());
            }
        })
        .await;
        tail
    }
}

/// Checks that the image resolved for `pinned` carries `digest`; returns its id.
fn check_pinned(image: &ImageInspect, pinned: &str, digest: &Digest) -> Result<String, RunFailure> {
    let id = image.id.clone().ok_or_else(|| {
        RunFailure::new(
            FailureKind::Runtime,
            format!("the container engine described image {pinned} without an id"),
        )
    })?;
    let suffix = format!("@{digest}");
    let repo_digests = image.repo_digests.as_deref().unwrap_or_default();
    if repo_digests.iter().any(|d| d.ends_with(&suffix)) {
        Ok(id)
    } else {
        Err(RunFailure::new(
            FailureKind::ImagePull,
            format!(
                "the container engine resolved {pinned} to image {id}, whose repo digests \
                 {repo_digests:?} do not include {digest}; refusing to run an image that is not \
                 the pinned one"
            ),
        ))
    }
}

fn start_failure(pinned: &str, error: EngineError) -> RunFailure {
    let message = error.to_string();
    let lower = message.to_ascii_lowercase();
    let kind = if [
        "executable file not found",
        "no such file or directory",
        "permission denied",
        "exec format error",
    ]
    .iter()
    .any(|m| lower.contains(m))
    {
        FailureKind::Config
    } else {
        FailureKind::Runtime
    };
    RunFailure::new(
        kind,
        format!("the container of {pinned} could not start its entrypoint: {message}"),
    )
}

/// The HTTP status of an engine error, if it was one.
fn status_of(error: &EngineError) -> Option<u16> {
    match error {
        EngineError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Whether a kill failed only because the container had stopped already (Docker says
/// 409, Podman 500 with this text).
fn is_not_running(error: &EngineError) -> bool {
    let message = error.to_string().to_ascii_lowercase();
    message.contains("not running") || message.contains("container state improper")
}

/// `osa-<hook>-<uuid>`: unique, valid for both engines, readable in `ps`.
fn container_name(job: &RunJob) -> String {
    format!(
        "osa-{}-{}",
        job.hook.as_str(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Makes `out/` writable and `in/`, `files/` readable for the container user (see the
/// module docs).
fn open_batch_for_container(batch: &BatchLayout) -> io::Result<()> {
    let output = &batch.output;
    fs::set_permissions(output, fs::Permissions::from_mode(0o777))
        .map_err(|e| io::Error::new(e.kind(), format!("chmod 0777 {}: {e}", output.display())))?;
    for dir in [&batch.input, &batch.files] {
        make_world_readable(dir)?;
    }
    Ok(())
}

/// Adds `o+r` (and `o+x` on directories) where missing, recursively. Symlinks are left
/// alone (the batch has none; a link would point outside the mount anyway).
fn make_world_readable(path: &Path) -> io::Result<()> {
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let meta = fs::symlink_metadata(path).map_err(with_path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let wanted = if meta.is_dir() { 0o005 } else { 0o004 };
    let mode = meta.permissions().mode();
    if mode & wanted != wanted {
        fs::set_permissions(path, fs::Permissions::from_mode((mode | wanted) & 0o7777))
            .map_err(with_path)?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(with_path)? {
            make_world_readable(&entry.map_err(with_path)?.path())?;
        }
    }
    Ok(())
}

/// The output of one execution: the log, and whether it was streamed live (attached);
/// otherwise it must be read back from the engine's log.
#[derive(Debug)]
struct Capture {
    log: LogBuffer,
    streamed: bool,
}

impl Capture {
    fn new(max_log_bytes: usize) -> Self {
        Capture {
            log: LogBuffer::new(max_log_bytes),
            streamed: false,
        }
    }
}

/// Appends one item of the engine's output stream to `log`; `false` once output has
/// been dropped.
fn push_output(log: &mut LogBuffer, output: LogOutput) -> bool {
    let stderr = matches!(output, LogOutput::StdErr { .. });
    log.push(&output.into_bytes(), stderr)
}

/// The attached output stream of a container.
type OutputStream = Pin<Box<dyn Stream<Item = Result<LogOutput, EngineError>> + Send>>;

/// Reads the attached output to its end into `log` (past the cap it is read and
/// dropped, so the hook never blocks on its output). `true` when the stream ended
/// normally, which means the container's processes are gone.
async fn drain(output: Option<OutputStream>, log: &mut LogBuffer) -> bool {
    let Some(mut output) = output else {
        return false;
    };
    while let Some(item) = output.next().await {
        match item {
            Ok(output) => {
                push_output(log, output);
            }
            Err(e) => {
                log.note(format!("reading the container's output failed: {e}"));
                return false;
            }
        }
    }
    true
}

/// Classifies how a run ended (see the module docs); `None` is success. `timed_out`
/// carries the limit and where the run was when it struck.
fn classify(
    ending: Option<&Ending>,
    timed_out: Option<(u32, Phase)>,
    stderr_tail: &[u8],
    pinned: &str,
) -> Option<Classified> {
    if let Some((seconds, phase)) = timed_out {
        let detail = match phase {
            Phase::Resolving => format!(
                "the wall-clock limit of {seconds} s struck while resolving image {pinned}; no \
                 container was started"
            ),
            Phase::Creating => format!(
                "the wall-clock limit of {seconds} s struck while creating the container for \
                 {pinned}; it was removed"
            ),
            Phase::Running => format!(
                "the hook ran past its wall-clock limit of {seconds} s; its container was killed"
            ),
        };
        // The deadline wins over whatever the container did afterwards; no exit code
        // is reported.
        return exit::classify(&Facts {
            ending: None,
            limit: Some(Limit::Timeout(detail)),
            stderr_tail,
            signal_codes: SignalCodes::AsSignal,
        });
    }
    let limit = ending.filter(|ending| ending.oom_killed).map(|ending| {
        Limit::Memory(format!(
            "the container was killed for exceeding its memory limit (OOMKilled, exit code \
                 {})",
            ending.exit_code
        ))
    });
    exit::classify(&Facts {
        ending: ending.map(|ending| exit::Ending::Exited(ending.exit_code)),
        limit,
        stderr_tail,
        // Engines report a death by signal `n` as exit code `128 + n`.
        signal_codes: SignalCodes::AsSignal,
    })
}

/// What a [`ContainerGuard`] has to clean up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GuardState {
    /// Nothing created yet.
    Empty,
    /// A create request was sent; the container may or may not exist (by name).
    Creating,
    /// The container exists (by id).
    Created(String),
    /// Removed, or never to be touched again.
    Done,
}

/// Removes the container of one execution on every path: awaited by `run` on the
/// normal paths ([`ContainerGuard::remove`]), from a helper thread when dropped armed.
#[derive(Debug)]
struct ContainerGuard {
    endpoint: Endpoint,
    name: String,
    state: GuardState,
    /// The container is known to have stopped (no kill needed before removal).
    stopped: bool,
}

impl ContainerGuard {
    fn new(endpoint: &Endpoint, name: String) -> Self {
        ContainerGuard {
            endpoint: endpoint.clone(),
            name,
            state: GuardState::Empty,
            stopped: false,
        }
    }

    /// The container's id, or its name while the creation is in flight.
    fn target(&self) -> Option<String> {
        match &self.state {
            GuardState::Created(id) => Some(id.clone()),
            GuardState::Creating => Some(self.name.clone()),
            GuardState::Empty | GuardState::Done => None,
        }
    }

    /// Removes the container (if any); a note when the engine refused.
    ///
    /// Disarms only once the container is gone: if this future is dropped while the
    /// removal is in flight, or the engine fails it, the guard stays armed and its
    /// `Drop` tries again.
    async fn remove(&mut self, docker: &Docker) -> Option<String> {
        let creating = self.state == GuardState::Creating;
        let target = self.target()?;
        match destroy(docker, &target, creating, !self.stopped).await {
            Ok(()) => {
                self.state = GuardState::Done;
                None
            }
            Err(note) => Some(note),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let creating = self.state == GuardState::Creating;
        let running = !self.stopped;
        let Some(target) = self.target() else {
            return;
        };
        let endpoint = self.endpoint.clone();
        let (done, finished) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("osa-oci-cleanup".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        format!("cannot start a runtime to remove container {target}: {e}")
                    })
                    .and_then(|runtime| {
                        let docker = endpoint.client().map_err(|e| e.to_string())?;
                        runtime.block_on(destroy(&docker, &target, creating, running))
                    });
                let _ = done.send(result);
            });
        if spawned.is_ok() {
            // Blocks the dropping thread (see DROP_WAIT; the runtime's other tasks move
            // to other threads meanwhile); the helper thread goes on alone if the
            // engine is slower than that.
            let _ = super::wait_in_drop(|| finished.recv_timeout(DROP_WAIT));
        }
    }
}

/// SIGKILLs (when it may be `running`) and force-removes `target` with its anonymous
/// volumes. A missing container counts as removed, except while its creation may
/// still be in flight, where the removal is retried a few times.
async fn destroy(
    docker: &Docker,
    target: &str,
    creating: bool,
    running: bool,
) -> Result<(), String> {
    if running {
        let kill = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        // A forced removal stops a running container with the engine's grace period
        // (SIGTERM, which a hook running as pid 1 ignores); SIGKILL first.
        let _ = tokio::time::timeout(CALL_TIMEOUT, docker.kill_container(target, Some(kill))).await;
    }
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    let mut attempt = 0;
    loop {
        let removed = tokio::time::timeout(
            CALL_TIMEOUT,
            docker.remove_container(target, Some(options.clone())),
        )
        .await;
        match removed {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if status_of(&e) == Some(404) => {
                if creating && attempt < CREATE_RACE_RETRIES {
                    attempt += 1;
                    tokio::time::sleep(CREATE_RACE_DELAY).await;
                    continue;
                }
                return Ok(());
            }
            Ok(Err(e)) => return Err(format!("removing container {target} failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "removing container {target} did not finish within {} s",
                    CALL_TIMEOUT.as_secs()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(exit_code: i64, oom_killed: bool) -> Ending {
        Ending {
            exit_code,
            oom_killed,
        }
    }

    fn kind(ending: Ending, stderr: &str) -> Option<FailureKind> {
        classify(Some(&ending), None, stderr.as_bytes(), "img@sha256:x").map(|c| c.kind)
    }

    #[test]
    fn pulls_use_the_credentials_of_the_reference_s_registry() {
        assert_eq!(registry_host("ghcr.io/org/hook@sha256:ab"), "ghcr.io");
        assert_eq!(
            registry_host("registry.local:5000/hook@sha256:ab"),
            "registry.local:5000"
        );
        assert_eq!(
            registry_host("localhost/osa-test-hook@sha256:ab"),
            "localhost"
        );
        assert_eq!(registry_host("library/python@sha256:ab"), "docker.io");
        assert_eq!(registry_host("python@sha256:ab"), "docker.io");

        let runner = OciRunner::connect_to("tcp://127.0.0.1:1")
            .expect("a runner (nothing is contacted)")
            .registry_credentials(RegistryCredentials::new("ghcr.io", "bot", "old"))
            .registry_credentials(RegistryCredentials::new("docker.io", "hub", "pw"))
            .registry_credentials(RegistryCredentials::new("ghcr.io", "bot", "new"));
        let ghcr = runner
            .credentials_for("ghcr.io/org/hook@sha256:ab")
            .expect("ghcr");
        assert_eq!(
            ghcr.password, "new",
            "a later entry replaces an earlier one"
        );
        assert_eq!(
            runner
                .credentials_for("python@sha256:ab")
                .expect("hub")
                .username,
            "hub"
        );
        assert!(runner.credentials_for("quay.io/x@sha256:ab").is_none());
        assert!(
            !format!("{ghcr:?}").contains("new"),
            "Debug hides the password"
        );
    }

    #[test]
    fn classification() {
        assert_eq!(kind(ended(0, false), ""), None);
        assert_eq!(kind(ended(0, false), "MemoryError"), None);
        assert_eq!(kind(ended(137, true), ""), Some(FailureKind::Oom));
        // OOMKilled wins even over a clean-looking exit code.
        assert_eq!(kind(ended(0, true), ""), Some(FailureKind::Oom));
        assert_eq!(kind(ended(137, false), ""), Some(FailureKind::Oom));
        assert_eq!(
            kind(
                ended(134, false),
                "memory allocation of 41943040 bytes failed\n"
            ),
            Some(FailureKind::Oom)
        );
        assert_eq!(
            kind(ended(1, false), "Traceback\nMemoryError\n"),
            Some(FailureKind::Oom)
        );
        assert_eq!(
            kind(ended(3, false), "ValueError"),
            Some(FailureKind::HookExit)
        );
        assert_eq!(kind(ended(139, false), ""), Some(FailureKind::HookExit));
        let c = classify(Some(&ended(3, false)), None, b"", "i").unwrap();
        assert_eq!(c.exit_code, Some(3));
        assert_eq!(c.detail, "the hook exited with code 3");
        let c = classify(Some(&ended(139, false)), None, b"", "i").unwrap();
        assert!(c.detail.contains("signal 11"), "{}", c.detail);
    }

    #[test]
    fn timeouts_name_the_phase() {
        for (phase, words) in [
            (Phase::Resolving, "resolving image img@sha256:x"),
            (Phase::Creating, "creating the container"),
            (Phase::Running, "its container was killed"),
        ] {
            let c = classify(None, Some((2, phase)), b"", "img@sha256:x").unwrap();
            assert_eq!(c.kind, FailureKind::Timeout);
            assert!(
                c.detail.contains("2 s") && c.detail.contains(words),
                "{}",
                c.detail
            );
        }
        // The deadline wins over whatever the container did afterwards.
        let c = classify(Some(&ended(0, false)), Some((1, Phase::Running)), b"", "i").unwrap();
        assert_eq!(c.kind, FailureKind::Timeout);
    }

    #[test]
    fn pinned_digest_is_checked() {
        let digest = Digest::new(format!("sha256:{}", "a".repeat(64))).unwrap();
        let image = ImageInspect {
            id: Some("sha256:cfg".into()),
            repo_digests: Some(vec![format!("localhost/hook@{digest}")]),
            ..ImageInspect::default()
        };
        assert_eq!(
            check_pinned(&image, "hook@x", &digest).unwrap(),
            "sha256:cfg"
        );
        let other = ImageInspect {
            repo_digests: Some(vec![format!("localhost/hook@sha256:{}", "b".repeat(64))]),
            ..image
        };
        let err = check_pinned(&other, "hook@x", &digest).unwrap_err();
        assert_eq!(err.kind, FailureKind::ImagePull);
        assert!(err.detail.contains("hook@x"), "{}", err.detail);
    }

    #[test]
    fn batch_is_opened_for_the_container_user() {
        let dir = tempfile::tempdir().unwrap();
        let batch = BatchLayout::at(dir.path().join("b"));
        for d in [&batch.input, &batch.files, &batch.output] {
            fs::create_dir_all(d).unwrap();
            fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
        }
        let record = batch.files.join("rec");
        fs::create_dir(&record).unwrap();
        fs::write(record.join("a.bin"), b"x").unwrap();
        fs::set_permissions(record.join("a.bin"), fs::Permissions::from_mode(0o600)).unwrap();
        open_batch_for_container(&batch).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&batch.output), 0o777);
        assert_eq!(mode(&batch.input), 0o705);
        assert_eq!(mode(&batch.files), 0o705);
        assert_eq!(mode(&record.join("a.bin")), 0o604);
    }

    /// A `remove` cancelled while the engine has not answered leaves the guard armed,
    /// so that its `Drop` still removes the container.
    #[tokio::test]
    async fn a_cancelled_removal_leaves_the_guard_armed() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        // Accepts connections (backlog) but never answers.
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let endpoint = Endpoint::Unix(socket);
        let docker = endpoint.client().unwrap();
        let mut guard = ContainerGuard::new(&endpoint, "osa-test".into());
        guard.state = GuardState::Created("abc123".into());
        let removal = tokio::time::timeout(Duration::from_millis(200), guard.remove(&docker)).await;
        assert!(removal.is_err(), "the silent engine cannot have answered");
        assert_eq!(guard.target().as_deref(), Some("abc123"));
        // Disarm by hand: this engine would never answer the cleanup either.
        guard.state = GuardState::Done;
    }
}

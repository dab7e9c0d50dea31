//! The deploy service: every convention deploy, release and live change is audited.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use serde_json::json;

use super::{
    DeployApplied, DeployConvention, Deployment, DeploymentEvent, DeploymentFilter, DeploymentKind,
    DeploymentLog, DeploymentStatus, NewDeployment, ReleaseRequest, parse_payload,
};
use crate::blob::{BlobKeys, Blobs};
use crate::hook::{LiveChange, ReleaseOutcome};
use crate::id::{ConventionSlug, DeploymentId, Digest, HookName};
use crate::registry::HookRegistry;
use crate::{Error, Result};

/// What a deploy did, with its audit row.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployOutcome<T> {
    /// The audit row (status `succeeded`).
    pub deployment: Deployment,
    /// What was applied.
    pub applied: T,
}

/// Applies deploys and records each one: payload stored as a blob with its sha256 and
/// size, status `pending → applying → succeeded | failed`, and events.
///
/// The principal always comes from the caller (a verified token), never from a
/// payload.
#[derive(Clone)]
pub struct Deployer {
    log: Arc<dyn DeploymentLog>,
    registry: Arc<dyn HookRegistry>,
    blobs: Blobs,
}

impl std::fmt::Debug for Deployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployer").finish_non_exhaustive()
    }
}

impl Deployer {
    /// A deployer over a backend implementing both ports.
    pub fn new<S: DeploymentLog + HookRegistry + 'static>(storage: Arc<S>, blobs: Blobs) -> Self {
        Deployer {
            log: storage.clone(),
            registry: storage,
            blobs,
        }
    }

    /// Records a deployment of `bytes` (the canonical payload) and moves it to
    /// `applying`.
    async fn open(
        &self,
        kind: DeploymentKind,
        target: String,
        principal: &str,
        bytes: Vec<u8>,
    ) -> Result<Deployment> {
        let id = DeploymentId::new_random();
        let payload_ref = BlobKeys::deployment_payload(id);
        let payload_sha256 = Digest::of_bytes(&bytes);
        let payload_size = bytes.len() as u64;
        self.blobs.put(&payload_ref, bytes).await?;
        let deployment = self
            .log
            .record_deployment(&NewDeployment {
                id,
                kind,
                target,
                principal: principal.to_string(),
                payload_sha256,
                payload_size,
                payload_ref: payload_ref.to_string(),
                // A live change records the release it replaced as it applies.
                rollback_of: None,
            })
            .await?;
        // Recorded: from here on an error closes the row as failed.
        let started = async {
            self.log
                .append_deployment_event(id, "received", json!({"size": payload_size}))
                .await?;
            self.log
                .set_deployment_status(id, DeploymentStatus::Applying, None)
                .await?;
            self.log
                .append_deployment_event(id, "applying", json!({}))
                .await
        };
        match started.await {
            Ok(_) => Ok(deployment),
            Err(error) => Err(self.fail(id, error).await),
        }
    }

    /// Marks a deployment failed with `error` and returns the error. The audit row
    /// keeps the error's public text: a fault of the server or the database is
    /// recorded as such, its detail only in the log.
    async fn fail(&self, id: DeploymentId, error: Error) -> Error {
        tracing::warn!(deployment = %id, kind = error.kind().as_str(), error = %error, "deployment failed");
        let message = error.public_message();
        let _ = self
            .log
            .append_deployment_event(
                id,
                "failed",
                json!({"error": message, "kind": error.kind().as_str()}),
            )
            .await;
        let _ = self
            .log
            .set_deployment_status(id, DeploymentStatus::Failed, Some(&message))
            .await;
        error
    }

    /// Records a deployment of a body refused before anything was applied (it does not
    /// parse) as failed with `error`, so every attempt leaves a trace; returns the
    /// error (or the one that stopped the recording).
    async fn refuse(
        &self,
        kind: DeploymentKind,
        target: &str,
        principal: &str,
        body: &[u8],
        error: Error,
    ) -> Error {
        match self
            .open(kind, target.to_string(), principal, body.to_vec())
            .await
        {
            Ok(deployment) => self.fail(deployment.id, error).await,
            Err(recording) => recording,
        }
    }

    async fn succeeded(&self, id: DeploymentId) -> Result<Deployment> {
        tracing::info!(deployment = %id, "deployment succeeded");
        self.log
            .append_deployment_event(id, "succeeded", json!({}))
            .await?;
        self.log
            .get_deployment(id)
            .await?
            .ok_or_else(|| Error::internal(format!("deployment {id} vanished")))
    }

    /// Deploys a convention from a request body. A body that does not parse is still
    /// audited (target `-`), so every attempt leaves a trace. Runs on its own task:
    /// a caller that stops waiting does not cut it short, and its audit row is closed.
    pub async fn deploy(
        &self,
        body: &[u8],
        principal: &str,
    ) -> Result<DeployOutcome<DeployApplied>> {
        let (this, body, principal) = (self.clone(), body.to_vec(), principal.to_string());
        detached(async move { this.deploy_here(&body, &principal).await }).await
    }

    async fn deploy_here(
        &self,
        body: &[u8],
        principal: &str,
    ) -> Result<DeployOutcome<DeployApplied>> {
        let payload = match parse_payload::<DeployConvention>(body) {
            Ok(payload) => payload,
            Err(error) => {
                return Err(self
                    .refuse(DeploymentKind::Convention, "-", principal, body, error)
                    .await);
            }
        };
        let target = ConventionSlug::from_title(&payload.title)
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "-".into());
        let deployment = self
            .open(
                DeploymentKind::Convention,
                target,
                principal,
                payload.canonical_bytes(),
            )
            .await?;
        let plan = match payload.plan(Some(principal)) {
            Ok(plan) => plan,
            Err(error) => return Err(self.fail(deployment.id, error).await),
        };
        let applied = match self.log.apply_deploy(deployment.id, &plan).await {
            Ok(applied) => applied,
            Err(error) => return Err(self.fail(deployment.id, error).await),
        };
        for outcome in &applied.releases {
            let release = &outcome.release;
            let message = if outcome.created {
                "release created"
            } else {
                "release unchanged"
            };
            self.log
                .append_deployment_event(
                    deployment.id,
                    message,
                    json!({"hook": release.hook, "version": release.version, "digest": release.digest()}),
                )
                .await?;
        }
        Ok(DeployOutcome {
            deployment: self.succeeded(deployment.id).await?,
            applied,
        })
    }

    /// Creates a release of `hook` from a `POST /hooks/{name}/releases` body. Runs on
    /// its own task: a caller that stops waiting does not cut it short.
    pub async fn create_release(
        &self,
        hook: &HookName,
        body: &[u8],
        principal: &str,
    ) -> Result<DeployOutcome<ReleaseOutcome>> {
        let (this, hook, body, principal) = (
            self.clone(),
            hook.clone(),
            body.to_vec(),
            principal.to_string(),
        );
        detached(async move { this.create_release_here(&hook, &body, &principal).await }).await
    }

    async fn create_release_here(
        &self,
        hook: &HookName,
        body: &[u8],
        principal: &str,
    ) -> Result<DeployOutcome<ReleaseOutcome>> {
        let request: ReleaseRequest = match parse_payload(body) {
            Ok(request) => request,
            Err(error) => {
                return Err(self
                    .refuse(
                        DeploymentKind::Release,
                        hook.as_str(),
                        principal,
                        body,
                        error,
                    )
                    .await);
            }
        };
        let canonical = serde_json::to_vec(&request).map_err(|e| Error::internal(e.to_string()))?;
        let deployment = self
            .open(
                DeploymentKind::Release,
                hook.to_string(),
                principal,
                canonical,
            )
            .await?;
        let release = match request.into_new_release(hook.clone(), Some(principal)) {
            Ok(release) => release,
            Err(error) => return Err(self.fail(deployment.id, error).await),
        };
        let outcome = match self.log.apply_release(deployment.id, &release).await {
            Ok(outcome) => outcome,
            Err(error) => return Err(self.fail(deployment.id, error).await),
        };
        self.log
            .append_deployment_event(
                deployment.id,
                if outcome.created {
                    "release created"
                } else {
                    "release unchanged"
                },
                json!({"version": outcome.release.version}),
            )
            .await?;
        Ok(DeployOutcome {
            deployment: self.succeeded(deployment.id).await?,
            applied: outcome,
        })
    }

    /// Points `hook`'s live release at `version` (rollback or pin). Runs on its own
    /// task: a caller that stops waiting does not cut it short.
    pub async fn set_live(
        &self,
        hook: &HookName,
        version: u32,
        principal: &str,
    ) -> Result<DeployOutcome<LiveChange>> {
        let (this, hook, principal) = (self.clone(), hook.clone(), principal.to_string());
        detached(async move { this.set_live_here(&hook, version, &principal).await }).await
    }

    async fn set_live_here(
        &self,
        hook: &HookName,
        version: u32,
        principal: &str,
    ) -> Result<DeployOutcome<LiveChange>> {
        // An unknown hook is refused before anything is recorded.
        self.registry
            .get_hook(hook)
            .await?
            .ok_or_else(|| Error::not_found("hook", hook))?;
        let canonical = serde_json::to_vec(&json!({"hook": hook, "version": version}))
            .expect("json serialises");
        let deployment = self
            .open(DeploymentKind::Live, hook.to_string(), principal, canonical)
            .await?;
        let change = match self.log.apply_live(deployment.id, hook, version).await {
            Ok(change) => change,
            Err(error) => return Err(self.fail(deployment.id, error).await),
        };
        self.log
            .append_deployment_event(
                deployment.id,
                "live moved",
                json!({"from": change.previous.as_ref().map(|r| r.version), "to": change.current.version}),
            )
            .await?;
        Ok(DeployOutcome {
            deployment: self.succeeded(deployment.id).await?,
            applied: change,
        })
    }

    /// One deployment. Unknown id → NotFound.
    pub async fn get(&self, id: DeploymentId) -> Result<Deployment> {
        self.log
            .get_deployment(id)
            .await?
            .ok_or_else(|| Error::not_found("deployment", id))
    }

    /// Closes the deployments a process left open when it stopped mid-deploy (killed,
    /// crashed): each one still `pending` or `applying` and created more than
    /// `older_than` ago becomes `failed`, with a `failed` event that ends its stream.
    /// A deployment that is in fact still being applied is failed too (its apply then
    /// cannot commit), so pass a bound well above the longest deploy. One that moves
    /// on meanwhile is left alone. Returns how many were closed.
    pub async fn close_abandoned(&self, older_than: std::time::Duration) -> Result<usize> {
        let age = chrono::Duration::from_std(older_than)
            .map_err(|_| Error::invalid("older_than", "duration out of range"))?;
        let until = chrono::Utc::now() - age;
        let message = "abandoned: the process applying it stopped before it ended";
        let mut closed = 0;
        for status in [DeploymentStatus::Pending, DeploymentStatus::Applying] {
            // Closed rows leave the filter, so the first page is read until it is empty.
            let mut skipped = std::collections::HashSet::new();
            loop {
                let page = self
                    .log
                    .list_deployments(&DeploymentFilter {
                        status: Some(status),
                        until: Some(until),
                        limit: 100,
                        ..DeploymentFilter::default()
                    })
                    .await?;
                let open: Vec<_> = page.iter().filter(|d| !skipped.contains(&d.id)).collect();
                if open.is_empty() {
                    break;
                }
                for deployment in open {
                    match self
                        .log
                        .set_deployment_status(
                            deployment.id,
                            DeploymentStatus::Failed,
                            Some(message),
                        )
                        .await
                    {
                        Ok(()) => {
                            tracing::warn!(deployment = %deployment.id, "abandoned deployment closed");
                            let _ = self
                                .log
                                .append_deployment_event(
                                    deployment.id,
                                    "failed",
                                    json!({"error": message, "kind": "abandoned"}),
                                )
                                .await;
                            closed += 1;
                        }
                        // It moved on (succeeded, or another process closed it).
                        Err(e) if e.kind() == crate::ErrorKind::Conflict => {
                            skipped.insert(deployment.id);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(closed)
    }

    /// Deployments matching `filter`, newest first.
    pub async fn list(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>> {
        self.log.list_deployments(filter).await
    }

    /// The events of a deployment: the persisted ones (with the gap marker of a
    /// trimmed log), then new ones as they are appended, polling every `poll`; the
    /// stream ends once the deployment succeeded or failed and its last event was
    /// sent. Unknown id → NotFound.
    pub async fn events(
        &self,
        id: DeploymentId,
        poll: Duration,
    ) -> Result<BoxStream<'static, Result<DeploymentEvent>>> {
        self.get(id).await?;
        let log = self.log.clone();
        struct Tail {
            log: Arc<dyn DeploymentLog>,
            after: u64,
            buffered: std::collections::VecDeque<DeploymentEvent>,
            /// The closing event (`succeeded` or `failed`) was read.
            closed: bool,
            /// Reads in a row of a terminal deployment that brought no new event.
            terminal_reads: u32,
            done: bool,
        }
        let state = Tail {
            log,
            after: 0,
            buffered: Default::default(),
            closed: false,
            terminal_reads: 0,
            done: false,
        };
        let stream = futures::stream::unfold(state, move |mut tail| async move {
            loop {
                if let Some(event) = tail.buffered.pop_front() {
                    tail.after = tail.after.max(event.seq);
                    return Some((Ok(event), tail));
                }
                if tail.done {
                    return None;
                }
                // Read the status before the events. A deployment that succeeded
                // commits its status with what it applied and appends the events that
                // report it (`release created`, ..., `succeeded`) right after: the
                // stream ends with the closing event, or, should that never be
                // written, a few reads after the status.
                let terminal = match tail.log.get_deployment(id).await {
                    Ok(d) => d.is_some_and(|d| {
                        matches!(
                            d.status,
                            DeploymentStatus::Succeeded | DeploymentStatus::Failed
                        )
                    }),
                    Err(e) => {
                        tail.done = true;
                        return Some((Err(e), tail));
                    }
                };
                match tail.log.deployment_events(id, tail.after).await {
                    Ok(events) => {
                        // The gap marker (seq 0) is sent once, with the replay.
                        let replay = tail.after == 0;
                        let events_read = events.iter().filter(|e| e.seq != 0).count();
                        tail.closed |= events
                            .iter()
                            .any(|e| e.seq != 0 && CLOSING_EVENTS.contains(&e.message.as_str()));
                        tail.buffered
                            .extend(events.into_iter().filter(|e| replay || e.seq != 0));
                        // Counted only while nothing new arrives.
                        tail.terminal_reads = if terminal && events_read == 0 {
                            tail.terminal_reads + 1
                        } else {
                            0
                        };
                        tail.done =
                            terminal && (tail.closed || tail.terminal_reads > CLOSING_READS);
                        if tail.buffered.is_empty() && !tail.done {
                            tokio::time::sleep(poll).await;
                        }
                    }
                    Err(e) => {
                        tail.done = true;
                        return Some((Err(e), tail));
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

/// The events that close a deployment's log.
const CLOSING_EVENTS: [&str; 2] = ["succeeded", "failed"];
/// Reads in a row of a terminal deployment that bring no new event, after which its
/// stream ends without a closing event.
const CLOSING_READS: u32 = 20;

/// Runs a deployment on its own task and waits for it. A caller that stops waiting (a
/// client gone, a request timed out) does not cut the deployment short between its
/// steps: it is applied or failed, and its audit row says which, either way.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    use tracing::Instrument;
    tokio::spawn(work.in_current_span())
        .await
        .map_err(|e| Error::internal(format!("the deployment's task failed: {e}")))?
}

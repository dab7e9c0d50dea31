//! The durable job queue (outbox) that drives sagas.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Result;
use crate::id::JobId;

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Handler name (`validation.step`, `validation.finalize`).
    pub kind: String,
    /// Handler input.
    pub payload: serde_json::Value,
    /// Not claimable before this time.
    pub run_at: DateTime<Utc>,
    /// Deliveries before the job is dead.
    pub max_attempts: u32,
    /// At most one pending job per key; enqueueing a duplicate is a no-op.
    pub dedupe_key: Option<String>,
}

/// Proof of a claim: only the holder of the current lease may complete, fail or extend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLease {
    /// The job.
    pub job_id: JobId,
    /// Random per claim; a reclaimed job gets a new token, so a stale holder loses.
    pub token: Uuid,
    /// Lease expiry.
    pub locked_until: DateTime<Utc>,
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedJob {
    /// Handler name.
    pub kind: String,
    /// Handler input.
    pub payload: serde_json::Value,
    /// 1 for the first delivery.
    pub attempt: u32,
    /// Deliveries before the job is dead.
    pub max_attempts: u32,
    /// The lease.
    pub lease: JobLease,
}

/// The result of [`JobQueue::fail`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FailOutcome {
    /// Claimable again at this time.
    Retrying {
        /// Next delivery time.
        at: DateTime<Utc>,
    },
    /// Out of attempts; the handler's `on_exhausted` must run (once: only this call
    /// returns `Dead` for the job).
    Dead,
    /// The lease was lost (expired and reclaimed): nothing changed.
    LeaseLost,
}

/// Exponential backoff with full jitter and a cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay before the second attempt.
    pub base: Duration,
    /// Growth per attempt.
    pub factor: f64,
    /// Largest delay.
    pub cap: Duration,
    /// Fraction of the delay that is randomised (0 = none, 1 = full jitter).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(300),
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// Delay after failed attempt `attempt` (1-based); `random` in [0, 1) supplies the
    /// jitter, so the function stays pure.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let raw = self.base.as_secs_f64() * self.factor.powi(exponent);
        let capped = raw.min(self.cap.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let random = random.clamp(0.0, 1.0);
        Duration::from_secs_f64(capped * (1.0 - jitter * random))
    }
}

/// Where a job stands (finished jobs leave the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobState {
    /// Claimable now.
    Ready,
    /// Waiting for its time (a retry's backoff, a deferred job).
    Scheduled,
    /// Claimed, under a lease (an expired lease counts here until the job is claimed
    /// again).
    Running,
    /// Out of attempts; nothing will run it.
    Dead,
}

impl JobState {
    /// The name in metrics and JSON (`scheduled`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Dead => "dead",
        }
    }
}

/// How many jobs of one kind are in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCount {
    /// The job kind (`validation.step`).
    pub kind: String,
    /// The state.
    pub state: JobState,
    /// How many; only non-zero counts are listed.
    pub count: u64,
}

/// A durable queue of jobs in the same database as the state they change.
///
/// Guarantees every backend gives:
/// - a claimed job is held under a lease; no two live leases exist for one job, so
///   concurrent claimers never get the same job;
/// - a job whose lease expired is claimable again through the ordinary claim (no
///   sweeper), with `attempt` incremented;
/// - `complete`, `fail` and `heartbeat` act only with the current lease;
/// - `fail` on the last attempt marks the job dead and returns [`FailOutcome::Dead`]
///   exactly once;
/// - finished jobs leave the hot table.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues a job (a no-op when a pending job has the same dedupe key).
    async fn enqueue(&self, job: &NewJob) -> Result<Option<JobId>>;

    /// Claims up to `limit` due jobs of the given kinds for `lease_for`.
    async fn claim(
        &self,
        kinds: &[&str],
        limit: u32,
        lease_for: Duration,
    ) -> Result<Vec<ClaimedJob>>;

    /// Extends a lease; `false` when it was lost.
    async fn heartbeat(&self, lease: &JobLease, lease_for: Duration) -> Result<bool>;

    /// Finishes a job; `false` when the lease was lost.
    async fn complete(&self, lease: &JobLease) -> Result<bool>;

    /// Records a failed delivery: retry at `retry_at`, or dead when out of attempts.
    async fn fail(
        &self,
        lease: &JobLease,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<FailOutcome>;

    /// The jobs in the queue by kind and state (for metrics and operators), sorted by
    /// kind, then state.
    async fn counts(&self) -> Result<Vec<JobCount>>;

    /// Waits at most `timeout` for jobs enqueued by anyone, in any process: a hint
    /// that lets an idle worker claim at once instead of at its next poll. A backend
    /// that cannot be told sleeps the whole `timeout` (this default); Postgres listens
    /// for the notification its enqueues send. Polling stays the source of truth: a
    /// wake-up may be missed (while the listener reconnects) or spurious.
    async fn wait_for_jobs(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = Backoff {
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(10),
            jitter: 0.5,
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(4));
        assert_eq!(b.delay(10, 0.0), Duration::from_secs(10));
        assert_eq!(b.delay(1000, 0.0), Duration::from_secs(10));
        assert_eq!(b.delay(2, 1.0), Duration::from_secs(1));
        assert!(b.delay(3, 0.5) < b.delay(3, 0.0));
    }
}

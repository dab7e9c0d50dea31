//! `JobQueue` on Postgres (the shared implementation in `crate::jobs`). An enqueue
//! sends `NOTIFY osa_jobs` (delivered on commit) as a wake-up hint, which idle workers
//! wait for (`LISTEN`, see [`JobSignal`](super::JobSignal)); polling remains the source
//! of truth.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use osa_core::Result;
use osa_core::id::JobId;
use osa_core::jobs::{ClaimedJob, FailOutcome, JobCount, JobLease, JobQueue, NewJob};

use super::PgBackend;

type Jobs = crate::jobs::Jobs<PgBackend>;

#[async_trait]
impl JobQueue for PgBackend {
    async fn enqueue(&self, job: &NewJob) -> Result<Option<JobId>> {
        Jobs::enqueue(self, job).await
    }

    async fn claim(
        &self,
        kinds: &[&str],
        limit: u32,
        lease_for: Duration,
    ) -> Result<Vec<ClaimedJob>> {
        Jobs::claim(self, kinds, limit, lease_for).await
    }

    async fn heartbeat(&self, lease: &JobLease, lease_for: Duration) -> Result<bool> {
        Jobs::heartbeat(self, lease, lease_for).await
    }

    async fn complete(&self, lease: &JobLease) -> Result<bool> {
        Jobs::complete(self, lease).await
    }

    async fn wait_for_jobs(&self, timeout: Duration) {
        super::wait_for_notify(self, timeout).await
    }

    async fn counts(&self) -> Result<Vec<JobCount>> {
        Jobs::counts(self).await
    }

    async fn fail(
        &self,
        lease: &JobLease,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<FailOutcome> {
        Jobs::fail(self, lease, error, retry_at).await
    }
}

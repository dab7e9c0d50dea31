//! The worker: claims saga jobs, runs them with bounded concurrency, keeps their leases
//! alive, and stops gracefully.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use super::handlers::{HandOver, Handled, StepDelivery};
use super::{AbortOnDrop, Engine, FINALIZE_JOB, JobPayload, STEP_JOB};
use crate::jobs::{ClaimedJob, FailOutcome, JobQueue};
use crate::validation::RunStatus;
use crate::{Error, Result};

/// Worker tunables.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Jobs run at the same time.
    pub concurrency: usize,
    /// Pause between claims when the queue is empty.
    pub poll_interval: Duration,
    /// Lease taken on a claimed job; an expired lease makes the job claimable again.
    pub lease: Duration,
    /// How often a running job's lease is renewed; a renewal that fails transiently is
    /// retried after a quarter of this. Also how often a running hook's run is checked
    /// for an end made elsewhere (a cancel from another process); one made through
    /// this worker's engine is noticed at once.
    pub heartbeat: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 2,
            poll_interval: Duration::from_millis(100),
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(15),
        }
    }
}

impl WorkerConfig {
    /// With `concurrency` jobs at the same time.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// With `poll_interval` between claims when the queue is empty.
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// With leases of `lease` on claimed jobs.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// With a lease renewal (and run check) every `heartbeat`.
    pub fn with_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }
}

/// Runs the saga's jobs. Several workers (threads or processes) may share one queue.
#[derive(Debug, Clone)]
pub struct Worker {
    engine: Engine,
    config: WorkerConfig,
}

impl Worker {
    /// A worker for `engine`.
    pub fn new(engine: Engine, config: WorkerConfig) -> Self {
        Worker { engine, config }
    }

    /// Runs until `shutdown` resolves, then stops claiming and waits for the jobs in
    /// flight to finish (their commits are atomic, so stopping mid-way is also safe:
    /// an unfinished job's lease expires and another worker re-runs it). Dropping this
    /// future, or an error return, aborts the jobs in flight and their lease renewals.
    ///
    /// A step's commit leases the run's next job to this worker, which runs it at once
    /// (no claim, no poll); jobs enqueued by the same engine (a submit) wake the idle
    /// loop at once, and so do jobs enqueued by other processes where the backend can
    /// tell ([`JobQueue::wait_for_jobs`](crate::jobs::JobQueue::wait_for_jobs): Postgres
    /// `LISTEN`); polling every `poll_interval` remains the source of truth.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut in_flight: JoinSet<()> = JoinSet::new();
        // Best effort, beside the first claims: what is left stays for the next start.
        let engine = self.engine.clone();
        tokio::spawn(async move {
            match engine.sweep_work_dir().await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "swept the work dir"),
                Err(e) => tracing::warn!(error = %e, "sweeping the work dir failed"),
            }
        });
        let stopping = Arc::new(AtomicBool::new(false));
        loop {
            // Registered before the claim, so an enqueue during the claim still wakes us.
            let enqueued = self.engine.jobs_enqueued().notified();
            let mut enqueued = std::pin::pin!(enqueued);
            enqueued.as_mut().enable();
            let free = self.config.concurrency.saturating_sub(in_flight.len());
            let mut claimed = 0;
            if free > 0 {
                let jobs = self
                    .engine
                    .storage()
                    .claim(&[STEP_JOB, FINALIZE_JOB], free as u32, self.config.lease)
                    .await;
                match jobs {
                    Ok(jobs) => {
                        claimed = jobs.len();
                        for job in jobs {
                            let worker = self.clone();
                            let stopping = stopping.clone();
                            in_flight
                                .spawn(async move { worker.process_chain(job, &stopping).await });
                        }
                    }
                    // A transient database error: wait and claim again.
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "claiming jobs failed; claiming again");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claiming jobs failed; the worker stops");
                        return Err(e);
                    }
                }
            }
            if claimed > 0 && in_flight.len() < self.config.concurrency {
                continue;
            }
            let has_room = in_flight.len() < self.config.concurrency;
            let queue: &dyn JobQueue = self.engine.storage();
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                _ = &mut enqueued, if has_room => {}
                // Woken early by an enqueue in another process where the backend can
                // tell (Postgres); else the poll interval.
                _ = queue.wait_for_jobs(self.config.poll_interval), if has_room => {}
                _ = tokio::time::sleep(self.config.poll_interval), if !has_room => {}
            }
        }
        stopping.store(true, Ordering::Relaxed);
        while in_flight.join_next().await.is_some() {}
        Ok(())
    }

    /// Processes a claimed job and then every job its commits hand back to this worker
    /// (the run's next step, then its finalize). Once the worker is stopping it asks
    /// for no more hand-offs, so at most the job already handed over still runs.
    async fn process_chain(&self, job: ClaimedJob, stopping: &AtomicBool) {
        let mut next = Some((job, None));
        while let Some((job, known)) = next.take() {
            let hand_off = !stopping.load(Ordering::Relaxed);
            next = self
                .process_one(job, hand_off, known)
                .await
                .map(|(job, hand_over)| (job, Some(*hand_over)));
        }
    }

    /// Runs jobs until `run` reaches a terminal state; returns that state.
    pub async fn run_until_finished(&self, run: crate::id::ValidationRunId) -> Result<RunStatus> {
        let engine = self.engine.clone();
        let poll = self.config.poll_interval;
        let finished = async move {
            let _ = engine.run_ended(run, poll).await;
        };
        self.run(finished).await?;
        self.engine
            .storage()
            .run_status(run)
            .await?
            .ok_or_else(|| Error::not_found("validation run", run))
    }

    /// Handles one claimed job: runs it, keeps its lease alive meanwhile, and acts on
    /// the result (done, retry with backoff, or the run fails). Delivering the same job
    /// again after it finished changes nothing. The run's next job is enqueued for any
    /// worker.
    pub async fn process(&self, job: ClaimedJob) {
        self.process_one(job, false, None).await;
    }

    /// [`process`](Self::process); with `hand_off`, a step's commit leases the run's
    /// next job to this worker and returns it, with the run's progress as committed.
    /// `known` is what the commit that handed this job over left for it.
    async fn process_one(
        &self,
        job: ClaimedJob,
        hand_off: bool,
        known: Option<HandOver>,
    ) -> Option<(ClaimedJob, Box<HandOver>)> {
        let queue: &dyn JobQueue = self.engine.storage();
        let Ok(payload) = serde_json::from_value::<JobPayload>(job.payload.clone()) else {
            tracing::error!(kind = %job.kind, payload = %job.payload, "malformed job payload");
            let _ = queue
                .fail(&job.lease, "malformed job payload", Utc::now())
                .await;
            return None;
        };
        let span = tracing::info_span!(
            "osa_job",
            kind = %job.kind,
            run = %payload.run,
            step = payload.step,
            attempt = job.attempt
        );
        self.process_payload(job, payload, hand_off, known)
            .instrument(span)
            .await
    }

    async fn process_payload(
        &self,
        job: ClaimedJob,
        payload: JobPayload,
        hand_off: bool,
        known: Option<HandOver>,
    ) -> Option<(ClaimedJob, Box<HandOver>)> {
        let queue: &dyn JobQueue = self.engine.storage();
        if job.attempt > job.max_attempts {
            // A job whose lease keeps expiring (its worker crashes) still runs out.
            self.give_up(
                &job,
                payload,
                "its worker stopped responding on every attempt",
            )
            .await;
            return None;
        }
        // Renewed on its own task, so a job that keeps its thread busy still keeps its
        // lease; the guard ends the renewal whenever this future ends or is dropped.
        let heartbeat = {
            let engine = self.engine.clone();
            let lease = job.lease.clone();
            let (every, extend) = (self.config.heartbeat, self.config.lease);
            AbortOnDrop(tokio::spawn(async move {
                keep_lease(|| engine.storage().heartbeat(&lease, extend), every).await
            }))
        };
        let result = match job.kind.as_str() {
            STEP_JOB => {
                let hand_off = hand_off.then_some(self.config.lease);
                let (known, prepared) =
                    known.map_or((None, None), |k| (Some(k.progress), k.prepared));
                self.engine
                    .run_step(
                        payload.run,
                        payload.step,
                        StepDelivery {
                            lease: Some(&job.lease),
                            attempt: job.attempt,
                            hand_off,
                            watch: self.config.heartbeat,
                        },
                        known,
                        prepared,
                    )
                    .await
            }
            FINALIZE_JOB => {
                let (known, staged, accepted) = known.map_or((None, None, None), |k| {
                    (Some(k.progress), k.staged, k.accepted)
                });
                self.engine
                    .finalize(payload.run, Some(&job.lease), known, staged, accepted)
                    .await
            }
            other => Err(Error::internal(format!("unknown job kind {other}"))),
        };
        drop(heartbeat);
        let retry_reason = match result {
            Ok(Handled::Done) => return None,
            Ok(Handled::DoneWithNext(next, hand_over)) => return Some((next, hand_over)),
            Ok(Handled::Retry { reason }) => reason,
            Err(e) if e.is_transient() => e.to_string(),
            Err(e) => {
                // Repeating cannot help: the run fails now, with the reason, unless the
                // lease was lost meanwhile (another worker may have taken the job over;
                // if it was lost for good, its expiry hands the job on).
                if !matches!(self.engine.holds(Some(&job.lease)).await, Ok(true)) {
                    tracing::warn!(error = %e, "job failed after its lease was lost; left to the worker that holds it");
                    return None;
                }
                tracing::error!(error = %e, "job failed; the run fails");
                let reason = format!("{} failed: {e}", job.kind);
                if let Err(e) = self
                    .engine
                    .end(payload.run, RunStatus::Failed, &reason)
                    .await
                {
                    tracing::warn!(error = %e, "ending the run failed; the job will be redelivered");
                    return None;
                }
                let _ = queue.complete(&job.lease).await;
                return None;
            }
        };
        let delay = self
            .engine
            .config()
            .backoff
            .delay(job.attempt, rand::random::<f64>());
        let retry_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        match queue.fail(&job.lease, &retry_reason, retry_at).await {
            Ok(FailOutcome::Dead) => {
                tracing::error!(reason = %retry_reason, "job out of attempts; the run fails");
                crate::telemetry::job_dead(&job.kind);
                if let Err(e) = self
                    .engine
                    .exhausted(payload.run, &job.kind, payload.step, &retry_reason)
                    .await
                {
                    tracing::warn!(error = %e, "failing the run of a dead job failed");
                }
            }
            Ok(_) => {
                crate::telemetry::job_retried(&job.kind);
                tracing::warn!(reason = %retry_reason, retry_in_ms = delay.as_millis() as u64, "job will be retried");
            }
            Err(e) => {
                tracing::warn!(error = %e, reason = %retry_reason, "recording a retry failed; the lease expiry hands the job on");
            }
        }
        None
    }

    async fn give_up(&self, job: &ClaimedJob, payload: JobPayload, why: &str) {
        tracing::error!(
            kind = %job.kind,
            run = %payload.run,
            step = payload.step,
            attempt = job.attempt,
            reason = why,
            "job out of attempts; the run fails"
        );
        let queue: &dyn JobQueue = self.engine.storage();
        let outcome = queue.fail(&job.lease, why, Utc::now()).await;
        if let Ok(FailOutcome::Dead) = outcome {
            crate::telemetry::job_dead(&job.kind);
        }
        if let Ok(FailOutcome::Dead) = outcome
            && let Err(e) = self
                .engine
                .exhausted(payload.run, &job.kind, payload.step, why)
                .await
        {
            tracing::warn!(error = %e, "failing the run of a dead job failed");
        }
    }
}

/// Renews a lease with `renew` every `every` until a renewal says the lease is lost or
/// fails permanently. A transient failure (a busy writer, a dropped connection) is
/// retried after a quarter of the interval, so a short outage does not let the lease of
/// a running job expire.
async fn keep_lease<F, Fut>(mut renew: F, every: Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let retry = every / 4;
    let mut next = Instant::now() + every;
    loop {
        tokio::time::sleep_until(next).await;
        let attempt = Instant::now();
        next = match renew().await {
            Ok(true) => attempt + every,
            Ok(false) => {
                tracing::warn!(
                    "the job's lease was lost (it expired and another worker may run the job)"
                );
                return;
            }
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %e, "renewing a lease failed; trying again soon");
                attempt + retry
            }
            Err(e) => {
                tracing::error!(error = %e, "renewing a lease failed; renewals stop");
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn unavailable() -> Error {
        Error::Unavailable {
            what: "database",
            detail: "database is locked".into(),
            source: None,
        }
    }

    /// Runs `keep_lease` over renewals answering `answers` in order (then `Ok(true)`),
    /// for at most `within`; returns the times of the renewals, from the start.
    async fn renewals(
        answers: Vec<Result<bool>>,
        every: Duration,
        within: Duration,
    ) -> Vec<Duration> {
        let start = Instant::now();
        let calls = Mutex::new(Vec::new());
        let answers = Mutex::new(answers.into_iter());
        let renew = || {
            calls.lock().unwrap().push(start.elapsed());
            let answer = answers.lock().unwrap().next().unwrap_or(Ok(true));
            async move { answer }
        };
        let _ = tokio::time::timeout(within, keep_lease(renew, every)).await;
        calls.into_inner().unwrap()
    }

    #[tokio::test]
    async fn transient_failures_are_retried_sooner() {
        let every = Duration::from_millis(200);
        let calls = renewals(
            vec![Ok(true), Err(unavailable()), Err(unavailable()), Ok(true)],
            every,
            Duration::from_millis(1_300),
        )
        .await;
        // 200 ok, 400 busy, 450 busy, 500 ok, then every 200 ms again: 700, 900.
        assert!(
            calls.len() >= 6,
            "renewals continue after failures: {calls:?}"
        );
        assert!(
            calls[2] - calls[1] < every / 2,
            "a failed renewal is retried before the next interval: {calls:?}"
        );
        assert!(
            calls[4] - calls[3] > every / 2,
            "a successful renewal returns to the interval: {calls:?}"
        );
    }

    #[tokio::test]
    async fn a_lost_lease_or_a_permanent_error_stops_the_renewals() {
        let every = Duration::from_millis(50);
        let within = Duration::from_millis(400);
        let lost = renewals(vec![Ok(true), Ok(false)], every, within).await;
        assert_eq!(lost.len(), 2, "{lost:?}");
        let broken = renewals(
            vec![Err(Error::internal("no such table: jobs"))],
            every,
            within,
        )
        .await;
        assert_eq!(broken.len(), 1, "{broken:?}");
    }

    #[tokio::test]
    async fn dropping_the_guard_stops_the_renewals() {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let guard = {
            let count = count.clone();
            AbortOnDrop(tokio::spawn(keep_lease(
                move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    async { Ok(true) }
                },
                Duration::from_millis(10),
            )))
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(guard);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after_drop = count.load(Ordering::SeqCst);
        assert!(after_drop > 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(count.load(Ordering::SeqCst), after_drop);
    }
}

//! Checks of [`JobQueue`]: leases and their expiry, concurrent claims, failures and
//! dead jobs, dedupe keys, counts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use serde_json::json;

use crate::jobs::{FailOutcome, NewJob};
use crate::{ErrorKind, JobQueue};

/// The list of this module's checks, expanded by
/// [`storage_conformance!`](crate::storage_conformance) into one test each.
#[doc(hidden)]
#[macro_export]
macro_rules! __storage_jobs_checks {
    ($($declared:tt)*) => {
        $crate::__storage_conformance!(@tests jobs; $($declared)*;
            expired_lease_is_claimed_again,
            concurrent_claimers_never_share_a_job,
            exhausted_job_dies_once,
            jobs_are_counted_by_kind_and_state,
            dedupe_key_and_lease_checks,
        );
    };
}
#[doc(hidden)]
pub use crate::__storage_jobs_checks as checks;

fn job(kind: &str, max_attempts: u32) -> NewJob {
    NewJob {
        kind: kind.into(),
        payload: json!({"n": 1}),
        run_at: Utc::now() - ChronoDuration::seconds(1),
        max_attempts,
        dedupe_key: None,
    }
}

/// A claimed job whose lease expired is claimed again with the next attempt number.
pub async fn expired_lease_is_claimed_again<S: JobQueue>(store: S) {
    store
        .enqueue(&job("step", 5))
        .await
        .expect("enqueue")
        .expect("new");
    let first = store
        .claim(&["step"], 10, Duration::from_millis(200))
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    assert_eq!(first[0].payload, json!({"n": 1}));
    assert!(
        store
            .claim(&["step"], 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty()
    );
    assert!(
        store
            .heartbeat(&first[0].lease, Duration::from_millis(300))
            .await
            .expect("heartbeat")
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let second = store
        .claim(&["step"], 10, Duration::from_secs(30))
        .await
        .expect("reclaim");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt, 2);
    assert_eq!(second[0].lease.job_id, first[0].lease.job_id);
    // The stale holder can no longer act on the job.
    assert!(
        !store
            .complete(&first[0].lease)
            .await
            .expect("stale complete")
    );
    assert!(
        !store
            .heartbeat(&first[0].lease, Duration::from_secs(1))
            .await
            .expect("stale heartbeat")
    );
    assert!(store.complete(&second[0].lease).await.expect("complete"));
    assert!(
        store
            .claim(&["step"], 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty()
    );
    // Other kinds and future jobs are not claimed.
    store.enqueue(&job("other", 1)).await.expect("enqueue");
    let mut later = job("step", 1);
    later.run_at = Utc::now() + ChronoDuration::hours(1);
    store.enqueue(&later).await.expect("enqueue");
    assert!(
        store
            .claim(&["step"], 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty()
    );
}

/// N workers claiming concurrently never receive the same job.
pub async fn concurrent_claimers_never_share_a_job<S: JobQueue + Clone + 'static>(store: S) {
    for _ in 0..60 {
        store.enqueue(&job("step", 3)).await.expect("enqueue");
    }
    let claimed = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        let claimed = claimed.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let jobs = store
                    .claim(&["step"], 4, Duration::from_secs(60))
                    .await
                    .expect("claim");
                if jobs.is_empty() {
                    return;
                }
                for job in jobs {
                    claimed.lock().await.push(job.lease.job_id);
                    assert!(store.complete(&job.lease).await.expect("complete"));
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    let claimed = claimed.lock().await;
    let distinct: BTreeSet<_> = claimed.iter().collect();
    assert_eq!(claimed.len(), 60, "every job claimed once");
    assert_eq!(distinct.len(), 60, "no job claimed twice");
}

/// `counts` lists the queue by kind and state: due, deferred, leased and dead jobs;
/// finished jobs are gone from it.
pub async fn jobs_are_counted_by_kind_and_state<S: JobQueue>(store: S) {
    use crate::jobs::{JobCount, JobState};

    assert_eq!(
        store.counts().await.expect("counts"),
        Vec::<JobCount>::new()
    );
    for _ in 0..3 {
        store.enqueue(&job("count.a", 1)).await.expect("enqueue");
    }
    let later = NewJob {
        run_at: Utc::now() + ChronoDuration::hours(1),
        ..job("count.b", 1)
    };
    store.enqueue(&later).await.expect("enqueue");
    let mut claimed = store
        .claim(&["count.a"], 2, Duration::from_secs(30))
        .await
        .expect("claim");
    let done = claimed.pop().expect("two claimed");
    assert!(store.complete(&done.lease).await.expect("complete"));
    let dying = claimed.pop().expect("two claimed");
    assert_eq!(
        store
            .fail(&dying.lease, "boom", Utc::now())
            .await
            .expect("fail"),
        FailOutcome::Dead
    );
    let running = store
        .claim(&["count.a"], 1, Duration::from_secs(30))
        .await
        .expect("claim")
        .pop()
        .expect("the third");
    let count = |kind: &str, state, count| JobCount {
        kind: kind.into(),
        state,
        count,
    };
    assert_eq!(
        store.counts().await.expect("counts"),
        [
            count("count.a", JobState::Running, 1),
            count("count.a", JobState::Dead, 1),
            count("count.b", JobState::Scheduled, 1),
        ]
    );
    assert!(store.complete(&running.lease).await.expect("complete"));
    store.enqueue(&job("count.b", 1)).await.expect("enqueue");
    assert_eq!(
        store.counts().await.expect("counts"),
        [
            count("count.a", JobState::Dead, 1),
            count("count.b", JobState::Ready, 1),
            count("count.b", JobState::Scheduled, 1),
        ]
    );
}

/// A job failing past its attempts becomes dead, and only one `fail` reports it.
pub async fn exhausted_job_dies_once<S: JobQueue>(store: S) {
    store.enqueue(&job("step", 2)).await.expect("enqueue");
    let first = store
        .claim(&["step"], 1, Duration::from_secs(30))
        .await
        .expect("claim")
        .remove(0);
    let retry_at = Utc::now() - ChronoDuration::milliseconds(1);
    let outcome = store
        .fail(&first.lease, "boom", retry_at)
        .await
        .expect("fail");
    assert!(
        matches!(outcome, FailOutcome::Retrying { .. }),
        "{outcome:?}"
    );
    let second = store
        .claim(&["step"], 1, Duration::from_secs(30))
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(second.attempt, 2);
    assert_eq!(
        store
            .fail(&second.lease, "boom again", retry_at)
            .await
            .expect("fail"),
        FailOutcome::Dead
    );
    assert_eq!(
        store
            .fail(&second.lease, "again", retry_at)
            .await
            .expect("fail"),
        FailOutcome::LeaseLost
    );
    assert_eq!(
        store
            .fail(&first.lease, "stale", retry_at)
            .await
            .expect("fail"),
        FailOutcome::LeaseLost
    );
    assert!(
        store
            .claim(&["step"], 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty()
    );
}

/// Dedupe keys make enqueue idempotent while the job exists; zero attempts is invalid.
pub async fn dedupe_key_and_lease_checks<S: JobQueue>(store: S) {
    let mut keyed = job("finalize", 3);
    keyed.dedupe_key = Some("run-1/finalize".into());
    assert!(store.enqueue(&keyed).await.expect("first").is_some());
    assert!(store.enqueue(&keyed).await.expect("second").is_none());
    let claimed = store
        .claim(&["finalize"], 5, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert!(store.complete(&claimed[0].lease).await.expect("complete"));
    assert!(
        store
            .enqueue(&keyed)
            .await
            .expect("after completion")
            .is_some()
    );
    let err = store.enqueue(&job("x", 0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

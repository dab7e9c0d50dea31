//! `JobQueue` on Postgres (the shared implementation in `crate::jobs`). An enqueue
//! sends `NOTIFY osa_jobs` (delivered on commit) as a wake-up hint, which idle workers
//! wait for (`LISTEN`, see [`JobSignal`](super::JobSignal)); polling remains the source
//! of truth.

crate::jobs::jobs_for!(
    super::PgBackend,
    sqlx::PgConnection,
    token = "gen_random_uuid()",
    skip_locked = " FOR UPDATE SKIP LOCKED",
    notify = Some("SELECT count(*) FROM j, pg_notify('osa_jobs', j.kind)"),
    wait = super::wait_for_notify
);

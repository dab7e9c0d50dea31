//! `JobQueue` on SQLite (the shared implementation in `crate::jobs`). Claims run in a
//! `BEGIN IMMEDIATE` transaction, so one claimer at a time selects jobs.

crate::jobs::jobs_for!(
    super::SqliteBackend,
    sqlx::SqliteConnection,
    token = "randomblob(16)",
    skip_locked = "",
    notify = None,
    wait = crate::jobs::sleep_for
);

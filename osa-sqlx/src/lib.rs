//! Postgres and SQLite storage backends for OSA.
//!
//! [`SqliteBackend`] (feature `sqlite`, the embedded default) and [`PgBackend`] (feature
//! `postgres`) implement the storage ports of `osa-core` on one type each:
//! [`HookRegistry`](osa_core::HookRegistry), [`FeatureStore`](osa_core::FeatureStore),
//! [`JobQueue`](osa_core::JobQueue),
//! [`ValidationRunStore`](osa_core::validation::ValidationRunStore),
//! [`DeploymentLog`](osa_core::DeploymentLog) and
//! [`ConventionStore`](osa_core::convention::ConventionStore). Both pass the conformance suite in
//! `osa_core::testing`.
//!
//! The SQL, the row mapping and the logic of each port are written once, as generic
//! functions over the backend, in the modules `registry`, `runs`, `jobs`, `features`
//! (with `reads` and `feature_sql`) and `deployments`; what differs between the two
//! databases (row-lock clauses, how a text list is bound and matched, the UUID column
//! type, verdict insertion, the in-play query, the bulk insert, …) is named in one
//! trait, `backend::SqlBackend`. The `postgres` and `sqlite` modules implement it and
//! hold one thin impl per port that delegates to the shared code; Postgres-only paths
//! (binary `COPY`, `LISTEN`/`NOTIFY`, staged features, the single-statement step
//! commit) are Postgres methods.
//!
//! ```no_run
//! # async fn demo() -> osa_core::Result<()> {
//! use osa_core::HookRegistry;
//! use osa_sqlx::SqliteBackend;
//!
//! let backend = SqliteBackend::open("archive.db").await?;
//! backend.migrate().await?;
//! let hooks = backend.list_hooks().await?;
//! # Ok(()) }
//! ```

mod backend;
mod deployments;
mod error;
mod feature_sql;
mod features;
mod jobs;
mod reads;
mod registry;
mod rows;
mod runs;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::{PgBackend, PgConfig, redacted_url};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteBackend;

pub use error::StorageError;
/// The sqlx this crate is built on, so a caller's `PgPool` or `PgConnectOptions` is of
/// the version the backends take.
pub use sqlx;

/// An open transaction holding feature rows staged ahead of a finalize (the backend's
/// half of [`osa_core::validation::StagedFeatures`]), with the permit that bounds how
/// many of them a backend holds at once.
#[cfg(feature = "postgres")]
pub(crate) struct Staging<DB: sqlx::Database> {
    pub tx: sqlx::Transaction<'static, DB>,
    pub _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The current time, truncated to microseconds (the precision both databases keep),
/// so values read back equal values written.
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    truncate_micros(chrono::Utc::now())
}

/// Truncates a timestamp to microseconds.
pub(crate) fn truncate_micros(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

/// The end of a lease of `lease_for` starting at `now`.
pub(crate) fn lease_end(
    now: chrono::DateTime<chrono::Utc>,
    lease_for: std::time::Duration,
) -> osa_core::Result<chrono::DateTime<chrono::Utc>> {
    chrono::Duration::from_std(lease_for)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .map(truncate_micros)
        .ok_or_else(|| osa_core::Error::invalid("lease_for", "lease duration out of range"))
}

/// Errors stored with jobs are cut to keep rows small.
pub(crate) fn cap_error(error: &str) -> String {
    error.chars().take(4000).collect()
}

/// Largest page returned by feature reads.
pub const MAX_PAGE: u32 = 1000;

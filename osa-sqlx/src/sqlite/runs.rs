//! `ValidationRunStore` (the shared implementation in `crate::runs`).

crate::runs::runs_for!(super::SqliteBackend, sqlx::SqliteConnection, lock = "");

impl super::SqliteBackend {
    /// Never: SQLite has no data-modifying `WITH`, so a step commits in a transaction
    /// of several statements (see the Postgres backend's version).
    pub(crate) async fn commit_step_at_once(
        &self,
        _plan: &osa_core::validation::StepPlan,
        _claim_next: Option<std::time::Duration>,
    ) -> osa_core::Result<
        Option<(
            osa_core::validation::Applied,
            Option<osa_core::jobs::ClaimedJob>,
        )>,
    > {
        Ok(None)
    }
}

//! `ValidationRunStore` on SQLite (the shared implementation in `crate::runs`). SQLite
//! has no data-modifying `WITH`, so a step commits in a transaction of several
//! statements; feature rows are not staged ahead of a finalize (one writer: a write
//! transaction held open while a hook runs would stall every other write): SQLite offers
//! the step hand-off capability and not feature staging.

use std::time::Duration;

use async_trait::async_trait;
use osa_core::Result;
use osa_core::id::ValidationRunId;
use osa_core::jobs::ClaimedJob;
use osa_core::validation::{
    Applied, FeatureChunks, FinalizePlan, RecordChunks, RecordVerdict, RunEvent, RunProgress,
    RunStatus, StepHandOff, StepPlan, SubmitPlan, ValidationRunStore, ValidationRunView,
};

use super::SqliteBackend;

type Runs = crate::runs::Runs<SqliteBackend>;

#[async_trait]
impl ValidationRunStore for SqliteBackend {
    async fn create_run(&self, plan: &SubmitPlan) -> Result<()> {
        Runs::create_run(self, plan, None).await
    }

    async fn create_run_streaming(
        &self,
        plan: &SubmitPlan,
        more: &mut dyn RecordChunks,
    ) -> Result<()> {
        Runs::create_run(self, plan, Some(more)).await
    }

    async fn apply_step(&self, plan: &StepPlan) -> Result<Applied> {
        Runs::apply_step(self, plan).await
    }

    fn step_hand_off(&self) -> Option<&dyn StepHandOff> {
        Some(self)
    }

    async fn apply_finalize(&self, plan: &FinalizePlan) -> Result<Applied> {
        Runs::apply_finalize(self, plan, None).await
    }

    async fn apply_finalize_streaming(
        &self,
        plan: &FinalizePlan,
        more: &mut dyn FeatureChunks,
    ) -> Result<Applied> {
        Runs::apply_finalize(self, plan, Some(more)).await
    }

    async fn end_run(&self, run: ValidationRunId, status: RunStatus, reason: &str) -> Result<bool> {
        Runs::end_run(self, run, status, reason).await
    }

    async fn run_view(&self, run: ValidationRunId) -> Result<Option<ValidationRunView>> {
        Runs::run_view(self, run).await
    }

    async fn record_page(
        &self,
        run: ValidationRunId,
        from: u32,
        limit: u32,
    ) -> Result<Option<Vec<RecordVerdict>>> {
        Runs::record_page(self, run, from, limit).await
    }

    async fn run_progress(&self, run: ValidationRunId) -> Result<Option<RunProgress>> {
        Runs::run_progress(self, run).await
    }

    async fn run_status(&self, run: ValidationRunId) -> Result<Option<RunStatus>> {
        Runs::run_status(self, run).await
    }

    async fn run_events(&self, run: ValidationRunId, after: u64) -> Result<Vec<RunEvent>> {
        Runs::run_events(self, run, after).await
    }
}

#[async_trait]
impl StepHandOff for SqliteBackend {
    async fn apply_step_claiming_next(
        &self,
        plan: &StepPlan,
        lease_for: Duration,
    ) -> Result<(Applied, Option<ClaimedJob>)> {
        Runs::apply_step_claiming_next(self, plan, lease_for).await
    }
}

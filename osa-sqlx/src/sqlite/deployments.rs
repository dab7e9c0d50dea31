//! `DeploymentLog` and `ConventionStore` (the shared implementation in `crate::deployments`).

use async_trait::async_trait;
use osa_core::Result;
use osa_core::convention::{Convention, ConventionStore};
use osa_core::deploy::{
    DeployApplied, DeployPlan, Deployment, DeploymentEvent, DeploymentFilter, DeploymentLog,
    DeploymentStatus, NewDeployment,
};
use osa_core::hook::{LiveChange, NewRelease, ReleaseOutcome};
use osa_core::id::{ConventionSlug, DeploymentId, HookName};

use super::SqliteBackend;

type Deployments = crate::deployments::Deployments<SqliteBackend>;

#[async_trait]
impl DeploymentLog for SqliteBackend {
    async fn record_deployment(&self, deployment: &NewDeployment) -> Result<Deployment> {
        Deployments::record_deployment(self, deployment).await
    }

    async fn set_deployment_status(
        &self,
        id: DeploymentId,
        status: DeploymentStatus,
        error: Option<&str>,
    ) -> Result<()> {
        Deployments::set_deployment_status(self, id, status, error).await
    }

    async fn append_deployment_event(
        &self,
        id: DeploymentId,
        message: &str,
        data: serde_json::Value,
    ) -> Result<DeploymentEvent> {
        Deployments::append_deployment_event(self, id, message, data).await
    }

    async fn apply_deploy(
        &self,
        deployment: DeploymentId,
        plan: &DeployPlan,
    ) -> Result<DeployApplied> {
        Deployments::apply_deploy(self, deployment, plan).await
    }

    async fn apply_release(
        &self,
        deployment: DeploymentId,
        release: &NewRelease,
    ) -> Result<ReleaseOutcome> {
        Deployments::apply_release(self, deployment, release).await
    }

    async fn apply_live(
        &self,
        deployment: DeploymentId,
        hook: &HookName,
        version: u32,
    ) -> Result<LiveChange> {
        Deployments::apply_live(self, deployment, hook, version).await
    }

    async fn get_deployment(&self, id: DeploymentId) -> Result<Option<Deployment>> {
        Deployments::get_deployment(self, id).await
    }

    async fn list_deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>> {
        Deployments::list_deployments(self, filter).await
    }

    async fn deployment_events(
        &self,
        id: DeploymentId,
        after: u64,
    ) -> Result<Vec<DeploymentEvent>> {
        Deployments::deployment_events(self, id, after).await
    }
}

#[async_trait]
impl ConventionStore for SqliteBackend {
    async fn get_convention(&self, slug: &ConventionSlug) -> Result<Option<Convention>> {
        Deployments::get_convention(self, slug).await
    }

    async fn list_conventions(&self) -> Result<Vec<Convention>> {
        Deployments::list_conventions(self).await
    }
}

//! `HookRegistry` on Postgres (the shared implementation in `crate::registry`).

use async_trait::async_trait;
use osa_core::Result;
use osa_core::hook::{
    Hook, HookIdentity, HookRelease, HookRun, LiveChange, NewRelease, ReleaseOutcome,
};
use osa_core::id::{HookName, HookRunId, ReleaseId};
use osa_core::registry::{HookRegistry, IdentityOutcome};

use super::PgBackend;

type Registry = crate::registry::Registry<PgBackend>;

#[async_trait]
impl HookRegistry for PgBackend {
    async fn upsert_identity(&self, identity: &HookIdentity) -> Result<IdentityOutcome> {
        Registry::upsert_identity(self, identity).await
    }

    async fn create_release(&self, release: &NewRelease) -> Result<ReleaseOutcome> {
        Registry::create_release(self, release).await
    }

    async fn set_live(&self, hook: &HookName, version: u32) -> Result<LiveChange> {
        Registry::set_live(self, hook, version).await
    }

    async fn get_hook(&self, name: &HookName) -> Result<Option<Hook>> {
        Registry::get_hook(self, name).await
    }

    async fn list_hooks(&self) -> Result<Vec<Hook>> {
        Registry::list_hooks(self).await
    }

    async fn get_release(&self, hook: &HookName, version: u32) -> Result<Option<HookRelease>> {
        Registry::get_release(self, hook, version).await
    }

    async fn get_release_by_id(&self, id: ReleaseId) -> Result<Option<HookRelease>> {
        Registry::get_release_by_id(self, id).await
    }

    async fn list_releases(&self, hook: &HookName) -> Result<Vec<HookRelease>> {
        Registry::list_releases(self, hook).await
    }

    async fn resolve_live(&self, hooks: &[HookName]) -> Result<Vec<HookRelease>> {
        Registry::resolve_live(self, hooks).await
    }

    async fn record_run(&self, run: &HookRun) -> Result<bool> {
        Registry::record_run(self, run).await
    }

    async fn get_run(&self, id: HookRunId) -> Result<Option<HookRun>> {
        Registry::get_run(self, id).await
    }
}

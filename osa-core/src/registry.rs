//! The hook registry port.

use async_trait::async_trait;

use crate::Result;
use crate::hook::{
    Hook, HookIdentity, HookRelease, HookRun, LiveChange, NewRelease, ReleaseOutcome,
};
use crate::id::{HookName, HookRunId, ReleaseId};

/// Whether [`HookRegistry::upsert_identity`] created the hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityOutcome {
    /// `true` for the first registration, `false` when an equal identity existed.
    pub created: bool,
}

/// Hooks, their immutable releases, live pointers and run provenance.
///
/// Guarantees every backend gives (checked by the conformance suite in
/// `osa_core::testing`, feature `testing`):
/// - **Identity is fixed.** [`upsert_identity`](Self::upsert_identity) is race-safe:
///   concurrent first registrations of the same identity all succeed and leave one row;
///   an identity that differs in any way from the stored one is a Conflict and writes
///   nothing.
/// - **Releases are immutable and gap-free.** [`create_release`](Self::create_release)
///   assigns `max(version) + 1` per hook under a lock on the hook, so concurrent calls
///   with distinct digests get distinct consecutive versions and the highest ends live.
///   A digest the hook already has returns the existing release with
///   `created = false` and leaves live untouched; the `created` decision is taken under
///   the same lock as the insert. Unknown hook → NotFound.
/// - **Live moves only by release creation or [`set_live`](Self::set_live)**; releases
///   are never deleted.
/// - **Runs are append-only.** [`record_run`](Self::record_run) inserts once per id;
///   a second call with the same id changes nothing (first write wins).
///
/// Each method is atomic on its own.
#[async_trait]
pub trait HookRegistry: Send + Sync {
    /// Registers a hook identity, or checks it equals the stored one.
    async fn upsert_identity(&self, identity: &HookIdentity) -> Result<IdentityOutcome>;

    /// Creates a release (idempotent on digest); a new release becomes live.
    async fn create_release(&self, release: &NewRelease) -> Result<ReleaseOutcome>;

    /// Points the hook's live release at `version` (rollback or pin).
    /// Unknown hook or version → NotFound.
    async fn set_live(&self, hook: &HookName, version: u32) -> Result<LiveChange>;

    /// One hook with its live release.
    async fn get_hook(&self, name: &HookName) -> Result<Option<Hook>>;

    /// Every hook, ordered by name.
    async fn list_hooks(&self) -> Result<Vec<Hook>>;

    /// One release by version.
    async fn get_release(&self, hook: &HookName, version: u32) -> Result<Option<HookRelease>>;

    /// One release by id.
    async fn get_release_by_id(&self, id: ReleaseId) -> Result<Option<HookRelease>>;

    /// Every release of a hook, newest version first. Unknown hook → NotFound.
    async fn list_releases(&self, hook: &HookName) -> Result<Vec<HookRelease>>;

    /// The live release of each hook, in the order given, read in one consistent
    /// snapshot. A hook that is unknown or has no live release → NotFound.
    async fn resolve_live(&self, hooks: &[HookName]) -> Result<Vec<HookRelease>>;

    /// Inserts a run once; returns whether this call inserted it.
    async fn record_run(&self, run: &HookRun) -> Result<bool>;

    /// One run.
    async fn get_run(&self, id: HookRunId) -> Result<Option<HookRun>>;
}

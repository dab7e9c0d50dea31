//! [`Storage`]: every storage port on one type. The engine
//! ([`Engine::new`](crate::saga::Engine::new)) and the HTTP API of the facade take it,
//! and hold it as an `Arc<dyn Storage>`; a `&dyn Storage` upcasts to any one port
//! (`&dyn JobQueue`, `&dyn FeatureStore`, …) where a port alone is wanted.
//!
//! Code that needs only some ports names those ports instead (the storage conformance
//! checks do, each bound by the ports it uses).

use crate::{
    ConventionStore, DeploymentLog, FeatureStore, HookRegistry, JobQueue, ValidationRunStore,
};

/// The six storage ports together: [`HookRegistry`], [`FeatureStore`], [`JobQueue`],
/// [`ValidationRunStore`], [`ConventionStore`] and [`DeploymentLog`], shareable
/// across tasks. Implemented for every type that implements them all (a backend
/// implements the ports, never this trait); `dyn Storage` is usable.
pub trait Storage:
    HookRegistry
    + FeatureStore
    + JobQueue
    + ValidationRunStore
    + ConventionStore
    + DeploymentLog
    + Send
    + Sync
    + 'static
{
}

impl<T> Storage for T where
    T: HookRegistry
        + FeatureStore
        + JobQueue
        + ValidationRunStore
        + ConventionStore
        + DeploymentLog
        + Send
        + Sync
        + 'static
{
}

//! Checks of [`HookRegistry`]: identities, releases, the live pointer, hook runs.

use std::collections::BTreeSet;

use super::{hook_run, name, process_release, scored_identity};
use crate::feature::{Cardinality, FeatureSpec};
use crate::hook::HookRunStatus;
use crate::id::{HookRunId, ReleaseId, ValidationRunId};
use crate::testing::fixtures::every_type_identity;
use crate::{ErrorKind, HookRegistry};

/// The list of this module's checks, expanded by
/// [`storage_conformance!`](crate::storage_conformance) into one test each.
#[doc(hidden)]
#[macro_export]
macro_rules! __storage_registry_checks {
    ($($declared:tt)*) => {
        $crate::__storage_conformance!(@tests registry; $($declared)*;
            concurrent_releases_get_consecutive_versions,
            concurrent_same_digest_creates_once,
            concurrent_first_identity_registration,
            changed_contract_conflicts_and_writes_nothing,
            set_live_moves_the_pointer,
            record_run_is_insert_once,
            resolve_live_snapshots_in_order,
        );
    };
}
#[doc(hidden)]
pub use crate::__storage_registry_checks as checks;

/// 16 concurrent releases with distinct digests get versions 1..=16; live is 16.
pub async fn concurrent_releases_get_consecutive_versions<S: HookRegistry + Clone + 'static>(
    store: S,
) {
    let identity = scored_identity("pockets");
    store.upsert_identity(&identity).await.expect("register");
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        let hook = identity.name.clone();
        tasks.push(tokio::spawn(async move {
            store.create_release(&process_release(&hook, n)).await
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        let outcome = task.await.expect("task").expect("create_release");
        assert!(outcome.created);
        versions.push(outcome.release.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=16).collect::<Vec<u32>>());
    let hook = store
        .get_hook(&identity.name)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(hook.live.expect("live").version, 16);
    assert_eq!(
        store
            .list_releases(&identity.name)
            .await
            .expect("list")
            .len(),
        16
    );
}

/// 16 concurrent calls with one digest: one `created`, fifteen not, one row.
pub async fn concurrent_same_digest_creates_once<S: HookRegistry + Clone + 'static>(store: S) {
    let identity = scored_identity("pockets");
    store.upsert_identity(&identity).await.expect("register");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let hook = identity.name.clone();
        tasks.push(tokio::spawn(async move {
            store.create_release(&process_release(&hook, 7)).await
        }));
    }
    let mut created = 0;
    let mut ids = BTreeSet::new();
    for task in tasks {
        let outcome = task.await.expect("task").expect("create_release");
        created += usize::from(outcome.created);
        ids.insert(outcome.release.id);
        assert_eq!(outcome.release.version, 1);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(
        store
            .list_releases(&identity.name)
            .await
            .expect("list")
            .len(),
        1
    );
    // A second digest is version 2 and moves live; re-submitting the first leaves live alone.
    store
        .create_release(&process_release(&identity.name, 8))
        .await
        .expect("v2");
    let again = store
        .create_release(&process_release(&identity.name, 7))
        .await
        .expect("again");
    assert!(!again.created);
    assert_eq!(again.release.version, 1);
    let live = store
        .get_hook(&identity.name)
        .await
        .expect("get")
        .expect("exists")
        .live
        .expect("live");
    assert_eq!(live.version, 2);
    let missing = store
        .create_release(&process_release(&name("nope"), 1))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

/// Concurrent first registrations of the same identity all succeed; one row.
pub async fn concurrent_first_identity_registration<S: HookRegistry + Clone + 'static>(store: S) {
    let identity = every_type_identity("probe");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let identity = identity.clone();
        tasks.push(tokio::spawn(async move {
            store.upsert_identity(&identity).await
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += usize::from(task.await.expect("task").expect("upsert").created);
    }
    assert_eq!(created, 1);
    let hooks = store.list_hooks().await.expect("list");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].identity, identity);
    assert!(hooks[0].live.is_none());
}

/// Changing a column's description is a Conflict and writes nothing.
pub async fn changed_contract_conflicts_and_writes_nothing<S: HookRegistry>(store: S) {
    let identity = scored_identity("pockets");
    store.upsert_identity(&identity).await.expect("register");
    let mut changed = identity.clone();
    let mut columns = changed.feature.columns().to_vec();
    columns[0].description = Some("now described".into());
    changed.feature = FeatureSpec::table(Cardinality::Many, columns).expect("spec");
    let err = store.upsert_identity(&changed).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(
        err.to_string()
            .contains("column `score` changes definition"),
        "{err}"
    );
    let stored = store
        .get_hook(&identity.name)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.identity, identity);
    let again = store
        .upsert_identity(&identity)
        .await
        .expect("same identity");
    assert!(!again.created);
}

/// `set_live` moves the pointer; unknown hook or version is NotFound.
pub async fn set_live_moves_the_pointer<S: HookRegistry>(store: S) {
    let identity = scored_identity("pockets");
    store.upsert_identity(&identity).await.expect("register");
    for n in 1..=3 {
        store
            .create_release(&process_release(&identity.name, n))
            .await
            .expect("release");
    }
    let change = store.set_live(&identity.name, 1).await.expect("rollback");
    assert_eq!(change.previous.expect("previous").version, 3);
    assert_eq!(change.current.version, 1);
    let live = store
        .get_hook(&identity.name)
        .await
        .expect("get")
        .expect("exists")
        .live
        .expect("live");
    assert_eq!(live.version, 1);
    assert_eq!(
        store.set_live(&identity.name, 9).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        store.set_live(&name("ghost"), 1).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let v2 = store
        .get_release(&identity.name, 2)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        store.get_release_by_id(v2.id).await.expect("by id"),
        Some(v2)
    );
    assert_eq!(
        store.get_release(&identity.name, 4).await.expect("get"),
        None
    );
}

/// A run id is recorded once; the first write wins.
pub async fn record_run_is_insert_once<S: HookRegistry>(store: S) {
    let identity = scored_identity("pockets");
    store.upsert_identity(&identity).await.expect("register");
    let release = store
        .create_release(&process_release(&identity.name, 1))
        .await
        .expect("release")
        .release;
    let id = HookRunId::for_step(ValidationRunId::new_random(), 0, &identity.name);
    let first = hook_run(id, release.id, HookRunStatus::Passed);
    assert!(store.record_run(&first).await.expect("first"));
    let mut second = first.clone();
    second.status = HookRunStatus::Error;
    second.oom_retries = 3;
    assert!(!store.record_run(&second).await.expect("second"));
    let stored = store.get_run(id).await.expect("get").expect("exists");
    assert_eq!(stored.status, HookRunStatus::Passed);
    assert_eq!(stored.oom_retries, 1);
    assert_eq!(stored.counts, first.counts);
    assert_eq!(stored.log_ref, first.log_ref);
    let orphan = hook_run(
        HookRunId::new_random(),
        ReleaseId::new_random(),
        HookRunStatus::Passed,
    );
    let orphaned = store.record_run(&orphan).await;
    assert_eq!(
        orphaned.expect_err("a run must reference a release").kind(),
        ErrorKind::NotFound
    );
    assert!(store.get_run(orphan.id).await.expect("read").is_none());
}

/// `resolve_live` returns the live releases in the order asked; a hook without a
/// live release is NotFound.
pub async fn resolve_live_snapshots_in_order<S: HookRegistry>(store: S) {
    for hook in ["alpha", "beta"] {
        let identity = scored_identity(hook);
        store.upsert_identity(&identity).await.expect("register");
    }
    store
        .create_release(&process_release(&name("alpha"), 1))
        .await
        .expect("a1");
    store
        .create_release(&process_release(&name("beta"), 2))
        .await
        .expect("b1");
    store
        .create_release(&process_release(&name("beta"), 3))
        .await
        .expect("b2");
    let live = store
        .resolve_live(&[name("beta"), name("alpha")])
        .await
        .expect("resolve");
    assert_eq!(
        live.iter()
            .map(|r| (r.hook.as_str(), r.version))
            .collect::<Vec<_>>(),
        [("beta", 2), ("alpha", 1)]
    );
    store
        .upsert_identity(&scored_identity("gamma"))
        .await
        .expect("register");
    let err = store
        .resolve_live(&[name("alpha"), name("gamma")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(store.resolve_live(&[]).await.expect("empty").is_empty());
}

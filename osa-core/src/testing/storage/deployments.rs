//! Checks of [`DeploymentLog`] and [`ConventionStore`]: atomic, idempotent deploys,
//! bounded event logs and their snapshot reads, listings with filters. A deploy
//! writes hook releases, so its check also reads [`HookRegistry`].

use std::time::Duration;

use serde_json::json;

use crate::deploy::{DeploymentFilter, DeploymentKind, DeploymentStatus, EventLog, NewDeployment};
use crate::feature::{Cardinality, FeatureSpec};
use crate::id::DeploymentId;
use crate::testing::fixtures::{digest, sdk_deploy_payload};
use crate::{ConventionStore, DeploymentLog, ErrorKind, HookRegistry};

/// The list of this module's checks, expanded by
/// [`storage_conformance!`](crate::storage_conformance) into one test each.
#[doc(hidden)]
#[macro_export]
macro_rules! __storage_deployments_checks {
    ($($declared:tt)*) => {
        $crate::__storage_conformance!(@tests deployments; $($declared)*;
            deploy_is_atomic_and_idempotent,
            deployment_event_log_is_bounded,
            deployment_event_reads_are_snapshots,
            deployments_are_listed_with_filters,
        );
    };
}
#[doc(hidden)]
pub use crate::__storage_deployments_checks as checks;

fn new_deployment(kind: DeploymentKind, target: &str) -> NewDeployment {
    let payload = format!("{{\"target\": \"{target}\"}}");
    NewDeployment {
        id: DeploymentId::new_random(),
        kind,
        target: target.into(),
        principal: "ci-bot".into(),
        payload_sha256: crate::id::Digest::of_bytes(payload.as_bytes()),
        payload_size: payload.len() as u64,
        payload_ref: format!("deployments/{target}.json"),
        rollback_of: None,
    }
}

/// A deploy applies in one transaction: twice gives one release per hook and the
/// same convention; a contract conflict writes nothing.
pub async fn deploy_is_atomic_and_idempotent<S: DeploymentLog + HookRegistry + ConventionStore>(
    store: S,
) {
    let plan = sdk_deploy_payload().plan(Some("ci-bot")).expect("plan");
    let first = store
        .record_deployment(&new_deployment(
            DeploymentKind::Convention,
            plan.slug.as_str(),
        ))
        .await
        .expect("begin");
    assert_eq!(first.status, DeploymentStatus::Pending);
    assert_eq!(
        store
            .apply_deploy(first.id, &plan)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict,
        "pending cannot succeed"
    );
    store
        .set_deployment_status(first.id, DeploymentStatus::Applying, None)
        .await
        .expect("applying");
    let applied = store.apply_deploy(first.id, &plan).await.expect("apply");
    assert!(applied.releases.iter().all(|r| r.created));
    assert_eq!(applied.convention.slug, plan.slug);
    assert_eq!(applied.convention.hooks.len(), 2);
    assert_eq!(
        store
            .get_deployment(first.id)
            .await
            .expect("get")
            .expect("exists")
            .status,
        DeploymentStatus::Succeeded
    );

    let second = store
        .record_deployment(&new_deployment(
            DeploymentKind::Convention,
            plan.slug.as_str(),
        ))
        .await
        .expect("begin");
    store
        .set_deployment_status(second.id, DeploymentStatus::Applying, None)
        .await
        .expect("applying");
    let again = store
        .apply_deploy(second.id, &plan)
        .await
        .expect("apply again");
    assert!(again.releases.iter().all(|r| !r.created));
    assert_eq!(again.releases[1].release.id, applied.releases[1].release.id);
    assert_eq!(again.convention.created_at, applied.convention.created_at);
    for hook in &plan.identities {
        assert_eq!(
            store
                .list_releases(&hook.name)
                .await
                .expect("releases")
                .len(),
            1
        );
    }
    let stored = store
        .get_convention(&plan.slug)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored, again.convention);
    assert_eq!(store.list_conventions().await.expect("list").len(), 1);

    // Second hook's contract changes and a third, new hook is added: nothing of it lands.
    let mut changed = sdk_deploy_payload();
    changed.title = "Protein Structures v2".into();
    changed.hooks[0].release.digest = digest(500);
    let mut feature_columns = changed.hooks[1].feature.columns().to_vec();
    feature_columns.pop();
    changed.hooks[1].feature =
        FeatureSpec::table(Cardinality::Many, feature_columns).expect("spec");
    let changed = changed.plan(Some("ci-bot")).expect("plan");
    let third = store
        .record_deployment(&new_deployment(
            DeploymentKind::Convention,
            changed.slug.as_str(),
        ))
        .await
        .expect("begin");
    store
        .set_deployment_status(third.id, DeploymentStatus::Applying, None)
        .await
        .expect("applying");
    let err = store.apply_deploy(third.id, &changed).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(
        store.get_convention(&changed.slug).await.expect("get"),
        None
    );
    assert_eq!(
        store
            .list_releases(&plan.identities[0].name)
            .await
            .expect("releases")
            .len(),
        1,
        "rolled back"
    );
    store
        .set_deployment_status(third.id, DeploymentStatus::Failed, Some(&err.to_string()))
        .await
        .expect("failed");
    let failed = store
        .get_deployment(third.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(failed.status, DeploymentStatus::Failed);
    assert!(failed.error.expect("error").contains("fixed forever"));
    let late = store
        .set_deployment_status(third.id, DeploymentStatus::Succeeded, None)
        .await
        .unwrap_err();
    assert_eq!(late.kind(), ErrorKind::Conflict);
}

/// Deployment event logs keep the first 20 and the last 180 events, with a marker.
pub async fn deployment_event_log_is_bounded<S: DeploymentLog>(store: S) {
    let d = store
        .record_deployment(&new_deployment(DeploymentKind::Live, "pockets"))
        .await
        .expect("begin");
    for i in 1..=230u64 {
        let event = store
            .append_deployment_event(d.id, &format!("event {i}"), json!({"i": i}))
            .await
            .expect("append");
        assert_eq!(event.seq, i);
    }
    let events = store.deployment_events(d.id, 0).await.expect("events");
    assert_eq!(events.len(), (EventLog::MAX + 1) as usize);
    assert_eq!(events[19].message, "event 20");
    assert_eq!(events[20].seq, 0);
    assert_eq!(events[20].data, json!({"dropped": 30}));
    assert_eq!(events[21].message, "event 51");
    assert_eq!(events.last().expect("last").message, "event 230");
    let tail = store.deployment_events(d.id, 225).await.expect("tail");
    assert_eq!(
        tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [226, 227, 228, 229, 230]
    );
    assert_eq!(
        store
            .deployment_events(DeploymentId::new_random(), 0)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

/// A read of a deployment's events is one snapshot: read while events are appended
/// (and old ones evicted), the gap marker always counts exactly the events missing
/// between the first 20 and the newest one read.
pub async fn deployment_event_reads_are_snapshots<S: DeploymentLog>(store: S) {
    let d = store
        .record_deployment(&new_deployment(DeploymentKind::Live, "busy"))
        .await
        .expect("begin");
    let done = std::sync::atomic::AtomicBool::new(false);
    let writer = async {
        for i in 1..=320u64 {
            store
                .append_deployment_event(d.id, &format!("event {i}"), json!({}))
                .await
                .expect("append");
            tokio::task::yield_now().await;
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let reader = async {
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let events = store.deployment_events(d.id, 0).await.expect("events");
            let newest = events.iter().map(|e| e.seq).max().unwrap_or(0);
            let kept = events.iter().filter(|e| e.seq != 0).count() as u64;
            let dropped = events
                .iter()
                .find(|e| e.seq == 0)
                .map_or(0, |marker| marker.data["dropped"].as_u64().expect("count"));
            assert_eq!(kept, newest.min(EventLog::MAX), "{newest}");
            assert_eq!(dropped, newest.saturating_sub(EventLog::MAX), "{newest}");
            tokio::task::yield_now().await;
        }
    };
    tokio::join!(writer, reader);
}

/// Listing filters by target and status and pages newest first.
pub async fn deployments_are_listed_with_filters<S: DeploymentLog>(store: S) {
    let mut ids = Vec::new();
    for (i, target) in ["alpha", "beta", "alpha", "alpha"].iter().enumerate() {
        let d = store
            .record_deployment(&new_deployment(DeploymentKind::Release, target))
            .await
            .expect("begin");
        if i == 3 {
            store
                .set_deployment_status(d.id, DeploymentStatus::Failed, Some("no"))
                .await
                .expect("fail");
        }
        ids.push(d);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let alpha = store
        .list_deployments(&DeploymentFilter {
            target: Some("alpha".into()),
            limit: 10,
            ..DeploymentFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        alpha.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[3].id, ids[2].id, ids[0].id]
    );
    let failed = store
        .list_deployments(&DeploymentFilter {
            status: Some(DeploymentStatus::Failed),
            limit: 10,
            ..DeploymentFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(failed.len(), 1);
    let first_page = store
        .list_deployments(&DeploymentFilter {
            limit: 2,
            ..DeploymentFilter::default()
        })
        .await
        .expect("page");
    assert_eq!(first_page.len(), 2);
    let last = first_page.last().expect("last");
    let second_page = store
        .list_deployments(&DeploymentFilter {
            before: Some((last.created_at, last.id)),
            limit: 2,
            ..DeploymentFilter::default()
        })
        .await
        .expect("page");
    assert_eq!(
        second_page.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[1].id, ids[0].id]
    );
    let since = store
        .list_deployments(&DeploymentFilter {
            since: Some(ids[2].created_at),
            limit: 10,
            ..DeploymentFilter::default()
        })
        .await
        .expect("since");
    assert_eq!(since.len(), 2);
}

//! The storage conformance suite: every backend runs these from its own tests through
//! [`storage_conformance!`](crate::storage_conformance), each test on a fresh, empty,
//! migrated store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, NaiveDate, Utc};
use serde_json::json;
use uuid::Uuid;

use super::fixtures::{column, digest, every_type_identity};
use crate::deploy::{DeploymentFilter, DeploymentKind, DeploymentStatus, EventLog, NewDeployment};
use crate::feature::{Cardinality, FeatureSpec, FeatureValue, JsonType};
use crate::feature_store::{ColumnFilter, FeatureBatch, FeatureQuery, FeatureRow, NewFeatureRow};
use crate::hook::{HookIdentity, HookRun, HookRunStatus, NewRelease, OutcomeCounts};
use crate::id::{ColumnName, HookName, HookRunId, RecordId, ReleaseId, ValidationRunId};
use crate::id::{ConventionSlug, DeploymentId};
use crate::jobs::{FailOutcome, NewJob};
use crate::runtime::{Limits, RuntimeConfig};
use crate::validation::{
    Applied, FeatureChunks, FinalizePlan, RecordVerdict, RunEventKind, RunProgress, RunStatus,
    StagedReplace, StepPlan, StepRelease, StepStatus, SubmitPlan, ValidationRun, Verdict,
};
use crate::{
    ConventionStore, DeploymentLog, ErrorKind, FeatureStore, HookRegistry, JobQueue,
    ValidationRunStore,
};

/// What a backend must implement to run the suite.
pub trait Storage:
    HookRegistry
    + FeatureStore
    + JobQueue
    + ValidationRunStore
    + DeploymentLog
    + ConventionStore
    + Clone
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
        + DeploymentLog
        + ConventionStore
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Generates one `#[tokio::test]` per conformance check; `$make` is an async
/// expression producing `(store, guard)`: a fresh, migrated backend and whatever must
/// live as long as the test (a temp dir, a schema dropper).
#[macro_export]
macro_rules! storage_conformance {
    ($make:expr) => {
        $crate::storage_conformance!(@tests $make;
            concurrent_releases_get_consecutive_versions,
            concurrent_same_digest_creates_once,
            concurrent_first_identity_registration,
            changed_contract_conflicts_and_writes_nothing,
            set_live_moves_the_pointer,
            record_run_is_insert_once,
            resolve_live_snapshots_in_order,
            ensure_table_is_idempotent_and_guards_the_contract,
            replace_rows_replaces_per_record,
            concurrent_replaces_keep_one_set,
            bad_row_rolls_back_the_whole_insert,
            every_type_round_trips,
            pages_and_filters,
            streamed_rows_equal_the_pages,
            provenance_chain,
            expired_lease_is_claimed_again,
            concurrent_claimers_never_share_a_job,
            exhausted_job_dies_once,
            jobs_are_counted_by_kind_and_state,
            dedupe_key_and_lease_checks,
            redelivered_step_changes_nothing,
            step_hands_its_next_job_to_the_committer,
            finalize_publishes_features_once,
            streamed_finalize_writes_every_chunk_or_nothing,
            concurrent_finalizes_keep_one_set,
            concurrent_staged_finalizes_keep_one_set,
            staged_features_publish_like_a_plain_finalize,
            end_run_happens_once,
            run_records_keep_submit_order,
            run_reads_are_snapshots,
            deploy_is_atomic_and_idempotent,
            deployment_event_log_is_bounded,
            deployment_event_reads_are_snapshots,
            deployments_are_listed_with_filters,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (store, _guard) = $make.await;
                $crate::testing::storage::$name(store).await;
            }
        )*
    };
}

fn name(s: &str) -> HookName {
    HookName::new(s).expect("valid hook name")
}

fn record(s: &str) -> RecordId {
    RecordId::new(s).expect("valid record id")
}

fn scored_identity(hook: &str) -> HookIdentity {
    HookIdentity {
        name: name(hook),
        feature: FeatureSpec::table(
            Cardinality::Many,
            vec![
                column("score", JsonType::Number, None, true),
                column("label", JsonType::String, None, false),
            ],
        )
        .expect("distinct columns"),
    }
}

fn process_release(hook: &HookName, n: u64) -> NewRelease {
    NewRelease {
        hook: hook.clone(),
        runtime: RuntimeConfig::Process {
            command: vec!["python3".into(), "hook.py".into()],
            digest: digest(n),
            config: serde_json::Map::new(),
            limits: Limits::default(),
        },
        source_ref: format!("git:{n}"),
        built_by: Some("conformance".into()),
    }
}

fn hook_run(id: HookRunId, release: ReleaseId, status: HookRunStatus) -> HookRun {
    let started_at = Utc::now() - ChronoDuration::seconds(2);
    HookRun {
        id,
        release_id: release,
        status,
        started_at,
        finished_at: started_at + ChronoDuration::milliseconds(1500),
        duration_s: 1.5,
        oom_retries: 1,
        log_ref: Some("logs/run.log".into()),
        input_sha256: Some(digest(99)),
        counts: OutcomeCounts {
            passed: 3,
            rejected: 1,
            errored: 0,
        },
    }
}

/// Registers `identity` with one release and a recorded run; returns the run id.
async fn hook_with_run<S: Storage>(store: &S, identity: &HookIdentity) -> HookRunId {
    store.upsert_identity(identity).await.expect("register");
    let release = store
        .create_release(&process_release(&identity.name, 1))
        .await
        .expect("release")
        .release;
    store.ensure_table(identity).await.expect("table");
    let run = HookRunId::new_random();
    assert!(
        store
            .record_run(&hook_run(run, release.id, HookRunStatus::Passed))
            .await
            .expect("run")
    );
    run
}

fn scored_rows(record_id: &RecordId, scores: &[f64]) -> Vec<NewFeatureRow> {
    scores
        .iter()
        .enumerate()
        .map(|(i, s)| NewFeatureRow {
            record_id: record_id.clone(),
            row_index: i as u32,
            values: vec![
                FeatureValue::Float(*s),
                FeatureValue::Text(format!("{record_id}-{i}")),
            ],
        })
        .collect()
}

/// The records of `run` still in play, read page by page, checked against the
/// count `progress` has.
async fn in_play_of<S: Storage>(
    store: &S,
    run: ValidationRunId,
    progress: &RunProgress,
) -> Vec<RecordId> {
    let mut in_play = Vec::new();
    let mut from = 0;
    loop {
        let page = store
            .record_page(run, from, 7)
            .await
            .expect("page")
            .expect("the run exists");
        if page.is_empty() {
            break;
        }
        from += page.len() as u32;
        in_play.extend(
            page.into_iter()
                .filter(|v| v.verdict == Verdict::Pending)
                .map(|v| v.record_id),
        );
    }
    assert_eq!(
        in_play.len() as u32,
        progress.in_play,
        "the progress counts them"
    );
    in_play
}

async fn all_rows<S: Storage>(store: &S, hook: &HookName) -> Vec<crate::feature_store::FeatureRow> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .rows(
                hook,
                &FeatureQuery {
                    after,
                    limit: 1000,
                    ..FeatureQuery::default()
                },
            )
            .await
            .expect("rows");
        out.extend(page.rows);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

/// 16 concurrent releases with distinct digests get versions 1..=16; live is 16.
pub async fn concurrent_releases_get_consecutive_versions<S: Storage>(store: S) {
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
pub async fn concurrent_same_digest_creates_once<S: Storage>(store: S) {
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
pub async fn concurrent_first_identity_registration<S: Storage>(store: S) {
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
pub async fn changed_contract_conflicts_and_writes_nothing<S: Storage>(store: S) {
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
pub async fn set_live_moves_the_pointer<S: Storage>(store: S) {
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
pub async fn record_run_is_insert_once<S: Storage>(store: S) {
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
pub async fn resolve_live_snapshots_in_order<S: Storage>(store: S) {
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

/// `ensure_table` twice is one table; another contract is a Conflict; unregistered
/// hooks are NotFound; bad names never reach SQL.
pub async fn ensure_table_is_idempotent_and_guards_the_contract<S: Storage>(store: S) {
    let identity = every_type_identity("probe");
    assert_eq!(
        store.ensure_table(&identity).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    store.upsert_identity(&identity).await.expect("register");
    store.ensure_table(&identity).await.expect("first");
    store.ensure_table(&identity).await.expect("second");
    let mut changed = identity.clone();
    changed.feature =
        FeatureSpec::table(Cardinality::One, identity.feature.columns().to_vec()).expect("spec");
    assert_eq!(
        store.ensure_table(&changed).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    // Identifiers that could break out of quoting or shadow system columns cannot be built.
    assert!(ColumnName::new("run_id").is_err());
    assert!(ColumnName::new("a\"; drop table hooks; --").is_err());
    assert!(HookName::new("x\"; drop table hooks; --").is_err());
    assert!(
        store
            .rows(
                &identity.name,
                &FeatureQuery {
                    limit: 10,
                    ..FeatureQuery::default()
                }
            )
            .await
            .expect("rows")
            .rows
            .is_empty()
    );
}

/// Inserting rows for a record twice leaves only the second set; others untouched;
/// every row references its run.
pub async fn replace_rows_replaces_per_record<S: Storage>(store: S) {
    let identity = scored_identity("pockets");
    let run = hook_with_run(&store, &identity).await;
    let (r1, r2) = (record("r1"), record("r2"));
    let mut rows = scored_rows(&r1, &[0.1, 0.2, 0.3]);
    rows.extend(scored_rows(&r2, &[0.9]));
    let batch = FeatureBatch {
        hook: identity.name.clone(),
        run_id: run,
        validation_run_id: None,
        records: vec![r1.clone(), r2.clone()],
        rows,
    };
    assert_eq!(store.replace_rows(&batch).await.expect("insert"), 4);
    let second = FeatureBatch {
        records: vec![r1.clone()],
        rows: scored_rows(&r1, &[0.5]),
        ..batch.clone()
    };
    assert_eq!(store.replace_rows(&second).await.expect("replace"), 1);
    let stored = all_rows(&store, &identity.name).await;
    let mut by_record: Vec<(String, f64)> = stored
        .iter()
        .map(|r| match &r.values[0] {
            FeatureValue::Float(f) => (r.record_id.to_string(), *f),
            other => panic!("score decoded as {other:?}"),
        })
        .collect();
    by_record.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by_record,
        [("r1".to_string(), 0.5), ("r2".to_string(), 0.9)]
    );
    assert!(stored.iter().all(|r| r.run_id == run));
    // A record listed with no rows loses its rows.
    let clear = FeatureBatch {
        records: vec![r2.clone()],
        rows: vec![],
        ..batch.clone()
    };
    store.replace_rows(&clear).await.expect("clear");
    assert_eq!(all_rows(&store, &identity.name).await.len(), 1);
    // Rows must point at a recorded run.
    let orphan = FeatureBatch {
        run_id: HookRunId::new_random(),
        ..second.clone()
    };
    let err = store.replace_rows(&orphan).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert_eq!(
        all_rows(&store, &identity.name).await.len(),
        1,
        "nothing changed"
    );
}

/// Writer `w`'s batch for `records`: `1 + w % 3` rows per record, all scored `w`;
/// odd writers list the records in reverse order.
fn writer_batch(
    hook: &HookName,
    run_id: HookRunId,
    validation_run_id: Option<ValidationRunId>,
    records: &[RecordId],
    w: usize,
) -> FeatureBatch {
    let mut records = records.to_vec();
    if w % 2 == 1 {
        records.reverse();
    }
    let rows = records
        .iter()
        .flat_map(|r| scored_rows(r, &vec![w as f64; 1 + w % 3]))
        .collect();
    FeatureBatch {
        hook: hook.clone(),
        run_id,
        validation_run_id,
        records,
        rows,
    }
}

/// Every record in `records` holds exactly one complete set of rows from one writer of
/// [`writer_batch`] (writer `w` wrote with run `writers[w]`), and nothing else is stored.
async fn assert_one_set_per_record<S: Storage>(
    store: &S,
    hook: &HookName,
    records: &[RecordId],
    writers: &[HookRunId],
) {
    let mut by_record: BTreeMap<String, Vec<crate::feature_store::FeatureRow>> = BTreeMap::new();
    for row in all_rows(store, hook).await {
        by_record
            .entry(row.record_id.to_string())
            .or_default()
            .push(row);
    }
    assert_eq!(
        by_record.keys().cloned().collect::<BTreeSet<_>>(),
        records
            .iter()
            .map(|r| r.to_string())
            .collect::<BTreeSet<_>>(),
        "{hook}: stored records"
    );
    for (record_id, rows) in by_record {
        let runs: BTreeSet<HookRunId> = rows.iter().map(|r| r.run_id).collect();
        assert_eq!(
            runs.len(),
            1,
            "{hook}: record {record_id} holds the rows of {} writers ({} rows)",
            runs.len(),
            rows.len()
        );
        let w = writers
            .iter()
            .position(|run| Some(run) == runs.first())
            .expect("rows of a known writer");
        let mut indexes: Vec<u32> = rows.iter().map(|r| r.row_index).collect();
        indexes.sort_unstable();
        assert_eq!(
            indexes,
            (0..(1 + w % 3) as u32).collect::<Vec<_>>(),
            "{hook}: record {record_id} holds writer {w}'s rows exactly once"
        );
        assert!(
            rows.iter()
                .all(|r| r.values[0] == FeatureValue::Float(w as f64)),
            "{hook}: record {record_id} mixes writers' values"
        );
    }
}

/// Concurrent replaces of the same records, each writer with its own run and its own
/// rows, end with exactly one writer's set per record: replace-by-record is
/// serialised per record, so no writer's delete misses another's insert. Odd writers
/// list the records in reverse order, so lock ordering is exercised too.
pub async fn concurrent_replaces_keep_one_set<S: Storage>(store: S) {
    const WRITERS: usize = 16;
    let identity = scored_identity("pockets");
    let first = hook_with_run(&store, &identity).await;
    let release = store
        .create_release(&process_release(&identity.name, 1))
        .await
        .expect("release")
        .release;
    let mut writers = vec![first];
    for _ in 1..WRITERS {
        let run = HookRunId::new_random();
        assert!(
            store
                .record_run(&hook_run(run, release.id, HookRunStatus::Passed))
                .await
                .expect("run")
        );
        writers.push(run);
    }
    let records: Vec<RecordId> = (0..40).map(|i| record(&format!("rec-{i:02}"))).collect();
    for _round in 0..3 {
        let mut tasks = Vec::new();
        for (w, run) in writers.iter().enumerate() {
            let store = store.clone();
            let batch = writer_batch(&identity.name, *run, None, &records, w);
            tasks.push(tokio::spawn(
                async move { store.replace_rows(&batch).await },
            ));
        }
        for (w, task) in tasks.into_iter().enumerate() {
            let inserted = task.await.expect("task").expect("replace_rows");
            assert_eq!(inserted, (records.len() * (1 + w % 3)) as u64);
        }
        assert_one_set_per_record(&store, &identity.name, &records, &writers).await;
    }
}

/// A type violation in row 900 of 1,000 rolls back everything and names the row and
/// column.
pub async fn bad_row_rolls_back_the_whole_insert<S: Storage>(store: S) {
    let identity = scored_identity("pockets");
    let run = hook_with_run(&store, &identity).await;
    let keep = record("keep");
    let base = FeatureBatch {
        hook: identity.name.clone(),
        run_id: run,
        validation_run_id: None,
        records: vec![keep.clone()],
        rows: scored_rows(&keep, &[1.0]),
    };
    store.replace_rows(&base).await.expect("seed");
    let records: Vec<RecordId> = (0..1000).map(|i| record(&format!("rec-{i}"))).collect();
    let mut rows: Vec<NewFeatureRow> = records
        .iter()
        .flat_map(|r| scored_rows(r, &[2.0]))
        .collect();
    rows[900].values[0] = FeatureValue::Text("high".into());
    let mut all_records = records.clone();
    all_records.push(keep.clone());
    let bad = FeatureBatch {
        records: all_records,
        rows,
        ..base.clone()
    };
    let err = store.replace_rows(&bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(err.field(), Some("rows[900].score"), "{err}");
    assert!(err.to_string().contains("rec-900"), "{err}");
    let stored = all_rows(&store, &identity.name).await;
    assert_eq!(
        stored.len(),
        1,
        "the seed row survives and nothing was inserted"
    );
    assert_eq!(stored[0].record_id, keep);
    // A NULL in a required column is refused the same way.
    let mut null_rows = scored_rows(&keep, &[1.0]);
    null_rows[0].values[0] = FeatureValue::Null;
    let err = store
        .replace_rows(&FeatureBatch {
            rows: null_rows,
            ..base.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("rows[0].score"));
}

/// Every storage type is written and read back unchanged.
pub async fn every_type_round_trips<S: Storage>(store: S) {
    let identity = every_type_identity("probe");
    let run = hook_with_run(&store, &identity).await;
    let r = record("urn:osa:localhost:rec:abc@1");
    let values = vec![
        FeatureValue::Text("naïve \"quoted\" 'text'; drop table x; --".into()),
        FeatureValue::Float(0.125),
        FeatureValue::Integer(i64::MAX),
        FeatureValue::Boolean(true),
        FeatureValue::Timestamp("2024-05-01T10:00:00.123456Z".parse().expect("ts")),
        FeatureValue::Date(NaiveDate::from_ymd_opt(2024, 2, 29).expect("date")),
        FeatureValue::Uuid(Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").expect("uuid")),
        FeatureValue::Json(json!(["a", 1, {"b": null}])),
        FeatureValue::Json(json!({"nested": {"k": [1, 2]}})),
    ];
    let nulls = {
        let mut v = vec![FeatureValue::Null; values.len()];
        v[0] = FeatureValue::Text("only label".into());
        v
    };
    let validation_run = ValidationRunId::new_random();
    let batch = FeatureBatch {
        hook: identity.name.clone(),
        run_id: run,
        validation_run_id: Some(validation_run),
        records: vec![r.clone()],
        rows: vec![
            NewFeatureRow {
                record_id: r.clone(),
                row_index: 0,
                values: values.clone(),
            },
            NewFeatureRow {
                record_id: r.clone(),
                row_index: 1,
                values: nulls.clone(),
            },
        ],
    };
    store.replace_rows(&batch).await.expect("insert");
    let stored = all_rows(&store, &identity.name).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].values, values);
    assert_eq!(stored[1].values, nulls);
    assert_eq!(stored[0].record_id, r);
    assert_eq!(stored[0].validation_run_id, Some(validation_run));
    assert_eq!((stored[0].row_index, stored[1].row_index), (0, 1));
    let per_record = store.record_features(&r).await.expect("record features");
    assert_eq!(per_record.len(), 1);
    assert_eq!(per_record[0].0, identity.name);
    assert_eq!(per_record[0].1, stored);
    // Null filters: every optional column is null in the second row only.
    let score = ColumnName::new("score").expect("column");
    for (filter, expected) in [
        (ColumnFilter::IsNull(score.clone()), 1),
        (ColumnFilter::IsNotNull(score), 0),
    ] {
        let page = store
            .rows(
                &identity.name,
                &FeatureQuery {
                    filters: vec![filter.clone()],
                    limit: 10,
                    ..FeatureQuery::default()
                },
            )
            .await
            .expect("null filter");
        let rows: Vec<u32> = page.rows.iter().map(|r| r.row_index).collect();
        assert_eq!(rows, [expected], "{filter:?}");
    }
}

/// A streamed read gives exactly the rows of all the pages, in id order, with the
/// same filters; an unknown hook is NotFound before the stream; a stream dropped
/// early leaves the store usable.
pub async fn streamed_rows_equal_the_pages<S: Storage>(store: S) {
    use futures::TryStreamExt;

    let identity = scored_identity("streamed");
    let run = hook_with_run(&store, &identity).await;
    let records: Vec<RecordId> = (0..2_500).map(|i| record(&format!("s{i:05}"))).collect();
    let rows = records
        .iter()
        .enumerate()
        .flat_map(|(i, r)| scored_rows(r, &[i as f64]))
        .collect();
    store
        .replace_rows(&FeatureBatch {
            hook: identity.name.clone(),
            run_id: run,
            validation_run_id: None,
            records: records.clone(),
            rows,
        })
        .await
        .expect("insert");
    let score = ColumnName::new("score").expect("column");
    for filters in [
        Vec::new(),
        vec![ColumnFilter::Gte(
            score.clone(),
            FeatureValue::Float(1_234.0),
        )],
    ] {
        let query = FeatureQuery {
            filters,
            limit: 1000,
            ..FeatureQuery::default()
        };
        let mut paged = Vec::new();
        let mut page_query = query.clone();
        loop {
            let page = store.rows(&identity.name, &page_query).await.expect("page");
            paged.extend(page.rows);
            match page.next_after {
                Some(after) => page_query.after = Some(after),
                None => break,
            }
        }
        let chunks: Vec<Vec<FeatureRow>> = store
            .stream_rows(&identity.name, &query)
            .await
            .expect("stream")
            .try_collect()
            .await
            .expect("every chunk");
        assert!(chunks.iter().all(|c| !c.is_empty()), "no empty chunks");
        let streamed: Vec<FeatureRow> = chunks.into_iter().flatten().collect();
        assert_eq!(streamed.len(), paged.len(), "{:?}", query.filters);
        assert!(streamed == paged, "streamed rows differ from the pages");
    }
    let err = match store
        .stream_rows(&name("no_such_hook"), &FeatureQuery::default())
        .await
    {
        Ok(_) => panic!("an unknown hook streams"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // Dropped after its first chunk: the store still answers, many times over.
    for _ in 0..8 {
        let mut chunks = store
            .stream_rows(&identity.name, &FeatureQuery::default())
            .await
            .expect("stream");
        let first = chunks.try_next().await.expect("a chunk").expect("rows");
        assert!(!first.is_empty());
    }
    let page = store
        .rows(
            &identity.name,
            &FeatureQuery {
                limit: 1,
                ..FeatureQuery::default()
            },
        )
        .await
        .expect("a page after dropped streams");
    assert_eq!(page.rows.len(), 1);
}

/// Keyset pages cover every row once, in id order; filters combine with AND.
pub async fn pages_and_filters<S: Storage>(store: S) {
    let identity = scored_identity("pockets");
    let run = hook_with_run(&store, &identity).await;
    let records: Vec<RecordId> = (0..25).map(|i| record(&format!("r{i:02}"))).collect();
    let rows = records
        .iter()
        .enumerate()
        .flat_map(|(i, r)| scored_rows(r, &[i as f64]))
        .collect();
    store
        .replace_rows(&FeatureBatch {
            hook: identity.name.clone(),
            run_id: run,
            validation_run_id: None,
            records: records.clone(),
            rows,
        })
        .await
        .expect("insert");
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = store
            .rows(
                &identity.name,
                &FeatureQuery {
                    after,
                    limit: 10,
                    ..FeatureQuery::default()
                },
            )
            .await
            .expect("page");
        pages += 1;
        seen.extend(page.rows.iter().map(|r| r.id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let score = ColumnName::new("score").expect("column");
    let filtered = store
        .rows(
            &identity.name,
            &FeatureQuery {
                filters: vec![
                    ColumnFilter::Gte(score.clone(), FeatureValue::Float(10.0)),
                    ColumnFilter::Lte(score.clone(), FeatureValue::Float(12.0)),
                ],
                limit: 100,
                ..FeatureQuery::default()
            },
        )
        .await
        .expect("filtered");
    assert_eq!(filtered.rows.len(), 3);
    let one = store
        .rows(
            &identity.name,
            &FeatureQuery {
                record_id: Some(record("r07")),
                limit: 100,
                ..FeatureQuery::default()
            },
        )
        .await
        .expect("by record");
    assert_eq!(one.rows.len(), 1);
    assert_eq!(one.rows[0].values[0], FeatureValue::Float(7.0));
    let wrong = store
        .rows(
            &identity.name,
            &FeatureQuery {
                filters: vec![ColumnFilter::Eq(score, FeatureValue::Text("7".into()))],
                limit: 10,
                ..FeatureQuery::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::Invalid);
    let unknown = store
        .rows(
            &name("ghost"),
            &FeatureQuery {
                limit: 1,
                ..FeatureQuery::default()
            },
        )
        .await;
    assert_eq!(unknown.unwrap_err().kind(), ErrorKind::NotFound);
}

/// A row leads to its run and release.
pub async fn provenance_chain<S: Storage>(store: S) {
    let identity = scored_identity("pockets");
    let run = hook_with_run(&store, &identity).await;
    let r = record("r1");
    store
        .replace_rows(&FeatureBatch {
            hook: identity.name.clone(),
            run_id: run,
            validation_run_id: None,
            records: vec![r.clone()],
            rows: scored_rows(&r, &[0.7]),
        })
        .await
        .expect("insert");
    let row = all_rows(&store, &identity.name).await.remove(0);
    let provenance = store
        .provenance(&identity.name, row.id)
        .await
        .expect("provenance")
        .expect("exists");
    assert_eq!(provenance.row, row);
    assert_eq!(provenance.run.id, run);
    assert_eq!(provenance.release.id, provenance.run.release_id);
    assert_eq!(provenance.release.version, 1);
    assert_eq!(provenance.release.digest(), &digest(1));
    assert_eq!(provenance.release.source_ref, "git:1");
    assert_eq!(provenance.run.log_ref.as_deref(), Some("logs/run.log"));
    assert_eq!(
        store
            .provenance(&identity.name, row.id + 1000)
            .await
            .expect("missing"),
        None
    );
}

fn job(kind: &str, max_attempts: u32) -> NewJob {
    NewJob {
        kind: kind.into(),
        payload: json!({"n": 1}),
        run_at: Utc::now() - ChronoDuration::seconds(1),
        max_attempts,
        dedupe_key: None,
    }
}

/// A claimed job whose lease expired is claimed again with the next attempt number.
pub async fn expired_lease_is_claimed_again<S: Storage>(store: S) {
    store
        .enqueue(&job("step", 5))
        .await
        .expect("enqueue")
        .expect("new");
    let first = store
        .claim(&["step"], 10, Duration::from_millis(200))
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    assert_eq!(first[0].payload, json!({"n": 1}));
    assert!(
        store
            .claim(&["step"], 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty()
    );
    assert!(
        store
            .heartbeat(&first[0].lease, Duration::from_millis(300))
            .await
            .expect("heartbeat")
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let second = store
        .claim(&["step"], 10, Duration::from_secs(30))
        .await
        .expect("reclaim");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt, 2);
    assert_eq!(second[0].lease.job_id, first[0].lease.job_id);
    // The stale holder can no longer act on the job.
    assert!(
        !store
            .complete(&first[0].lease)
            .await
            .expect("stale complete")
    );
    assert!(
        !store
            .heartbeat(&first[0].lease, Duration::from_secs(1))
            .await
            .expect("stale heartbeat")
    );
    assert!(store.complete(&second[0].lease).await.expect("complete"));
    assert!(
        store
            .claim(&["step"], 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty()
    );
    // Other kinds and future jobs are not claimed.
    store.enqueue(&job("other", 1)).await.expect("enqueue");
    let mut later = job("step", 1);
    later.run_at = Utc::now() + ChronoDuration::hours(1);
    store.enqueue(&later).await.expect("enqueue");
    assert!(
        store
            .claim(&["step"], 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty()
    );
}

/// N workers claiming concurrently never receive the same job.
pub async fn concurrent_claimers_never_share_a_job<S: Storage>(store: S) {
    for _ in 0..60 {
        store.enqueue(&job("step", 3)).await.expect("enqueue");
    }
    let claimed = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        let claimed = claimed.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let jobs = store
                    .claim(&["step"], 4, Duration::from_secs(60))
                    .await
                    .expect("claim");
                if jobs.is_empty() {
                    return;
                }
                for job in jobs {
                    claimed.lock().await.push(job.lease.job_id);
                    assert!(store.complete(&job.lease).await.expect("complete"));
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    let claimed = claimed.lock().await;
    let distinct: BTreeSet<_> = claimed.iter().collect();
    assert_eq!(claimed.len(), 60, "every job claimed once");
    assert_eq!(distinct.len(), 60, "no job claimed twice");
}

/// `counts` lists the queue by kind and state: due, deferred, leased and dead jobs;
/// finished jobs are gone from it.
pub async fn jobs_are_counted_by_kind_and_state<S: Storage>(store: S) {
    use crate::jobs::{JobCount, JobState};

    assert_eq!(
        store.counts().await.expect("counts"),
        Vec::<JobCount>::new()
    );
    for _ in 0..3 {
        store.enqueue(&job("count.a", 1)).await.expect("enqueue");
    }
    let later = NewJob {
        run_at: Utc::now() + ChronoDuration::hours(1),
        ..job("count.b", 1)
    };
    store.enqueue(&later).await.expect("enqueue");
    let mut claimed = store
        .claim(&["count.a"], 2, Duration::from_secs(30))
        .await
        .expect("claim");
    let done = claimed.pop().expect("two claimed");
    assert!(store.complete(&done.lease).await.expect("complete"));
    let dying = claimed.pop().expect("two claimed");
    assert_eq!(
        store
            .fail(&dying.lease, "boom", Utc::now())
            .await
            .expect("fail"),
        FailOutcome::Dead
    );
    let running = store
        .claim(&["count.a"], 1, Duration::from_secs(30))
        .await
        .expect("claim")
        .pop()
        .expect("the third");
    let count = |kind: &str, state, count| JobCount {
        kind: kind.into(),
        state,
        count,
    };
    assert_eq!(
        store.counts().await.expect("counts"),
        [
            count("count.a", JobState::Running, 1),
            count("count.a", JobState::Dead, 1),
            count("count.b", JobState::Scheduled, 1),
        ]
    );
    assert!(store.complete(&running.lease).await.expect("complete"));
    store.enqueue(&job("count.b", 1)).await.expect("enqueue");
    assert_eq!(
        store.counts().await.expect("counts"),
        [
            count("count.a", JobState::Dead, 1),
            count("count.b", JobState::Ready, 1),
            count("count.b", JobState::Scheduled, 1),
        ]
    );
}

/// A job failing past its attempts becomes dead, and only one `fail` reports it.
pub async fn exhausted_job_dies_once<S: Storage>(store: S) {
    store.enqueue(&job("step", 2)).await.expect("enqueue");
    let first = store
        .claim(&["step"], 1, Duration::from_secs(30))
        .await
        .expect("claim")
        .remove(0);
    let retry_at = Utc::now() - ChronoDuration::milliseconds(1);
    let outcome = store
        .fail(&first.lease, "boom", retry_at)
        .await
        .expect("fail");
    assert!(
        matches!(outcome, FailOutcome::Retrying { .. }),
        "{outcome:?}"
    );
    let second = store
        .claim(&["step"], 1, Duration::from_secs(30))
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(second.attempt, 2);
    assert_eq!(
        store
            .fail(&second.lease, "boom again", retry_at)
            .await
            .expect("fail"),
        FailOutcome::Dead
    );
    assert_eq!(
        store
            .fail(&second.lease, "again", retry_at)
            .await
            .expect("fail"),
        FailOutcome::LeaseLost
    );
    assert_eq!(
        store
            .fail(&first.lease, "stale", retry_at)
            .await
            .expect("fail"),
        FailOutcome::LeaseLost
    );
    assert!(
        store
            .claim(&["step"], 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty()
    );
}

/// Dedupe keys make enqueue idempotent while the job exists; zero attempts is invalid.
pub async fn dedupe_key_and_lease_checks<S: Storage>(store: S) {
    let mut keyed = job("finalize", 3);
    keyed.dedupe_key = Some("run-1/finalize".into());
    assert!(store.enqueue(&keyed).await.expect("first").is_some());
    assert!(store.enqueue(&keyed).await.expect("second").is_none());
    let claimed = store
        .claim(&["finalize"], 5, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert!(store.complete(&claimed[0].lease).await.expect("complete"));
    assert!(
        store
            .enqueue(&keyed)
            .await
            .expect("after completion")
            .is_some()
    );
    let err = store.enqueue(&job("x", 0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

/// The run's progress, which must exist.
async fn progress_of<S: Storage>(store: &S, run: ValidationRunId) -> RunProgress {
    store
        .run_progress(run)
        .await
        .expect("progress")
        .expect("exists")
}

/// A submitted run over `records` with one step per hook in `hooks`.
async fn submitted_run<S: Storage>(
    store: &S,
    hooks: &[&HookIdentity],
    records: &[RecordId],
) -> ValidationRun {
    let mut steps = Vec::new();
    for (index, identity) in hooks.iter().enumerate() {
        store.upsert_identity(identity).await.expect("register");
        store.ensure_table(identity).await.expect("table");
        let release = store
            .create_release(&process_release(&identity.name, index as u64))
            .await
            .expect("release")
            .release;
        steps.push(StepRelease {
            index: index as u32,
            hook: identity.name.clone(),
            release_id: release.id,
            version: release.version,
        });
    }
    let now = Utc::now();
    let run = ValidationRun {
        id: ValidationRunId::new_random(),
        convention: ConventionSlug::new("protein-structures").expect("slug"),
        status: RunStatus::Pending,
        current_step: 0,
        steps,
        record_count: records.len() as u32,
        failure: None,
        created_at: now,
        updated_at: now,
    };
    store
        .create_run(&SubmitPlan {
            run: run.clone(),
            records: records.to_vec(),
            inputs_ref: format!("runs/{}/inputs.jsonl", run.id),
            first_job: Some(step_job(run.id, 0)),
            events: vec![RunEventKind::Submitted {
                records: records.len() as u32,
                steps: hooks.len() as u32,
            }],
        })
        .await
        .expect("create run");
    run
}

fn step_job(run: ValidationRunId, step: u32) -> NewJob {
    NewJob {
        kind: "validation.step".into(),
        payload: json!({"run": run, "step": step}),
        run_at: Utc::now() - ChronoDuration::seconds(1),
        max_attempts: 3,
        dedupe_key: Some(format!("{run}/step/{step}")),
    }
}

fn step_plan(run: &ValidationRun, step: u32, rejected: &[RecordId]) -> StepPlan {
    let release = &run.steps[step as usize];
    let mut hook_run = hook_run(
        HookRunId::for_step(run.id, step, &release.hook),
        release.release_id,
        if rejected.is_empty() {
            HookRunStatus::Passed
        } else {
            HookRunStatus::Failed
        },
    );
    hook_run.counts = OutcomeCounts {
        passed: run.record_count - rejected.len() as u32,
        rejected: rejected.len() as u32,
        errored: 0,
    };
    StepPlan {
        run_id: run.id,
        step,
        status: if rejected.is_empty() {
            StepStatus::Passed
        } else {
            StepStatus::Failed
        },
        verdicts: rejected
            .iter()
            .map(|r| RecordVerdict {
                record_id: r.clone(),
                verdict: Verdict::Rejected {
                    step,
                    hook: release.hook.clone(),
                    reason: "too blurry".into(),
                },
            })
            .collect(),
        hook_run,
        outputs_ref: format!("runs/{}/steps/{step}", run.id),
        next_job: step_job(run.id, step + 1),
        completes: None,
        events: vec![RunEventKind::StepFinished {
            step,
            hook: release.hook.clone(),
            status: if rejected.is_empty() {
                StepStatus::Passed
            } else {
                StepStatus::Failed
            },
            counts: OutcomeCounts::default(),
        }],
    }
}

/// A step plan applied twice (redelivery) changes nothing the second time; a step
/// cannot jump ahead.
pub async fn redelivered_step_changes_nothing<S: Storage>(store: S) {
    let records = [record("a"), record("b"), record("c")];
    let (h1, h2) = (scored_identity("first"), scored_identity("second"));
    let run = submitted_run(&store, &[&h1, &h2], &records).await;
    let view = store.run_view(run.id).await.expect("get").expect("exists");
    assert_eq!(view.run.status, RunStatus::Pending);
    assert_eq!(view.steps.len(), 2);
    assert!(view.steps.iter().all(|s| s.status == StepStatus::Pending));
    assert!(view.verdicts.iter().all(|v| v.verdict == Verdict::Pending));
    assert_eq!(
        view.verdicts
            .iter()
            .map(|v| v.record_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let job = store
        .claim(&["validation.step"], 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(job.len(), 1, "the submit enqueued step 0");

    let ahead = step_plan(&run, 1, &[]);
    assert_eq!(
        store.apply_step(&ahead).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );

    // A hook run of an unknown release is refused whole.
    let mut unknown = step_plan(&run, 0, &[record("b")]);
    unknown.hook_run.release_id = ReleaseId::new_random();
    assert_eq!(
        store.apply_step(&unknown).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let untouched = store.run_view(run.id).await.expect("get").expect("exists");
    assert_eq!(untouched.run.current_step, 0);
    assert_eq!(untouched.steps[0].hook_run_id, None);
    assert_eq!(store.run_events(run.id, 0).await.expect("events").len(), 1);

    let mut plan = step_plan(&run, 0, &[record("b")]);
    plan.completes = Some(job[0].lease.clone());
    assert_eq!(
        store.apply_step(&plan).await.expect("apply"),
        Applied::Applied
    );
    let after_first = store.run_view(run.id).await.expect("get").expect("exists");
    let events_first = store.run_events(run.id, 0).await.expect("events");
    assert_eq!(after_first.run.current_step, 1);
    assert_eq!(after_first.run.status, RunStatus::Running);
    assert_eq!(after_first.steps[0].status, StepStatus::Failed);
    assert_eq!(after_first.steps[0].hook_run_id, Some(plan.hook_run.id));
    assert!(matches!(
        after_first.verdicts[1].verdict,
        Verdict::Rejected { step: 0, .. }
    ));
    assert_eq!(
        events_first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2]
    );

    // Redelivery: same plan again. Nothing changes, and a duplicate job is acknowledged.
    let next = store
        .claim(&["validation.step"], 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(next.len(), 1, "the commit enqueued step 1");
    assert_eq!(next[0].payload["step"], json!(1));
    let mut again = plan.clone();
    again.hook_run.status = HookRunStatus::Error;
    again.completes = Some(next[0].lease.clone());
    assert_eq!(
        store.apply_step(&again).await.expect("again"),
        Applied::AlreadyApplied
    );
    assert_eq!(
        store.run_view(run.id).await.expect("get").expect("exists"),
        after_first
    );
    assert_eq!(
        store.run_events(run.id, 0).await.expect("events"),
        events_first
    );
    let stored_run = store
        .get_run(plan.hook_run.id)
        .await
        .expect("get run")
        .expect("run exists");
    assert_eq!(
        stored_run.status,
        HookRunStatus::Failed,
        "provenance is written once"
    );
    assert!(
        store
            .claim(&["validation.step"], 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(store.run_events(run.id, 1).await.expect("tail").len(), 1);
}

/// `apply_step_claiming_next` commits like `apply_step` and hands the next job to the
/// caller under a lease: nobody else claims it while the lease holds, it is claimable
/// again once it expires, and a redelivered plan hands nothing over. The progress read
/// agrees with the full view.
pub async fn step_hands_its_next_job_to_the_committer<S: Storage>(store: S) {
    let Some(hand_off) = store.step_hand_off() else {
        eprintln!("skipped: the backend offers no StepHandOff");
        return;
    };
    let records = [record("a"), record("b"), record("c")];
    let (h1, h2) = (scored_identity("first"), scored_identity("second"));
    let run = submitted_run(&store, &[&h1, &h2], &records).await;
    let progress = progress_of(&store, run.id).await;
    assert_eq!(in_play_of(&store, run.id, &progress).await, records);
    assert!(!progress.any_errored);
    assert_eq!(
        store.run_status(run.id).await.expect("status"),
        Some(RunStatus::Pending)
    );
    let first = store
        .claim(&["validation.step"], 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);

    let mut plan = step_plan(&run, 0, &[record("b")]);
    plan.completes = Some(first[0].lease.clone());
    let lease_for = Duration::from_millis(300);
    let (applied, next) = hand_off
        .apply_step_claiming_next(&plan, lease_for)
        .await
        .expect("apply");
    assert_eq!(applied, Applied::Applied);
    let next = next.expect("the next job is handed over");
    assert_eq!(next.kind, "validation.step");
    assert_eq!(next.payload["step"], json!(1));
    assert_eq!(next.attempt, 1);

    let view = store.run_view(run.id).await.expect("view").expect("exists");
    let progress = progress_of(&store, run.id).await;
    assert_eq!(progress, RunProgress::from_view(view));
    assert_eq!(
        in_play_of(&store, run.id, &progress).await,
        [record("a"), record("c")]
    );
    assert_eq!(progress.run.current_step, 1);
    assert_eq!(
        store.run_status(run.id).await.expect("status"),
        Some(RunStatus::Running)
    );
    assert!(
        store
            .claim(&["validation.step"], 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .is_empty(),
        "a handed-over job is leased"
    );
    let (again, none) = hand_off
        .apply_step_claiming_next(&plan, lease_for)
        .await
        .expect("again");
    assert_eq!((again, none), (Applied::AlreadyApplied, None));

    // The holder's lease works like a claim's; once it expires, anyone claims the job.
    assert!(
        store
            .heartbeat(&next.lease, lease_for)
            .await
            .expect("heartbeat")
    );
    tokio::time::sleep(lease_for + Duration::from_millis(200)).await;
    let reclaimed = store
        .claim(&["validation.step"], 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].payload["step"], json!(1));
    assert_eq!(reclaimed[0].attempt, 2);
    assert!(!store.complete(&next.lease).await.expect("stale complete"));

    // An errored record leaves play and is reported.
    let mut errored = step_plan(&run, 1, &[record("a")]);
    errored.verdicts[0].verdict = Verdict::Errored {
        step: 1,
        hook: h2.name.clone(),
        error: "crashed".into(),
    };
    errored.completes = Some(reclaimed[0].lease.clone());
    assert_eq!(
        store.apply_step(&errored).await.expect("apply"),
        Applied::Applied
    );
    let view = store.run_view(run.id).await.expect("view").expect("exists");
    let progress = progress_of(&store, run.id).await;
    assert_eq!(progress, RunProgress::from_view(view));
    assert_eq!(in_play_of(&store, run.id, &progress).await, [record("c")]);
    assert!(progress.any_errored);
    assert_eq!(
        store
            .run_progress(ValidationRunId::new_random())
            .await
            .expect("progress"),
        None
    );
    assert_eq!(
        store
            .run_status(ValidationRunId::new_random())
            .await
            .expect("status"),
        None
    );
}

/// Finalize publishes the accepted records' features and the verdicts in one commit,
/// once.
pub async fn finalize_publishes_features_once<S: Storage>(store: S) {
    let records = [record("a"), record("b")];
    let identity = scored_identity("pockets");
    let run = submitted_run(&store, &[&identity], &records).await;
    let plan = step_plan(&run, 0, &[record("b")]);
    store.apply_step(&plan).await.expect("step");
    let finalize = FinalizePlan {
        run_id: run.id,
        status: RunStatus::Completed,
        failure: None,
        accepted: 1,
        features: vec![FeatureBatch {
            hook: identity.name.clone(),
            run_id: plan.hook_run.id,
            validation_run_id: Some(run.id),
            records: vec![record("a")],
            rows: scored_rows(&record("a"), &[0.25, 0.5]),
        }],
        completes: None,
        events: vec![RunEventKind::Finished {
            status: RunStatus::Completed,
            accepted: 1,
            reason: None,
        }],
    };
    // A bad batch rolls the whole finalize back.
    let mut broken = finalize.clone();
    broken.features[0].rows[1].values[0] = FeatureValue::Text("x".into());
    assert!(store.apply_finalize(&broken).await.is_err());
    assert!(all_rows(&store, &identity.name).await.is_empty());
    assert_eq!(
        store
            .run_view(run.id)
            .await
            .expect("get")
            .expect("exists")
            .run
            .status,
        RunStatus::Running
    );

    assert_eq!(
        store.apply_finalize(&finalize).await.expect("finalize"),
        Applied::Applied
    );
    let view = store.run_view(run.id).await.expect("get").expect("exists");
    assert_eq!(view.run.status, RunStatus::Completed);
    assert_eq!(view.verdicts[0].verdict, Verdict::Accepted);
    assert!(matches!(view.verdicts[1].verdict, Verdict::Rejected { .. }));
    let rows = all_rows(&store, &identity.name).await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.validation_run_id == Some(run.id) && r.run_id == plan.hook_run.id)
    );
    assert_eq!(
        store.apply_finalize(&finalize).await.expect("again"),
        Applied::AlreadyApplied
    );
    assert_eq!(all_rows(&store, &identity.name).await.len(), 2);
    assert!(
        !store
            .end_run(run.id, RunStatus::Failed, "late")
            .await
            .expect("end")
    );
}

/// Concurrent finalizes of runs over the same records, each publishing to two hook
/// tables (half of them in the opposite order), all apply (no deadlock surfaces) and
/// leave exactly one run's set per record in each table.
pub async fn concurrent_finalizes_keep_one_set<S: Storage>(store: S) {
    concurrent_finalizes(store, false).await;
}

/// [`concurrent_finalizes_keep_one_set`] with half the finalizes staged, as a worker
/// stages them (the first hook's rows written ahead, the replaces prepared, then the
/// finalize), racing the plain ones. On a backend that does not stage, all are plain.
pub async fn concurrent_staged_finalizes_keep_one_set<S: Storage>(store: S) {
    concurrent_finalizes(store, true).await;
}

async fn concurrent_finalizes<S: Storage>(store: S, stage_half: bool) {
    const RUNS: usize = 8;
    let (alpha, beta) = (scored_identity("alpha"), scored_identity("beta"));
    let records: Vec<RecordId> = (0..20).map(|i| record(&format!("rec-{i:02}"))).collect();
    let mut plans = Vec::new();
    for w in 0..RUNS {
        let run = submitted_run(&store, &[&alpha, &beta], &records).await;
        let steps = [step_plan(&run, 0, &[]), step_plan(&run, 1, &[])];
        for step in &steps {
            store.apply_step(step).await.expect("step");
        }
        let mut features = vec![
            writer_batch(&alpha.name, steps[0].hook_run.id, Some(run.id), &records, w),
            writer_batch(&beta.name, steps[1].hook_run.id, Some(run.id), &records, w),
        ];
        if w % 2 == 1 {
            features.reverse();
        }
        let plan = FinalizePlan {
            run_id: run.id,
            status: RunStatus::Completed,
            failure: None,
            accepted: records.len() as u32,
            features,
            completes: None,
            events: vec![RunEventKind::Finished {
                status: RunStatus::Completed,
                accepted: records.len() as u32,
                reason: None,
            }],
        };
        plans.push((plan, [steps[0].hook_run.id, steps[1].hook_run.id]));
    }
    let mut tasks = Vec::new();
    for (w, (plan, _)) in plans.iter().enumerate() {
        let store = store.clone();
        let plan = plan.clone();
        let stage = stage_half && w % 2 == 0;
        tasks.push(tokio::spawn(async move {
            if !stage {
                return (store.apply_finalize(&plan).await, false);
            }
            let first = plan
                .features
                .iter()
                .find(|b| b.hook.as_str() == "alpha")
                .expect("alpha batch")
                .clone();
            let Some(staging) = store.feature_staging() else {
                return (store.apply_finalize(&plan).await, false);
            };
            let Some(mut staged) = staging.stage_features(vec![first]).await.expect("stage") else {
                return (store.apply_finalize(&plan).await, false);
            };
            let targets = plan
                .features
                .iter()
                .map(|b| StagedReplace {
                    hook: b.hook.clone(),
                    run_id: b.run_id,
                    records: b.records.clone(),
                })
                .collect();
            staged.replace(targets).await.expect("replace staged");
            (staged.finalize(&plan).await, true)
        }));
    }
    let mut staged = 0;
    for task in tasks {
        let (applied, was_staged) = task.await.expect("task");
        assert_eq!(applied.expect("finalize"), Applied::Applied);
        staged += usize::from(was_staged);
    }
    if stage_half {
        assert_eq!(
            staged > 0,
            store.feature_staging().is_some(),
            "a backend that stages staged some of the finalizes"
        );
    }
    for (step, identity) in [&alpha, &beta].into_iter().enumerate() {
        let writers: Vec<HookRunId> = plans.iter().map(|(_, runs)| runs[step]).collect();
        assert_one_set_per_record(&store, &identity.name, &records, &writers).await;
    }
}

/// A completing finalize plan of `run` publishing `features` for `accepted`.
/// The chunks of a streamed finalize, as given; `fail_at`: the call (from 1) that
/// fails instead.
struct GivenChunks {
    chunks: std::collections::VecDeque<Vec<FeatureBatch>>,
    given: usize,
    fail_at: Option<usize>,
}

#[async_trait::async_trait]
impl FeatureChunks for GivenChunks {
    async fn next_chunk(&mut self) -> crate::Result<Option<Vec<FeatureBatch>>> {
        self.given += 1;
        if self.fail_at == Some(self.given) {
            return Err(crate::Error::internal("the chunk cannot be read"));
        }
        Ok(self.chunks.pop_front())
    }
}

/// `apply_finalize_streaming` writes the plan's batches and every chunk of its source
/// in one transaction: all of them when every chunk comes, nothing (and the run still
/// open) when one fails.
pub async fn streamed_finalize_writes_every_chunk_or_nothing<S: Storage>(store: S) {
    let records: Vec<RecordId> = ["a", "b", "c", "d", "e"].map(record).into();
    let identity = scored_identity("streamed");
    for fail_at in [None, Some(2)] {
        let run = submitted_run(&store, &[&identity], &records).await;
        let step = step_plan(&run, 0, &[]);
        store.apply_step(&step).await.expect("step");
        let batch = |records: &[RecordId], w| {
            writer_batch(&identity.name, step.hook_run.id, Some(run.id), records, w)
        };
        let plan = completing(run.id, &records, vec![batch(&records[..1], 0)]);
        let mut chunks = GivenChunks {
            chunks: [batch(&records[1..3], 1), batch(&records[3..], 2)]
                .map(|b| vec![b])
                .into(),
            given: 0,
            fail_at,
        };
        let applied = store.apply_finalize_streaming(&plan, &mut chunks).await;
        let rows: Vec<_> = all_rows(&store, &identity.name)
            .await
            .into_iter()
            .filter(|r| r.run_id == step.hook_run.id)
            .collect();
        let status = store.run_status(run.id).await.expect("status");
        match fail_at {
            None => {
                assert_eq!(applied.expect("finalize"), Applied::Applied);
                assert_eq!(chunks.given, 3, "every chunk, then the end");
                // writer w writes 1 + w % 3 rows per record.
                assert_eq!(rows.len(), 1 + 2 * 2 + 2 * 3);
                let published: BTreeSet<&str> = rows.iter().map(|r| r.record_id.as_str()).collect();
                assert_eq!(published, BTreeSet::from(["a", "b", "c", "d", "e"]));
                assert_eq!(status, Some(RunStatus::Completed));
            }
            Some(_) => {
                assert!(applied.is_err(), "a failing chunk fails the finalize");
                assert!(rows.is_empty(), "nothing of a failed finalize is written");
                assert_eq!(status, Some(RunStatus::Running), "the run is still open");
            }
        }
    }
}

fn completing(
    run: ValidationRunId,
    accepted: &[RecordId],
    features: Vec<FeatureBatch>,
) -> FinalizePlan {
    FinalizePlan {
        run_id: run,
        status: RunStatus::Completed,
        failure: None,
        accepted: accepted.len() as u32,
        features,
        completes: None,
        events: vec![RunEventKind::Finished {
            status: RunStatus::Completed,
            accepted: accepted.len() as u32,
            reason: None,
        }],
    }
}

/// Rows staged ahead of a finalize are invisible until it commits, block no other
/// finalize, and publish exactly what a plain finalize of the same plan would: the
/// accepted records' rows replace theirs from other runs, the staged rows of records
/// the last hook settled are gone, other records keep their rows. A staged
/// transaction that does not match its plan, belongs to an ended run or is dropped
/// leaves no trace. Backends that do not stage say so with `None` and write nothing.
pub async fn staged_features_publish_like_a_plain_finalize<S: Storage>(store: S) {
    let (alpha, beta) = (scored_identity("alpha"), scored_identity("beta"));
    let records = [record("a"), record("b"), record("c")];
    let accepted = [record("a"), record("b")];
    // Rows of an earlier run for every record.
    let earlier = submitted_run(&store, &[&alpha, &beta], &records).await;
    let earlier_steps = [step_plan(&earlier, 0, &[]), step_plan(&earlier, 1, &[])];
    for step in &earlier_steps {
        store.apply_step(step).await.expect("step");
    }
    let earlier_batch = writer_batch(
        &alpha.name,
        earlier_steps[0].hook_run.id,
        Some(earlier.id),
        &records,
        0,
    );
    store
        .apply_finalize(&completing(earlier.id, &records, vec![earlier_batch]))
        .await
        .expect("earlier finalize");

    // A run whose first hook passed everything; its last hook is about to reject `c`.
    let run = submitted_run(&store, &[&alpha, &beta], &records).await;
    let first = step_plan(&run, 0, &[]);
    store.apply_step(&first).await.expect("step 0");
    let staged_batch = writer_batch(&alpha.name, first.hook_run.id, Some(run.id), &records, 2);
    let Some(staging) = store.feature_staging() else {
        eprintln!("skipped: the backend offers no FeatureStaging");
        return;
    };
    let mut staged = staging
        .stage_features(vec![staged_batch.clone()])
        .await
        .expect("stage")
        .expect("a backend that stages has a permit free here");
    let rows = all_rows(&store, &alpha.name).await;
    assert!(
        rows.iter()
            .all(|r| r.run_id == earlier_steps[0].hook_run.id),
        "staged rows are invisible before the finalize commits"
    );

    // Another run's finalize over record `a` neither waits for the staged transaction
    // nor sees its rows.
    let other = submitted_run(&store, &[&alpha, &beta], &[record("a")]).await;
    let other_step = step_plan(&other, 0, &[]);
    store.apply_step(&other_step).await.expect("other step");
    let other_batch = writer_batch(
        &alpha.name,
        other_step.hook_run.id,
        Some(other.id),
        &[record("a")],
        1,
    );
    let other_plan = completing(other.id, &[record("a")], vec![other_batch]);
    let other_finalize = store.apply_finalize(&other_plan);
    assert_eq!(
        tokio::time::timeout(std::time::Duration::from_secs(20), other_finalize)
            .await
            .expect("a finalize does not wait for staged rows")
            .expect("other finalize"),
        Applied::Applied
    );

    let last = step_plan(&run, 1, &[record("c")]);
    store.apply_step(&last).await.expect("step 1");
    // The last hook's verdicts settle the replaces: prepared before the finalize.
    let targets = [
        (&alpha.name, first.hook_run.id),
        (&beta.name, last.hook_run.id),
    ]
    .into_iter()
    .map(|(hook, run_id)| StagedReplace {
        hook: hook.clone(),
        run_id,
        records: accepted.to_vec(),
    })
    .collect();
    staged.replace(targets).await.expect("replace staged");
    let mut published = staged_batch.clone();
    published.records.retain(|r| accepted.contains(r));
    published.rows.retain(|r| accepted.contains(&r.record_id));
    let beta_batch = writer_batch(&beta.name, last.hook_run.id, Some(run.id), &accepted, 0);
    let plan = completing(run.id, &accepted, vec![published, beta_batch]);
    assert_eq!(
        staged.finalize(&plan).await.expect("finalize"),
        Applied::Applied
    );
    let view = store.run_view(run.id).await.expect("view").expect("exists");
    assert_eq!(view.run.status, RunStatus::Completed);
    let by_run = |rows: &[crate::feature_store::FeatureRow], record: &str| -> BTreeSet<HookRunId> {
        rows.iter()
            .filter(|r| r.record_id.as_str() == record)
            .map(|r| r.run_id)
            .collect()
    };
    let rows = all_rows(&store, &alpha.name).await;
    for accepted in ["a", "b"] {
        assert_eq!(
            by_run(&rows, accepted),
            BTreeSet::from([first.hook_run.id]),
            "alpha rows of {accepted}"
        );
        // writer 2 writes 1 + 2 % 3 = 3 rows per record.
        assert_eq!(
            rows.iter()
                .filter(|r| r.record_id.as_str() == accepted)
                .count(),
            3
        );
    }
    assert_eq!(
        by_run(&rows, "c"),
        BTreeSet::from([earlier_steps[0].hook_run.id]),
        "a record the last hook rejected keeps its earlier rows and loses the staged ones"
    );
    assert_eq!(rows.len(), 7);
    let beta_rows = all_rows(&store, &beta.name).await;
    assert_eq!(beta_rows.len(), 2);
    assert!(beta_rows.iter().all(|r| r.run_id == last.hook_run.id));

    // Staged rows that differ from the plan's are dropped, and the plan applied as it
    // is.
    let run = submitted_run(&store, &[&alpha], &[record("d")]).await;
    let only = step_plan(&run, 0, &[]);
    store.apply_step(&only).await.expect("step");
    let staged = staging
        .stage_features(vec![writer_batch(
            &alpha.name,
            only.hook_run.id,
            Some(run.id),
            &[record("d")],
            1,
        )])
        .await
        .expect("stage")
        .expect("staged");
    let planned = writer_batch(
        &alpha.name,
        only.hook_run.id,
        Some(run.id),
        &[record("d")],
        0,
    );
    assert_eq!(
        staged
            .finalize(&completing(run.id, &[record("d")], vec![planned.clone()]))
            .await
            .expect("finalize"),
        Applied::Applied
    );
    let d_rows: Vec<_> = all_rows(&store, &alpha.name)
        .await
        .into_iter()
        .filter(|r| r.record_id.as_str() == "d")
        .collect();
    assert_eq!(d_rows.len(), 1, "the plan's one row, not the staged two");
    assert_eq!(d_rows[0].run_id, only.hook_run.id);

    // A run whose last hook settled every staged record publishes none of them.
    let run = submitted_run(&store, &[&alpha, &beta], &[record("f")]).await;
    let first = step_plan(&run, 0, &[]);
    store.apply_step(&first).await.expect("step 0");
    let staged = staging
        .stage_features(vec![writer_batch(
            &alpha.name,
            first.hook_run.id,
            Some(run.id),
            &[record("f")],
            0,
        )])
        .await
        .expect("stage")
        .expect("staged");
    store
        .apply_step(&step_plan(&run, 1, &[record("f")]))
        .await
        .expect("step 1");
    let rejected = FinalizePlan {
        status: RunStatus::Rejected,
        ..completing(run.id, &[], Vec::new())
    };
    assert_eq!(
        staged.finalize(&rejected).await.expect("finalize"),
        Applied::Applied
    );
    assert_eq!(
        store
            .run_view(run.id)
            .await
            .expect("view")
            .expect("exists")
            .run
            .status,
        RunStatus::Rejected
    );
    assert!(
        all_rows(&store, &alpha.name)
            .await
            .iter()
            .all(|r| r.record_id.as_str() != "f"),
        "no row of a record the last hook rejected"
    );

    // The staged rows of a run that ended meanwhile, or of a dropped staging, never
    // appear.
    for cancel in [true, false] {
        let run = submitted_run(&store, &[&alpha], &[record("e")]).await;
        let only = step_plan(&run, 0, &[]);
        store.apply_step(&only).await.expect("step");
        let batch = writer_batch(
            &alpha.name,
            only.hook_run.id,
            Some(run.id),
            &[record("e")],
            0,
        );
        let staged = staging
            .stage_features(vec![batch.clone()])
            .await
            .expect("stage")
            .expect("staged");
        if cancel {
            assert!(
                store
                    .end_run(run.id, RunStatus::Cancelled, "stop")
                    .await
                    .expect("end")
            );
            assert_eq!(
                staged
                    .finalize(&completing(run.id, &[record("e")], vec![batch]))
                    .await
                    .expect("finalize"),
                Applied::AlreadyApplied
            );
        } else {
            drop(staged);
        }
        assert!(
            all_rows(&store, &alpha.name)
                .await
                .iter()
                .all(|r| r.record_id.as_str() != "e"),
            "no row of record e (cancelled: {cancel})"
        );
    }
}

/// A run ends once; unknown runs are NotFound.
pub async fn end_run_happens_once<S: Storage>(store: S) {
    let run = submitted_run(&store, &[&scored_identity("pockets")], &[record("a")]).await;
    assert!(
        store
            .end_run(run.id, RunStatus::Failed, "image missing")
            .await
            .expect("end")
    );
    assert!(
        !store
            .end_run(run.id, RunStatus::Cancelled, "again")
            .await
            .expect("end again")
    );
    let view = store.run_view(run.id).await.expect("get").expect("exists");
    assert_eq!(view.run.status, RunStatus::Failed);
    assert_eq!(view.run.failure.as_deref(), Some("image missing"));
    assert_eq!(
        store
            .apply_step(&step_plan(&run, 0, &[]))
            .await
            .expect("late step"),
        Applied::AlreadyApplied
    );
    let missing = store
        .end_run(ValidationRunId::new_random(), RunStatus::Failed, "x")
        .await;
    assert_eq!(missing.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        store
            .run_view(ValidationRunId::new_random())
            .await
            .expect("get"),
        None
    );
    for status in [
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Rejected,
    ] {
        let other = submitted_run(&store, &[&scored_identity("pockets")], &[record("b")]).await;
        assert_eq!(
            store
                .end_run(other.id, status, "x")
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Invalid,
            "{status:?}"
        );
        let view = store
            .run_view(other.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(view.run.status, RunStatus::Pending);
        assert_eq!(view.verdicts[0].verdict, Verdict::Pending);
    }
}

/// A run's records keep their submit order (not the ids' sort order) in the view and
/// in the progress, at every stage; a submission naming a record twice is refused and
/// writes nothing; records a failed run never settled stay pending.
pub async fn run_records_keep_submit_order<S: Storage>(store: S) {
    // More ids than one page of anything, in an order no index would give back.
    let records: Vec<RecordId> = (0..1500)
        .map(|i| record(&format!("rec-{}", (i * 7919) % 1500)))
        .collect();
    let identity = scored_identity("pockets");
    let (h1, h2) = (&identity, &scored_identity("ligands"));
    let mut twice = records[..3].to_vec();
    twice.push(records[1].clone());
    let run = submitted_run(&store, &[h1, h2], &records).await;
    let ids = |verdicts: &[RecordVerdict]| -> Vec<RecordId> {
        verdicts.iter().map(|v| v.record_id.clone()).collect()
    };
    let view = store.run_view(run.id).await.expect("get").expect("exists");
    assert_eq!(ids(&view.verdicts), records);
    let progress = progress_of(&store, run.id).await;
    assert_eq!(in_play_of(&store, run.id, &progress).await, records);
    assert!(!progress.any_errored);

    // Step 0 rejects two records and errors one: they leave play, the others stay in
    // order.
    let mut plan = step_plan(&run, 0, &[records[10].clone(), records[700].clone()]);
    plan.verdicts.push(RecordVerdict {
        record_id: records[3].clone(),
        verdict: Verdict::Errored {
            step: 0,
            hook: identity.name.clone(),
            error: "crashed".into(),
        },
    });
    store.apply_step(&plan).await.expect("step");
    let settled = [3usize, 10, 700];
    let still: Vec<RecordId> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| !settled.contains(i))
        .map(|(_, r)| r.clone())
        .collect();
    let progress = progress_of(&store, run.id).await;
    assert_eq!(in_play_of(&store, run.id, &progress).await, still);
    assert!(progress.any_errored);
    let view = store.run_view(run.id).await.expect("get").expect("exists");
    assert_eq!(ids(&view.verdicts), records);
    assert_eq!(RunProgress::from_view(view.clone()), progress);
    assert!(matches!(
        view.verdicts[3].verdict,
        Verdict::Errored { step: 0, .. }
    ));
    assert!(matches!(
        view.verdicts[10].verdict,
        Verdict::Rejected { step: 0, .. }
    ));
    assert_eq!(view.verdicts[11].verdict, Verdict::Pending);

    // The run fails before finishing: unsettled records stay pending, not accepted.
    assert!(
        store
            .end_run(run.id, RunStatus::Failed, "image missing")
            .await
            .expect("end")
    );
    let view = store.run_view(run.id).await.expect("get").expect("exists");
    assert_eq!(ids(&view.verdicts), records);
    assert_eq!(view.verdicts[11].verdict, Verdict::Pending);
    assert!(matches!(
        view.verdicts[700].verdict,
        Verdict::Rejected { .. }
    ));

    // A record named twice: refused, and no trace of the run.
    let mut duplicate = run.clone();
    duplicate.id = ValidationRunId::new_random();
    duplicate.record_count = twice.len() as u32;
    let refused = store
        .create_run(&SubmitPlan {
            run: duplicate.clone(),
            records: twice,
            inputs_ref: format!("runs/{}/inputs.jsonl", duplicate.id),
            first_job: Some(step_job(duplicate.id, 0)),
            events: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Invalid);
    assert_eq!(store.run_view(duplicate.id).await.expect("get"), None);
    assert!(
        store
            .claim(&["validation.step"], 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .iter()
            .all(|job| job.payload["run"] != json!(duplicate.id)),
        "a refused submit enqueues nothing"
    );
}

/// Reads of a run racing its step commits see one state: as many committed steps as
/// `current_step`, exactly their rejections as settled verdicts, and the rest in play.
pub async fn run_reads_are_snapshots<S: Storage>(store: S) {
    const STEPS: usize = 6;
    let identities: Vec<HookIdentity> = (0..STEPS)
        .map(|i| scored_identity(&format!("hook_{i}")))
        .collect();
    let hooks: Vec<&HookIdentity> = identities.iter().collect();
    let records: Vec<RecordId> = (0..40).map(|i| record(&format!("rec-{i}"))).collect();
    for _ in 0..4 {
        let run = submitted_run(&store, &hooks, &records).await;
        let done = std::sync::atomic::AtomicBool::new(false);
        let writer = async {
            for step in 0..STEPS as u32 {
                let plan = step_plan(&run, step, &[records[step as usize].clone()]);
                store.apply_step(&plan).await.expect("step");
                tokio::task::yield_now().await;
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        let reader = async {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || reads < 2 {
                reads += 1;
                let view = store.run_view(run.id).await.expect("view").expect("exists");
                let committed = view
                    .steps
                    .iter()
                    .filter(|s| s.hook_run_id.is_some())
                    .count();
                let rejected: u32 = view.steps.iter().map(|s| s.counts.rejected).sum();
                let settled = view
                    .verdicts
                    .iter()
                    .filter(|v| v.verdict != Verdict::Pending)
                    .count();
                assert_eq!(committed, view.run.current_step as usize, "{view:?}");
                assert_eq!(settled, rejected as usize, "{view:?}");
                let progress = progress_of(&store, run.id).await;
                let committed = progress
                    .steps
                    .iter()
                    .filter(|s| s.hook_run_id.is_some())
                    .count();
                assert_eq!(committed, progress.run.current_step as usize);
                assert_eq!(
                    progress.in_play as usize,
                    records.len() - progress.run.current_step as usize,
                    "{progress:?}"
                );
            }
        };
        tokio::join!(writer, reader);
    }
}

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
pub async fn deploy_is_atomic_and_idempotent<S: Storage>(store: S) {
    let plan = super::fixtures::sdk_deploy_payload()
        .plan(Some("ci-bot"))
        .expect("plan");
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
    let mut changed = super::fixtures::sdk_deploy_payload();
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
pub async fn deployment_event_log_is_bounded<S: Storage>(store: S) {
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
pub async fn deployment_event_reads_are_snapshots<S: Storage>(store: S) {
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
pub async fn deployments_are_listed_with_filters<S: Storage>(store: S) {
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

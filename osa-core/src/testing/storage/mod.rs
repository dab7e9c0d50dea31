//! The storage conformance suite: every backend runs these from its own tests through
//! [`storage_conformance!`](crate::storage_conformance), each test on a fresh, empty,
//! migrated store.
//!
//! One module per port, each holding its checks and, beside them, the one list of
//! them (its `checks!` macro):
//!
//! | module | port | checks |
//! |---|---|---|
//! | [`registry`] | `HookRegistry` | identities, releases, live pointer, hook runs |
//! | [`features`] | `FeatureStore` | tables, per-record replaces, pages, streams, provenance |
//! | [`jobs`] | `JobQueue` | leases, claims, failures, dedupe keys, counts |
//! | [`runs`] | `ValidationRunStore` | submits, steps, finalizes, staged finalizes, reads |
//! | [`deployments`] | `DeploymentLog`, `ConventionStore` | deploys, event logs, listings |
//! | [`capabilities`] | the optional capabilities of `ValidationRunStore` | what the backend declares it offers |
//!
//! A check is generic over the ports it uses and nothing else: a registry check is
//! `S: HookRegistry`, a run check that also reads features and claims jobs names
//! those ports, and a check that spawns tasks adds `Clone + 'static`. A check that
//! needs a capability (`StepHandOff`, `FeatureStaging`) is marked with it in its
//! module's list and fails on a backend that offers it not, unless the backend
//! declares so (see [`capabilities`]); no check passes by returning early.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration as ChronoDuration, Utc};

use super::fixtures::{column, digest};
use crate::feature::{Cardinality, FeatureSpec, FeatureValue, JsonType};
use crate::feature_store::{FeatureBatch, FeatureQuery, FeatureRow, NewFeatureRow};
use crate::hook::{HookIdentity, HookRun, HookRunStatus, NewRelease, OutcomeCounts};
use crate::id::{HookName, HookRunId, RecordId, ReleaseId, ValidationRunId};
use crate::runtime::{Limits, RuntimeConfig};
use crate::{FeatureStore, HookRegistry};

pub mod capabilities;
pub mod deployments;
pub mod features;
pub mod jobs;
pub mod registry;
pub mod runs;

/// Generates the conformance tests of a storage backend: one `#[tokio::test]` per
/// check, in one module per port of the calling file (`registry::…`, `features::…`,
/// `jobs::…`, `runs::…`, `deployments::…`, `capabilities::…`).
///
/// `$make` is an async expression producing `(store, guard)`: a fresh, migrated
/// backend and whatever must live as long as the test (a temp dir, a schema
/// dropper); it may name items of the calling file. A backend that offers every
/// capability of `ValidationRunStore` writes
///
/// ```text
/// osa_core::storage_conformance!(fresh());
/// ```
///
/// and one that does not names what it lacks (`step_hand_off`, `feature_staging`):
///
/// ```text
/// osa_core::storage_conformance!(fresh(), without: [feature_staging]);
/// ```
///
/// The declaration is checked: `capabilities::feature_staging` asserts that
/// `feature_staging()` returns `None` on a backend declaring it missing and `Some`
/// otherwise (likewise `capabilities::step_hand_off`), and every check that needs a
/// declared-missing capability becomes a test of that same assertion under the
/// check's name. An undeclared capability the backend does not offer fails every
/// check that needs it. An unknown or repeated name in `without` does not compile.
#[macro_export]
macro_rules! storage_conformance {
    ($make:expr $(,)?) => {
        $crate::storage_conformance!($make, without: []);
    };
    ($make:expr, without: [$($missing:ident),* $(,)?] $(,)?) => {
        $crate::__storage_conformance!(@declare $make;
            step_hand_off = offered, feature_staging = offered; $($missing)*);
    };
}

/// The machinery of [`storage_conformance!`](crate::storage_conformance): resolves the
/// declared capabilities, then expands every module's list of checks.
#[doc(hidden)]
#[macro_export]
macro_rules! __storage_conformance {
    // `without: [...]`, one name at a time: each capability may be named once.
    (@declare $make:expr;
        step_hand_off = offered, feature_staging = $f:ident; step_hand_off $($rest:ident)*) => {
        $crate::__storage_conformance!(@declare $make;
            step_hand_off = missing, feature_staging = $f; $($rest)*);
    };
    (@declare $make:expr;
        step_hand_off = $s:ident, feature_staging = offered; feature_staging $($rest:ident)*) => {
        $crate::__storage_conformance!(@declare $make;
            step_hand_off = $s, feature_staging = missing; $($rest)*);
    };
    (@declare $make:expr;
        step_hand_off = $s:ident, feature_staging = $f:ident; $other:ident $($rest:ident)*) => {
        ::core::compile_error!(::core::concat!(
            "storage_conformance!: `without: [", ::core::stringify!($other),
            "]` is not a capability or is named twice (the capabilities: step_hand_off, feature_staging)"
        ));
    };
    (@declare $make:expr; step_hand_off = $s:ident, feature_staging = $f:ident;) => {
        $crate::__storage_conformance!(@modules $make; $s, $f;
            registry, features, jobs, runs, deployments, capabilities);
    };
    // One module of tests per module of checks, each expanding that module's list.
    (@modules $make:expr; $s:ident, $f:ident; $($module:ident),*) => {
        $(
            mod $module {
                #[allow(unused_imports)]
                use super::*;
                $crate::testing::storage::$module::checks!($make, $s, $f);
            }
        )*
    };
    // A module's list: `check` or `check if capability`.
    (@tests $module:ident; $make:expr, $s:ident, $f:ident;
        $($check:ident $(if $cap:ident)?),* $(,)?) => {
        $(
            $crate::__storage_conformance!(@test $module; $make, $s, $f; $check $(if $cap)?);
        )*
    };
    (@test $module:ident; $make:expr, $s:ident, $f:ident; $check:ident) => {
        $crate::__storage_conformance!(@run $module; $make; $check);
    };
    (@test $module:ident; $make:expr, $s:ident, $f:ident; $check:ident if step_hand_off) => {
        $crate::__storage_conformance!(@needs $s step_hand_off; $module; $make; $check);
    };
    (@test $module:ident; $make:expr, $s:ident, $f:ident; $check:ident if feature_staging) => {
        $crate::__storage_conformance!(@needs $f feature_staging; $module; $make; $check);
    };
    (@test $module:ident; $make:expr, $s:ident, $f:ident; $check:ident if $cap:ident) => {
        ::core::compile_error!(::core::concat!(
            "`", ::core::stringify!($check), " if ", ::core::stringify!($cap),
            "`: not a capability (the capabilities: step_hand_off, feature_staging)"
        ));
    };
    // A check needing a capability the backend offers runs; one needing a capability
    // the backend declares missing checks the declaration.
    (@needs offered $cap:ident; $module:ident; $make:expr; $check:ident) => {
        $crate::__storage_conformance!(@run $module; $make; $check);
    };
    (@needs missing $cap:ident; $module:ident; $make:expr; $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let (store, _guard) = $make.await;
            $crate::testing::storage::capabilities::$cap::missing(&store);
        }
    };
    (@run $module:ident; $make:expr; $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let (store, _guard) = $make.await;
            $crate::testing::storage::$module::$check(store).await;
        }
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
async fn hook_with_run<S: HookRegistry + FeatureStore>(
    store: &S,
    identity: &HookIdentity,
) -> HookRunId {
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

async fn all_rows<S: FeatureStore>(store: &S, hook: &HookName) -> Vec<FeatureRow> {
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
async fn assert_one_set_per_record<S: FeatureStore>(
    store: &S,
    hook: &HookName,
    records: &[RecordId],
    writers: &[HookRunId],
) {
    let mut by_record: BTreeMap<String, Vec<FeatureRow>> = BTreeMap::new();
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

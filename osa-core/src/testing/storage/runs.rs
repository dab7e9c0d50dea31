//! Checks of [`ValidationRunStore`]: submits, step commits and their redelivery, the
//! step hand-off, finalizes (plain, concurrent and staged), ending runs, and reads
//! racing commits. A run's steps point at registered releases and its finalize writes
//! feature rows, so every check also uses [`HookRegistry`] and [`FeatureStore`]; the
//! checks that follow a run's jobs use [`JobQueue`].
//!
//! Two checks need the [`StepHandOff`](crate::validation::StepHandOff) or
//! [`FeatureStaging`](crate::validation::FeatureStaging) capability and say so in the
//! list (`if step_hand_off`, `if feature_staging`); see [`super::capabilities`].

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use serde_json::json;

use super::capabilities::{feature_staging, step_hand_off};
use super::{
    all_rows, assert_one_set_per_record, hook_run, process_release, record, scored_identity,
    scored_rows, writer_batch,
};
use crate::feature::FeatureValue;
use crate::feature_store::{FeatureBatch, FeatureRow};
use crate::hook::{HookIdentity, HookRunStatus, OutcomeCounts};
use crate::id::{ConventionSlug, HookRunId, RecordId, ReleaseId, ValidationRunId};
use crate::jobs::NewJob;
use crate::validation::{
    Applied, FeatureChunks, FinalizePlan, RecordChunks, RecordVerdict, RunEventKind, RunProgress,
    RunStatus, StagedReplace, StepPlan, StepRelease, StepStatus, SubmitPlan, ValidationRun,
    Verdict,
};
use crate::{ErrorKind, FeatureStore, HookRegistry, JobQueue, ValidationRunStore};

/// The records of `run` still in play, read page by page, checked against the
/// count `progress` has.
async fn in_play_of<S: ValidationRunStore>(
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
    // Past the last record a page is empty, however far out it starts or however
    // many records it asks for.
    for (at, limit) in [(from, u32::MAX), (i32::MAX as u32, 7), (u32::MAX, u32::MAX)] {
        let page = store
            .record_page(run, at, limit)
            .await
            .unwrap_or_else(|e| panic!("a page at {at} of {limit}: {e}"))
            .expect("the run exists");
        assert!(page.is_empty(), "a page at {at} of {limit}: {page:?}");
    }
    assert_eq!(
        in_play.len() as u32,
        progress.in_play,
        "the progress counts them"
    );
    in_play
}

/// The list of this module's checks, expanded by
/// [`storage_conformance!`](crate::storage_conformance) into one test each; `if
/// capability` marks a check that needs the capability.
#[doc(hidden)]
#[macro_export]
macro_rules! __storage_runs_checks {
    ($($declared:tt)*) => {
        $crate::__storage_conformance!(@tests runs; $($declared)*;
            redelivered_step_changes_nothing,
            step_hands_its_next_job_to_the_committer if step_hand_off,
            finalize_publishes_features_once,
            streamed_finalize_writes_every_chunk_or_nothing,
            streamed_submit_stores_every_chunk_in_order,
            concurrent_finalizes_keep_one_set,
            concurrent_staged_finalizes_keep_one_set if feature_staging,
            staged_features_publish_like_a_plain_finalize if feature_staging,
            end_run_happens_once,
            run_records_keep_submit_order,
            run_reads_are_snapshots,
        );
    };
}
#[doc(hidden)]
pub use crate::__storage_runs_checks as checks;

/// The run's progress, which must exist.
async fn progress_of<S: ValidationRunStore>(store: &S, run: ValidationRunId) -> RunProgress {
    store
        .run_progress(run)
        .await
        .expect("progress")
        .expect("exists")
}

/// A submitted run over `records` with one step per hook in `hooks`.
async fn submitted_run<S: HookRegistry + FeatureStore + ValidationRunStore>(
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
pub async fn redelivered_step_changes_nothing<
    S: HookRegistry + FeatureStore + JobQueue + ValidationRunStore,
>(
    store: S,
) {
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
/// agrees with the full view. Needs [`StepHandOff`](crate::validation::StepHandOff).
pub async fn step_hands_its_next_job_to_the_committer<
    S: HookRegistry + FeatureStore + JobQueue + ValidationRunStore,
>(
    store: S,
) {
    let hand_off = step_hand_off::offered(&store);
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
pub async fn finalize_publishes_features_once<
    S: HookRegistry + FeatureStore + ValidationRunStore,
>(
    store: S,
) {
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
pub async fn concurrent_finalizes_keep_one_set<
    S: HookRegistry + FeatureStore + ValidationRunStore + Clone + 'static,
>(
    store: S,
) {
    concurrent_finalizes(store, false).await;
}

/// [`concurrent_finalizes_keep_one_set`] with half the finalizes staged, as a worker
/// stages them (the first hook's rows written ahead, the replaces prepared, then the
/// finalize), racing the plain ones. A stager that gets no permit from
/// `stage_features` finalizes plainly, but some finalizes must be staged. Needs
/// [`FeatureStaging`](crate::validation::FeatureStaging).
pub async fn concurrent_staged_finalizes_keep_one_set<
    S: HookRegistry + FeatureStore + ValidationRunStore + Clone + 'static,
>(
    store: S,
) {
    feature_staging::offered(&store);
    concurrent_finalizes(store, true).await;
}

async fn concurrent_finalizes<
    S: HookRegistry + FeatureStore + ValidationRunStore + Clone + 'static,
>(
    store: S,
    stage_half: bool,
) {
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
            let staging = feature_staging::offered(&store);
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
        assert!(
            staged > 0,
            "a backend that stages staged some of the finalizes"
        );
    }
    for (step, identity) in [&alpha, &beta].into_iter().enumerate() {
        let writers: Vec<HookRunId> = plans.iter().map(|(_, runs)| runs[step]).collect();
        assert_one_set_per_record(&store, &identity.name, &records, &writers).await;
    }
}

/// A completing finalize plan of `run` publishing `features` for `accepted`.
/// Record ids handed over in chunks, as given.
struct GivenIds(std::collections::VecDeque<Vec<RecordId>>);

#[async_trait::async_trait]
impl RecordChunks for GivenIds {
    async fn next_chunk(&mut self) -> crate::Result<Option<Vec<RecordId>>> {
        Ok(self.0.pop_front())
    }
}

/// `create_run_streaming` stores the plan's records and every chunk after them in
/// submit order, in one transaction; an id repeated across chunks, or a record count
/// that does not match, writes nothing.
pub async fn streamed_submit_stores_every_chunk_in_order<
    S: HookRegistry + FeatureStore + ValidationRunStore,
>(
    store: S,
) {
    let identity = scored_identity("chunked");
    // A run to copy the plan from: one hook, three records.
    let template = submitted_run(&store, &[&identity], &[record("t")]).await;
    let plan = |records: &[&str], count: u32| SubmitPlan {
        run: ValidationRun {
            id: ValidationRunId::new_random(),
            record_count: count,
            ..template.clone()
        },
        records: records.iter().map(|r| record(r)).collect(),
        inputs_ref: "runs/chunked/inputs.jsonl".into(),
        first_job: None,
        events: vec![RunEventKind::Submitted {
            records: count,
            steps: 1,
        }],
    };
    let chunks = |chunks: &[&[&str]]| {
        GivenIds(
            chunks
                .iter()
                .map(|c| c.iter().map(|r| record(r)).collect())
                .collect(),
        )
    };

    let whole = plan(&["a", "b"], 5);
    store
        .create_run_streaming(&whole, &mut chunks(&[&["c", "d"], &["e"]]))
        .await
        .expect("create");
    let view = store
        .run_view(whole.run.id)
        .await
        .expect("view")
        .expect("exists");
    let ids: Vec<&str> = view.verdicts.iter().map(|v| v.record_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    let progress = store
        .run_progress(whole.run.id)
        .await
        .expect("progress")
        .expect("exists");
    assert_eq!(in_play_of(&store, whole.run.id, &progress).await.len(), 5);

    // A long run, in chunks of uneven sizes: every page reads the same as the full
    // list, across wherever the backend splits it, and past its end.
    let long: Vec<String> = (0..25_003).map(|i| format!("r{i:05}")).collect();
    let names: Vec<&str> = long.iter().map(String::as_str).collect();
    let big = plan(&names[..7_001], 25_003);
    store
        .create_run_streaming(
            &big,
            &mut chunks(&[&names[7_001..16_001], &names[16_001..]]),
        )
        .await
        .expect("create a long run");
    let view = store
        .run_view(big.run.id)
        .await
        .expect("view")
        .expect("exists");
    let ids: Vec<&str> = view.verdicts.iter().map(|v| v.record_id.as_str()).collect();
    assert_eq!(ids, names);
    for (from, limit) in [
        (0, 3),
        (7_000, 2),
        (9_999, 3),
        (16_000, 5),
        (24_990, 100),
        (25_003, 4),
    ] {
        let page = store
            .record_page(big.run.id, from, limit)
            .await
            .expect("page")
            .expect("exists");
        let end = (from + limit).min(25_003) as usize;
        assert_eq!(
            page[..],
            view.verdicts[from as usize..end],
            "page at {from}"
        );
    }
    let progress = store
        .run_progress(big.run.id)
        .await
        .expect("progress")
        .expect("exists");
    assert_eq!(progress.in_play, 25_003);
    let mut repeated = long.clone();
    repeated[20_000] = "r00003".into();
    let names: Vec<&str> = repeated.iter().map(String::as_str).collect();
    let error = store
        .create_run_streaming(
            &plan(&names[..7_001], 25_003),
            &mut chunks(&[&names[7_001..16_001], &names[16_001..]]),
        )
        .await
        .expect_err("an id repeated far apart");
    assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");

    for (name, bad, more) in [
        (
            "repeated across chunks",
            plan(&["a", "b"], 4),
            chunks(&[&["c"], &["a"]]),
        ),
        (
            "repeated in a chunk",
            plan(&["a"], 3),
            chunks(&[&["b", "b"]]),
        ),
        (
            "more records than counted",
            plan(&["a"], 2),
            chunks(&[&["b", "c"]]),
        ),
        (
            "fewer records than counted",
            plan(&["a"], 3),
            chunks(&[&["b"]]),
        ),
    ] {
        let mut more = more;
        let error = store
            .create_run_streaming(&bad, &mut more)
            .await
            .expect_err(name);
        assert_eq!(error.kind(), ErrorKind::Invalid, "{name}: {error}");
        assert_eq!(
            store.run_status(bad.run.id).await.expect("status"),
            None,
            "{name}: nothing written"
        );
    }
}

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
pub async fn streamed_finalize_writes_every_chunk_or_nothing<
    S: HookRegistry + FeatureStore + ValidationRunStore,
>(
    store: S,
) {
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
/// leaves no trace. Needs [`FeatureStaging`](crate::validation::FeatureStaging).
pub async fn staged_features_publish_like_a_plain_finalize<
    S: HookRegistry + FeatureStore + ValidationRunStore,
>(
    store: S,
) {
    let staging = feature_staging::offered(&store);
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
    let by_run = |rows: &[FeatureRow], record: &str| -> BTreeSet<HookRunId> {
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
pub async fn end_run_happens_once<S: HookRegistry + FeatureStore + ValidationRunStore>(store: S) {
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
pub async fn run_records_keep_submit_order<
    S: HookRegistry + FeatureStore + JobQueue + ValidationRunStore,
>(
    store: S,
) {
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
pub async fn run_reads_are_snapshots<S: HookRegistry + FeatureStore + ValidationRunStore>(
    store: S,
) {
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

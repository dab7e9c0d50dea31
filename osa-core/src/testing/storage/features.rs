//! Checks of [`FeatureStore`]: hook tables, per-record replaces, typed values, pages,
//! streams and provenance. Rows reference hook runs, so every check also registers
//! hooks and records runs through [`HookRegistry`].

use chrono::NaiveDate;
use serde_json::json;
use uuid::Uuid;

use super::{
    all_rows, assert_one_set_per_record, hook_run, hook_with_run, name, process_release, record,
    scored_identity, scored_rows, writer_batch,
};
use crate::feature::{Cardinality, FeatureSpec, FeatureValue};
use crate::feature_store::{ColumnFilter, FeatureBatch, FeatureQuery, FeatureRow, NewFeatureRow};
use crate::hook::HookRunStatus;
use crate::id::{ColumnName, HookName, HookRunId, RecordId, ValidationRunId};
use crate::testing::fixtures::{digest, every_type_identity};
use crate::{ErrorKind, FeatureStore, HookRegistry};

/// The list of this module's checks, expanded by
/// [`storage_conformance!`](crate::storage_conformance) into one test each.
#[doc(hidden)]
#[macro_export]
macro_rules! __storage_features_checks {
    ($($declared:tt)*) => {
        $crate::__storage_conformance!(@tests features; $($declared)*;
            ensure_table_is_idempotent_and_guards_the_contract,
            replace_rows_replaces_per_record,
            concurrent_replaces_keep_one_set,
            bad_row_rolls_back_the_whole_insert,
            every_type_round_trips,
            pages_and_filters,
            data_columns_may_be_named_like_system_fields,
            open_rows_are_kept_whole,
            streamed_rows_equal_the_pages,
            provenance_chain,
        );
    };
}
#[doc(hidden)]
pub use crate::__storage_features_checks as checks;

/// `ensure_table` twice is one table; another contract is a Conflict; unregistered
/// hooks are NotFound; bad names never reach SQL.
pub async fn ensure_table_is_idempotent_and_guards_the_contract<S: HookRegistry + FeatureStore>(
    store: S,
) {
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
    assert!(ColumnName::new("_run_id").is_err());
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
pub async fn replace_rows_replaces_per_record<S: HookRegistry + FeatureStore>(store: S) {
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

/// Concurrent replaces of the same records, each writer with its own run and its own
/// rows, end with exactly one writer's set per record: replace-by-record is
/// serialised per record, so no writer's delete misses another's insert. Odd writers
/// list the records in reverse order, so lock ordering is exercised too.
pub async fn concurrent_replaces_keep_one_set<S: HookRegistry + FeatureStore + Clone + 'static>(
    store: S,
) {
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
pub async fn bad_row_rolls_back_the_whole_insert<S: HookRegistry + FeatureStore>(store: S) {
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
pub async fn every_type_round_trips<S: HookRegistry + FeatureStore>(store: S) {
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
pub async fn streamed_rows_equal_the_pages<S: HookRegistry + FeatureStore>(store: S) {
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
/// Data columns named `id`, `record_id`, `run_id`, `validation_run_id`, `row_index`
/// and `created_at` are ordinary columns: stored, read and filtered on apart from the
/// row's system fields of the same names.
pub async fn data_columns_may_be_named_like_system_fields<S: HookRegistry + FeatureStore>(
    store: S,
) {
    use crate::feature::{Cardinality, JsonType};
    let names = [
        "id",
        "record_id",
        "run_id",
        "validation_run_id",
        "row_index",
        "created_at",
    ];
    let identity = crate::hook::HookIdentity {
        name: name("shadows"),
        feature: FeatureSpec::table(
            Cardinality::One,
            names
                .iter()
                .map(|n| crate::testing::fixtures::column(n, JsonType::String, None, true))
                .collect(),
        )
        .expect("distinct columns"),
    };
    let run = hook_with_run(&store, &identity).await;
    let records = [record("a"), record("b")];
    let rows = records
        .iter()
        .map(|r| NewFeatureRow {
            record_id: r.clone(),
            row_index: 0,
            values: names
                .iter()
                .map(|n| FeatureValue::Text(format!("{n} of {r}")))
                .collect(),
        })
        .collect();
    store
        .replace_rows(&FeatureBatch {
            hook: identity.name.clone(),
            run_id: run,
            validation_run_id: None,
            records: records.to_vec(),
            rows,
        })
        .await
        .expect("insert");
    let by_system = store
        .rows(
            &identity.name,
            &FeatureQuery {
                record_id: Some(record("b")),
                limit: 10,
                ..FeatureQuery::default()
            },
        )
        .await
        .expect("rows of b");
    assert_eq!(by_system.rows.len(), 1);
    let row = &by_system.rows[0];
    assert_eq!(row.record_id, record("b"));
    assert_eq!(row.run_id, run);
    assert_eq!(
        row.values,
        names
            .iter()
            .map(|n| FeatureValue::Text(format!("{n} of b")))
            .collect::<Vec<_>>()
    );
    let by_data = store
        .rows(
            &identity.name,
            &FeatureQuery {
                filters: vec![ColumnFilter::Eq(
                    ColumnName::new("record_id").expect("column"),
                    FeatureValue::Text("record_id of a".into()),
                )],
                limit: 10,
                ..FeatureQuery::default()
            },
        )
        .await
        .expect("rows by the data column");
    assert_eq!(by_data.rows.len(), 1);
    assert_eq!(by_data.rows[0].record_id, record("a"));
}

/// A hook that declared no columns (a Python hook returning `dict`) has its rows
/// stored whole, as JSON objects of any keys, and read back equal.
pub async fn open_rows_are_kept_whole<S: HookRegistry + FeatureStore>(store: S) {
    let identity = crate::hook::HookIdentity {
        name: name("loose"),
        feature: FeatureSpec::table(Cardinality::Many, vec![]).expect("no columns"),
    };
    let run = hook_with_run(&store, &identity).await;
    let objects = [
        json!({"id": 1, "Mixed Case": true, "nested": {"a": [1, 2.5, null]}}),
        json!({}),
    ];
    let r = record("r");
    let rows = objects
        .iter()
        .enumerate()
        .map(|(i, object)| NewFeatureRow {
            record_id: r.clone(),
            row_index: i as u32,
            values: identity
                .feature
                .coerce_row(object.as_object().expect("an object"))
                .expect("any object"),
        })
        .collect();
    store
        .replace_rows(&FeatureBatch {
            hook: identity.name.clone(),
            run_id: run,
            validation_run_id: None,
            records: vec![r],
            rows,
        })
        .await
        .expect("insert");
    let stored: Vec<FeatureValue> = all_rows(&store, &identity.name)
        .await
        .into_iter()
        .flat_map(|row| row.values)
        .collect();
    assert_eq!(
        stored,
        objects.map(FeatureValue::Json),
        "one value per row, the object as written"
    );
}

pub async fn pages_and_filters<S: HookRegistry + FeatureStore>(store: S) {
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
pub async fn provenance_chain<S: HookRegistry + FeatureStore>(store: S) {
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

/// Rows for upgrade tests: registers a hook `seeded` with a run, writes three rows for
/// two records and returns the hook's name with the rows as read back. A test then
/// rewrites the table underneath as an earlier version made it, upgrades, and
/// compares with [`read_all`].
pub async fn seed_rows<S: HookRegistry + FeatureStore>(store: &S) -> (HookName, Vec<FeatureRow>) {
    let identity = scored_identity("seeded");
    let run = hook_with_run(store, &identity).await;
    let (a, b) = (record("a"), record("b"));
    let mut rows = scored_rows(&a, &[0.25, 0.5]);
    rows.extend(scored_rows(&b, &[0.75]));
    store
        .replace_rows(&FeatureBatch {
            hook: identity.name.clone(),
            run_id: run,
            validation_run_id: Some(ValidationRunId::new_random()),
            records: vec![a, b],
            rows,
        })
        .await
        .expect("insert");
    let stored = read_all(store, &identity.name).await;
    assert_eq!(stored.len(), 3);
    (identity.name, stored)
}

/// Every row of `hook`, in row-id order.
pub async fn read_all<S: FeatureStore>(store: &S, hook: &HookName) -> Vec<FeatureRow> {
    all_rows(store, hook).await
}

/// For upgrade tests: registers a hook `loose` that declared no columns, with a run
/// and its (empty) table; returns the hook and the run.
pub async fn seed_open_table<S: HookRegistry + FeatureStore>(store: &S) -> (HookName, HookRunId) {
    let identity = crate::hook::HookIdentity {
        name: name("loose"),
        feature: FeatureSpec::table(Cardinality::One, vec![]).expect("no columns"),
    };
    let run = hook_with_run(store, &identity).await;
    (identity.name, run)
}

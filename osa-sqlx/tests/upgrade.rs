//! A database written by the first schema version is upgraded in place: the runs it
//! holds read the same afterwards (records in submit order, settled verdicts kept,
//! accepted records derived from the completed run). Real SQLite file and real Postgres.

use osa_core::id::{RecordId, ValidationRunId};
use osa_core::validation::{ValidationRunStore, Verdict};
use serde_json::json;

/// Runs written with the first schema: a completed run (b accepted, a rejected, c
/// accepted; submit order b, a, c) and a running one (y pending, x errored).
const LEGACY_RUNS: &str = "INSERT INTO validation_runs (id, convention, status, current_step, steps, \
     record_count, inputs_ref, created_at, updated_at) VALUES \
     ($1, 'legacy-runs', 'completed', 1, '[]', 3, 'runs/1/inputs', $3, $3), \
     ($2, 'legacy-runs', 'running', 1, '[]', 2, 'runs/2/inputs', $3, $3)";
const LEGACY_RECORDS: &str = "INSERT INTO validation_records (run_id, position, record_id, verdict) VALUES \
     ($1, 1, 'a', $3), ($1, 0, 'b', $4), ($1, 2, 'c', $4), ($2, 0, 'y', $5), ($2, 1, 'x', $6)";

fn verdicts() -> [serde_json::Value; 4] {
    [
        json!({"verdict": "rejected", "step": 0, "hook": "pockets", "reason": "blurry"}),
        json!({"verdict": "accepted"}),
        json!({"verdict": "pending"}),
        json!({"verdict": "errored", "step": 0, "hook": "pockets", "error": "crashed"}),
    ]
}

async fn check_upgraded<S: ValidationRunStore>(
    store: &S,
    done: ValidationRunId,
    open: ValidationRunId,
) {
    let ids = |v: &osa_core::validation::ValidationRunView| -> Vec<String> {
        v.verdicts.iter().map(|r| r.record_id.to_string()).collect()
    };
    let view = store.run_view(done).await.expect("view").expect("exists");
    assert_eq!(ids(&view), ["b", "a", "c"]);
    assert_eq!(view.verdicts[0].verdict, Verdict::Accepted);
    assert!(matches!(view.verdicts[1].verdict, Verdict::Rejected { .. }));
    assert_eq!(view.verdicts[2].verdict, Verdict::Accepted);
    let view = store.run_view(open).await.expect("view").expect("exists");
    assert_eq!(ids(&view), ["y", "x"]);
    assert_eq!(view.verdicts[0].verdict, Verdict::Pending);
    assert!(matches!(view.verdicts[1].verdict, Verdict::Errored { .. }));
    let progress = store
        .run_progress(open)
        .await
        .expect("progress")
        .expect("exists");
    assert_eq!(progress.in_play, 1);
    assert!(progress.any_errored);
    let page = store
        .record_page(open, 0, 10)
        .await
        .expect("page")
        .expect("exists");
    assert_eq!(page, view.verdicts, "one page holds the run's two records");
    let second = store
        .record_page(open, 1, 10)
        .await
        .expect("page")
        .expect("exists");
    assert_eq!(second[..], view.verdicts[1..]);
    assert_eq!(page[0].record_id, RecordId::new("y").unwrap());
}

/// Applies only the first migration to `$pool`, writes the legacy runs, upgrades
/// `$backend` and checks what it reads. (A macro: the two pools are different types.)
macro_rules! upgrade_and_check {
    ($backend:expr, $pool:expr, $migrations:literal) => {{
        use sqlx::types::Json;
        let mut first = sqlx::migrate::Migrator::new(std::path::Path::new($migrations))
            .await
            .expect("migrations");
        first.migrations.to_mut().truncate(1);
        first.run($pool).await.expect("first schema");
        let (done, open) = (ValidationRunId::new_random(), ValidationRunId::new_random());
        sqlx::query(LEGACY_RUNS)
            .bind(done.0)
            .bind(open.0)
            .bind(chrono::Utc::now())
            .execute($pool)
            .await
            .expect("legacy runs");
        let [rejected, accepted, pending, errored] = verdicts();
        sqlx::query(LEGACY_RECORDS)
            .bind(done.0)
            .bind(open.0)
            .bind(Json(rejected))
            .bind(Json(accepted))
            .bind(Json(pending))
            .bind(Json(errored))
            .execute($pool)
            .await
            .expect("legacy records");
        $backend.migrate().await.expect("upgrade");
        check_upgraded(&$backend, done, open).await;
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM validation_records")
            .fetch_one($pool)
            .await
            .expect("count");
        assert_eq!(left, 2, "only the settled verdicts stay as rows");
    }};
}

/// A running run of `LONG_RUN` records written with the second schema (its record ids in
/// one row) and one errored verdict at position 10,000.
const LONG_RUN: usize = 25_001;
const LONG_RUN_ROW: &str = "INSERT INTO validation_runs (id, convention, status, current_step, steps, \
     record_count, inputs_ref, created_at, updated_at) VALUES \
     ($1, 'legacy-runs', 'running', 0, '[]', $2, 'runs/3/inputs', $3, $3)";

fn long_ids() -> Vec<String> {
    (0..LONG_RUN).map(|i| format!("r{i:05}")).collect()
}

/// After the upgrade the long run's list reads the same, a page at a time across the
/// chunk boundaries the migration made (10,000 ids per chunk).
async fn check_long_run<S: ValidationRunStore>(store: &S, run: ValidationRunId) {
    let view = store.run_view(run).await.expect("view").expect("exists");
    let listed: Vec<String> = view
        .verdicts
        .iter()
        .map(|r| r.record_id.to_string())
        .collect();
    assert_eq!(listed, long_ids());
    for (from, limit) in [(0, 3), (9_998, 4), (19_999, 2), (24_999, 10), (25_001, 5)] {
        let page = store
            .record_page(run, from, limit)
            .await
            .expect("page")
            .expect("exists");
        let end = (from + limit).min(LONG_RUN as u32) as usize;
        assert_eq!(
            page[..],
            view.verdicts[from as usize..end],
            "page at {from}"
        );
    }
    assert!(matches!(
        view.verdicts[10_000].verdict,
        Verdict::Errored { .. }
    ));
    assert_eq!(view.verdicts[9_999].verdict, Verdict::Pending);
    let progress = store
        .run_progress(run)
        .await
        .expect("progress")
        .expect("exists");
    assert_eq!(progress.in_play as usize, LONG_RUN - 1);
}

/// Applies the first two migrations to `$pool`, writes the long run with its ids bound
/// as `$ids`, upgrades `$backend` and checks the chunks and what it reads.
macro_rules! upgrade_list_and_check {
    ($backend:expr, $pool:expr, $migrations:literal, $ids:expr) => {{
        use sqlx::types::Json;
        let mut two = sqlx::migrate::Migrator::new(std::path::Path::new($migrations))
            .await
            .expect("migrations");
        two.migrations.to_mut().truncate(2);
        two.run($pool).await.expect("second schema");
        let run = ValidationRunId::new_random();
        sqlx::query(LONG_RUN_ROW)
            .bind(run.0)
            .bind(LONG_RUN as i32)
            .bind(chrono::Utc::now())
            .execute($pool)
            .await
            .expect("long run");
        sqlx::query("INSERT INTO validation_run_records (run_id, record_ids) VALUES ($1, $2)")
            .bind(run.0)
            .bind($ids)
            .execute($pool)
            .await
            .expect("record list");
        sqlx::query(
            "INSERT INTO validation_records (run_id, record_id, verdict) VALUES ($1, $2, $3)",
        )
        .bind(run.0)
        .bind("r10000")
        .bind(Json(verdicts()[3].clone()))
        .execute($pool)
        .await
        .expect("verdict");
        $backend.migrate().await.expect("upgrade");
        let counts: Vec<(i32, i32)> = sqlx::query_as(
            "SELECT start_pos, id_count FROM validation_run_record_chunks \
             WHERE run_id = $1 ORDER BY start_pos",
        )
        .bind(run.0)
        .fetch_all($pool)
        .await
        .expect("chunks");
        assert_eq!(counts, [(0, 10_000), (10_000, 10_000), (20_000, 5_001)]);
        check_long_run(&$backend, run).await;
    }};
}

/// Renames the six system columns of `$table` back to the names an earlier version
/// gave them, on `$pool`.
macro_rules! make_legacy {
    ($pool:expr, $table:expr) => {{
        for column in [
            "id",
            "record_id",
            "validation_run_id",
            "run_id",
            "row_index",
            "created_at",
        ] {
            sqlx::query(&format!(
                "ALTER TABLE {} RENAME COLUMN _{column} TO {column}",
                $table
            ))
            .execute($pool)
            .await
            .expect("legacy column");
        }
    }};
}

/// A table of a hook without columns, made before open rows were kept (no `row`
/// column), gets the column at upgrade and then stores a row whole.
async fn check_open_table<S: osa_core::FeatureStore>(
    store: &S,
    hook: &osa_core::id::HookName,
    run: osa_core::id::HookRunId,
) {
    use osa_core::feature::FeatureValue;
    use osa_core::feature_store::{FeatureBatch, NewFeatureRow};
    use osa_core::testing::storage::features::read_all;
    let record = RecordId::new("r").unwrap();
    let object = json!({"any": ["thing", 1]});
    store
        .replace_rows(&FeatureBatch {
            hook: hook.clone(),
            run_id: run,
            validation_run_id: None,
            records: vec![record.clone()],
            rows: vec![NewFeatureRow {
                record_id: record,
                row_index: 0,
                values: vec![FeatureValue::Json(object.clone())],
            }],
        })
        .await
        .expect("a whole row");
    let rows = read_all(store, hook).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].values, [FeatureValue::Json(object)]);
}

/// A feature table made with the earlier system column names (`id`, `record_id`, ...)
/// is renamed by the upgrade and reads the same; upgrading again changes nothing.
async fn check_legacy_table<S: osa_core::FeatureStore>(
    store: &S,
    hook: &osa_core::id::HookName,
    before: &[osa_core::feature_store::FeatureRow],
) {
    use osa_core::testing::storage::features::read_all;
    assert_eq!(read_all(store, hook).await, before);
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_runs_survive_the_upgrade() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = osa_sqlx::SqliteBackend::open(dir.path().join("osa.db"))
        .await
        .expect("open");
    upgrade_and_check!(backend, backend.write_pool(), "migrations/sqlite");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_feature_tables_get_the_system_column_names() {
    use osa_core::testing::storage::features::seed_rows;
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = osa_sqlx::SqliteBackend::open(dir.path().join("osa.db"))
        .await
        .expect("open");
    backend.migrate().await.expect("schema");
    let (hook, before) = seed_rows(&backend).await;
    make_legacy!(backend.write_pool(), format!("\"osa_feature__{hook}\""));
    let (open, run) = osa_core::testing::storage::features::seed_open_table(&backend).await;
    sqlx::query(&format!(
        "ALTER TABLE \"osa_feature__{open}\" DROP COLUMN \"row\""
    ))
    .execute(backend.write_pool())
    .await
    .expect("an open table as made before");
    backend.migrate().await.expect("upgrade");
    check_legacy_table(&backend, &hook, &before).await;
    backend.migrate().await.expect("again");
    check_legacy_table(&backend, &hook, &before).await;
    check_open_table(&backend, &open, run).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_record_lists_are_split_into_chunks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = osa_sqlx::SqliteBackend::open(dir.path().join("osa.db"))
        .await
        .expect("open");
    upgrade_list_and_check!(
        backend,
        backend.write_pool(),
        "migrations/sqlite",
        Json(long_ids())
    );
}

/// A backend on fresh, empty schemas of the test database.
#[cfg(feature = "postgres")]
async fn fresh_postgres() -> osa_sqlx::PgBackend {
    use osa_sqlx::{PgBackend, PgConfig};
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let config = PgConfig::new(url).with_schemas(
        format!("u_{}", &tag[..12]),
        format!("u_{}_features", &tag[..12]),
    );
    let backend = PgBackend::connect(config)
        .await
        .expect("Postgres must be reachable");
    let schema = backend.config().control_schema.clone();
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(backend.pool())
        .await
        .expect("schema");
    backend
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_runs_survive_the_upgrade() {
    let backend = fresh_postgres().await;
    upgrade_and_check!(backend, backend.pool(), "migrations/postgres");
    backend.drop_schemas().await.expect("drop");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_feature_tables_get_the_system_column_names() {
    use osa_core::testing::storage::features::seed_rows;
    let backend = fresh_postgres().await;
    backend.migrate().await.expect("schema");
    let (hook, before) = seed_rows(&backend).await;
    let table = format!("\"{}\".\"{hook}\"", backend.config().features_schema);
    make_legacy!(backend.pool(), table);
    let (open, run) = osa_core::testing::storage::features::seed_open_table(&backend).await;
    let schema = &backend.config().features_schema;
    sqlx::query(&format!(
        "ALTER TABLE \"{schema}\".\"{open}\" DROP COLUMN \"row\""
    ))
    .execute(backend.pool())
    .await
    .expect("an open table as made before");
    backend.migrate().await.expect("upgrade");
    check_legacy_table(&backend, &hook, &before).await;
    backend.migrate().await.expect("again");
    check_legacy_table(&backend, &hook, &before).await;
    check_open_table(&backend, &open, run).await;
    backend.drop_schemas().await.expect("drop");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_record_lists_are_split_into_chunks() {
    let backend = fresh_postgres().await;
    upgrade_list_and_check!(backend, backend.pool(), "migrations/postgres", long_ids());
    backend.drop_schemas().await.expect("drop");
}

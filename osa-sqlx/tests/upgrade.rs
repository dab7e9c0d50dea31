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

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_runs_survive_the_upgrade() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = osa_sqlx::SqliteBackend::open(dir.path().join("osa.db"))
        .await
        .expect("open");
    upgrade_and_check!(backend, backend.write_pool(), "migrations/sqlite");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_runs_survive_the_upgrade() {
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
    upgrade_and_check!(backend, backend.pool(), "migrations/postgres");
    backend.drop_schemas().await.expect("drop");
}

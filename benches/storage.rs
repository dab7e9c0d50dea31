//! Storage benchmarks: feature inserts through `FeatureStore` against hand-written
//! baselines on the same table in the same run, and job-queue throughput.
//!
//! ```text
//! cargo bench --bench storage --features postgres
//! ```
//!
//! Needs Postgres (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//! Results and how to read them: BENCHMARKS.md.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use osa::feature::{Cardinality, FeatureSpec, FeatureValue, JsonType};
use osa::feature_store::{FeatureBatch, NewFeatureRow};
use osa::hook::{HookIdentity, HookRun, HookRunStatus, NewRelease, OutcomeCounts};
use osa::id::{HookName, HookRunId, RecordId};
use osa::jobs::NewJob;
use osa::runtime::{Limits, RuntimeConfig};
use osa::{FeatureStore, HookRegistry, JobQueue};
use osa_core::testing::{column, digest};
use osa_sqlx::{PgBackend, PgConfig, SqliteBackend};
use sqlx::query::Query;

const ROWS: usize = 100_000;
const ROWS_PER_RECORD: usize = 10;

fn identity(name: &str) -> HookIdentity {
    HookIdentity {
        name: HookName::new(name).unwrap(),
        feature: FeatureSpec::table(
            Cardinality::Many,
            vec![
                column("label", JsonType::String, None, true),
                column("score", JsonType::Number, None, true),
                column("count", JsonType::Integer, None, false),
                column("ok", JsonType::Boolean, None, false),
                column("seen_at", JsonType::String, Some("date-time"), false),
                column("day", JsonType::String, Some("date"), false),
            ],
        )
        .unwrap(),
    }
}

fn batch(hook: &str, run_id: HookRunId) -> FeatureBatch {
    let seen_at = Utc::now();
    let day = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    let records: Vec<RecordId> = (0..ROWS / ROWS_PER_RECORD)
        .map(|i| RecordId::new(format!("record-{i:06}")).unwrap())
        .collect();
    let rows = (0..ROWS)
        .map(|i| NewFeatureRow {
            record_id: records[i / ROWS_PER_RECORD].clone(),
            row_index: (i % ROWS_PER_RECORD) as u32,
            values: vec![
                FeatureValue::Text(format!("pocket {i}")),
                FeatureValue::Float(i as f64 / 7.0),
                FeatureValue::Integer(i as i64),
                FeatureValue::Boolean(i % 2 == 0),
                FeatureValue::Timestamp(seen_at),
                FeatureValue::Date(day),
            ],
        })
        .collect();
    FeatureBatch {
        hook: HookName::new(hook).unwrap(),
        run_id,
        validation_run_id: None,
        records,
        rows,
    }
}

/// Registers the hook, a release and a run; returns the run.
async fn prepare<S: HookRegistry + FeatureStore>(store: &S, hook: &str) -> HookRunId {
    let identity = identity(hook);
    store.upsert_identity(&identity).await.unwrap();
    let release = store
        .create_release(&NewRelease {
            hook: identity.name.clone(),
            runtime: RuntimeConfig::Process {
                command: vec!["true".into()],
                digest: digest(1),
                config: Default::default(),
                limits: Limits::default(),
            },
            source_ref: "bench".into(),
            built_by: None,
        })
        .await
        .unwrap()
        .release;
    store.ensure_table(&identity).await.unwrap();
    let run = HookRunId::new_random();
    let now = Utc::now();
    store
        .record_run(&HookRun {
            id: run,
            release_id: release.id,
            status: HookRunStatus::Passed,
            started_at: now,
            finished_at: now,
            duration_s: 0.0,
            oom_retries: 0,
            log_ref: None,
            input_sha256: None,
            counts: OutcomeCounts::default(),
        })
        .await
        .unwrap();
    run
}

async fn postgres(tag: &str, connections: u32) -> PgBackend {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let config =
        PgConfig::new(url).with_schemas(format!("bench_{tag}"), format!("bench_{tag}_features"));
    let backend = PgBackend::connect(config.with_max_connections(connections))
        .await
        .unwrap();
    backend.drop_schemas().await.unwrap();
    backend.migrate().await.unwrap();
    backend
}

const DATA_COLUMNS: &str = "label, score, count, ok, seen_at, day";

/// The same rows as tab-separated COPY text, formatted by hand.
fn copy_text(batch: &FeatureBatch, created_at: &str) -> String {
    let mut out = String::with_capacity(batch.rows.len() * 160);
    for row in &batch.rows {
        let values: Vec<String> = row.values.iter().map(|v| v.to_string()).collect();
        out.push_str(&format!(
            "{}\t\\N\t{}\t{}\t{created_at}\t{}\n",
            row.record_id,
            batch.run_id,
            row.row_index,
            values.join("\t")
        ));
    }
    out
}

/// Drops the foreign keys and every index but the primary key of a feature table.
async fn strip_to_heap(pg: &PgBackend, schema: &str, table: &str) {
    let constraints: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND t.relname = $2 AND c.contype = 'f'",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pg.pool())
    .await
    .unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND t.relname = $2 AND NOT x.indisprimary",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pg.pool())
    .await
    .unwrap();
    assert!(
        !constraints.is_empty() && indexes.len() == 2,
        "{constraints:?} {indexes:?}"
    );
    for name in constraints {
        sqlx::query(&format!(
            "ALTER TABLE \"{schema}\".\"{table}\" DROP CONSTRAINT \"{name}\""
        ))
        .execute(pg.pool())
        .await
        .unwrap();
    }
    for name in indexes {
        sqlx::query(&format!("DROP INDEX \"{schema}\".\"{name}\""))
            .execute(pg.pool())
            .await
            .unwrap();
    }
}

/// Binds a row's system and data columns, in the order of the baselines' statements.
fn bind_row<'q, DB: sqlx::Database>(
    query: Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    row: &'q NewFeatureRow,
    run: uuid::Uuid,
    created_at: DateTime<Utc>,
) -> Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    uuid::Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    NaiveDate: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut query = query
        .bind(row.record_id.as_str())
        .bind(run)
        .bind(row.row_index as i32)
        .bind(created_at);
    for value in &row.values {
        query = match value {
            FeatureValue::Text(s) => query.bind(s.as_str()),
            FeatureValue::Float(f) => query.bind(*f),
            FeatureValue::Integer(i) => query.bind(*i),
            FeatureValue::Boolean(v) => query.bind(*v),
            FeatureValue::Timestamp(t) => query.bind(*t),
            FeatureValue::Date(d) => query.bind(*d),
            other => panic!("unused type {other:?}"),
        };
    }
    query
}

/// The baseline: multi-row `INSERT`s of 1,000 rows each with bound parameters, in one
/// transaction.
async fn multi_row_insert(pg: &PgBackend, table: &str, batch: &FeatureBatch) {
    let mut tx = pg.pool().begin().await.unwrap();
    let created_at = Utc::now();
    for chunk in batch.rows.chunks(1000) {
        let mut sql = format!(
            "INSERT INTO {table} (_record_id, _run_id, _row_index, _created_at, {DATA_COLUMNS}) VALUES "
        );
        for i in 0..chunk.len() {
            let p = i * 10;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${},${},${},${},${},${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7,
                p + 8,
                p + 9,
                p + 10
            ));
        }
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = bind_row(query, row, batch.run_id.0, created_at);
        }
        query.execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

fn feature_inserts(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("feature_insert_100k_rows");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));

    let pg = rt.block_on(postgres("inserts", 4));
    let pg_run = rt.block_on(prepare(&pg, "bench_features"));
    let pg_batch = batch("bench_features", pg_run);
    let table = "\"bench_inserts_features\".\"bench_features\"";
    let bare_run = rt.block_on(prepare(&pg, "bench_bare"));
    let bare_batch = batch("bench_bare", bare_run);
    let bare_table = "\"bench_inserts_features\".\"bench_bare\"";
    rt.block_on(strip_to_heap(&pg, "bench_inserts_features", "bench_bare"));
    let truncate = |pg: &PgBackend, table: &str| {
        rt.block_on(sqlx::query(&format!("TRUNCATE {table}")).execute(pg.pool()))
            .unwrap();
    };

    group.bench_function("postgres/feature_store_binary_copy", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                truncate(&pg, table);
                let start = Instant::now();
                rt.block_on(pg.replace_rows(&pg_batch)).unwrap();
                total += start.elapsed();
            }
            total
        })
    });

    group.bench_function("postgres/raw_text_copy", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                truncate(&pg, table);
                let start = Instant::now();
                rt.block_on(async {
                    let created_at = Utc::now().to_rfc3339();
                    let text = copy_text(&pg_batch, &created_at);
                    let mut conn = pg.pool().acquire().await.unwrap();
                    let mut copy = conn
                        .copy_in_raw(&format!(
                            "COPY {table} (_record_id, _validation_run_id, _run_id, _row_index, _created_at, {DATA_COLUMNS}) FROM STDIN"
                        ))
                        .await
                        .unwrap();
                    copy.send(text.as_bytes()).await.unwrap();
                    copy.finish().await.unwrap();
                });
                total += start.elapsed();
            }
            total
        })
    });

    group.bench_function("postgres/multi_row_insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                truncate(&pg, table);
                let start = Instant::now();
                rt.block_on(multi_row_insert(&pg, table, &pg_batch));
                total += start.elapsed();
            }
            total
        })
    });

    // The ceiling of the comparison: the same two paths into a copy of the table
    // without its foreign key and its secondary indexes, the per-row server work
    // that both paths pay alike on the real table.
    group.bench_function("postgres/bare_table/feature_store_binary_copy", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                truncate(&pg, bare_table);
                let start = Instant::now();
                rt.block_on(pg.replace_rows(&bare_batch)).unwrap();
                total += start.elapsed();
            }
            total
        })
    });

    group.bench_function("postgres/bare_table/multi_row_insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                truncate(&pg, bare_table);
                let start = Instant::now();
                rt.block_on(multi_row_insert(&pg, bare_table, &bare_batch));
                total += start.elapsed();
            }
            total
        })
    });
    rt.block_on(pg.drop_schemas()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt.block_on(async {
        let s = SqliteBackend::open(dir.path().join("bench.db"))
            .await
            .unwrap();
        s.migrate().await.unwrap();
        s
    });
    let sqlite_run = rt.block_on(prepare(&sqlite, "bench_features"));
    let sqlite_batch = batch("bench_features", sqlite_run);
    let sqlite_table = "\"osa_feature__bench_features\"";
    let clear = |s: &SqliteBackend| {
        rt.block_on(sqlx::query(&format!("DELETE FROM {sqlite_table}")).execute(s.write_pool()))
            .unwrap();
    };

    group.bench_function("sqlite/feature_store", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                clear(&sqlite);
                let start = Instant::now();
                rt.block_on(sqlite.replace_rows(&sqlite_batch)).unwrap();
                total += start.elapsed();
            }
            total
        })
    });

    group.bench_function("sqlite/raw_single_transaction", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                clear(&sqlite);
                let start = Instant::now();
                rt.block_on(async {
                    let mut tx = sqlite.write_pool().begin().await.unwrap();
                    let created_at = Utc::now();
                    let sql = format!(
                        "INSERT INTO {sqlite_table} (_record_id, _run_id, _row_index, _created_at, {DATA_COLUMNS}) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    );
                    for row in &sqlite_batch.rows {
                        bind_row(sqlx::query(&sql), row, sqlite_batch.run_id.0, created_at)
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                    }
                    tx.commit().await.unwrap();
                });
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

const JOBS: usize = 2_000;

fn job_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("jobs_claim_complete_2000");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let pg = rt.block_on(postgres("jobs", 8));
    for workers in [1usize, 4] {
        group.bench_with_input(
            BenchmarkId::new("postgres", format!("{workers}_workers")),
            &workers,
            |b, &workers| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        rt.block_on(async {
                            for _ in 0..JOBS {
                                pg.enqueue(&NewJob {
                                    kind: "bench".into(),
                                    payload: serde_json::json!({}),
                                    run_at: Utc::now() - chrono::Duration::seconds(1),
                                    max_attempts: 3,
                                    dedupe_key: None,
                                })
                                .await
                                .unwrap();
                            }
                        });
                        let start = Instant::now();
                        rt.block_on(async {
                            let tasks: Vec<_> = (0..workers)
                                .map(|_| {
                                    let pg = pg.clone();
                                    tokio::spawn(async move {
                                        loop {
                                            let jobs = pg
                                                .claim(&["bench"], 10, Duration::from_secs(60))
                                                .await
                                                .unwrap();
                                            if jobs.is_empty() {
                                                return;
                                            }
                                            for job in jobs {
                                                assert!(pg.complete(&job.lease).await.unwrap());
                                            }
                                        }
                                    })
                                })
                                .collect();
                            for task in tasks {
                                task.await.unwrap();
                            }
                        });
                        total += start.elapsed();
                    }
                    total
                })
            },
        );
    }
    rt.block_on(pg.drop_schemas()).unwrap();
    group.finish();
}

criterion_group!(benches, feature_inserts, job_throughput);
criterion_main!(benches);

//! Orchestration overhead of the validation saga: the time a run takes beyond its hooks'
//! own execution, per step, on SQLite and Postgres.
//!
//! ```text
//! cargo bench --bench saga_overhead --features postgres
//! ```
//!
//! Each scenario (1 record × 3 hooks, 1,000 records × 3 hooks) runs `ROUNDS` times per
//! backend with a no-op Python hook. For every run: total = submit until the run is
//! terminal, as seen by a worker in the same process; hooks = the sum of the hook runs'
//! `duration_s` (process start to exit, OOM retries included); overhead per step =
//! (total − hooks) / 3. It covers storing inputs, claiming jobs, preparing batch
//! directories, reading and validating outputs, the step and finalize transactions,
//! and the feature inserts. On Postgres every scenario runs with and without
//! `EngineConfig::stage_features` (alternating round by round): staged, the earlier
//! hooks' rows are written while the last hook runs, so compare the totals as well as
//! the overhead. Medians are printed as a table.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use osa::Storage;
use osa::blob::Blobs;
use osa::deploy::Deployer;
use osa::id::RecordId;
use osa::runner::ProcessRunner;
use osa::saga::{Engine, EngineConfig, Worker, WorkerConfig};
use osa::validation::{InputRecord, RunStatus, SubmitValidation, ValidationService};
use osa_sqlx::{PgBackend, PgConfig, SqliteBackend};
use serde_json::json;

const ROUNDS: usize = 7;
fn payload(script: &std::path::Path) -> Vec<u8> {
    serde_json::to_vec(&common::noop_convention(
        "Overhead Bench",
        script,
        common::no_files(),
    ))
    .unwrap()
}

#[derive(Debug, Default)]
struct Sample {
    total: Duration,
    hooks: Duration,
}

/// Runs the scenario `ROUNDS` times per engine configuration in `staged` (the value
/// of `EngineConfig::stage_features`), alternating between them round by round, all on
/// one storage; returns the samples per configuration.
async fn measure<S: Storage>(
    storage: Arc<S>,
    dir: &std::path::Path,
    records: usize,
    staged: &[bool],
) -> Vec<Vec<Sample>> {
    let script = dir.join("noop.py");
    std::fs::write(&script, common::NOOP_HOOK).unwrap();
    let blobs = Blobs::local(dir.join("blobs")).unwrap();
    let engines: Vec<Engine> = staged
        .iter()
        .map(|&stage| {
            let mut config = EngineConfig::new(dir.join("work"));
            config.stage_features = stage;
            Engine::new(
                storage.clone(),
                Arc::new(ProcessRunner::new()),
                blobs.clone(),
                config,
            )
        })
        .collect();
    let slug = Deployer::new(storage.clone(), blobs)
        .deploy(&payload(&script), "bench")
        .await
        .unwrap()
        .applied
        .convention
        .slug;
    let mut samples: Vec<Vec<Sample>> = staged.iter().map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        for (variant, engine) in engines.iter().enumerate() {
            // The default configuration: a submit wakes the worker and each step's
            // commit hands it the next job, so the poll interval adds no latency.
            let worker = Worker::new(engine.clone(), WorkerConfig::default());
            let input: Vec<InputRecord> = (0..records)
                .map(|i| InputRecord {
                    id: RecordId::new(format!("r{round}-{variant}-{i}")).unwrap(),
                    metadata: json!({"i": i}),
                    files: vec![],
                })
                .collect();
            let start = Instant::now();
            let run = engine
                .submit(SubmitValidation {
                    convention: slug.clone(),
                    records: input,
                })
                .await
                .unwrap();
            assert_eq!(
                worker.run_until_finished(run).await.unwrap(),
                RunStatus::Completed
            );
            let total = start.elapsed();
            let view = engine.get(run).await.unwrap();
            let mut hooks = Duration::ZERO;
            for step in &view.steps {
                let hook_run = storage
                    .get_run(step.hook_run_id.unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                hooks += Duration::from_secs_f64(hook_run.duration_s);
            }
            samples[variant].push(Sample { total, hooks });
        }
    }
    samples
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn report(backend: &str, records: usize, staged: &str, samples: &[Sample]) {
    let total = median(samples.iter().map(|s| s.total).collect());
    let hooks = median(samples.iter().map(|s| s.hooks).collect());
    let overhead = median(
        samples
            .iter()
            .map(|s| s.total.saturating_sub(s.hooks) / 3)
            .collect(),
    );
    println!(
        "| {backend:<8} | {records:>7} | {staged:<6} | {:>10.1} | {:>10.1} | {:>17.2} |",
        total.as_secs_f64() * 1e3,
        hooks.as_secs_f64() * 1e3,
        overhead.as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Optional filters (`-- postgres/1000`): run the scenarios whose `backend/records`
    // label contains one of them.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |backend: &str, records: usize| {
        let label = format!("{backend}/{records}");
        filters.is_empty() || filters.iter().any(|f| label.contains(f.as_str()))
    };
    println!("| backend  | records | staged | total (ms) | hooks (ms) | overhead/step (ms) |");
    println!("|----------|--------:|--------|-----------:|-----------:|-------------------:|");
    for records in [1, 1000] {
        if wanted("sqlite", records) {
            let dir = tempfile::tempdir().unwrap();
            let sqlite = SqliteBackend::open(dir.path().join("bench.db"))
                .await
                .unwrap();
            sqlite.migrate().await.unwrap();
            // SQLite never stages (one writer).
            let samples = measure(Arc::new(sqlite), dir.path(), records, &[true]).await;
            report("sqlite", records, "-", &samples[0]);
        }
        if !wanted("postgres", records) {
            continue;
        }

        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let pg = PgBackend::connect(
            PgConfig::new(url).with_schemas("bench_saga", "bench_saga_features"),
        )
        .await
        .unwrap();
        pg.drop_schemas().await.unwrap();
        pg.migrate().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let samples = measure(Arc::new(pg.clone()), dir.path(), records, &[true, false]).await;
        report("postgres", records, "yes", &samples[0]);
        report("postgres", records, "no", &samples[1]);
        pg.drop_schemas().await.unwrap();
    }
}

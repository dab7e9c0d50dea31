//! Orchestration overhead per step with blobs in the S3 test server against blobs in
//! a local directory, on Postgres, for records that carry a small file each.
//!
//! ```text
//! cargo bench --bench blob_overhead --features postgres,s3
//! ```
//!
//! The S3 side uses the S3-protocol test server that `scripts/s3-setup.sh` starts (or
//! finds on 127.0.0.1:9000; `OSA_S3_ENDPOINT` names another), bucket `osa-test`, a
//! prefix of its own. Each scenario (1 record, 100 records; one 1 KiB `.txt` file per
//! record; three no-op Python hooks) runs `ROUNDS` times per store, alternating round
//! by round, as in `saga_overhead`: total = submit until the run is terminal, hooks =
//! the sum of the hook runs' `duration_s`, overhead per step = (total − hooks) / 3
//! (submit = the part of total until `Engine::submit` returned). It
//! covers storing the record files and the hooks' outputs and logs in the store and
//! reading the files back into each step's batch directory. First, the latency of
//! one small put and one get on each store, one request at a time.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use osa::blob::Blobs;
use osa::deploy::Deployer;
use osa::id::{FileName, RecordId};
use osa::runner::ProcessRunner;
use osa::saga::{Engine, EngineConfig, Worker, WorkerConfig};
use osa::validation::{
    FileSource, InputFile, InputRecord, RunStatus, SubmitValidation, ValidationService,
};
use osa_core::testing::blobs::{S3_TEST_BUCKET, s3_test_options, s3_test_server};
use osa_sqlx::{PgBackend, PgConfig};
use serde_json::json;

const ROUNDS: usize = 7;
fn payload(script: &std::path::Path) -> Vec<u8> {
    let files = json!({"accepted_types": [".txt"], "max_count": 1, "max_file_size": 4096});
    serde_json::to_vec(&common::noop_convention("Blob Bench", script, files)).unwrap()
}

/// One store's engine, on schemas of its own.
struct Side {
    storage: Arc<PgBackend>,
    engine: Engine,
    slug: osa::id::ConventionSlug,
}

impl Side {
    async fn open(
        schema: &str,
        blobs: Blobs,
        dir: &std::path::Path,
        script: &std::path::Path,
    ) -> Side {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let pg = PgBackend::connect(
            PgConfig::new(url).with_schemas(schema, format!("{schema}_features")),
        )
        .await
        .unwrap();
        pg.drop_schemas().await.unwrap();
        pg.migrate().await.unwrap();
        let storage = Arc::new(pg);
        let engine = Engine::new(
            storage.clone(),
            Arc::new(ProcessRunner::new()),
            blobs.clone(),
            EngineConfig::new(dir.join(format!("work-{schema}"))),
        );
        let slug = Deployer::new(storage.clone(), blobs)
            .deploy(&payload(script), "bench")
            .await
            .unwrap()
            .applied
            .convention
            .slug;
        Side {
            storage,
            engine,
            slug,
        }
    }

    /// One run of `records` records with `file` each: (total, sum of hook durations).
    async fn run(
        &self,
        tag: &str,
        records: usize,
        file: &std::path::Path,
    ) -> (Duration, Duration, Duration) {
        let worker = Worker::new(self.engine.clone(), WorkerConfig::default());
        let input: Vec<InputRecord> = (0..records)
            .map(|i| InputRecord {
                id: RecordId::new(format!("{tag}-{i}")).unwrap(),
                metadata: json!({"i": i}),
                files: vec![InputFile {
                    name: FileName::new("data.txt").unwrap(),
                    source: FileSource::Local {
                        path: file.to_path_buf(),
                    },
                }],
            })
            .collect();
        let start = Instant::now();
        let run = self
            .engine
            .submit(SubmitValidation {
                convention: self.slug.clone(),
                records: input,
            })
            .await
            .unwrap();
        let submit = start.elapsed();
        assert_eq!(
            worker.run_until_finished(run).await.unwrap(),
            RunStatus::Completed
        );
        let total = start.elapsed();
        let view = self.engine.get(run).await.unwrap();
        let mut hooks = Duration::ZERO;
        for step in &view.steps {
            let hook_run = osa::registry::HookRegistry::get_run(
                self.storage.as_ref(),
                step.hook_run_id.unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
            hooks += Duration::from_secs_f64(hook_run.duration_s);
        }
        (total, hooks, submit)
    }
}

/// Requests of the request-latency probe.
const REQUESTS: usize = 100;

/// Median seconds of one 1 KiB `put` and of one `get_to_file`, issued one at a time
/// (as the engine stores record files at submit and fetches them for each step).
async fn requests(blobs: &Blobs, prefix: &str, dir: &std::path::Path) -> (f64, f64) {
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    for i in 0..REQUESTS {
        let key = osa::object_store::path::Path::from(format!("{prefix}-probe/{i}"));
        let start = Instant::now();
        blobs.put(&key, vec![b'x'; 1024]).await.unwrap();
        puts.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let file = dir.join(format!("probe-{i}"));
        blobs.get_to_file(&key, &file).await.unwrap();
        gets.push(start.elapsed().as_secs_f64());
        blobs.delete(&key).await.unwrap();
        std::fs::remove_file(&file).unwrap();
    }
    (median(puts), median(gets))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("noop.py");
    std::fs::write(&script, common::NOOP_HOOK).unwrap();
    let file = dir.path().join("data.txt");
    std::fs::write(&file, vec![b'x'; 1024]).unwrap();

    let endpoint = s3_test_server();
    let prefix = format!(
        "bench-blobs-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let s3 = Blobs::from_url(
        &format!("s3://{S3_TEST_BUCKET}/{prefix}"),
        s3_test_options(&endpoint),
    )
    .unwrap();
    let local = Blobs::local(dir.path().join("blobs")).unwrap();
    for (label, blobs) in [("local directory", &local), ("S3 test server", &s3)] {
        let (put, get) = requests(blobs, &prefix, dir.path()).await;
        println!(
            "{label}: one 1 KiB put {:.2} ms, one get into a file {:.2} ms (medians of {REQUESTS}, one at a time)",
            put * 1e3,
            get * 1e3
        );
    }
    let sides = [
        (
            "local directory",
            Side::open("bench_blob_local", local, dir.path(), &script).await,
        ),
        (
            "S3 test server",
            Side::open("bench_blob_s3", s3, dir.path(), &script).await,
        ),
    ];

    println!("load average {} before", load_average());
    println!(
        "| blobs           | records | total (ms) | submit (ms) | hooks (ms) | overhead/step (ms) | range       |"
    );
    println!(
        "|-----------------|--------:|-----------:|------------:|-----------:|-------------------:|-------------|"
    );
    for records in [1, 100] {
        let mut samples: Vec<Vec<(f64, f64, f64, f64)>> = vec![Vec::new(), Vec::new()];
        // Round 0 is a warm-up, not counted.
        for round in 0..=ROUNDS {
            for (i, (_, side)) in sides.iter().enumerate() {
                let (total, hooks, submit) = side
                    .run(&format!("r{records}-{round}"), records, &file)
                    .await;
                if round > 0 {
                    let overhead = total.saturating_sub(hooks).as_secs_f64() / 3.0;
                    samples[i].push((
                        total.as_secs_f64(),
                        hooks.as_secs_f64(),
                        overhead,
                        submit.as_secs_f64(),
                    ));
                }
            }
        }
        for ((label, _), samples) in sides.iter().zip(&samples) {
            let overheads: Vec<f64> = samples.iter().map(|s| s.2).collect();
            let low = overheads.iter().copied().fold(f64::INFINITY, f64::min);
            let high = overheads.iter().copied().fold(0.0, f64::max);
            println!(
                "| {label:<15} | {records:>7} | {:>10.1} | {:>11.1} | {:>10.1} | {:>18.2} | {:>5.1}–{:<5.1} |",
                median(samples.iter().map(|s| s.0).collect()) * 1e3,
                median(samples.iter().map(|s| s.3).collect()) * 1e3,
                median(samples.iter().map(|s| s.1).collect()) * 1e3,
                median(overheads) * 1e3,
                low * 1e3,
                high * 1e3,
            );
        }
    }
    println!("load average {} after", load_average());
    for (_, side) in &sides {
        side.storage.drop_schemas().await.unwrap();
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

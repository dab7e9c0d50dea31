//! Memory and throughput of one large validation run: peak resident memory of the
//! process running the engine, and records per second, for runs of growing size with
//! two trivial hooks, on SQLite and Postgres.
//!
//! ```text
//! cargo bench --bench run_memory --features sqlite,postgres
//! cargo bench --bench run_memory --features sqlite,postgres -- sqlite/100000
//! ```
//!
//! Every run is measured in a process of its own (this bench's executable started
//! again with `OSA_RUN_MEMORY_CHILD=<backend>/<records>`), so each peak (`VmHWM` of
//! `/proc/self/status`) belongs to one run alone. That process submits `records`
//! records of `{"i": n}` metadata, no files, through `Engine::submit_stream` (made as
//! the submit takes them) and runs the run to the end with a `Worker` of
//! `WorkerConfig::default()` and a local blob directory. Reported: the resident memory
//! before the submission (the process's floor: runtime, pools, code), the peak over
//! the whole run, the run's time from submit to end, and records/s over that time.
//! The hooks run as child processes (Python), so their own memory is not in the
//! figure. Sizes default to 100,000 and 1,000,000; `OSA_RUN_MEMORY_SIZES=10000,100000`
//! chooses others, and `OSA_RUN_MEMORY_BATCH=n` sets `batch_limits.max_records` (how
//! many records a hook gets at once; default 25,000). The executable allocates with
//! mimalloc, as osa-server and the wheel do.

mod common;

use std::sync::Arc;
use std::time::Instant;

use osa::Storage;
use osa::blob::Blobs;
use osa::deploy::Deployer;
use osa::id::RecordId;
use osa::runner::ProcessRunner;
use osa::saga::{Engine, EngineConfig, Worker, WorkerConfig};
use osa::validation::{InputRecord, RunStatus};
use osa_sqlx::{PgBackend, PgConfig, SqliteBackend};
use serde_json::json;

/// The allocator of the osa-server program, so the peaks are what it would show.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The environment variable that makes this executable measure one run.
const CHILD: &str = "OSA_RUN_MEMORY_CHILD";

/// One run's figures, as the child prints them (one line, `key=value` pairs).
#[derive(Debug)]
struct Figures {
    floor_kib: u64,
    peak_kib: u64,
    seconds: f64,
}

/// A field of `/proc/self/status` in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

async fn run_once<S: Storage>(storage: Arc<S>, dir: &std::path::Path, records: usize) -> Figures {
    let script = dir.join("noop.py");
    std::fs::write(&script, common::NOOP_HOOK).unwrap();
    let blobs = Blobs::local(dir.join("blobs")).unwrap();
    let mut config = EngineConfig::new(dir.join("work"));
    config.max_records = records;
    if let Ok(batch) = std::env::var("OSA_RUN_MEMORY_BATCH") {
        config.batch_limits.max_records = batch.parse().expect("a batch size");
    }
    let engine = Engine::new(
        storage.clone(),
        Arc::new(ProcessRunner::new()),
        blobs.clone(),
        config,
    );
    let convention = common::noop_convention_of(
        "Memory Bench",
        &script,
        common::no_files(),
        &["noop_a", "noop_b"],
    );
    let slug = Deployer::new(storage.clone(), blobs)
        .deploy(&serde_json::to_vec(&convention).unwrap(), "bench")
        .await
        .unwrap()
        .applied
        .convention
        .slug;
    let worker = Worker::new(engine.clone(), WorkerConfig::default());
    let floor_kib = status_kib("VmRSS");
    // The records are made as the submit takes them, as a reader of a JSON-lines file
    // or an upstream source would hand them over.
    let input = futures::stream::iter((0..records).map(|i| {
        Ok(InputRecord {
            id: RecordId::new(format!("r{i}")).unwrap(),
            metadata: json!({"i": i}),
            files: vec![],
        })
    }));
    let start = Instant::now();
    let run = engine.submit_stream(slug, input).await.unwrap();
    let status = worker.run_until_finished(run).await.unwrap();
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(status, RunStatus::Completed, "the run completes");
    Figures {
        floor_kib,
        peak_kib: status_kib("VmHWM"),
        seconds,
    }
}

/// Measures one run in this process (the child's side).
async fn child(label: &str) {
    let (backend, records) = label.split_once('/').expect("<backend>/<records>");
    let records: usize = records.parse().expect("a record count");
    let dir = tempfile::tempdir().unwrap();
    let figures = match backend {
        "sqlite" => {
            let sqlite = SqliteBackend::open(dir.path().join("bench.db"))
                .await
                .unwrap();
            sqlite.migrate().await.unwrap();
            run_once(Arc::new(sqlite), dir.path(), records).await
        }
        "postgres" => {
            let pg = PgBackend::connect(
                PgConfig::new(common::database_url())
                    .with_schemas("bench_memory", "bench_memory_features"),
            )
            .await
            .unwrap();
            pg.drop_schemas().await.unwrap();
            pg.migrate().await.unwrap();
            let figures = run_once(Arc::new(pg.clone()), dir.path(), records).await;
            pg.drop_schemas().await.unwrap();
            figures
        }
        other => panic!("unknown backend {other}"),
    };
    println!(
        "floor_kib={} peak_kib={} seconds={}",
        figures.floor_kib, figures.peak_kib, figures.seconds
    );
}

/// Starts this executable to measure one run and reads its figures.
fn measure(label: &str) -> Figures {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD, label)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("starting the measuring process");
    assert!(output.status.success(), "the run {label} failed");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("floor_kib="))
        .unwrap_or_else(|| panic!("no figures from {label}: {stdout}"));
    let field = |name: &str| -> &str {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in `{line}`"))
    };
    Figures {
        floor_kib: field("floor_kib").parse().unwrap(),
        peak_kib: field("peak_kib").parse().unwrap(),
        seconds: field("seconds").parse().unwrap(),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Ok(label) = std::env::var(CHILD) {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(child(&label));
        return;
    }
    let sizes: Vec<usize> = std::env::var("OSA_RUN_MEMORY_SIZES")
        .map(|s| s.split(',').map(|n| n.trim().parse().unwrap()).collect())
        .unwrap_or_else(|_| vec![100_000, 1_000_000]);
    // Optional filters (`-- sqlite/100000`): the runs whose label contains one.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    println!("load average: {}", common::load_average());
    if let Ok(batch) = std::env::var("OSA_RUN_MEMORY_BATCH") {
        println!("batch_limits.max_records: {batch}");
    }
    println!(
        "| backend  | records   | floor (MiB) | peak RSS (MiB) | above floor (MiB) | run (s) | records/s |"
    );
    println!(
        "|----------|----------:|------------:|---------------:|------------------:|--------:|----------:|"
    );
    for backend in ["sqlite", "postgres"] {
        for &records in &sizes {
            let label = format!("{backend}/{records}");
            if !filters.is_empty() && !filters.iter().any(|f| label.contains(f.as_str())) {
                continue;
            }
            let f = measure(&label);
            println!(
                "| {backend:<8} | {records:>9} | {:>11.1} | {:>14.1} | {:>17.1} | {:>7.1} | {:>9.0} |",
                f.floor_kib as f64 / 1024.0,
                f.peak_kib as f64 / 1024.0,
                f.peak_kib.saturating_sub(f.floor_kib) as f64 / 1024.0,
                f.seconds,
                records as f64 / f.seconds,
            );
        }
    }
}

//! Throughput of a 1,000-record validation through `osa-server` (the API in one
//! process, two worker processes) against the same batch through the engine in the
//! bench's own process (two `Worker` tasks), both on Postgres.
//!
//! ```text
//! cargo build --release -p osa-server
//! cargo bench --bench server_throughput --features postgres
//! ```
//!
//! The release binary must be in the same target directory (or named by
//! `OSA_SERVER_BIN`). Each round submits 1,000 fresh records to a convention of three
//! no-op Python process hooks, once over HTTP (`POST /validations` to
//! `osa-server serve --no-worker`, two `osa-server worker` processes) and once through
//! `Engine::submit` with two in-process workers, alternating which goes first. The time
//! of a run is from just before its submit to its last change (`updated_at`, written by
//! the finalize), split into the time until the first hook started, the hooks' own
//! time (the sum of their `duration_s`) and the rest (between hooks, the finalize).
//! Medians over `ROUNDS`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use osa::HookRegistry;
use osa::blob::Blobs;
use osa::deploy::Deployer;
use osa::id::{RecordId, ValidationRunId};
use osa::runner::ProcessRunner;
use osa::saga::{Engine, EngineConfig, Worker, WorkerConfig};
use osa::validation::{InputRecord, RunStatus, SubmitValidation, ValidationService};
use osa_sqlx::{PgBackend, PgConfig};
use serde_json::{Value, json};

use common::{Process, median};

const ROUNDS: usize = 5;
const RECORDS: usize = 1000;
/// How often each side looks for the end of a run. The time of a run is read from the
/// run itself, so this only bounds how much the looking costs (a view of a run lists
/// its 1,000 records).
const POLL: Duration = Duration::from_millis(100);
/// The convention: three no-op hooks running `script`.
fn convention(script: &std::path::Path) -> Value {
    common::noop_convention("Throughput Bench", script, common::no_files())
}

fn records(tag: &str) -> Vec<Value> {
    (0..RECORDS)
        .map(|i| json!({"id": format!("{tag}-{i}"), "metadata": {"i": i}, "files": []}))
        .collect()
}

/// Seconds from `start` to `end`.
fn since(start: SystemTime, end: DateTime<Utc>) -> f64 {
    let start: DateTime<Utc> = start.into();
    (end - start).as_seconds_f64()
}

/// One timed run, in seconds: until the run's last change, the submit's own latency,
/// until the first hook started, and the sum of the hooks' durations.
#[derive(Debug, Clone, Copy)]
struct Sample {
    total: f64,
    submit: f64,
    first: f64,
    hooks: f64,
}

impl Sample {
    /// From the run's end and its hook runs' (start, duration in seconds), in step
    /// order.
    fn new(
        start: SystemTime,
        submit: f64,
        end: DateTime<Utc>,
        runs: &[(DateTime<Utc>, f64)],
    ) -> Self {
        Sample {
            total: since(start, end),
            submit,
            first: since(start, runs[0].0),
            hooks: runs.iter().map(|r| r.1).sum(),
        }
    }
}

/// The served archive: API, two workers, an admin token.
struct Served {
    _processes: Vec<Process>,
    base: String,
    token: String,
    slug: String,
    agent: ureq::Agent,
}

impl Served {
    fn start(dir: &std::path::Path, schema: &str, script: &std::path::Path) -> Served {
        let env = common::postgres_env(schema);
        let (api, base) = common::serve(dir, &["--no-worker"], &env);
        let mut processes = vec![api];
        for i in 0..2 {
            let mut env = env.clone();
            env.push((
                "OSA_WORKER__WORK_DIR".into(),
                dir.join(format!("work-{i}")).display().to_string(),
            ));
            let (worker, _) = Process::spawn(dir, &["worker"], &env, "worker   ");
            processes.push(worker);
        }
        let token = common::admin_token(dir, &env);
        let agent = common::agent();
        let slug = common::deploy(&agent, &base, &token, &convention(script));
        Served {
            _processes: processes,
            base,
            token,
            slug,
            agent,
        }
    }

    fn run(&self, tag: &str) -> Sample {
        let body = json!({"convention": self.slug, "records": records(tag)});
        let start = SystemTime::now();
        let clock = Instant::now();
        let (status, reply) = common::call(
            &self.agent,
            &format!("{}/validations", self.base),
            &self.token,
            Some(&body),
        );
        let submit = clock.elapsed().as_secs_f64();
        assert_eq!(status, 202, "{reply}");
        let id = reply["id"].as_str().expect("run id").to_string();
        loop {
            let (status, view) = common::call(
                &self.agent,
                &format!("{}/validations/{id}", self.base),
                &self.token,
                None,
            );
            assert_eq!(status, 200, "{view}");
            match view["run"]["status"].as_str() {
                Some("completed") => {
                    let time = |v: &Value| -> DateTime<Utc> {
                        v.as_str().and_then(|t| t.parse().ok()).expect("a time")
                    };
                    let runs: Vec<(DateTime<Utc>, f64)> = view["steps"]
                        .as_array()
                        .expect("steps")
                        .iter()
                        .map(|step| {
                            let id = step["hook_run_id"].as_str().expect("a hook run");
                            let (status, run) = common::call(
                                &self.agent,
                                &format!("{}/hooks/runs/{id}", self.base),
                                &self.token,
                                None,
                            );
                            assert_eq!(status, 200, "{run}");
                            (
                                time(&run["started_at"]),
                                run["duration_s"].as_f64().unwrap(),
                            )
                        })
                        .collect();
                    return Sample::new(start, submit, time(&view["run"]["updated_at"]), &runs);
                }
                Some("failed" | "cancelled") => panic!("the run did not complete: {view}"),
                _ => std::thread::sleep(POLL),
            }
        }
    }
}

/// The engine in this process with two worker tasks.
struct InProcess {
    storage: Arc<PgBackend>,
    engine: Engine,
    slug: osa::id::ConventionSlug,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    async fn start(
        storage: Arc<PgBackend>,
        dir: &std::path::Path,
        script: &std::path::Path,
    ) -> Self {
        let blobs = Blobs::local(dir.join("blobs")).unwrap();
        let engine = Engine::new(
            storage.clone(),
            Arc::new(ProcessRunner::new()),
            blobs.clone(),
            EngineConfig::new(dir.join("work")),
        );
        let payload = serde_json::to_vec(&convention(script)).unwrap();
        let slug = Deployer::new(storage.clone(), blobs)
            .deploy(&payload, "bench")
            .await
            .unwrap()
            .applied
            .convention
            .slug;
        let workers = (0..2)
            .map(|_| {
                let worker = Worker::new(engine.clone(), WorkerConfig::default());
                tokio::spawn(async move {
                    worker.run(std::future::pending()).await.unwrap();
                })
            })
            .collect();
        InProcess {
            storage,
            engine,
            slug,
            workers,
        }
    }

    async fn run(&self, tag: &str) -> Sample {
        let input: Vec<InputRecord> = (0..RECORDS)
            .map(|i| InputRecord {
                id: RecordId::new(format!("{tag}-{i}")).unwrap(),
                metadata: json!({"i": i}),
                files: vec![],
            })
            .collect();
        let start = SystemTime::now();
        let clock = Instant::now();
        let run: ValidationRunId = self
            .engine
            .submit(SubmitValidation {
                convention: self.slug.clone(),
                records: input,
            })
            .await
            .unwrap();
        let submit = clock.elapsed().as_secs_f64();
        loop {
            let view = self.engine.get(run).await.unwrap();
            match view.run.status {
                RunStatus::Completed => {
                    let mut runs = Vec::new();
                    for step in &view.steps {
                        let run = self
                            .storage
                            .get_run(step.hook_run_id.unwrap())
                            .await
                            .unwrap()
                            .unwrap();
                        runs.push((run.started_at, run.duration_s));
                    }
                    return Sample::new(start, submit, view.run.updated_at, &runs);
                }
                RunStatus::Failed | RunStatus::Cancelled => {
                    panic!("the run did not complete: {:?}", view.run)
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }
}

async fn fresh_schemas(schema: &str) -> PgBackend {
    let pg = PgBackend::connect(
        PgConfig::new(common::database_url()).with_schemas(schema, format!("{schema}_features")),
    )
    .await
    .unwrap();
    pg.drop_schemas().await.unwrap();
    pg
}

fn report(label: &str, samples: &[Sample], baseline: f64) -> f64 {
    let pick = |f: fn(&Sample) -> f64| median(&mut samples.iter().map(f).collect::<Vec<_>>());
    let total = pick(|s| s.total);
    let rate = RECORDS as f64 / total;
    let ratio = if baseline > 0.0 { rate / baseline } else { 1.0 };
    println!(
        "| {label:<40} | {:>10.1} | {:>11.1} | {:>17.1} | {:>10.1} | {:>9.1} | {rate:>9.0} | {ratio:>5.2} |",
        total * 1e3,
        pick(|s| s.submit) * 1e3,
        pick(|s| s.first) * 1e3,
        pick(|s| s.hooks) * 1e3,
        pick(|s| s.total - s.first - s.hooks) * 1e3,
    );
    rate
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("noop.py");
    std::fs::write(&script, common::NOOP_HOOK).unwrap();

    let http_schemas = fresh_schemas("bench_tp_http").await;
    let local = fresh_schemas("bench_tp_local").await;
    local.migrate().await.unwrap();

    let served = {
        let (dir, script) = (dir.path().to_path_buf(), script.clone());
        tokio::task::spawn_blocking(move || Served::start(&dir, "bench_tp_http", &script))
            .await
            .unwrap()
    };
    let served = Arc::new(served);
    let in_process =
        InProcess::start(Arc::new(local.clone()), &dir.path().join("local"), &script).await;

    let load_before = common::load_average();
    // One untimed run each: caches, connections, Python's bytecode.
    let mut http = Vec::new();
    let mut engine = Vec::new();
    for round in 0..=ROUNDS {
        let http_first = round % 2 == 0;
        for side in [http_first, !http_first] {
            let tag = format!("r{round}");
            if side {
                let served = served.clone();
                let sample =
                    tokio::task::spawn_blocking(move || served.run(&format!("{tag}-http")))
                        .await
                        .unwrap();
                if round > 0 {
                    http.push(sample);
                }
            } else {
                let sample = in_process.run(&format!("{tag}-engine")).await;
                if round > 0 {
                    engine.push(sample);
                }
            }
        }
    }
    println!(
        "{RECORDS} records × 3 no-op hooks, {ROUNDS} rounds; load average {load_before} before, {} after",
        common::load_average()
    );
    println!(
        "| path                                     | total (ms) | submit (ms) | to 1st hook (ms) | hooks (ms) | rest (ms) | records/s | ratio |"
    );
    println!(
        "|------------------------------------------|-----------:|------------:|-----------------:|-----------:|----------:|----------:|------:|"
    );
    let baseline = report("in-process engine, 2 worker tasks", &engine, 0.0);
    report("osa-server over HTTP, 2 worker processes", &http, baseline);

    for worker in &in_process.workers {
        worker.abort();
    }
    drop(served);
    http_schemas.drop_schemas().await.unwrap();
    local.drop_schemas().await.unwrap();
}

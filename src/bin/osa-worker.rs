//! `osa-worker`: runs validation jobs against an OSA database, as its own process.
//!
//! ```text
//! osa-worker --sqlite archive.db --blobs ./blobs --work-dir ./work [--concurrency 2]
//! osa-worker --postgres postgres://... [--schema osa] --blobs ./blobs --work-dir ./work
//! ```
//!
//! Hooks run with the process runner (inside bubblewrap with `--sandbox bwrap`). The
//! worker stops gracefully on SIGINT or SIGTERM: it stops claiming and finishes the
//! jobs in flight. It logs what it does to stderr; `OSA_LOG` sets the level (`error`,
//! `warn`, `info` (default), `debug`, `trace`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use osa::runner::{ProcessRunner, Sandbox};
use osa::saga::{Engine, EngineConfig, Worker, WorkerConfig};

const USAGE: &str = "usage: osa-worker (--sqlite PATH | --postgres URL [--schema NAME]) --blobs DIR --work-dir DIR \
                     [--concurrency N] [--lease-seconds N] [--sandbox none|bwrap]";

struct Args {
    sqlite: Option<String>,
    postgres: Option<String>,
    schema: String,
    blobs: String,
    work_dir: String,
    concurrency: usize,
    lease: Duration,
    sandbox: Sandbox,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sqlite: None,
        postgres: None,
        schema: "osa".into(),
        blobs: String::new(),
        work_dir: String::new(),
        concurrency: 2,
        lease: Duration::from_secs(60),
        sandbox: Sandbox::None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sqlite" => args.sqlite = Some(value()?),
            "--postgres" => args.postgres = Some(value()?),
            "--schema" => args.schema = value()?,
            "--blobs" => args.blobs = value()?,
            "--work-dir" => args.work_dir = value()?,
            "--concurrency" => {
                args.concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--lease-seconds" => {
                args.lease = Duration::from_secs_f64(
                    value()?
                        .parse()
                        .map_err(|e| format!("--lease-seconds: {e}"))?,
                )
            }
            "--sandbox" => {
                args.sandbox = match value()?.as_str() {
                    "none" => Sandbox::None,
                    "bwrap" => Sandbox::Bwrap,
                    other => return Err(format!("--sandbox: unknown mode {other:?}")),
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.sqlite.is_some() == args.postgres.is_some()
        || args.blobs.is_empty()
        || args.work_dir.is_empty()
    {
        return Err(USAGE.into());
    }
    Ok(args)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn run(args: Args) -> osa::Result<()> {
    let blobs = osa::blob::Blobs::local(&args.blobs)?;
    let runner = Arc::new(ProcessRunner::with_sandbox(args.sandbox));
    let config = EngineConfig::new(&args.work_dir);
    let worker_config = WorkerConfig {
        concurrency: args.concurrency.max(1),
        lease: args.lease,
        heartbeat: args.lease / 3,
        ..WorkerConfig::default()
    };
    let engine = if let Some(path) = &args.sqlite {
        let backend = osa::sqlx_backends::SqliteBackend::open(path).await?;
        backend.migrate().await?;
        Engine::new(Arc::new(backend), runner, blobs, config)
    } else {
        postgres_engine(&args, runner, blobs, config).await?
    };
    eprintln!(
        "osa-worker: running ({} at a time); stop with SIGINT or SIGTERM",
        worker_config.concurrency
    );
    Worker::new(engine, worker_config)
        .run(shutdown_signal())
        .await?;
    eprintln!("osa-worker: stopped");
    Ok(())
}

#[cfg(feature = "postgres")]
async fn postgres_engine(
    args: &Args,
    runner: Arc<ProcessRunner>,
    blobs: osa::blob::Blobs,
    config: EngineConfig,
) -> osa::Result<Engine> {
    use osa::sqlx_backends::{PgBackend, PgConfig};
    let url = args.postgres.clone().unwrap_or_default();
    let pg =
        PgConfig::new(url).with_schemas(args.schema.clone(), format!("{}_features", args.schema));
    let backend = PgBackend::connect(pg).await?;
    backend.migrate().await?;
    Ok(Engine::new(Arc::new(backend), runner, blobs, config))
}

#[cfg(not(feature = "postgres"))]
async fn postgres_engine(
    _: &Args,
    _: Arc<ProcessRunner>,
    _: osa::blob::Blobs,
    _: EngineConfig,
) -> osa::Result<Engine> {
    Err(osa::Error::invalid(
        "--postgres",
        "this build has no Postgres support (feature `postgres`)",
    ))
}

#[tokio::main]
async fn main() -> ExitCode {
    let level = match std::env::var("OSA_LOG") {
        Err(_) => tracing_subscriber::filter::LevelFilter::INFO,
        Ok(level) => match level.parse() {
            Ok(level) => level,
            Err(_) => {
                eprintln!("OSA_LOG: unknown level {level:?} (error, warn, info, debug, trace)");
                return ExitCode::from(2);
            }
        },
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("osa-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

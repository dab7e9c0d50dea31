//! `osa-server`: one program that runs an OSA archive, on a laptop with no
//! configuration or across several hosts with one config file.
//!
//! ```text
//! osa-server serve                      # ./osa-archive: SQLite, local blobs, processes
//! osa-server --config osa.toml serve --no-worker
//! osa-server --config osa.toml worker   # as many as you like, on any host
//! osa-server --config osa.toml migrate
//! osa-server token --role curator --ttl 30d
//! ```
//!
//! Configuration: a TOML file (see `osa-server.toml` beside this package) and
//! `OSA_<SECTION>__<KEY>` environment variables. A setting that cannot work stops the
//! program before it creates anything, with one line naming the setting, exit code 2.
//!
//! The program is this library's [`main_with_args`]: the `osa-server` binary calls it,
//! and so does OSA's Python wheel (`osa-server` and `python -m osa.server` there, what
//! `osa start` runs), so both are the same server.

mod config;
mod dashboard;
mod node;
mod ops;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use osa::auth::{Role, Scope};

use config::{Config, ConfigError, LogFormat};
use node::{Node, OpenError, SecretSource, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "osa-server",
    version,
    about = "Runs an OSA archive: API, workers, migrations, tokens"
)]
struct Cli {
    /// TOML configuration file (without one: defaults and `OSA_*` variables).
    #[arg(long, short = 'c', env = "OSA_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (with a worker in the same process unless --no-worker).
    Serve {
        /// Run no worker here: jobs are left to `osa-server worker` processes.
        #[arg(long)]
        no_worker: bool,
        /// Listen here instead of `server.bind`.
        #[arg(long)]
        bind: Option<String>,
    },
    /// Run validation jobs until SIGINT or SIGTERM (any number, on any host).
    Worker {
        /// Jobs at once instead of `worker.concurrency`.
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Create or upgrade the database's tables, then exit.
    Migrate,
    /// Mint a node token for a person (roles) or a machine (scopes); printed on stdout.
    Token {
        /// `sub` of the token (what audit rows record).
        #[arg(long, default_value = "admin")]
        subject: String,
        /// A role: public, depositor, curator, admin, superadmin (repeatable).
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<Role>,
        /// A scope: conventions:write, hooks:write, validations:write,
        /// deployments:read, runs:read (repeatable).
        #[arg(long = "scope", value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Lifetime: `3600`, `90m`, `12h`, `30d`.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse().map_err(|e: osa::Error| e.to_string())
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse().map_err(|e: osa::Error| e.to_string())
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    if let Ok(seconds) = s.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (try 3600, 90m or 12h)"))
}

/// How `main` ends.
enum Failure {
    /// Exit 2.
    Config(ConfigError),
    /// Exit 1.
    Runtime(String),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

impl From<OpenError> for Failure {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Config(e) => Failure::Config(e),
            OpenError::Runtime(e) => Failure::Runtime(e.to_string()),
        }
    }
}

impl From<osa::Error> for Failure {
    fn from(e: osa::Error) -> Self {
        Failure::Runtime(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Runtime(e.to_string())
    }
}

/// Runs `osa-server` with `args` (the program name first, as `std::env::args_os`
/// gives them); returns the exit code: 0, 1 (a failure at run time) or 2 (a setting
/// that cannot work). `--help`, `--version` and usage errors print and exit the process,
/// as a command line does.
pub fn main_with_args<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Failure::from)
        .and_then(|runtime| runtime.block_on(run(cli)));
    match outcome {
        Ok(()) => 0,
        Err(Failure::Config(e)) => {
            eprintln!("osa-server: {e}");
            2
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("osa-server: {e}");
            1
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let mut config = Config::load(cli.config.as_deref())?;
    match &cli.command {
        Command::Serve {
            bind: Some(bind), ..
        } => config.server.bind = bind.clone(),
        Command::Worker {
            concurrency: Some(n),
        } => config.worker.concurrency = *n,
        _ => {}
    }
    init_logging(&config)?;
    let settings = Settings::resolve(config)?;
    match cli.command {
        Command::Serve { no_worker, .. } => serve(settings, !no_worker).await,
        Command::Worker { .. } => worker(settings).await,
        Command::Migrate => migrate(settings).await,
        Command::Token {
            subject,
            roles,
            scopes,
            ttl,
        } => token(settings, &subject, &roles, &scopes, ttl),
    }
}

fn init_logging(config: &Config) -> Result<(), ConfigError> {
    use tracing_subscriber::EnvFilter;

    let (setting, directives) = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => ("RUST_LOG", value),
        _ => ("log.filter", config.log.filter.clone()),
    };
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| ConfigError::new(setting, format!("{directives:?}: {e}")))?;
    // Colours only for a person at a terminal that has not asked for none.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(filter);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Stops a serve or worker that has no secret to check tokens with before it touches
/// anything.
fn require_secret(settings: &Settings) -> Result<(), ConfigError> {
    if matches!(settings.secret, SecretSource::Missing) {
        return settings.authenticator().map(|_| ());
    }
    Ok(())
}

async fn serve(settings: Settings, with_worker: bool) -> Result<(), Failure> {
    require_secret(&settings)?;
    let bind = settings.config.server.bind.clone();
    let address = {
        use std::net::ToSocketAddrs;
        bind.to_socket_addrs()
            .map_err(|e| ConfigError::new("server.bind", format!("{bind:?}: {e}")))?
            .next()
            .ok_or_else(|| ConfigError::new("server.bind", format!("{bind:?}: no address")))?
    };
    let metrics = ops::install_metrics().map_err(Failure::Runtime)?;
    let node = Node::open(settings).await?;
    let auth = node.settings.authenticator()?;
    keep_key_sets_fresh(&node.settings, &auth).await;
    let state = node.api_state(auth.clone())?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| ConfigError::new("server.bind", format!("{bind}: {e}")))?;
    describe(&node);
    // A deploy takes seconds: one still open after ten minutes was left by a process
    // that stopped mid-deploy, and is closed as failed.
    let abandoned = node
        .deployer
        .close_abandoned(Duration::from_secs(600))
        .await?;
    if abandoned > 0 {
        println!("closed {abandoned} deployment(s) an earlier process left open");
    }
    if node.settings.secret_is_the_archives() {
        println!(
            "admin token (1 h): {}",
            auth.issue("admin", &[Role::Admin], 3600)?
        );
    } else {
        println!("tokens: osa-server token --role ROLE (or --scope SCOPE)");
    }
    let local = listener.local_addr()?;
    let prefix = node.settings.config.server.api_prefix.trim_end_matches('/');
    println!("serving  http://{local}{prefix} (OpenAPI at {prefix}/openapi.json)");
    println!("page     http://{local}/dashboard");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker_task = with_worker.then(|| {
        let worker = node.worker();
        println!("worker   in this process");
        tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        })
    });
    let app = osa::http::router_at(prefix, state.clone())
        .merge(ops::routes(metrics, node.backend.clone()))
        .merge(dashboard::routes(prefix))
        .fallback(osa::http::not_found);
    let app = ops::layered(app, &node.settings.config.server)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Open event streams end, so the shutdown does not wait for their clients.
            state.close_streams();
        })
        .await?;
    // The worker finishes the step in flight, then stops.
    let _ = stop.send(());
    if let Some(task) = worker_task {
        task.await
            .map_err(|e| Failure::Runtime(format!("the worker panicked: {e}")))??;
    }
    println!("stopped");
    Ok(())
}

/// How often the key sets of machine issuers with a `jwks_url` are checked; each is
/// fetched again only once its cache has expired (`Cache-Control: max-age`, 1 min to
/// 24 h, 10 min without one).
const KEY_SET_CHECK: Duration = Duration::from_secs(30);

/// Fetches the key sets of machine issuers with a `jwks_url`, then keeps them fresh
/// in the background. An issuer that cannot be reached now is not a configuration
/// error: it is logged, its tokens are refused, and it is tried again.
async fn keep_key_sets_fresh(settings: &Settings, auth: &osa::auth::Authenticator) {
    let with_key_sets = settings
        .machine_issuers
        .iter()
        .filter(|issuer| issuer.jwks_url().is_some())
        .count();
    if with_key_sets == 0 {
        return;
    }
    if let Err(e) = auth.refresh_keys().await {
        tracing::warn!(error = %e, "machine issuers without keys for now; their tokens are refused until a fetch succeeds");
    }
    let auth = auth.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(KEY_SET_CHECK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            // Failures are logged by the authenticator.
            let _ = auth.refresh_keys().await;
        }
    });
}

async fn worker(settings: Settings) -> Result<(), Failure> {
    let metrics = ops::install_metrics().map_err(Failure::Runtime)?;
    let node = Node::open(settings).await?;
    // Operations endpoints of this worker, when asked for.
    let (stop_ops, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    let ops_task = match &node.settings.config.worker.metrics_bind {
        Some(bind) => {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|e| ConfigError::new("worker.metrics_bind", format!("{bind}: {e}")))?;
            println!("metrics  http://{}/metrics", listener.local_addr()?);
            let app = ops::routes(metrics, node.backend.clone());
            Some(tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = ops_stopped.await;
                    })
                    .await
            }))
        }
        None => None,
    };
    describe(&node);
    let concurrency = node.settings.config.worker.concurrency;
    println!("worker   {concurrency} job(s) at a time; stop with SIGINT or SIGTERM");
    node.worker().run(shutdown_signal()).await?;
    let _ = stop_ops.send(());
    if let Some(task) = ops_task {
        let _ = task.await;
    }
    println!("stopped");
    Ok(())
}

async fn migrate(settings: Settings) -> Result<(), Failure> {
    let backend = node::Backend::connect(&settings.storage).await?;
    backend.migrate().await?;
    println!("migrated {}", settings.storage.describe());
    Ok(())
}

fn token(
    settings: Settings,
    subject: &str,
    roles: &[Role],
    scopes: &[Scope],
    ttl: Duration,
) -> Result<(), Failure> {
    if roles.is_empty() && scopes.is_empty() {
        return Err(ConfigError::new("token", "give at least one --role or --scope").into());
    }
    let ttl = i64::try_from(ttl.as_secs())
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| ConfigError::new("--ttl", "must be at least one second"))?;
    let auth = settings.authenticator()?;
    println!("{}", auth.issue_scoped(subject, roles, scopes, ttl)?);
    Ok(())
}

/// What this process runs on, for the person who started it.
fn describe(node: &Node) {
    let settings = &node.settings;
    println!("archive  {}", settings.archive_dir.display());
    println!("storage  {}", settings.storage.describe());
    println!("blobs    {}", settings.blobs_url);
    println!("runners  {}", node.runtime_types.join(", "));
}

/// Resolves on Ctrl-C or SIGTERM (what service managers and container runtimes send).
async fn shutdown_signal() {
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    println!("shutting down");
}

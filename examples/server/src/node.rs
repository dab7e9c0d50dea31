//! From a checked configuration to a running node: storage, blobs, runners, engine,
//! deployer and authenticator.
//!
//! [`Settings::resolve`] checks everything that can be checked without side effects;
//! [`Node::open`] then reaches the database and the container engine before it creates
//! anything local, so a configuration that cannot work leaves nothing behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use osa::auth::{Authenticator, MachineIssuer, NodeIssuer, SignatureAlgorithm};
use osa::blob::Blobs;
use osa::deploy::Deployer;
use osa::http::ApiState;
use osa::local::{BLOBS_DIR, DATABASE_FILE, WORK_DIR};
use osa::runner::oci::{OciRunner, PullPolicy, RegistryCredentials};
use osa::runner::{DispatchRunner, HookRunner, ProcessRunner, Sandbox};
use osa::saga::{Engine, EngineConfig, Worker, WorkerConfig};
use osa::sqlx_backends::{PgBackend, PgConfig, SqliteBackend, redacted_url};

use crate::config::{Config, ConfigError, MachineIssuerSection, PullMode, SandboxMode};

/// File of the node secret inside the archive directory, when no secret is given.
pub const SECRET_FILE: &str = "node-secret";

/// Where the database is.
#[derive(Debug, Clone)]
pub enum StorageTarget {
    /// An SQLite file (absolute).
    Sqlite(PathBuf),
    /// A Postgres database.
    Postgres(PgConfig),
}

impl StorageTarget {
    /// For people: the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StorageTarget::Sqlite(path) => format!("sqlite://{}", path.display()),
            StorageTarget::Postgres(config) => redacted_url(&config.url),
        }
    }
}

/// Where the node secret comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// Given in the configuration (or read from `auth.secret_file`).
    Given(Vec<u8>),
    /// The archive's own file, created on first start.
    Archive(PathBuf),
    /// None: fine for a worker, an error for what checks tokens.
    Missing,
}

/// A configuration checked without side effects.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    /// The archive directory (absolute).
    pub archive_dir: PathBuf,
    pub storage: StorageTarget,
    /// The blob store's URL, local paths made absolute.
    pub blobs_url: String,
    /// The store, when it is not a local directory (building one creates nothing);
    /// a local directory is made by [`Node::open`].
    remote_blobs: Option<Blobs>,
    pub work_dir: PathBuf,
    pub secret: SecretSource,
    pub machine_issuers: Vec<MachineIssuer>,
    pub sandbox: Sandbox,
}

fn absolute(setting: &str, path: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path)
        .map_err(|e| ConfigError::new(setting, format!("{}: {e}", path.display())))
}

impl Settings {
    /// Checks `config`: URLs parse, files given exist, the sandbox can run, at least
    /// one runner is on. Creates nothing.
    pub fn resolve(config: Config) -> Result<Settings, ConfigError> {
        let archive_dir = absolute("archive.dir", &config.archive.dir)?;
        let storage = storage_target(&config, &archive_dir)?;
        let blobs_url = blobs_url(&config, &archive_dir)?;
        let remote_blobs = if is_local_blob_url(&blobs_url) {
            if let Some(option) = config.blobs.options.keys().next() {
                return Err(ConfigError::new(
                    format!("blobs.options.{option}"),
                    "a local directory takes no options",
                ));
            }
            None
        } else {
            Some(open_blobs(&blobs_url, &config)?)
        };
        let work_dir = match &config.worker.work_dir {
            Some(dir) => absolute("worker.work_dir", dir)?,
            None => archive_dir.join(WORK_DIR),
        };
        if config.limits.max_file_bytes == 0 {
            return Err(ConfigError::new(
                "limits.max_file_bytes",
                "must be at least 1",
            ));
        }
        if config.limits.max_records == 0 {
            return Err(ConfigError::new("limits.max_records", "must be at least 1"));
        }
        if config.limits.batch_records == 0 {
            return Err(ConfigError::new(
                "limits.batch_records",
                "must be at least 1",
            ));
        }
        if config.worker.concurrency == 0 {
            return Err(ConfigError::new("worker.concurrency", "must be at least 1"));
        }
        if config.worker.lease.as_millis() < 1000 {
            return Err(ConfigError::new("worker.lease", "must be at least 1s"));
        }
        let secret = secret_source(&config, &archive_dir, &storage)?;
        if let SecretSource::Given(secret) = &secret {
            let setting = if config.auth.secret_file.is_some() {
                "auth.secret_file"
            } else {
                "auth.secret"
            };
            NodeIssuer::new("check", "check", secret).map_err(|e| ConfigError::new(setting, e))?;
        }
        let machine_issuers = config
            .auth
            .machine_issuers
            .iter()
            .enumerate()
            .map(|(i, section)| machine_issuer(i, section))
            .collect::<Result<Vec<_>, _>>()?;
        let process = &config.runners.process;
        if !process.enabled && !config.runners.oci.enabled {
            return Err(ConfigError::new(
                "runners",
                "no runner is enabled; enable runners.process or runners.oci",
            ));
        }
        let sandbox = match process.sandbox {
            SandboxMode::None => Sandbox::None,
            SandboxMode::Auto => Sandbox::detect(),
            SandboxMode::Bwrap => {
                if process.enabled {
                    Sandbox::Bwrap
                        .check()
                        .map_err(|e| ConfigError::new("runners.process.sandbox", e))?;
                }
                Sandbox::Bwrap
            }
        };
        check_api_prefix(&config.server.api_prefix)
            .map_err(|e| ConfigError::new("server.api_prefix", e))?;
        if config.server.upload_prefix.trim().is_empty() {
            return Err(ConfigError::new(
                "server.upload_prefix",
                "must not be empty",
            ));
        }
        Ok(Settings {
            config,
            archive_dir,
            storage,
            blobs_url,
            remote_blobs,
            work_dir,
            secret,
            machine_issuers,
            sandbox,
        })
    }

    /// The authenticator of the node; creates the archive's secret file when that is
    /// where the secret lives and it does not exist yet.
    pub fn authenticator(&self) -> Result<Authenticator, ConfigError> {
        let secret = match &self.secret {
            SecretSource::Given(secret) => secret.clone(),
            SecretSource::Archive(path) => archive_secret(path)?,
            SecretSource::Missing => {
                return Err(ConfigError::new(
                    "auth.secret",
                    "required with a Postgres storage (every server of the archive must \
                     share it); set auth.secret_file or auth.secret",
                ));
            }
        };
        let node = NodeIssuer::new(
            self.config.auth.issuer.clone(),
            self.config.auth.audience.clone(),
            &secret,
        )
        .map_err(|e| ConfigError::new(self.secret_setting(), e))?;
        let mut auth = Authenticator::new(node);
        for (i, issuer) in self.machine_issuers.iter().enumerate() {
            auth = auth
                .with_machine_issuer(issuer.clone())
                .map_err(|e| ConfigError::new(format!("auth.machine_issuers.{i}"), e))?;
        }
        Ok(auth)
    }

    fn secret_setting(&self) -> &'static str {
        if self.config.auth.secret_file.is_some() {
            "auth.secret_file"
        } else {
            "auth.secret"
        }
    }

    /// Whether the secret is the archive's own (a laptop archive), so printing an
    /// admin token at start is what its one user wants.
    pub fn secret_is_the_archives(&self) -> bool {
        matches!(self.secret, SecretSource::Archive(_))
    }
}

/// The machine issuer of `[[auth.machine_issuers]]` number `i`; its errors name the
/// setting (`auth.machine_issuers.0.jwks_url`). Nothing is fetched here.
fn machine_issuer(i: usize, section: &MachineIssuerSection) -> Result<MachineIssuer, ConfigError> {
    let setting = |key: &str| format!("auth.machine_issuers.{i}.{key}");
    // The setting an error of the issuer's constructors is about.
    let named = |e: osa::Error| match e {
        osa::Error::Invalid { field, message } => {
            let key = match field.as_str() {
                "issuer" => "issuer",
                "audiences" => "audience",
                "jwks_url" => "jwks_url",
                "public_key" => "public_key_file",
                "algorithm" | "algorithms" => "algorithms",
                _ => return ConfigError::new(format!("auth.machine_issuers.{i}"), message),
            };
            ConfigError::new(setting(key), message)
        }
        other => ConfigError::new(format!("auth.machine_issuers.{i}"), other),
    };
    let issuer = match (&section.public_key_file, &section.jwks_url) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                setting("jwks_url"),
                "set public_key_file or jwks_url, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                setting("public_key_file"),
                "is required: set public_key_file (a PEM public key) or jwks_url (a JWKS URL)",
            ));
        }
        (Some(file), None) => {
            let pem = std::fs::read(file).map_err(|e| {
                ConfigError::new(
                    setting("public_key_file"),
                    format!("{}: {e}", file.display()),
                )
            })?;
            MachineIssuer::public_key_pem(section.issuer.clone(), &pem, section.audience.clone())
                .map_err(|e| match e {
                    osa::Error::Invalid { field, message } if field == "public_key" => {
                        ConfigError::new(
                            setting("public_key_file"),
                            format!("{}: {message}", file.display()),
                        )
                    }
                    other => named(other),
                })?
        }
        (None, Some(url)) => {
            MachineIssuer::jwks(section.issuer.clone(), url, section.audience.clone())
                .map_err(named)?
        }
    };
    let issuer = match &section.algorithms {
        None => issuer,
        Some(names) => {
            let algorithms = names
                .iter()
                .map(|name| name.parse::<SignatureAlgorithm>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(named)?;
            issuer.with_algorithms(algorithms).map_err(named)?
        }
    };
    if section.scope_claim.trim().is_empty() {
        return Err(ConfigError::new(
            setting("scope_claim"),
            "must not be empty",
        ));
    }
    Ok(issuer.with_scope_claim(section.scope_claim.clone()))
}

fn storage_target(config: &Config, archive_dir: &Path) -> Result<StorageTarget, ConfigError> {
    let Some(url) = config.storage.url.as_deref() else {
        return Ok(StorageTarget::Sqlite(archive_dir.join(DATABASE_FILE)));
    };
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() || path.contains('?') {
            return Err(ConfigError::new(
                "storage.url",
                format!("{url:?}: give a file path, as sqlite://PATH (no options)"),
            ));
        }
        return Ok(StorageTarget::Sqlite(absolute(
            "storage.url",
            Path::new(path),
        )?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options: Result<osa::sqlx_backends::sqlx::postgres::PgConnectOptions, _> = url.parse();
        if let Err(e) = options {
            return Err(ConfigError::new(
                "storage.url",
                format!("{}: {e}", redacted_url(url)),
            ));
        }
        let schema = config.storage.schema.trim();
        if schema.is_empty() {
            return Err(ConfigError::new("storage.schema", "must not be empty"));
        }
        let mut pg = PgConfig::new(url)
            .with_schemas(schema, format!("{schema}_features"))
            .with_connect_timeout(config.storage.connect_timeout);
        if let Some(max) = config.storage.max_connections {
            if max == 0 {
                return Err(ConfigError::new(
                    "storage.max_connections",
                    "must be at least 1",
                ));
            }
            pg = pg.with_max_connections(max);
        }
        return Ok(StorageTarget::Postgres(pg));
    }
    Err(ConfigError::new(
        "storage.url",
        format!(
            "{}: expected sqlite://PATH or postgres://…",
            redacted_url(url)
        ),
    ))
}

fn blobs_url(config: &Config, archive_dir: &Path) -> Result<String, ConfigError> {
    match config.blobs.url.as_deref() {
        None => Ok(archive_dir.join(BLOBS_DIR).display().to_string()),
        // A plain path: absolute, so every process that shares the config agrees.
        Some(url) if !url.contains("://") => {
            Ok(absolute("blobs.url", Path::new(url))?.display().to_string())
        }
        Some(url) => Ok(url.to_string()),
    }
}

fn is_local_blob_url(url: &str) -> bool {
    !url.contains("://") || url.starts_with("file://")
}

/// The store of `url`; its errors name the setting (`blobs.url`, `blobs.options.…`).
fn open_blobs(url: &str, config: &Config) -> Result<Blobs, ConfigError> {
    Blobs::from_url(url, &config.blobs.options).map_err(|e| {
        let setting = match &e {
            osa::Error::Invalid { field, .. } if field != "url" => {
                format!("blobs.options.{field}")
            }
            _ => "blobs.url".to_string(),
        };
        ConfigError::new(setting, e)
    })
}

fn secret_source(
    config: &Config,
    archive_dir: &Path,
    storage: &StorageTarget,
) -> Result<SecretSource, ConfigError> {
    match (&config.auth.secret, &config.auth.secret_file) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            "auth.secret",
            "set auth.secret or auth.secret_file, not both",
        )),
        (Some(secret), None) => Ok(SecretSource::Given(secret.trim().as_bytes().to_vec())),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                ConfigError::new("auth.secret_file", format!("{}: {e}", file.display()))
            })?;
            Ok(SecretSource::Given(text.trim().as_bytes().to_vec()))
        }
        (None, None) => match storage {
            StorageTarget::Sqlite(_) => Ok(SecretSource::Archive(archive_dir.join(SECRET_FILE))),
            StorageTarget::Postgres(_) => Ok(SecretSource::Missing),
        },
    }
}

/// Reads the archive's secret, creating it (64 hex digits, owner-only) when absent.
fn archive_secret(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let setting = "auth.secret_file";
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ConfigError::new(
                setting,
                format!("{}: {e}", path.display()),
            ));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| ConfigError::new("archive.dir", format!("{}: {e}", dir.display())))?;
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            use std::io::Write;
            file.write_all(secret.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| ConfigError::new(setting, format!("{}: {e}", path.display())))?;
            Ok(secret.into_bytes())
        }
        // Another process of this archive created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(setting, format!("{}: {e}", path.display())))?;
            Ok(text.trim().as_bytes().to_vec())
        }
        Err(e) => Err(ConfigError::new(
            setting,
            format!("{}: {e}", path.display()),
        )),
    }
}

/// Why a node could not open: its configuration (exit 2) or something at run time.
#[derive(Debug)]
pub enum OpenError {
    Config(ConfigError),
    Runtime(osa::Error),
}

impl From<ConfigError> for OpenError {
    fn from(e: ConfigError) -> Self {
        OpenError::Config(e)
    }
}

impl From<osa::Error> for OpenError {
    fn from(e: osa::Error) -> Self {
        OpenError::Runtime(e)
    }
}

/// A storage backend of either kind.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite(Arc<SqliteBackend>),
    Postgres(Arc<PgBackend>),
}

impl Backend {
    /// Connects (Postgres) or opens the file (SQLite, creating its directory). An
    /// unreachable database is a configuration error naming `storage.url`.
    pub async fn connect(target: &StorageTarget) -> Result<Backend, OpenError> {
        match target {
            StorageTarget::Postgres(config) => PgBackend::connect(config.clone())
                .await
                .map(|b| Backend::Postgres(Arc::new(b)))
                .map_err(|e| {
                    ConfigError::new(
                        "storage.url",
                        format!("cannot connect to {}: {e}", target.describe()),
                    )
                    .into()
                }),
            StorageTarget::Sqlite(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        ConfigError::new("storage.url", format!("{}: {e}", dir.display()))
                    })?;
                }
                let backend = SqliteBackend::open(path).await.map_err(|e| {
                    ConfigError::new("storage.url", format!("{}: {e}", path.display()))
                })?;
                Ok(Backend::Sqlite(Arc::new(backend)))
            }
        }
    }

    pub async fn migrate(&self) -> osa::Result<()> {
        match self {
            Backend::Sqlite(b) => b.migrate().await,
            Backend::Postgres(b) => b.migrate().await,
        }
    }

    /// The queue's jobs by kind and state.
    pub async fn job_counts(&self) -> osa::Result<Vec<osa::jobs::JobCount>> {
        use osa::jobs::JobQueue;
        match self {
            Backend::Sqlite(b) => b.counts().await,
            Backend::Postgres(b) => b.counts().await,
        }
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), String> {
        use osa::sqlx_backends::sqlx;
        let result = match self {
            Backend::Sqlite(b) => sqlx::query("SELECT 1")
                .execute(b.read_pool())
                .await
                .map(drop),
            Backend::Postgres(b) => sqlx::query("SELECT 1").execute(b.pool()).await.map(drop),
        };
        result.map_err(|e| e.to_string())
    }

    fn engine(&self, runner: Arc<dyn HookRunner>, blobs: Blobs, config: EngineConfig) -> Engine {
        match self {
            Backend::Sqlite(b) => Engine::new(b.clone(), runner, blobs, config),
            Backend::Postgres(b) => Engine::new(b.clone(), runner, blobs, config),
        }
    }

    fn deployer(&self, blobs: Blobs) -> Deployer {
        match self {
            Backend::Sqlite(b) => Deployer::new(b.clone(), blobs),
            Backend::Postgres(b) => Deployer::new(b.clone(), blobs),
        }
    }

    fn api_state(&self, engine: Engine, deployer: Deployer, auth: Authenticator) -> ApiState {
        match self {
            Backend::Sqlite(b) => ApiState::new(engine, deployer, b.clone(), auth),
            Backend::Postgres(b) => ApiState::new(engine, deployer, b.clone(), auth),
        }
    }
}

/// Everything a `serve` or `worker` process runs on.
#[derive(Debug, Clone)]
pub struct Node {
    pub settings: Settings,
    pub backend: Backend,
    pub engine: Engine,
    pub deployer: Deployer,
    /// The runtime types releases may use here (`process`, `oci`).
    pub runtime_types: Vec<&'static str>,
}

impl Node {
    /// Reaches the container engine and the database, then creates what is local
    /// (SQLite file, blob directory, work directory); migrates when configured.
    pub async fn open(settings: Settings) -> Result<Node, OpenError> {
        let config = &settings.config;
        let mut runners = DispatchRunner::new();
        if config.runners.oci.enabled {
            runners = runners.with_oci(Arc::new(oci_runner(config).await?));
        }
        let backend = Backend::connect(&settings.storage).await?;
        if config.storage.migrate {
            backend.migrate().await?;
        }
        if config.runners.process.enabled {
            runners = runners.with_process(Arc::new(ProcessRunner::with_sandbox(settings.sandbox)));
        }
        let blobs = match &settings.remote_blobs {
            Some(blobs) => blobs.clone(),
            None => open_blobs(&settings.blobs_url, config)?,
        };
        std::fs::create_dir_all(&settings.work_dir).map_err(|e| {
            ConfigError::new(
                "worker.work_dir",
                format!("{}: {e}", settings.work_dir.display()),
            )
        })?;
        let runtime_types = runners.runtime_types();
        let mut engine_config = EngineConfig::new(&settings.work_dir);
        engine_config.batch_limits.max_file_bytes = config.limits.max_file_bytes;
        engine_config.batch_limits.max_records = config.limits.batch_records;
        engine_config.max_records = config.limits.max_records;
        let engine = backend.engine(Arc::new(runners), blobs.clone(), engine_config);
        let deployer = backend.deployer(blobs);
        Ok(Node {
            settings,
            backend,
            engine,
            deployer,
            runtime_types,
        })
    }

    /// The API's state over this node.
    pub fn api_state(&self, auth: Authenticator) -> Result<ApiState, ConfigError> {
        let server = &self.settings.config.server;
        self.backend
            .api_state(self.engine.clone(), self.deployer.clone(), auth)
            .with_max_streams(server.max_event_streams)
            .with_presigned_upload_ttl(server.presigned_upload_ttl)
            .with_upload_prefix(&server.upload_prefix)
            .map_err(|e| ConfigError::new("server.upload_prefix", e))
    }

    /// A worker with the configured settings.
    pub fn worker(&self) -> Worker {
        let section = &self.settings.config.worker;
        Worker::new(
            self.engine.clone(),
            WorkerConfig::default()
                .with_concurrency(section.concurrency)
                .with_poll_interval(section.poll)
                .with_lease(section.lease)
                .with_heartbeat(section.lease / 4),
        )
    }
}

/// The OCI runner, with the engine answering.
async fn oci_runner(config: &Config) -> Result<OciRunner, ConfigError> {
    let section = &config.runners.oci;
    let runner = match &section.host {
        Some(host) => OciRunner::connect_to(host),
        None => OciRunner::from_env(),
    }
    .map_err(|e| ConfigError::new("runners.oci.host", e))?;
    let mut runner = runner.pull_policy(match section.pull {
        PullMode::IfMissing => PullPolicy::IfMissing,
        PullMode::Never => PullPolicy::Never,
    });
    for (key, value) in &section.labels {
        runner = runner.label(key.clone(), value.clone());
    }
    for (i, registry) in section.registries.iter().enumerate() {
        let password = std::fs::read_to_string(&registry.password_file).map_err(|e| {
            ConfigError::new(
                format!("runners.oci.registries.{i}.password_file"),
                format!("{}: {e}", registry.password_file.display()),
            )
        })?;
        runner = runner.registry_credentials(RegistryCredentials::new(
            registry.server.clone(),
            registry.username.clone(),
            password.trim().to_string(),
        ));
    }
    runner.ping().await.map_err(|e| {
        ConfigError::new(
            "runners.oci.host",
            format!(
                "the container engine at {} does not answer: {e}",
                runner.endpoint()
            ),
        )
    })?;
    Ok(runner)
}

/// The operations routes, at the root whatever the API's prefix.
const OPERATIONS_ROUTES: [&str; 3] = ["metrics", "livez", "readyz"];

/// An API prefix: `/`, or `/`-separated segments of unreserved URL characters, not
/// under an operations route.
fn check_api_prefix(prefix: &str) -> Result<(), String> {
    let rest = prefix
        .strip_prefix('/')
        .ok_or("must start with `/` (such as `/api/v1`)")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(());
    }
    let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    for segment in rest.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err("every segment must be non-empty and neither `.` nor `..`".into());
        }
        if !segment.chars().all(unreserved) {
            return Err(format!(
                "segment {segment:?} may hold only letters, digits and `-._~`"
            ));
        }
    }
    let first = rest.split('/').next().unwrap_or_default();
    if OPERATIONS_ROUTES.contains(&first) {
        return Err(format!("`/{first}` is an operations route"));
    }
    Ok(())
}

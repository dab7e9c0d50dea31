//! The server's configuration: what the file and the environment may say, its
//! defaults, and the check that turns it into [`Settings`](crate::node::Settings) without touching anything.
//!
//! Sources, later ones winning: the defaults below, the TOML file given with
//! `--config` (or `OSA_CONFIG`), then environment variables `OSA_<SECTION>__<KEY>`
//! (`OSA_STORAGE__URL`, `OSA_BLOBS__OPTIONS__AWS_ENDPOINT`, …). Only variables whose
//! first segment is a section below are read, so unrelated `OSA_*` variables (those the
//! hooks' contract uses, say) are left alone. Unknown keys are errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The sections of the file, also the first segment of every environment override.
pub const SECTIONS: &[&str] = &[
    "server", "archive", "storage", "blobs", "runners", "auth", "worker", "limits", "log",
];

/// A setting that cannot be used, with the key that names it (`storage.url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, dotted (`runners.oci.host`), or the environment variable that set it.
    pub setting: String,
    /// What is wrong, in one line.
    pub message: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, message: impl fmt::Display) -> Self {
        // One line, whatever the cause printed.
        let message = message.to_string().replace(['\n', '\r'], " ");
        ConfigError {
            setting: setting.into(),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerSection,
    pub archive: ArchiveSection,
    pub storage: StorageSection,
    pub blobs: BlobsSection,
    pub runners: RunnersSection,
    pub auth: AuthSection,
    pub worker: WorkerSection,
    pub limits: LimitsSection,
    pub log: LogSection,
}

/// `[limits]`: what one submission may hold. The API checks them at submit and
/// upload; workers check them again when they prepare a batch, so every process of an
/// archive should have the same.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest record file, in bytes (uploads over it are refused with 413).
    pub max_file_bytes: u64,
    /// Most records in one submission.
    pub max_records: usize,
    /// Most records a hook gets at once: a step over more records runs its hook over
    /// several batches, one after the other.
    pub batch_records: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let engine = osa::saga::EngineConfig::new("unused");
        LimitsSection {
            max_file_bytes: engine.batch_limits.max_file_bytes,
            max_records: engine.max_records,
            batch_records: engine.batch_limits.max_records,
        }
    }
}

/// `[server]`: the HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address to listen on (`127.0.0.1:8000`; port 0 picks a free one, printed).
    pub bind: String,
    /// Where the API is mounted (`/api/v1`; `/` for the root). The operations routes
    /// (`/metrics`, `/livez`, `/readyz`) stay at the root.
    pub api_prefix: String,
    /// Object-store prefix record files of `POST /validations` are taken from.
    pub upload_prefix: String,
    /// How long a presigned upload URL works (`POST /uploads/{name}/presigned`, when
    /// the blob store can sign URLs).
    #[serde(with = "humantime_serde_str")]
    pub presigned_upload_ttl: Duration,
    /// Most event streams (SSE) open at once.
    pub max_event_streams: usize,
    /// Longest time until a response's head (`30s`); slower requests get 504. Event
    /// streams are not cut: their head comes at once.
    #[serde(with = "humantime_serde_str")]
    pub request_timeout: Duration,
    /// Origins browsers may call the API from (CORS); none by default.
    pub cors_origins: Vec<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            bind: "127.0.0.1:8000".into(),
            api_prefix: "/api/v1".into(),
            upload_prefix: osa::http::DEFAULT_UPLOAD_PREFIX.into(),
            presigned_upload_ttl: osa::http::DEFAULT_PRESIGNED_UPLOAD_TTL,
            max_event_streams: osa::http::DEFAULT_MAX_STREAMS,
            request_timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
        }
    }
}

/// `[archive]`: the directory everything local defaults to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSection {
    /// Holds the SQLite database, blobs, batch work directories and the node secret
    /// unless other settings place them elsewhere. Relative to the working directory.
    pub dir: PathBuf,
}

impl Default for ArchiveSection {
    fn default() -> Self {
        ArchiveSection {
            dir: PathBuf::from("osa-archive"),
        }
    }
}

/// `[storage]`: the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// `sqlite://PATH` or `postgres://…` (`sslmode`, `sslrootcert` honoured). Default:
    /// `archive.db` in the archive directory.
    pub url: Option<String>,
    /// Postgres: schema of OSA's tables (feature tables go to `<schema>_features`).
    pub schema: String,
    /// Postgres: most pooled connections (default 10).
    pub max_connections: Option<u32>,
    /// Postgres: how long connecting may take before the server gives up (`10s`).
    #[serde(with = "humantime_serde_str")]
    pub connect_timeout: Duration,
    /// Apply migrations when `serve` or `worker` starts (`migrate` always does).
    pub migrate: bool,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            url: None,
            schema: "osa".into(),
            max_connections: None,
            connect_timeout: Duration::from_secs(10),
            migrate: true,
        }
    }
}

/// `[blobs]`: the object store of record files, hook outputs and logs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobsSection {
    /// `file://…` or a path, `s3://bucket/prefix`, `gs://…`, `az://…`, `memory://`.
    /// Default: `blobs/` in the archive directory.
    pub url: Option<String>,
    /// object_store options by name (`aws_endpoint`, `aws_region`, …). Values are
    /// strings; `true` or `9000` from the environment count as their text.
    #[serde(deserialize_with = "text::map")]
    pub options: BTreeMap<String, String>,
}

/// `[runners]`: where hooks run; each release runs on the runner its runtime names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunnersSection {
    pub process: ProcessSection,
    pub oci: OciSection,
}

/// `[runners.process]`: releases with a `command`, run as local processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessSection {
    pub enabled: bool,
    pub sandbox: SandboxMode,
}

impl Default for ProcessSection {
    fn default() -> Self {
        ProcessSection {
            enabled: true,
            sandbox: SandboxMode::None,
        }
    }
}

/// How process releases are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// A plain process (environment, process group, timeout, rlimits).
    None,
    /// bubblewrap namespaces; an error at start when bwrap cannot run here.
    Bwrap,
    /// bubblewrap when it can run here, else a plain process.
    Auto,
}

/// `[runners.oci]`: releases with an image, run in containers through the Docker
/// Engine API (Docker or `podman system service`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OciSection {
    pub enabled: bool,
    /// `unix:///run/podman/podman.sock`, a socket path or `tcp://host:port`. Default:
    /// `DOCKER_HOST`, else `/var/run/docker.sock`.
    pub host: Option<String>,
    pub pull: PullMode,
    /// Labels put on every container (to tell several servers on one engine apart).
    pub labels: BTreeMap<String, String>,
    /// Credentials for pulling from private registries.
    pub registries: Vec<RegistrySection>,
}

/// `[[runners.oci.registries]]`: credentials for one registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// The registry host as image references name it (`ghcr.io`, `docker.io`).
    pub server: String,
    pub username: String,
    /// A file holding the password or token.
    pub password_file: PathBuf,
}

/// Whether missing images are pulled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullMode {
    #[default]
    IfMissing,
    Never,
}

/// `[auth]`: who may call the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// The node secret (HS256, ≥ 32 bytes) of user tokens. Prefer `secret_file`.
    #[serde(deserialize_with = "text::option")]
    pub secret: Option<String>,
    /// A file holding the node secret. With neither set, a SQLite archive keeps one
    /// in `node-secret` in the archive directory, created on first start.
    pub secret_file: Option<PathBuf>,
    /// `iss` of the node's tokens.
    pub issuer: String,
    /// `aud` of the node's tokens.
    pub audience: String,
    /// Issuers of machine tokens (CI systems), each with its own key.
    pub machine_issuers: Vec<MachineIssuerSection>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            secret: None,
            secret_file: None,
            issuer: "osa".into(),
            audience: "authenticated".into(),
            machine_issuers: Vec::new(),
        }
    }
}

/// `[[auth.machine_issuers]]`: an issuer of machine tokens (a CI system), with one
/// public key (`public_key_file`) or a key set at a URL (`jwks_url`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineIssuerSection {
    /// `iss` of its tokens.
    pub issuer: String,
    /// Accepted `aud` values.
    #[serde(default = "default_machine_audience")]
    pub audience: Vec<String>,
    /// PEM file of its public key: RSA, EC (P-256, P-384) or Ed25519, the kind read
    /// from the file. Set this or `jwks_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
    /// URL (`https://…`) of its JWKS document, an OIDC issuer's `jwks_uri`; fetched
    /// at start and when keys rotate. Set this or `public_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// The algorithms its tokens may be signed with (`["RS256"]`). Default: `EdDSA`
    /// for an Ed25519 key, `RS256` for an RSA key, `ES256` for a P-256 key, `ES384`
    /// for a P-384 key, `RS256` for a JWKS URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    /// The claim holding the scopes (a space-separated string or an array).
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
}

fn default_scope_claim() -> String {
    "scope".into()
}

fn default_machine_audience() -> Vec<String> {
    vec!["osa".into()]
}

/// `[worker]`: the job worker (in `serve` unless `--no-worker`, and `worker`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSection {
    /// Jobs run at once.
    pub concurrency: usize,
    /// Lease on a claimed job (`60s`, `2m`); a worker that dies loses its jobs to
    /// another worker after this.
    #[serde(with = "humantime_serde_str")]
    pub lease: Duration,
    /// Pause between claims when the queue is empty.
    #[serde(with = "humantime_serde_str")]
    pub poll: Duration,
    /// Where batch directories are prepared. Default: `work/` in the archive
    /// directory. Local to each worker's host.
    pub work_dir: Option<PathBuf>,
    /// `osa-server worker`: serve `/metrics`, `/livez` and `/readyz` here (none
    /// unless set; `serve` has them beside the API).
    pub metrics_bind: Option<String>,
}

impl Default for WorkerSection {
    fn default() -> Self {
        let defaults = osa::saga::WorkerConfig::default();
        WorkerSection {
            concurrency: defaults.concurrency,
            lease: defaults.lease,
            poll: defaults.poll_interval,
            work_dir: None,
            metrics_bind: None,
        }
    }
}

/// `[log]`: what is logged to standard error, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `RUST_LOG`-style directives (`info`, `osa=debug,tower_http=warn`). `RUST_LOG`,
    /// when set, is used instead.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Text,
    /// One JSON object per line.
    Json,
}

/// Strings that the environment may hand over as numbers or booleans (figment parses
/// `OSA_…=true` as a boolean): their text.
mod text {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Bool(bool),
        Int(i128),
        Float(f64),
    }

    impl From<Scalar> for String {
        fn from(value: Scalar) -> String {
            match value {
                Scalar::Text(s) => s,
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
            }
        }
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<Scalar>::deserialize(d)?.map(String::from))
    }

    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
        Ok(BTreeMap::<String, Scalar>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect())
    }
}

/// Durations as human strings (`90s`, `2m 30s`), or whole seconds.
mod humantime_serde_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(text) => humantime::parse_duration(&text).map_err(|e| {
                serde::de::Error::custom(format!("{text:?} is not a duration ({e}); try \"90s\""))
            }),
        }
    }
}

impl Config {
    /// Reads the defaults, `file` (when given) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::new(
                    "--config",
                    format!("{} is not a readable file", file.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let env = Env::prefixed("OSA_")
            .split("__")
            .filter(|key| is_section_key(key.as_str()));
        figment
            .merge(env)
            .extract()
            .map_err(|e| from_figment(e, file))
    }
}

/// Whether a dotted key (`storage.url`) starts with a known section.
fn is_section_key(key: &str) -> bool {
    let first = key.split('.').next().unwrap_or_default();
    SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(first))
}

/// The first of figment's errors, as one line naming the key: the environment
/// variable when one set it, else the dotted key (and the file).
fn from_figment(error: figment::Error, file: Option<&Path>) -> ConfigError {
    use figment::error::Kind;

    let mut path = error.path.clone();
    let message = match &error.kind {
        Kind::UnknownField(field, expected) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            format!("unknown key (expected one of: {})", expected.join(", "))
        }
        Kind::MissingField(field) => {
            if path.last().map(String::as_str) != Some(field.as_ref()) {
                path.push(field.to_string());
            }
            "is required".to_string()
        }
        kind => kind.to_string(),
    };
    if path.is_empty() {
        return match file {
            Some(file) => ConfigError::new("config", format!("{} ({})", message, file.display())),
            None => ConfigError::new("config", message),
        };
    }
    let variable = format!(
        "OSA_{}",
        path.iter()
            .map(|p| p.to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join("__")
    );
    if std::env::var_os(&variable).is_some() {
        return ConfigError::new(variable, message);
    }
    let key = path.join(".");
    match file {
        Some(file) => ConfigError::new(key, format!("{message} (in {})", file.display())),
        None => ConfigError::new(key, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commented example file sets every default it shows, and no other value.
    #[test]
    fn the_example_file_states_the_defaults() {
        let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/osa-server.toml"));
        let loaded = Config::load(Some(file)).expect("the example parses");
        let as_json = |c: &Config| serde_json::to_value(c).expect("serializes");
        let mut defaults = as_json(&Config::default());
        // The file spells the archive directory as "./osa-archive".
        defaults["archive"]["dir"] = serde_json::json!("./osa-archive");
        assert_eq!(as_json(&loaded), defaults);
    }

    #[test]
    fn only_known_sections_are_overrides() {
        assert!(is_section_key("storage.url"));
        assert!(is_section_key("RUNNERS.oci.host"));
        assert!(!is_section_key("py_venv"));
        assert!(!is_section_key("in"));
    }
}

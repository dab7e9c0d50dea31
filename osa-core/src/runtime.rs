//! How a release runs: [`RuntimeConfig`] and its resource [`Limits`].

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::id::Digest;
use crate::{Error, Result};

/// A memory size in bytes, written like Docker does (`512m`, `1g`, `1.5g`, `2Gi`).
///
/// Units are binary (`k` = 2^10, `m` = 2^20, `g` = 2^30); an optional trailing `i` is
/// accepted; no unit means bytes. Formatting picks the largest unit that divides the
/// size exactly, so `parse(format(x)) == x` for every size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemorySize(u64);

/// The largest memory limit OSA accepts (1 TiB); a guard against typos like `1000g0`.
pub const MAX_MEMORY_BYTES: u64 = 1 << 40;

/// A memory or cpu string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {rule}")]
pub struct LimitError {
    what: &'static str,
    value: String,
    rule: &'static str,
}

impl LimitError {
    fn memory(value: &str, rule: &'static str) -> Self {
        LimitError {
            what: "memory",
            value: value.chars().take(40).collect(),
            rule,
        }
    }

    fn cpu(value: &str, rule: &'static str) -> Self {
        LimitError {
            what: "cpu",
            value: value.chars().take(40).collect(),
            rule,
        }
    }

    /// `memory` or `cpu`.
    pub fn what(&self) -> &'static str {
        self.what
    }
}

const MEMORY_RULE: &str = "expected a positive size like `512m`, `1g`, `1.5g` or `2Gi` (binary units k, m, g; at most 1024g)";

/// Splits `"12.5"` into (12, Some("5")); checks digits only.
fn split_decimal(number: &str) -> Option<(&str, Option<&str>)> {
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    Some((int, frac))
}

impl MemorySize {
    /// A size of exactly `bytes` (must be positive and at most [`MAX_MEMORY_BYTES`]).
    pub fn from_bytes(bytes: u64) -> Result<Self, LimitError> {
        if bytes == 0 || bytes > MAX_MEMORY_BYTES {
            return Err(LimitError::memory(&bytes.to_string(), MEMORY_RULE));
        }
        Ok(MemorySize(bytes))
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Twice this size, or `None` past [`MAX_MEMORY_BYTES`].
    pub fn doubled(self) -> Option<Self> {
        self.0
            .checked_mul(2)
            .filter(|b| *b <= MAX_MEMORY_BYTES)
            .map(MemorySize)
    }
}

impl FromStr for MemorySize {
    type Err = LimitError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim().to_ascii_lowercase();
        let s = s.strip_suffix('i').unwrap_or(&s);
        let (number, shift) = match s.as_bytes().last() {
            Some(b'g') => (&s[..s.len() - 1], 30),
            Some(b'm') => (&s[..s.len() - 1], 20),
            Some(b'k') => (&s[..s.len() - 1], 10),
            _ => (s, 0),
        };
        let (int, frac) =
            split_decimal(number).ok_or_else(|| LimitError::memory(input, MEMORY_RULE))?;
        // Exact arithmetic in bytes: integer part plus the fraction, truncated.
        let int: u64 = int
            .parse()
            .ok()
            .filter(|v: &u64| *v <= MAX_MEMORY_BYTES)
            .ok_or_else(|| LimitError::memory(input, MEMORY_RULE))?;
        let mut bytes = int
            .checked_shl(shift)
            .filter(|b| *b >> shift == int)
            .ok_or_else(|| LimitError::memory(input, MEMORY_RULE))?;
        if let Some(frac) = frac {
            // Only the first 18 digits matter for a 2^30 multiplier.
            let digits = &frac[..frac.len().min(18)];
            let numerator: u128 = digits.parse().unwrap_or(0);
            let denominator = 10u128.pow(digits.len() as u32);
            bytes += ((numerator << shift) / denominator) as u64;
        }
        MemorySize::from_bytes(bytes).map_err(|_| LimitError::memory(input, MEMORY_RULE))
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(30, 'g'), (20, 'm'), (10, 'k')] {
            if self.0.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for MemorySize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MemorySize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for MemorySize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MemorySize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^\\d+(\\.\\d+)?[gmkGMK]?[iI]?$",
            "description": "Memory limit with binary units: 512m, 1g, 1.5g, 2Gi.",
            "examples": ["512m", "1g"]
        })
    }
}

/// A cpu quota in millicores, written as a decimal (`0.5`, `2`) or as `NNNm` (`500m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpu(u32);

const CPU_RULE: &str = "expected a positive number of cores like `0.5` or `2`, or millicores like `500m` (at least 1m, at most 1024 cores)";

impl Cpu {
    /// Millicores (1000 = one core).
    pub fn millis(self) -> u32 {
        self.0
    }

    /// A quota of `millis` millicores (1..=1_024_000).
    pub fn from_millis(millis: u32) -> Result<Self, LimitError> {
        if millis == 0 || millis > 1_024_000 {
            return Err(LimitError::cpu(&format!("{millis}m"), CPU_RULE));
        }
        Ok(Cpu(millis))
    }

    /// Nanocpus, the unit of the Docker API.
    pub fn nano_cpus(self) -> i64 {
        i64::from(self.0) * 1_000_000
    }
}

impl FromStr for Cpu {
    type Err = LimitError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let err = || LimitError::cpu(input, CPU_RULE);
        let millis: u64 = if let Some(m) = s.strip_suffix('m') {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            m.parse().map_err(|_| err())?
        } else {
            let (int, frac) = split_decimal(s).ok_or_else(err)?;
            let frac = frac.unwrap_or("");
            if frac.len() > 3 && frac[3..].bytes().any(|b| b != b'0') {
                return Err(err());
            }
            let mut frac3 = frac.chars().take(3).collect::<String>();
            while frac3.len() < 3 {
                frac3.push('0');
            }
            let int: u64 = int.parse().map_err(|_| err())?;
            let frac: u64 = frac3.parse().map_err(|_| err())?;
            int.checked_mul(1000)
                .and_then(|v| v.checked_add(frac))
                .ok_or_else(err)?
        };
        let millis = u32::try_from(millis).map_err(|_| err())?;
        Cpu::from_millis(millis).map_err(|_| err())
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = (self.0 / 1000, self.0 % 1000);
        if frac == 0 {
            write!(f, "{int}")
        } else {
            let frac = format!("{frac:03}");
            write!(f, "{int}.{}", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for Cpu {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cpu {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Cpu {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cpu".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(\\d+(\\.\\d{1,3})?|\\d+m)$",
            "description": "Cpu quota: cores as a decimal (0.5) or millicores (500m).",
            "examples": ["0.5", "500m"]
        })
    }
}

/// Resource limits of one hook execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Limits {
    /// Wall-clock limit of one execution, in seconds (1..=86400).
    #[serde(deserialize_with = "deserialize_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: u32,
    /// Memory limit; the OOM policy doubles it at most three times.
    pub memory: MemorySize,
    /// Cpu quota.
    pub cpu: Cpu,
}

/// The longest timeout a hook may ask for (one day).
pub const MAX_TIMEOUT_SECONDS: u32 = 86_400;

fn deserialize_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v == 0 || v > MAX_TIMEOUT_SECONDS {
        return Err(serde::de::Error::custom(format!(
            "timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}, got {v}"
        )));
    }
    Ok(v)
}

impl Limits {
    /// Limits of `timeout_seconds` wall-clock, `memory` and `cpu` (checked when a
    /// release is created, as a deserialized payload is).
    pub fn new(timeout_seconds: u32, memory: MemorySize, cpu: Cpu) -> Self {
        Limits {
            timeout_seconds,
            memory,
            cpu,
        }
    }

    /// The same limits with `memory`.
    pub fn with_memory(mut self, memory: MemorySize) -> Self {
        self.memory = memory;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_seconds: 300,
            memory: MemorySize(1 << 30),
            cpu: Cpu(500),
        }
    }
}

impl Limits {
    /// These limits with memory doubled, or `None` when doubling would pass the cap.
    pub fn with_doubled_memory(self) -> Option<Self> {
        Some(Limits {
            memory: self.memory.doubled()?,
            ..self
        })
    }
}

/// How a release executes. Tagged by `type`; more variants may follow (a Kubernetes
/// runner reuses [`RuntimeConfig::Oci`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum RuntimeConfig {
    /// An OCI image, always run by `image@digest`.
    Oci {
        /// Image reference (repository and optional tag); the digest pins it.
        image: String,
        /// The image's content digest.
        digest: Digest,
        /// Opaque configuration handed to the hook as `config.json`.
        #[serde(default)]
        config: serde_json::Map<String, serde_json::Value>,
        /// Resource limits.
        #[serde(default)]
        limits: Limits,
    },
    /// A local program, spawned by the process runner.
    Process {
        /// Program and arguments (never passed through a shell).
        command: Vec<String>,
        /// sha256 of the hook's code artifact, for idempotency and provenance.
        digest: Digest,
        /// Opaque configuration handed to the hook as `config.json`.
        #[serde(default)]
        config: serde_json::Map<String, serde_json::Value>,
        /// Resource limits.
        #[serde(default)]
        limits: Limits,
    },
}

impl RuntimeConfig {
    /// The content digest identifying the release.
    pub fn digest(&self) -> &Digest {
        match self {
            RuntimeConfig::Oci { digest, .. } | RuntimeConfig::Process { digest, .. } => digest,
        }
    }

    /// The configuration handed to the hook.
    pub fn config(&self) -> &serde_json::Map<String, serde_json::Value> {
        match self {
            RuntimeConfig::Oci { config, .. } | RuntimeConfig::Process { config, .. } => config,
        }
    }

    /// The resource limits.
    pub fn limits(&self) -> Limits {
        match self {
            RuntimeConfig::Oci { limits, .. } | RuntimeConfig::Process { limits, .. } => *limits,
        }
    }

    /// `oci` or `process`.
    pub fn type_name(&self) -> &'static str {
        match self {
            RuntimeConfig::Oci { .. } => "oci",
            RuntimeConfig::Process { .. } => "process",
        }
    }

    /// The pinned image reference `image@digest` (OCI only). A tag in `image` is
    /// dropped: the digest alone decides what runs.
    pub fn pinned_image(&self) -> Option<String> {
        match self {
            RuntimeConfig::Oci { image, digest, .. } => {
                let repo = image.split('@').next().unwrap_or(image);
                // A `:` after the last `/` is a tag, not a registry port.
                let last_slash = repo.rfind('/').map_or(0, |i| i + 1);
                let repo = match repo[last_slash..].find(':') {
                    Some(colon) => &repo[..last_slash + colon],
                    None => repo,
                };
                Some(format!("{repo}@{digest}"))
            }
            RuntimeConfig::Process { .. } => None,
        }
    }

    /// Checks what serde cannot: a non-empty command or image, and an image reference
    /// that names a digest (`repo@sha256:…`) names the release's own.
    pub fn validate(&self) -> crate::Result<()> {
        match self {
            RuntimeConfig::Oci { image, .. } if image.trim().is_empty() => {
                Err(crate::Error::invalid("runtime.image", "must not be empty"))
            }
            RuntimeConfig::Oci { image, digest, .. }
                if image
                    .split_once('@')
                    .is_some_and(|(_, named)| named != digest.as_str()) =>
            {
                Err(crate::Error::invalid(
                    "runtime.image",
                    format!(
                        "names a digest other than the release's `digest` ({digest}); the \
                         digest alone pins the image, so give it once"
                    ),
                ))
            }
            RuntimeConfig::Process { command, .. }
                if command.first().is_none_or(|p| p.trim().is_empty()) =>
            {
                Err(crate::Error::invalid(
                    "runtime.command",
                    "must name a program to run",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The build artifact of a release: an image or a command, with its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseArtifact {
    /// OCI image reference (exactly one of `image` and `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Local command (exactly one of `image` and `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Content digest of the image or of the hook's code.
    pub digest: Digest,
    /// Where the code came from (`git:abc1234`).
    pub source_ref: String,
}

impl ReleaseArtifact {
    /// The runtime this artifact runs with `config` and `limits`; `field` prefixes
    /// error paths.
    pub fn runtime(
        &self,
        config: serde_json::Map<String, serde_json::Value>,
        limits: Limits,
        field: &str,
    ) -> Result<RuntimeConfig> {
        if self.source_ref.trim().is_empty() {
            return Err(Error::invalid(
                format!("{field}.source_ref"),
                "must not be blank",
            ));
        }
        let runtime = match (&self.image, &self.command) {
            (Some(image), None) => RuntimeConfig::Oci {
                image: image.clone(),
                digest: self.digest.clone(),
                config,
                limits,
            },
            (None, Some(command)) => RuntimeConfig::Process {
                command: command.clone(),
                digest: self.digest.clone(),
                config,
                limits,
            },
            _ => {
                return Err(Error::invalid(
                    field,
                    "give exactly one of `image` (OCI) and `command` (local process)",
                ));
            }
        };
        runtime.validate().map_err(|e| match e {
            Error::Invalid { message, .. } => Error::invalid(field, message),
            other => other,
        })?;
        Ok(runtime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(s: &str) -> MemorySize {
        s.parse().unwrap()
    }

    #[test]
    fn memory_parsing_and_formatting() {
        assert_eq!(mem("1g").bytes(), 1 << 30);
        assert_eq!(mem("512m").bytes(), 512 << 20);
        assert_eq!(mem("1.5g").bytes(), 3 << 29);
        assert_eq!(mem("2Gi").bytes(), 2 << 30);
        assert_eq!(mem(" 64K ").bytes(), 64 << 10);
        assert_eq!(mem("1048576").to_string(), "1m");
        assert_eq!(mem("1024m").to_string(), "1g");
        assert_eq!(mem("1536m").to_string(), "1536m");
        assert_eq!(mem("1000").to_string(), "1000");
        for bad in [
            "", "g", "1.g", ".5g", "-1g", "1gb", "1t", "0", "0m", "1025g", "1e3m", "1,5g",
        ] {
            assert!(bad.parse::<MemorySize>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn memory_doubling_sequence() {
        let doubled = |s: &str| mem(s).doubled().unwrap().to_string();
        assert_eq!(doubled("512m"), "1g");
        assert_eq!(doubled("1.5g"), "3g");
        assert_eq!(doubled("768m"), "1536m");
        let mut m = mem("1g");
        let mut seen = vec![m.to_string()];
        for _ in 0..3 {
            m = m.doubled().unwrap();
            seen.push(m.to_string());
        }
        assert_eq!(seen, ["1g", "2g", "4g", "8g"]);
        assert!(mem("1024g").doubled().is_none());
    }

    #[test]
    fn cpu_parsing() {
        let cpu = |s: &str| s.parse::<Cpu>().unwrap();
        assert_eq!(cpu("0.5").millis(), 500);
        assert_eq!(cpu("500m").millis(), 500);
        assert_eq!(cpu("2").millis(), 2000);
        assert_eq!(cpu("1.25").to_string(), "1.25");
        assert_eq!(cpu("250m").to_string(), "0.25");
        assert_eq!(cpu("0.5000").millis(), 500);
        assert_eq!(cpu("0.5").nano_cpus(), 500_000_000);
        for bad in [
            "", "0", "0m", "-1", "0.0001", "1.5m", "m", "abc", "1025", "1e3",
        ] {
            assert!(bad.parse::<Cpu>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_defaults_and_validation() {
        let l: Limits = serde_json::from_str("{}").unwrap();
        assert_eq!(l, Limits::default());
        assert_eq!(l.memory.to_string(), "1g");
        let l: Limits =
            serde_json::from_str(r#"{"timeout_seconds": 30, "memory": "512m", "cpu": "0.5"}"#)
                .unwrap();
        assert_eq!(l.timeout_seconds, 30);
        assert!(serde_json::from_str::<Limits>(r#"{"timeout_seconds": 0}"#).is_err());
        assert!(serde_json::from_str::<Limits>(r#"{"memory": "lots"}"#).is_err());
        assert!(serde_json::from_str::<Limits>(r#"{"gpu": 1}"#).is_err());
        let json = serde_json::to_value(Limits::default()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"timeout_seconds": 300, "memory": "1g", "cpu": "0.5"})
        );
    }

    #[test]
    fn runtime_config_tagging() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let oci: RuntimeConfig = serde_json::from_value(serde_json::json!({
            "type": "oci", "image": "ghcr.io/x/check:1.2", "digest": digest
        }))
        .unwrap();
        assert_eq!(oci.type_name(), "oci");
        assert_eq!(
            oci.pinned_image().unwrap(),
            format!("ghcr.io/x/check@{digest}")
        );
        let local: RuntimeConfig = serde_json::from_value(serde_json::json!({
            "type": "oci", "image": "localhost:5000/check", "digest": digest
        }))
        .unwrap();
        assert_eq!(
            local.pinned_image().unwrap(),
            format!("localhost:5000/check@{digest}")
        );
        let process: RuntimeConfig = serde_json::from_value(serde_json::json!({
            "type": "process", "command": ["python3", "hook.py"], "digest": digest,
            "limits": {"memory": "256m"}
        }))
        .unwrap();
        assert_eq!(process.limits().memory.to_string(), "256m");
        assert!(process.validate().is_ok());
        let err = serde_json::from_value::<RuntimeConfig>(serde_json::json!({
            "type": "process", "command": ["x"], "digest": digest, "shell": true
        }))
        .unwrap_err();
        assert!(err.to_string().contains("shell"), "{err}");
        let empty: RuntimeConfig = serde_json::from_value(serde_json::json!({
            "type": "process", "command": [], "digest": digest
        }))
        .unwrap();
        assert!(empty.validate().is_err());

        // A digest in the image reference must be the release's.
        let oci = |image: String| -> RuntimeConfig {
            serde_json::from_value(serde_json::json!({
                "type": "oci", "image": image, "digest": digest
            }))
            .unwrap()
        };
        assert!(
            oci(format!("ghcr.io/org/hook:1@{digest}"))
                .validate()
                .is_ok()
        );
        assert!(oci("ghcr.io/org/hook:1".into()).validate().is_ok());
        let other = Digest::of_bytes(b"another image");
        let err = oci(format!("ghcr.io/org/hook@{other}"))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("other than the release"), "{err}");
    }
}

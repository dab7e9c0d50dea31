//! Key sets of machine issuers published as JWKS documents at a URL (feature `jwks`).
//!
//! A [`JwksSource`] fetches its document over HTTP(S) and caches the usable keys. The
//! cache is read synchronously by [`Authenticator::verify`](super::Authenticator::verify);
//! [`Authenticator::authenticate`](super::Authenticator::authenticate) refreshes it first
//! when it is missing, older than its TTL, or lacks the token's `kid`. Every fetch of
//! one source is serialised (concurrent callers share one), and a source is fetched at
//! most once per [`JwksOptions::min_refresh_interval`], so tokens naming random `kid`s
//! cannot make the server hammer the issuer.

use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use serde::Deserialize;

use super::{KeyKind, MIN_RSA_BITS, SignatureAlgorithm, rsa_modulus_bits};
use crate::{Error, Result};

/// How a JWKS issuer's key set is fetched and cached.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksOptions {
    /// How long a fetched set is fresh when the response has no usable
    /// `Cache-Control: max-age` (10 minutes).
    pub default_ttl: Duration,
    /// Shortest freshness, whatever `max-age` says (1 minute; also what `no-cache` and
    /// `no-store` get).
    pub min_ttl: Duration,
    /// Longest freshness, whatever `max-age` says (24 hours).
    pub max_ttl: Duration,
    /// Fewest time between two fetches of the set (30 seconds), successful or not: a
    /// token naming an unknown `kid` within this time of the last fetch is refused
    /// without a fetch.
    pub min_refresh_interval: Duration,
    /// Time limit of one fetch, connecting included (10 seconds).
    pub timeout: Duration,
    /// Largest document accepted, in bytes (1 MiB).
    pub max_bytes: usize,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            default_ttl: Duration::from_secs(10 * 60),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 60 * 60),
            min_refresh_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            max_bytes: 1024 * 1024,
        }
    }
}

impl JwksOptions {
    pub(super) fn check(&self) -> Result<()> {
        if self.min_ttl > self.max_ttl {
            return Err(Error::invalid(
                "jwks_options.min_ttl",
                "must not exceed max_ttl",
            ));
        }
        if self.timeout.is_zero() {
            return Err(Error::invalid("jwks_options.timeout", "must not be zero"));
        }
        if self.max_bytes == 0 {
            return Err(Error::invalid(
                "jwks_options.max_bytes",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A key set at a URL and its cache.
#[derive(Debug)]
pub(super) struct JwksSource {
    url: url::Url,
    options: JwksOptions,
    cached: RwLock<Option<Arc<KeySet>>>,
    fetches: tokio::sync::Mutex<FetchLog>,
}

/// What the last fetch did.
#[derive(Debug, Default)]
struct FetchLog {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// What a caller needs of the cache.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wanted<'a> {
    /// A fresh set.
    Fresh,
    /// A fresh set with a key for this token's `kid` (or, with no `kid`, exactly one
    /// usable key).
    KeyFor {
        kid: Option<&'a str>,
        pinned: &'a [SignatureAlgorithm],
    },
}

impl JwksSource {
    /// A source at `url` (checked: `http` or `https` with a host).
    pub(super) fn new(url: &str, options: JwksOptions) -> Result<Self> {
        options.check()?;
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::invalid("jwks_url", format!("{url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid(
                "jwks_url",
                format!("{url:?}: only http:// and https:// URLs are fetched"),
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(Error::invalid("jwks_url", format!("{url:?}: no host")));
        }
        Ok(JwksSource {
            url: parsed,
            options,
            cached: RwLock::new(None),
            fetches: tokio::sync::Mutex::new(FetchLog::default()),
        })
    }

    pub(super) fn url(&self) -> &url::Url {
        &self.url
    }

    /// The cached set, fresh or not.
    pub(super) fn cached(&self) -> Option<Arc<KeySet>> {
        self.cached
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the cache serves `wanted` without a fetch.
    fn serves(&self, wanted: Wanted<'_>) -> bool {
        let Some(set) = self.cached() else {
            return false;
        };
        if set.fetched_at.elapsed() >= set.ttl {
            return false;
        }
        match wanted {
            Wanted::Fresh => true,
            Wanted::KeyFor { kid, pinned } => set.knows(kid, pinned),
        }
    }

    /// Fetches the set when the cache does not serve `wanted` and the last fetch is at
    /// least [`JwksOptions::min_refresh_interval`] ago. Fails (with the cause) only
    /// when no set is cached afterwards; a failed fetch over a cached set is logged
    /// and the cached set stays.
    pub(super) async fn refresh(
        &self,
        issuer: &str,
        wanted: Wanted<'_>,
    ) -> std::result::Result<(), String> {
        if self.serves(wanted) {
            return Ok(());
        }
        let mut log = self.fetches.lock().await;
        // Another caller may have fetched while this one waited.
        if self.serves(wanted) {
            return Ok(());
        }
        let has_set = self.cached().is_some();
        if let Some(at) = log.last_attempt
            && at.elapsed() < self.options.min_refresh_interval
        {
            return match (has_set, &log.last_error) {
                (true, _) => Ok(()),
                (false, Some(error)) => Err(error.clone()),
                (false, None) => Err("the key set has not been fetched".into()),
            };
        }
        // Recorded once the fetch is over: a caller that gives up midway (a client
        // that disconnects) leaves the next caller free to fetch.
        let fetched = self.fetch().await;
        log.last_attempt = Some(Instant::now());
        match fetched {
            Ok(set) => {
                if set.keys.is_empty() {
                    tracing::warn!(
                        issuer,
                        url = %self.url,
                        "the key set of a machine issuer has no usable key"
                    );
                } else {
                    tracing::debug!(
                        issuer,
                        url = %self.url,
                        keys = set.keys.len(),
                        ttl_s = set.ttl.as_secs(),
                        "fetched the key set of a machine issuer"
                    );
                }
                *self.cached.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(set));
                log.last_error = None;
                Ok(())
            }
            Err(cause) => {
                tracing::warn!(
                    issuer,
                    url = %self.url,
                    error = %cause,
                    cached = has_set,
                    "fetching the key set of a machine issuer failed"
                );
                log.last_error = Some(cause.clone());
                if has_set { Ok(()) } else { Err(cause) }
            }
        }
    }

    /// One GET of the document, within the limits.
    async fn fetch(&self) -> std::result::Result<KeySet, String> {
        let client = client()?;
        let mut response = client
            .get(self.url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .timeout(self.options.timeout)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the key set URL answered HTTP {status}"));
        }
        let too_large = || {
            format!(
                "the key set is larger than {} bytes",
                self.options.max_bytes
            )
        };
        if response
            .content_length()
            .is_some_and(|length| length > self.options.max_bytes as u64)
        {
            return Err(too_large());
        }
        let ttl = self.ttl(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
            if body.len() + chunk.len() > self.options.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse_key_set(&body)?;
        Ok(KeySet {
            keys,
            fetched_at: Instant::now(),
            ttl,
        })
    }

    /// The freshness `Cache-Control` gives, within the bounds.
    fn ttl(&self, headers: &reqwest::header::HeaderMap) -> Duration {
        let options = &self.options;
        let mut ttl = None;
        for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',').map(str::trim) {
                let lower = directive.to_ascii_lowercase();
                if lower == "no-cache" || lower == "no-store" {
                    ttl = Some(Duration::ZERO);
                } else if let Some(seconds) = lower.strip_prefix("max-age=")
                    && let Ok(seconds) = seconds.trim_matches('"').parse::<u64>()
                    && ttl.is_none()
                {
                    ttl = Some(Duration::from_secs(seconds));
                }
            }
        }
        ttl.unwrap_or(options.default_ttl)
            .clamp(options.min_ttl, options.max_ttl)
    }
}

/// Redirects followed for one fetch.
const MAX_REDIRECTS: usize = 5;

/// One HTTP client for every key set (the root certificates are loaded once); limits
/// are set on each request.
fn client() -> std::result::Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<std::result::Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    if attempt.previous().len() >= MAX_REDIRECTS {
                        attempt.error("too many redirects")
                    } else if attempt.url().scheme() != "https"
                        && attempt.previous().iter().any(|url| url.scheme() == "https")
                    {
                        attempt.error("a redirect from https to plain http")
                    } else {
                        attempt.follow()
                    }
                }))
                // Fetches are minutes apart: no idle connections are kept.
                .pool_max_idle_per_host(0)
                .user_agent(concat!("osa/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot set up an HTTP client: {}", error_chain(&e)))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// An error and its causes on one line (`error sending request: connection refused`).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The usable keys of a fetched set.
#[derive(Debug)]
pub(super) struct KeySet {
    keys: Vec<SetKey>,
    fetched_at: Instant,
    ttl: Duration,
}

/// One usable key of a set.
struct SetKey {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's `alg`, when it has one.
    alg: Option<SignatureAlgorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for SetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SetKey {
    /// Whether this key may verify a token signed with `alg`.
    fn verifies(&self, alg: SignatureAlgorithm) -> bool {
        alg.fits(self.kind) && self.alg.is_none_or(|own| own == alg)
    }

    fn name(&self) -> String {
        match &self.kid {
            Some(kid) => format!("key {kid:?}"),
            None => "its key".to_string(),
        }
    }
}

impl KeySet {
    /// Keys that can verify some algorithm of `pinned`.
    fn usable<'s, 'p>(
        &'s self,
        pinned: &'p [SignatureAlgorithm],
    ) -> impl Iterator<Item = &'s SetKey> + use<'s, 'p> {
        self.keys
            .iter()
            .filter(move |key| pinned.iter().any(|alg| key.verifies(*alg)))
    }

    /// Whether a token with this `kid` finds its key here: a key with that `kid`, or,
    /// for a token without one, exactly one usable key.
    fn knows(&self, kid: Option<&str>, pinned: &[SignatureAlgorithm]) -> bool {
        match kid {
            Some(kid) => self.keys.iter().any(|key| key.kid.as_deref() == Some(kid)),
            None => self.usable(pinned).count() == 1,
        }
    }

    /// The key that verifies a token with this `kid` and `alg` (already one of
    /// `pinned`), or why there is none.
    pub(super) fn select(
        &self,
        kid: Option<&str>,
        alg: SignatureAlgorithm,
        pinned: &[SignatureAlgorithm],
    ) -> std::result::Result<&DecodingKey, String> {
        let key = match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|key| key.kid.as_deref() == Some(kid))
                    .peekable();
                let Some(first) = named.peek().copied() else {
                    return Err(format!("its key set has no key {kid:?}"));
                };
                named.find(|key| key.verifies(alg)).unwrap_or(first)
            }
            None => {
                let usable: Vec<&SetKey> = self.usable(pinned).collect();
                match usable.as_slice() {
                    [one] => *one,
                    keys => {
                        return Err(format!(
                            "the token names no `kid` and its key set has {} usable keys \
                             (a token without `kid` needs exactly one)",
                            keys.len()
                        ));
                    }
                }
            }
        };
        if !alg.fits(key.kind) {
            return Err(format!(
                "the token's algorithm {alg} does not fit {} ({})",
                key.name(),
                key.kind
            ));
        }
        if let Some(own) = key.alg
            && own != alg
        {
            return Err(format!("{} is for {own}, the token says {alg}", key.name()));
        }
        Ok(&key.key)
    }
}

/// The usable keys of a JWKS document; keys that cannot verify signatures here
/// (another `kty` or curve, `use: enc`, a shared secret, a short RSA modulus) are
/// skipped. Fails when the document is not a JWKS.
fn parse_key_set(body: &[u8]) -> std::result::Result<Vec<SetKey>, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(body)
        .map_err(|e| format!("the key set is not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for (index, value) in document.keys.into_iter().enumerate() {
        let kid = value
            .get("kid")
            .and_then(|kid| kid.as_str())
            .map(str::to_string);
        match set_key(value) {
            Ok(key) => keys.push(key),
            Err(why) => {
                tracing::debug!(index, kid = ?kid, why = %why, "skipped a key of a key set")
            }
        }
    }
    Ok(keys)
}

/// One JWK as a usable key, or why it is not one.
fn set_key(value: serde_json::Value) -> std::result::Result<SetKey, String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a JWK: {e}"))?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(other) => return Err(format!("`use` is {other:?}, not `sig`")),
    }
    if let Some(operations) = &jwk.common.key_operations
        && !operations.contains(&KeyOperations::Verify)
    {
        return Err("`key_ops` lacks `verify`".into());
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(alg) => Some(
            signature_algorithm(alg)
                .ok_or_else(|| format!("`alg` {alg:?} is not an asymmetric signature algorithm"))?,
        ),
    };
    let b64 = |text: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| "a coordinate is not base64url".to_string())
    };
    let (kind, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(params) => {
            let bits = rsa_modulus_bits(&params.n).unwrap_or(0);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "the RSA modulus has {bits} bits; at least {MIN_RSA_BITS} are required"
                ));
            }
            let key = DecodingKey::from_rsa_components(&params.n, &params.e)
                .map_err(|e| format!("bad RSA key: {e}"))?;
            (KeyKind::Rsa, key)
        }
        AlgorithmParameters::EllipticCurve(params) => {
            let (kind, size) = match params.curve {
                EllipticCurve::P256 => (KeyKind::P256, 32),
                EllipticCurve::P384 => (KeyKind::P384, 48),
                ref other => return Err(format!("curve {other:?} is not supported")),
            };
            if b64(&params.x)?.len() != size || b64(&params.y)?.len() != size {
                return Err(format!("a coordinate is not {size} bytes long"));
            }
            let key = DecodingKey::from_ec_components(&params.x, &params.y)
                .map_err(|e| format!("bad EC key: {e}"))?;
            (kind, key)
        }
        AlgorithmParameters::OctetKeyPair(params) => {
            if params.curve != EllipticCurve::Ed25519 || b64(&params.x)?.len() != 32 {
                return Err("only Ed25519 octet key pairs are supported".into());
            }
            let key = DecodingKey::from_ed_components(&params.x)
                .map_err(|e| format!("bad Ed25519 key: {e}"))?;
            (KeyKind::Ed25519, key)
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("a shared secret (`kty: oct`) is never a machine issuer's key".into());
        }
        _ => return Err("unsupported `kty` or curve".into()),
    };
    if let Some(alg) = alg
        && !alg.fits(kind)
    {
        return Err(format!("`alg` {alg} does not fit its {kind} key"));
    }
    Ok(SetKey {
        kid: jwk.common.key_id,
        kind,
        alg,
        key,
    })
}

fn signature_algorithm(alg: KeyAlgorithm) -> Option<SignatureAlgorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => SignatureAlgorithm::RS256,
        KeyAlgorithm::RS384 => SignatureAlgorithm::RS384,
        KeyAlgorithm::RS512 => SignatureAlgorithm::RS512,
        KeyAlgorithm::PS256 => SignatureAlgorithm::PS256,
        KeyAlgorithm::PS384 => SignatureAlgorithm::PS384,
        KeyAlgorithm::PS512 => SignatureAlgorithm::PS512,
        KeyAlgorithm::ES256 => SignatureAlgorithm::ES256,
        KeyAlgorithm::ES384 => SignatureAlgorithm::ES384,
        KeyAlgorithm::EdDSA => SignatureAlgorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(options: JwksOptions) -> JwksSource {
        JwksSource::new("https://ci.example.org/.well-known/jwks", options).expect("a source")
    }

    #[test]
    fn only_http_urls_with_a_host_are_sources() {
        for url in [
            "file:///etc/jwks.json",
            "ftp://ci.example.org/jwks",
            "not a url",
            "http://",
        ] {
            assert!(
                JwksSource::new(url, JwksOptions::default()).is_err(),
                "{url} was accepted"
            );
        }
        JwksSource::new("http://127.0.0.1:8080/jwks", JwksOptions::default()).expect("http");
    }

    #[test]
    fn cache_control_is_bounded() {
        let source = source(JwksOptions::default());
        let ttl = |value: Option<&str>| {
            let mut headers = reqwest::header::HeaderMap::new();
            if let Some(value) = value {
                headers.insert(
                    reqwest::header::CACHE_CONTROL,
                    value.parse().expect("a header"),
                );
            }
            source.ttl(&headers).as_secs()
        };
        assert_eq!(ttl(None), 600);
        assert_eq!(ttl(Some("public, max-age=3600")), 3600);
        assert_eq!(ttl(Some("max-age=5")), 60);
        assert_eq!(ttl(Some("max-age=999999999")), 86_400);
        assert_eq!(ttl(Some("no-store")), 60);
        assert_eq!(ttl(Some("max-age=soon")), 600);
    }

    #[test]
    fn short_rsa_moduli_are_measured() {
        // 0x01 0xff: nine bits.
        assert_eq!(rsa_modulus_bits("Af8"), Some(9));
        assert_eq!(rsa_modulus_bits("AAH_"), Some(9));
        assert_eq!(rsa_modulus_bits("AAAA"), None);
    }
}

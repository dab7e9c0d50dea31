//! Authentication of callers with JWTs, and the scope gate.
//!
//! Two kinds of issuers:
//!
//! - the **node** itself: HS256 tokens signed with the node secret, for users; their
//!   roles come from the `roles` claim (`public < depositor < curator < admin <
//!   superadmin`);
//! - optional **machine issuers**: tokens from an external issuer (a CI system, a
//!   build service), routed by their `iss`, signed with RSA (`RS*`, `PS*`), ECDSA
//!   (`ES256`, `ES384`) or Ed25519 (`EdDSA`) keys: one public key in PEM, or (feature
//!   `jwks`) a key set published at a URL, as CI systems' OIDC issuers do; their
//!   scopes come from a configurable claim holding a space-separated string or an
//!   array.
//!
//! The algorithms are pinned per issuer: a token's `alg` header is never trusted, so
//! `none`, an HS256 token claiming a machine issuer (the "public key used as HMAC
//! secret" confusion), a token whose algorithm is not among its issuer's or does not
//! fit the key, and a signed token without a known issuer are all refused. Keys of a
//! set are picked by the token's `kid`; keys a token brings along (its `jwk`, `jku`
//! or `x5u` header) are never used.
//!
//! [`Authenticator::verify`] is synchronous and uses the keys at hand (static keys
//! and the cached key sets); [`Authenticator::authenticate`] first fetches a key set
//! that is missing, expired or lacks the token's `kid`.
//! Expiry, not-before (`nbf`, when present) and audience are always checked, with
//! [`Authenticator::leeway_s`] of clock skew. A token whose `exp` has passed is
//! [`Error::TokenExpired`]; every other refusal is [`Error::Unauthenticated`] with the
//! reason; a missing scope is [`Error::Forbidden`].

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[cfg(feature = "jwks")]
mod jwks;
#[cfg(feature = "jwks")]
pub use jwks::JwksOptions;

/// A user role; each includes the powers of the ones below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// Anyone.
    Public,
    /// May deposit records.
    Depositor,
    /// May curate records.
    Curator,
    /// May administer the node (passes every scope gate).
    Admin,
    /// Everything.
    Superadmin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 5] = [
        Role::Public,
        Role::Depositor,
        Role::Curator,
        Role::Admin,
        Role::Superadmin,
    ];

    /// The wire name (`curator`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::Depositor => "depositor",
            Role::Curator => "curator",
            Role::Admin => "admin",
            Role::Superadmin => "superadmin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| Error::invalid("role", format!("unknown role {s:?}")))
    }
}

/// A permission a machine token can carry.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[non_exhaustive]
pub enum Scope {
    /// Deploy conventions.
    #[serde(rename = "conventions:write")]
    ConventionsWrite,
    /// Create releases and move live pointers.
    #[serde(rename = "hooks:write")]
    HooksWrite,
    /// Submit and cancel validations.
    #[serde(rename = "validations:write")]
    ValidationsWrite,
    /// Read deployments and their events.
    #[serde(rename = "deployments:read")]
    DeploymentsRead,
    /// Read hook runs and their logs.
    #[serde(rename = "runs:read")]
    RunsRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 5] = [
        Scope::ConventionsWrite,
        Scope::HooksWrite,
        Scope::ValidationsWrite,
        Scope::DeploymentsRead,
        Scope::RunsRead,
    ];

    /// The wire name (`hooks:write`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ConventionsWrite => "conventions:write",
            Scope::HooksWrite => "hooks:write",
            Scope::ValidationsWrite => "validations:write",
            Scope::DeploymentsRead => "deployments:read",
            Scope::RunsRead => "runs:read",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| Error::invalid("scope", format!("unknown scope {s:?}")))
    }
}

/// Who is calling: a verified subject with its roles (users) or scopes (machines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// `sub` of the token, prefixed for machines (`<issuer>#<sub>`), so subjects of
    /// different issuers never collide. This is what audit rows record.
    pub subject: String,
    /// The issuer that vouched for it.
    pub issuer: String,
    /// Roles (node tokens only).
    pub roles: BTreeSet<Role>,
    /// Scopes (machine tokens only; unknown scope names are ignored).
    pub scopes: BTreeSet<Scope>,
    /// When the token stops being accepted (its `exp` plus the authenticator's
    /// leeway): whatever it keeps open (an event stream) ends then.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl Principal {
    /// Whether any role is at least `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.iter().any(|r| *r >= role)
    }

    /// The scope gate: passes with the scope, or for an admin.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.scopes.contains(&scope) || self.has_role(Role::Admin) {
            return Ok(());
        }
        Err(Error::Forbidden {
            reason: format!("{} lacks scope {scope} (or the admin role)", self.subject),
        })
    }

    /// The role gate: passes for a role at least `role`.
    pub fn require_role(&self, role: Role) -> Result<()> {
        if self.has_role(role) {
            return Ok(());
        }
        Err(Error::Forbidden {
            reason: format!("{} needs the {role:?} role", self.subject).to_lowercase(),
        })
    }
}

/// An asymmetric JWS algorithm (`alg`) a machine issuer can be pinned to.
///
/// Shared-secret algorithms (`HS256`, …) and `none` are not in this type: a machine
/// issuer never accepts them, whatever a token's header says.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (what most CI systems' OIDC issuers use).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl SignatureAlgorithm {
    /// Every algorithm.
    pub const ALL: [SignatureAlgorithm; 9] = [
        SignatureAlgorithm::RS256,
        SignatureAlgorithm::RS384,
        SignatureAlgorithm::RS512,
        SignatureAlgorithm::PS256,
        SignatureAlgorithm::PS384,
        SignatureAlgorithm::PS512,
        SignatureAlgorithm::ES256,
        SignatureAlgorithm::ES384,
        SignatureAlgorithm::EdDSA,
    ];

    /// The name in a token's header (`RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureAlgorithm::RS256 => "RS256",
            SignatureAlgorithm::RS384 => "RS384",
            SignatureAlgorithm::RS512 => "RS512",
            SignatureAlgorithm::PS256 => "PS256",
            SignatureAlgorithm::PS384 => "PS384",
            SignatureAlgorithm::PS512 => "PS512",
            SignatureAlgorithm::ES256 => "ES256",
            SignatureAlgorithm::ES384 => "ES384",
            SignatureAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether a key of this kind can verify signatures of this algorithm.
    pub fn fits(self, key: KeyKind) -> bool {
        use SignatureAlgorithm::*;
        match key {
            KeyKind::Rsa => matches!(self, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => self == ES256,
            KeyKind::P384 => self == ES384,
            KeyKind::Ed25519 => self == EdDSA,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            SignatureAlgorithm::RS256 => Algorithm::RS256,
            SignatureAlgorithm::RS384 => Algorithm::RS384,
            SignatureAlgorithm::RS512 => Algorithm::RS512,
            SignatureAlgorithm::PS256 => Algorithm::PS256,
            SignatureAlgorithm::PS384 => Algorithm::PS384,
            SignatureAlgorithm::PS512 => Algorithm::PS512,
            SignatureAlgorithm::ES256 => Algorithm::ES256,
            SignatureAlgorithm::ES384 => Algorithm::ES384,
            SignatureAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for SignatureAlgorithm {
    type Err = Error;
    /// Parses a header name; `HS256`/`HS384`/`HS512`, `none` and unknown names are
    /// [`Error::Invalid`].
    fn from_str(s: &str) -> Result<Self> {
        if let Some(alg) = SignatureAlgorithm::ALL
            .into_iter()
            .find(|alg| alg.as_str() == s)
        {
            return Ok(alg);
        }
        let expected = SignatureAlgorithm::ALL
            .map(SignatureAlgorithm::as_str)
            .join(", ");
        let message = if matches!(s, "HS256" | "HS384" | "HS512") {
            format!("{s} is a shared-secret algorithm; a machine issuer takes one of {expected}")
        } else if s.eq_ignore_ascii_case("none") {
            format!("unsigned tokens (`none`) are never accepted; expected one of {expected}")
        } else {
            format!("unknown algorithm {s:?} (expected one of {expected})")
        };
        Err(Error::invalid("algorithm", message))
    }
}

/// The kind of a machine issuer's public key, which decides the algorithms it fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// An RSA key (at least [`MIN_RSA_BITS`] bits): `RS*` and `PS*`.
    Rsa,
    /// An EC key on P-256: `ES256`.
    P256,
    /// An EC key on P-384: `ES384`.
    P384,
    /// An Ed25519 key: `EdDSA`.
    Ed25519,
}

impl KeyKind {
    /// The algorithm an issuer with a key of this kind is pinned to unless told
    /// otherwise: `RS256`, `ES256`, `ES384` or `EdDSA`.
    pub fn default_algorithm(self) -> SignatureAlgorithm {
        match self {
            KeyKind::Rsa => SignatureAlgorithm::RS256,
            KeyKind::P256 => SignatureAlgorithm::ES256,
            KeyKind::P384 => SignatureAlgorithm::ES384,
            KeyKind::Ed25519 => SignatureAlgorithm::EdDSA,
        }
    }

    /// For people: `RSA`, `EC P-256`, `EC P-384`, `Ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::P256 => "EC P-256",
            KeyKind::P384 => "EC P-384",
            KeyKind::Ed25519 => "Ed25519",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Smallest RSA modulus accepted, in bits, for a PEM key and for keys of a key set.
pub const MIN_RSA_BITS: usize = 2048;

/// An external issuer of machine tokens (a CI system, a build service), routed by
/// `iss`.
///
/// Its key is one public key given in PEM ([`MachineIssuer::ed25519_pem`],
/// [`MachineIssuer::rsa_pem`], [`MachineIssuer::ec_pem`], or
/// [`MachineIssuer::public_key_pem`] which detects the kind), or, with the `jwks`
/// feature, a key set published at a URL (`MachineIssuer::jwks`). Each issuer has a
/// pinned set of [`SignatureAlgorithm`]s ([`MachineIssuer::with_algorithms`]); a
/// token whose header names another algorithm, or one that does not fit the key, is
/// refused.
///
/// Clones share the cache of a key set.
#[derive(Clone)]
pub struct MachineIssuer {
    /// The `iss` value that routes a token here.
    pub issuer: String,
    /// Accepted audiences (a token's `aud` must name one).
    pub audiences: Vec<String>,
    /// The claim holding the scopes (`scope` by default; `scp` is common too).
    pub scope_claim: String,
    algorithms: Vec<SignatureAlgorithm>,
    keys: IssuerKeys,
}

/// Where an issuer's keys come from.
#[derive(Clone)]
enum IssuerKeys {
    /// One key given up front.
    Static { kind: KeyKind, key: DecodingKey },
    /// A key set fetched from a URL, cached.
    #[cfg(feature = "jwks")]
    Jwks(std::sync::Arc<jwks::JwksSource>),
}

impl fmt::Debug for MachineIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("MachineIssuer");
        debug
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("scope_claim", &self.scope_claim)
            .field("algorithms", &self.algorithms);
        match &self.keys {
            IssuerKeys::Static { kind, .. } => debug.field("key", kind),
            #[cfg(feature = "jwks")]
            IssuerKeys::Jwks(source) => debug.field("jwks_url", &source.url().as_str()),
        };
        debug.finish_non_exhaustive()
    }
}

impl MachineIssuer {
    fn new(issuer: String, audiences: Vec<String>, keys: IssuerKeys) -> Result<Self> {
        if issuer.trim().is_empty() {
            return Err(Error::invalid("issuer", "must not be blank"));
        }
        if audiences.is_empty() {
            return Err(Error::invalid("audiences", "give at least one audience"));
        }
        let algorithms = match &keys {
            IssuerKeys::Static { kind, .. } => vec![kind.default_algorithm()],
            #[cfg(feature = "jwks")]
            IssuerKeys::Jwks(_) => vec![SignatureAlgorithm::RS256],
        };
        Ok(MachineIssuer {
            issuer,
            audiences,
            scope_claim: "scope".into(),
            algorithms,
            keys,
        })
    }

    fn with_key(
        issuer: impl Into<String>,
        audiences: Vec<String>,
        kind: KeyKind,
        key: DecodingKey,
    ) -> Result<Self> {
        MachineIssuer::new(issuer.into(), audiences, IssuerKeys::Static { kind, key })
    }

    /// An issuer verified with an Ed25519 public key in PEM (`BEGIN PUBLIC KEY`),
    /// pinned to `EdDSA`.
    pub fn ed25519_pem(
        issuer: impl Into<String>,
        public_key_pem: &[u8],
        audiences: Vec<String>,
    ) -> Result<Self> {
        let key = ed25519_key(public_key_pem)?;
        MachineIssuer::with_key(issuer, audiences, KeyKind::Ed25519, key)
    }

    /// An issuer verified with an RSA public key in PEM (`BEGIN PUBLIC KEY` or
    /// `BEGIN RSA PUBLIC KEY`, at least [`MIN_RSA_BITS`] bits), pinned to `RS256`
    /// (see [`MachineIssuer::with_algorithms`] for `RS384`, `PS256`, …).
    pub fn rsa_pem(
        issuer: impl Into<String>,
        public_key_pem: &[u8],
        audiences: Vec<String>,
    ) -> Result<Self> {
        let key = rsa_key(public_key_pem)?;
        MachineIssuer::with_key(issuer, audiences, KeyKind::Rsa, key)
    }

    /// An issuer verified with an EC public key in PEM (`BEGIN PUBLIC KEY`), on P-256
    /// (pinned to `ES256`) or P-384 (pinned to `ES384`).
    pub fn ec_pem(
        issuer: impl Into<String>,
        public_key_pem: &[u8],
        audiences: Vec<String>,
    ) -> Result<Self> {
        let (kind, key) = ec_key(public_key_pem)?;
        MachineIssuer::with_key(issuer, audiences, kind, key)
    }

    /// An issuer verified with a public key in PEM of any supported kind (RSA, EC
    /// P-256/P-384, Ed25519), detected from the key itself and pinned to the kind's
    /// [`KeyKind::default_algorithm`].
    pub fn public_key_pem(
        issuer: impl Into<String>,
        public_key_pem: &[u8],
        audiences: Vec<String>,
    ) -> Result<Self> {
        check_public_pem(public_key_pem)?;
        let (kind, key) = if DecodingKey::from_rsa_pem(public_key_pem).is_ok() {
            (KeyKind::Rsa, rsa_key(public_key_pem)?)
        } else if DecodingKey::from_ec_pem(public_key_pem).is_ok() {
            ec_key(public_key_pem)?
        } else if DecodingKey::from_ed_pem(public_key_pem).is_ok() {
            (KeyKind::Ed25519, ed25519_key(public_key_pem)?)
        } else {
            return Err(Error::invalid(
                "public_key",
                "not an RSA, EC (P-256, P-384) or Ed25519 public key in PEM",
            ));
        };
        MachineIssuer::with_key(issuer, audiences, kind, key)
    }

    /// Pins the issuer to `algorithms` instead of its default: a token whose header
    /// names any other algorithm is refused. Invalid when the set is empty or, for an
    /// issuer with one key, when an algorithm does not fit that key (`ES256` for an
    /// RSA key).
    pub fn with_algorithms(
        mut self,
        algorithms: impl IntoIterator<Item = SignatureAlgorithm>,
    ) -> Result<Self> {
        let mut algorithms: Vec<SignatureAlgorithm> = algorithms.into_iter().collect();
        algorithms.sort();
        algorithms.dedup();
        if algorithms.is_empty() {
            return Err(Error::invalid("algorithms", "give at least one algorithm"));
        }
        if let IssuerKeys::Static { kind, .. } = &self.keys
            && let Some(misfit) = algorithms.iter().find(|alg| !alg.fits(*kind))
        {
            return Err(Error::invalid(
                "algorithms",
                format!("{misfit} does not fit the issuer's {kind} key"),
            ));
        }
        self.algorithms = algorithms;
        Ok(self)
    }

    /// An issuer whose keys are the JWKS document at `url` (`http` or `https`; an
    /// OIDC issuer's `jwks_uri`), pinned to `RS256` (see
    /// [`MachineIssuer::with_algorithms`]). Nothing is fetched here: the set is fetched
    /// by [`Authenticator::authenticate`] or [`Authenticator::refresh_keys`], and
    /// cached with [`JwksOptions::default`] (see [`MachineIssuer::with_jwks_options`]).
    #[cfg(feature = "jwks")]
    pub fn jwks(issuer: impl Into<String>, url: &str, audiences: Vec<String>) -> Result<Self> {
        let source = jwks::JwksSource::new(url, JwksOptions::default())?;
        MachineIssuer::new(
            issuer.into(),
            audiences,
            IssuerKeys::Jwks(std::sync::Arc::new(source)),
        )
    }

    /// Fetches and caches the key set with `options` instead of the defaults; Invalid
    /// for an issuer with one key, or when the options contradict each other.
    #[cfg(feature = "jwks")]
    pub fn with_jwks_options(mut self, options: JwksOptions) -> Result<Self> {
        let IssuerKeys::Jwks(source) = &self.keys else {
            return Err(Error::invalid(
                "jwks_options",
                format!("issuer {:?} has no key set URL", self.issuer),
            ));
        };
        let source = jwks::JwksSource::new(source.url().as_str(), options)?;
        self.keys = IssuerKeys::Jwks(std::sync::Arc::new(source));
        Ok(self)
    }

    /// The URL of the issuer's key set; `None` for an issuer with one key.
    #[cfg(feature = "jwks")]
    pub fn jwks_url(&self) -> Option<&str> {
        match &self.keys {
            IssuerKeys::Jwks(source) => Some(source.url().as_str()),
            IssuerKeys::Static { .. } => None,
        }
    }

    /// Reads scopes from `claim` instead of `scope`.
    pub fn with_scope_claim(mut self, claim: impl Into<String>) -> Self {
        self.scope_claim = claim.into();
        self
    }

    /// The algorithms tokens of this issuer may be signed with.
    pub fn algorithms(&self) -> &[SignatureAlgorithm] {
        &self.algorithms
    }

    /// The kind of the issuer's one key; `None` for a key set.
    pub fn key_kind(&self) -> Option<KeyKind> {
        match &self.keys {
            IssuerKeys::Static { kind, .. } => Some(*kind),
            #[cfg(feature = "jwks")]
            IssuerKeys::Jwks(_) => None,
        }
    }
}

/// Refuses what is not a public key in PEM (a private key, a certificate).
fn check_public_pem(pem: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(pem);
    let label = text
        .split_once("-----BEGIN ")
        .and_then(|(_, rest)| rest.split_once("-----"))
        .map(|(label, _)| label.trim().to_string());
    match label.as_deref() {
        Some("PUBLIC KEY" | "RSA PUBLIC KEY") => Ok(()),
        Some(label) if label.contains("PRIVATE KEY") => Err(Error::invalid(
            "public_key",
            "this is a private key; give the issuer's public key",
        )),
        Some(label) => Err(Error::invalid(
            "public_key",
            format!("a PEM {label:?}; expected a PUBLIC KEY"),
        )),
        None => Err(Error::invalid("public_key", "not a PEM public key")),
    }
}

fn ed25519_key(pem: &[u8]) -> Result<DecodingKey> {
    check_public_pem(pem)?;
    let key = DecodingKey::from_ed_pem(pem)
        .map_err(|e| Error::invalid("public_key", format!("not an Ed25519 PEM key: {e}")))?;
    match key.try_get_as_bytes() {
        Ok(bytes) if bytes.len() == 32 => Ok(key),
        _ => Err(Error::invalid(
            "public_key",
            "not an Ed25519 PEM key (Ed448 is not supported)",
        )),
    }
}

fn rsa_key(pem: &[u8]) -> Result<DecodingKey> {
    check_public_pem(pem)?;
    let key = DecodingKey::from_rsa_pem(pem)
        .map_err(|e| Error::invalid("public_key", format!("not an RSA PEM key: {e}")))?;
    // Parses the key (modulus and exponent) as verification will.
    let modulus =
        match jsonwebtoken::jwk::Jwk::from_decoding_key(&key, None).map(|jwk| jwk.algorithm) {
            Ok(jsonwebtoken::jwk::AlgorithmParameters::RSA(params)) => params.n,
            _ => {
                return Err(Error::invalid(
                    "public_key",
                    "not an RSA PEM key: its modulus and exponent do not parse",
                ));
            }
        };
    let bits = rsa_modulus_bits(&modulus).unwrap_or(0);
    if bits < MIN_RSA_BITS {
        return Err(Error::invalid(
            "public_key",
            format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"),
        ));
    }
    Ok(key)
}

/// The size in bits of a base64url RSA modulus (`n` of a JWK).
fn rsa_modulus_bits(n: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n.trim_end_matches('='))
        .ok()?;
    let first = bytes.iter().position(|b| *b != 0)?;
    Some((bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize)
}

fn ec_key(pem: &[u8]) -> Result<(KeyKind, DecodingKey)> {
    check_public_pem(pem)?;
    let key = DecodingKey::from_ec_pem(pem)
        .map_err(|e| Error::invalid("public_key", format!("not an EC PEM key: {e}")))?;
    // An uncompressed point: 0x04, then x and y of the curve's size.
    let kind = match key.try_get_as_bytes() {
        Ok([4, rest @ ..]) if rest.len() == 64 => KeyKind::P256,
        Ok([4, rest @ ..]) if rest.len() == 96 => KeyKind::P384,
        _ => {
            return Err(Error::invalid(
                "public_key",
                "not a P-256 or P-384 EC public key (uncompressed)",
            ));
        }
    };
    Ok((kind, key))
}

/// The node's own issuer (HS256) and its settings.
#[derive(Clone)]
pub struct NodeIssuer {
    /// `iss` of node tokens.
    pub issuer: String,
    /// `aud` of node tokens.
    pub audience: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl fmt::Debug for NodeIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// Shortest node secret accepted (bytes).
pub const MIN_SECRET_LEN: usize = 32;

impl NodeIssuer {
    /// A node issuer with its secret (at least [`MIN_SECRET_LEN`] bytes).
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        secret: &[u8],
    ) -> Result<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(Error::invalid(
                "secret",
                format!("the node secret needs at least {MIN_SECRET_LEN} bytes"),
            ));
        }
        Ok(NodeIssuer {
            issuer: issuer.into(),
            audience: audience.into(),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }
}

/// Claims of a node token.
#[derive(Debug, Serialize, Deserialize)]
struct NodeClaims {
    sub: String,
    iss: String,
    aud: String,
    exp: i64,
    iat: i64,
    #[serde(default)]
    roles: Vec<Role>,
    /// Scopes of a machine token minted by the node (`osa-server token --scope`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<Scope>,
}

/// The scopes of a machine token: a space-separated string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Text(String),
    List(Vec<String>),
}

/// Verifies tokens and mints node tokens.
///
/// `Send + Sync`, to share in an `Arc`; clones share the caches of key sets.
#[derive(Debug, Clone)]
pub struct Authenticator {
    node: NodeIssuer,
    machines: Vec<MachineIssuer>,
    /// Clock skew tolerated on `exp`/`nbf`, in seconds.
    pub leeway_s: u64,
}

impl Authenticator {
    /// An authenticator for node tokens only.
    pub fn new(node: NodeIssuer) -> Self {
        Authenticator {
            node,
            machines: Vec::new(),
            leeway_s: 30,
        }
    }

    /// Adds a machine issuer; Invalid when its `iss` is already routed.
    pub fn with_machine_issuer(mut self, issuer: MachineIssuer) -> Result<Self> {
        if issuer.issuer == self.node.issuer
            || self.machines.iter().any(|m| m.issuer == issuer.issuer)
        {
            return Err(Error::invalid(
                "issuer",
                format!("issuer {:?} is configured twice", issuer.issuer),
            ));
        }
        self.machines.push(issuer);
        Ok(self)
    }

    /// Mints a node token for `subject` with `roles`, valid for `ttl_s` seconds.
    pub fn issue(&self, subject: &str, roles: &[Role], ttl_s: i64) -> Result<String> {
        self.issue_scoped(subject, roles, &[], ttl_s)
    }

    /// Mints a node token for `subject` with `roles` and `scopes` (a machine that
    /// should only deploy, say, gets `conventions:write` and no role), valid for
    /// `ttl_s` seconds.
    pub fn issue_scoped(
        &self,
        subject: &str,
        roles: &[Role],
        scopes: &[Scope],
        ttl_s: i64,
    ) -> Result<String> {
        if ttl_s <= 0 {
            return Err(Error::invalid(
                "ttl",
                "a token must live at least one second",
            ));
        }
        let now = chrono::Utc::now().timestamp();
        let claims = NodeClaims {
            sub: subject.to_string(),
            iss: self.node.issuer.clone(),
            aud: self.node.audience.clone(),
            exp: now + ttl_s,
            iat: now,
            roles: roles.to_vec(),
            scopes: scopes.to_vec(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.node.encoding)
            .map_err(|e| Error::internal(format!("signing a token: {e}")))
    }

    /// Verifies a bearer token and returns its principal.
    ///
    /// Synchronous: a machine issuer with a key set (feature `jwks`) is checked
    /// against whatever set is cached, fresh or not, and nothing is fetched; a token of
    /// such an issuer is refused while no set has been fetched. Use
    /// [`Authenticator::authenticate`] where a key set should be brought up to date
    /// first (a request handler), or keep the caches fresh with
    /// [`Authenticator::refresh_keys`].
    pub fn verify(&self, token: &str) -> Result<Principal> {
        let issuer = unverified_issuer(token)?;
        match self.machines.iter().find(|m| m.issuer == issuer) {
            Some(machine) => self.verify_machine(machine, token),
            None if issuer == self.node.issuer => self.verify_node(token),
            None => Err(refused(format!("unknown issuer {issuer:?}"))),
        }
    }

    /// Verifies a bearer token like [`Authenticator::verify`], first bringing the key
    /// set of its issuer up to date when that issuer publishes one (feature `jwks`).
    ///
    /// The set is fetched when none is cached, when the cached one is older than its
    /// TTL (`Cache-Control: max-age`, bounded), or when the token names a `kid` it
    /// lacks (a key rotation); at most once per issuer per
    /// `JwksOptions::min_refresh_interval`, and concurrent calls share one fetch. A
    /// failed fetch keeps the cached set in use; with none cached the token is
    /// [`Error::Unauthenticated`], the reason naming the issuer and the cause. Tokens
    /// of other issuers are verified at once.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        // Only a token that could verify is worth a fetch: of a known issuer with a
        // key set, with a header naming one of its algorithms.
        #[cfg(feature = "jwks")]
        if let Ok(issuer) = unverified_issuer(token)
            && let Some(machine) = self.machines.iter().find(|m| m.issuer == issuer)
            && let IssuerKeys::Jwks(source) = &machine.keys
            && let Ok(header) = unverified_header(token)
            && machine
                .algorithms
                .iter()
                .any(|alg| alg.as_str() == header.alg)
        {
            let wanted = jwks::Wanted::KeyFor {
                kid: header.kid.as_deref(),
                pinned: &machine.algorithms,
            };
            source
                .refresh(&machine.issuer, wanted)
                .await
                .map_err(|cause| {
                    refused(format!(
                        "no key set of issuer {:?} could be fetched: {cause}",
                        machine.issuer
                    ))
                })?;
        }
        self.verify(token)
    }

    /// Fetches the key set of every machine issuer that publishes one (feature
    /// `jwks`) and has none cached or an expired one, within the same rate limit as
    /// [`Authenticator::authenticate`]. A server calls this at start and then
    /// periodically, so that [`Authenticator::verify`] finds fresh keys.
    ///
    /// Failures are logged; the error ([`Error::Unavailable`]) lists the issuers left
    /// without any key set. Without the `jwks` feature this does nothing.
    pub async fn refresh_keys(&self) -> Result<()> {
        #[cfg(feature = "jwks")]
        {
            let mut failures = Vec::new();
            for machine in &self.machines {
                if let IssuerKeys::Jwks(source) = &machine.keys
                    && let Err(cause) = source.refresh(&machine.issuer, jwks::Wanted::Fresh).await
                {
                    failures.push(format!("issuer {:?}: {cause}", machine.issuer));
                }
            }
            if !failures.is_empty() {
                return Err(Error::Unavailable {
                    what: "key set",
                    detail: failures.join("; "),
                    source: None,
                });
            }
        }
        Ok(())
    }

    /// The last moment a token with this verified `exp` is accepted.
    fn expiry(&self, exp: i64) -> Result<chrono::DateTime<chrono::Utc>> {
        i64::try_from(self.leeway_s)
            .ok()
            .and_then(|leeway| exp.checked_add(leeway))
            .and_then(|last| chrono::DateTime::from_timestamp(last, 0))
            .ok_or_else(|| refused("`exp` is out of range"))
    }

    fn validation(&self, algorithm: Algorithm, issuer: &str, audiences: &[String]) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = self.leeway_s;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation
    }

    fn verify_node(&self, token: &str) -> Result<Principal> {
        let validation = self.validation(
            Algorithm::HS256,
            &self.node.issuer,
            std::slice::from_ref(&self.node.audience),
        );
        let data = jsonwebtoken::decode::<NodeClaims>(token, &self.node.decoding, &validation)
            .map_err(decode_refused)?;
        let claims = data.claims;
        Ok(Principal {
            subject: claims.sub,
            issuer: claims.iss,
            roles: claims.roles.into_iter().collect(),
            scopes: claims.scopes.into_iter().collect(),
            expires_at: self.expiry(claims.exp)?,
        })
    }

    fn verify_machine(&self, machine: &MachineIssuer, token: &str) -> Result<Principal> {
        let header = unverified_header(token)?;
        if header.crit.is_some() {
            return Err(refused("the token has critical header extensions (`crit`)"));
        }
        let Some(alg) = machine
            .algorithms
            .iter()
            .copied()
            .find(|alg| alg.as_str() == header.alg)
        else {
            let pinned = algorithm_names(&machine.algorithms);
            return Err(refused(format!(
                "issuer {:?} accepts tokens signed with {pinned}, not {:?}",
                machine.issuer, header.alg
            )));
        };
        match &machine.keys {
            IssuerKeys::Static { kind, key } => {
                if !alg.fits(*kind) {
                    return Err(refused(format!(
                        "issuer {:?}: {alg} does not fit its {kind} key",
                        machine.issuer
                    )));
                }
                self.decode_machine(machine, token, alg, key)
            }
            #[cfg(feature = "jwks")]
            IssuerKeys::Jwks(source) => {
                let set = source.cached().ok_or_else(|| {
                    refused(format!(
                        "the key set of issuer {:?} has not been fetched yet",
                        machine.issuer
                    ))
                })?;
                let key = set
                    .select(header.kid.as_deref(), alg, &machine.algorithms)
                    .map_err(|why| refused(format!("issuer {:?}: {why}", machine.issuer)))?;
                self.decode_machine(machine, token, alg, key)
            }
        }
    }

    /// Checks the signature (with `key`, for `alg` alone) and the claims.
    fn decode_machine(
        &self,
        machine: &MachineIssuer,
        token: &str,
        alg: SignatureAlgorithm,
        key: &DecodingKey,
    ) -> Result<Principal> {
        let validation = self.validation(alg.jwt(), &machine.issuer, &machine.audiences);
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &validation,
        )
        .map_err(decode_refused)?;
        let claims = data.claims;
        let sub = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .ok_or_else(|| refused("`sub` must be a string"))?;
        let scopes = match claims.get(&machine.scope_claim) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(value) => match serde_json::from_value::<ScopeClaim>(value.clone()) {
                Ok(ScopeClaim::Text(text)) => text.split_whitespace().map(str::to_string).collect(),
                Ok(ScopeClaim::List(list)) => list,
                Err(_) => {
                    return Err(refused(format!(
                        "claim `{}` must be a string or an array of strings",
                        machine.scope_claim
                    )));
                }
            },
        };
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
            .ok_or_else(|| refused("`exp` must be a number"))?;
        Ok(Principal {
            subject: format!("{}#{sub}", machine.issuer),
            issuer: machine.issuer.clone(),
            roles: BTreeSet::new(),
            scopes: scopes.iter().filter_map(|s| s.parse().ok()).collect(),
            expires_at: self.expiry(exp)?,
        })
    }
}

fn refused(reason: impl Into<String>) -> Error {
    Error::Unauthenticated {
        reason: reason.into(),
    }
}

/// A token the JWT library refused: [`Error::TokenExpired`] when its `exp` (plus the
/// leeway) has passed, [`Error::Unauthenticated`] for anything else. The library
/// checks the signature before the claims, so only a genuine token is said to have
/// expired.
fn decode_refused(error: jsonwebtoken::errors::Error) -> Error {
    match error.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => Error::TokenExpired {
            reason: "the token has expired (its `exp` has passed); get a fresh one".into(),
        },
        _ => refused(error.to_string()),
    }
}

/// `RS256, ES256`.
fn algorithm_names(algorithms: &[SignatureAlgorithm]) -> String {
    algorithms
        .iter()
        .map(|alg| alg.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The header (`part` 0) or payload (`part` 1) of a compact JWS, decoded but not
/// verified.
fn unverified_part(token: &str, part: usize) -> Result<Vec<u8>> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, _signature] = parts.as_slice() else {
        return Err(refused("not a JWS compact token"));
    };
    let (name, text) = if part == 0 {
        ("header", header)
    } else {
        ("payload", payload)
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| refused(format!("{name} is not base64url")))
}

/// The `iss` claim read without verification: only to pick the key and algorithm.
fn unverified_issuer(token: &str) -> Result<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&unverified_part(token, 1)?)
        .map_err(|_| refused("payload is not a JSON object"))?
        .iss
        .ok_or_else(|| refused("token has no `iss`"))
}

/// What a token's header says, read without verification: checked against the
/// issuer's pinned algorithms, and the `kid` picks a key of its set.
#[derive(Debug, Deserialize)]
struct UnverifiedHeader {
    alg: String,
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

fn unverified_header(token: &str) -> Result<UnverifiedHeader> {
    serde_json::from_slice(&unverified_part(token, 0)?)
        .map_err(|_| refused("header is not a JSON object with an `alg`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Test keys, generated for these tests (`openssl genpkey -algorithm ed25519`).
    const MACHINE_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKzJpSGyexj828efbn8oWB/FpLzcMkZOufeRP8tE3rnT\n-----END PRIVATE KEY-----\n";
    const MACHINE_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAbLliwmeuQPLWmo7JHlY5m1zF9Rb69Q29WTEmyHB+Y4M=\n-----END PUBLIC KEY-----\n";
    const OTHER_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINHN1CnTI6nhF3Fwi+Luyk75XQ7EtM3lhFDc0d7zgQbG\n-----END PRIVATE KEY-----\n";
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-node";
    const CI: &str = "https://ci.example.org";

    fn auth() -> Authenticator {
        let node = NodeIssuer::new("osa-node", "authenticated", SECRET).unwrap();
        let machine = MachineIssuer::ed25519_pem(
            CI,
            MACHINE_PUBLIC.as_bytes(),
            vec!["https://osa.example.org".into()],
        )
        .unwrap();
        Authenticator::new(node)
            .with_machine_issuer(machine)
            .unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn machine_token(claims: serde_json::Value, key: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &EncodingKey::from_ed_pem(key.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn machine_claims() -> serde_json::Value {
        json!({"iss": CI, "sub": "deploy-bot", "aud": "https://osa.example.org",
               "exp": now() + 300, "scope": "hooks:write conventions:write other:thing"})
    }

    fn unauthenticated(result: Result<Principal>) -> String {
        match result {
            Err(Error::Unauthenticated { reason }) => reason,
            other => panic!("expected Unauthenticated, got {other:?}"),
        }
    }

    #[test]
    fn node_tokens_round_trip_with_roles() {
        let auth = auth();
        let token = auth.issue("alice", &[Role::Curator], 60).unwrap();
        let p = auth.verify(&token).unwrap();
        assert_eq!(p.subject, "alice");
        let left = (p.expires_at - chrono::Utc::now()).num_seconds() - auth.leeway_s as i64;
        assert!(
            (58..=60).contains(&left),
            "expires in {left} s and the leeway"
        );
        assert_eq!(p.issuer, "osa-node");
        assert!(p.has_role(Role::Depositor));
        assert!(!p.has_role(Role::Admin));
        assert!(matches!(
            p.require(Scope::HooksWrite),
            Err(Error::Forbidden { .. })
        ));
        let admin = auth
            .verify(&auth.issue("root", &[Role::Admin], 60).unwrap())
            .unwrap();
        for scope in Scope::ALL {
            admin.require(scope).unwrap();
        }
    }

    #[test]
    fn role_and_scope_names_are_their_wire_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().expect("parses"), role);
            assert_eq!(
                serde_json::to_value(role).expect("serializes"),
                serde_json::json!(role.as_str())
            );
        }
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().expect("parses"), scope);
            assert_eq!(
                serde_json::to_value(scope).expect("serializes"),
                serde_json::json!(scope.as_str())
            );
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn node_tokens_can_carry_scopes_alone() {
        let auth = auth();
        let token = auth
            .issue_scoped("ci", &[], &[Scope::ConventionsWrite, Scope::HooksWrite], 60)
            .unwrap();
        let p = auth.verify(&token).unwrap();
        assert_eq!(p.subject, "ci");
        assert!(p.roles.is_empty());
        p.require(Scope::ConventionsWrite).unwrap();
        p.require(Scope::HooksWrite).unwrap();
        assert!(matches!(
            p.require(Scope::ValidationsWrite),
            Err(Error::Forbidden { .. })
        ));
        assert!(matches!(
            auth.issue_scoped("ci", &[], &[Scope::RunsRead], 0),
            Err(Error::Invalid { .. })
        ));
    }

    #[test]
    fn machine_tokens_carry_known_scopes_and_a_namespaced_subject() {
        let auth = auth();
        let claims = machine_claims();
        let p = auth
            .verify(&machine_token(claims.clone(), MACHINE_PRIVATE))
            .unwrap();
        assert_eq!(
            p.expires_at.timestamp(),
            claims["exp"].as_i64().unwrap() + auth.leeway_s as i64
        );
        let p = auth
            .verify(&machine_token(machine_claims(), MACHINE_PRIVATE))
            .unwrap();
        assert_eq!(p.subject, "https://ci.example.org#deploy-bot");
        assert!(p.roles.is_empty());
        assert_eq!(
            p.scopes,
            [Scope::ConventionsWrite, Scope::HooksWrite].into()
        );
        p.require(Scope::HooksWrite).unwrap();
        let denied = p.require(Scope::RunsRead).unwrap_err();
        assert_eq!(denied.kind(), crate::ErrorKind::Forbidden);
        assert!(denied.to_string().contains("runs:read"), "{denied}");

        let mut claims = machine_claims();
        claims["scope"] = json!(["runs:read"]);
        let p = auth
            .verify(&machine_token(claims, MACHINE_PRIVATE))
            .unwrap();
        assert_eq!(p.scopes, [Scope::RunsRead].into());

        let mut claims = machine_claims();
        claims["scope"] = json!(42);
        let reason = unauthenticated(auth.verify(&machine_token(claims, MACHINE_PRIVATE)));
        assert!(reason.contains("`scope`"), "{reason}");
    }

    #[test]
    fn scope_claim_is_configurable() {
        let node = NodeIssuer::new("osa-node", "authenticated", SECRET).unwrap();
        let machine = MachineIssuer::ed25519_pem(CI, MACHINE_PUBLIC.as_bytes(), vec!["osa".into()])
            .unwrap()
            .with_scope_claim("scp");
        let auth = Authenticator::new(node)
            .with_machine_issuer(machine)
            .unwrap();
        let claims = json!({"iss": CI, "sub": "bot", "aud": "osa", "exp": now() + 60,
                            "scp": ["validations:write"], "scope": "hooks:write"});
        let p = auth
            .verify(&machine_token(claims, MACHINE_PRIVATE))
            .unwrap();
        assert_eq!(p.scopes, [Scope::ValidationsWrite].into());
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let auth = auth();
        // Expired (beyond the leeway): a case of its own, for machine and node tokens.
        let mut claims = machine_claims();
        claims["exp"] = json!(now() - 3600);
        match auth.verify(&machine_token(claims.clone(), MACHINE_PRIVATE)) {
            Err(Error::TokenExpired { reason }) => assert!(reason.contains("expired"), "{reason}"),
            other => panic!("expected TokenExpired, got {other:?}"),
        }
        let node_claims = json!({"iss": "osa-node", "sub": "alice", "aud": "authenticated",
                                 "exp": now() - 3600, "iat": now() - 7200, "roles": ["admin"]});
        let node_token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &node_claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(
            matches!(auth.verify(&node_token), Err(Error::TokenExpired { .. })),
            "{:?}",
            auth.verify(&node_token)
        );
        // Expired and signed by another key: not valid, whatever its `exp`.
        unauthenticated(auth.verify(&machine_token(claims, OTHER_PRIVATE)));
        // Signed by another key.
        unauthenticated(auth.verify(&machine_token(machine_claims(), OTHER_PRIVATE)));
        // Wrong audience.
        let mut claims = machine_claims();
        claims["aud"] = json!("https://elsewhere.example.org");
        let reason = unauthenticated(auth.verify(&machine_token(claims, MACHINE_PRIVATE)));
        assert!(reason.to_lowercase().contains("audience"), "{reason}");
        // Unknown issuer.
        let mut claims = machine_claims();
        claims["iss"] = json!("https://evil.example.org");
        let reason = unauthenticated(auth.verify(&machine_token(claims, MACHINE_PRIVATE)));
        assert!(reason.contains("unknown issuer"), "{reason}");
        // No expiry at all.
        let mut claims = machine_claims();
        claims.as_object_mut().unwrap().remove("exp");
        unauthenticated(auth.verify(&machine_token(claims, MACHINE_PRIVATE)));
        // Garbage.
        for garbage in ["", "a.b", "a.b.c.d", "!!!.@@@.###", "e30.e30.e30"] {
            unauthenticated(auth.verify(garbage));
        }
    }

    #[test]
    fn tokens_not_yet_valid_are_refused() {
        let auth = auth();
        let mut claims = machine_claims();
        claims["nbf"] = json!(now() + 86_400);
        let reason = unauthenticated(auth.verify(&machine_token(claims, MACHINE_PRIVATE)));
        assert!(reason.to_lowercase().contains("immature"), "{reason}");
        // Within the leeway, a token is accepted.
        let mut claims = machine_claims();
        claims["nbf"] = json!(now() + 5);
        auth.verify(&machine_token(claims, MACHINE_PRIVATE))
            .unwrap();
        // Node tokens too.
        let node_claims = json!({"sub": "alice", "iss": "osa-node", "aud": "authenticated",
                                 "exp": now() + 300, "iat": now(), "nbf": now() + 86_400,
                                 "roles": ["admin"]});
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &node_claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        unauthenticated(auth.verify(&token));
    }

    #[test]
    fn the_alg_header_is_never_trusted() {
        let auth = auth();
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        // `alg: none`, for either issuer.
        for iss in [CI, "osa-node"] {
            let mut claims = machine_claims();
            claims["iss"] = json!(iss);
            let token = format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT"})),
                b64(claims)
            );
            unauthenticated(auth.verify(&token));
        }
        // HS256 signed with the machine issuer's public key as the HMAC secret.
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &machine_claims(),
            &EncodingKey::from_secret(MACHINE_PUBLIC.as_bytes()),
        )
        .unwrap();
        unauthenticated(auth.verify(&confused));
        // A machine-signed (EdDSA) token claiming the node issuer.
        let mut claims = machine_claims();
        claims["iss"] = json!("osa-node");
        claims["aud"] = json!("authenticated");
        unauthenticated(auth.verify(&machine_token(claims, MACHINE_PRIVATE)));
        // A node token is not accepted with the wrong audience either.
        let other =
            Authenticator::new(NodeIssuer::new("osa-node", "someone-else", SECRET).unwrap());
        let token = other.issue("alice", &[Role::Admin], 60).unwrap();
        unauthenticated(auth.verify(&token));
    }

    #[test]
    fn configuration_is_checked() {
        assert!(NodeIssuer::new("n", "a", b"short").is_err());
        assert!(MachineIssuer::ed25519_pem(CI, b"not a key", vec!["a".into()]).is_err());
        assert!(MachineIssuer::ed25519_pem(CI, MACHINE_PUBLIC.as_bytes(), vec![]).is_err());
        let node = NodeIssuer::new("osa-node", "authenticated", SECRET).unwrap();
        let twice =
            MachineIssuer::ed25519_pem("osa-node", MACHINE_PUBLIC.as_bytes(), vec!["a".into()])
                .unwrap();
        assert!(Authenticator::new(node).with_machine_issuer(twice).is_err());
        assert_eq!("hooks:write".parse::<Scope>().unwrap(), Scope::HooksWrite);
        assert!("hooks:admin".parse::<Scope>().is_err());
    }

    /// Test-only RSA and EC key pairs (`openssl genpkey`), shared with tests/jwks.rs.
    mod keys {
        pub const RSA_PRIVATE: &str = include_str!("../tests/fixtures/jwks/rsa-1.key.pem");
        pub const RSA_PUBLIC: &str = include_str!("../tests/fixtures/jwks/rsa-1.pub.pem");
        pub const RSA_OTHER_PRIVATE: &str = include_str!("../tests/fixtures/jwks/rsa-2.key.pem");
        pub const EC_PRIVATE: &str = include_str!("../tests/fixtures/jwks/ec-1.key.pem");
        pub const EC_PUBLIC: &str = include_str!("../tests/fixtures/jwks/ec-1.pub.pem");
        pub const EC384_PRIVATE: &str = include_str!("../tests/fixtures/jwks/ec-384.key.pem");
        pub const EC384_PUBLIC: &str = include_str!("../tests/fixtures/jwks/ec-384.pub.pem");
    }

    fn with_issuer(machine: MachineIssuer) -> Authenticator {
        let node = NodeIssuer::new("osa-node", "authenticated", SECRET).unwrap();
        Authenticator::new(node)
            .with_machine_issuer(machine)
            .unwrap()
    }

    fn signed(alg: Algorithm, key: &EncodingKey) -> String {
        jsonwebtoken::encode(&Header::new(alg), &machine_claims(), key).unwrap()
    }

    fn rsa_signer(pem: &str) -> EncodingKey {
        EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
    }

    fn ec_signer(pem: &str) -> EncodingKey {
        EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()
    }

    const AUD: &str = "https://osa.example.org";

    #[test]
    fn rsa_and_ec_keys_verify_their_default_algorithms() {
        let rsa =
            MachineIssuer::rsa_pem(CI, keys::RSA_PUBLIC.as_bytes(), vec![AUD.into()]).unwrap();
        assert_eq!(rsa.algorithms(), [SignatureAlgorithm::RS256]);
        assert_eq!(rsa.key_kind(), Some(KeyKind::Rsa));
        let auth = with_issuer(rsa);
        let p = auth
            .verify(&signed(Algorithm::RS256, &rsa_signer(keys::RSA_PRIVATE)))
            .unwrap();
        assert_eq!(p.subject, "https://ci.example.org#deploy-bot");
        assert_eq!(
            p.scopes,
            [Scope::ConventionsWrite, Scope::HooksWrite].into()
        );
        // Another RSA key's signature.
        let reason = unauthenticated(auth.verify(&signed(
            Algorithm::RS256,
            &rsa_signer(keys::RSA_OTHER_PRIVATE),
        )));
        assert!(reason.to_lowercase().contains("signature"), "{reason}");

        let ec = MachineIssuer::ec_pem(CI, keys::EC_PUBLIC.as_bytes(), vec![AUD.into()]).unwrap();
        assert_eq!(ec.algorithms(), [SignatureAlgorithm::ES256]);
        let auth = with_issuer(ec);
        auth.verify(&signed(Algorithm::ES256, &ec_signer(keys::EC_PRIVATE)))
            .unwrap();

        let ec384 =
            MachineIssuer::ec_pem(CI, keys::EC384_PUBLIC.as_bytes(), vec![AUD.into()]).unwrap();
        assert_eq!(ec384.key_kind(), Some(KeyKind::P384));
        let auth = with_issuer(ec384);
        auth.verify(&signed(Algorithm::ES384, &ec_signer(keys::EC384_PRIVATE)))
            .unwrap();
        // A P-256 signature does not verify with the P-384 key.
        unauthenticated(auth.verify(&signed(Algorithm::ES256, &ec_signer(keys::EC_PRIVATE))));
    }

    #[test]
    fn the_kind_of_a_pem_key_is_detected() {
        let kind = |pem: &str| {
            MachineIssuer::public_key_pem(CI, pem.as_bytes(), vec![AUD.into()])
                .map(|issuer| (issuer.key_kind(), issuer.algorithms().to_vec()))
        };
        use SignatureAlgorithm::*;
        assert_eq!(
            kind(keys::RSA_PUBLIC).unwrap(),
            (Some(KeyKind::Rsa), vec![RS256])
        );
        assert_eq!(
            kind(keys::EC_PUBLIC).unwrap(),
            (Some(KeyKind::P256), vec![ES256])
        );
        assert_eq!(
            kind(keys::EC384_PUBLIC).unwrap(),
            (Some(KeyKind::P384), vec![ES384])
        );
        assert_eq!(
            kind(MACHINE_PUBLIC).unwrap(),
            (Some(KeyKind::Ed25519), vec![EdDSA])
        );
        for private in [keys::RSA_PRIVATE, keys::EC_PRIVATE, MACHINE_PRIVATE] {
            let error = kind(private).unwrap_err().to_string();
            assert!(error.contains("private key"), "{error}");
        }
        assert!(kind("not a key").is_err());
        // The specific constructors refuse other kinds.
        let aud = || vec![AUD.to_string()];
        assert!(MachineIssuer::rsa_pem(CI, keys::EC_PUBLIC.as_bytes(), aud()).is_err());
        assert!(MachineIssuer::ec_pem(CI, keys::RSA_PUBLIC.as_bytes(), aud()).is_err());
        assert!(MachineIssuer::ed25519_pem(CI, keys::RSA_PUBLIC.as_bytes(), aud()).is_err());
        assert!(MachineIssuer::rsa_pem(CI, keys::RSA_PRIVATE.as_bytes(), aud()).is_err());
    }

    #[test]
    fn algorithms_are_pinned_and_must_fit_the_key() {
        use SignatureAlgorithm::*;
        let rsa =
            || MachineIssuer::rsa_pem(CI, keys::RSA_PUBLIC.as_bytes(), vec![AUD.into()]).unwrap();
        let misfit = rsa()
            .with_algorithms([RS256, ES256])
            .unwrap_err()
            .to_string();
        assert!(
            misfit.contains("ES256") && misfit.contains("RSA"),
            "{misfit}"
        );
        assert!(rsa().with_algorithms([]).is_err());
        let ec = MachineIssuer::ec_pem(CI, keys::EC_PUBLIC.as_bytes(), vec![AUD.into()]).unwrap();
        assert!(ec.with_algorithms([ES384]).is_err());

        let auth = with_issuer(rsa().with_algorithms([PS256, RS256, PS256]).unwrap());
        let signer = rsa_signer(keys::RSA_PRIVATE);
        auth.verify(&signed(Algorithm::PS256, &signer)).unwrap();
        auth.verify(&signed(Algorithm::RS256, &signer)).unwrap();
        // The key would verify RS512, but the issuer is not pinned to it.
        let reason = unauthenticated(auth.verify(&signed(Algorithm::RS512, &signer)));
        assert!(
            reason.contains("RS256, PS256") && reason.contains("RS512"),
            "{reason}"
        );
        // Pinned to PS256 only, an RS256 token is refused.
        let auth = with_issuer(rsa().with_algorithms([PS256]).unwrap());
        unauthenticated(auth.verify(&signed(Algorithm::RS256, &signer)));
    }

    #[test]
    fn rsa_and_ec_issuers_refuse_algorithm_confusion() {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let cases = [
            (
                MachineIssuer::rsa_pem(CI, keys::RSA_PUBLIC.as_bytes(), vec![AUD.into()]).unwrap(),
                keys::RSA_PUBLIC,
                // An ES256 token for the RSA issuer.
                signed(Algorithm::ES256, &ec_signer(keys::EC_PRIVATE)),
            ),
            (
                MachineIssuer::ec_pem(CI, keys::EC_PUBLIC.as_bytes(), vec![AUD.into()]).unwrap(),
                keys::EC_PUBLIC,
                // An RS256 token for the ES256 issuer.
                signed(Algorithm::RS256, &rsa_signer(keys::RSA_PRIVATE)),
            ),
        ];
        for (issuer, public_pem, other_alg) in cases {
            let auth = with_issuer(issuer);
            // HS256 with the public key (PEM text, and its DER) as the HMAC secret.
            let der = base64::engine::general_purpose::STANDARD
                .decode(
                    public_pem
                        .lines()
                        .filter(|line| !line.starts_with("-----"))
                        .collect::<String>(),
                )
                .unwrap();
            for secret in [public_pem.as_bytes(), der.as_slice()] {
                for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                    let reason = unauthenticated(
                        auth.verify(&signed(alg, &EncodingKey::from_secret(secret))),
                    );
                    assert!(reason.contains("not \"HS"), "{reason}");
                }
            }
            let reason = unauthenticated(auth.verify(&other_alg));
            assert!(reason.contains("accepts tokens signed with"), "{reason}");
            // Unsigned.
            let none = format!("{}.{}.", b64(json!({"alg": "none"})), b64(machine_claims()));
            unauthenticated(auth.verify(&none));
            // Critical extensions are not understood.
            let crit = format!(
                "{}.{}.c2ln",
                b64(json!({"alg": "RS256", "crit": ["exp"], "exp": 1})),
                b64(machine_claims())
            );
            let reason = unauthenticated(auth.verify(&crit));
            assert!(reason.contains("crit"), "{reason}");
        }
    }

    #[test]
    fn algorithm_names_parse_and_shared_secrets_do_not() {
        for alg in SignatureAlgorithm::ALL {
            assert_eq!(alg.as_str().parse::<SignatureAlgorithm>().unwrap(), alg);
            assert_eq!(serde_json::to_value(alg).unwrap(), json!(alg.as_str()));
            assert_ne!(alg.jwt().family(), jsonwebtoken::AlgorithmFamily::Hmac);
        }
        let error = "HS256"
            .parse::<SignatureAlgorithm>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("shared-secret"), "{error}");
        let error = "none"
            .parse::<SignatureAlgorithm>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("never"), "{error}");
        let error = "RS257"
            .parse::<SignatureAlgorithm>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown algorithm"), "{error}");
        for kind in [KeyKind::Rsa, KeyKind::P256, KeyKind::P384, KeyKind::Ed25519] {
            assert!(kind.default_algorithm().fits(kind));
            let fitting = SignatureAlgorithm::ALL
                .iter()
                .filter(|alg| alg.fits(kind))
                .count();
            assert_eq!(fitting, if kind == KeyKind::Rsa { 6 } else { 1 }, "{kind}");
        }
    }

    #[test]
    fn an_authenticator_is_shared_across_threads() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Authenticator>();
        shareable::<MachineIssuer>();
    }

    #[tokio::test]
    async fn authenticate_verifies_like_verify_for_static_keys() {
        let auth = with_issuer(
            MachineIssuer::rsa_pem(CI, keys::RSA_PUBLIC.as_bytes(), vec![AUD.into()]).unwrap(),
        );
        let token = signed(Algorithm::RS256, &rsa_signer(keys::RSA_PRIVATE));
        assert_eq!(
            auth.authenticate(&token).await.unwrap(),
            auth.verify(&token).unwrap()
        );
        let node = auth.issue("alice", &[Role::Curator], 60).unwrap();
        assert_eq!(auth.authenticate(&node).await.unwrap().subject, "alice");
        unauthenticated(auth.authenticate("a.b.c").await);
        auth.refresh_keys().await.unwrap();
    }
}

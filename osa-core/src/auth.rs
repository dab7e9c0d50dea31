//! Authentication of callers with JWTs, and the scope gate.
//!
//! Two kinds of issuers:
//!
//! - the **node** itself: HS256 tokens signed with the node secret, for users; their
//!   roles come from the `roles` claim (`public < depositor < curator < admin <
//!   superadmin`);
//! - optional **machine issuers**: EdDSA (Ed25519) tokens from an external issuer (a CI
//!   system, a build service), routed by their `iss`; their scopes come from a
//!   configurable claim holding a space-separated string or an array.
//!
//! The algorithm is pinned per issuer: a token's `alg` header is never trusted, so
//! `none`, an HS256 token claiming a machine issuer (the "public key used as HMAC
//! secret" confusion) and an EdDSA token without a known issuer are all refused.
//! Expiry, not-before (`nbf`, when present) and audience are always checked, with
//! [`Authenticator::leeway_s`] of clock skew. Every refusal is
//! [`Error::Unauthenticated`] with the reason; a missing scope is
//! [`Error::Forbidden`].

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A user role; each includes the powers of the ones below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
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

/// An external issuer of machine tokens (EdDSA only).
#[derive(Clone)]
pub struct MachineIssuer {
    /// The `iss` value that routes a token here.
    pub issuer: String,
    /// Accepted audiences (a token's `aud` must name one).
    pub audiences: Vec<String>,
    /// The claim holding the scopes (`scope` by default; `scp` is common too).
    pub scope_claim: String,
    key: DecodingKey,
}

impl fmt::Debug for MachineIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineIssuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("scope_claim", &self.scope_claim)
            .finish_non_exhaustive()
    }
}

impl MachineIssuer {
    /// An issuer verified with an Ed25519 public key in PEM (`BEGIN PUBLIC KEY`).
    pub fn ed25519_pem(
        issuer: impl Into<String>,
        public_key_pem: &[u8],
        audiences: Vec<String>,
    ) -> Result<Self> {
        let issuer = issuer.into();
        if issuer.trim().is_empty() {
            return Err(Error::invalid("issuer", "must not be blank"));
        }
        if audiences.is_empty() {
            return Err(Error::invalid("audiences", "give at least one audience"));
        }
        let key = DecodingKey::from_ed_pem(public_key_pem)
            .map_err(|e| Error::invalid("public_key", format!("not an Ed25519 PEM key: {e}")))?;
        Ok(MachineIssuer {
            issuer,
            audiences,
            scope_claim: "scope".into(),
            key,
        })
    }

    /// Reads scopes from `claim` instead of `scope`.
    pub fn with_scope_claim(mut self, claim: impl Into<String>) -> Self {
        self.scope_claim = claim.into();
        self
    }
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
    pub fn verify(&self, token: &str) -> Result<Principal> {
        let issuer = unverified_issuer(token)?;
        match self.machines.iter().find(|m| m.issuer == issuer) {
            Some(machine) => self.verify_machine(machine, token),
            None if issuer == self.node.issuer => self.verify_node(token),
            None => Err(refused(format!("unknown issuer {issuer:?}"))),
        }
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
            .map_err(|e| refused(e.to_string()))?;
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
        let validation = self.validation(Algorithm::EdDSA, &machine.issuer, &machine.audiences);
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &machine.key,
            &validation,
        )
        .map_err(|e| refused(e.to_string()))?;
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

/// The `iss` claim read without verification: only to pick the key and algorithm.
fn unverified_issuer(token: &str) -> Result<String> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused("not a JWS compact token"));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| refused("payload is not base64url"))?;
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&bytes)
        .map_err(|_| refused("payload is not a JSON object"))?
        .iss
        .ok_or_else(|| refused("token has no `iss`"))
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
        // Expired (beyond the leeway).
        let mut claims = machine_claims();
        claims["exp"] = json!(now() - 3600);
        let reason = unauthenticated(auth.verify(&machine_token(claims, MACHINE_PRIVATE)));
        assert!(reason.to_lowercase().contains("expired"), "{reason}");
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
}

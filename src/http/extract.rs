//! What handlers take from a request: path parameters, the body, and the caller
//! (bearer-token auth and scope gates).

use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use osa_core::Error;
use osa_core::auth::{Authenticator, Principal, Role, Scope};
use serde::de::DeserializeOwned;

use super::MAX_BODY_BYTES;
use super::error::{ApiError, ApiResult};
use super::state::ApiState;

/// Parses a path segment; a bad one is 422 naming the parameter.
pub(super) fn path_param<'a, T, E: std::fmt::Display>(
    name: &str,
    value: &'a str,
    parse: impl FnOnce(&'a str) -> Result<T, E>,
) -> ApiResult<T> {
    parse(value).map_err(|e| ApiError::invalid(name, e.to_string()))
}

/// Path parameters; a segment that does not decode (such as invalid UTF-8) is 422
/// naming the parameter.
pub(super) struct ApiPath<T>(pub(super) T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        use axum::extract::path::ErrorKind as PathErrorKind;
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let message = e.body_text();
                Err(match e.into_kind() {
                    PathErrorKind::InvalidUtf8InPathParam { key } => {
                        ApiError::invalid(key, "not valid UTF-8")
                    }
                    PathErrorKind::ParseErrorAtKey { key, .. } => ApiError::invalid(key, message),
                    _ => ApiError::invalid("path", message),
                })
            }
            Err(other) => {
                Err(Error::internal(format!("path parameters: {}", other.body_text())).into())
            }
        }
    }
}

/// The raw request body, at most [`MAX_BODY_BYTES`]; over the limit is 413.
pub(super) struct Body(pub(super) Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|rejection: BytesRejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::http(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the request body is over the limit of {MAX_BODY_BYTES} bytes"),
                    )
                } else {
                    ApiError::http(rejection.status(), "bad_request", rejection.body_text())
                }
            })
    }
}

// Auth --------------------------------------------------------------------------------

/// Resolves who a request comes from. The API asks it once per request that needs a
/// caller, before the body is read.
///
/// [`BearerTokens`] (OSA's JWTs) is the default; a host application with its own
/// sessions or gateway headers implements this and passes it to
/// [`ApiState::with_principal_resolver`]. Scope and role gates apply to whatever
/// [`Principal`] it returns.
///
/// ```
/// use axum::http::request::Parts;
/// use osa::auth::{Principal, Role};
///
/// /// Trusts the user a gateway in front of the server has authenticated.
/// struct Gateway;
///
/// #[async_trait::async_trait]
/// impl osa::http::PrincipalResolver for Gateway {
///     async fn resolve(&self, parts: &Parts) -> osa::Result<Option<Principal>> {
///         let Some(user) = parts.headers.get("x-authenticated-user") else {
///             return Ok(None);
///         };
///         let user = user.to_str().map_err(|_| osa::Error::Unauthenticated {
///             reason: "x-authenticated-user is not text".into(),
///         })?;
///         Ok(Some(Principal {
///             subject: user.to_string(),
///             issuer: "gateway".into(),
///             roles: [Role::Curator].into(),
///             scopes: Default::default(),
///             // What it keeps open (an event stream) ends then.
///             expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
///         }))
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait PrincipalResolver: Send + Sync + 'static {
    /// The caller of a request: `Ok(None)` for an anonymous request (a route that
    /// needs a caller answers 401 `missing_token`), an [`Error::Unauthenticated`]
    /// (401 `invalid_token`) for credentials that are present but not valid, an
    /// [`Error::TokenExpired`] (401 `token_expired`) for expired ones.
    async fn resolve(&self, parts: &Parts) -> osa_core::Result<Option<Principal>>;
}

/// OSA's own callers: `Authorization: Bearer <JWT>` verified by an
/// [`Authenticator`] (with [`Authenticator::authenticate`], so a JWKS issuer's new
/// key is fetched when a token first names it). No header is anonymous; a header
/// that is not `Bearer <token>` (401 `missing_token`: no bearer token), or a token
/// that does not verify (401 `invalid_token`, or `token_expired`), is refused rather
/// than treated as anonymous. The scheme is matched case-insensitively.
#[derive(Debug, Clone)]
pub struct BearerTokens {
    auth: Arc<Authenticator>,
}

impl BearerTokens {
    /// Callers verified by `auth`.
    pub fn new(auth: impl Into<Arc<Authenticator>>) -> Self {
        BearerTokens { auth: auth.into() }
    }
}

#[async_trait::async_trait]
impl PrincipalResolver for BearerTokens {
    async fn resolve(&self, parts: &Parts) -> osa_core::Result<Option<Principal>> {
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Error::MissingCredentials {
                reason: "the Authorization header must be `Bearer <token>`".into(),
            })?;
        // `authenticate` fetches a machine issuer's key set when the token names a
        // key it has not seen (JWKS), then verifies.
        self.auth.authenticate(token).await.map(Some)
    }
}

/// The caller: what the state's [`PrincipalResolver`] makes of the request, `None`
/// when anonymous.
#[derive(Debug, Clone)]
pub struct Caller(pub Option<Principal>);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        Ok(Caller(state.resolver.resolve(parts).await?))
    }
}

/// A scope a route requires.
pub(super) trait Gate {
    const SCOPE: Scope;
}

macro_rules! gates {
    ($($name:ident),*) => {$(
        pub(super) struct $name;
        impl Gate for $name {
            const SCOPE: Scope = Scope::$name;
        }
    )*};
}
gates!(
    ConventionsWrite,
    HooksWrite,
    ValidationsWrite,
    DeploymentsRead,
    RunsRead
);

/// A caller that passed `G`'s scope gate: 401 `missing_token` without a token, 403
/// `access_denied` without the scope (or the admin role). It only reads the headers,
/// so a request it refuses never has its body read.
pub(super) struct Authorized<G>(pub(super) Principal, pub(super) PhantomData<G>);

impl<G: Gate> FromRequestParts<ApiState> for Authorized<G> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        let principal = principal.ok_or_else(|| {
            ApiError::from(Error::MissingCredentials {
                reason: format!("this route needs a bearer token with scope {}", G::SCOPE),
            })
        })?;
        principal.require(G::SCOPE)?;
        Ok(Authorized(principal, PhantomData))
    }
}

/// Refuses a local process runtime to a non-admin: such a release runs a program of
/// the caller's choosing as the server's user.
pub(super) fn require_admin_for_process(principal: &Principal, process: bool) -> ApiResult<()> {
    if process && !principal.has_role(Role::Admin) {
        return Err(Error::Forbidden {
            reason: format!(
                "{} may not create a release with a local process runtime (`command`): it \
                 would run a program as the server's user, which needs the admin role; \
                 an OCI release (`image`) needs only the scope",
                principal.subject
            ),
        }
        .into());
    }
    Ok(())
}

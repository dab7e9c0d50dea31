//! What the handlers share: the engine, the deployer, the storage reads, the
//! caller resolution, the upload prefix and the event-stream budget.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use osa_core::auth::{Authenticator, Principal};

use super::extract::{BearerTokens, PrincipalResolver};
use osa_core::deploy::Deployer;
use osa_core::saga::Engine;
use osa_core::{Error, ErrorKind, Storage};

use super::error::{ApiError, ApiResult};
use super::sse::StreamTicket;

/// The object-store prefix `POST /validations` takes record files from by default.
pub const DEFAULT_UPLOAD_PREFIX: &str = "uploads/";

/// How long a presigned upload URL works, by default (15 minutes).
pub const DEFAULT_PRESIGNED_UPLOAD_TTL: Duration = Duration::from_secs(15 * 60);

/// Event streams open at once, by default.
pub const DEFAULT_MAX_STREAMS: usize = 256;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub(super) engine: Engine,
    pub(super) deployer: Deployer,
    /// The storage the handlers read besides the engine and the deployer.
    pub(super) storage: Arc<dyn Storage>,
    /// Who a request comes from.
    pub(super) resolver: Arc<dyn PrincipalResolver>,
    /// Normalised: no leading `/`, ends with one `/`.
    pub(super) upload_prefix: String,
    /// Set once by [`ApiState::close_streams`]; every event stream ends when it is.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// One permit per open event stream.
    streams: Arc<tokio::sync::Semaphore>,
    max_streams: usize,
    /// How long a presigned upload URL works (`POST /uploads/{name}/presigned`).
    pub(super) presigned_upload_ttl: Duration,
    /// How often deployment event streams look for new events (validation event
    /// streams follow the engine's `event_poll`).
    pub stream_poll: Duration,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("upload_prefix", &self.upload_prefix)
            .field("stream_poll", &self.stream_poll)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State over any storage backend.
    pub fn new<S: Storage>(
        engine: Engine,
        deployer: Deployer,
        storage: Arc<S>,
        auth: Authenticator,
    ) -> Self {
        ApiState {
            engine,
            deployer,
            storage,
            resolver: Arc::new(BearerTokens::new(auth)),
            upload_prefix: DEFAULT_UPLOAD_PREFIX.to_string(),
            closing: Arc::new(tokio::sync::watch::channel(false).0),
            streams: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_STREAMS)),
            max_streams: DEFAULT_MAX_STREAMS,
            stream_poll: Duration::from_millis(250),
            presigned_upload_ttl: DEFAULT_PRESIGNED_UPLOAD_TTL,
        }
    }

    /// Presigned upload URLs work for `ttl` (default
    /// [`DEFAULT_PRESIGNED_UPLOAD_TTL`]).
    pub fn with_presigned_upload_ttl(mut self, ttl: Duration) -> Self {
        self.presigned_upload_ttl = ttl;
        self
    }

    /// Resolves callers with `resolver` instead of OSA's bearer tokens (the
    /// authenticator given to [`ApiState::new`] is then unused): for a host
    /// application that authenticates its users itself.
    pub fn with_principal_resolver(mut self, resolver: impl PrincipalResolver) -> Self {
        self.resolver = Arc::new(resolver);
        self
    }

    /// At most `max` event streams open at once (default [`DEFAULT_MAX_STREAMS`]; a
    /// `max` above what a semaphore holds counts as that); one more is answered `503
    /// unavailable`. Each open stream polls the store.
    pub fn with_max_streams(mut self, max: usize) -> Self {
        let max = max.min(tokio::sync::Semaphore::MAX_PERMITS);
        self.streams = Arc::new(tokio::sync::Semaphore::new(max));
        self.max_streams = max;
        self
    }

    /// A place for one more event stream of `principal`, or 503.
    pub(super) fn open_stream(&self, principal: &Principal) -> ApiResult<StreamTicket> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            ApiError::http(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Unavailable.as_str(),
                format!(
                    "{} event streams are open, as many as this server allows; try again later",
                    self.max_streams
                ),
            )
        })?;
        Ok(StreamTicket {
            _permit: permit,
            expires_at: principal.expires_at,
            closed: Box::pin(self.streams_closed()),
        })
    }

    /// Ends every event stream, open or opened later (each ends after the events it
    /// has sent). A server calls this when it shuts down: a graceful shutdown waits for
    /// open connections, and a stream of a run that never ends would keep it waiting.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`close_streams`](Self::close_streams) is called.
    fn streams_closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            // An error means every sender is gone: nothing can close streams any more.
            if closing.wait_for(|closing| *closing).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// State over an embedded archive.
    #[cfg(feature = "sqlite")]
    pub fn from_local(archive: &crate::local::LocalArchive, auth: Authenticator) -> Self {
        Self::new(
            archive.engine().clone(),
            archive.deployer().clone(),
            archive.storage().clone(),
            auth,
        )
    }

    /// Takes record files of `POST /validations` from keys under `prefix` (one or more
    /// `/`-separated segments, such as `uploads` or `incoming/public`) instead of
    /// [`DEFAULT_UPLOAD_PREFIX`]. Invalid for an empty prefix, an empty, `.` or `..`
    /// segment, or a character the object store would escape.
    pub fn with_upload_prefix(mut self, prefix: &str) -> osa_core::Result<Self> {
        let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
        let bad = |message: &str| Err(Error::invalid("upload_prefix", message));
        if trimmed.is_empty() {
            return bad("must not be empty");
        }
        if trimmed
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return bad("every segment must be non-empty and neither `.` nor `..`");
        }
        if object_store::path::Path::from(trimmed).as_ref() != trimmed {
            return bad("contains a character the object store escapes");
        }
        self.upload_prefix = format!("{trimmed}/");
        Ok(self)
    }

    /// The prefix record files of `POST /validations` must be under (ends with `/`).
    pub fn upload_prefix(&self) -> &str {
        &self.upload_prefix
    }
}

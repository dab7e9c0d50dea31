//! The OCI runner's connection to the container engine: where it listens
//! ([`Endpoint`], and the bollard client for it), and [`RawClient`], plain GETs of the
//! JSON documents bollard's typed models cannot read (a container's state as Podman
//! reports it, [`StateReport`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bollard::{ClientVersion, Docker};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;

use super::{CALL_TIMEOUT, OciError};
use crate::runtime::MAX_TIMEOUT_SECONDS;

/// The Docker Engine API version spoken: 1.41 (Docker 20.10, and what Podman 4 and 5
/// report); every field the runner uses exists there.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// The client's own request timeout, which bollard applies to every request until the
/// response head arrives (the wait request's head may come only when the container
/// exits). Longer than any hook may run; the runner bounds every call itself.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(MAX_TIMEOUT_SECONDS as u64 + 3600);

/// Where the engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Endpoint {
    /// `unix:///path`, a bare absolute path, `tcp://host:port` or `http://host:port`.
    pub(super) fn parse(host: &str) -> Result<Self, OciError> {
        let host = host.trim();
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if host.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(host)));
        }
        if host.starts_with("tcp://") || host.starts_with("http://") {
            return Ok(Endpoint::Tcp(host.to_string()));
        }
        Err(OciError::new(
            format!(
                "unsupported container engine address {host:?}: expected unix:///path/to.sock, \
                 an absolute socket path, or tcp://host:port (TLS is not supported)"
            ),
            None,
        ))
    }

    /// A new client for this endpoint (no connection is made until a request).
    pub(super) fn client(&self) -> Result<Docker, OciError> {
        let client = match self {
            Endpoint::Unix(path) => {
                Docker::connect_with_unix(&path.to_string_lossy(), 0, &API_VERSION)
            }
            Endpoint::Tcp(address) => Docker::connect_with_http(address, 0, &API_VERSION),
        };
        client
            .map(|docker| docker.with_timeout(CLIENT_TIMEOUT))
            .map_err(|e| {
                OciError::new(
                    format!("cannot use the container engine at {self}: {e}"),
                    Some(e),
                )
            })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp(address) => f.write_str(address),
        }
    }
}

/// What the runner needs of a container's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StateReport {
    pub(super) status: String,
    pub(super) exit_code: i64,
    pub(super) oom_killed: bool,
}

impl StateReport {
    /// Reads `State` of a container inspection (`GET /containers/{id}/json`).
    fn from_inspection(doc: &serde_json::Value) -> Result<Self, String> {
        let state = doc
            .get("State")
            .ok_or("the container inspection has no `State`")?;
        let status = state
            .get("Status")
            .and_then(serde_json::Value::as_str)
            .ok_or("the container inspection has no `State.Status`")?;
        Ok(StateReport {
            status: status.to_string(),
            exit_code: state
                .get("ExitCode")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(-1),
            oom_killed: state
                .get("OOMKilled")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// The container's process has ended: Docker's `exited` and `dead`, Podman's
    /// `stopped` (exited, not cleaned up yet) and `exited`.
    pub(super) fn has_stopped(&self) -> bool {
        matches!(self.status.as_str(), "exited" | "stopped" | "dead")
    }
}

/// Plain GETs of JSON documents from the engine, for what bollard's typed models
/// cannot read (see [`OciRunner::stopped_state`](super::OciRunner::stopped_state)).
#[derive(Clone)]
pub(super) enum RawClient {
    Unix {
        client: Client<UnixConnector, Empty<Bytes>>,
        /// The socket path, hex-encoded as hyperlocal's connector expects it.
        host: String,
    },
    Http {
        client: Client<HttpConnector, Empty<Bytes>>,
        base: String,
    },
}

impl fmt::Debug for RawClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawClient::Unix { .. } => f.write_str("RawClient::Unix"),
            RawClient::Http { base, .. } => write!(f, "RawClient::Http({base})"),
        }
    }
}

impl RawClient {
    pub(super) fn new(endpoint: &Endpoint) -> Self {
        match endpoint {
            Endpoint::Unix(path) => RawClient::Unix {
                client: Client::builder(TokioExecutor::new()).build(UnixConnector),
                host: hex::encode(path.to_string_lossy().as_bytes()),
            },
            Endpoint::Tcp(address) => RawClient::Http {
                client: Client::builder(TokioExecutor::new()).build_http(),
                base: format!(
                    "http://{}",
                    address
                        .trim_start_matches("tcp://")
                        .trim_start_matches("http://")
                        .trim_end_matches('/')
                ),
            },
        }
    }

    /// `GET /v1.41{path}` as JSON, within [`CALL_TIMEOUT`].
    async fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        let versioned = format!(
            "/v{}.{}{path}",
            API_VERSION.major_version, API_VERSION.minor_version
        );
        let request = async {
            let response = match self {
                RawClient::Unix { client, host } => {
                    let uri: hyper::Uri = format!("unix://{host}:0{versioned}")
                        .parse()
                        .map_err(|e| format!("bad request path {versioned:?}: {e}"))?;
                    client.get(uri).await
                }
                RawClient::Http { client, base } => {
                    let uri: hyper::Uri = format!("{base}{versioned}")
                        .parse()
                        .map_err(|e| format!("bad request path {versioned:?}: {e}"))?;
                    client.get(uri).await
                }
            }
            .map_err(|e| format!("GET {versioned}: {e}"))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("GET {versioned}: reading the body: {e}"))?
                .to_bytes();
            if !status.is_success() {
                return Err(format!(
                    "GET {versioned}: {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(500)])
                ));
            }
            serde_json::from_slice(&body).map_err(|e| format!("GET {versioned}: {e}"))
        };
        tokio::time::timeout(CALL_TIMEOUT, request)
            .await
            .map_err(|_| {
                format!(
                    "GET {versioned}: no answer within {} s",
                    CALL_TIMEOUT.as_secs()
                )
            })?
    }

    pub(super) async fn container_state(&self, id: &str) -> Result<StateReport, String> {
        let doc = self.get_json(&format!("/containers/{id}/json")).await?;
        StateReport::from_inspection(&doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("unix:///run/podman/podman.sock").unwrap(),
            Endpoint::Unix("/run/podman/podman.sock".into())
        );
        assert_eq!(
            Endpoint::parse("/var/run/docker.sock").unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2375").unwrap(),
            Endpoint::Tcp("tcp://127.0.0.1:2375".into())
        );
        let err = Endpoint::parse("ssh://host").unwrap_err();
        assert!(err.to_string().contains("unsupported"), "{err}");
        assert_eq!(
            Endpoint::Unix("/x.sock".into()).to_string(),
            "unix:///x.sock"
        );
    }

    #[test]
    fn container_states() {
        let doc = serde_json::json!({"State": {"Status": "stopped", "ExitCode": 137, "OOMKilled": false}});
        let state = StateReport::from_inspection(&doc).unwrap();
        assert!(state.has_stopped());
        assert_eq!(state.exit_code, 137);
        let doc =
            serde_json::json!({"State": {"Status": "exited", "ExitCode": 0, "OOMKilled": true}});
        let state = StateReport::from_inspection(&doc).unwrap();
        assert!(state.has_stopped() && state.oom_killed);
        for running in ["running", "created", "stopping", "paused"] {
            let doc = serde_json::json!({"State": {"Status": running}});
            assert!(
                !StateReport::from_inspection(&doc).unwrap().has_stopped(),
                "{running}"
            );
        }
        assert!(StateReport::from_inspection(&serde_json::json!({})).is_err());
    }
}

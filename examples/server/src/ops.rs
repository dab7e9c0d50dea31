//! What operators need around the API: Prometheus metrics, liveness and readiness,
//! request ids, access logs, timeouts and CORS.
//!
//! Routes outside the API prefix (not in its OpenAPI document):
//!
//! | route | answers |
//! |---|---|
//! | `GET /metrics` | Prometheus text: this process's metrics (see `osa::telemetry`), HTTP requests, and the archive's jobs by kind and state (`osa_jobs`, read from the queue at each scrape) |
//! | `GET /livez` | 200 while the process serves |
//! | `GET /readyz` | 200 when the database answers within 2 s, else 503 |

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::{ConfigError, ServerSection};
use crate::node::Backend;

/// HTTP requests, by method, route template and status.
pub const HTTP_REQUESTS: &str = "osa_http_requests_total";
/// HTTP request durations until the response head, by method and route template.
pub const HTTP_DURATION: &str = "osa_http_request_duration_seconds";
/// The archive's jobs, by kind and state.
pub const JOBS: &str = "osa_jobs";

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the Prometheus recorder of this process (once) and describes OSA's metrics.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ])
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    osa::telemetry::describe();
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests, by method, route and status");
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request durations until the response head, by method and route"
    );
    Ok(handle)
}

#[derive(Clone)]
struct Ops {
    metrics: PrometheusHandle,
    backend: Backend,
}

/// `/metrics`, `/livez`, `/readyz`.
pub fn routes(metrics: PrometheusHandle, backend: Backend) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Arc::new(Ops { metrics, backend }))
}

async fn render_metrics(State(ops): State<Arc<Ops>>) -> Response {
    let mut text = ops.metrics.render();
    // The queue's counts are the archive's, read now: a gauge set from an earlier
    // scrape would keep a state that has emptied since.
    match ops.backend.job_counts().await {
        Ok(counts) => {
            text.push_str(&format!(
                "# HELP {JOBS} The archive's jobs, by kind and state\n# TYPE {JOBS} gauge\n"
            ));
            for c in counts {
                text.push_str(&format!(
                    "{JOBS}{{kind=\"{}\",state=\"{}\"}} {}\n",
                    escape(&c.kind),
                    c.state.as_str(),
                    c.count
                ));
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading job counts for /metrics failed"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn ready(State(ops): State<Arc<Ops>>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), ops.backend.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable (no answer within 2 s)\n",
        )
            .into_response(),
    }
}

/// Counts and times each request by its route template (never the raw path, so ids
/// do not multiply the series).
async fn record_request(request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The layers around the whole app: metrics per route, access logs with a request id
/// (taken from `x-request-id` or made), a timeout until the response head, optional
/// CORS.
pub fn layered(app: Router, server: &ServerSection) -> Result<Router, ConfigError> {
    let mut app = app
        .layer(axum::middleware::from_fn(record_request))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            server.request_timeout,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid));
    if !server.cors_origins.is_empty() {
        let origins = server
            .cors_origins
            .iter()
            .enumerate()
            .map(|(i, origin)| {
                HeaderValue::from_str(origin).map_err(|e| {
                    ConfigError::new(
                        format!("server.cors_origins.{i}"),
                        format!("{origin:?}: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods(tower_http::cors::Any)
                .allow_headers(tower_http::cors::Any),
        );
    }
    Ok(app)
}

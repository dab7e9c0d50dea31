//! Event streams (SSE) of validation runs and deployments: each holds a place among
//! the open streams and ends when the server closes its streams or the token that
//! opened it expires.

use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::StreamExt;
use osa_core::Error;

use super::error::{error_json, public_message};

/// One server-sent event, as the OpenAPI document describes the items of an event
/// stream: an `event` name (absent for the stream's items; `error` for the last event
/// of a stream cut short) and its `data`, one line of JSON.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct SseEvent {
    /// `error` for a stream cut short (its data is an `Error`); absent otherwise.
    event: Option<String>,
    /// The item as JSON: a `RunEvent` (validation runs) or a `DeploymentEvent`
    /// (deployments).
    data: String,
}

/// What an open event stream holds: its place among the open streams, the expiry of
/// the token that opened it, and the server's close signal.
pub(super) struct StreamTicket {
    pub(super) _permit: tokio::sync::OwnedSemaphorePermit,
    pub(super) expires_at: chrono::DateTime<chrono::Utc>,
    pub(super) closed: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// The `error` event of a stream, `{code, message}` as in error responses (a generic
/// message for faults of the server; `token_expired` with its `detail` copy when the
/// token that opened the stream expired).
fn sse_error(error: &Error) -> Event {
    Event::default()
        .event("error")
        .data(error_json(error.code(), &public_message(error), error.field()).to_string())
}

/// An SSE response of `stream`, ended early when the server closes its streams, or
/// when the token that opened it expires (with a last `error` event saying so: a token
/// is checked once, so a stream must not outlive it).
pub(super) fn sse<S, T>(
    stream: S,
    ticket: StreamTicket,
) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>>
where
    S: futures::Stream<Item = osa_core::Result<T>> + Send + 'static,
    T: serde::Serialize,
{
    let StreamTicket {
        _permit: permit,
        expires_at,
        closed,
    } = ticket;
    let until_expiry = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = {
        let expired = expired.clone();
        async move {
            tokio::select! {
                () = closed => {}
                () = tokio::time::sleep(until_expiry) => {
                    expired.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    };
    let last = futures::stream::once(async move {
        // Held until the stream ends or is dropped.
        drop(permit);
        expired.load(std::sync::atomic::Ordering::SeqCst).then(|| {
            sse_error(&Error::TokenExpired {
                reason: "the token that opened this stream expired; open it again with \
                             a fresh token"
                    .into(),
            })
        })
    })
    .filter_map(|event| async move { event });
    let events = stream
        .take_until(stop)
        .map(|item| match item {
            Ok(value) => Event::default().json_data(value).unwrap_or_else(|e| {
                sse_error(&Error::internal(format!("serialising an event: {e}")))
            }),
            Err(e) => sse_error(&e),
        })
        .chain(last)
        .map(Ok);
    Sse::new(events).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use serde_json::{Value, json};

    use super::*;
    use crate::http::ApiError;

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    // Error responses (`super::super::error`) and the `error` events of streams.
    #[tokio::test]
    async fn server_faults_do_not_leak_their_detail() {
        let secret = "/srv/osa/archive.db: SELECT * FROM hook_runs";
        let internal = ApiError::from(Error::internal(secret)).into_response();
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let text = body_text(internal).await;
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["code"], "internal");
        assert!(!text.contains("/srv/osa"), "{text}");

        let unavailable = ApiError::from(Error::Unavailable {
            what: "database",
            detail: secret.into(),
            source: None,
        })
        .into_response();
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = body_text(unavailable).await;
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["code"],
            "unavailable"
        );
        assert!(!text.contains("SELECT"), "{text}");

        // Errors about the request keep their message.
        let invalid =
            body_text(ApiError::from(Error::invalid("limit", "must be 1..=9")).into_response())
                .await;
        assert!(invalid.contains("must be 1..=9"), "{invalid}");

        // The same in event streams.
        let stream = futures::stream::iter([Ok(json!({"seq": 1})), Err(Error::internal(secret))]);
        let ticket = StreamTicket {
            _permit: Arc::new(tokio::sync::Semaphore::new(1))
                .try_acquire_owned()
                .unwrap(),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            closed: Box::pin(std::future::pending()),
        };
        let text = body_text(sse(stream, ticket).into_response()).await;
        assert!(text.contains("event: error"), "{text}");
        assert!(text.contains("\"code\":\"internal\""), "{text}");
        assert!(!text.contains("/srv/osa"), "{text}");
    }
}

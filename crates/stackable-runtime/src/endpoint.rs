//! A process's plain-HTTP endpoint, on hyper: `GET /metrics` (a prometheus-client
//! [`Registry`] in the OpenMetrics text format,
//! <https://prometheus.io/docs/specs/om/open_metrics_spec/>), `/livez` and `/healthz` (`ok`
//! while the process serves), `/readyz` (`ok`, or 503 while its [`Readiness`] is not set), 404
//! for anything else. These are the paths the kubelet's probes call
//! (<https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/>).
//!
//! Bounded like any listener facing a network: a connection limit (further clients wait in the
//! accept backlog), a header read timeout, a time limit per connection; an accept error (for
//! example too many open files) is logged and retried, never the end of the endpoint.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{encoding::text::encode, registry::Registry};
use snafu::{ResultExt, Snafu};
use tokio::{net::TcpListener, sync::Semaphore};

/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// Time to receive a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may stay open (scrapes are quick; keep-alive is fine within it).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The OpenMetrics content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the endpoint could not start.
#[derive(Debug, Snafu)]
pub enum Error {
    /// The address could not be bound.
    #[snafu(display("cannot listen on {address}"))]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Whether the process is ready (`/readyz` answers 200) or not (503). Clones share one state.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A readiness that starts as `ready`.
    pub fn new(ready: bool) -> Self {
        Readiness(Arc::new(AtomicBool::new(ready)))
    }

    /// Sets the state.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// The state.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the endpoint answers from.
#[derive(Debug)]
struct State {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// A bound endpoint; [`Endpoint::serve`] answers requests until the task is dropped.
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
    state: Arc<State>,
}

impl Endpoint {
    /// Binds `address`, serving `registry` on `/metrics` and `readiness` on `/readyz`.
    pub async fn bind(
        address: SocketAddr,
        registry: Arc<Registry>,
        readiness: Readiness,
    ) -> Result<Self, Error> {
        let listener = TcpListener::bind(address)
            .await
            .context(BindSnafu { address })?;
        Ok(Endpoint {
            listener,
            state: Arc::new(State {
                registry,
                readiness,
            }),
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until the task is dropped.
    pub async fn serve(self) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tracing::info!(address = ?self.local_addr(), "serving /metrics, /livez, /healthz and /readyz");
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (tcp, _) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed on the metrics endpoint; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let state = self.state.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(&request, &state)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(tcp), service);
                match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "metrics connection ended with an error")
                    }
                    Err(_) => tracing::debug!("metrics connection closed after its time limit"),
                    Ok(Ok(())) => {}
                }
            });
        }
    }
}

/// The registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

fn answer(request: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => (StatusCode::OK, OPENMETRICS, render(&state.registry)),
        "/livez" | "/healthz" => (StatusCode::OK, TEXT, "ok\n".to_owned()),
        "/readyz" if state.readiness.get() => (StatusCode::OK, TEXT, "ok\n".to_owned()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "not ready\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    async fn get(address: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or_default();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let content_type = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type: "))
            .unwrap_or_default()
            .to_owned();
        (status, content_type, body.to_owned())
    }

    #[tokio::test]
    async fn probes_follow_readiness_and_metrics_are_openmetrics() {
        let counter = Counter::<u64>::default();
        let mut registry = Registry::with_prefix("test");
        registry.register("things", "things done", counter.clone());
        counter.inc();
        let readiness = Readiness::new(false);
        let endpoint = Endpoint::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Arc::new(registry),
            readiness.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let address = endpoint
            .local_addr()
            .unwrap_or_else(|| panic!("no address"));
        let server = tokio::spawn(endpoint.serve());

        assert_eq!(get(address, "/livez").await.0, 200);
        assert_eq!(get(address, "/healthz").await.0, 200);
        assert_eq!(get(address, "/readyz").await.0, 503);
        readiness.set(true);
        assert_eq!(get(address, "/readyz").await.0, 200);
        assert_eq!(get(address, "/other").await.0, 404);
        let (status, content_type, body) = get(address, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(content_type, OPENMETRICS);
        assert!(body.contains("test_things_total 1"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        server.abort();
    }
}

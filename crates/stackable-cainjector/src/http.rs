//! The injector's HTTP endpoint, on hyper: `GET /metrics` (OpenMetrics text), `/livez`,
//! `/readyz` and `/healthz` (plain `ok`; the injector has nothing that makes it unready once it
//! runs), 404 for anything else.
//!
//! Bounded like any listener facing a network: a connection limit (further clients wait in the
//! accept backlog), a header read timeout, a time limit per connection; an accept error (for
//! example too many open files) is logged and retried, never the end of the endpoint.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use snafu::{ResultExt, Snafu};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::metrics::Metrics;

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

/// A bound endpoint; [`Endpoint::serve`] answers requests until the task is dropped.
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
    metrics: Metrics,
}

impl Endpoint {
    /// Binds `address`.
    pub async fn bind(address: SocketAddr, metrics: Metrics) -> Result<Self, Error> {
        let listener = TcpListener::bind(address)
            .await
            .context(BindSnafu { address })?;
        Ok(Endpoint { listener, metrics })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until the task is dropped.
    pub async fn serve(self) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tracing::info!(address = ?self.local_addr(), "serving /metrics, /livez and /readyz");
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
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |request| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(answer(&request, &metrics)) }
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

fn answer(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => (StatusCode::OK, OPENMETRICS, metrics.render()),
        "/livez" | "/readyz" => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".to_owned(),
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

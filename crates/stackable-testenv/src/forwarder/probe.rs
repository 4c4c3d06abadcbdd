//! The HTTP GET of a readiness probe, as the kubelet runs it: plain HTTP/1.1 on a fresh
//! connection, success for a status from 200 to 399.
//!
//! See [Configure Liveness, Readiness and Startup Probes](https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/#http-probes).

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The outcome of one probe that got no answer, or an answer outside 200..=399.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProbeFailure {
    /// The connection, the request or the response failed, or it timed out.
    NoAnswer(String),
    /// The server answered with this status (and the start of the body, which says why).
    Status(StatusCode, String),
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoAnswer(reason) => write!(f, "no answer: {reason}"),
            Self::Status(status, body) if body.is_empty() => write!(f, "HTTP {status}"),
            Self::Status(status, body) => write!(f, "HTTP {status}: {body}"),
        }
    }
}

/// `GET http://{addr}{path}` within `timeout`; `Ok` for a status from 200 to 399.
pub(crate) async fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<StatusCode, ProbeFailure> {
    let (status, body) = tokio::time::timeout(timeout, status_of(addr, path))
        .await
        .map_err(|_| ProbeFailure::NoAnswer(format!("timed out after {timeout:?}")))?
        .map_err(ProbeFailure::NoAnswer)?;
    if (200..400).contains(&status.as_u16()) {
        Ok(status)
    } else {
        Err(ProbeFailure::Status(status, body))
    }
}

/// How much of a failing probe's body is kept (the kubelet keeps 10 KiB; a reason is short).
const BODY_LIMIT: usize = 400;

async fn status_of(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "stackable-testenv-probe")
        .header(header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| format!("invalid probe path {path:?}: {e}"))?;
    let mut response = std::pin::pin!(async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        // The body only explains a failure; a body that cannot be read leaves it empty.
        let body = if (200..400).contains(&status.as_u16()) {
            String::new()
        } else {
            match response.into_body().collect().await {
                Ok(body) => {
                    let bytes = body.to_bytes();
                    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_LIMIT)]);
                    text.trim().replace('\n', "; ")
                }
                Err(_) => String::new(),
            }
        };
        Ok((status, body))
    });
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        status = &mut response => status,
        closed = &mut connection => {
            // The connection may end right after delivering the response.
            let status = response.await;
            match closed {
                Err(e) if status.is_err() => Err(e.to_string()),
                _ => status,
            }
        }
    }
}

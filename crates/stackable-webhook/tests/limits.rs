//! Limits against bad clients: TLS handshake and header-read timeouts close silent
//! connections, and the connection limit makes further clients wait.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{TestCa, client_config, connect_tls, get, local_builder, start, stop};
use stackable_webhook::{CertSource, Limits, RunningServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start_limited(ca: &TestCa, limits: Limits) -> RunningServer {
    start(
        local_builder()
            .limits(limits)
            .certificates(CertSource::Static(ca.leaf(1))),
    )
    .await
}

#[tokio::test]
async fn silent_clients_are_disconnected() {
    let ca = TestCa::new("ca");
    let server = start_limited(
        &ca,
        Limits {
            handshake_timeout: Duration::from_millis(300),
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    )
    .await;

    // No ClientHello at all: closed once the handshake timeout is over.
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("the server never closed a connection without a handshake");
    assert_eq!(read.unwrap_or(0), 0);

    // Handshake done, then half a request line: closed after the header-read timeout.
    let mut tls = connect_tls(&client_config(&ca.pem), server.local_addr())
        .await
        .unwrap();
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let mut response = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await;
    assert!(
        closed.is_ok(),
        "the server never closed a connection with incomplete headers"
    );
    assert!(
        server
            .metrics()
            .encode()
            .contains("webhook_tls_handshake_failures_total 1")
    );
    stop(server).await;
}

#[tokio::test]
async fn connection_limit_makes_clients_wait() {
    let ca = TestCa::new("ca");
    let server = start_limited(
        &ca,
        Limits {
            max_connections: 1,
            ..Limits::default()
        },
    )
    .await;
    let client = client_config(&ca.pem);
    let addr = server.local_addr();

    // Hold the only slot with an idle TLS connection.
    let holder = connect_tls(&client, addr).await.unwrap();

    let waiting = tokio::spawn({
        let client = Arc::clone(&client);
        async move { get(&client, addr, "/livez").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a second connection was served beyond the limit"
    );
    drop(holder);
    let answer = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting client was never served")
        .unwrap()
        .unwrap();
    assert_eq!(answer.status, 200);
    stop(server).await;
}

/// Sends `GET /livez` on an open connection and reads one response (with its short body).
async fn livez_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    tls: &mut S,
) -> std::io::Result<String> {
    tls.write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    tls.flush().await?;
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if got.len() >= head_end + 4 + length {
                return Ok(text.into_owned());
            }
        }
    }
}

/// The header deadline runs from a request's first byte, not while the connection is idle:
/// a keep-alive connection idle for longer than `header_read_timeout` still serves the next
/// request (the API server keeps idle connections for 90 s and reuses them), and is closed
/// once `idle_timeout` is over.
#[tokio::test]
async fn idle_keep_alive_connections_live_until_the_idle_timeout() {
    let ca = TestCa::new("ca");
    let server = start_limited(
        &ca,
        Limits {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(2500),
            ..Limits::default()
        },
    )
    .await;
    let mut tls = connect_tls(&client_config(&ca.pem), server.local_addr())
        .await
        .unwrap();
    let first = livez_on(&mut tls).await.unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Idle for three header timeouts: still open.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let second = livez_on(&mut tls)
        .await
        .expect("an idle connection was closed before the idle timeout");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    // Idle past the idle timeout: closed by the server.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server never closed an idle connection");
    stop(server).await;
}

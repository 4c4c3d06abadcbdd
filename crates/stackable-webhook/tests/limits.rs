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

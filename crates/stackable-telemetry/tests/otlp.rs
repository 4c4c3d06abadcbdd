//! Spans reach an OTLP/HTTP collector: a minimal collector (hyper on 127.0.0.1) receives the
//! export of a webhook span, with the request's fields and the service name, as protobuf.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use stackable_telemetry::{LogFilter, Telemetry};
use tokio::net::TcpListener;

/// One request the collector received: path, content type, body.
type Received = Arc<Mutex<Vec<(String, String, Bytes)>>>;

/// Serves `POST /v1/traces` on a loopback port; answers an empty `ExportTraceServiceResponse`.
async fn collector() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Received::default();
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let content_type = request
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = request.into_body().collect().await?.to_bytes();
                        store.lock().unwrap().push((path, content_type, body));
                        let mut response = Response::new(Full::new(Bytes::new()));
                        response.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static("application/x-protobuf"),
                        );
                        Ok::<_, hyper::Error>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, received)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_span_reaches_the_collector() {
    let (address, received) = collector().await;
    let endpoint = format!("http://{address}/v1/traces");
    // The exporter sends from a thread of its own; shutting it down (dropping the guard)
    // blocks until the last batch is sent, so do it off the async workers.
    let exported = tokio::task::spawn_blocking(move || {
        let (dispatch, guard) = Telemetry::new("stackable-telemetry-test")
            .filter(LogFilter::new("info").unwrap())
            .otlp_endpoint(endpoint)
            .dispatch(std::io::sink)
            .unwrap();
        let exports = guard.exports_spans();
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!(
                "webhook",
                uid = "705ab4f5-6393-11e8-b7cc-42010a800002",
                kind = "Pod",
                namespace = "team-a",
                name = "web-0",
                outcome = tracing::field::Empty,
            );
            span.in_scope(|| tracing::info!("answered"));
            span.record("outcome", "allowed");
        });
        drop(guard);
        exports
    })
    .await
    .unwrap();
    assert!(exported);

    let received = received.lock().unwrap().clone();
    assert!(!received.is_empty(), "the collector received nothing");
    let (path, content_type, body) = &received[0];
    assert_eq!(path, "/v1/traces");
    assert_eq!(content_type, "application/x-protobuf");
    let all: Vec<u8> = received.iter().flat_map(|(_, _, b)| b.to_vec()).collect();
    for expected in [
        "webhook",
        "705ab4f5-6393-11e8-b7cc-42010a800002",
        "team-a",
        "web-0",
        "allowed",
        "answered",
        "service.name",
        "stackable-telemetry-test",
    ] {
        assert!(
            contains(&all, expected),
            "{expected:?} missing from {body:?}"
        );
    }
}

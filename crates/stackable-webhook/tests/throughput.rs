//! Prints throughput figures (no timed assertions): requests per second over new TLS
//! connections and over one keep-alive connection, through the full validating path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::{TestCa, client_config, connect_tls, local_builder, pod_review, request, start, stop};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionRequest;
use serde_json::json;
use stackable_webhook::{CertSource, Validation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_throughput() {
    let ca = TestCa::new("bench-ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .validating("/validate", |_request: AdmissionRequest<Pod>| async move {
                Validation::allow()
            }),
    )
    .await;
    let addr = server.local_addr();
    let client = client_config(&ca.pem);
    let body = serde_json::to_vec(&pod_review(
        "bench",
        "CREATE",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
               "spec": {"containers": [{"name": "main", "image": "nginx"}]}}),
    ))
    .unwrap();

    let n = 200;
    let started = Instant::now();
    for _ in 0..n {
        let answer = request(
            &client,
            addr,
            "POST",
            "/validate",
            Some("application/json"),
            body.clone(),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
    }
    let new_connections = n as f64 / started.elapsed().as_secs_f64();

    let tls = connect_tls(&client, addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let n_keepalive = 2000;
    let started = Instant::now();
    for _ in 0..n_keepalive {
        let request = http::Request::post("/validate")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }
    let keepalive = n_keepalive as f64 / started.elapsed().as_secs_f64();
    println!(
        "throughput ({} build): {new_connections:.0} req/s with a new TLS connection per request, \
         {keepalive:.0} req/s on one keep-alive connection (sequential, one client)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    stop(server).await;
}

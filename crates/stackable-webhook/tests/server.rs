//! End-to-end tests of the server through a real TLS client that trusts only the test CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{
    Answer, TestCa, client_config, connect_tls, get, local_builder, pod_review, post, post_json,
    start, stop,
};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::core::{
    admission::{AdmissionRequest, Operation},
    conversion::{ConversionRequest, ConversionResponse},
};
use serde_json::json;
use stackable_webhook::{CertSource, Limits, Mutation, RunningServer, Validation};

/// The server of most tests (/validate, /mutate and /convert with the test behaviours) and a
/// client trusting its CA.
async fn start_routes(limits: Limits) -> (RunningServer, Arc<rustls::ClientConfig>) {
    let ca = TestCa::new("test-ca");
    let builder = local_builder()
        .limits(limits)
        .certificates(CertSource::Static(ca.leaf(1)))
        .validating("/validate", |request: AdmissionRequest<Pod>| async move {
            let name = request
                .object
                .as_ref()
                .and_then(|pod| pod.metadata.name.clone())
                .unwrap_or_default();
            if request.operation == Operation::Delete {
                return Validation::allow().with_warning("deleting");
            }
            if name.starts_with("bad") {
                Validation::deny(format!("pod {name} is not allowed")).with_code(422)
            } else if name == "panic" {
                panic!("handler exploded on purpose")
            } else {
                Validation::allow().with_warning("looked fine")
            }
        })
        .mutating("/mutate", |request: AdmissionRequest<Pod>| async move {
            let Some(mut pod) = request.object else {
                return Mutation::unchanged();
            };
            if pod.metadata.name.as_deref() == Some("leave-me") {
                return Mutation::patched(pod);
            }
            pod.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("injected".to_owned(), "yes".to_owned());
            if let Some(spec) = pod.spec.as_mut() {
                spec.containers.push(Container {
                    name: "logger".to_owned(),
                    image: Some("busybox".to_owned()),
                    ..Container::default()
                });
            }
            Mutation::patched(pod)
        })
        .conversion("/convert", |request: ConversionRequest| {
            if request.desired_api_version == "panic/v1" {
                panic!("converter exploded");
            }
            let objects = request
                .objects
                .iter()
                .map(|object| {
                    let mut object = object.clone();
                    object["apiVersion"] = json!(request.desired_api_version);
                    object
                })
                .collect();
            ConversionResponse::for_request(request).success(objects)
        });
    (start(builder).await, client_config(&ca.pem))
}

/// POSTs a CREATE AdmissionReview of `pod(name)` to `path`.
async fn create_pod(
    client: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
    uid: &str,
    name: &str,
) -> Answer {
    post_json(client, addr, path, &pod_review(uid, "CREATE", pod(name))).await
}

fn pod(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "futureMetadata": {"keep": true}},
        "spec": {"containers": [{"name": "main", "image": "nginx", "futureContainerField": "keep-me"}]}
    })
}

#[tokio::test]
async fn validating_allow_and_deny() {
    let (server, client) = start_routes(Limits::default()).await;

    let answer = create_pod(&client, server.local_addr(), "/validate", "u-1", "good").await;
    assert_eq!(answer.status, 200);
    let review = answer.json();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["response"]["uid"], "u-1");
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(review["response"]["warnings"], json!(["looked fine"]));

    let answer = create_pod(&client, server.local_addr(), "/validate", "u-2", "bad-pod").await;
    let review = answer.json();
    assert_eq!(review["response"]["uid"], "u-2");
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(review["response"]["status"]["code"], 422);
    assert_eq!(
        review["response"]["status"]["message"],
        "pod bad-pod is not allowed"
    );

    // v1beta1 is echoed back.
    let mut beta = pod_review("u-3", "CREATE", pod("good"));
    beta["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let review = post_json(&client, server.local_addr(), "/validate", &beta)
        .await
        .json();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(review["response"]["uid"], "u-3");

    // DELETE: no object, old object decoded.
    let mut delete = pod_review("u-4", "DELETE", pod("bad-but-deleted"));
    delete["request"]["oldObject"] = delete["request"]["object"].take();
    let review = post_json(&client, server.local_addr(), "/validate", &delete)
        .await
        .json();
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(review["response"]["warnings"], json!(["deleting"]));

    stop(server).await;
}

#[tokio::test]
async fn mutating_patch_keeps_unknown_fields() {
    let (server, client) = start_routes(Limits::default()).await;
    let original = pod("mutate-me");
    let answer = post_json(
        &client,
        server.local_addr(),
        "/mutate",
        &pod_review("m-1", "CREATE", original.clone()),
    )
    .await;
    assert_eq!(answer.status, 200);
    let review = answer.json();
    let response = &review["response"];
    assert_eq!(response["uid"], "m-1");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    use base64::Engine as _;
    let patch_bytes = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).unwrap();
    let mut patched = original.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mutate-me", "namespace": "default", "futureMetadata": {"keep": true},
                     "labels": {"injected": "yes"}},
        "spec": {"containers": [
            {"name": "main", "image": "nginx", "futureContainerField": "keep-me"},
            {"name": "logger", "image": "busybox"}
        ]}
    });
    assert_eq!(patched, expected, "patch was {patch:?}");

    // Returning the object unchanged sends no patch at all.
    let review = create_pod(&client, server.local_addr(), "/mutate", "m-2", "leave-me")
        .await
        .json();
    assert_eq!(review["response"]["allowed"], true);
    assert!(review["response"].get("patch").is_none());
    assert!(review["response"].get("patchType").is_none());
    stop(server).await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let (server, client) = start_routes(limits).await;
    let addr = server.local_addr();

    let malformed = post(
        &client,
        addr,
        "/validate",
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    // Refused in an AdmissionReview, as controller-runtime answers (tests/admission_answers.rs).
    assert_eq!(malformed.status, 200);
    assert_eq!(malformed.json()["response"]["allowed"], false);
    assert_eq!(malformed.json()["response"]["status"]["code"], 400);

    let not_a_review = post(
        &client,
        addr,
        "/validate",
        "application/json",
        br#"{"kind":"Pod"}"#.to_vec(),
    )
    .await;
    assert_eq!(not_a_review.status, 200);
    assert_eq!(not_a_review.json()["response"]["status"]["code"], 400);

    let wrong_type = post(&client, addr, "/validate", "text/plain", b"{}".to_vec()).await;
    assert_eq!(wrong_type.status, 415);
    assert_eq!(wrong_type.json()["code"], 415);

    let oversized = post(
        &client,
        addr,
        "/validate",
        "application/json",
        vec![b' '; 65 * 1024],
    )
    .await;
    assert_eq!(oversized.status, 413);
    assert_eq!(oversized.json()["reason"], "RequestEntityTooLarge");

    let unknown = post(&client, addr, "/nope", "application/json", b"{}".to_vec()).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["code"], 404);

    let get_answer = get(&client, addr, "/validate").await.unwrap();
    assert_eq!(get_answer.status, 405);

    // The server is still fine afterwards.
    let ok = create_pod(&client, addr, "/validate", "after", "good").await;
    assert_eq!(ok.json()["response"]["allowed"], true);
    let metrics = get(&client, addr, "/metrics").await.unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("webhook_requests_total{route=\"/validate\",outcome=\"too_large\"} 1"),
        "{text}"
    );
    // controller-runtime's names and labels, for dashboards written for Go operators.
    for line in [
        "controller_runtime_webhook_requests_total{webhook=\"/validate\",code=\"413\"} 1",
        "controller_runtime_webhook_requests_total{webhook=\"/validate\",code=\"405\"} 1",
        "controller_runtime_webhook_requests_total{webhook=\"/validate\",code=\"200\"} 3",
        "controller_runtime_webhook_requests_total{webhook=\"/validate\",code=\"415\"} 1",
        "controller_runtime_webhook_requests_in_flight{webhook=\"/validate\"} 0",
        "controller_runtime_webhook_latency_seconds_count{webhook=\"/validate\"} 6",
        "controller_runtime_webhook_panics_total 0",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
    stop(server).await;
}

#[tokio::test]
async fn handler_panic_becomes_failed_review() {
    let (server, client) = start_routes(Limits::default()).await;
    let answer = create_pod(&client, server.local_addr(), "/validate", "p-1", "panic").await;
    assert_eq!(answer.status, 200);
    let review = answer.json();
    assert_eq!(review["response"]["uid"], "p-1");
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(review["response"]["status"]["code"], 500);
    assert!(
        review["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("handler exploded on purpose")
    );
    assert_eq!(server.metrics().handler_panics(), 1);

    // The conversion route catches panics too.
    let conversion = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "c-1", "desiredAPIVersion": "panic/v1", "objects": [{"apiVersion": "x/v1", "kind": "X"}]}
    });
    let review = post_json(&client, server.local_addr(), "/convert", &conversion)
        .await
        .json();
    assert_eq!(review["response"]["uid"], "c-1");
    assert_eq!(review["response"]["result"]["status"], "Failure");
    assert_eq!(review["response"]["result"]["code"], 500);
    assert_eq!(server.metrics().handler_panics(), 2);
    stop(server).await;
}

/// A handler that panics while it is called, before it returns its future (a plain function,
/// not an `async` block), is answered like one that panics in its future.
#[tokio::test]
async fn handler_panic_before_its_future_becomes_failed_review() {
    let ca = TestCa::new("test-ca");
    let builder = local_builder()
        .certificates(CertSource::Static(ca.leaf(1)))
        .validating(
            "/validate",
            |_: AdmissionRequest<Pod>| -> std::future::Ready<Validation> {
                panic!("validating call exploded on purpose")
            },
        )
        .mutating(
            "/mutate",
            |_: AdmissionRequest<Pod>| -> std::future::Ready<Mutation<Pod>> {
                panic!("mutating call exploded on purpose")
            },
        );
    let server = start(builder).await;
    let client = client_config(&ca.pem);
    for (path, uid, says) in [
        ("/validate", "sp-1", "validating call exploded on purpose"),
        ("/mutate", "sp-2", "mutating call exploded on purpose"),
    ] {
        let answer = create_pod(&client, server.local_addr(), path, uid, "any").await;
        assert_eq!(answer.status, 200);
        let review = answer.json();
        assert_eq!(review["response"]["uid"], uid, "{review}");
        assert_eq!(review["response"]["allowed"], false, "{review}");
        assert_eq!(review["response"]["status"]["code"], 500, "{review}");
        assert!(
            review["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains(says),
            "{review}"
        );
    }
    assert_eq!(server.metrics().handler_panics(), 2);
    stop(server).await;
}

#[tokio::test]
async fn conversion_route_calls_converter() {
    let (server, client) = start_routes(Limits::default()).await;
    let conversion = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "c-2", "desiredAPIVersion": "example.com/v2",
                    "objects": [{"apiVersion": "example.com/v1", "kind": "Thing", "spec": {"a": 1}}]}
    });
    let review = post_json(&client, server.local_addr(), "/convert", &conversion)
        .await
        .json();
    assert_eq!(review["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(review["kind"], "ConversionReview");
    assert_eq!(review["response"]["uid"], "c-2");
    assert_eq!(review["response"]["result"]["status"], "Success");
    assert_eq!(
        review["response"]["convertedObjects"][0]["apiVersion"],
        "example.com/v2"
    );
    assert_eq!(review["response"]["convertedObjects"][0]["spec"]["a"], 1);

    // Another ConversionReview version: a failed review in that version, naming the fix; the
    // converter is not called.
    let mut old = conversion.clone();
    old["apiVersion"] = json!("apiextensions.k8s.io/v1beta1");
    old["request"]["uid"] = json!("c-3");
    let answer = post_json(&client, server.local_addr(), "/convert", &old).await;
    assert_eq!(answer.status, 200);
    let review = answer.json();
    assert_eq!(review["apiVersion"], "apiextensions.k8s.io/v1beta1");
    assert_eq!(review["response"]["uid"], "c-3");
    assert_eq!(review["response"]["result"]["status"], "Failure");
    let message = review["response"]["result"]["message"].as_str().unwrap();
    assert!(message.contains("conversionReviewVersions"), "{message}");
    assert!(
        review["response"]["convertedObjects"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    stop(server).await;
}

#[tokio::test]
async fn health_on_separate_port_and_readiness() {
    let ca = TestCa::new("test-ca");
    let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let check = synced.clone();
    let server = start(
        local_builder()
            .health_bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .certificates(CertSource::Static(ca.leaf(1)))
            .readiness_check("cache", move || {
                if check.load(std::sync::atomic::Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("not synced".to_owned())
                }
            }),
    )
    .await;
    let health = server.health_addr().unwrap();
    assert_eq!(plain_get(health, "/livez").await, 200);
    assert_eq!(plain_get(health, "/readyz").await, 503);
    synced.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(plain_get(health, "/readyz").await, 200);
    // A certificate swapped in by hand serves the next handshake.
    server.resolver().swap(ca.leaf(7));
    let client = client_config(&ca.pem);
    let answer = get(&client, server.local_addr(), "/readyz").await.unwrap();
    // Health routes live on the health port only.
    assert_eq!(answer.status, 404);
    assert_eq!(answer.serial, vec![7]);
    stop(server).await;
}

async fn plain_get(addr: SocketAddr, path: &str) -> u16 {
    use http_body_util::Empty;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let ca = TestCa::new("test-ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .validating("/slow", |_request: AdmissionRequest<Pod>| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Validation::allow()
            }),
    )
    .await;
    let client = client_config(&ca.pem);
    let addr = server.local_addr();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { create_pod(&client, addr, "/slow", "s-1", "good").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.shutdown();
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.json()["response"]["allowed"], true);
    server.wait().await.unwrap();
    // New connections are refused after shutdown.
    assert!(get(&client, addr, "/livez").await.is_err());
    println!(
        "shutdown with one in-flight request took {:?}",
        started.elapsed()
    );
}

async fn negotiated_alpn(http2: bool) -> (Option<Vec<u8>>, u16) {
    let ca = TestCa::new("test-ca");
    let server = start(
        local_builder()
            .http2(http2)
            .certificates(CertSource::Static(ca.leaf(1))),
    )
    .await;
    let mut config = (*client_config(&ca.pem)).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = connect_tls(&Arc::new(config), server.local_addr())
        .await
        .unwrap();
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = hyper_util::rt::TokioIo::new(tls);
    let request = http::Request::get("https://localhost/livez")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let status = if alpn.as_deref() == Some(b"h2".as_slice()) {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap().status()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap().status()
    };
    stop(server).await;
    (alpn, status.as_u16())
}

#[tokio::test]
async fn http2_only_when_enabled() {
    assert_eq!(
        negotiated_alpn(false).await,
        (Some(b"http/1.1".to_vec()), 200)
    );
    assert_eq!(negotiated_alpn(true).await, (Some(b"h2".to_vec()), 200));
}

#[tokio::test]
async fn metrics_report_requests_latency_and_certificate() {
    let (server, client) = start_routes(Limits::default()).await;
    let addr = server.local_addr();
    create_pod(&client, addr, "/validate", "x", "good").await;
    create_pod(&client, addr, "/validate", "y", "bad-1").await;
    let metrics = get(&client, addr, "/metrics").await.unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    for expected in [
        "webhook_requests_total{route=\"/validate\",outcome=\"allowed\"} 1",
        "webhook_requests_total{route=\"/validate\",outcome=\"denied\"} 1",
        "webhook_request_duration_seconds_count{route=\"/validate\"} 2",
        "webhook_cert_swaps_total 1",
        "webhook_cert_reload_errors_total 0",
        "webhook_handler_panics_total 0",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    // The expiry gauge holds the leaf's notAfter (rcgen's default is far in the future).
    let expiry: i64 = text
        .lines()
        .find_map(|line| line.strip_prefix("webhook_cert_expiry_timestamp_seconds "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(expiry > 1_700_000_000, "{expiry}");
    stop(server).await;
}

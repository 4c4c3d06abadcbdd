//! Webhook routes are tower services: a layer added to one route applies to that route only, a
//! layer added to the builder to every webhook route, a service of your own is mounted as a
//! webhook route with the server's body limit, panic catching and metrics, and a layer's error
//! (tower's `TimeoutLayer`, `LoadShedLayer`) is answered with a Kubernetes `Status`, not a
//! dropped connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use common::{Answer, TestCa, client_config, local_builder, pod_review, post_json, start, stop};
use http::{HeaderValue, Response};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionRequest;
use serde_json::{Value, json};
use stackable_webhook::{CertSource, Outcome, Route, ServerError, Validation, WebhookRequest};
use tokio::sync::{Notify, Semaphore};
use tower::{
    limit::ConcurrencyLimitLayer, load_shed::LoadShedLayer, service_fn, timeout::TimeoutLayer,
    util::MapResponseLayer,
};

/// A `POST` of JSON over a new TLS connection.
async fn send(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
    body: &Value,
) -> Answer {
    post_json(config, addr, path, body).await
}

fn review(uid: &str) -> Value {
    pod_review(
        uid,
        "CREATE",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}}),
    )
}

/// A layer that adds `name: value` to every answer of the service it wraps.
fn header_layer(
    name: &'static str,
    value: &'static str,
) -> MapResponseLayer<impl Fn(Response<Bytes>) -> Response<Bytes> + Clone + Send + Sync + 'static> {
    MapResponseLayer::new(move |mut response: Response<Bytes>| {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
        response
    })
}

async fn allow_all(_request: AdmissionRequest<Pod>) -> Validation {
    Validation::allow()
}

#[tokio::test]
async fn a_layer_on_one_route_applies_to_that_route_only() {
    let ca = TestCa::new("one-route-ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .route(
                "/layered",
                Route::validating(allow_all).layer(header_layer("x-route", "layered")),
            )
            .validating("/plain", allow_all)
            .validating("/later", allow_all)
            .route_layer("/later", header_layer("x-route", "later")),
    )
    .await;
    let client = client_config(&ca.pem);

    for (path, header) in [
        ("/layered", Some("layered")),
        ("/plain", None),
        ("/later", Some("later")),
    ] {
        let answer = send(&client, server.local_addr(), path, &review("u-1")).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.json()["response"]["allowed"], true, "{path}");
        assert_eq!(answer.json()["response"]["uid"], "u-1", "{path}");
        assert_eq!(answer.header("x-route"), header, "{path}");
    }
    stop(server).await;
}

/// A concurrency limit with load shedding on one route refuses a second request with a 503
/// `Status` while the first is in its handler; another route answers at the same time.
#[tokio::test]
async fn a_concurrency_limit_on_one_route_does_not_limit_the_others() {
    let ca = TestCa::new("limit-ca");
    let gate = Arc::new(Semaphore::new(0));
    let entered = Arc::new(Notify::new());
    let (handler_gate, handler_entered) = (gate.clone(), entered.clone());
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .route(
                "/slow",
                Route::validating(move |_request: AdmissionRequest<Pod>| {
                    let (gate, entered) = (handler_gate.clone(), handler_entered.clone());
                    async move {
                        entered.notify_one();
                        gate.acquire().await.unwrap().forget();
                        Validation::allow()
                    }
                })
                .layer(ConcurrencyLimitLayer::new(1))
                .layer(LoadShedLayer::new()),
            )
            .validating("/fast", allow_all),
    )
    .await;
    let client = client_config(&ca.pem);
    let addr = server.local_addr();

    let first = tokio::spawn({
        let client = client.clone();
        async move { send(&client, addr, "/slow", &review("first")).await }
    });
    tokio::time::timeout(Duration::from_secs(10), entered.notified())
        .await
        .expect("the first request never reached its handler");

    let refused = send(&client, addr, "/slow", &review("second")).await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    let status = refused.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert_eq!(status["code"], 503);

    let other = send(&client, addr, "/fast", &review("other")).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.json()["response"]["allowed"], true);

    gate.add_permits(1);
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["response"]["uid"], "first");

    let metrics = server.metrics().encode();
    assert!(
        metrics.contains(r#"webhook_requests_total{route="/slow",outcome="overloaded"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"controller_runtime_webhook_requests_total{webhook="/slow",code="503"} 1"#),
        "{metrics}"
    );
    stop(server).await;
}

#[tokio::test]
async fn a_layer_for_all_routes_wraps_every_webhook_route_outside_its_own() {
    let ca = TestCa::new("all-routes-ca");
    let echo = service_fn(|request: WebhookRequest| async move {
        Ok::<_, Infallible>(Response::new(request.into_body()))
    });
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .layer(header_layer("x-all", "first"))
            .validating("/validate", allow_all)
            .conversion("/convert", common::relabel_converter)
            .route(
                "/own",
                // The route's layer runs inside the one for all routes: its header is replaced.
                Route::service(echo).layer(header_layer("x-all", "route")),
            ),
    )
    .await;
    let client = client_config(&ca.pem);
    let addr = server.local_addr();

    let validated = send(&client, addr, "/validate", &review("v-1")).await;
    assert_eq!(validated.status, 200);
    assert_eq!(validated.header("x-all"), Some("first"));

    let conversion: Value = serde_json::from_slice(&common::crontab_review("c-1", 1)).unwrap();
    let converted = send(&client, addr, "/convert", &conversion).await;
    assert_eq!(converted.status, 200);
    assert_eq!(converted.json()["response"]["uid"], "c-1");
    assert_eq!(converted.header("x-all"), Some("first"));

    let own = send(&client, addr, "/own", &json!({"echo": 1})).await;
    assert_eq!(own.status, 200);
    assert_eq!(own.json(), json!({"echo": 1}));
    assert_eq!(own.header("x-all"), Some("first"));

    // Health routes are not webhook routes.
    let livez = common::get(&client, addr, "/livez").await.unwrap();
    assert_eq!(livez.status, 200);
    stop(server).await;
}

#[tokio::test]
async fn a_service_of_your_own_is_a_webhook_route() {
    let ca = TestCa::new("own-service-ca");
    let own = service_fn(|request: WebhookRequest| async move {
        let review: Value = serde_json::from_slice(request.body())?;
        match review["action"].as_str() {
            Some("panic") => panic!("asked to panic"),
            Some("fail") => Err("asked to fail".into()),
            _ => {
                let mut response = Response::new(
                    json!({"seen": review, "path": request.uri().path()}).to_string(),
                );
                response.extensions_mut().insert(Outcome::new("echoed"));
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response)
            }
        }
    });
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .route_service("/own", own)
            .route("/small", Route::service(own).max_body_bytes(32)),
    )
    .await;
    let client = client_config(&ca.pem);
    let addr = server.local_addr();

    let answer = send(&client, addr, "/own", &json!({"action": "echo"})).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        json!({"seen": {"action": "echo"}, "path": "/own"})
    );

    let failed = send(&client, addr, "/own", &json!({"action": "fail"})).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.json()["kind"], "Status");
    assert_eq!(failed.json()["reason"], "InternalError");
    assert!(
        failed.json()["message"]
            .as_str()
            .unwrap()
            .contains("asked to fail"),
        "{}",
        failed.json()
    );

    let panicked = send(&client, addr, "/own", &json!({"action": "panic"})).await;
    assert_eq!(panicked.status, 500);
    assert!(
        panicked.json()["message"]
            .as_str()
            .unwrap()
            .contains("panicked: asked to panic"),
        "{}",
        panicked.json()
    );
    assert_eq!(server.metrics().handler_panics(), 1);

    // The route's own body limit, before the service runs.
    let large = send(&client, addr, "/small", &json!({"action": "x".repeat(64)})).await;
    assert_eq!(large.status, 413);
    assert_eq!(large.json()["reason"], "RequestEntityTooLarge");
    let small = send(&client, addr, "/small", &json!({"action": "a"})).await;
    assert_eq!(small.status, 200);

    let metrics = server.metrics().encode();
    for line in [
        r#"webhook_requests_total{route="/own",outcome="echoed"} 1"#,
        r#"webhook_requests_total{route="/own",outcome="error"} 1"#,
        r#"webhook_requests_total{route="/own",outcome="panic"} 1"#,
        r#"webhook_requests_total{route="/small",outcome="too_large"} 1"#,
        r#"controller_runtime_webhook_panics_total 1"#,
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    stop(server).await;
}

#[tokio::test]
async fn a_timeout_layer_is_answered_with_a_status() {
    let ca = TestCa::new("timeout-ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .route(
                "/slow",
                Route::validating(|_request: AdmissionRequest<Pod>| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Validation::allow()
                })
                .layer(TimeoutLayer::new(Duration::from_millis(200))),
            ),
    )
    .await;
    let client = client_config(&ca.pem);
    let started = std::time::Instant::now();
    let answer = send(&client, server.local_addr(), "/slow", &review("t-1")).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.status, 504);
    let status = answer.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "Timeout");
    assert_eq!(status["code"], 504);
    assert!(
        status["message"].as_str().unwrap().contains("TimeoutLayer"),
        "{status}"
    );
    let metrics = server.metrics().encode();
    assert!(
        metrics
            .contains(r#"controller_runtime_webhook_requests_total{webhook="/slow",code="504"} 1"#),
        "{metrics}"
    );
    stop(server).await;
}

#[test]
fn a_layer_on_a_path_without_a_route_fails_the_build() {
    let built = local_builder()
        .certificates(CertSource::Static(TestCa::new("unknown-ca").leaf(1)))
        .validating("/validate", allow_all)
        .route_layer("/valdiate", header_layer("x-route", "typo"))
        .build();
    match built {
        Err(ServerError::UnknownRoute { path }) => assert_eq!(path, "/valdiate"),
        other => panic!("expected UnknownRoute, got {other:?}"),
    }
}

//! With the `otel` feature, a request's `webhook` span continues the API server's trace: when the
//! subscriber has a `tracing-opentelemetry` layer, the span's OpenTelemetry parent is the remote
//! span of the `traceparent` header (with its `tracestate`), so the handler's spans join the API
//! server's trace. Without the header the span starts no remote trace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{TestCa, client_config, local_builder, pod_review, request_with_headers, start, stop};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionRequest;
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use serde_json::json;
use stackable_webhook::{CertSource, Validation};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

// One thread: the server's tasks run on the thread whose default subscriber has the layer.
#[tokio::test(flavor = "current_thread")]
async fn the_request_span_is_a_child_of_the_api_servers_span() {
    // The no-op tracer of `tracing_opentelemetry::layer()` gives each span its parent's context,
    // which is what this test reads; an SDK tracer (stackable-telemetry's OTLP export) starts a
    // child span of it in the same trace.
    let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer());
    let _default = tracing::subscriber::set_default(subscriber);

    let seen: Arc<Mutex<Vec<(String, SpanContext)>>> = Arc::default();
    let record = seen.clone();
    let ca = TestCa::new("otel-ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .validating("/validate", move |request: AdmissionRequest<Pod>| {
                let context = tracing::Span::current().context();
                let span_context = context.span().span_context().clone();
                record.lock().unwrap().push((request.uid, span_context));
                async { Validation::allow() }
            }),
    )
    .await;
    let client = client_config(&ca.pem);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}});
    for (uid, headers) in [
        (
            "traced",
            vec![
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
                ("tracestate", "apiserver=1"),
            ],
        ),
        ("untraced", vec![]),
    ] {
        let answer = request_with_headers(
            &client,
            server.local_addr(),
            "POST",
            "/validate",
            Some("application/json"),
            &headers,
            serde_json::to_vec(&pod_review(uid, "CREATE", pod.clone())).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
    }
    stop(server).await;

    let seen = seen.lock().unwrap();
    let context = |uid: &str| {
        seen.iter()
            .find(|(seen_uid, _)| seen_uid == uid)
            .unwrap_or_else(|| panic!("the handler did not see {uid}"))
            .1
            .clone()
    };
    let traced = context("traced");
    assert_eq!(
        traced.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(traced.span_id().to_string(), "00f067aa0ba902b7");
    assert!(traced.is_remote());
    assert!(traced.is_sampled());
    assert_eq!(traced.trace_state().get("apiserver"), Some("1"));
    assert!(!context("untraced").is_valid());
}

//! Every webhook request runs in a `webhook` span whose fields identify it, so each line logged
//! while it is answered (the handler's too) says which request: `uid`, `kind`, `namespace`,
//! `name`, `operation`, and after the answer `outcome` and `latency_ms`; a conversion also has
//! the number of `objects`. Captured as the JSON lines of stackable-telemetry.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use common::{
    Captured, TestCa, client_config, crontab_review, local_builder, pod_review, post, post_json,
    relabel_converter, request_with_headers, start, stop,
};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionRequest;
use serde_json::{Value, json};
use stackable_telemetry::{Colour, LogFilter, LogFormat, Telemetry};
use stackable_webhook::{CertSource, Mutation, Validation};

// One thread: the server's tasks run on the thread whose default subscriber captures them.
#[tokio::test(flavor = "current_thread")]
async fn each_request_runs_in_a_span_that_identifies_it() {
    let captured = Captured::default();
    let writer = captured.clone();
    let (dispatch, _guard) = Telemetry::new("test")
        .format(LogFormat::Json)
        .filter(LogFilter::new("warn,stackable_webhook=debug,request_spans=info").unwrap())
        .dispatch(move || writer.clone())
        .unwrap();
    let _default = tracing::dispatcher::set_default(&dispatch);

    let ca = TestCa::new("spans-ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .validating("/validate", |request: AdmissionRequest<Pod>| async move {
                tracing::info!(dry_run = request.dry_run, "validating");
                Validation::allow()
            })
            .mutating("/mutate", |request: AdmissionRequest<Pod>| async move {
                tracing::info!(dry_run = request.dry_run, "mutating");
                Mutation::unchanged()
            })
            .conversion("/convert", relabel_converter),
    )
    .await;
    let client = client_config(&ca.pem);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}});
    let answer = post_json(
        &client,
        server.local_addr(),
        "/validate",
        &pod_review("a-1", "CREATE", pod.clone()),
    )
    .await;
    assert_eq!(answer.status, 200);
    let answer = post_json(
        &client,
        server.local_addr(),
        "/mutate",
        &pod_review("m-1", "UPDATE", pod),
    )
    .await;
    assert_eq!(answer.status, 200);
    for (uid, count) in [("c-1", 1), ("c-3", 3)] {
        let answer = post(
            &client,
            server.local_addr(),
            "/convert",
            "application/json",
            crontab_review(uid, count),
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    stop(server).await;

    let lines = captured.lines();
    let in_request = |uid: &str, message: &str| -> Value {
        lines
            .iter()
            .find(|l| l["span"]["uid"] == uid && l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line of {uid}: {lines:#?}"))
            .clone()
    };

    // The handler's own line carries the request's identity.
    let handler = in_request("a-1", "validating");
    assert_eq!(handler["spans"], json!(["webhook"]));
    assert_eq!(handler["target"], "request_spans");
    for (field, value) in [
        ("route", "/validate"),
        ("kind", "Pod"),
        ("namespace", "default"),
        ("name", "web-0"),
        ("operation", "Create"),
    ] {
        assert_eq!(handler["span"][field], value, "{field}: {handler}");
    }
    // So does a mutating handler's.
    let mutating = in_request("m-1", "mutating");
    for (field, value) in [
        ("route", "/mutate"),
        ("kind", "Pod"),
        ("namespace", "default"),
        ("name", "web-0"),
        ("operation", "Update"),
    ] {
        assert_eq!(mutating["span"][field], value, "{field}: {mutating}");
    }
    // The server's line after the answer adds the outcome and latency.
    let answered = in_request("a-1", "webhook request answered");
    assert_eq!(answered["span"]["outcome"], "allowed", "{answered}");
    assert!(
        answered["span"]["latency_ms"].as_f64().unwrap() > 0.0,
        "{answered}"
    );
    assert_eq!(answered["fields"]["status"], 200);

    // A conversion of one object names it; of several, only their kind and number.
    let one = in_request("c-1", "webhook request answered");
    for (field, value) in [
        ("route", json!("/convert")),
        ("kind", json!("CronTab")),
        ("namespace", json!("shop")),
        ("name", json!("crontab-00000")),
        ("operation", json!("example.com/v1")),
        ("objects", json!(1)),
        ("outcome", json!("converted")),
    ] {
        assert_eq!(one["span"][field], value, "{field}: {one}");
    }
    let three = in_request("c-3", "webhook request answered");
    assert_eq!(three["span"]["kind"], "CronTab", "{three}");
    assert_eq!(three["span"]["objects"], 3, "{three}");
    assert!(three["span"].get("name").is_none(), "{three}");
    assert!(three["span"].get("namespace").is_none(), "{three}");
}

/// `uid`, `name` and `namespace` come from whoever calls the webhook. The text format writes the
/// span's fields with `Debug`, which escapes them: a newline in a name cannot start a forged line.
#[tokio::test(flavor = "current_thread")]
async fn a_newline_from_the_caller_cannot_start_a_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    let (dispatch, _guard) = Telemetry::new("test")
        .format(LogFormat::Text)
        .colour(Colour::Never)
        .filter(LogFilter::new("warn,stackable_webhook=info,request_spans=info").unwrap())
        .dispatch(move || writer.clone())
        .unwrap();
    let _default = tracing::dispatcher::set_default(&dispatch);

    let ca = TestCa::new("forged-ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .validating("/validate", |_: AdmissionRequest<Pod>| async move {
                tracing::info!("validating");
                Validation::allow()
            }),
    )
    .await;
    let forged = "web-0\n2026-12-04T00:00:00.000000Z ERROR forged: a line the caller wrote";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": forged}});
    let answer = post_json(
        &client_config(&ca.pem),
        server.local_addr(),
        "/validate",
        &pod_review("f-1", "CREATE", pod),
    )
    .await;
    assert_eq!(answer.status, 200);
    stop(server).await;

    let text = captured.text();
    let handler = text
        .lines()
        .find(|line| line.contains("validating"))
        .unwrap_or_else(|| panic!("no handler line: {text}"));
    assert!(
        handler.contains(r#"name="web-0\n2026-12-04T00:00:00.000000Z ERROR forged"#),
        "the name is escaped on the handler's line: {handler}"
    );
    assert!(
        !text
            .lines()
            .any(|line| line.contains("ERROR forged") && line != handler),
        "the caller's newline started a line of its own: {text}"
    );
}

/// The API server's W3C `traceparent` (sent when it traces the request) is recorded in the
/// request's span as `trace_id` and `parent_span_id`; an invalid one is ignored.
#[tokio::test(flavor = "current_thread")]
async fn the_api_servers_traceparent_is_recorded_in_the_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let (dispatch, _guard) = Telemetry::new("test")
        .format(LogFormat::Json)
        .filter(LogFilter::new("warn,stackable_webhook=debug,request_spans=info").unwrap())
        .dispatch(move || writer.clone())
        .unwrap();
    let _default = tracing::dispatcher::set_default(&dispatch);

    let ca = TestCa::new("traceparent-ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .validating("/validate", |_request: AdmissionRequest<Pod>| async move {
                tracing::info!("validating");
                Validation::allow()
            }),
    )
    .await;
    let client = client_config(&ca.pem);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}});
    for (uid, traceparent) in [
        (
            "traced",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        (
            "upper-case",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        ),
    ] {
        let answer = request_with_headers(
            &client,
            server.local_addr(),
            "POST",
            "/validate",
            Some("application/json"),
            &[("traceparent", traceparent)],
            serde_json::to_vec(&pod_review(uid, "CREATE", pod.clone())).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
    }
    stop(server).await;

    let lines = captured.lines();
    let line = |uid: &str| -> Value {
        lines
            .iter()
            .find(|l| l["span"]["uid"] == uid && l["fields"]["message"] == "validating")
            .unwrap_or_else(|| panic!("no handler line of {uid}: {lines:#?}"))
            .clone()
    };
    let traced = line("traced");
    assert_eq!(
        traced["span"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{traced}"
    );
    assert_eq!(
        traced["span"]["parent_span_id"], "00f067aa0ba902b7",
        "{traced}"
    );
    let refused = line("upper-case");
    assert!(refused["span"].get("trace_id").is_none(), "{refused}");
    assert!(refused["span"].get("parent_span_id").is_none(), "{refused}");
}

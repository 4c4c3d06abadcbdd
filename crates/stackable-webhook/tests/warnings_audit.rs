//! Warnings leave the server as the API server will pass them on (no control characters,
//! each cut to 256 characters, 4,096 in total, no repeats), and audit annotations set by
//! validating and mutating handlers are sent when the API server accepts their keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestCa, client_config, local_builder, pod_review, post_json, start, stop};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionRequest;
use serde_json::{Value, json};
use stackable_webhook::{CertSource, Mutation, Validation};

fn noisy_warnings() -> Vec<String> {
    let mut warnings = vec![
        "image \"nginx\" has no tag\n\u{1b}[31mpin it\u{1b}[0m".to_owned(),
        "ä".repeat(300),
        "image \"nginx\" has no tag\n\u{1b}[31mpin it\u{1b}[0m".to_owned(),
    ];
    warnings.extend((0..40).map(|i| format!("{i:02} {}", "x".repeat(200))));
    warnings
}

fn check_warnings(response: &Value) {
    let warnings: Vec<&str> = response["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings[0], "image \"nginx\" has no tag [31mpin it [0m");
    assert_eq!(warnings[1].chars().count(), 256);
    assert!(warnings[1].ends_with('…'));
    assert!(
        warnings[2].starts_with("00 "),
        "the repeat is dropped: {warnings:?}"
    );
    let total: usize = warnings.iter().map(|w| w.chars().count()).sum();
    assert!(total <= 4096, "{total}");
    assert!(
        warnings.len() < 43,
        "the total is bounded: {}",
        warnings.len()
    );
    assert!(warnings.iter().all(|w| !w.chars().any(char::is_control)));
}

#[tokio::test]
async fn warnings_are_sanitised_and_audit_annotations_sent() {
    let ca = TestCa::new("warnings-ca");
    let builder = local_builder()
        .certificates(CertSource::Static(ca.leaf(1)))
        .validating("/validate", |_: AdmissionRequest<Pod>| async {
            noisy_warnings()
                .into_iter()
                .fold(Validation::allow(), Validation::with_warning)
                .with_audit_annotation("image-policy", "unpinned")
                .with_audit_annotation("not/allowed", "dropped")
        })
        .mutating("/mutate", |_: AdmissionRequest<Pod>| async {
            noisy_warnings()
                .into_iter()
                .fold(Mutation::<Pod>::deny("no"), Mutation::with_warning)
                .with_audit_annotation("decision", "denied")
                .with_audit_annotation("", "dropped")
        });
    let server = start(builder).await;
    let client = client_config(&ca.pem);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});

    let answer = post_json(
        &client,
        server.local_addr(),
        "/validate",
        &pod_review("v", "CREATE", pod.clone()),
    )
    .await;
    let response = &answer.json()["response"];
    assert_eq!(response["allowed"], true);
    check_warnings(response);
    assert_eq!(
        response["auditAnnotations"],
        json!({"image-policy": "unpinned"})
    );

    let answer = post_json(
        &client,
        server.local_addr(),
        "/mutate",
        &pod_review("m", "CREATE", pod),
    )
    .await;
    let response = &answer.json()["response"];
    assert_eq!(response["allowed"], false);
    check_warnings(response);
    assert_eq!(response["auditAnnotations"], json!({"decision": "denied"}));
    stop(server).await;
}

#[tokio::test]
async fn a_handler_that_overruns_the_api_servers_timeout_is_answered_for() {
    let ca = TestCa::new("deadline-ca");
    let builder = local_builder()
        .certificates(CertSource::Static(ca.leaf(1)))
        .validating("/slow", |_: AdmissionRequest<Pod>| async {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            Validation::allow()
        });
    let server = start(builder).await;
    let client = client_config(&ca.pem);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});

    let started = std::time::Instant::now();
    let answer = post_json(
        &client,
        server.local_addr(),
        "/slow?timeout=1s",
        &pod_review("slow", "CREATE", pod),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 504);
    assert_eq!(answer.json()["kind"], "Status");
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("timeout of 1s"),
        "{:?}",
        answer.json()
    );
    // Answered 100 ms before the API server's second runs out, not after the handler's ten.
    assert!(
        elapsed >= std::time::Duration::from_millis(850)
            && elapsed < std::time::Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(server.metrics().handler_panics(), 0);
    stop(server).await;
}

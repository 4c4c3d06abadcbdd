//! Through the real kube-apiserver (stackable-testenv): a handler's warning holding a newline and
//! terminal escape codes reaches the API client as a `Warning` header (the API server drops a
//! warning with a control character, so without sanitising it would vanish), and the audit
//! annotations of a validating and a mutating handler land in the request's audit event under
//! `<webhook name>/<key>`, while a key the API server would refuse is not sent; a handler that
//! overruns the webhook's `timeoutSeconds` is answered for before the API server gives up, so the
//! user reads why instead of `context deadline exceeded`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{local_builder, start, stop};
use k8s_openapi::api::{
    admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
    core::v1::Pod,
};
use kube::{
    Api,
    api::PostParams,
    client::Body,
    core::{Request, admission::AdmissionRequest},
};
use serde_json::{Value, json};
use stackable_testenv::{
    TestEnv,
    webhooks::{
        LocalWebhook, create_until, mutating_configuration, namespace_with_service,
        validating_configuration,
    },
};
use stackable_webhook::{CertSource, Mutation, Validation};

const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["pods"]
"#;

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app"}]}
    })
}

/// The audit events (one JSON object per line) of creating `name` that carry annotations.
fn audit_annotations(log: &std::path::Path, name: &str) -> Vec<serde_json::Map<String, Value>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| {
            event["verb"] == "create"
                && event["objectRef"]["resource"] == "pods"
                && event["objectRef"]["name"] == name
                && event["stage"] == "ResponseComplete"
        })
        .filter_map(|event| event["annotations"].as_object().cloned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_and_audit_annotations_reach_the_client_and_the_audit_log() {
    let audit_dir = tempfile::tempdir().unwrap();
    let policy = audit_dir.path().join("policy.yaml");
    let log = audit_dir.path().join("audit.log");
    std::fs::write(&policy, AUDIT_POLICY).unwrap();
    let env = TestEnv::builder()
        .apiserver_flag(format!("--audit-policy-file={}", policy.display()))
        .apiserver_flag(format!("--audit-log-path={}", log.display()))
        .apiserver_flag("--audit-log-mode=blocking")
        .start()
        .await
        .unwrap();
    let (namespace, leaf) = namespace_with_service(&env, "warnings-e2e", "hook")
        .await
        .unwrap();

    let builder = local_builder()
        .certificates(CertSource::in_memory(leaf))
        .validating("/validate", |request: AdmissionRequest<Pod>| async move {
            let untagged = request.object.and_then(|pod| pod.spec).is_some_and(|spec| {
                spec.containers
                    .iter()
                    .any(|c| c.image.as_deref().is_some_and(|i| !i.contains(':')))
            });
            Validation::allow()
                .with_warning("image has no tag\n\u{1b}[31mpin it\u{1b}[0m")
                .with_audit_annotation("image-policy", if untagged { "unpinned" } else { "pinned" })
                .with_audit_annotation("not/a-key", "never sent")
        })
        .mutating("/mutate", |request: AdmissionRequest<Pod>| async move {
            let Some(mut pod) = request.object else {
                return Mutation::unchanged();
            };
            pod.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("mutated".to_owned(), "true".to_owned());
            Mutation::patched(pod)
                .with_warning("label\tadded")
                .with_audit_annotation("mutation", "labelled")
        })
        .validating("/slow", |_: AdmissionRequest<Pod>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Validation::allow()
        });
    let server = start(builder).await;
    let port = server.local_addr().port();
    let ca_bundle = server.ca_bundle_pem().unwrap();
    let on_pods = |name: &str, path: &str| {
        LocalWebhook::service(name, &namespace, "hook", port, path)
            .ca_bundle(&ca_bundle)
            .rule("", "v1", "pods", &["CREATE"])
            .in_namespace(&namespace)
            .timeout_seconds(10)
    };
    let client = env.client().unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(
            &PostParams::default(),
            &validating_configuration(
                &format!("{namespace}-validating"),
                [
                    on_pods("audit.validate.example.com", "/validate"),
                    // Only for Pods labelled `slow`: a handler that overruns its 1 s.
                    on_pods("slow.validate.example.com", "/slow")
                        .object_label("slow", "true")
                        .timeout_seconds(1)
                        .failure_policy("Fail"),
                ],
            ),
        )
        .await
        .unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(
            &PostParams::default(),
            &mutating_configuration(
                &format!("{namespace}-mutating"),
                [on_pods("audit.mutate.example.com", "/mutate")],
            ),
        )
        .await
        .unwrap();
    // Wait until the API server calls both webhooks (it learns configurations through informers).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let probe: Pod = serde_json::from_value(pod("probe")).unwrap();
    create_until(&pods, &probe, Duration::from_secs(60), |outcome| {
        matches!(outcome, Ok(created) if created.metadata.labels.as_ref().is_some_and(|l| l.contains_key("mutated")))
    })
    .await
    .expect("webhooks never became active")
    .unwrap();

    // Create a Pod with a raw request, to read the Warning headers of the API server's answer.
    let request = Request::new(format!("/api/v1/namespaces/{namespace}/pods"))
        .create(
            &PostParams::default(),
            serde_json::to_vec(&pod("watched")).unwrap(),
        )
        .unwrap()
        .map(Body::from);
    let response = client.send(request).await.unwrap();
    assert!(response.status().is_success(), "{:?}", response.status());
    let warnings: Vec<String> = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    // `299 - "text"`: both warnings, as one line each, control characters turned into spaces.
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("image has no tag [31mpin it [0m")),
        "the validating handler's warning is missing: {warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("label added")),
        "the mutating handler's warning is missing: {warnings:?}"
    );

    // The audit event of that request names both webhooks' annotations, and not the refused key.
    let deadline = Instant::now() + Duration::from_secs(20);
    let annotations = loop {
        let events = audit_annotations(&log, "watched");
        if let Some(annotations) = events.into_iter().find(|a| {
            a.contains_key("audit.validate.example.com/image-policy")
                && a.contains_key("audit.mutate.example.com/mutation")
        }) {
            break annotations;
        }
        assert!(
            Instant::now() < deadline,
            "no audit event of creating pod `watched` with both annotations in {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        annotations["audit.validate.example.com/image-policy"],
        "unpinned"
    );
    assert_eq!(annotations["audit.mutate.example.com/mutation"], "labelled");
    assert!(
        !annotations.keys().any(|key| key.contains("not/a-key")),
        "{annotations:?}"
    );

    // The slow handler: the API server's error carries our answer, sent before its 1 s ran out.
    let mut slow = pod("slow");
    slow["metadata"]["labels"] = json!({"slow": "true"});
    let slow: Pod = serde_json::from_value(slow).unwrap();
    let started = Instant::now();
    let error = pods.create(&PostParams::default(), &slow).await.expect_err(
        "a handler that overran its timeout must not admit the Pod (failurePolicy: Fail)",
    );
    let message = error.to_string();
    assert!(
        message.contains("did not answer within the API server's timeout of 1s"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    stop(server).await;
}

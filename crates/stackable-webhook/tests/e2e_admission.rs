//! The real kube-apiserver (stackable-testenv) calls our validating and mutating webhooks,
//! by URL (`https://127.0.0.1:PORT/...`) and through a Service (ExternalName -> localhost),
//! trusting the generated certificate through the `caBundle`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::{
    ByteString,
    api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        core::v1::Pod,
    },
};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
    core::admission::AdmissionRequest,
};
use serde_json::json;
use stackable_certs::LeafOptions;
use stackable_testenv::{TestEnv, webhook_service_dns_names};
use stackable_webhook::{CertSource, Mutation, Validation, WebhookServer};

fn label(pod: &mut Pod, key: &str, value: &str) {
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(key.to_owned(), value.to_owned());
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1"}]}
    }))
    .unwrap()
}

fn webhook(name: &str, client_config: serde_json::Value, namespace: &str) -> serde_json::Value {
    json!({
        "name": name,
        "clientConfig": client_config,
        "rules": [{
            "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
            "operations": ["CREATE"], "scope": "Namespaced"
        }],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "failurePolicy": "Fail",
        "timeoutSeconds": 10
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_calls_our_webhooks() {
    let env = TestEnv::start().await.unwrap();
    let namespace = env.create_namespace("webhook-e2e").await.unwrap();
    env.create_external_name_service(&namespace, "hook")
        .await
        .unwrap();

    let mut leaf = LeafOptions::new().ip_address("127.0.0.1".parse().unwrap());
    for name in webhook_service_dns_names(&namespace, "hook") {
        leaf = leaf.dns_name(name);
    }
    let calls = Arc::new(AtomicU64::new(0));
    let counted = |calls: &Arc<AtomicU64>| {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::Relaxed);
        }
    };
    let (c1, c2, c3, c4) = (
        counted(&calls),
        counted(&calls),
        counted(&calls),
        counted(&calls),
    );
    let server = WebhookServer::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .handle_signals(false)
        .certificates(CertSource::generated(leaf))
        .validating("/validate-url", move |request: AdmissionRequest<Pod>| {
            c1();
            async move {
                match request.object.and_then(|p| p.metadata.name) {
                    Some(name) if name.starts_with("forbidden-url") => {
                        Validation::deny("refused by the URL webhook")
                    }
                    _ => Validation::allow(),
                }
            }
        })
        .validating("/validate-svc", move |request: AdmissionRequest<Pod>| {
            c2();
            async move {
                match request.object.and_then(|p| p.metadata.name) {
                    Some(name) if name.starts_with("forbidden-svc") => {
                        Validation::deny("refused by the Service webhook").with_code(422)
                    }
                    _ => Validation::allow().with_warning("checked by the Service webhook"),
                }
            }
        })
        .mutating("/mutate-url", move |request: AdmissionRequest<Pod>| {
            c3();
            async move {
                let Some(mut pod) = request.object else {
                    return Mutation::unchanged();
                };
                label(&mut pod, "mutated-by-url", "true");
                Mutation::patched(pod)
            }
        })
        .mutating("/mutate-svc", move |request: AdmissionRequest<Pod>| {
            c4();
            async move {
                let Some(mut pod) = request.object else {
                    return Mutation::unchanged();
                };
                label(&mut pod, "mutated-by-service", "true");
                Mutation::patched(pod)
            }
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let port = server.local_addr().port();
    let ca_bundle = ByteString(server.ca_bundle_pem().unwrap().into_bytes());
    let url = |path: &str| json!({"url": format!("https://127.0.0.1:{port}{path}"), "caBundle": ca_bundle});
    let service = |path: &str| {
        json!({
            "service": {"namespace": namespace, "name": "hook", "port": port, "path": path},
            "caBundle": ca_bundle
        })
    };

    let client = env.client().unwrap();
    let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": format!("{namespace}-validating")},
        "webhooks": [
            webhook("url.validate.example.com", url("/validate-url"), &namespace),
            webhook("svc.validate.example.com", service("/validate-svc"), &namespace),
        ]
    }))
    .unwrap();
    let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": format!("{namespace}-mutating")},
        "webhooks": [
            webhook("url.mutate.example.com", url("/mutate-url"), &namespace),
            webhook("svc.mutate.example.com", service("/mutate-svc"), &namespace),
        ]
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &validating)
        .await
        .unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &mutating)
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    // The API server needs a moment to see the configurations and the Service: retry.
    let started = Instant::now();
    let created = loop {
        match pods.create(&PostParams::default(), &pod("allowed")).await {
            Ok(created)
                if created.metadata.labels.as_ref().is_some_and(|l| {
                    l.contains_key("mutated-by-url") && l.contains_key("mutated-by-service")
                }) =>
            {
                break created;
            }
            Ok(_) => {
                // Created before every webhook was active: delete and try again.
                let _ = pods
                    .delete("allowed", &DeleteParams::default().grace_period(0))
                    .await;
            }
            Err(error) => eprintln!("not ready yet: {error}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "webhooks never became active"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("webhooks active after {:?}", started.elapsed());
    let labels = created.metadata.labels.unwrap();
    assert_eq!(labels["mutated-by-url"], "true");
    assert_eq!(labels["mutated-by-service"], "true");
    assert_eq!(
        created.spec.unwrap().containers[0].image.as_deref(),
        Some("registry.example/app:1")
    );

    let error = pods
        .create(&PostParams::default(), &pod("forbidden-url-1"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("refused by the URL webhook"), "{message}");

    let error = pods
        .create(&PostParams::default(), &pod("forbidden-svc-1"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("refused by the Service webhook"),
        "{message}"
    );
    if let kube::Error::Api(status) = &error {
        assert_eq!(status.code, 422);
    }
    assert!(calls.load(Ordering::Relaxed) >= 6);
    assert_eq!(server.metrics().handler_panics(), 0);
    server.shutdown();
    server.wait().await.unwrap();
}

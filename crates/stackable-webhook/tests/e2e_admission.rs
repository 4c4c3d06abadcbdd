//! The real kube-apiserver (stackable-testenv) calls our validating and mutating webhooks,
//! by URL (`https://127.0.0.1:PORT/...`) and through a Service (ExternalName -> localhost),
//! trusting the generated certificate through the `caBundle`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{local_builder, start, stop};
use k8s_openapi::api::{
    admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
    core::v1::Pod,
};
use kube::{Api, api::PostParams, core::admission::AdmissionRequest};
use serde_json::json;
use stackable_testenv::{
    TestEnv,
    webhooks::{
        LocalWebhook, create_until, mutating_configuration, namespace_with_service,
        validating_configuration,
    },
};
use stackable_webhook::{CertSource, Mutation, Validation};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_calls_our_webhooks() {
    let env = TestEnv::start().await.unwrap();
    let (namespace, leaf) = namespace_with_service(&env, "webhook-e2e", "hook")
        .await
        .unwrap();
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
    let builder = local_builder()
        .certificates(CertSource::in_memory(leaf))
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
        });
    let server = start(builder).await;
    let port = server.local_addr().port();
    let ca_bundle = server.ca_bundle_pem().unwrap();
    // The same rules for every webhook, called by URL or through the Service.
    let on_pods = |webhook: LocalWebhook| {
        webhook
            .ca_bundle(&ca_bundle)
            .rule("", "v1", "pods", &["CREATE"])
            .in_namespace(&namespace)
            .timeout_seconds(10)
    };
    let by_url = |name: &str, path: &str| on_pods(LocalWebhook::url(name, port, path));
    let by_service = |name: &str, path: &str| {
        on_pods(LocalWebhook::service(name, &namespace, "hook", port, path))
    };

    let client = env.client().unwrap();
    let validating = validating_configuration(
        &format!("{namespace}-validating"),
        [
            by_url("url.validate.example.com", "/validate-url"),
            by_service("svc.validate.example.com", "/validate-svc"),
        ],
    );
    let mutating = mutating_configuration(
        &format!("{namespace}-mutating"),
        [
            by_url("url.mutate.example.com", "/mutate-url"),
            by_service("svc.mutate.example.com", "/mutate-svc"),
        ],
    );
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
    let created = create_until(&pods, &pod("allowed"), Duration::from_secs(60), |outcome| {
        matches!(outcome, Ok(created) if created.metadata.labels.as_ref().is_some_and(|l| {
            l.contains_key("mutated-by-url") && l.contains_key("mutated-by-service")
        }))
    })
    .await
    .expect("webhooks never became active")
    .unwrap();
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
    stop(server).await;
}

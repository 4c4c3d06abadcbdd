//! End to end: before injection the API server cannot call the webhook (unknown
//! authority); after `CaInjector` writes the bundle it calls it over TLS and obeys it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use k8s_openapi::api::{admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::Pod};
use kube::{Api, api::PostParams, core::admission::AdmissionRequest};
use serde_json::json;
use stackable_cainject::{CaInjector, Target};
use stackable_testenv::{
    TestEnv,
    webhooks::{LocalWebhook, create_until, namespace_with_service, validating_configuration},
};
use stackable_webhook::{CertSource, Validation, WebhookServer};
use tokio::sync::watch;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
        "spec": { "containers": [{ "name": "main", "image": "registry.example/app:1" }] }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_calls_the_webhook_after_injection() {
    let env = TestEnv::start().await.unwrap();
    let (namespace, leaf) = namespace_with_service(&env, "cainject-tls", "hook")
        .await
        .unwrap();
    let server = WebhookServer::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .handle_signals(false)
        .certificates(CertSource::in_memory(leaf))
        .validating("/validate", |request: AdmissionRequest<Pod>| async move {
            match request.object.and_then(|p| p.metadata.name) {
                Some(name) if name.starts_with("forbidden") => {
                    Validation::deny("refused by the injected webhook")
                }
                _ => Validation::allow(),
            }
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let port = server.local_addr().port();
    let ca_bundle = server.ca_bundle_pem().unwrap();

    // The configuration ships without a caBundle, as a Helm chart would.
    let client = env.client().unwrap();
    let name = format!("{namespace}-validating");
    let configuration = validating_configuration(
        &name,
        [LocalWebhook::service(
            "tls.cainject.example.com",
            &namespace,
            "hook",
            port,
            "/validate",
        )
        .rule("", "v1", "pods", &["CREATE"])
        .in_namespace(&namespace)
        .timeout_seconds(5)],
    );
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .unwrap();

    // Without the bundle the API server cannot verify the server: the call fails.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let before = create_until(&pods, &pod("early"), Duration::from_secs(60), |outcome| {
        matches!(outcome, Err(error) if error.to_string().contains("failed calling webhook"))
    })
    .await
    .expect("webhook never became active")
    .unwrap_err();
    println!("before injection: {before}");
    assert!(
        before.to_string().contains("x509") || before.to_string().contains("certificate"),
        "{before}"
    );

    let (_tx, bundles) = watch::channel(ca_bundle);
    let injector = CaInjector::new(
        client.clone(),
        "e2e-cainject",
        [Target::validating_webhook(&name)],
    )
    .start(bundles);
    tokio::time::timeout(Duration::from_secs(30), injector.ready())
        .await
        .unwrap();
    let injected_at = Instant::now();

    // Now the API server trusts the webhook and obeys its answers.
    let denied = create_until(
        &pods,
        &pod("forbidden-1"),
        Duration::from_secs(30),
        |outcome| match outcome {
            Err(error) => error
                .to_string()
                .contains("refused by the injected webhook"),
            Ok(_) => panic!("the webhook should have denied forbidden-1"),
        },
    )
    .await
    .expect("the API server never trusted the webhook")
    .unwrap_err();
    println!(
        "after injection ({:?} until trusted): {denied}",
        injected_at.elapsed()
    );
    pods.create(&PostParams::default(), &pod("allowed"))
        .await
        .unwrap();
    drop(injector);
    server.shutdown();
}

//! The sidecar injector against a real API server (stackable-testenv): a labelled Pod gets the
//! sidecar, a labelled Pod without limits is refused, an unlabelled Pod is untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{net::SocketAddr, time::Duration};

use k8s_openapi::api::{
    admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
    core::v1::Pod,
};
use kube::{Api, api::PostParams};
use sidecar_injector::{INJECT_LABEL, InjectorConfig, SIDECAR_NAME};
use stackable_testenv::{
    TestEnv,
    webhooks::{
        LocalWebhook, create_until, mutating_configuration, namespace_with_service,
        validating_configuration,
    },
};
use stackable_webhook::{CertSource, WebhookServer};

use crate::common::pod;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injects_and_validates_through_the_api_server() {
    let env = TestEnv::start().await.unwrap();
    let (namespace, leaf) = namespace_with_service(&env, "injector-e2e", "sidecar-injector")
        .await
        .unwrap();
    let builder = WebhookServer::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .handle_signals(false)
        .certificates(CertSource::in_memory(leaf));
    let server = sidecar_injector::mount(
        builder,
        InjectorConfig {
            sidecar_image: "fluent-bit:test".to_owned(),
            namespace: "sidecar-injector".to_owned(),
        },
    )
    .build()
    .unwrap()
    .start()
    .await
    .unwrap();
    let port = server.local_addr().port();
    let ca_bundle = server.ca_bundle_pem().unwrap();
    let hook = |name: &str, path: &str, operations: &[&str]| {
        LocalWebhook::service(name, &namespace, "sidecar-injector", port, path)
            .ca_bundle(&ca_bundle)
            .rule("", "v1", "pods", operations)
            .object_label(INJECT_LABEL, "true")
            .in_namespace(&namespace)
    };
    let client = env.client().unwrap();
    let mutating = mutating_configuration(
        &format!("{namespace}-inject"),
        [hook("inject.example.com", "/mutate", &["CREATE"])
            .reinvocation_policy("IfNeeded")
            .timeout_seconds(10)],
    );
    let validating = validating_configuration(
        &format!("{namespace}-limits"),
        [hook(
            "limits.example.com",
            "/validate",
            &["CREATE", "UPDATE"],
        )],
    );
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &mutating)
        .await
        .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &validating)
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let injected = create_until(
        &pods,
        &pod("with-logs", true, true),
        Duration::from_secs(60),
        |outcome| matches!(outcome, Ok(created) if created.spec.as_ref().unwrap().containers.len() == 2),
    )
    .await
    .expect("the injector never became active")
    .unwrap();
    let spec = injected.spec.unwrap();
    assert_eq!(spec.containers[1].name, SIDECAR_NAME);
    assert_eq!(spec.containers[1].image.as_deref(), Some("fluent-bit:test"));
    assert!(spec.volumes.unwrap().iter().any(|v| v.name == "app-logs"));
    assert!(
        spec.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/var/log/app")
    );

    let error = pods
        .create(&PostParams::default(), &pod("no-limits", true, false))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("need cpu and memory limits"),
        "{error}"
    );

    let plain = pods
        .create(&PostParams::default(), &pod("plain", false, false))
        .await
        .unwrap();
    assert_eq!(plain.spec.unwrap().containers.len(), 1);
    server.shutdown();
    server.wait().await.unwrap();
}

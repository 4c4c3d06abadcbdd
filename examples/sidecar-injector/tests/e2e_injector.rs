//! The sidecar injector against a real API server (stackable-testenv): a labelled Pod gets the
//! sidecar, a labelled Pod without limits is refused, an unlabelled Pod is untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
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
};
use serde_json::json;
use sidecar_injector::{INJECT_LABEL, InjectorConfig, SIDECAR_NAME};
use stackable_certs::LeafOptions;
use stackable_testenv::{TestEnv, webhook_service_dns_names};
use stackable_webhook::{CertSource, WebhookServer};

fn pod(name: &str, labelled: bool, limits: bool) -> Pod {
    let labels = if labelled {
        json!({INJECT_LABEL: "true"})
    } else {
        json!({})
    };
    let resources = if limits {
        json!({"limits": {"cpu": "200m", "memory": "128Mi"}})
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1", "resources": resources}]}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injects_and_validates_through_the_api_server() {
    let env = TestEnv::start().await.unwrap();
    let namespace = env.create_namespace("injector-e2e").await.unwrap();
    env.create_external_name_service(&namespace, "sidecar-injector")
        .await
        .unwrap();
    let mut leaf = LeafOptions::new();
    for name in webhook_service_dns_names(&namespace, "sidecar-injector") {
        leaf = leaf.dns_name(name);
    }
    let builder = WebhookServer::builder()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .handle_signals(false)
        .certificates(CertSource::generated(leaf));
    let server = sidecar_injector::mount(
        builder,
        InjectorConfig {
            sidecar_image: "fluent-bit:test".to_owned(),
        },
    )
    .build()
    .unwrap()
    .start()
    .await
    .unwrap();
    let port = server.local_addr().port();
    let ca_bundle = ByteString(server.ca_bundle_pem().unwrap().into_bytes());
    let hook = |name: &str, path: &str, operations: serde_json::Value| {
        json!({
            "name": name,
            "clientConfig": {
                "service": {"namespace": namespace, "name": "sidecar-injector", "port": port, "path": path},
                "caBundle": ca_bundle
            },
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                       "operations": operations, "scope": "Namespaced"}],
            "objectSelector": {"matchLabels": {INJECT_LABEL: "true"}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "reinvocationPolicy": if path == "/mutate" { "IfNeeded" } else { "Never" },
        })
    };
    let mut mutating_hook = hook("inject.example.com", "/mutate", json!(["CREATE"]));
    let mut validating_hook = hook(
        "limits.example.com",
        "/validate",
        json!(["CREATE", "UPDATE"]),
    );
    validating_hook
        .as_object_mut()
        .unwrap()
        .remove("reinvocationPolicy");
    mutating_hook["timeoutSeconds"] = json!(10);
    let client = env.client().unwrap();
    let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": format!("{namespace}-inject")}, "webhooks": [mutating_hook]
    }))
    .unwrap();
    let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": format!("{namespace}-limits")}, "webhooks": [validating_hook]
    }))
    .unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &mutating)
        .await
        .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &validating)
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let started = Instant::now();
    let injected = loop {
        match pods
            .create(&PostParams::default(), &pod("with-logs", true, true))
            .await
        {
            Ok(created) if created.spec.as_ref().unwrap().containers.len() == 2 => break created,
            Ok(_) => {
                let _ = pods
                    .delete("with-logs", &DeleteParams::default().grace_period(0))
                    .await;
            }
            Err(error) => eprintln!("webhook not ready yet: {error}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the injector never became active"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
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

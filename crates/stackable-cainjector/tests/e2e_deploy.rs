//! The deploy manifests are accepted by a real API server (server-side dry run with the
//! control plane's kubectl) and the RBAC they grant is what the injector needs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::process::Command;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use stackable_testenv::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_manifests_pass_server_side_dry_run() {
    let env = TestEnv::start().await.unwrap();
    let Some(kubectl) = env.binaries().kubectl.clone() else {
        eprintln!("no kubectl in the test binaries; skipping");
        return;
    };
    // Dry run does not create the Namespace, so create it for the namespaced objects.
    Api::<Namespace>::all(env.client().unwrap())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("stackable-cainjector".to_owned()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await
        .unwrap();
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    let output = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(env.kubeconfig_path())
        .args(["apply", "--dry-run=server", "--server-side", "-f"])
        .arg(format!("{deploy}/rbac.yaml"))
        .arg("-f")
        .arg(format!("{deploy}/deployment.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}{stderr}");
    assert!(output.status.success(), "{stderr}");
    for object in [
        "serviceaccount/stackable-cainjector",
        "clusterrole.rbac.authorization.k8s.io/stackable-cainjector",
        "clusterrolebinding.rbac.authorization.k8s.io/stackable-cainjector",
        "deployment.apps/stackable-cainjector",
    ] {
        assert!(stdout.contains(object), "{object} missing from: {stdout}");
    }

    // Apply the RBAC for real and run the injector as its service account.
    let output = Command::new(env.binaries().kubectl.clone().unwrap())
        .arg("--kubeconfig")
        .arg(env.kubeconfig_path())
        .args(["apply", "--server-side", "-f"])
        .arg(format!("{deploy}/rbac.yaml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut config = env.config().clone();
    config.auth_info.impersonate =
        Some("system:serviceaccount:stackable-cainjector:stackable-cainjector".to_owned());
    let as_service_account = kube::Client::try_from(config).unwrap();
    let admin = env.client().unwrap();
    let ca = stackable_certs::ca::CertificateAuthority::new(&stackable_certs::ca::CaOptions::new(
        "deploy-ca",
    ))
    .unwrap()
    .certificate()
    .to_pem();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "ca", "namespace": "stackable-cainjector",
                      "annotations": { "cert-manager.io/allow-direct-injection": "true" } },
        "stringData": { "ca.crt": ca }
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), "stackable-cainjector")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let hooks: k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": { "name": "deploy-rbac",
                          "annotations": { "cert-manager.io/inject-ca-from-secret": "stackable-cainjector/ca" } },
            "webhooks": [{ "name": "a.deploy.example.com",
                "clientConfig": { "service": { "name": "hooks", "namespace": "default" } },
                "rules": [{ "apiGroups": ["deploy.example.com"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["things"] }],
                "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore" }]
        }))
        .unwrap();
    let api =
        Api::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>::all(
            admin.clone(),
        );
    api.create(&PostParams::default(), &hooks).await.unwrap();

    let metrics = stackable_cainjector::Metrics::new();
    let controller = tokio::spawn(stackable_cainjector::run(
        as_service_account,
        common::config("stackable-cainjector", Vec::new(), None),
        metrics.clone(),
    ));
    let start = std::time::Instant::now();
    loop {
        let current = api.get("deploy-rbac").await.unwrap();
        if current.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .is_some()
        {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "not injected with the deploy RBAC; errors: {}, metrics: {}",
            metrics.errors_total(),
            metrics.render()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(metrics.errors_total(), 0);
    controller.abort();
}

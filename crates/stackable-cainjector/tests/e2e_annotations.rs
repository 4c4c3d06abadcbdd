//! The standalone injector against a real API server: every annotation kind, the
//! anti-hijack rules, refusal of bad sources, and Secret-change propagation latency.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::{Duration, Instant};

use common::{
    api, ca_pem, canonical, cert_manager_crd, create, create_certificate, events, injected,
    put_direct_secret, put_secret, spawn_injector, wait_injected, wait_refused,
    webhook_configuration,
};
use kube::Client;
use serde_json::{Value, json};
use stackable_cainject::TargetKind;
use stackable_testenv::TestEnv;

/// The CRD `widgets.annot.example.com`, fed from the Secret `direct`.
const WIDGETS: &str = "widgets.annot.example.com";

/// How long a bundle may take to arrive.
const WAIT: Duration = Duration::from_secs(20);

async fn wait_widgets(client: &Client, expected: &str) {
    wait_injected(
        client,
        TargetKind::CustomResourceDefinition,
        None,
        WIDGETS,
        expected,
        WAIT,
    )
    .await;
}

fn crd_with_webhook(
    name: &str,
    group: &str,
    plural: &str,
    kind: &str,
    annotations: Value,
) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": name, "annotations": annotations },
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": { "kind": kind, "plural": plural },
            "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }],
            "conversion": { "strategy": "Webhook", "webhook": { "conversionReviewVersions": ["v1"],
                "clientConfig": { "service": { "name": "hooks", "namespace": "default" } } } }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honours_cert_manager_and_openshift_annotations() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    env.install_crds([cert_manager_crd()]).await.unwrap();
    let ns = env.create_namespace("cainjector").await.unwrap();
    let ns = ns.as_str();
    let apiserver_ca = canonical(env.ca_pem());
    let ca_a = ca_pem("ca-a");
    let ca_b = ca_pem("ca-b");

    let (metrics, controller) = spawn_injector(&env, Vec::new());

    // inject-ca-from-secret with a marked Secret.
    put_direct_secret(&client, ns, "direct", &ca_a).await;
    create(
        &client,
        TargetKind::CustomResourceDefinition,
        None,
        crd_with_webhook(
            WIDGETS,
            "annot.example.com",
            "widgets",
            "Widget",
            json!({ "cert-manager.io/inject-ca-from-secret": format!("{ns}/direct") }),
        ),
    )
    .await;
    wait_widgets(&client, &ca_a).await;

    // inject-apiserver-ca.
    create(
        &client,
        TargetKind::ValidatingWebhookConfiguration,
        None,
        webhook_configuration(
            "ValidatingWebhookConfiguration",
            "apiserver-ca",
            json!({ "cert-manager.io/inject-apiserver-ca": "true" }),
        ),
    )
    .await;
    wait_injected(
        &client,
        TargetKind::ValidatingWebhookConfiguration,
        None,
        "apiserver-ca",
        &apiserver_ca,
        WAIT,
    )
    .await;

    // OpenShift's inject-cabundle on a ConfigMap: the configured service CA (here the API server CA).
    create(
        &client,
        TargetKind::ConfigMap,
        Some(ns),
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "openshift", "namespace": ns,
                              "annotations": { "service.beta.openshift.io/inject-cabundle": "true" } },
                "data": { "other": "kept" } }),
    )
    .await;
    wait_injected(
        &client,
        TargetKind::ConfigMap,
        Some(ns),
        "openshift",
        &apiserver_ca,
        WAIT,
    )
    .await;

    // inject-ca-from a cert-manager Certificate, into an APIService.
    create_certificate(&client, ns, "serving", "serving-tls").await;
    put_secret(
        &client,
        ns,
        "serving-tls",
        &[("cert-manager.io/certificate-name", "serving")],
        &ca_b,
    )
    .await;
    create(
        &client,
        TargetKind::ApiService,
        None,
        json!({ "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": { "name": "v1.aggr.example.com",
                              "annotations": { "cert-manager.io/inject-ca-from": format!("{ns}/serving") } },
                "spec": { "group": "aggr.example.com", "version": "v1", "groupPriorityMinimum": 100,
                          "versionPriority": 100, "service": { "name": "hooks", "namespace": ns, "port": 443 } } }),
    )
    .await;
    wait_injected(
        &client,
        TargetKind::ApiService,
        None,
        "v1.aggr.example.com",
        &ca_b,
        WAIT,
    )
    .await;

    // Anti-hijack: a Secret without allow-direct-injection is refused.
    put_secret(&client, ns, "unmarked", &[], &ca_b).await;
    create(
        &client,
        TargetKind::MutatingWebhookConfiguration,
        None,
        webhook_configuration(
            "MutatingWebhookConfiguration",
            "unmarked",
            json!({ "cert-manager.io/inject-ca-from-secret": format!("{ns}/unmarked") }),
        ),
    )
    .await;
    let note = wait_refused(&client, "unmarked", "allow-direct-injection").await;
    println!("unmarked Secret refused: {note}");
    assert_eq!(
        injected(
            &client,
            TargetKind::MutatingWebhookConfiguration,
            None,
            "unmarked"
        )
        .await,
        None
    );

    // Anti-hijack: a Certificate whose Secret was written for another Certificate.
    create_certificate(&client, ns, "impostor", "serving-tls").await;
    create(
        &client,
        TargetKind::ConfigMap,
        Some(ns),
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "impostor", "namespace": ns,
                              "annotations": { "cert-manager.io/inject-ca-from": format!("{ns}/impostor") } } }),
    )
    .await;
    let note = wait_refused(&client, "impostor", "certificate-name").await;
    println!("mismatched certificate-name refused: {note}");
    assert_eq!(
        injected(&client, TargetKind::ConfigMap, Some(ns), "impostor").await,
        None
    );

    // A Secret update propagates; report the latency.
    let both = format!("{ca_a}{ca_b}");
    let mut latencies = Vec::new();
    for round in 0..5 {
        let content = if round % 2 == 0 {
            both.clone()
        } else {
            ca_a.clone()
        };
        let start = Instant::now();
        put_direct_secret(&client, ns, "direct", &content).await;
        wait_widgets(&client, &content).await;
        latencies.push(start.elapsed());
    }
    println!("Secret update -> CRD caBundle latency over 5 rounds: {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(2)),
        "{latencies:?}"
    );

    // Duplicates and expired certificates are dropped from annotation sources.
    put_direct_secret(
        &client,
        ns,
        "direct",
        &format!(
            "{ca_b}{ca_b}{}",
            include_str!("../../stackable-cainject/tests/fixtures/ca-expired.pem")
        ),
    )
    .await;
    wait_widgets(&client, &ca_b).await;

    // A garbage ca.crt is refused and the old bundle stays.
    let refusals_before = metrics.refusals_total();
    put_direct_secret(&client, ns, "direct", "garbage").await;
    let note = wait_refused(&client, WIDGETS, "ca.crt of Secret").await;
    println!("garbage ca.crt refused: {note}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        injected(&client, TargetKind::CustomResourceDefinition, None, WIDGETS)
            .await
            .as_deref(),
        Some(ca_b.as_str())
    );
    assert!(metrics.refusals_total() > refusals_before);
    assert!(metrics.injections_total() >= 5);
    // The ConfigMap's other keys are untouched.
    let cm = api(&client, TargetKind::ConfigMap, Some(ns))
        .get("openshift")
        .await
        .unwrap();
    assert_eq!(cm.data["data"]["other"], "kept");
    let injected_events = events(&client, "CABundleInjected", WIDGETS).await.len();
    assert!(injected_events >= 1, "no CABundleInjected event on the CRD");
    println!("metrics:\n{}", metrics.render());
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_scoping() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    let inside = env.create_namespace("inside").await.unwrap();
    let outside = env.create_namespace("outside").await.unwrap();
    let apiserver_ca = canonical(env.ca_pem());
    let (_, controller) = spawn_injector(&env, vec![inside.clone()]);
    let config_map = |ns: &str| {
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "trust", "namespace": ns,
                              "annotations": { "cert-manager.io/inject-apiserver-ca": "true" } } })
    };
    create(
        &client,
        TargetKind::ConfigMap,
        Some(&outside),
        config_map(&outside),
    )
    .await;
    create(
        &client,
        TargetKind::ConfigMap,
        Some(&inside),
        config_map(&inside),
    )
    .await;
    wait_injected(
        &client,
        TargetKind::ConfigMap,
        Some(&inside),
        "trust",
        &apiserver_ca,
        WAIT,
    )
    .await;

    // A cluster-scoped target that names a Secret outside the scope is refused.
    put_direct_secret(&client, &outside, "ca", &ca_pem("outside-ca")).await;
    create(
        &client,
        TargetKind::CustomResourceDefinition,
        None,
        crd_with_webhook(
            "scoped.scope.example.com",
            "scope.example.com",
            "scoped",
            "Scoped",
            json!({ "cert-manager.io/inject-ca-from-secret": format!("{outside}/ca") }),
        ),
    )
    .await;
    let note = wait_refused(
        &client,
        "scoped.scope.example.com",
        "outside the namespaces",
    )
    .await;
    println!("out-of-scope Secret refused: {note}");
    // The ConfigMap outside the scope was never touched.
    assert_eq!(
        injected(&client, TargetKind::ConfigMap, Some(&outside), "trust").await,
        None
    );
    controller.abort();
}

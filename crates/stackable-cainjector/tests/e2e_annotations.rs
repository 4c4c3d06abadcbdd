//! The standalone injector against a real API server: every annotation kind, the
//! anti-hijack rules, refusal of bad sources, and Secret-change propagation latency.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use k8s_openapi::{
    ByteString,
    api::{core::v1::Secret, events::v1::Event},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DynamicObject, ObjectMeta, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    runtime::events::Reporter,
};
use serde_json::{Value, json};
use stackable_cainject::{TargetKind, TrustBundle};
use stackable_cainjector::{Config, Metrics, ServiceCa, run};
use stackable_certs::ca::{CaOptions, CertificateAuthority};
use stackable_testenv::TestEnv;

fn canonical(pem: &str) -> String {
    TrustBundle::from_pem(pem).unwrap().to_pem()
}

fn ca_pem(name: &str) -> String {
    canonical(
        &CertificateAuthority::new(&CaOptions::new(name))
            .unwrap()
            .certificate()
            .to_pem(),
    )
}

fn api(client: &Client, kind: TargetKind, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &kind.api_resource()),
        None => Api::all_with(client.clone(), &kind.api_resource()),
    }
}

async fn create(client: &Client, kind: TargetKind, ns: Option<&str>, body: Value) {
    let object: DynamicObject = serde_json::from_value(body).unwrap();
    api(client, kind, ns)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

async fn put_secret(client: &Client, ns: &str, name: &str, annotations: &[(&str, &str)], ca: &str) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "ca.crt".to_owned(),
            ByteString(ca.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
}

/// The injected bundle of an object (decoded PEM), whatever its kind.
async fn injected(
    client: &Client,
    kind: TargetKind,
    ns: Option<&str>,
    name: &str,
) -> Option<String> {
    let object = serde_json::to_value(api(client, kind, ns).get(name).await.unwrap()).unwrap();
    let encoded = match kind {
        TargetKind::CustomResourceDefinition => {
            object.pointer("/spec/conversion/webhook/clientConfig/caBundle")
        }
        TargetKind::ValidatingWebhookConfiguration | TargetKind::MutatingWebhookConfiguration => {
            object.pointer("/webhooks/0/clientConfig/caBundle")
        }
        TargetKind::ApiService => object.pointer("/spec/caBundle"),
        TargetKind::ConfigMap => {
            return object
                .pointer("/data/service-ca.crt")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
    };
    encoded
        .and_then(Value::as_str)
        .map(|b| String::from_utf8(STANDARD.decode(b).unwrap()).unwrap())
}

async fn wait_injected(
    client: &Client,
    kind: TargetKind,
    ns: Option<&str>,
    name: &str,
    expected: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        let current = injected(client, kind, ns, name).await;
        if current.as_deref() == Some(expected) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{kind} {name} never got the expected bundle; it has {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn refusal_events(client: &Client, name: &str) -> Vec<String> {
    Api::<Event>::all(client.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("CABundleRefused")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .filter_map(|e| e.note)
        .collect()
}

async fn wait_refused(client: &Client, name: &str, needle: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(note) = refusal_events(client, name)
            .await
            .into_iter()
            .find(|n| n.contains(needle))
        {
            return note;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no CABundleRefused event for {name} mentioning {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

fn webhook_configuration(kind: &str, name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
        "metadata": { "name": name, "annotations": annotations },
        "webhooks": [{
            "name": "a.annot.example.com",
            "clientConfig": { "service": { "name": "hooks", "namespace": "default" } },
            "rules": [{ "apiGroups": ["annot.example.com"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["gadgets"] }],
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore"
        }]
    })
}

fn cert_manager_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "certificates.cert-manager.io" },
        "spec": {
            "group": "cert-manager.io", "scope": "Namespaced",
            "names": { "kind": "Certificate", "plural": "certificates", "singular": "certificate" },
            "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }]
        }
    }))
    .unwrap()
}

async fn create_certificate(client: &Client, ns: &str, name: &str, secret_name: &str) {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    );
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": { "name": name, "namespace": ns },
        "spec": { "secretName": secret_name, "issuerRef": { "name": "ca" } }
    }))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
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

    let metrics = Metrics::new();
    let controller = tokio::spawn(run(
        client.clone(),
        Config {
            field_manager: "e2e-cainjector".to_owned(),
            namespaces: Vec::new(),
            api_server_ca: Some(env.ca_pem().to_owned()),
            service_ca: ServiceCa::ApiServerCa,
            reporter: Reporter {
                controller: "e2e-cainjector".to_owned(),
                instance: None,
            },
        },
        metrics.clone(),
    ));

    // inject-ca-from-secret with a marked Secret.
    put_secret(
        &client,
        ns,
        "direct",
        &[("cert-manager.io/allow-direct-injection", "true")],
        &ca_a,
    )
    .await;
    create(
        &client,
        TargetKind::CustomResourceDefinition,
        None,
        crd_with_webhook(
            "widgets.annot.example.com",
            "annot.example.com",
            "widgets",
            "Widget",
            json!({ "cert-manager.io/inject-ca-from-secret": format!("{ns}/direct") }),
        ),
    )
    .await;
    wait_injected(
        &client,
        TargetKind::CustomResourceDefinition,
        None,
        "widgets.annot.example.com",
        &ca_a,
    )
    .await;

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
        put_secret(
            &client,
            ns,
            "direct",
            &[("cert-manager.io/allow-direct-injection", "true")],
            &content,
        )
        .await;
        wait_injected(
            &client,
            TargetKind::CustomResourceDefinition,
            None,
            "widgets.annot.example.com",
            &content,
        )
        .await;
        latencies.push(start.elapsed());
    }
    println!("Secret update -> CRD caBundle latency over 5 rounds: {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(2)),
        "{latencies:?}"
    );

    // Duplicates and expired certificates are dropped from annotation sources.
    put_secret(
        &client,
        ns,
        "direct",
        &[("cert-manager.io/allow-direct-injection", "true")],
        &format!(
            "{ca_b}{ca_b}{}",
            include_str!("../../stackable-cainject/tests/fixtures/ca-expired.pem")
        ),
    )
    .await;
    wait_injected(
        &client,
        TargetKind::CustomResourceDefinition,
        None,
        "widgets.annot.example.com",
        &ca_b,
    )
    .await;

    // A garbage ca.crt is refused and the old bundle stays.
    let refusals_before = metrics.refusals_total();
    put_secret(
        &client,
        ns,
        "direct",
        &[("cert-manager.io/allow-direct-injection", "true")],
        "garbage",
    )
    .await;
    let note = wait_refused(&client, "widgets.annot.example.com", "ca.crt of Secret").await;
    println!("garbage ca.crt refused: {note}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        injected(
            &client,
            TargetKind::CustomResourceDefinition,
            None,
            "widgets.annot.example.com"
        )
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
    let injected_events = Api::<Event>::all(client.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("CABundleInjected")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                    == Some("widgets.annot.example.com")
        })
        .count();
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
    let controller = tokio::spawn(run(
        client.clone(),
        Config {
            field_manager: "e2e-cainjector".to_owned(),
            namespaces: vec![inside.clone()],
            api_server_ca: Some(env.ca_pem().to_owned()),
            service_ca: ServiceCa::ApiServerCa,
            reporter: Reporter {
                controller: "e2e-cainjector".to_owned(),
                instance: None,
            },
        },
        Metrics::new(),
    ));
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
    )
    .await;

    // A cluster-scoped target that names a Secret outside the scope is refused.
    put_secret(
        &client,
        &outside,
        "ca",
        &[("cert-manager.io/allow-direct-injection", "true")],
        &ca_pem("outside-ca"),
    )
    .await;
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

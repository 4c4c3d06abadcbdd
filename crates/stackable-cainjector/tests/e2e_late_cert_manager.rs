//! cert-manager installed after the injector started, then removed and installed again:
//! objects annotated with `cert-manager.io/inject-ca-from` wait with an Event saying the
//! Certificate CRD is not installed, and get their bundle once it is, without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use k8s_openapi::{
    ByteString,
    api::{
        admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::Secret,
        events::v1::Event,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
    runtime::events::Reporter,
};
use serde_json::json;
use stackable_cainject::TrustBundle;
use stackable_cainjector::{Config, Metrics, ServiceCa, controller::CERTIFICATE_CRD, run};
use stackable_certs::ca::{CaOptions, CertificateAuthority};
use stackable_testenv::TestEnv;

const TIMEOUT: Duration = Duration::from_secs(30);

fn ca_pem(name: &str) -> String {
    let pem = CertificateAuthority::new(&CaOptions::new(name))
        .unwrap()
        .certificate()
        .to_pem();
    TrustBundle::from_pem(&pem).unwrap().to_pem()
}

/// A minimal `certificates.cert-manager.io` CRD: the kind, served as v1, any content.
fn certificate_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": CERTIFICATE_CRD },
        "spec": {
            "group": "cert-manager.io", "scope": "Namespaced",
            "names": { "kind": "Certificate", "listKind": "CertificateList",
                       "plural": "certificates", "singular": "certificate" },
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

async fn put_secret(client: &Client, ns: &str, name: &str, certificate: &str, ca: &str) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            annotations: Some(BTreeMap::from([(
                "cert-manager.io/certificate-name".to_owned(),
                certificate.to_owned(),
            )])),
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

/// A validating webhook configuration reading its bundle from Certificate `<ns>/<cert>`.
async fn create_webhook(client: &Client, name: &str, ns: &str, certificate: &str) {
    let config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": { "name": name,
                      "annotations": { "cert-manager.io/inject-ca-from": format!("{ns}/{certificate}") } },
        "webhooks": [{
            "name": "a.late.example.com",
            "clientConfig": { "service": { "name": "hooks", "namespace": ns } },
            "rules": [{ "apiGroups": ["late.example.com"], "apiVersions": ["v1"],
                        "operations": ["CREATE"], "resources": ["gadgets"] }],
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore"
        }]
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
}

async fn injected(client: &Client, name: &str) -> Option<String> {
    let config = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get(name)
        .await
        .unwrap();
    let bundle = config.webhooks?.first()?.client_config.ca_bundle.clone()?;
    String::from_utf8(bundle.0).ok()
}

async fn wait_injected(client: &Client, name: &str, expected: &str) -> Duration {
    let start = Instant::now();
    loop {
        let current = injected(client, name).await;
        if current.as_deref() == Some(expected) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "{name} never got the expected bundle; it has {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Notes of the CABundleRefused Events on `name`, with their (series) counts.
async fn refusals(client: &Client, name: &str) -> Vec<(String, i32)> {
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
        .map(|e| {
            let count = e.series.as_ref().map_or(1, |s| s.count);
            (e.note.unwrap_or_default(), count)
        })
        .collect()
}

const NOT_INSTALLED: &str =
    "Certificate CRD (certificates.cert-manager.io, cert-manager.io/v1) is not installed";

async fn wait_not_installed_event(client: &Client, name: &str) {
    let start = Instant::now();
    while !refusals(client, name)
        .await
        .iter()
        .any(|(note, _)| note.contains(NOT_INSTALLED))
    {
        assert!(
            start.elapsed() < TIMEOUT,
            "no CABundleRefused Event on {name} saying the Certificate CRD is not installed: {:?}",
            refusals(client, name).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn delete_crd(client: &Client) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    api.delete(CERTIFICATE_CRD, &DeleteParams::default())
        .await
        .unwrap();
    let start = Instant::now();
    while api.get_opt(CERTIFICATE_CRD).await.unwrap().is_some() {
        assert!(start.elapsed() < TIMEOUT, "the CRD was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_manager_installed_after_start_is_picked_up() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    let ns = env.create_namespace("late-cm").await.unwrap();
    let ns = ns.as_str();
    let ca_a = ca_pem("late-ca-a");
    let ca_b = ca_pem("late-ca-b");

    // The injector starts without cert-manager.
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

    // A target waiting for a Certificate: an Event says why nothing is injected.
    put_secret(&client, ns, "serving-tls", "serving", &ca_a).await;
    create_webhook(&client, "late-a", ns, "serving").await;
    wait_not_installed_event(&client, "late-a").await;
    assert_eq!(injected(&client, "late-a").await, None);

    // cert-manager arrives: its CRD, then the Certificate. No restart.
    let installed = Instant::now();
    env.install_crds([certificate_crd()]).await.unwrap();
    let established = installed.elapsed();
    create_certificate(&client, ns, "serving", "serving-tls").await;
    let created = installed.elapsed();
    let after_certificate = wait_injected(&client, "late-a", &ca_a).await;
    println!(
        "CRD applied, Established after {established:?}, first Certificate created after {created:?} \
         (the API server holds it until the new kind's storage is ready), bundle injected \
         {after_certificate:?} later"
    );
    // The Certificate watch runs: a Secret change of the Certificate propagates.
    put_secret(&client, ns, "serving-tls", "serving", &ca_b).await;
    let latency = wait_injected(&client, "late-a", &ca_b).await;
    println!("Secret change propagated in {latency:?}");

    // cert-manager goes away: the bundle stays, objects reading a Certificate are told why
    // nothing follows any more, including one created now.
    let before = refusals(&client, "late-a").await;
    delete_crd(&client).await;
    create_webhook(&client, "late-b", ns, "serving").await;
    wait_not_installed_event(&client, "late-b").await;
    let start = Instant::now();
    loop {
        let after = refusals(&client, "late-a").await;
        let count = |list: &[(String, i32)]| {
            list.iter()
                .filter(|(n, _)| n.contains(NOT_INSTALLED))
                .map(|(_, c)| *c)
                .sum::<i32>()
        };
        if count(&after) > count(&before) {
            break;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "late-a was not re-evaluated after the CRD was deleted: {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        injected(&client, "late-a").await.as_deref(),
        Some(ca_b.as_str())
    );
    assert_eq!(injected(&client, "late-b").await, None);

    // And back: both targets get the bundle.
    env.install_crds([certificate_crd()]).await.unwrap();
    create_certificate(&client, ns, "serving", "serving-tls").await;
    wait_injected(&client, "late-b", &ca_b).await;
    put_secret(&client, ns, "serving-tls", "serving", &ca_a).await;
    wait_injected(&client, "late-a", &ca_a).await;
    wait_injected(&client, "late-b", &ca_a).await;

    assert!(metrics.injections_total() >= 4);
    assert!(!controller.is_finished(), "the controller stopped");
    controller.abort();
}

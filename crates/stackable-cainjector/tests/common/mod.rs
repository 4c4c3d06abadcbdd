//! Helpers shared by the injector's end-to-end tests: CAs, Secrets and cert-manager objects
//! in the test API server, the injector's configuration, and waits for the injected bundle
//! or a refusal Event.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

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
use stackable_cainject::TargetKind;
use stackable_cainjector::{
    ApiServerCa, Config, Metrics, ServiceCa, cert_manager::CERTIFICATE_CRD, run,
};
use stackable_certs::ca::{CaOptions, CertificateAuthority};
use stackable_testenv::TestEnv;
use tokio::task::JoinHandle;

/// The annotation a Secret needs before its `ca.crt` may be injected directly.
pub const ALLOW_DIRECT_INJECTION: (&str, &str) = ("cert-manager.io/allow-direct-injection", "true");

/// The injector's configuration in a test: `field_manager` also names the Event reporter,
/// the service CA is the API server CA (explicitly chosen), ConfigMaps are targets, no grace
/// period (a changed source replaces the bundle at once; `e2e_grace.rs` tests the grace).
pub fn config(field_manager: &str, namespaces: Vec<String>, api_server_ca: Option<&str>) -> Config {
    let mut config = Config::new(
        field_manager,
        Reporter {
            controller: field_manager.to_owned(),
            instance: None,
        },
    );
    config.namespaces = namespaces;
    config.api_server_ca = match api_server_ca {
        Some(pem) => ApiServerCa::Pem(pem.to_owned()),
        None => ApiServerCa::Unknown,
    };
    config.service_ca = ServiceCa::ApiServerCa;
    config.config_maps = true;
    config.grace_period = std::time::Duration::ZERO;
    config
}

/// Runs the injector in this process against the test API server as `e2e-cainjector`,
/// watching `namespaces` (empty: all); returns its metrics and its task.
pub fn spawn_injector(
    env: &TestEnv,
    namespaces: Vec<String>,
) -> (
    Metrics,
    JoinHandle<Result<(), stackable_cainjector::controller::Error>>,
) {
    let metrics = Metrics::new();
    let task = tokio::spawn(run(
        env.client().unwrap(),
        config("e2e-cainjector", namespaces, Some(env.ca_pem())),
        metrics.clone(),
    ));
    (metrics, task)
}

/// Applies a Secret written for the cert-manager Certificate `certificate`.
pub async fn put_certificate_secret(
    client: &Client,
    ns: &str,
    name: &str,
    certificate: &str,
    ca: &str,
) {
    put_secret(
        client,
        ns,
        name,
        &[("cert-manager.io/certificate-name", certificate)],
        ca,
    )
    .await;
}

/// Applies a Secret marked for direct injection (see [`ALLOW_DIRECT_INJECTION`]).
pub async fn put_direct_secret(client: &Client, ns: &str, name: &str, ca: &str) {
    put_secret(client, ns, name, &[ALLOW_DIRECT_INJECTION], ca).await;
}

/// `pem` as the injector writes it (parsed and re-encoded).
pub fn canonical(pem: &str) -> String {
    stackable_certs::CaBundle::from_pem(pem).unwrap().to_pem()
}

/// The canonical PEM of a new CA named `name`.
pub fn ca_pem(name: &str) -> String {
    canonical(
        &CertificateAuthority::new(&CaOptions::new(name))
            .unwrap()
            .certificate()
            .to_pem(),
    )
}

/// The API of `kind` objects, in `ns` or cluster-wide.
pub fn api(client: &Client, kind: TargetKind, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &kind.api_resource()),
        None => Api::all_with(client.clone(), &kind.api_resource()),
    }
}

/// Creates an object of `kind` from JSON.
pub async fn create(client: &Client, kind: TargetKind, ns: Option<&str>, body: Value) {
    let object: DynamicObject = serde_json::from_value(body).unwrap();
    api(client, kind, ns)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// Applies a Secret with a `ca.crt` and the given annotations.
pub async fn put_secret(
    client: &Client,
    ns: &str,
    name: &str,
    annotations: &[(&str, &str)],
    ca: &str,
) {
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
pub async fn injected(
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

/// Waits (`within` at most) until the object carries `expected`; returns how long it took.
pub async fn wait_injected(
    client: &Client,
    kind: TargetKind,
    ns: Option<&str>,
    name: &str,
    expected: &str,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let current = injected(client, kind, ns, name).await;
        if current.as_deref() == Some(expected) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{kind} {name} never got the expected bundle; it has {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Events with `reason` about the object `name`.
pub async fn events(client: &Client, reason: &str, name: &str) -> Vec<Event> {
    Api::<Event>::all(client.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

/// The notes of the `CABundleRefused` Events about the object `name`.
pub async fn refusal_events(client: &Client, name: &str) -> Vec<String> {
    events(client, "CABundleRefused", name)
        .await
        .into_iter()
        .filter_map(|e| e.note)
        .collect()
}

/// Waits (20 s at most) for a `CABundleRefused` Event about `name` mentioning `needle`.
pub async fn wait_refused(client: &Client, name: &str, needle: &str) -> String {
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

/// A minimal `certificates.cert-manager.io` CRD: the kind, served as v1, any content.
pub fn cert_manager_crd() -> CustomResourceDefinition {
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

/// Creates a cert-manager Certificate `ns/name` writing to Secret `secret_name`.
pub async fn create_certificate(client: &Client, ns: &str, name: &str, secret_name: &str) {
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

/// A webhook configuration of `kind` (validating or mutating) with one webhook for
/// `gadgets.annot.example.com`, reading its bundle as `annotations` say.
pub fn webhook_configuration(kind: &str, name: &str, annotations: Value) -> Value {
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

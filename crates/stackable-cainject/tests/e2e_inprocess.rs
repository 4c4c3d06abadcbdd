//! The in-process injector against a real API server (stackable-testenv).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use stackable_cainject::{CaInjector, Target, TargetKind, TargetState};
use stackable_certs::{
    CaBundle, LeafOptions, ServingMaterial,
    ca::{CaOptions, CertificateAuthority},
};
use stackable_testenv::TestEnv;
use tokio::sync::watch;

const CRD_NAME: &str = "crontabs.inject.example.com";

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": CRD_NAME },
        "spec": {
            "group": "inject.example.com",
            "names": { "kind": "CronTab", "plural": "crontabs", "singular": "crontab" },
            "scope": "Namespaced",
            "versions": [
                { "name": "v1", "served": true, "storage": true,
                  "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } },
                { "name": "v2", "served": true, "storage": false,
                  "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }
            ],
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": { "service": { "name": "hooks", "namespace": "default", "path": "/convert", "port": 8443 } }
                }
            }
        }
    })
}

fn webhook_configuration(kind: &str, name: &str) -> Value {
    let entry = |hook: &str| {
        let mut entry = json!({
            "name": hook,
            "clientConfig": { "service": { "name": "hooks", "namespace": "default", "path": "/hook", "port": 8443 } },
            "rules": [{ "apiGroups": ["inject.example.com"], "apiVersions": ["v1"],
                        "operations": ["CREATE"], "resources": ["crontabs"] }],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Ignore"
        });
        if kind == "MutatingWebhookConfiguration" {
            entry["reinvocationPolicy"] = json!("Never");
        }
        entry
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": { "name": name },
        "webhooks": [entry("a.inject.example.com"), entry("b.inject.example.com")]
    })
}

async fn create(client: &Client, kind: TargetKind, body: Value) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.api_resource());
    let object: DynamicObject = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

async fn get(client: &Client, kind: TargetKind, name: &str) -> Value {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.api_resource());
    serde_json::to_value(api.get(name).await.unwrap()).unwrap()
}

/// Every caBundle the object carries, decoded.
fn bundles(object: &Value) -> Vec<Option<String>> {
    let decode = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(|b| String::from_utf8(STANDARD.decode(b).unwrap()).unwrap())
    };
    if let Some(hooks) = object.get("webhooks").and_then(Value::as_array) {
        hooks
            .iter()
            .map(|h| decode(h.pointer("/clientConfig/caBundle")))
            .collect()
    } else {
        vec![decode(
            object.pointer("/spec/conversion/webhook/clientConfig/caBundle"),
        )]
    }
}

/// The bundle as the injector writes it: the same certificates in the same order, LF PEM.
fn canonical(pem: &str) -> String {
    stackable_certs::CaBundle::from_pem(pem).unwrap().to_pem()
}

fn resource_version(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn material(
    trust: &[&CertificateAuthority],
    issuer: &CertificateAuthority,
) -> Arc<ServingMaterial> {
    let issued = issuer
        .issue(&LeafOptions::for_service("hooks", "default"))
        .unwrap();
    let trust =
        CaBundle::from_certificates(trust.iter().map(|ca| ca.certificate().clone())).unwrap();
    Arc::new(ServingMaterial::from_issued(issued, trust).unwrap())
}

async fn wait_for(
    client: &Client,
    kind: TargetKind,
    name: &str,
    what: &str,
    mut pred: impl FnMut(&Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let object = get(client, kind, name).await;
        if pred(&object) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {kind} {name}: {what}; object: {object:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injects_rotates_repairs_and_stays_idle() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    create(&client, TargetKind::CustomResourceDefinition, crd()).await;
    create(
        &client,
        TargetKind::ValidatingWebhookConfiguration,
        webhook_configuration("ValidatingWebhookConfiguration", "inject-validating"),
    )
    .await;
    create(
        &client,
        TargetKind::MutatingWebhookConfiguration,
        webhook_configuration("MutatingWebhookConfiguration", "inject-mutating"),
    )
    .await;

    let old_ca = CertificateAuthority::new(&CaOptions::new("old-ca")).unwrap();
    let first = material(&[&old_ca], &old_ca);
    let first_pem = canonical(&first.ca_bundle_pem());
    let (tx, rx) = watch::channel(first.clone());

    let targets = [
        (TargetKind::CustomResourceDefinition, CRD_NAME),
        (
            TargetKind::ValidatingWebhookConfiguration,
            "inject-validating",
        ),
        (TargetKind::MutatingWebhookConfiguration, "inject-mutating"),
    ];
    let injector = CaInjector::new(
        client.clone(),
        "e2e-cainject",
        [
            Target::crd(CRD_NAME),
            Target::validating_webhook("inject-validating"),
            // Only one entry of the mutating configuration.
            Target::mutating_webhook("inject-mutating").only_webhooks(["b.inject.example.com"]),
        ],
    )
    .start(rx);
    tokio::time::timeout(Duration::from_secs(30), injector.ready())
        .await
        .expect("the injector never became ready");

    assert_eq!(
        bundles(&get(&client, TargetKind::CustomResourceDefinition, CRD_NAME).await),
        vec![Some(first_pem.clone())]
    );
    assert_eq!(
        bundles(
            &get(
                &client,
                TargetKind::ValidatingWebhookConfiguration,
                "inject-validating"
            )
            .await
        ),
        vec![Some(first_pem.clone()), Some(first_pem.clone())]
    );
    // The unselected entry stays untouched.
    assert_eq!(
        bundles(
            &get(
                &client,
                TargetKind::MutatingWebhookConfiguration,
                "inject-mutating"
            )
            .await
        ),
        vec![None, Some(first_pem.clone())]
    );
    // The injector owns only caBundle fields, under its own manager.
    let crd_object = get(&client, TargetKind::CustomResourceDefinition, CRD_NAME).await;
    let managers: Vec<&str> = crd_object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"e2e-cainject"), "{managers:?}");
    let owned = crd_object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "e2e-cainject")
        .unwrap()["fieldsV1"]
        .to_string();
    assert!(owned.contains("f:caBundle"), "{owned}");
    assert!(
        !owned.contains("f:service"),
        "the injector must not own other fields: {owned}"
    );

    // Unchanged input: no write. Re-send the same material and a new Arc with the same bundle.
    let before: Vec<String> =
        futures::future::join_all(targets.iter().map(|(k, n)| get(&client, *k, n)))
            .await
            .iter()
            .map(resource_version)
            .collect();
    tx.send_replace(first.clone());
    tx.send_replace(material(&[&old_ca], &old_ca));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: Vec<String> =
        futures::future::join_all(targets.iter().map(|(k, n)| get(&client, *k, n)))
            .await
            .iter()
            .map(resource_version)
            .collect();
    assert_eq!(before, after, "unchanged bundle caused a write");

    // Rotation overlap: old and new CA in the bundle.
    let new_ca = CertificateAuthority::new(&CaOptions::new("new-ca")).unwrap();
    let rotated = material(&[&old_ca, &new_ca], &new_ca);
    let rotated_pem = canonical(&rotated.ca_bundle_pem());
    assert_eq!(
        stackable_certs::CaBundle::from_pem(&rotated_pem)
            .unwrap()
            .len(),
        2
    );
    assert_ne!(rotated_pem, first_pem);
    tx.send_replace(rotated);
    for (kind, name) in targets {
        let took = wait_for(&client, kind, name, "rotated bundle", |o| {
            bundles(o).last() == Some(&Some(rotated_pem.clone()))
        })
        .await;
        println!("rotation reached {kind} {name} after {took:?}");
    }
    tokio::time::timeout(Duration::from_secs(10), injector.ready())
        .await
        .unwrap();

    // Someone clears the field (a helm upgrade without the field, via merge patch).
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &TargetKind::CustomResourceDefinition.api_resource(),
    );
    crds.patch(
        CRD_NAME,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "conversion": { "webhook": { "clientConfig": { "caBundle": null } } } } })),
    )
    .await
    .unwrap();
    let hooks: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &TargetKind::ValidatingWebhookConfiguration.api_resource(),
    );
    hooks
        .patch(
            "inject-validating",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    { "op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": "" }
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    let took = wait_for(
        &client,
        TargetKind::CustomResourceDefinition,
        CRD_NAME,
        "repaired",
        |o| bundles(o) == vec![Some(rotated_pem.clone())],
    )
    .await;
    println!("cleared CRD caBundle restored after {took:?}");
    let took = wait_for(
        &client,
        TargetKind::ValidatingWebhookConfiguration,
        "inject-validating",
        "repaired",
        |o| bundles(o) == vec![Some(rotated_pem.clone()), Some(rotated_pem.clone())],
    )
    .await;
    println!("emptied webhook caBundle restored after {took:?}");
    assert!(took < Duration::from_secs(10));
    drop(injector);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_bundles_and_reports_bad_targets() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    create(
        &client,
        TargetKind::ValidatingWebhookConfiguration,
        webhook_configuration("ValidatingWebhookConfiguration", "refusals"),
    )
    .await;
    let mut no_webhook_crd = crd();
    no_webhook_crd["metadata"]["name"] = json!("plain.inject.example.com");
    no_webhook_crd["spec"]["names"] =
        json!({ "kind": "Plain", "plural": "plain", "singular": "plainone" });
    no_webhook_crd["spec"]["conversion"] = json!({ "strategy": "None" });
    create(
        &client,
        TargetKind::CustomResourceDefinition,
        no_webhook_crd,
    )
    .await;

    let ca = CertificateAuthority::new(&CaOptions::new("good-ca")).unwrap();
    let (tx, rx) = watch::channel(ca.certificate().to_pem());
    let good = canonical(&ca.certificate().to_pem());
    let injector = CaInjector::new(
        client.clone(),
        "e2e-cainject",
        [
            Target::validating_webhook("refusals"),
            Target::crd("plain.inject.example.com"),
            Target::api_service("v1.missing.example.com"),
        ],
    )
    .retry_after_failure(Duration::from_millis(500))
    .with_events(kube::runtime::events::Reporter {
        controller: "e2e-cainject".to_owned(),
        instance: None,
    })
    .start(rx);
    let mut status = injector.status();
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| {
            s.targets.get("ValidatingWebhookConfiguration refusals") == Some(&TargetState::Injected)
                && s.targets
                    .get("CustomResourceDefinition plain.inject.example.com")
                    .is_some_and(|t| matches!(t, TargetState::Failed(_)))
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert!(!injector.is_ready());
    let TargetState::Failed(message) =
        &status.targets["CustomResourceDefinition plain.inject.example.com"]
    else {
        unreachable!()
    };
    assert!(message.contains("no webhook conversion"), "{message}");
    let mut missing = injector.status();
    tokio::time::timeout(
        Duration::from_secs(10),
        missing.wait_for(|s| {
            matches!(s.targets.get("APIService v1.missing.example.com"),
                     Some(TargetState::Failed(m)) if m.contains("does not exist"))
        }),
    )
    .await
    .unwrap()
    .unwrap();
    println!("CRD without webhook conversion: {message}");

    // A garbage bundle and a leaf-only bundle are refused; the good one stays.
    let rv = resource_version(
        &get(
            &client,
            TargetKind::ValidatingWebhookConfiguration,
            "refusals",
        )
        .await,
    );
    tx.send_replace("not a certificate".to_owned());
    let mut status_rx = injector.status();
    tokio::time::timeout(
        Duration::from_secs(5),
        status_rx.wait_for(|s| s.refused.is_some()),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let object = get(
        &client,
        TargetKind::ValidatingWebhookConfiguration,
        "refusals",
    )
    .await;
    assert_eq!(resource_version(&object), rv);
    assert_eq!(
        bundles(&object),
        vec![Some(good.clone()), Some(good.clone())]
    );
    println!("refusal: {:?}", injector.status().borrow().refused);
    // The refusal and the injection are evented on the target.
    let events = Api::<k8s_openapi::api::events::v1::Event>::all(client.clone());
    let start = Instant::now();
    loop {
        let reasons: Vec<String> = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("refusals"))
            .filter_map(|e| e.reason)
            .collect();
        if reasons.iter().any(|r| r == "CABundleRefused")
            && reasons.iter().any(|r| r == "CABundleInjected")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "events missing: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(tx);
    drop(injector);
}

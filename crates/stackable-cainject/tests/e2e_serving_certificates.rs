//! `ServingCertificates::shared` against a real API server, with the inputs that go wrong in
//! clusters: each gives a clear status (readiness false with the reason) or a clear error at
//! start, never a panic or an exit, and never a caBundle that leaves the served leaf untrusted.
//!
//! - the CA Secret holds user material that cannot be used: reported, left untouched, and
//!   picked up once it is fixed;
//! - a target that does not exist: not ready, until it is created;
//! - RBAC that forbids patching the target: not ready, the missing rule named;
//! - a policy with zero propagation delay: refused at start;
//! - the happy path: ready only once the served leaf's CA is in the target's caBundle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::core::v1::Secret,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DynamicObject, PostParams},
};
use serde_json::{Value, json};
use stackable_cainject::{CertificatesStatus, RunningCertificates, ServingCertificates, Target};
use stackable_certs::{Certificate, LeafOptions, rotation::RotationPolicy};
use stackable_testenv::TestEnv;

fn crd(name: &str, group: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": name },
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": { "kind": "Gadget", "plural": name.split('.').next().unwrap() },
            "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }],
            "conversion": { "strategy": "Webhook", "webhook": { "conversionReviewVersions": ["v1"],
                "clientConfig": { "service": { "name": "hooks", "namespace": "default" } } } }
        }
    })
}

async fn create_crd(client: &Client, name: &str, group: &str) {
    let object: CustomResourceDefinition = serde_json::from_value(crd(name, group)).unwrap();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

async fn ca_bundle(client: &Client, name: &str) -> Option<String> {
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get(name)
        .await
        .ok()?;
    let bundle = crd.spec.conversion?.webhook?.client_config?.ca_bundle?;
    String::from_utf8(bundle.0).ok()
}

async fn wait_status(
    running: &RunningCertificates,
    what: &str,
    timeout: Duration,
    mut accept: impl FnMut(&CertificatesStatus) -> bool,
) -> CertificatesStatus {
    let mut status = running.status();
    let result = tokio::time::timeout(timeout, async {
        status.wait_for(|s| accept(s)).await.map(|s| s.clone())
    })
    .await;
    match result {
        Ok(Ok(status)) => status,
        _ => panic!(
            "{what} not within {timeout:?}; last status: {:#?}",
            *running.status().borrow()
        ),
    }
}

fn leaf() -> LeafOptions {
    LeafOptions::for_service("hooks", "default")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_give_a_clear_status_and_never_an_untrusted_bundle() {
    let env = TestEnv::start().await.unwrap();
    let admin = env.client().unwrap();
    let ns = env.create_namespace("serving").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);

    // A policy with zero propagation delay is refused at start.
    let error = ServingCertificates::shared(admin.clone(), &ns, "ca", leaf())
        .policy(RotationPolicy {
            propagation_delay: Duration::ZERO,
            ..RotationPolicy::default()
        })
        .start()
        .unwrap_err();
    let report = snafu::Report::from_error(&error).to_string();
    assert!(report.contains("propagation_delay"), "{report}");
    println!("zero propagation delay: {report}");

    // The happy path: ready only once the leaf's CA is in the CRD's caBundle.
    create_crd(&admin, "gadgets.ok.example.com", "ok.example.com").await;
    let running = ServingCertificates::shared(admin.clone(), &ns, "ok-ca", leaf())
        .inject_into([Target::crd("gadgets.ok.example.com")])
        .start()
        .unwrap();
    let started = Instant::now();
    let status = wait_status(&running, "ready", Duration::from_secs(30), |s| s.ready).await;
    println!("ready after {:?}: {status:?}", started.elapsed());
    let bundle = ca_bundle(&admin, "gadgets.ok.example.com").await.unwrap();
    let material = running.material().borrow().clone().unwrap();
    assert!(
        Certificate::all_from_pem(&bundle)
            .unwrap()
            .iter()
            .any(|ca| material.leaf().is_issued_by(ca)),
        "ready while the served leaf's CA is not in the caBundle"
    );
    drop(running);

    // The CA Secret holds user material that cannot be used (a ca.key of nothing): reported,
    // never overwritten, and the rotation starts once the user fixes it.
    let broken: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "broken-ca", "namespace": ns },
        "stringData": { "ca.crt": "garbage", "ca.key": "garbage" }
    }))
    .unwrap();
    let created = secrets
        .create(&PostParams::default(), &broken)
        .await
        .unwrap();
    create_crd(&admin, "gadgets.broken.example.com", "broken.example.com").await;
    let running = ServingCertificates::shared(admin.clone(), &ns, "broken-ca", leaf())
        .inject_into([Target::crd("gadgets.broken.example.com")])
        .start()
        .unwrap();
    let status = wait_status(
        &running,
        "the unusable Secret reported",
        Duration::from_secs(30),
        |s| {
            s.reason
                .as_deref()
                .is_some_and(|r| r.contains("left untouched"))
        },
    )
    .await;
    assert!(!status.ready);
    let reason = status.reason.unwrap();
    println!("unusable CA Secret: {reason}");
    assert!(reason.contains("ca.crt"), "{reason}");
    assert!(
        !reason.contains("garbage"),
        "the reason quotes the material: {reason}"
    );
    assert!(running.material().borrow().is_none());
    assert_eq!(
        ca_bundle(&admin, "gadgets.broken.example.com").await,
        None,
        "a bundle was injected from nothing"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = secrets.get("broken-ca").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, created.metadata.resource_version,
        "the user's Secret was overwritten"
    );
    // Fixed by the user (deleted): the rotation starts on its next retry.
    secrets
        .delete("broken-ca", &Default::default())
        .await
        .unwrap();
    wait_status(
        &running,
        "ready after the fix",
        Duration::from_secs(60),
        |s| s.ready,
    )
    .await;
    drop(running);

    // A target that does not exist: not ready, reason says so; ready once it is created.
    let running = ServingCertificates::shared(admin.clone(), &ns, "late-ca", leaf())
        .inject_into([Target::crd("gadgets.late.example.com")])
        .start()
        .unwrap();
    let status = wait_status(
        &running,
        "the missing target reported",
        Duration::from_secs(30),
        |s| {
            s.reason
                .as_deref()
                .is_some_and(|r| r.contains("does not exist"))
        },
    )
    .await;
    assert!(!status.ready);
    println!("missing target: {}", status.reason.unwrap());
    assert!(running.material().borrow().is_some(), "no leaf served");
    create_crd(&admin, "gadgets.late.example.com", "late.example.com").await;
    wait_status(
        &running,
        "ready once the target exists",
        Duration::from_secs(30),
        |s| s.ready,
    )
    .await;
    drop(running);

    // RBAC that forbids patching the target: not ready, the missing rule named.
    create_crd(&admin, "gadgets.rbac.example.com", "rbac.example.com").await;
    let role: Value = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "no-patch" },
        "rules": [
            { "apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
              "resourceNames": ["gadgets.rbac.example.com"], "verbs": ["get", "list", "watch"] },
            { "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "update"] }
        ]
    });
    let binding: Value = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": "no-patch" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "no-patch" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "no-patch" }]
    });
    for (object, plural) in [(role, "clusterroles"), (binding, "clusterrolebindings")] {
        let resource = kube::api::ApiResource {
            group: "rbac.authorization.k8s.io".into(),
            version: "v1".into(),
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: object["kind"].as_str().unwrap().into(),
            plural: plural.into(),
        };
        Api::<DynamicObject>::all_with(admin.clone(), &resource)
            .create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .unwrap();
    }
    let mut config = env.config().clone();
    config.auth_info.impersonate = Some("no-patch".to_owned());
    let restricted = Client::try_from(config).unwrap();
    let running = ServingCertificates::shared(restricted, &ns, "rbac-ca", leaf())
        .inject_into([Target::crd("gadgets.rbac.example.com")])
        .start()
        .unwrap();
    let status = wait_status(
        &running,
        "the forbidden patch reported",
        Duration::from_secs(30),
        |s| s.reason.as_deref().is_some_and(|r| r.contains("forbidden")),
    )
    .await;
    let reason = status.reason.unwrap();
    println!("forbidden patch: {reason}");
    assert!(!status.ready);
    assert!(
        reason.contains(
            "patch customresourcedefinitions.apiextensions.k8s.io gadgets.rbac.example.com"
        ),
        "{reason}"
    );
    assert_eq!(ca_bundle(&admin, "gadgets.rbac.example.com").await, None);
    // The Secret was still created: it is the CA, not the injection, that is shared.
    assert!(secrets.get_opt("rbac-ca").await.unwrap().is_some());
    drop(running);
}

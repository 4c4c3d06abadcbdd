//! Against a real API server: a missing RBAC rule is reported with the object and the rule,
//! and two replicas injecting the same bundle do not fight (no writes after convergence).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::time::Duration;

use kube::{
    Api, Client,
    api::{DynamicObject, PostParams},
};
use serde_json::{Value, json};
use stackable_cainject::{CaInjector, Target, TargetKind, TargetState, TrustBundle, Writer};
use stackable_certs::ca::{CaOptions, CertificateAuthority};
use stackable_testenv::TestEnv;
use tokio::sync::watch;

const CRD_NAME: &str = "gizmos.rbac.example.com";

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": CRD_NAME },
        "spec": {
            "group": "rbac.example.com", "scope": "Namespaced",
            "names": { "kind": "Gizmo", "plural": "gizmos" },
            "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }],
            "conversion": { "strategy": "Webhook", "webhook": { "conversionReviewVersions": ["v1"],
                "clientConfig": { "service": { "name": "hooks", "namespace": "default" } } } }
        }
    })
}

async fn create(client: &Client, kind: TargetKind, body: Value) {
    let object: DynamicObject = serde_json::from_value(body).unwrap();
    Api::<DynamicObject>::all_with(client.clone(), &kind.api_resource())
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

async fn resource_version(client: &Client) -> String {
    Api::<DynamicObject>::all_with(
        client.clone(),
        &TargetKind::CustomResourceDefinition.api_resource(),
    )
    .get(CRD_NAME)
    .await
    .unwrap()
    .metadata
    .resource_version
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_names_the_missing_rule_and_replicas_do_not_fight() {
    let env = TestEnv::start().await.unwrap();
    let admin = env.client().unwrap();
    create(&admin, TargetKind::CustomResourceDefinition, crd()).await;

    // A user that may read CRDs but not patch them.
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "crd-reader" },
        "rules": [{ "apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                    "verbs": ["get", "list", "watch"] }]
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": "crd-reader" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "crd-reader" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "reader" }]
    });
    let rbac = |plural: &str, kind: &str| {
        kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
            plural,
        )
    };
    for (body, plural, kind) in [
        (role, "clusterroles", "ClusterRole"),
        (binding, "clusterrolebindings", "ClusterRoleBinding"),
    ] {
        Api::<DynamicObject>::all_with(admin.clone(), &rbac(plural, kind))
            .create(
                &PostParams::default(),
                &serde_json::from_value(body).unwrap(),
            )
            .await
            .unwrap();
    }
    let mut config = env.config().clone();
    config.auth_info.impersonate = Some("reader".to_owned());
    let reader = Client::try_from(config).unwrap();

    let ca = CertificateAuthority::new(&CaOptions::new("rbac-ca")).unwrap();
    let bundle = TrustBundle::from_pem(ca.certificate().to_pem()).unwrap();
    let target = Target::crd(CRD_NAME);
    // RBAC caches may need a moment: retry until the answer is a 403 on patch.
    let mut message = String::new();
    for _ in 0..50 {
        match Writer::new(reader.clone(), "e2e-cainject")
            .inject(&target, &bundle)
            .await
        {
            Err(error @ stackable_cainject::ApplyError::Forbidden { .. }) => {
                message = error.to_string();
                break;
            }
            other => eprintln!("not yet forbidden: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("forbidden: {message}");
    assert!(
        message.contains(
            "\"patch customresourcedefinitions.apiextensions.k8s.io gizmos.rbac.example.com\""
        ),
        "{message}"
    );

    // The in-process injector reports the same in its status, and the target is not ready.
    let (_tx, rx) = watch::channel(bundle.clone());
    let limited = CaInjector::new(reader, "e2e-cainject", [target.clone()]).start(rx);
    let mut status = limited.status();
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| {
            s.targets
                .values()
                .any(|t| matches!(t, TargetState::Failed(_)))
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    let TargetState::Failed(failure) = &status.targets[&target.to_string()] else {
        unreachable!()
    };
    assert!(
        failure.contains("patch customresourcedefinitions.apiextensions.k8s.io"),
        "{failure}"
    );
    drop(limited);

    // Two replicas, same field manager, same bundle: they converge and stop writing.
    let (_tx1, rx1) = watch::channel(bundle.clone());
    let (_tx2, rx2) = watch::channel(bundle.clone());
    let one = CaInjector::new(admin.clone(), "e2e-cainject", [target.clone()]).start(rx1);
    let two = CaInjector::new(env.client().unwrap(), "e2e-cainject", [target.clone()]).start(rx2);
    tokio::time::timeout(Duration::from_secs(20), async {
        one.ready().await;
        two.ready().await;
    })
    .await
    .unwrap();
    let converged = resource_version(&admin).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        resource_version(&admin).await,
        converged,
        "replicas kept writing"
    );
    println!("two replicas converged at resourceVersion {converged} and stayed there");
}

//! Against a real API server: an operator asked to install its CRD where RBAC does not let it
//! create CRDs says so (status, log, Event `InstallForbidden` naming the object and the rule),
//! falls back to injecting, waits for the CRD to be applied by someone else, then injects the
//! bundle into it and reports ready.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};
use stackable_cainject::{Installed, ServingCertificates, TargetState};
use stackable_certs::LeafOptions;
use stackable_testenv::TestEnv;

const CRD_NAME: &str = "widgets.install.example.com";
const USER: &str = "operator-without-create";

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": CRD_NAME },
        "spec": {
            "group": "install.example.com", "scope": "Namespaced",
            "names": { "kind": "Widget", "plural": "widgets" },
            "versions": [
                { "name": "v1", "served": true, "storage": true,
                  "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } },
                { "name": "v2", "served": true, "storage": false,
                  "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }
            ],
            "conversion": { "strategy": "Webhook", "webhook": { "conversionReviewVersions": ["v1"],
                "clientConfig": { "service": { "name": "hooks", "namespace": "default", "path": "/convert" } } } }
        }
    })
}

/// What the operator may do: everything `--install-crd` needs on its CRD except `create`
/// (clusters where operators may not create CRDs), and Events.
async fn grant(admin: &Client) {
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": USER },
        "rules": [
            { "apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
              "verbs": ["get", "list", "watch"] },
            { "apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
              "resourceNames": [CRD_NAME], "verbs": ["patch"] },
            { "apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"] }
        ]
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": USER },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": USER },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER }]
    });
    for (body, plural, kind) in [
        (role, "clusterroles", "ClusterRole"),
        (binding, "clusterrolebindings", "ClusterRoleBinding"),
    ] {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
            plural,
        );
        Api::<DynamicObject>::all_with(admin.clone(), &resource)
            .create(
                &PostParams::default(),
                &serde_json::from_value(body).unwrap(),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_install_falls_back_to_injecting_and_says_why() {
    let env = TestEnv::start().await.unwrap();
    let admin = env.client().unwrap();
    grant(&admin).await;
    let mut config = env.config().clone();
    config.auth_info.impersonate = Some(USER.to_owned());
    let operator = Client::try_from(config).unwrap();

    let crd: CustomResourceDefinition = serde_json::from_value(crd()).unwrap();
    let running =
        ServingCertificates::single_process(operator, LeafOptions::for_service("hooks", "default"))
            .field_manager("e2e-install")
            .events(kube::runtime::events::Reporter {
                controller: "e2e-install".to_owned(),
                instance: None,
            })
            .install([Installed::crd(&crd)])
            .start()
            .unwrap();

    // The apply that would create the CRD is refused: not ready, and the status says why.
    let target = format!("CustomResourceDefinition {CRD_NAME}");
    let mut status = running.status();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| {
            s.injection.as_ref().is_some_and(|i| {
                matches!(i.targets.get(&target), Some(TargetState::Failed(m)) if m.contains("not allowed to install"))
            })
        }),
    )
    .await
    .expect("the forbidden install was not reported within 30 s")
    .unwrap()
    .clone();
    assert!(!refused.ready, "{refused:?}");
    let Some(TargetState::Failed(message)) = refused
        .injection
        .as_ref()
        .and_then(|i| i.targets.get(&target))
    else {
        unreachable!()
    };
    println!("refused: {message}");
    assert!(
        message.contains(CRD_NAME) && message.contains("create"),
        "the message names neither the object nor the verb: {message}"
    );

    // Somebody applies the CRD from the generated YAML (without a caBundle): the operator
    // injects into it and becomes ready.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    crds.create(&PostParams::default(), &crd).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), running.ready())
        .await
        .expect("not ready within 30 s after the CRD was applied");
    let applied = crds.get(CRD_NAME).await.unwrap();
    let bundle = applied
        .spec
        .conversion
        .and_then(|c| c.webhook)
        .and_then(|w| w.client_config)
        .and_then(|c| c.ca_bundle);
    assert!(
        bundle.is_some_and(|b| !b.0.is_empty()),
        "no caBundle injected"
    );

    // The Event names the object and what to do.
    let events: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        ),
    );
    let forbidden: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.data["reason"] == "InstallForbidden")
        .map(|e| e.data["note"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        forbidden.iter().any(|note| note.contains(CRD_NAME)),
        "no InstallForbidden Event naming the CRD: {forbidden:?}"
    );
    println!("Event InstallForbidden: {}", forbidden[0]);
}

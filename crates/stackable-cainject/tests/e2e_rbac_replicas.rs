//! Against a real API server: a missing RBAC rule is reported with the object and the rule,
//! and two replicas injecting the same bundle do not fight (no writes after convergence).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::time::Duration;

use kube::{
    Api, Client,
    api::{DynamicObject, PostParams},
};
use serde_json::{Value, json};
use stackable_cainject::{CaInjector, Target, TargetKind, TargetState, Writer};
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
    let bundle = stackable_certs::CaBundle::from_pem(&ca.certificate().to_pem()).unwrap();
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

fn helm_manifest(entries: &[&str], ca_bundle: Option<&str>) -> Value {
    let hooks: Vec<Value> = entries
        .iter()
        .map(|name| {
            let mut client_config = json!({ "service": { "name": "hooks", "namespace": "default" } });
            if let Some(b) = ca_bundle {
                client_config["caBundle"] = json!(b);
            }
            json!({
                "name": name, "clientConfig": client_config,
                "rules": [{ "apiGroups": ["rbac.example.com"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["gizmos"] }],
                "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore"
            })
        })
        .collect();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": { "name": "helm-managed" }, "webhooks": hooks
    })
}

/// What Helm 4 / `kubectl apply --server-side` see next to the injector (documented in
/// docs/ca-injection.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_tools_and_the_injector_coexist() {
    use kube::api::{Patch, PatchParams};

    let env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &TargetKind::ValidatingWebhookConfiguration.api_resource(),
    );
    let helm = |manifest: Value, force: bool| {
        let api = api.clone();
        async move {
            let mut params = PatchParams::apply("helm");
            params.force = force;
            api.patch("helm-managed", &params, &Patch::Apply(&manifest))
                .await
        }
    };
    let bundle_of = |object: &DynamicObject, index: usize| {
        object.data["webhooks"][index]["clientConfig"]["caBundle"]
            .as_str()
            .map(str::to_owned)
    };

    helm(
        helm_manifest(&["a.example.com", "b.example.com"], None),
        false,
    )
    .await
    .unwrap();
    let ca = CertificateAuthority::new(&CaOptions::new("helm-ca")).unwrap();
    let (_tx, rx) = watch::channel(ca.certificate().to_pem());
    let injector = CaInjector::new(
        client.clone(),
        "e2e-cainject",
        [Target::validating_webhook("helm-managed")],
    )
    .start(rx);
    tokio::time::timeout(Duration::from_secs(20), injector.ready())
        .await
        .unwrap();
    let injected = bundle_of(&api.get("helm-managed").await.unwrap(), 0).unwrap();

    // An upgrade with a chart that omits caBundle keeps the injected bundle.
    helm(
        helm_manifest(&["a.example.com", "b.example.com"], None),
        false,
    )
    .await
    .unwrap();
    let object = api.get("helm-managed").await.unwrap();
    assert_eq!(bundle_of(&object, 0).as_deref(), Some(injected.as_str()));
    assert_eq!(bundle_of(&object, 1).as_deref(), Some(injected.as_str()));

    // A chart that sets caBundle conflicts with the injector's field manager.
    let error = helm(
        helm_manifest(&["a.example.com", "b.example.com"], Some("")),
        false,
    )
    .await
    .unwrap_err();
    println!("chart with caBundle: {error}");
    assert!(error.to_string().contains("e2e-cainject"), "{error}");
    // With --force-conflicts the tool wins for a moment, then the injector repairs it.
    helm(
        helm_manifest(&["a.example.com", "b.example.com"], Some("")),
        true,
    )
    .await
    .unwrap();
    let start = std::time::Instant::now();
    loop {
        let object = api.get("helm-managed").await.unwrap();
        if bundle_of(&object, 0).as_deref() == Some(injected.as_str()) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never repaired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("forced empty caBundle repaired after {:?}", start.elapsed());
    // Back to a chart without caBundle (the injector owns the field again after its apply).
    helm(
        helm_manifest(&["a.example.com", "b.example.com"], None),
        false,
    )
    .await
    .unwrap();

    // Removing an entry from the chart while the injector co-owns its caBundle.
    let removal = helm(helm_manifest(&["a.example.com"], None), false).await;
    let object = api.get("helm-managed").await.unwrap();
    let names: Vec<&str> = object.data["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    println!(
        "removing an entry: apply result {:?}, entries now {names:?}",
        removal.as_ref().map(|_| ()).map_err(ToString::to_string)
    );
    // The API server keeps the entry (the injector owns its caBundle) and the apply fails
    // validation: the documented caveat. The documented workaround: remove the stale
    // entry with a JSON patch, then re-run the apply.
    let error = removal.unwrap_err().to_string();
    assert!(error.contains("is invalid"), "{error}");
    let patch = serde_json::from_value(json!([{ "op": "remove", "path": "/webhooks/1" }])).unwrap();
    api.patch(
        "helm-managed",
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
    .unwrap();
    helm(helm_manifest(&["a.example.com"], None), false)
        .await
        .unwrap();
    let object = api.get("helm-managed").await.unwrap();
    assert_eq!(object.data["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(bundle_of(&object, 0).as_deref(), Some(injected.as_str()));
    tokio::time::timeout(Duration::from_secs(10), injector.ready())
        .await
        .unwrap();
    drop(injector);
}

//! Faults a cluster produces, against a real API server: nothing the injector should do is lost.
//!
//! - kube-apiserver stopped and started again, the source Secret changed right after it
//!   returns: the target gets the new bundle, without restarting the injector;
//! - the injector's RBAC (the deploy manifest's ClusterRole) loses `get secrets` and gets it
//!   back: the failed reads are retried with backoff and the bundle arrives without any other
//!   change;
//! - hijack: a ConfigMap in namespace A naming a Secret in B gets nothing from B, and its
//!   refusal says the same whether B's Secret exists or not; without `--config-maps`
//!   ConfigMaps are not touched at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    ca_pem, config, create, put_direct_secret, refusal_events, spawn_injector, wait_injected,
    webhook_configuration,
};
use k8s_openapi::api::{core::v1::Namespace, rbac::v1::ClusterRole};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use serde_json::json;
use stackable_cainject::TargetKind;
use stackable_cainjector::{Metrics, run};
use stackable_testenv::TestEnv;

const VALIDATING: TargetKind = TargetKind::ValidatingWebhookConfiguration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_restart_and_rbac_loss_lose_no_update() {
    let mut env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    let ns = env.create_namespace("faults").await.unwrap();
    let (_metrics, injector) = spawn_injector(&env, Vec::new());

    // 1. The API server goes away and comes back; the Secret changes right after.
    let ca1 = ca_pem("ca-1");
    put_direct_secret(&client, &ns, "source", &ca1).await;
    create(
        &client,
        VALIDATING,
        None,
        webhook_configuration(
            "ValidatingWebhookConfiguration",
            "restart",
            json!({"cert-manager.io/inject-ca-from-secret": format!("{ns}/source")}),
        ),
    )
    .await;
    wait_injected(
        &client,
        VALIDATING,
        None,
        "restart",
        &ca1,
        Duration::from_secs(20),
    )
    .await;
    env.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.start_apiserver().await.unwrap();
    let client = env.client().unwrap();
    let ca2 = ca_pem("ca-2");
    put_direct_secret(&client, &ns, "source", &ca2).await;
    let took = wait_injected(
        &client,
        VALIDATING,
        None,
        "restart",
        &ca2,
        Duration::from_secs(60),
    )
    .await;
    println!(
        "after a 5 s API server outage, the changed Secret was injected {took:?} after the change"
    );
    injector.abort();

    // 2. The deploy RBAC, then `get secrets` removed and restored while a target waits.
    Api::<Namespace>::all(client.clone())
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
    env.kubectl_apply(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml"))
        .unwrap();
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let mut role = roles.get("stackable-cainjector").await.unwrap();
    let full_rules = role.rules.clone().unwrap();
    let without_get: Vec<_> = full_rules
        .iter()
        .cloned()
        .map(|mut rule| {
            if rule.resources.as_deref() == Some(&["secrets".to_owned()]) {
                rule.verbs.retain(|v| v != "get");
            }
            rule
        })
        .collect();
    role.rules = Some(without_get);
    role.metadata.managed_fields = None;
    roles
        .replace("stackable-cainjector", &PostParams::default(), &role)
        .await
        .unwrap();
    let mut as_sa = env.config().clone();
    as_sa.auth_info.impersonate =
        Some("system:serviceaccount:stackable-cainjector:stackable-cainjector".to_owned());
    let restricted = kube::Client::try_from(as_sa).unwrap();
    let metrics = Metrics::new();
    let mut rbac_config = config("e2e-rbac", Vec::new(), None);
    rbac_config.config_maps = false; // deploy/rbac.yaml has no ConfigMap rules
    let injector = tokio::spawn(run(restricted, rbac_config, metrics.clone()));
    let ca3 = ca_pem("ca-3");
    put_direct_secret(&client, &ns, "rbac-source", &ca3).await;
    create(
        &client,
        VALIDATING,
        None,
        webhook_configuration(
            "ValidatingWebhookConfiguration",
            "rbac",
            json!({"cert-manager.io/inject-ca-from-secret": format!("{ns}/rbac-source")}),
        ),
    )
    .await;
    let started = Instant::now();
    let failed = loop {
        let events = common::events(&client, "CABundleInjectionFailed", "rbac").await;
        if let Some(note) = events.into_iter().filter_map(|e| e.note).next() {
            break note;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no failure reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("without get secrets: {failed}");
    assert!(failed.contains("get secrets rbac-source"), "{failed}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Restored: no change of the Secret or the target, only the retry brings the bundle.
    let mut role = roles.get("stackable-cainjector").await.unwrap();
    role.rules = Some(full_rules);
    role.metadata.managed_fields = None;
    roles
        .replace("stackable-cainjector", &PostParams::default(), &role)
        .await
        .unwrap();
    let took = wait_injected(
        &client,
        VALIDATING,
        None,
        "rbac",
        &ca3,
        Duration::from_secs(60),
    )
    .await;
    println!(
        "RBAC restored: injected {took:?} later by the backoff retry ({} errors counted)",
        metrics.errors_total()
    );
    assert!(metrics.errors_total() >= 2, "it was not retried");
    injector.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_gets_nothing_from_another_namespace() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    let a = env.create_namespace("tenant-a").await.unwrap();
    let b = env.create_namespace("tenant-b").await.unwrap();
    put_direct_secret(&client, &b, "secret-ca", &ca_pem("b's CA")).await;
    for (name, source) in [
        ("hijack-existing", format!("{b}/secret-ca")),
        ("hijack-missing", format!("{b}/no-such-secret")),
    ] {
        create(
            &client,
            TargetKind::ConfigMap,
            Some(&a),
            json!({ "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": { "name": name, "namespace": a,
                                  "annotations": { "cert-manager.io/inject-ca-from-secret": source } } }),
        )
        .await;
    }

    // Without --config-maps, ConfigMaps are not even watched: nothing happens.
    let mut config_off = config("e2e-off", Vec::new(), None);
    config_off.config_maps = false;
    let off = tokio::spawn(run(client.clone(), config_off, Metrics::new()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(refusal_events(&client, "hijack-existing").await.is_empty());
    off.abort();

    // With --config-maps: refused, with the same words whether B's Secret exists or not.
    let (_metrics, injector) = spawn_injector(&env, Vec::new());
    let existing = common::wait_refused(&client, "hijack-existing", "own namespace").await;
    let missing = common::wait_refused(&client, "hijack-missing", "own namespace").await;
    println!("{existing}");
    assert_eq!(
        existing
            .replace("hijack-existing", "T")
            .replace("secret-ca", "X"),
        missing
            .replace("hijack-missing", "T")
            .replace("no-such-secret", "X"),
        "the refusal tells whether the other namespace's Secret exists"
    );
    for name in ["hijack-existing", "hijack-missing"] {
        assert_eq!(
            common::injected(&client, TargetKind::ConfigMap, Some(&a), name).await,
            None
        );
    }
    // A ConfigMap naming a Secret of its own namespace is injected.
    let own_ca = ca_pem("a's CA");
    put_direct_secret(&client, &a, "own-ca", &own_ca).await;
    create(
        &client,
        TargetKind::ConfigMap,
        Some(&a),
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "own", "namespace": a,
                              "annotations": { "cert-manager.io/inject-ca-from-secret": format!("{a}/own-ca") } } }),
    )
    .await;
    wait_injected(
        &client,
        TargetKind::ConfigMap,
        Some(&a),
        "own",
        &own_ca,
        Duration::from_secs(20),
    )
    .await;
    injector.abort();
}

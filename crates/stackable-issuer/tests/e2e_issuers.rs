//! The issuer controllers against a real kube-apiserver: `check` → `Ready=True/Checked` with
//! `observedGeneration`; a retryable error → `Pending` with backoff and a transition time that
//! moves only with the status; a permanent error → `Failed` and no more checks until the spec
//! changes; the periodic re-check turning a `Ready` issuer not-Ready when its CA becomes
//! unreachable; status written by server-side apply under the field owner; Events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::*;
use kube::{
    ResourceExt as _,
    api::{Patch, PatchParams},
};
use stackable_issuer::IssuerResource as _;

async fn set_check(harness: &Harness, namespace: &str, name: &str, check: &str) {
    harness
        .issuers(namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"check": check}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn issuers_are_checked_and_their_ready_condition_follows() {
    let harness = Harness::start(|c| c).await;
    let ns = harness.env.create_namespace("issuers").await.unwrap();
    let api = harness.issuers(&ns);
    let (timeline, _watch) = Timeline::record(api.clone(), issuer_ready::<TestIssuer>);

    // check → Ready=True/Checked, for generation 1, after Ready=Unknown/Initializing.
    harness.create_issuer(&ns, "ca", "ok").await;
    let issuer = wait_issuer(&api, "ca", "True", "Checked").await;
    let ready = issuer.ready_condition().unwrap().clone();
    assert_eq!(ready.observed_generation, Some(1));
    assert_eq!(ready.message, "Succeeded checking the issuer");
    timeline
        .assert_states("ca", &[("Unknown", "Initializing"), ("True", "Checked")])
        .await;
    // Written by server-side apply on the status subresource, under the field owner.
    let managed = issuer.managed_fields();
    assert!(
        managed
            .iter()
            .any(|m| m.manager.as_deref() == Some(FIELD_OWNER)
                && m.operation.as_deref() == Some("Apply")
                && m.subresource.as_deref() == Some("status")),
        "{managed:?}"
    );
    let events = wait_for("a Checked event", Duration::from_secs(10), || async {
        let events = harness.events(&ns, "TestIssuer", "ca").await;
        events
            .iter()
            .any(|(t, r, _)| t == "Normal" && r == "Checked")
            .then_some(events)
    })
    .await;
    assert_eq!(
        events.iter().filter(|(_, r, _)| r == "Checked").count(),
        1,
        "re-checks that change nothing publish no Event: {events:?}"
    );

    // Ready issuers are checked again periodically (every second here), without spec change.
    let checks = harness.script.checks("ca");
    tokio::time::sleep(RECHECK * 3 + Duration::from_millis(500)).await;
    let rechecks = harness.script.checks("ca") - checks;
    assert!((2..=5).contains(&rechecks), "{rechecks} re-checks in 3.5 s");

    // A spec change with a retryable error: Pending for generation 2, retried with backoff;
    // the transition time moves with the status only.
    set_check(&harness, &ns, "ca", "retryable:the CA is not reachable").await;
    let issuer = wait_issuer(&api, "ca", "False", "Pending").await;
    let pending = issuer.ready_condition().unwrap().clone();
    assert_eq!(pending.observed_generation, Some(2));
    assert_eq!(pending.message, "Not ready yet: the CA is not reachable");
    assert!(pending.last_transition_time.0 >= ready.last_transition_time.0);
    let checks = harness.script.checks("ca");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        harness.script.checks("ca") >= checks + 2,
        "retried with backoff: {} → {}",
        checks,
        harness.script.checks("ca")
    );
    let still = api.get("ca").await.unwrap();
    assert_eq!(
        still.ready_condition().unwrap().last_transition_time,
        pending.last_transition_time,
        "the status did not change, so neither did lastTransitionTime"
    );
    harness
        .wait_event(&ns, "TestIssuer", "ca", |(t, r, n)| {
            t == "Warning" && r == "RetryableError" && n == "Not ready yet: the CA is not reachable"
        })
        .await;

    // A permanent error: Failed, and no more checks until the spec changes.
    set_check(
        &harness,
        &ns,
        "ca",
        "permanent:the CA certificate is not a CA",
    )
    .await;
    let issuer = wait_issuer(&api, "ca", "False", "Failed").await;
    assert_eq!(
        issuer.ready_condition().unwrap().message,
        "Failed permanently: the CA certificate is not a CA"
    );
    let checks = harness.script.checks("ca");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        harness.script.checks("ca"),
        checks,
        "a Failed issuer is not checked again"
    );
    harness
        .wait_event(&ns, "TestIssuer", "ca", |(t, r, _)| {
            t == "Warning" && r == "PermanentError"
        })
        .await;

    // An annotation change alone wakes the issuer controller, but a Failed issuer of the
    // current generation stays Failed.
    api.patch(
        "ca",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(harness.script.checks("ca"), checks);

    // The spec fixed: Ready again, for generation 4.
    set_check(&harness, &ns, "ca", "ok").await;
    let issuer = wait_issuer(&api, "ca", "True", "Checked").await;
    assert_eq!(
        issuer.ready_condition().unwrap().observed_generation,
        Some(4)
    );

    // A cluster issuer, and its Events in the default namespace.
    harness.create_cluster_issuer("cluster-ca", "ok").await;
    wait_issuer(&harness.cluster_issuers(), "cluster-ca", "True", "Checked").await;
    wait_for(
        "a Checked event of the cluster issuer",
        Duration::from_secs(10),
        || async {
            let events = harness
                .events("default", "TestClusterIssuer", "cluster-ca")
                .await;
            events.iter().any(|(_, r, _)| r == "Checked").then_some(())
        },
    )
    .await;

    // The periodic re-check notices a CA that became unreachable without any spec change,
    // and the issuers come back once it is reachable again.
    harness.script.ca_unreachable.store(true, Ordering::SeqCst);
    let issuer = wait_issuer(&api, "ca", "False", "Pending").await;
    assert_eq!(
        issuer.ready_condition().unwrap().message,
        "Not ready yet: CA unreachable"
    );
    wait_issuer(&harness.cluster_issuers(), "cluster-ca", "False", "Pending").await;
    harness.script.ca_unreachable.store(false, Ordering::SeqCst);
    wait_issuer(&api, "ca", "True", "Checked").await;
    wait_issuer(&harness.cluster_issuers(), "cluster-ca", "True", "Checked").await;
    assert!(issuer.annotations().contains_key("touched"));
}

#[tokio::test]
async fn refuses_to_start_without_the_crds_it_needs() {
    init_tracing();
    let env = stackable_testenv::TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    let script = std::sync::Arc::new(Script {
        ca: stackable_certs::CertificateAuthority::new(&stackable_certs::CaOptions::default())
            .unwrap(),
        checks: Default::default(),
        signs: Default::default(),
        ignores: Default::default(),
        ca_unreachable: Default::default(),
    });
    let controllers = || {
        stackable_issuer::IssuerControllers::new(
            client.clone(),
            ScriptedSigner(script.clone()),
            FIELD_OWNER,
        )
    };

    // Neither the issuer kinds nor cert-manager's CRDs: the first missing kind is named.
    let error = controllers().run().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "the API server does not serve TestIssuer (test.issuer.stackable.tech/v1); install its CRD"
    );

    // The issuer kinds, but not cert-manager's CRDs.
    use kube::CustomResourceExt as _;
    env.install_crds([TestIssuer::crd(), TestClusterIssuer::crd()])
        .await
        .unwrap();
    let error = controllers().run().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "the API server does not serve CertificateRequest (cert-manager.io/v1); install its CRD \
         (cert-manager's CRDs), or turn the CertificateRequest controller off"
    );

    // Without the CertificateRequest controller it runs (until told to stop).
    controllers()
        .certificate_requests(false)
        .run_until(tokio::time::sleep(Duration::from_millis(500)))
        .await
        .unwrap();

    // Unusable options are refused before anything runs.
    let error =
        stackable_issuer::IssuerControllers::new(client.clone(), ScriptedSigner(script), " ")
            .run()
            .await
            .unwrap_err();
    assert!(error.to_string().contains("field owner"), "{error}");
}

//! cert-manager installed after the injector started, then removed and installed again:
//! objects annotated with `cert-manager.io/inject-ca-from` wait with an Event saying the
//! Certificate CRD is not installed, and get their bundle once it is, without a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::{Duration, Instant};

use common::{
    ca_pem, cert_manager_crd, create, create_certificate, events, injected, put_certificate_secret,
    spawn_injector, wait_injected, webhook_configuration,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client, api::DeleteParams};
use serde_json::json;
use stackable_cainject::TargetKind;
use stackable_cainjector::cert_manager::CERTIFICATE_CRD;
use stackable_testenv::TestEnv;

/// The kind of every target here.
const VALIDATING: TargetKind = TargetKind::ValidatingWebhookConfiguration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A validating webhook configuration reading its bundle from Certificate `<ns>/<cert>`.
async fn create_webhook(client: &Client, name: &str, ns: &str, certificate: &str) {
    let annotations = json!({ "cert-manager.io/inject-ca-from": format!("{ns}/{certificate}") });
    create(
        client,
        VALIDATING,
        None,
        webhook_configuration("ValidatingWebhookConfiguration", name, annotations),
    )
    .await;
}

async fn injected_into(client: &Client, name: &str) -> Option<String> {
    injected(client, VALIDATING, None, name).await
}

async fn wait_injected_into(client: &Client, name: &str, expected: &str) -> Duration {
    wait_injected(client, VALIDATING, None, name, expected, TIMEOUT).await
}

/// Notes of the CABundleRefused Events on `name`, with their (series) counts.
async fn refusals(client: &Client, name: &str) -> Vec<(String, i32)> {
    events(client, "CABundleRefused", name)
        .await
        .into_iter()
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
    let (metrics, controller) = spawn_injector(&env, Vec::new());

    // A target waiting for a Certificate: an Event says why nothing is injected.
    put_certificate_secret(&client, ns, "serving-tls", "serving", &ca_a).await;
    create_webhook(&client, "late-a", ns, "serving").await;
    wait_not_installed_event(&client, "late-a").await;
    assert_eq!(injected_into(&client, "late-a").await, None);

    // cert-manager arrives: its CRD, then the Certificate. No restart.
    let installed = Instant::now();
    env.install_crds([cert_manager_crd()]).await.unwrap();
    let established = installed.elapsed();
    create_certificate(&client, ns, "serving", "serving-tls").await;
    let created = installed.elapsed();
    let after_certificate = wait_injected_into(&client, "late-a", &ca_a).await;
    println!(
        "CRD applied, Established after {established:?}, first Certificate created after {created:?} \
         (the API server holds it until the new kind's storage is ready), bundle injected \
         {after_certificate:?} later"
    );
    // The Certificate watch runs: a Secret change of the Certificate propagates.
    put_certificate_secret(&client, ns, "serving-tls", "serving", &ca_b).await;
    let latency = wait_injected_into(&client, "late-a", &ca_b).await;
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
        injected_into(&client, "late-a").await.as_deref(),
        Some(ca_b.as_str())
    );
    assert_eq!(injected_into(&client, "late-b").await, None);

    // And back: both targets get the bundle.
    env.install_crds([cert_manager_crd()]).await.unwrap();
    create_certificate(&client, ns, "serving", "serving-tls").await;
    wait_injected_into(&client, "late-b", &ca_b).await;
    put_certificate_secret(&client, ns, "serving-tls", "serving", &ca_a).await;
    wait_injected_into(&client, "late-a", &ca_a).await;
    wait_injected_into(&client, "late-b", &ca_a).await;

    assert!(metrics.injections_total() >= 4);
    assert!(!controller.is_finished(), "the controller stopped");
    controller.abort();
}

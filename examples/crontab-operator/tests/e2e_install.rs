//! The operator installs its own CRD, through a real API server: on an empty control plane two
//! replicas (as the deploy ServiceAccount, behind the forwarder) server-side apply the CronTab
//! CRD with the caBundle in the very first write (a watch from before they start never sees it
//! without one), it becomes Established, objects of both versions work, a CA rotation reaches
//! the CRD, and a label a user added (a field the operator does not own) survives a rolling
//! restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use crontab_operator::{CRD_NAME, v1, v1beta1};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_installs_its_crd_with_the_bundle_in_the_first_write() {
    let mut h = Harness::start_installing(
        2,
        &[
            "--controller=false",
            "--ca-validity=30s",
            "--leaf-validity=10s",
            "--ca-propagation-delay=2s",
            "--ca-overlap=2s",
            "--certificate-check-interval=2s",
        ],
    )
    .await;
    h.wait_all_ready(Duration::from_secs(60)).await;
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    let crd = match crds.get(CRD_NAME).await {
        Ok(crd) => crd,
        Err(error) => h.fail(&format!(
            "the replicas are ready but the CRD is not there: {error}"
        )),
    };
    let established = crd
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(
        established,
        "the CRD is not Established while the replicas are ready"
    );
    assert_eq!(
        h.crd.seen_without_bundle(),
        0,
        "the API server held the CRD without a caBundle"
    );
    let managers: Vec<String> = crd
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "crontab-operator"),
        "{managers:?}"
    );

    // Objects of both versions work.
    let ns = h.namespace.clone();
    let v1beta1_api: Api<v1beta1::CronTab> = Api::namespaced(h.client.clone(), &ns);
    let v1_api: Api<v1::CronTab> = Api::namespaced(h.client.clone(), &ns);
    v1beta1_api
        .create(
            &PostParams::default(),
            &v1beta1::CronTab {
                metadata: ObjectMeta {
                    name: Some("legacy".to_owned()),
                    namespace: Some(ns.clone()),
                    ..ObjectMeta::default()
                },
                spec: v1beta1::CronTabSpec {
                    cron_spec: "*/5 * * * *".into(),
                    image: "busybox:1".into(),
                    replicas: None,
                    host_port: "db.example.com:5432".into(),
                },
                status: None,
            },
        )
        .await
        .unwrap();
    let legacy = v1_api.get("legacy").await.unwrap();
    assert_eq!(
        (legacy.spec.host.as_str(), legacy.spec.port),
        ("db.example.com", 5432)
    );

    // A user adds a label (a field the operator does not own).
    crds.patch(
        CRD_NAME,
        &PatchParams::apply("a-user"),
        &Patch::Apply(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": { "name": CRD_NAME, "labels": { "team": "platform" } }
        })),
    )
    .await
    .unwrap();

    // A CA rotation reaches the CRD (CA 30 s: staged at 20 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.crd.distinct_cas() < 2 {
        assert!(Instant::now() < deadline, "no CA rotation reached the CRD");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "a CA rotation reached the CRD ({} CAs, {} caBundle values so far)",
        h.crd.distinct_cas(),
        h.crd.bundle_changes()
    );

    // Restart every replica: the user's label survives, the bundle is still there.
    for id in h.replicas.running() {
        if let Err(error) = h.replicas.roll(id, Duration::from_secs(60)).await {
            h.fail(&format!("{error}"));
        }
    }
    let crd = crds.get(CRD_NAME).await.unwrap();
    assert_eq!(
        crd.metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("platform"),
        "the user's label was removed"
    );
    assert_eq!(h.crd.seen_without_bundle(), 0);
    let legacy = v1_api.get("legacy").await.unwrap();
    assert_eq!(legacy.spec.port, 5432);
}

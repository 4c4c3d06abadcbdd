//! Replica safety through a real API server: three `crontab-operator` processes behind a
//! round-robin forwarder (playing kube-proxy and the endpoints controller) share one CA through
//! a Secret, while readers list and get CronTabs as v1 (the non-storage version: every read is
//! a conversion call from the API server to some replica). In one control plane, in order:
//!
//! 1. three replicas start at the same moment against an empty namespace: one CA, one bundle;
//! 2. a rolling update, three times over (a new replica started and ready, then the old one
//!    SIGTERMed: it drains while the forwarder drops it);
//! 3. the shared Secret deleted, then filled with garbage, while they run: the CA keeps its
//!    identity;
//! 4. kube-apiserver stopped and started again: the replicas keep serving, and the injection
//!    repairs a caBundle reset right after the API server returns.
//!
//! Every scenario must end with 0 failed reads. (CA rotations under load:
//! `e2e_replicas_rotation.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{CA_SECRET, Harness, Readers, SERVICE, trusted_by};
use k8s_openapi::{
    ByteString, api::core::v1::Secret,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use stackable_certs::Certificate;

const READY: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_ca_through_rollouts_secret_loss_and_api_server_restarts() {
    // 1. Three replicas start at the same moment against an empty namespace.
    let started = Instant::now();
    let mut h = Harness::start(3, &[]).await;
    h.wait_all_ready(READY).await;
    let bundle = h.crd.wait_for_bundle(READY).await;
    println!(
        "1. three replicas ready after {:?}; forwarder {:?}",
        started.elapsed(),
        h.forwarder.stats()
    );
    let readers = Readers::start(&h.client, &h.namespace, 2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cas = Certificate::all_from_pem(&bundle).unwrap();
    assert_eq!(cas.len(), 1, "one CA in the bundle");
    assert!(same_cas(
        &h.secret_bundle().await.unwrap_or_default(),
        &bundle
    ));
    let name = format!("{SERVICE}.{}.svc", h.namespace);
    let leaves = h.served_leaves().await;
    assert_eq!(leaves.len(), 3);
    for (replica, leaf) in &leaves {
        trusted_by(&bundle, leaf, &name)
            .unwrap_or_else(|e| h.fail(&format!("{replica}'s leaf is not trusted: {e}")));
    }
    let distinct_leaves: std::collections::HashSet<_> =
        leaves.iter().map(|(_, l)| l.der().to_vec()).collect();
    assert_eq!(distinct_leaves.len(), 3, "each replica serves its own leaf");
    let reads = readers.reads.clone();
    let step = reads.snapshot();
    println!(
        "1. start: {} reads, {} failed; {} caBundle value(s) after the empty one, {} CRD modifications",
        step.0,
        step.1,
        h.crd.bundle_changes() - 1,
        h.crd.modifications()
    );
    assert_eq!(
        h.crd.bundle_changes(),
        2,
        "the bundle flipped: {}",
        h.crd.bundle_changes()
    );

    // 2. Rolling update, three times over.
    let started = Instant::now();
    let mut slowest_exit = Duration::ZERO;
    for round in 0..3 {
        for id in h.replicas.running() {
            match h.replicas.roll(id, READY).await {
                // A replica that needs SIGKILL hung in its shutdown (and cut its connections).
                Ok((_, termination)) if termination.killed => {
                    h.fail(&format!("roll {round}: the old replica needed SIGKILL"))
                }
                Ok((_, termination)) => slowest_exit = slowest_exit.max(termination.took),
                Err(error) => h.fail(&format!("roll {round}: {error}")),
            }
        }
    }
    let (ok, failed) = reads.since(step);
    println!(
        "2. rolling update x3 (9 replacements) in {:?}, slowest exit after SIGTERM {slowest_exit:?}: {ok} reads, {failed} failed; forwarder: {:?}",
        started.elapsed(),
        h.forwarder.stats()
    );
    assert_eq!(
        failed,
        0,
        "failed reads during the rollout: {:?}",
        reads.errors()
    );
    assert!(ok > 50, "too few reads: {ok}");
    assert_eq!(h.crd.current(), bundle, "the CA changed during the rollout");
    assert_eq!(
        h.crd.bundle_changes(),
        2,
        "the bundle was rewritten during the rollout"
    );
    let step = reads.snapshot();

    // 3. The Secret deleted, then replaced by garbage, while the replicas run.
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.namespace);
    secrets
        .delete(CA_SECRET, &Default::default())
        .await
        .unwrap();
    let restored = wait_for_secret_bundle(&h, Duration::from_secs(20)).await;
    assert!(
        same_cas(&restored, &bundle),
        "the deleted Secret came back with another CA"
    );
    let mut secret = secrets.get(CA_SECRET).await.unwrap();
    secret.data = Some(
        [
            (
                "rotation-state.json".to_owned(),
                ByteString(b"{\"version\": 1, garbage".to_vec()),
            ),
            ("ca.crt".to_owned(), ByteString(b"garbage".to_vec())),
        ]
        .into(),
    );
    secrets
        .replace(CA_SECRET, &PostParams::default(), &secret)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if same_cas(&h.secret_bundle().await.unwrap_or_default(), &bundle) {
            break;
        }
        if Instant::now() > deadline {
            h.fail("the garbage Secret was not restored with the same CA");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, failed) = reads.since(step);
    println!(
        "3. Secret deleted, then garbage: restored with the same CA; {ok} reads, {failed} failed"
    );
    assert_eq!(failed, 0, "failed reads: {:?}", reads.errors());
    assert_eq!(h.crd.current(), bundle, "the CA changed");

    // 4. The API server stopped and started again.
    reads.pause();
    let step = reads.snapshot();
    h.env.stop_apiserver();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The replicas keep serving their leaf while the API server is away.
    let leaves = h.served_leaves().await;
    assert_eq!(leaves.len(), 3, "a replica stopped serving");
    for (replica, leaf) in &leaves {
        trusted_by(&bundle, leaf, &name)
            .unwrap_or_else(|e| h.fail(&format!("{replica} while the API server is down: {e}")));
    }
    h.env.start_apiserver().await.unwrap();
    println!("4. kube-apiserver was down for {:?}", down.elapsed());
    // Reads count again once the API server answers.
    wait_api_server(&h).await;
    reads.resume();
    // A `helm upgrade` right after it returns resets the caBundle: the injection repairs it.
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    let reset = serde_json::json!({"spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": null}}}}});
    let repaired_in = Instant::now();
    reads.pause();
    crds.patch(
        crontab_operator::CRD_NAME,
        &PatchParams::default(),
        &Patch::Merge(&reset),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds.get(crontab_operator::CRD_NAME).await.unwrap();
        let current = crd
            .spec
            .conversion
            .and_then(|c| c.webhook)
            .and_then(|w| w.client_config)
            .and_then(|c| c.ca_bundle)
            .map(|b| String::from_utf8(b.0).unwrap());
        if current.as_deref() == Some(bundle.as_str()) {
            break;
        }
        if Instant::now() > deadline {
            h.fail("the caBundle reset after the API server restart was not repaired");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "4. caBundle reset after the restart repaired in {:?}",
        repaired_in.elapsed()
    );
    reads.resume();
    let step_after = reads.snapshot();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, failed) = reads.since(step_after);
    let _ = step;
    println!("4. after the API server returned: {ok} reads, {failed} failed");
    assert_eq!(
        failed,
        0,
        "failed reads after the restart: {:?}",
        reads.errors()
    );
    assert!(ok > 10, "too few reads after the restart: {ok}");

    let reads = readers.stop().await;
    println!(
        "total: {} reads, {} failed, {} CA(s), {} caBundle value(s) after the empty one, {} CRD modifications",
        reads.ok(),
        reads.failed(),
        h.crd.distinct_cas(),
        h.crd.bundle_changes() - 1,
        h.crd.modifications()
    );
    assert_eq!(h.crd.distinct_cas(), 1);
}

/// Whether two PEM bundles hold the same certificates (encoders differ in line endings).
fn same_cas(a: &str, b: &str) -> bool {
    let parse = |pem: &str| {
        Certificate::all_from_pem(pem)
            .map(|certs| certs.iter().map(|c| c.der().to_vec()).collect::<Vec<_>>())
            .ok()
    };
    parse(a).is_some() && parse(a) == parse(b)
}

async fn wait_for_secret_bundle(h: &Harness, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(bundle) = h.secret_bundle().await {
            return bundle;
        }
        if Instant::now() > deadline {
            h.fail("the deleted Secret was not restored");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_api_server(h: &Harness) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    while crds.get(crontab_operator::CRD_NAME).await.is_err() {
        assert!(Instant::now() < deadline, "the API server did not return");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

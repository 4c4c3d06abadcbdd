//! CA rotations under load through a real API server: three `crontab-operator` processes
//! behind a round-robin forwarder share one CA through a Secret, with a policy scaled down so
//! that several full CA rotations happen within the test (CA 30 s, leaf 10 s, propagation and
//! overlap 2 s). Readers list and get CronTabs as v1 (each read a conversion call to some
//! replica) the whole time, and a sampler checks every ~250 ms that the leaf each ready replica
//! serves verifies against the caBundle the CRD holds at that moment.
//!
//! Must hold: 0 failed reads, 0 untrusted leaves, at least two full rotations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Harness, Readers, SERVICE, trusted_by};

/// How long the replicas rotate under load.
const RUN: Duration = Duration::from_secs(75);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotations_under_load_never_serve_an_untrusted_leaf() {
    let mut h = Harness::start(
        3,
        &[
            "--ca-validity=30s",
            "--leaf-validity=10s",
            "--ca-propagation-delay=2s",
            "--ca-overlap=2s",
            "--certificate-check-interval=2s",
        ],
    )
    .await;
    h.wait_all_ready(Duration::from_secs(60)).await;
    h.crd.wait_for_bundle(Duration::from_secs(60)).await;
    let readers = Readers::start(&h.client, &h.namespace, 2);
    let name = format!("{SERVICE}.{}.svc", h.namespace);

    let started = Instant::now();
    let mut samples = 0u64;
    let mut untrusted = Vec::new();
    let mut leaves = std::collections::HashSet::new();
    while started.elapsed() < RUN {
        // Only replicas the forwarder considers ready get traffic, as with endpoints.
        let ready: Vec<_> = h
            .forwarder
            .backends()
            .into_iter()
            .filter(|b| b.ready)
            .map(|b| b.addr)
            .collect();
        let before = h.crd.current();
        for addr in ready {
            let Ok(leaf) = common::served_leaf(addr, &name).await else {
                continue;
            };
            let after = h.crd.current();
            samples += 1;
            leaves.insert(leaf.der().to_vec());
            // The bundle of that moment: read just before and just after the handshake.
            for bundle in [&before, &after] {
                if let Err(error) = trusted_by(bundle, &leaf, &name) {
                    untrusted.push(format!(
                        "{:?} after start: {addr} served leaf {} ({}) not trusted by the caBundle: {error}",
                        started.elapsed(),
                        leaf.info().serial_hex(),
                        leaf.info().issuer,
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reads = readers.stop().await;
    let rotations = h.crd.distinct_cas().saturating_sub(1);
    println!(
        "{RUN:?} of CA rotations under load: {} reads, {} failed; {rotations} CA rotations ({} CAs), {} caBundle values, {} CRD modifications; {samples} leaf samples, {} distinct leaves, {} untrusted; forwarder {:?}",
        reads.ok(),
        reads.failed(),
        h.crd.distinct_cas(),
        h.crd.bundle_changes() - 1,
        h.crd.modifications(),
        leaves.len(),
        untrusted.len(),
        h.forwarder.stats(),
    );
    if !untrusted.is_empty() {
        h.fail(&format!("untrusted leaves served: {untrusted:#?}"));
    }
    if reads.failed() > 0 {
        h.fail(&format!("failed reads: {:?}", reads.errors()));
    }
    assert!(reads.ok() > 500, "too few reads: {}", reads.ok());
    assert!(rotations >= 2, "only {rotations} CA rotations in {RUN:?}");
    assert!(samples > 100, "too few samples: {samples}");
}

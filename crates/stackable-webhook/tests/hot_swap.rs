//! Certificate swaps under load: new connections keep succeeding while the leaf and the CA
//! change many times, and new handshakes see the new certificate quickly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    client_config, get, local_builder, pod_review, post_json, request, start, start_local,
};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::AdmissionRequest;
use serde_json::json;
use stackable_certs::{CaBundle, CaOptions, CertificateAuthority, LeafOptions, ServingMaterial};
use stackable_webhook::{CertSource, Validation};
use tokio::sync::watch;

/// A leaf for `localhost` and 127.0.0.1.
fn localhost() -> LeafOptions {
    LeafOptions::new()
        .dns_name("localhost")
        .ip_address("127.0.0.1".parse().unwrap())
}

fn material(ca: &CertificateAuthority, trust: &CaBundle) -> Arc<ServingMaterial> {
    let issued = ca.issue(&localhost()).unwrap();
    Arc::new(ServingMaterial::from_issued(issued, trust.clone()).unwrap())
}

/// DER serials may carry a leading zero byte; compare the numbers.
fn strip_zeros(serial: &[u8]) -> Vec<u8> {
    let start = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    serial[start..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_load_fail_no_request() {
    // Three CAs, trusted together as a staged rotation publishes them (new CA in the bundle
    // before any leaf it signs is served).
    let cas: Vec<CertificateAuthority> = (0..3)
        .map(|i| CertificateAuthority::new(&CaOptions::new(format!("ca-{i}"))).unwrap())
        .collect();
    let trust = CaBundle::from_certificates(cas.iter().map(|ca| ca.certificate().clone())).unwrap();
    let (sender, receiver) = watch::channel(material(&cas[0], &trust));
    let server = start(
        local_builder()
            .certificates(CertSource::Material(receiver))
            .validating("/validate", |_request: AdmissionRequest<Pod>| async move {
                Validation::allow()
            }),
    )
    .await;
    let addr = server.local_addr();
    let bundle_pem = server.ca_bundle_pem().unwrap();
    assert_eq!(bundle_pem, trust.to_pem());
    let client = client_config(&bundle_pem);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut load = Vec::new();
    for worker in 0..2 {
        let (client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let body = serde_json::to_vec(&pod_review(
                    &format!("w{worker}-{n}"),
                    "CREATE",
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}),
                ))
                .unwrap();
                match request(&client, addr, "POST", "/validate", Some("application/json"), body).await {
                    Ok(answer) if answer.status == 200 && answer.json()["response"]["allowed"] == true => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(answer) => {
                        eprintln!("unexpected answer {} {:?}", answer.status, answer.body);
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        eprintln!("request failed: {error}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
            }
        }));
    }

    let swaps = 40;
    let mut visibility = Vec::new();
    let mut max_probes = 0;
    let started = Instant::now();
    for i in 0..swaps {
        let next = material(&cas[(i + 1) % cas.len()], &trust);
        let serial = strip_zeros(&next.leaf().info().serial);
        let swapped_at = Instant::now();
        sender.send(next).unwrap();
        // Probe with new handshakes until the new serial is served.
        let mut probes = 0;
        loop {
            probes += 1;
            let answer = get(&client, addr, "/livez").await.unwrap();
            if strip_zeros(&answer.serial) == serial {
                visibility.push(swapped_at.elapsed());
                max_probes = max_probes.max(probes);
                break;
            }
            assert!(
                swapped_at.elapsed() < Duration::from_secs(5),
                "swap {i} not visible after 5 s: want {serial:?}, served {:?}, reload errors {}, swaps {}",
                answer.serial,
                server.metrics().cert_reload_errors(),
                server.metrics().cert_swaps()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    visibility.sort();
    let ok = ok.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    println!(
        "{swaps} swaps in {elapsed:?}: {ok} requests succeeded, {failed} failed ({:.0} req/s on new TLS connections, {} build); \
         visibility median {:?}, max {:?}, at most {max_probes} probe handshake(s) needed",
        ok as f64 / elapsed.as_secs_f64(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        visibility[visibility.len() / 2],
        visibility[visibility.len() - 1],
    );
    assert_eq!(failed, 0);
    assert!(
        ok > swaps as u64,
        "the load loop made too few requests ({ok})"
    );
    assert!(server.metrics().cert_swaps() >= swaps as u64);
    common::stop(server).await;
}

#[tokio::test]
async fn generated_source_serves_and_publishes_its_ca() {
    let started = Instant::now();
    let server = start_local(CertSource::in_memory(localhost())).await;
    let ready_after = started.elapsed();
    let client = client_config(&server.ca_bundle_pem().unwrap());
    let answer = post_json(&client, server.local_addr(), "/nowhere", &json!({})).await;
    assert_eq!(answer.status, 404);
    println!("generated source: serving {ready_after:?} after start() was called");
    common::stop(server).await;
}

/// stackable-certs' own staged rotation, in real time with tiny lifetimes: leaves renew every
/// ~2 s and the CA rotates (new CA published in the bundle, then leaves from it, then the old
/// CA dropped). A client that refreshes its trust from `ca_bundle_pem()` (as the API server
/// re-reads `caBundle`) never fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_rotation_of_leaf_and_ca_fails_no_request() {
    use stackable_certs::rotation::RotationPolicy;
    let policy = RotationPolicy {
        ca_validity: Duration::from_secs(12),
        leaf_validity: Duration::from_secs(4),
        renew_remaining_fraction: 0.5,
        propagation_delay: Duration::from_secs(1),
        overlap: Duration::from_secs(1),
        max_sleep: Duration::from_millis(100),
        ..RotationPolicy::default()
    };
    let server = start_local(CertSource::InMemory {
        policy,
        leaf: localhost(),
    })
    .await;
    let addr = server.local_addr();
    let started = Instant::now();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut serials: Vec<Vec<u8>> = Vec::new();
    let mut bundles: Vec<String> = Vec::new();
    while started.elapsed() < Duration::from_secs(14) {
        let bundle = server.ca_bundle_pem().unwrap();
        if bundles.last() != Some(&bundle) {
            bundles.push(bundle.clone());
        }
        let client = client_config(&bundle);
        match get(&client, addr, "/livez").await {
            Ok(answer) if answer.status == 200 => {
                ok += 1;
                if !serials.contains(&answer.serial) {
                    serials.push(answer.serial);
                }
            }
            Ok(answer) => {
                failed += 1;
                eprintln!("unexpected status {}", answer.status);
            }
            Err(error) => {
                failed += 1;
                eprintln!("request failed: {error}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "staged rotation: {ok} requests ok, {failed} failed, {} leaves served, {} CA bundles published, {} swaps",
        serials.len(),
        bundles.len(),
        server.metrics().cert_swaps()
    );
    assert_eq!(failed, 0);
    assert!(
        serials.len() >= 3,
        "too few leaf renewals: {}",
        serials.len()
    );
    assert!(bundles.len() >= 2, "the CA never rotated");
    common::stop(server).await;
}

//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use rustls::{
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::{ServerName, UnixTime},
};
use stackable_certs::{
    CaBundle, Certificate, LeafOptions,
    rotation::{Clock, RotationDriver, RotationPolicy, Store},
};
use time::OffsetDateTime;

/// The DNS name the certificates of [`leaf`] are verified for.
pub const SERVICE_NAME: &str = "my-webhook.ops.svc";

/// The leaf the rotation tests ask for: the Service `my-webhook` in `ops`.
pub fn leaf() -> LeafOptions {
    LeafOptions::for_service("my-webhook", "ops")
}

/// The default policy with other lifetimes, all in seconds: CA and leaf validity, how long
/// a new CA is published before leaves from it are served, and how long the old CA stays.
/// `max_sleep` is capped at the overlap (a policy whose overlap is shorter than the time a
/// replica may take to notice a change is refused).
pub fn lifetimes(ca: u64, leaf: u64, propagation_delay: u64, overlap: u64) -> RotationPolicy {
    let default = RotationPolicy::default();
    RotationPolicy {
        ca_validity: Duration::from_secs(ca),
        leaf_validity: Duration::from_secs(leaf),
        propagation_delay: Duration::from_secs(propagation_delay),
        overlap: Duration::from_secs(overlap),
        max_sleep: default.max_sleep.min(Duration::from_secs(overlap)),
        ..default
    }
}

/// A driver with the default policy for [`leaf`], keeping its state in `store`.
pub fn driver<S: Store>(store: S) -> RotationDriver<S> {
    RotationDriver::with_store(RotationPolicy::default(), leaf(), store)
}

/// A driver for [`leaf`] with `policy`, keeping its state in `store`, on `clock`.
pub fn driver_on<S: Store>(policy: RotationPolicy, store: S, clock: &Clock) -> RotationDriver<S> {
    RotationDriver::with_store(policy, leaf(), store).with_clock(clock.clone())
}

/// A wall clock that starts now and follows tokio's (paused) clock: returns the start and
/// the clock.
pub fn paused_clock() -> (OffsetDateTime, Clock) {
    let (base, clock, _) = jumping_clock();
    (base, clock)
}

/// Like [`paused_clock`], plus a number of seconds the test may set to make the wall clock
/// jump (suspend/resume, NTP step) while the monotonic clock does not move.
pub fn jumping_clock() -> (OffsetDateTime, Clock, Arc<AtomicI64>) {
    let base = OffsetDateTime::now_utc();
    let origin = tokio::time::Instant::now();
    let jump = Arc::new(AtomicI64::new(0));
    let clock: Clock = {
        let jump = jump.clone();
        Arc::new(move || {
            base + (tokio::time::Instant::now() - origin)
                + time::Duration::seconds(jump.load(Ordering::SeqCst))
        })
    };
    (base, clock, jump)
}

/// Starts one driver per store at the same time, as replicas starting together do, and
/// returns the CA bundle each one served first (the drivers are shut down).
pub async fn start_replicas<S: Store>(stores: impl IntoIterator<Item = S>) -> Vec<String> {
    let tasks: Vec<_> = stores
        .into_iter()
        .map(|store| tokio::spawn(async move { driver(store).start().await.unwrap() }))
        .collect();
    let mut bundles = Vec::new();
    for task in tasks {
        let running = task.await.unwrap();
        bundles.push(running.current().ca_bundle_pem());
        running.shutdown().await;
    }
    bundles
}

/// Verifies `leaf` for `name` (DNS name or IP) against `bundle` with rustls' webpki
/// verifier (aws-lc-rs provider), at time `at`.
pub fn webpki_verify(
    bundle: &CaBundle,
    leaf: &Certificate,
    name: &str,
    at: OffsetDateTime,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in bundle.certificates() {
        roots.add(ca.to_rustls()).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let now = UnixTime::since_unix_epoch(Duration::from_secs(at.unix_timestamp() as u64));
    verifier
        .verify_server_cert(&leaf.to_rustls(), &[], &server_name, &[], now)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

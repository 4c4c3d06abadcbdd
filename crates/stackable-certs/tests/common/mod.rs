//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::{sync::Arc, time::Duration};

use rustls::{
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::{ServerName, UnixTime},
};
use stackable_certs::{CaBundle, Certificate};
use time::OffsetDateTime;

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

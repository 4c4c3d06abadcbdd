//! The `fips` feature: with it the server's configuration is FIPS (aws-lc-rs' FIPS module, FIPS
//! suites and key exchanges only, extended master secret required in TLS 1.2) and still serves
//! the clients the API server is; without it the server says it is not FIPS.
//!
//! `cargo xtask test` runs this file once more with `--features fips` after the workspace run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestCa, local_builder, start, stop};
#[cfg(feature = "fips")]
use common::{custom_client_config, get};
#[cfg(feature = "fips")]
use rustls::version;
use stackable_webhook::CertSource;

#[cfg(not(feature = "fips"))]
#[tokio::test]
async fn without_the_feature_the_server_is_not_fips() {
    let ca = TestCa::new("fips-ca");
    let server = start(local_builder().certificates(CertSource::Static(ca.leaf(1)))).await;
    assert!(!server.fips());
    stop(server).await;
}

#[cfg(feature = "fips")]
#[tokio::test]
async fn with_the_feature_the_server_is_fips_and_serves_tls13_and_tls12() {
    let ca = TestCa::new("fips-ca");
    let server = start(local_builder().certificates(CertSource::Static(ca.leaf(1)))).await;
    assert!(
        server.fips(),
        "a build with `fips` serves a non-FIPS configuration"
    );
    for versions in [&[&version::TLS13][..], &[&version::TLS12][..]] {
        let client = custom_client_config(&ca.pem, versions, &[], None);
        let tls = common::connect_tls(&client, server.local_addr())
            .await
            .unwrap();
        let connection = tls.get_ref().1;
        let suite = connection.negotiated_cipher_suite().unwrap();
        assert!(
            suite.fips(),
            "non-FIPS suite {:?} negotiated",
            suite.suite()
        );
        let group = connection.negotiated_key_exchange_group().unwrap();
        assert!(group.fips(), "non-FIPS key exchange {:?}", group.name());
        drop(tls);
        assert_eq!(
            get(&client, server.local_addr(), "/readyz")
                .await
                .unwrap()
                .status,
            200
        );
    }
    stop(server).await;
}

#[cfg(feature = "fips")]
#[tokio::test]
async fn with_the_feature_non_fips_cryptography_is_not_offered() {
    use std::sync::Arc;

    use rustls::CipherSuite;
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    use stackable_webhook::{ServerError, TlsOptions};

    let ca = TestCa::new("fips-ca");
    // ChaCha20-Poly1305 is not a FIPS suite: the provider of a FIPS build does not have it.
    let error = local_builder()
        .certificates(CertSource::Static(ca.leaf(1)))
        .tls_options(TlsOptions {
            cipher_suites: Some(vec![
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ]),
            ..TlsOptions::default()
        })
        .build()
        .unwrap_err();
    assert!(matches!(error, ServerError::Tls { .. }), "{error:?}");
    let message = snafu::Report::from_error(error).to_string();
    assert!(
        message.contains("TLS13_CHACHA20_POLY1305_SHA256 (0x1303) is not offered"),
        "{message}"
    );

    // A client that offers only X25519 (not FIPS-approved on its own) finds no common group.
    let server = start(local_builder().certificates(CertSource::Static(ca.leaf(2)))).await;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    assert!(
        common::connect_tls(&client, server.local_addr())
            .await
            .is_err(),
        "an X25519-only client got through"
    );
    stop(server).await;
}

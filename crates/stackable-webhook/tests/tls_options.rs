//! The TLS configuration hook: a minimum version refuses older clients, the ALPN list is what
//! the server negotiates, and combinations that would refuse clients or cannot be served are
//! refused by `build()` with an error that says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    TestCa, connect_tls, custom_client_config, get, handshake_failures, local_builder, start, stop,
};
use rustls::{CipherSuite, version};
use stackable_webhook::{CertSource, MinTlsVersion, ServerError, TlsOptions};

#[tokio::test]
async fn min_version_tls13_refuses_a_tls12_client() {
    let ca = TestCa::new("tls-options-ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .tls_options(TlsOptions {
                min_version: MinTlsVersion::Tls13,
                ..TlsOptions::default()
            }),
    )
    .await;
    let tls12 = custom_client_config(&ca.pem, &[&version::TLS12], &[], None);
    let refused = get(&tls12, server.local_addr(), "/readyz").await;
    assert!(
        refused.is_err(),
        "a TLS 1.2 client got an answer: {refused:?}"
    );
    let tls13 = custom_client_config(&ca.pem, &[&version::TLS13], &[], None);
    assert_eq!(
        get(&tls13, server.local_addr(), "/readyz")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(handshake_failures(&server, 1).await, 1);
    stop(server).await;

    // The default still serves TLS 1.2 clients.
    let server = start(local_builder().certificates(CertSource::Static(ca.leaf(2)))).await;
    assert_eq!(
        get(&tls12, server.local_addr(), "/readyz")
            .await
            .unwrap()
            .status,
        200
    );
    stop(server).await;
}

#[tokio::test]
async fn alpn_is_what_the_options_say() {
    let ca = TestCa::new("tls-options-ca");
    let offers_both =
        custom_client_config(&ca.pem, &[&version::TLS13], &[b"h2", b"http/1.1"], None);
    let negotiated = |options: TlsOptions, http2: bool| {
        let ca = &ca;
        let offers_both = offers_both.clone();
        async move {
            let server = start(
                local_builder()
                    .certificates(CertSource::Static(ca.leaf(1)))
                    .http2(http2)
                    .tls_options(options),
            )
            .await;
            let tls = connect_tls(&offers_both, server.local_addr())
                .await
                .unwrap();
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            drop(tls);
            stop(server).await;
            alpn
        }
    };
    // Defaults: h2 first when HTTP/2 is on, else http/1.1 only.
    assert_eq!(
        negotiated(TlsOptions::default(), true).await,
        Some(b"h2".to_vec())
    );
    assert_eq!(
        negotiated(TlsOptions::default(), false).await,
        Some(b"http/1.1".to_vec())
    );
    // HTTP/2 on, but the options offer only http/1.1.
    let http11_only = TlsOptions {
        alpn: Some(vec![b"http/1.1".to_vec()]),
        ..TlsOptions::default()
    };
    assert_eq!(
        negotiated(http11_only, true).await,
        Some(b"http/1.1".to_vec())
    );
    // No ALPN at all.
    let none = TlsOptions {
        alpn: Some(Vec::new()),
        ..TlsOptions::default()
    };
    assert_eq!(negotiated(none, true).await, None);
}

#[tokio::test]
async fn chosen_cipher_suites_are_the_only_ones() {
    let ca = TestCa::new("tls-options-ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(ca.leaf(1)))
            .tls_options(TlsOptions {
                min_version: MinTlsVersion::Tls13,
                cipher_suites: Some(vec![CipherSuite::TLS13_AES_256_GCM_SHA384]),
                ..TlsOptions::default()
            }),
    )
    .await;
    let client = custom_client_config(&ca.pem, &[&version::TLS13], &[], None);
    let tls = connect_tls(&client, server.local_addr()).await.unwrap();
    assert_eq!(
        tls.get_ref().1.negotiated_cipher_suite().unwrap().suite(),
        CipherSuite::TLS13_AES_256_GCM_SHA384
    );
    drop(tls);
    stop(server).await;
}

fn build_error(options: TlsOptions, http2: bool) -> String {
    let ca = TestCa::new("tls-options-ca");
    let error = local_builder()
        .certificates(CertSource::Static(ca.leaf(1)))
        .http2(http2)
        .tls_options(options)
        .build()
        .unwrap_err();
    assert!(matches!(error, ServerError::Tls { .. }), "{error:?}");
    snafu::Report::from_error(error).to_string()
}

#[test]
fn invalid_combinations_are_refused_at_build() {
    let message = build_error(
        TlsOptions {
            cipher_suites: Some(vec![CipherSuite::TLS_RSA_WITH_AES_128_GCM_SHA256]),
            ..TlsOptions::default()
        },
        false,
    );
    assert!(
        message.contains("TLS_RSA_WITH_AES_128_GCM_SHA256 (0x009c) is not offered"),
        "{message}"
    );

    // TLS 1.2 allowed (the default minimum) with TLS 1.3 suites only.
    let message = build_error(
        TlsOptions {
            cipher_suites: Some(vec![CipherSuite::TLS13_AES_128_GCM_SHA256]),
            ..TlsOptions::default()
        },
        false,
    );
    assert!(
        message.contains("TLS 1.2 is allowed but no TLS 1.2 cipher suite"),
        "{message}"
    );

    // TLS 1.3 only with a TLS 1.2 suite only.
    let message = build_error(
        TlsOptions {
            min_version: MinTlsVersion::Tls13,
            cipher_suites: Some(vec![CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]),
            ..TlsOptions::default()
        },
        false,
    );
    assert!(message.contains("no TLS 1.3 cipher suite"), "{message}");

    let message = build_error(
        TlsOptions {
            alpn: Some(vec![b"h2".to_vec()]),
            ..TlsOptions::default()
        },
        false,
    );
    assert!(message.contains("HTTP/2 is off"), "{message}");

    let message = build_error(
        TlsOptions {
            alpn: Some(vec![b"spdy/3".to_vec()]),
            ..TlsOptions::default()
        },
        true,
    );
    assert!(message.contains("\"spdy/3\" is not served"), "{message}");
}

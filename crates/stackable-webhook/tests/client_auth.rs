//! Client certificates at the handshake (`ClientAuth`), on loopback with rustls clients: a
//! caller without a certificate, or with one from another CA, is refused before any handler
//! runs; replacing the client CA file changes who gets in for new handshakes, without a
//! restart; an allow-list of names narrows the CA; a conversion route is refused at build.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    TestCa, custom_client_config, handshake_failures, local_builder, pod_review, request, start,
    stop,
};
use k8s_openapi::api::core::v1::Pod;
use kube::core::{
    admission::AdmissionRequest,
    conversion::{ConversionRequest, ConversionResponse},
};
use rustls::version;
use serde_json::json;
use stackable_certs::CaBundle;
use stackable_webhook::{CertSource, ClientAuth, ServerError, Validation};

fn review() -> Vec<u8> {
    serde_json::to_vec(&pod_review(
        "uid-1",
        "CREATE",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
    ))
    .unwrap()
}

/// Writes `pem` to `path` the way the kubelet updates a mounted file: a new file renamed over
/// the old one.
fn replace_file(path: &std::path::Path, pem: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, pem).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn only_certificates_from_the_client_ca_get_through_and_the_ca_file_is_swapped_in_place() {
    let serving = TestCa::new("serving-ca");
    let trusted = TestCa::new("client-ca-x");
    let other = TestCa::new("client-ca-y");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &trusted.pem).unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let server = start(
        local_builder()
            .certificates(CertSource::Static(serving.leaf(1)))
            .client_auth(
                ClientAuth::ca_file(&ca_file).with_poll_interval(Duration::from_millis(100)),
            )
            .validating("/validate", move |_: AdmissionRequest<Pod>| {
                seen.fetch_add(1, Ordering::SeqCst);
                async { Validation::allow() }
            }),
    )
    .await;
    let addr = server.local_addr();
    let both = [&version::TLS13, &version::TLS12];
    let call = |client: Arc<rustls::ClientConfig>| async move {
        request(
            &client,
            addr,
            "POST",
            "/validate",
            Some("application/json"),
            review(),
        )
        .await
    };

    let from_x = trusted.client_pem("system:kube-apiserver");
    let from_y = other.client_pem("system:kube-apiserver");
    let anonymous = custom_client_config(&serving.pem, &both, &[], None);
    let with_x = custom_client_config(&serving.pem, &both, &[], Some(&from_x));
    let with_y = custom_client_config(&serving.pem, &both, &[], Some(&from_y));
    let with_x_tls12 = custom_client_config(&serving.pem, &[&version::TLS12], &[], Some(&from_x));

    let answer = call(with_x.clone()).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["response"]["allowed"], true);
    assert_eq!(call(with_x_tls12.clone()).await.unwrap().status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let refused = call(anonymous.clone()).await;
    assert!(refused.is_err(), "no client certificate, yet: {refused:?}");
    let refused = call(with_y.clone()).await;
    assert!(
        refused.is_err(),
        "a certificate of another CA, yet: {refused:?}"
    );
    assert_eq!(handshake_failures(&server, 2).await, 2);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a refused caller reached the handler"
    );

    // The CA file now holds Y: X is refused, Y gets through, no restart.
    replace_file(&ca_file, &other.pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(with_x.clone()).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the client CA file swap never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(call(with_y.clone()).await.unwrap().status, 200);

    // A file that is no CA bundle is refused; Y keeps verifying.
    replace_file(&ca_file, "not a certificate");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metrics().cert_reload_errors() == 0 {
        assert!(Instant::now() < deadline, "the bad CA file was never read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(call(with_y.clone()).await.unwrap().status, 200);
    assert!(call(with_x.clone()).await.is_err());

    // And back to X, also by hand through the running server.
    server
        .client_ca()
        .unwrap()
        .swap(&CaBundle::from_pem(&trusted.pem).unwrap())
        .unwrap();
    assert_eq!(call(with_x).await.unwrap().status, 200);
    assert!(call(with_y).await.is_err());
    stop(server).await;
}

#[tokio::test]
async fn allowed_names_narrow_the_ca() {
    let serving = TestCa::new("serving-ca");
    let client_ca = TestCa::new("client-ca");
    let server = start(
        local_builder()
            .certificates(CertSource::Static(serving.leaf(1)))
            .client_auth(
                ClientAuth::ca_bundle(CaBundle::from_pem(&client_ca.pem).unwrap())
                    .allowed_names(["system:kube-apiserver"]),
            )
            .validating("/validate", |_: AdmissionRequest<Pod>| async {
                Validation::allow()
            }),
    )
    .await;
    let both = [&version::TLS13, &version::TLS12];
    let call = |client: Arc<rustls::ClientConfig>| {
        let addr = server.local_addr();
        async move {
            request(
                &client,
                addr,
                "POST",
                "/validate",
                Some("application/json"),
                review(),
            )
            .await
        }
    };
    let apiserver = client_ca.client_pem("system:kube-apiserver");
    let someone = client_ca.client_pem("someone-else");
    let allowed = custom_client_config(&serving.pem, &both, &[], Some(&apiserver));
    let stranger = custom_client_config(&serving.pem, &both, &[], Some(&someone));
    assert_eq!(call(allowed).await.unwrap().status, 200);
    assert!(call(stranger).await.is_err());
    assert_eq!(handshake_failures(&server, 1).await, 1);
    stop(server).await;
}

#[test]
fn client_auth_with_a_conversion_route_is_refused_at_build() {
    let serving = TestCa::new("serving-ca");
    let client_ca = TestCa::new("client-ca");
    let error = local_builder()
        .certificates(CertSource::Static(serving.leaf(1)))
        .client_auth(ClientAuth::ca_bundle(
            CaBundle::from_pem(&client_ca.pem).unwrap(),
        ))
        .conversion("/convert", |request: ConversionRequest| {
            ConversionResponse::for_request(request).success(Vec::new())
        })
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, ServerError::ClientAuthWithConversion { path } if path == "/convert"),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("presents no client certificate to CRD conversion webhooks"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unusable_client_ca_file_fails_the_start() {
    let serving = TestCa::new("serving-ca");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    // A leaf is no CA.
    std::fs::write(&ca_file, serving.leaf_pem(1).0).unwrap();
    let error = local_builder()
        .certificates(CertSource::Static(serving.leaf(1)))
        .client_auth(ClientAuth::ca_file(&ca_file))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap_err();
    let report = snafu::Report::from_error(error).to_string();
    assert!(
        report.contains("failed to load the client CA bundle"),
        "{report}"
    );
    assert!(report.contains(&ca_file.display().to_string()), "{report}");
}

//! E2E tier: the API server calls an admission webhook on this machine, both through
//! `clientConfig.url` and through `clientConfig.service` with an ExternalName Service.
//!
//! The webhook is a few lines of HTTP/1.1 over rustls that denies every request with a
//! message naming the path it was called on, so each test sees which route was taken.

// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::ConfigMap,
};
use kube::{Api, api::PostParams};
use stackable_certs::{CaOptions, CertificateAuthority, LeafOptions};
use stackable_testenv::{
    TestEnv,
    webhooks::{LocalWebhook, create_until, namespace_with_service, validating_configuration},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// Starts the denying webhook on 127.0.0.1 with a certificate for `leaf`; returns its port
/// and the CA PEM.
async fn start_webhook(leaf: LeafOptions) -> (u16, String) {
    let ca = CertificateAuthority::new(&CaOptions::new("webhook-test-ca")).unwrap();
    let issued = ca.issue(&leaf).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![issued.certificate.to_rustls()], issued.key.to_rustls())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = answer(&mut tls).await;
                }
            });
        }
    });
    (port, ca.certificate().to_pem())
}

/// Reads one HTTP/1.1 request and denies the AdmissionReview in it.
async fn answer<S: AsyncReadExt + AsyncWriteExt + Unpin>(stream: &mut S) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("?").to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let review: serde_json::Value = serde_json::from_slice(&buf[header_end..]).unwrap_or_default();
    let body = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": review["request"]["uid"],
            "allowed": false,
            "status": { "code": 403, "message": format!("denied by webhook at {path}") },
        },
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Creates a ConfigMap in `namespace` until the webhook denies it with `expected` in the
/// message (the API server picks up new webhook configurations and Services through
/// informers, so the first tries may pass or fail differently).
async fn expect_denied(env: &TestEnv, namespace: &str, expected: &str) {
    let api: Api<ConfigMap> = Api::namespaced(env.client().unwrap(), namespace);
    let mut probe = ConfigMap::default();
    probe.metadata.name = Some("probe".to_owned());
    let outcome = create_until(
        &api,
        &probe,
        Duration::from_secs(20),
        |outcome| matches!(outcome, Err(error) if error.to_string().contains(expected)),
    )
    .await
    .unwrap_or_else(|error| panic!("the webhook never denied with {expected:?}: {error}"));
    assert!(outcome.is_err());
}

#[tokio::test]
async fn webhook_by_url_and_by_external_name_service() {
    let env = TestEnv::start().await.unwrap();
    let by_url = env.create_namespace("by-url").await.unwrap();
    let (by_service, leaf) = namespace_with_service(&env, "by-service", "hook")
        .await
        .unwrap();
    let (port, ca_pem) = start_webhook(leaf).await;

    let api: Api<ValidatingWebhookConfiguration> = Api::all(env.client().unwrap());
    for (name, namespace, webhook) in [
        (
            "by-url",
            &by_url,
            LocalWebhook::url("by-url.testenv.stackable.tech", port, "/via-url"),
        ),
        (
            "by-service",
            &by_service,
            LocalWebhook::service(
                "by-service.testenv.stackable.tech",
                &by_service,
                "hook",
                port,
                "/via-service",
            ),
        ),
    ] {
        let webhook = webhook
            .ca_bundle(&ca_pem)
            .rule("", "v1", "configmaps", &["CREATE"])
            .in_namespace(namespace)
            .timeout_seconds(5);
        api.create(
            &PostParams::default(),
            &validating_configuration(name, [webhook]),
        )
        .await
        .unwrap();
    }

    expect_denied(&env, &by_url, "denied by webhook at /via-url").await;
    expect_denied(&env, &by_service, "denied by webhook at /via-service").await;
}

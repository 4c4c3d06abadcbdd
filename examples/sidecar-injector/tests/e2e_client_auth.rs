//! The binary with `--client-ca-file` (and `--client-allowed-names`) through a real
//! kube-apiserver (stackable-testenv) that presents a client certificate from that CA to the
//! webhooks (`--admission-control-config-file`, written by
//! `stackable_testenv::webhooks::client_auth`, a user for the Service's `host:port`): a
//! labelled Pod gets the sidecar (`failurePolicy: Fail`, so a refused handshake would refuse
//! the Pod). Direct calls through the same Service port without a certificate, or with one of
//! the same CA under another name, are refused at the handshake; the API server's certificate
//! gets an answer. A client CA file that is missing or holds no certificate stops the binary at
//! start with the file's path in the error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
    core::v1::Pod,
};
use kube::{Api, api::PostParams};
use rustls::pki_types::ServerName;
use serde_json::json;
use sidecar_injector::{INJECT_LABEL, has_sidecar};
use stackable_certs::{
    LeafOptions,
    ca::{CaOptions, CertificateAuthority},
};
use stackable_testenv::{
    TestEnv,
    forwarder::Forwarder,
    replicas::Replicas,
    webhooks::{
        LocalWebhook,
        client_auth::{WebhookClientAuth, service_user, tls_client_config},
        create_until, mutating_configuration, validating_configuration,
    },
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::pod;

const NAMESPACE: &str = "client-auth";
const SERVICE: &str = "sidecar-injector";
/// The common name of the API server's client certificate, the one `--client-allowed-names`
/// lets in.
const APISERVER_NAME: &str = "system:kube-apiserver";

/// (certificate PEM, key PEM) of a client certificate from `ca` named `common_name`.
fn client_certificate(ca: &CertificateAuthority, common_name: &str) -> (String, String) {
    let issued = ca
        .issue(
            &LeafOptions::new()
                .common_name(common_name)
                .server_auth(false)
                .client_auth(true),
        )
        .unwrap();
    (issued.certificate.to_pem(), issued.key.to_pem())
}

/// POSTs a Pod admission review to `/mutate` on 127.0.0.1:`port`, trusting `ca_bundle` for the
/// Service's name and presenting `client` when given. The response's status line, or the error.
async fn call_mutate(
    port: u16,
    ca_bundle: &str,
    client: Option<&(String, String)>,
) -> Result<String, String> {
    let config = tls_client_config(
        ca_bundle,
        rustls::DEFAULT_VERSIONS,
        &[],
        client.map(|(cert, key)| (cert.as_str(), key.as_str())),
    )
    .unwrap();
    let review = serde_json::to_string(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "direct",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "direct", "namespace": "team-a", "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": pod("direct", true, true),
            "dryRun": false
        }
    }))
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(format!("{SERVICE}.{NAMESPACE}.svc")).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!(
        "POST /mutate HTTP/1.1\r\nHost: {SERVICE}.{NAMESPACE}.svc\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{review}",
        review.len()
    );
    // With TLS 1.3 the server's verdict on the certificate arrives after the client's
    // handshake: a refusal shows as the alert on write or read.
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    Ok(response.lines().next().unwrap_or_default().to_owned())
}

/// Runs the binary (`--in-memory`, no cluster) with `client_ca_file`; it must fail at start.
/// Its stderr.
fn failed_start(client_ca_file: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sidecar-injector"))
        .args(["--in-memory", "--bind=127.0.0.1:0", "--log-format=text"])
        .arg(format!("--client-ca-file={}", client_ca_file.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "it started: {stderr}");
    stderr
}

#[test]
fn an_unusable_client_ca_file_stops_the_binary_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.crt");
    let stderr = failed_start(&missing);
    assert!(
        stderr.contains("failed to start the webhook server")
            && stderr.contains(&format!("failed to read {}", missing.display())),
        "{stderr}"
    );
    let not_pem = dir.path().join("not-a-ca.crt");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let stderr = failed_start(&not_pem);
    assert!(
        stderr.contains(&format!(
            "the client CA bundle from {} is unusable",
            not_pem.display()
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_gets_through_with_its_client_certificate_and_others_are_refused() {
    let started = Instant::now();
    let client_ca = CertificateAuthority::new(&CaOptions::new("apiserver-client-ca")).unwrap();
    let apiserver_cert = client_certificate(&client_ca, APISERVER_NAME);
    let files = tempfile::tempdir().unwrap();
    let client_ca_file = files.path().join("client-ca.crt");
    std::fs::write(&client_ca_file, client_ca.certificate().to_pem()).unwrap();

    // The Service's port first (the forwarder plays kube-proxy): the API server's kubeconfig
    // names it, and kube-apiserver reads it once at start.
    let forwarder = Forwarder::kube_proxy().await.unwrap();
    let port = forwarder.local_addr().port();
    let admission = WebhookClientAuth::new([service_user(NAMESPACE, SERVICE, port)])
        .write(files.path(), &apiserver_cert.0, &apiserver_cert.1)
        .unwrap();
    let env = TestEnv::builder()
        .apiserver_flag(admission.apiserver_flag())
        .start()
        .await
        .unwrap();
    env.create_namespace_named(NAMESPACE).await.unwrap();
    env.create_external_name_service(NAMESPACE, SERVICE)
        .await
        .unwrap();

    let ca_bundle_out = files.path().join("ca-bundle.pem");
    let (bundle_arg, client_ca_arg) = (
        format!("--ca-bundle-out={}", ca_bundle_out.display()),
        format!("--client-ca-file={}", client_ca_file.display()),
    );
    let replicas = Replicas::builder(env!("CARGO_BIN_EXE_sidecar-injector"))
        .args(move |replica| {
            vec![
                format!("--bind={}", replica.https),
                format!("--health-bind={}", replica.health),
                "--in-memory".to_owned(),
                format!("--service-name={SERVICE}"),
                format!("--namespace={NAMESPACE}"),
                bundle_arg.clone(),
                client_ca_arg.clone(),
                // A list (comma-separated): the API server's name and one nobody presents.
                format!("--client-allowed-names={APISERVER_NAME},webhook-probe"),
                "--sidecar-image=fluent-bit:test".to_owned(),
            ]
        })
        .name_prefix("sidecar-injector")
        .behind(&forwarder)
        .readiness_path("/readyz")
        .start_ready(1, Duration::from_secs(60))
        .await
        .unwrap();
    let ca_bundle = std::fs::read_to_string(&ca_bundle_out).unwrap();

    let apps = env.create_namespace("apps").await.unwrap();
    let hook = |name: &str, path: &str| {
        LocalWebhook::service(name, NAMESPACE, SERVICE, port, path)
            .ca_bundle(&ca_bundle)
            .rule("", "v1", "pods", &["CREATE"])
            .in_namespace(&apps)
            .object_label(INJECT_LABEL, "true")
            .timeout_seconds(10)
            .failure_policy("Fail")
    };
    let admin = env.client().unwrap();
    Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .create(
            &PostParams::default(),
            &mutating_configuration(SERVICE, [hook("inject.auth.example.com", "/mutate")]),
        )
        .await
        .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(admin.clone())
        .create(
            &PostParams::default(),
            &validating_configuration(SERVICE, [hook("limits.auth.example.com", "/validate")]),
        )
        .await
        .unwrap();

    // Through the API server, which presents its certificate: the sidecar is injected, and a
    // Pod without limits gets the validating webhook's refusal (not a TLS error).
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &apps);
    let created = create_until(
        &pods,
        &pod("app", true, true),
        Duration::from_secs(60),
        |outcome| matches!(outcome, Ok(pod) if has_sidecar(pod)),
    )
    .await;
    if let Err(error) = created {
        panic!("{error}\n{}", replicas.log_tails(40));
    }
    let refused = pods
        .create(&PostParams::default(), &pod("no-limits", true, false))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("need cpu and memory limits"), "{refused}");

    // Directly through the same Service port: no certificate, or one of the CA with a name
    // `--client-allowed-names` does not list, is refused; the API server's is answered.
    let anonymous = call_mutate(port, &ca_bundle, None).await;
    eprintln!("without a client certificate: {anonymous:?}");
    assert!(
        anonymous
            .as_ref()
            .is_err_and(|e| e.contains("CertificateRequired")),
        "{anonymous:?}"
    );
    let other = client_certificate(&client_ca, "someone-else");
    let unlisted = call_mutate(port, &ca_bundle, Some(&other)).await;
    eprintln!("with an unlisted name: {unlisted:?}");
    assert!(
        unlisted.as_ref().is_err_and(|e| e.contains("AccessDenied")),
        "{unlisted:?}"
    );
    let answered = call_mutate(port, &ca_bundle, Some(&apiserver_cert)).await;
    assert_eq!(answered.as_deref(), Ok("HTTP/1.1 200 OK"), "{answered:?}");

    drop(replicas);
    println!(
        "control plane, injector with --client-ca-file, a Pod mutated through the API server, 3 direct calls in {:?}",
        started.elapsed()
    );
}

//! Every setup cert-manager users have, against a real API server, proven by a real webhook
//! call: a webhook server on this machine serves a certificate of the setup's kind, its
//! ValidatingWebhookConfiguration (`failurePolicy: Fail`, no caBundle) carries the setup's
//! annotation, and once the injector has done its work the API server calls the webhook over
//! TLS and gets its answer (a denial naming the setup: the call reached the webhook and the
//! served certificate was trusted).
//!
//! | setup | annotation | `ca.crt` / source |
//! |---|---|---|
//! | selfSigned Issuer, Certificate without `isCA` (kubebuilder) | `inject-ca-from` | the leaf itself, `CA:FALSE` |
//! | CA Issuer | `inject-ca-from` | the CA |
//! | a Secret | `inject-ca-from-secret` | the CA, Secret marked `allow-direct-injection` |
//! | the API server CA | `inject-apiserver-ca` | the configured API server CA (a file, re-read when it changes) |
//! | OpenShift | `service.beta.openshift.io/inject-cabundle` | the configured service CA Secret |

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{
    ALLOW_DIRECT_INJECTION, cert_manager_crd, config, create_certificate, injected, put_secret,
};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration,
    core::v1::{ConfigMap, Secret},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    core::admission::AdmissionRequest,
};
use serde_json::json;
use stackable_cainject::TargetKind;
use stackable_cainjector::{ApiServerCa, Metrics, ServiceCa, run};
use stackable_certs::{
    Certificate, LeafOptions,
    ca::{CaOptions, CertificateAuthority},
    serving::certified_key_from_pem,
};
use stackable_testenv::{
    TestEnv,
    webhooks::{LocalWebhook, create_until, namespace_with_service},
};
use stackable_webhook::{CertSource, RunningServer, Validation, WebhookServer};

const SERVICE: &str = "hooks";

/// A webhook server denying every ConfigMap it is asked about, naming `setup`.
async fn webhook(setup: &'static str, chain_pem: &str, key_pem: &str) -> RunningServer {
    let key = certified_key_from_pem(chain_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    WebhookServer::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .handle_signals(false)
        .certificates(CertSource::Static(Arc::new(key)))
        .validating(
            "/validate",
            move |_: AdmissionRequest<ConfigMap>| async move {
                Validation::deny(format!("denied by the {setup} webhook"))
            },
        )
        .build()
        .unwrap()
        .start()
        .await
        .unwrap()
}

/// A leaf for the Service, issued by `ca`: (chain PEM, key PEM).
fn issued(ca: &CertificateAuthority, leaf: &LeafOptions) -> (String, String) {
    let issued = ca.issue(leaf).unwrap();
    (issued.certificate.to_pem(), issued.key.to_pem())
}

/// A self-signed leaf (`CA:FALSE`) for the Service, as cert-manager's selfSigned Issuer
/// writes it for a Certificate without `isCA`: (certificate PEM, key PEM).
fn self_signed_leaf(namespace: &str) -> (String, String) {
    let names = stackable_testenv::webhook_service_dns_names(namespace, SERVICE);
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The webhook configuration of `setup`: called for ConfigMaps labelled `setup=<setup>` in
/// `namespace`, through the Service, with the setup's annotation and no caBundle.
async fn configuration(
    client: &Client,
    namespace: &str,
    setup: &str,
    port: u16,
    annotation: (&str, String),
) {
    let hook = LocalWebhook::service(
        &format!("{setup}.setups.example.com"),
        namespace,
        SERVICE,
        port,
        "/validate",
    )
    .rule("", "v1", "configmaps", &["CREATE"])
    .in_namespace(namespace)
    .object_label("setup", setup);
    let mut configuration = stackable_testenv::webhooks::validating_configuration(setup, [hook]);
    configuration.metadata.annotations = Some([(annotation.0.to_owned(), annotation.1)].into());
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .unwrap();
}

/// Waits until the API server calls the webhook of `setup` and gets its denial.
async fn call_succeeds(client: &Client, namespace: &str, setup: &'static str) -> Duration {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let object = ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("probe-{setup}")),
            labels: Some([("setup".to_owned(), setup.to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let started = std::time::Instant::now();
    let needle = format!("denied by the {setup} webhook");
    let outcome = create_until(
        &configmaps,
        &object,
        Duration::from_secs(30),
        |outcome| matches!(outcome, Err(kube::Error::Api(s)) if s.message.contains(&needle)),
    )
    .await;
    match outcome {
        Ok(_) => started.elapsed(),
        Err(error) => panic!("{setup}: the API server never reached the webhook: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cert_manager_setup_makes_a_real_webhook_call_succeed() {
    let env = TestEnv::builder()
        .crds([cert_manager_crd()])
        .start()
        .await
        .unwrap();
    let client = env.client().unwrap();
    let (namespace, leaf) = namespace_with_service(&env, "setups", SERVICE)
        .await
        .unwrap();
    let ns = namespace.as_str();

    // What the injector is configured with: an API server CA file, a service CA Secret.
    let api_server_ca = CertificateAuthority::new(&CaOptions::new("api server CA")).unwrap();
    let ca_file = env.work_dir().join("api-server-ca.crt");
    std::fs::write(&ca_file, api_server_ca.certificate().to_pem()).unwrap();
    let service_ca = CertificateAuthority::new(&CaOptions::new("service CA")).unwrap();
    put_secret(
        &client,
        ns,
        "service-ca",
        &[],
        &service_ca.certificate().to_pem(),
    )
    .await;
    let mut injector_config = config("e2e-setups", Vec::new(), None);
    injector_config.api_server_ca = ApiServerCa::File(ca_file.clone());
    injector_config.api_server_ca_poll = Duration::from_millis(500);
    injector_config.service_ca = ServiceCa::Secret(
        stackable_cainjector::annotations::ObjectKey::new(ns, "service-ca"),
    );
    let injector = tokio::spawn(run(client.clone(), injector_config, Metrics::new()));

    // selfSigned Issuer + Certificate without isCA: ca.crt is the leaf itself.
    let (leaf_pem, leaf_key) = self_signed_leaf(ns);
    assert!(!Certificate::from_pem(&leaf_pem).unwrap().info().is_ca);
    let selfsigned = webhook("selfsigned", &leaf_pem, &leaf_key).await;
    create_certificate(&client, ns, "selfsigned", "selfsigned-tls").await;
    put_secret(
        &client,
        ns,
        "selfsigned-tls",
        &[("cert-manager.io/certificate-name", "selfsigned")],
        &leaf_pem,
    )
    .await;
    configuration(
        &client,
        ns,
        "selfsigned",
        selfsigned.local_addr().port(),
        ("cert-manager.io/inject-ca-from", format!("{ns}/selfsigned")),
    )
    .await;

    // CA Issuer: ca.crt is the CA.
    let issuer = CertificateAuthority::new(&CaOptions::new("issuer CA")).unwrap();
    let (chain, key) = issued(&issuer, &leaf);
    let ca_issuer = webhook("ca-issuer", &chain, &key).await;
    create_certificate(&client, ns, "ca-issuer", "ca-issuer-tls").await;
    put_secret(
        &client,
        ns,
        "ca-issuer-tls",
        &[("cert-manager.io/certificate-name", "ca-issuer")],
        &issuer.certificate().to_pem(),
    )
    .await;
    configuration(
        &client,
        ns,
        "ca-issuer",
        ca_issuer.local_addr().port(),
        ("cert-manager.io/inject-ca-from", format!("{ns}/ca-issuer")),
    )
    .await;

    // inject-ca-from-secret.
    let direct_ca = CertificateAuthority::new(&CaOptions::new("direct CA")).unwrap();
    let (chain, key) = issued(&direct_ca, &leaf);
    let direct = webhook("direct", &chain, &key).await;
    put_secret(
        &client,
        ns,
        "direct",
        &[ALLOW_DIRECT_INJECTION],
        &direct_ca.certificate().to_pem(),
    )
    .await;
    configuration(
        &client,
        ns,
        "direct",
        direct.local_addr().port(),
        (
            "cert-manager.io/inject-ca-from-secret",
            format!("{ns}/direct"),
        ),
    )
    .await;

    // inject-apiserver-ca.
    let (chain, key) = issued(&api_server_ca, &leaf);
    let apiserver = webhook("apiserver", &chain, &key).await;
    configuration(
        &client,
        ns,
        "apiserver",
        apiserver.local_addr().port(),
        ("cert-manager.io/inject-apiserver-ca", "true".to_owned()),
    )
    .await;

    // OpenShift's annotation: the configured service CA.
    let (chain, key) = issued(&service_ca, &leaf);
    let openshift = webhook("openshift", &chain, &key).await;
    configuration(
        &client,
        ns,
        "openshift",
        openshift.local_addr().port(),
        (
            "service.beta.openshift.io/inject-cabundle",
            "true".to_owned(),
        ),
    )
    .await;

    for setup in [
        "selfsigned",
        "ca-issuer",
        "direct",
        "apiserver",
        "openshift",
    ] {
        let took = call_succeeds(&client, ns, setup).await;
        println!("{setup}: the API server's call to the webhook succeeded after {took:?}");
    }
    assert_eq!(
        injected(
            &client,
            TargetKind::ValidatingWebhookConfiguration,
            None,
            "selfsigned"
        )
        .await
        .as_deref(),
        Some(leaf_pem.as_str()),
        "the self-signed leaf is injected as it is"
    );

    // The API server CA rotates: the file changes, the injector re-reads it.
    let rotated = CertificateAuthority::new(&CaOptions::new("rotated api server CA")).unwrap();
    std::fs::write(&ca_file, rotated.certificate().to_pem()).unwrap();
    let started = std::time::Instant::now();
    loop {
        let current = injected(
            &client,
            TargetKind::ValidatingWebhookConfiguration,
            None,
            "apiserver",
        )
        .await;
        if current.as_deref() == Some(rotated.certificate().to_pem().as_str()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the rotated API server CA was not injected: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "the rotated API server CA file was injected after {:?}",
        started.elapsed()
    );

    // Garbage in a source: refused, the bundle in place stays.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let before = injected(
        &client,
        TargetKind::ValidatingWebhookConfiguration,
        None,
        "direct",
    )
    .await;
    secrets
        .patch(
            "direct",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"ca.crt": "garbage"}})),
        )
        .await
        .unwrap();
    common::wait_refused(&client, "direct", "ca.crt of Secret").await;
    assert_eq!(
        injected(
            &client,
            TargetKind::ValidatingWebhookConfiguration,
            None,
            "direct"
        )
        .await,
        before
    );
    injector.abort();
}

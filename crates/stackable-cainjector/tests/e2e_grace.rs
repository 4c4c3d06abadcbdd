//! Renewals without an outage, against a real API server.
//!
//! A webhook server (stackable-webhook, file source) serves a self-signed leaf, as a Pod with
//! cert-manager's selfSigned Issuer does; its configuration takes `ca.crt` of that Secret.
//! cert-manager renews the leaf (new key, new `ca.crt`); the server keeps serving the old leaf
//! for a while, as a Pod does until the kubelet refreshes its Secret volume, then reloads.
//! API-server calls through it never fail across the renewal, because the injector keeps the
//! old leaf in the bundle for the grace period; after it, the old leaf is gone. Ten renewals
//! in a row stay bounded; a restarted injector and a second replica keep the same deadline and
//! write the same bundle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{config, put_direct_secret};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::ConfigMap,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
    core::admission::AdmissionRequest,
};
use stackable_cainject::TargetKind;
use stackable_cainjector::{Metrics, grace::RETIRED_ANNOTATION, run};
use stackable_certs::Certificate;
use stackable_testenv::{
    TestEnv,
    webhooks::{LocalWebhook, namespace_with_service, validating_configuration},
};
use stackable_webhook::{CertSource, FileSource, Validation, WebhookServer};

const SERVICE: &str = "hooks";
const VALIDATING: TargetKind = TargetKind::ValidatingWebhookConfiguration;

/// A self-signed leaf for the Service (what a selfSigned Issuer writes): (cert, key) PEM.
fn self_signed_leaf(namespace: &str) -> (String, String) {
    let names = stackable_testenv::webhook_service_dns_names(namespace, SERVICE);
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn bundle_of(client_bundle: Option<String>) -> Vec<Certificate> {
    client_bundle
        .map(|pem| Certificate::all_from_pem(&pem).unwrap_or_default())
        .unwrap_or_default()
}

async fn configuration(client: &Client, namespace: &str, name: &str, port: u16, source: &str) {
    let hook = LocalWebhook::service(
        &format!("{name}.grace.example.com"),
        namespace,
        SERVICE,
        port,
        "/validate",
    )
    .rule("", "v1", "configmaps", &["CREATE"])
    .in_namespace(namespace)
    .object_label("hook", name);
    let mut configuration = validating_configuration(name, [hook]);
    configuration.metadata.annotations = Some(
        [(
            "cert-manager.io/inject-ca-from-secret".to_owned(),
            format!("{namespace}/{source}"),
        )]
        .into(),
    );
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .unwrap();
}

async fn retired_annotation(client: &Client, name: &str) -> Option<String> {
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get(name)
        .await
        .unwrap()
        .metadata
        .annotations
        .and_then(|a| a.get(RETIRED_ANNOTATION).cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_never_fail_a_call_and_stay_bounded() {
    let env = TestEnv::start().await.unwrap();
    let client = env.client().unwrap();
    let (namespace, _) = namespace_with_service(&env, "grace", SERVICE)
        .await
        .unwrap();
    let ns = namespace.as_str();
    let grace = Duration::from_secs(8);
    let mut injector_config = config("e2e-grace", Vec::new(), None);
    injector_config.grace_period = grace;
    let injector = tokio::spawn(run(client.clone(), injector_config.clone(), Metrics::new()));

    // The webhook, serving leaf 1 from files.
    let dir = tempfile::tempdir().unwrap();
    let (leaf1, key1) = self_signed_leaf(ns);
    std::fs::write(dir.path().join("tls.crt"), &leaf1).unwrap();
    std::fs::write(dir.path().join("tls.key"), &key1).unwrap();
    let server = WebhookServer::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .handle_signals(false)
        .certificates(CertSource::Files(
            FileSource::dir(dir.path()).with_poll_interval(Duration::from_millis(200)),
        ))
        .validating("/validate", |_: AdmissionRequest<ConfigMap>| async {
            Validation::deny("denied by the grace webhook")
        })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    put_direct_secret(&client, ns, "renewed", &leaf1).await;
    configuration(
        &client,
        ns,
        "renewed",
        server.local_addr().port(),
        "renewed",
    )
    .await;
    common::wait_injected(
        &client,
        VALIDATING,
        None,
        "renewed",
        &leaf1,
        Duration::from_secs(20),
    )
    .await;

    // API-server calls in a loop: each must reach the webhook (its denial), never fail TLS.
    let calls = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let caller = {
        let (calls, failures, stop) = (calls.clone(), failures.clone(), stop.clone());
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        tokio::spawn(async move {
            // The API server's informer needs a moment to see the configuration's bundle.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let object = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("probe-{i}")),
                        labels: Some([("hook".to_owned(), "renewed".to_owned())].into()),
                        ..ObjectMeta::default()
                    },
                    ..ConfigMap::default()
                };
                match configmaps.create(&PostParams::default(), &object).await {
                    Err(kube::Error::Api(s))
                        if s.message.contains("denied by the grace webhook") =>
                    {
                        calls.fetch_add(1, Ordering::SeqCst);
                    }
                    other => failures.lock().unwrap().push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    // cert-manager renews: new leaf, new ca.crt. The Pod still serves leaf 1 for 3 s.
    let renewed_at = Instant::now();
    let (leaf2, key2) = self_signed_leaf(ns);
    put_direct_secret(&client, ns, "renewed", &leaf2).await;
    let started = Instant::now();
    loop {
        let now = bundle_of(common::injected(&client, VALIDATING, None, "renewed").await);
        if now.len() == 2 {
            assert_eq!(
                now[0],
                Certificate::from_pem(&leaf2).unwrap(),
                "newest first"
            );
            assert_eq!(now[1], Certificate::from_pem(&leaf1).unwrap());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the renewal was not injected: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The volume refreshes: the server reloads leaf 2.
    std::fs::write(dir.path().join("tls.key"), &key2).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &leaf2).unwrap();
    // After the grace period the old leaf is gone.
    let started = Instant::now();
    loop {
        let now = bundle_of(common::injected(&client, VALIDATING, None, "renewed").await);
        if now.len() == 1 {
            assert_eq!(now[0], Certificate::from_pem(&leaf2).unwrap());
            break;
        }
        assert!(
            started.elapsed() < grace + Duration::from_secs(15),
            "the old leaf stayed: {}",
            now.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let removed_after = renewed_at.elapsed();
    println!("the old leaf left the bundle {removed_after:?} after the renewal (grace {grace:?})");
    assert!(
        removed_after >= grace,
        "removed before the grace period ended"
    );
    assert_eq!(retired_annotation(&client, "renewed").await, None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    caller.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    println!(
        "{} API-server calls through the webhook across the renewal, {} failed",
        calls.load(Ordering::SeqCst),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "calls failed across the renewal: {failures:#?}"
    );
    assert!(calls.load(Ordering::SeqCst) > 50);

    // Ten renewals in a row, one a second, 3 s of grace: never more than 1 + 3 certificates.
    injector.abort();
    let mut short = injector_config.clone();
    short.grace_period = Duration::from_secs(3);
    let injector = tokio::spawn(run(client.clone(), short.clone(), Metrics::new()));
    let (first, _) = self_signed_leaf(ns);
    put_direct_secret(&client, ns, "often", &first).await;
    configuration(&client, ns, "often", server.local_addr().port(), "often").await;
    common::wait_injected(
        &client,
        VALIDATING,
        None,
        "often",
        &first,
        Duration::from_secs(20),
    )
    .await;
    let mut largest = 0;
    for _ in 0..10 {
        let (leaf, _) = self_signed_leaf(ns);
        put_direct_secret(&client, ns, "often", &leaf).await;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            largest = largest
                .max(bundle_of(common::injected(&client, VALIDATING, None, "often").await).len());
        }
    }
    println!(
        "ten renewals a second apart with 3 s of grace: at most {largest} certificates in the bundle"
    );
    assert!(largest <= 5, "{largest} certificates");

    // Two replicas, and one restarted mid-grace: the same bundle, the same deadline. (First
    // let the ten renewals' grace periods run out.)
    tokio::time::sleep(Duration::from_secs(4)).await;
    let second = tokio::spawn(run(client.clone(), short.clone(), Metrics::new()));
    let (leaf, _) = self_signed_leaf(ns);
    put_direct_secret(&client, ns, "often", &leaf).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let recorded = retired_annotation(&client, "often").await.unwrap();
    let version = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get("often")
        .await
        .unwrap()
        .metadata
        .resource_version;
    injector.abort();
    let restarted = tokio::spawn(run(client.clone(), short, Metrics::new()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Neither the second replica nor the restarted one rewrote anything.
    assert_eq!(
        retired_annotation(&client, "often").await.unwrap(),
        recorded
    );
    assert_eq!(
        Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .get("often")
            .await
            .unwrap()
            .metadata
            .resource_version,
        version,
        "the replicas rewrote the bundle"
    );
    // The recorded deadlines hold: within 3 s (+ a margin) only the current leaf is left.
    let started = Instant::now();
    loop {
        let now = bundle_of(common::injected(&client, VALIDATING, None, "often").await);
        if now.len() == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the restart reset the grace period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.abort();
    restarted.abort();
}

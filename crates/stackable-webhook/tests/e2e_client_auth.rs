//! Through the real kube-apiserver (stackable-testenv): the webhook server requires a client
//! certificate from CA X, and kube-apiserver is given one through `--admission-control-config-file`
//! (a `WebhookAdmissionConfiguration` whose kubeconfig has a user for the webhook's Service,
//! exactly the YAML of docs/webhook-server.md "Authenticating the API server", written by
//! `stackable_testenv::webhooks::client_auth`). The API server's calls reach the handler (its
//! denial reaches the user) while a direct call without a certificate, or with one from CA Y,
//! is refused at the handshake. After the client CA file is swapped to Y (the API server still
//! presenting X's certificate), the API server's calls are refused and, with
//! `failurePolicy: Fail`, so is the object, with the TLS error in the message; swapping back
//! to X lets them through again: no restart in between. Two limits of the API
//! server are shown too: a `*.svc` user does not match a Service port other than 443, and CRD
//! conversion calls carry no client certificate even to a `host:port` the kubeconfig names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine;
use common::{
    TestCa, custom_client_config, handshake_failure_count, handshake_failures, local_builder,
    request, start, stop,
};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration,
    core::v1::{ConfigMap, Namespace},
};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, PostParams},
    core::admission::AdmissionRequest,
};
use rustls::version;
use serde_json::json;
use stackable_testenv::{
    TestEnv,
    webhooks::{
        LocalWebhook,
        client_auth::{WebhookClientAuth, service_user},
        create_until, serving_leaf, validating_configuration,
    },
};
use stackable_webhook::{CertSource, ClientAuth, Limits, Validation};

const NAMESPACE: &str = "client-auth";
const SERVICE: &str = "hook";
const UNMATCHED_SERVICE: &str = "unmatched";
const DENIAL: &str = "the handler refuses ConfigMaps named denied-*";

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name}
    }))
    .unwrap()
}

fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_authenticates_with_its_client_certificate_and_others_are_refused() {
    let ca_x = TestCa::new("webhook-client-ca-x");
    let ca_y = TestCa::new("webhook-client-ca-y");
    let apiserver_cert = ca_x.client_pem("system:kube-apiserver");
    let files = tempfile::tempdir().unwrap();
    let client_ca_file = files.path().join("client-ca.crt");
    std::fs::write(&client_ca_file, &ca_x.pem).unwrap();

    // The server first: the kubeconfig names its port, and kube-apiserver reads it at start.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let server = start(
        local_builder()
            .certificates(CertSource::in_memory(
                serving_leaf(NAMESPACE, SERVICE)
                    .dns_name(format!("{UNMATCHED_SERVICE}.{NAMESPACE}.svc")),
            ))
            .client_auth(
                ClientAuth::ca_file(&client_ca_file).with_poll_interval(Duration::from_millis(200)),
            )
            // The API server keeps connections alive; closing idle ones after 1 s makes its
            // next call a new handshake, which is what a swapped client CA applies to (the
            // server's idle timer is the longer of the two).
            .limits(Limits {
                idle_timeout: Duration::from_secs(1),
                header_read_timeout: Duration::from_secs(1),
                ..Limits::default()
            })
            .validating("/validate", move |request: AdmissionRequest<ConfigMap>| {
                seen.fetch_add(1, Ordering::SeqCst);
                let denied = request
                    .object
                    .and_then(|cm| cm.metadata.name)
                    .is_some_and(|name| name.starts_with("denied-"));
                async move {
                    if denied {
                        Validation::deny(DENIAL)
                    } else {
                        Validation::allow()
                    }
                }
            }),
    )
    .await;
    let port = server.local_addr().port();
    let ca_bundle = server.ca_bundle_pem().unwrap();

    // A Service webhook on a port other than 443: the user is `<service>.<namespace>.svc:<port>`.
    // `*.svc` is there too, and does not match such a port: calls through a second Service go
    // without a certificate.
    let admission =
        WebhookClientAuth::new([service_user(NAMESPACE, SERVICE, port), "*.svc".to_owned()])
            .write(files.path(), &apiserver_cert.0, &apiserver_cert.1)
            .unwrap();
    let env = TestEnv::builder()
        .apiserver_flag(admission.apiserver_flag())
        .start()
        .await
        .unwrap();
    let client = env.client().unwrap();
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap(),
        )
        .await
        .unwrap();
    env.create_external_name_service(NAMESPACE, SERVICE)
        .await
        .unwrap();
    env.create_external_name_service(NAMESPACE, UNMATCHED_SERVICE)
        .await
        .unwrap();
    // Only ConfigMaps labelled `route: unmatched`, through the Service no user matches.
    let unmatched = LocalWebhook::service(
        "unmatched.validate.example.com",
        NAMESPACE,
        UNMATCHED_SERVICE,
        port,
        "/validate",
    )
    .ca_bundle(&ca_bundle)
    .rule("", "v1", "configmaps", &["CREATE"])
    .in_namespace(NAMESPACE)
    .object_label("route", "unmatched")
    .timeout_seconds(10)
    .failure_policy("Fail");
    let webhook = LocalWebhook::service(
        "auth.validate.example.com",
        NAMESPACE,
        SERVICE,
        port,
        "/validate",
    )
    .ca_bundle(&ca_bundle)
    .rule("", "v1", "configmaps", &["CREATE"])
    .in_namespace(NAMESPACE)
    .timeout_seconds(10)
    .failure_policy("Fail");
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(
            &PostParams::default(),
            &validating_configuration("client-auth", [webhook, unmatched]),
        )
        .await
        .unwrap();

    // 1. The API server, with X's certificate, reaches the handler: its denial reaches the user.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let denied = create_until(
        &config_maps,
        &config_map("denied-1"),
        Duration::from_secs(60),
        |outcome| matches!(outcome, Err(error) if error.to_string().contains(DENIAL)),
    )
    .await
    .expect("the API server never got the handler's denial")
    .unwrap_err();
    eprintln!("denied through the webhook: {denied}");
    let before = calls.load(Ordering::SeqCst);
    config_maps
        .create(&PostParams::default(), &config_map("allowed-1"))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), before + 1);

    // The Service no user matches (`*.svc` is only tried without the port for port 443): the
    // API server calls without a certificate and is refused. (Go sees the refusal as the TLS
    // alert, or now and then as `use of closed network connection` when the server's close
    // wins the race with its request: those attempts are retried.)
    let mut labelled = config_map("labelled-1");
    labelled.metadata.labels = Some([("route".to_owned(), "unmatched".to_owned())].into());
    let without = create_until(&config_maps, &labelled, Duration::from_secs(60), |outcome| {
        matches!(outcome, Err(error) if error.to_string().contains("unmatched.validate.example.com") && error.to_string().contains("tls:"))
    })
    .await
    .expect("the unmatched webhook was never called")
    .unwrap_err()
    .to_string();
    eprintln!("through the unmatched Service: {without}");
    assert!(
        without.contains("remote error: tls: certificate required"),
        "{without}"
    );

    // Conversion: the API server calls the same host and port without a certificate, although
    // the kubeconfig has a user for it (apiextensions-apiserver does not read it).
    let refused_conversion = conversion_through(&env, port, &ca_bundle).await;
    eprintln!("conversion through the same Service: {refused_conversion}");
    assert!(
        refused_conversion.contains(&format!("{SERVICE}.{NAMESPACE}.svc:{port}/convert"))
            && refused_conversion.contains("remote error: tls: certificate required"),
        "{refused_conversion}"
    );

    // 2. Direct calls: no certificate, or one from Y, are refused at the handshake; X's passes.
    let both = [&version::TLS13, &version::TLS12];
    let review = serde_json::to_vec(&common::pod_review(
        "direct",
        "CREATE",
        json!({"metadata": {"name": "x"}}),
    ))
    .unwrap();
    let call = |client: Arc<rustls::ClientConfig>| {
        let addr = server.local_addr();
        let review = review.clone();
        async move {
            request(
                &client,
                addr,
                "POST",
                "/validate",
                Some("application/json"),
                review,
            )
            .await
        }
    };
    let failures_before = handshake_failure_count(&server);
    let anonymous = call(custom_client_config(&ca_bundle, &both, &[], None)).await;
    assert!(
        anonymous.is_err(),
        "a caller without a certificate got: {anonymous:?}"
    );
    let from_y = ca_y.client_pem("system:kube-apiserver");
    let with_y = call(custom_client_config(&ca_bundle, &both, &[], Some(&from_y))).await;
    assert!(
        with_y.is_err(),
        "a caller with Y's certificate got: {with_y:?}"
    );
    // At least these two: the API server's own calls without a certificate (the CRD's
    // conversion above, retried in the background) may add more at any moment.
    let failures = handshake_failures(&server, failures_before + 2).await;
    assert!(
        failures >= failures_before + 2,
        "{failures} handshake failures, {failures_before} before the two direct calls"
    );
    let with_x = custom_client_config(&ca_bundle, &both, &[], Some(&apiserver_cert));
    // (The handler sees a Pod review it cannot decode as a ConfigMap and says so: the TLS
    // layer let it in.)
    assert_eq!(call(with_x.clone()).await.unwrap().status, 200);

    // 3. The client CA file now holds Y; once the server reads it, X is refused.
    replace_file(&client_ca_file, &ca_y.pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(with_x.clone()).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the client CA swap never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The API server's calls fail the same way (after its kept-alive connection is closed):
    // failurePolicy Fail refuses the object with the TLS error.
    let handled = calls.load(Ordering::SeqCst);
    let refused = refused_by_tls(&config_maps, "allowed-2").await;
    eprintln!("refused after the swap: {refused}");
    assert!(
        refused.contains("remote error: tls: unknown certificate authority"),
        "{refused}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        handled,
        "a refused call reached the handler"
    );

    // 4. Back to X: the API server's calls pass again, without any restart.
    replace_file(&client_ca_file, &ca_x.pem);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        match config_maps
            .create(&PostParams::default(), &config_map("allowed-3"))
            .await
        {
            Ok(_) => break,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "never let through again: {error}"
                )
            }
        }
    }
    assert!(calls.load(Ordering::SeqCst) > handled);

    stop(server).await;
    drop(env);
}

/// Creates `name` (waiting out the server's 1 s idle timeout before each attempt, so the API
/// server opens a new connection) until the API server reports a TLS failure calling the
/// webhook; returns that message. Other errors (a connection closed under a request) are retried.
async fn refused_by_tls(config_maps: &Api<ConfigMap>, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        match config_maps
            .create(&PostParams::default(), &config_map(name))
            .await
        {
            Ok(_) => {
                // Went over a connection verified before the swap: remove it and try again.
                config_maps.delete(name, &Default::default()).await.unwrap();
                last = "admitted".to_owned();
            }
            Err(error) => {
                last = error.to_string();
                if last.contains("tls:") {
                    return last;
                }
            }
        }
    }
    panic!("the API server was never refused at the handshake; last outcome: {last}");
}

/// Installs a CRD with two versions whose conversion webhook is the Service `hook` on `port`,
/// stores an object in v1 and reads it in v2; returns the error of that read.
async fn conversion_through(env: &TestEnv, port: u16, ca_bundle: &str) -> String {
    let schema = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    let crd = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.auth.example.com"},
        "spec": {
            "group": "auth.example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "served": true, "storage": true, "schema": schema},
                {"name": "v2", "served": true, "storage": false, "schema": schema}
            ],
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {
                        "service": {"namespace": NAMESPACE, "name": SERVICE, "port": port, "path": "/convert"},
                        "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_bundle)
                    }
                }
            }
        }
    }))
    .unwrap();
    env.install_crds([crd]).await.unwrap();
    let resource = |version: &str| {
        ApiResource::from_gvk(&GroupVersionKind::gvk(
            "auth.example.com",
            version,
            "Widget",
        ))
    };
    let v1: Api<DynamicObject> =
        Api::namespaced_with(env.client().unwrap(), NAMESPACE, &resource("v1"));
    let mut widget = DynamicObject::new("w", &resource("v1"));
    widget.data = json!({"spec": {"size": 1}});
    // Stored in v1, the storage version: no conversion yet.
    v1.create(&PostParams::default(), &widget).await.unwrap();
    let v2: Api<DynamicObject> =
        Api::namespaced_with(env.client().unwrap(), NAMESPACE, &resource("v2"));
    // The CRD's conversion settings reach the API server's handler shortly after `Established`;
    // a refusal may also surface as a closed connection (see above): read until the TLS alert.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let error = v2
            .get("w")
            .await
            .expect_err("read in v2 without a conversion webhook that answered")
            .to_string();
        if error.contains("tls:") || Instant::now() > deadline {
            return error;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

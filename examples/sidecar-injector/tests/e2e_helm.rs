//! The Helm chart `deploy/helm/sidecar-injector` on a test control plane, with `helm` built
//! from its Go module (stackable-testenv's `helm`): `helm lint` and `helm template` of each
//! certificate mode (and of `clientAuth`, the API server's client CA from a ConfigMap) checked
//! with a server-side dry run, then `helm install` in two modes.
//! There is no kubelet, so the Deployment's command line (arguments, environment) runs the real
//! binary as the chart's ServiceAccount (impersonated) behind a forwarder that plays the
//! Service:
//!
//! - `inject` (the default): the replica shares its CA through the Secret the chart's Role
//!   names and keeps the caBundle of the two configurations the chart rendered; labelled Pods
//!   get the sidecar through the API server.
//! - `olm`: the chart renders no RBAC at all; the test plays OLM (the serving certificate as
//!   files where the Deployment's `--cert-dir` points, the Service and both configurations);
//!   the binary, with no rights, serves both webhooks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        core::v1::Pod,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::json;
use sidecar_injector::{INJECT_LABEL, has_sidecar};
use stackable_certs::{
    LeafOptions,
    ca::{CaOptions, CertificateAuthority},
};
use stackable_testenv::{
    TestEnv,
    forwarder::Forwarder,
    helm::{
        Helm,
        release::{Chart, ContainerCommand, Listen, Manifest, sorted_names},
    },
    replicas::Replicas,
    webhooks::{LocalWebhook, create_until, mutating_configuration, validating_configuration},
};

use crate::common::{NAMESPACE, SERVICE_ACCOUNT, pod};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/sidecar-injector");
const RELEASE: &str = "sidecar-injector";
/// Where the Deployment of mode `olm` expects OLM's certificate.
const OLM_CERT_DIR: &str = "/tmp/k8s-webhook-server/serving-certs";

const WORKLOAD: [&str; 3] = [
    "serviceaccount/sidecar-injector",
    "deployment.apps/sidecar-injector",
    "poddisruptionbudget.policy/sidecar-injector",
];
const SERVICE: &str = "service/sidecar-injector";
const RBAC: [&str; 4] = [
    "role.rbac.authorization.k8s.io/sidecar-injector",
    "rolebinding.rbac.authorization.k8s.io/sidecar-injector",
    "clusterrole.rbac.authorization.k8s.io/sidecar-injector",
    "clusterrolebinding.rbac.authorization.k8s.io/sidecar-injector",
];
const CONFIGURATIONS: [&str; 2] = [
    "mutatingwebhookconfiguration.admissionregistration.k8s.io/sidecar-injector",
    "validatingwebhookconfiguration.admissionregistration.k8s.io/sidecar-injector",
];
const CERTIFICATE: &str = "certificate.cert-manager.io/sidecar-injector";
/// The values of the `clientAuth` case (mode `inject`).
const CLIENT_AUTH: &[&str] = &[
    "clientAuth.caConfigMap=apiserver-client-ca",
    "clientAuth.caKey=client-ca.pem",
    "clientAuth.allowedNames={system:kube-apiserver,webhook-probe}",
];

/// A minimal `certificates.cert-manager.io` CRD (any content), so that the API server
/// accepts the chart's Certificate in a dry run.
fn cert_manager_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": { "name": "certificates.cert-manager.io" },
        "spec": {
            "group": "cert-manager.io", "scope": "Namespaced",
            "names": { "kind": "Certificate", "listKind": "CertificateList",
                       "plural": "certificates", "singular": "certificate" },
            "versions": [{ "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } } }]
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_lints_and_renders_what_the_api_server_accepts_in_each_mode() {
    let helm = Helm::ensure().unwrap();
    let env = TestEnv::builder()
        .crds([cert_manager_crd()])
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let chart = Chart::new(&helm, &env, CHART);
    env.create_namespace_named(NAMESPACE).await.unwrap();

    let cases: [(&str, &[&str], Vec<String>); 5] = [
        (
            "defaults (inject)",
            &[],
            sorted_names(&[&WORKLOAD[..], &[SERVICE], &RBAC, &CONFIGURATIONS].concat()),
        ),
        (
            "install: the injector applies both configurations",
            &["certificateMode=install"],
            sorted_names(&[&WORKLOAD[..], &[SERVICE], &RBAC].concat()),
        ),
        (
            "certManager: a Certificate, inject-ca-from, no RBAC",
            &[
                "certificateMode=certManager",
                "certManager.certificate.issuerRef.name=ca",
            ],
            sorted_names(&[&WORKLOAD[..], &[SERVICE, CERTIFICATE], &CONFIGURATIONS].concat()),
        ),
        (
            "olm: OLM makes the Service and configurations, no RBAC",
            &["certificateMode=olm"],
            sorted_names(&WORKLOAD),
        ),
        (
            "clientAuth: the API server's client CA from a ConfigMap the user brings",
            CLIENT_AUTH,
            sorted_names(&[&WORKLOAD[..], &[SERVICE], &RBAC, &CONFIGURATIONS].concat()),
        ),
    ];
    for (case, sets, expected) in cases {
        let lint = chart.lint(sets).unwrap();
        assert!(lint.contains("0 chart(s) failed"), "{case}: {lint}");
        let objects = chart.dry_run(RELEASE, NAMESPACE, sets).unwrap();
        assert_eq!(objects, expected, "{case}");
    }

    // Each mode passes its flag; the ones without API access get no token either.
    let inject = chart.template(RELEASE, NAMESPACE, &[]).unwrap();
    assert!(inject.contains("- --inject-ca-bundle") && inject.contains("name: CA_SECRET"));
    assert!(!inject.contains("automountServiceAccountToken"));
    let install = chart
        .template(RELEASE, NAMESPACE, &["certificateMode=install"])
        .unwrap();
    assert!(install.contains("- --install-webhooks"));
    assert!(install.contains("verbs: [\"get\", \"list\", \"watch\", \"patch\", \"create\"]"));
    let cert_manager = chart
        .template(
            RELEASE,
            NAMESPACE,
            &[
                "certificateMode=certManager",
                "certManager.certificate.issuerRef.name=ca",
            ],
        )
        .unwrap();
    assert!(cert_manager.contains("- --cert-dir=/etc/sidecar-injector/tls"));
    assert!(cert_manager.contains("secretName: sidecar-injector-tls"));
    assert_eq!(
        cert_manager
            .matches("cert-manager.io/inject-ca-from: sidecar-injector/sidecar-injector")
            .count(),
        2,
        "{cert_manager}"
    );
    assert!(cert_manager.contains("automountServiceAccountToken: false"));
    let olm = chart
        .template(RELEASE, NAMESPACE, &["certificateMode=olm"])
        .unwrap();
    assert!(olm.contains(&format!("- --cert-dir={OLM_CERT_DIR}")));
    assert!(olm.contains("automountServiceAccountToken: false"));
    // clientAuth: the flag on the mounted ConfigMap key, the names joined; with cert-manager's
    // volume too. Off by default.
    assert!(!inject.contains("--client-ca-file") && !inject.contains("client-ca"));
    let client_auth = chart.template(RELEASE, NAMESPACE, CLIENT_AUTH).unwrap();
    for rendered in [
        "- --client-ca-file=/etc/sidecar-injector/client-ca/ca.crt",
        "- --client-allowed-names=system:kube-apiserver,webhook-probe",
        "- name: client-ca\n              mountPath: /etc/sidecar-injector/client-ca\n              readOnly: true",
        "- name: client-ca\n          configMap:\n            name: apiserver-client-ca\n            items:\n              - key: client-ca.pem\n                path: ca.crt",
    ] {
        assert!(client_auth.contains(rendered), "{rendered}\n{client_auth}");
    }
    let both = chart
        .template(
            RELEASE,
            NAMESPACE,
            &[
                "certificateMode=certManager",
                "certManager.certificate.issuerRef.name=ca",
                "clientAuth.caConfigMap=apiserver-client-ca",
            ],
        )
        .unwrap();
    assert!(
        both.contains("- name: tls\n              mountPath: /etc/sidecar-injector/tls")
            && both.contains(
                "- name: client-ca\n              mountPath: /etc/sidecar-injector/client-ca"
            )
            && both.contains("- key: ca.crt\n                path: ca.crt")
            && !both.contains("--client-allowed-names"),
        "{both}"
    );
    // A release elsewhere: the configurations call its Service and exclude its namespace.
    let renamed = chart.template("logs", "platform", &[]).unwrap();
    assert!(renamed.contains("name: logs-sidecar-injector\n      namespace: platform"));
    assert!(
        renamed.contains("- platform\n      - kube-system"),
        "{renamed}"
    );

    let error = chart
        .template(RELEASE, NAMESPACE, &["certificateMode=certManager"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("issuerRef.name"), "{error}");
    let error = chart
        .template(RELEASE, NAMESPACE, &["certificateMode=files"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("certificateMode"), "{error}");
    let error = chart
        .template(
            RELEASE,
            NAMESPACE,
            &["clientAuth.allowedNames={system:kube-apiserver}"],
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("clientAuth.caConfigMap"), "{error}");
    println!(
        "lint, template and dry run of 4 modes and clientAuth in {:?}",
        started.elapsed()
    );
}

/// Starts the Deployment's command line of the installed release as its ServiceAccount, as
/// many replicas as it runs (2), behind `forwarder`, and waits until they are ready.
async fn run_deployment(
    env: &TestEnv,
    command: &ContainerCommand,
    forwarder: &Forwarder,
) -> Replicas {
    assert_eq!(command.replica_count, 2);
    command
        .replicas(
            env,
            env!("CARGO_BIN_EXE_sidecar-injector"),
            &[("bind", Listen::Https), ("health-bind", Listen::Health)],
        )
        .unwrap()
        .name_prefix("sidecar-injector")
        .behind(forwarder)
        .readiness_path("/readyz")
        .start_ready(command.replica_count, Duration::from_secs(60))
        .await
        .unwrap()
}

/// A labelled Pod in a namespace of its own gets the sidecar through the API server.
async fn pods_get_the_sidecar(env: &TestEnv, replicas: &Replicas) {
    let namespace = env.create_namespace("apps").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(env.client().unwrap(), &namespace);
    let created = create_until(
        &pods,
        &pod("app", true, true),
        Duration::from_secs(30),
        |outcome| matches!(outcome, Ok(pod) if has_sidecar(pod)),
    )
    .await;
    if let Err(error) = created {
        panic!("{error}\n{}", replicas.log_tails(40));
    }
}

async fn assert_uninstalled(chart: &Chart<'_>, manifest: &Manifest) {
    chart.uninstall(RELEASE, NAMESPACE).unwrap();
    assert_eq!(chart.existing(manifest).unwrap(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_inject_mode_runs_the_injector_as_its_service_account() {
    let helm = Helm::ensure().unwrap();
    let env = TestEnv::start().await.unwrap();
    let started = Instant::now();
    let chart = Chart::new(&helm, &env, CHART);
    let forwarder = Forwarder::kube_proxy().await.unwrap();
    let manifest = chart
        .install_served_locally(RELEASE, NAMESPACE, &[], forwarder.local_addr().port())
        .await
        .unwrap();
    let command = ContainerCommand::of_deployment(&env, NAMESPACE, RELEASE)
        .await
        .unwrap();
    assert_eq!(command.service_account, SERVICE_ACCOUNT);
    assert!(command.args.iter().any(|a| a == "--inject-ca-bundle"));

    // Ready means its CA is in the caBundle of both configurations the chart rendered.
    let replicas = run_deployment(&env, &command, &forwarder).await;
    let admin = env.client().unwrap();
    let mutating = Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .get(RELEASE)
        .await
        .unwrap();
    let validating = Api::<ValidatingWebhookConfiguration>::all(admin.clone())
        .get(RELEASE)
        .await
        .unwrap();
    assert!(
        mutating.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .is_some()
    );
    assert!(
        validating.webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .is_some()
    );
    pods_get_the_sidecar(&env, &replicas).await;
    let logs = replicas.log_tails(400);
    assert!(!logs.contains("forbidden"), "{logs}");
    drop(replicas);

    assert_uninstalled(&chart, &manifest).await;
    println!(
        "install (inject), ready, a Pod mutated, uninstall in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_olm_mode_serves_mounted_files_with_no_rights() {
    let helm = Helm::ensure().unwrap();
    let env = TestEnv::start().await.unwrap();
    let started = Instant::now();
    let chart = Chart::new(&helm, &env, CHART);
    let manifest = chart
        .install(RELEASE, NAMESPACE, &["certificateMode=olm"])
        .unwrap();
    assert_eq!(chart.existing(&manifest).unwrap(), sorted_names(&WORKLOAD));
    let mut command = ContainerCommand::of_deployment(&env, NAMESPACE, RELEASE)
        .await
        .unwrap();
    assert_eq!(command.service_account, SERVICE_ACCOUNT);

    // The test plays OLM: the serving certificate of the Service as files, where the
    // Deployment's --cert-dir points (a folder of the test here)...
    let ca = CertificateAuthority::new(&CaOptions::new("olm-test-ca")).unwrap();
    let leaf = ca
        .issue(&LeafOptions::for_service(RELEASE, NAMESPACE))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), leaf.certificate.to_pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), leaf.key.to_pem()).unwrap();
    assert!(command.replace_flag("cert-dir", &dir.path().display().to_string()));
    // ...the Service, and both configurations from the CSV's webhookdefinitions, with the CA.
    let forwarder = Forwarder::kube_proxy().await.unwrap();
    let port = forwarder.local_addr().port();
    env.create_external_name_service(NAMESPACE, RELEASE)
        .await
        .unwrap();
    let apps = "olm-apps";
    env.create_namespace_named(apps).await.unwrap();
    let hook = |name: &str, path: &str| {
        LocalWebhook::service(name, NAMESPACE, RELEASE, port, path)
            .ca_bundle(&ca.certificate().to_pem())
            .rule("", "v1", "pods", &["CREATE"])
            .in_namespace(apps)
            .object_label(INJECT_LABEL, "true")
    };
    let admin = env.client().unwrap();
    Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .create(
            &PostParams::default(),
            &mutating_configuration(RELEASE, [hook("inject.olm.example.com", "/mutate")]),
        )
        .await
        .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(admin.clone())
        .create(
            &PostParams::default(),
            &validating_configuration(RELEASE, [hook("limits.olm.example.com", "/validate")]),
        )
        .await
        .unwrap();

    // The chart granted nothing: the ServiceAccount may not even read its own namespace's
    // Secrets, and the injector serves all the same.
    let mut config = env.config().clone();
    config.auth_info.impersonate = Some(SERVICE_ACCOUNT.to_owned());
    let denied = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
        Client::try_from(config).unwrap(),
        NAMESPACE,
    )
    .list_metadata(&ListParams::default())
    .await
    .unwrap_err();
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.code == 403),
        "{denied}"
    );
    let replicas = run_deployment(&env, &command, &forwarder).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), apps);
    let created = create_until(
        &pods,
        &pod("app", true, true),
        Duration::from_secs(30),
        |outcome| matches!(outcome, Ok(pod) if has_sidecar(pod)),
    )
    .await;
    if let Err(error) = created {
        panic!("{error}\n{}", replicas.log_tails(40));
    }
    drop(replicas);

    assert_uninstalled(&chart, &manifest).await;
    println!(
        "install (olm), ready with mounted files, a Pod mutated, uninstall in {:?}",
        started.elapsed()
    );
}

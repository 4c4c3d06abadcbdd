//! The Helm chart `deploy/helm/stackable-cainjector` on a test control plane, with `helm`
//! built from its Go module (stackable-testenv's `helm`): `helm lint`, `helm template` of the
//! defaults and of each scope checked with a server-side dry run, and `helm install` whose
//! Deployment's command line runs the real binary as the chart's ServiceAccount (there is no
//! kubelet): it injects, so the chart's RBAC is enough; `helm uninstall` removes every object.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::Secret,
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::json;
use stackable_certs::ca::{CaOptions, CertificateAuthority};
use stackable_testenv::{
    TestEnv,
    helm::{
        Helm,
        release::{Chart, ContainerCommand, Listen, sorted_names},
    },
    replicas::Replicas,
};

const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/helm/stackable-cainjector"
);
const RELEASE: &str = "stackable-cainjector";
const NAMESPACE: &str = "stackable-cainjector";

async fn create_namespaces(env: &TestEnv, names: &[&str]) {
    for name in names {
        env.create_namespace_named(name).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_lints_and_renders_what_the_api_server_accepts_in_every_scope() {
    let helm = Helm::ensure().unwrap();
    let env = TestEnv::start().await.unwrap();
    let started = Instant::now();
    let chart = Chart::new(&helm, &env, CHART);
    create_namespaces(&env, &[NAMESPACE, "team-a", "team-b", "ca"]).await;

    let base = [
        "serviceaccount/stackable-cainjector",
        "clusterrole.rbac.authorization.k8s.io/stackable-cainjector",
        "clusterrolebinding.rbac.authorization.k8s.io/stackable-cainjector",
        "deployment.apps/stackable-cainjector",
    ];
    let role = "role.rbac.authorization.k8s.io/stackable-cainjector";
    let binding = "rolebinding.rbac.authorization.k8s.io/stackable-cainjector";
    let cases: [(&str, &[&str], Vec<String>); 3] = [
        ("defaults", &[], sorted_names(&base)),
        (
            "ConfigMaps in every namespace",
            &["configMaps=true"],
            sorted_names(
                &[
                    &base[..],
                    &[
                        "clusterrole.rbac.authorization.k8s.io/stackable-cainjector-configmaps",
                        "clusterrolebinding.rbac.authorization.k8s.io/stackable-cainjector-configmaps",
                    ],
                ]
                .concat(),
            ),
        ),
        (
            "two namespaces and a service CA Secret in a third",
            &[
                "namespaces={team-a,team-b}",
                "configMaps=true",
                "serviceCa.secret=ca/service-ca",
            ],
            sorted_names(&[&base[..], &[role, binding, role, binding, role, binding]].concat()),
        ),
    ];
    for (case, sets, expected) in cases {
        let lint = chart.lint(sets).unwrap();
        assert!(lint.contains("0 chart(s) failed"), "{case}: {lint}");
        let objects = chart.dry_run(RELEASE, NAMESPACE, sets).unwrap();
        assert_eq!(objects, expected, "{case}");
    }

    // The scope decides where Secrets may be read: cluster-wide, or by a Role per namespace.
    let cluster_wide = chart.template(RELEASE, NAMESPACE, &[]).unwrap();
    assert!(cluster_wide.contains("resources: [\"secrets\"]"));
    let scoped = chart
        .template(RELEASE, NAMESPACE, &["namespaces={team-a}"])
        .unwrap();
    let cluster_role = scoped.split("kind: ClusterRoleBinding").next().unwrap();
    assert!(!cluster_role.contains("secrets"), "{cluster_role}");
    assert!(scoped.contains("namespace: team-a") && scoped.contains("--namespace=team-a"));

    // Bad values are refused with a message that names them.
    let error = chart
        .template(RELEASE, NAMESPACE, &["serviceCa.secret=no-slash"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("serviceCa.secret"), "{error}");
    let error = chart
        .template(
            RELEASE,
            NAMESPACE,
            &["serviceCa.secret=ca/x", "serviceCa.fromApiServer=true"],
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("exclude each other"), "{error}");
    let error = chart
        .template(RELEASE, NAMESPACE, &["logging.format=xml"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("format"), "{error}");
    println!(
        "lint, template and dry run of 3 scopes in {:?}",
        started.elapsed()
    );
}

/// Starts the Deployment `namespace/RELEASE`'s command line as its ServiceAccount and waits
/// until it is ready.
async fn run_deployment(env: &TestEnv, namespace: &str) -> (Replicas, ContainerCommand) {
    let command = ContainerCommand::of_deployment(env, namespace, RELEASE)
        .await
        .unwrap();
    assert_eq!(
        command.service_account,
        format!("system:serviceaccount:{namespace}:stackable-cainjector")
    );
    let injector = command
        .replicas(
            env,
            env!("CARGO_BIN_EXE_stackable-cainjector"),
            &[("metrics-address", Listen::Health)],
        )
        .unwrap()
        .name_prefix("stackable-cainjector")
        .readiness_path("/readyz")
        .start_ready(command.replica_count, Duration::from_secs(30))
        .await
        .unwrap();
    (injector, command)
}

/// A CA in the Secret `namespace/ca` that allows direct injection; its PEM.
async fn ca_secret(client: &Client, namespace: &str) -> String {
    let ca = CertificateAuthority::new(&CaOptions::new(format!("{namespace}-ca")))
        .unwrap()
        .certificate()
        .to_pem();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "ca", "annotations": { "cert-manager.io/allow-direct-injection": "true" } },
        "stringData": { "ca.crt": ca }
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    ca
}

/// A webhook configuration `name` annotated `inject-ca-from-secret: <from>`.
async fn annotated_configuration(client: &Client, name: &str, from: &str) {
    let hooks: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": { "name": name,
                      "annotations": { "cert-manager.io/inject-ca-from-secret": from } },
        "webhooks": [{ "name": "a.helm.example.com",
            "clientConfig": { "service": { "name": "hooks", "namespace": "default" } },
            "rules": [{ "apiGroups": ["helm.example.com"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["things"] }],
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore" }]
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &hooks)
        .await
        .unwrap();
}

/// The caBundle of configuration `name` once it has one (within `timeout`), as text.
async fn injected(client: &Client, name: &str, timeout: Duration) -> Option<String> {
    let configurations = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let current = configurations.get(name).await.unwrap();
        if let Some(bundle) = current.webhooks.unwrap_or_default()[0]
            .client_config
            .ca_bundle
            .clone()
        {
            return Some(String::from_utf8(bundle.0).unwrap());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_injector_as_its_service_account_and_uninstall_removes_it() {
    let helm = Helm::ensure().unwrap();
    let env = TestEnv::start().await.unwrap();
    let started = Instant::now();
    let admin = env.client().unwrap();
    let chart = Chart::new(&helm, &env, CHART);
    let manifest = chart.install(RELEASE, NAMESPACE, &[]).unwrap();
    let expected = sorted_names(&[
        "serviceaccount/stackable-cainjector",
        "clusterrole.rbac.authorization.k8s.io/stackable-cainjector",
        "clusterrolebinding.rbac.authorization.k8s.io/stackable-cainjector",
        "deployment.apps/stackable-cainjector",
    ]);
    assert_eq!(chart.existing(&manifest).unwrap(), expected);

    // The Deployment's command line, as the kubelet would start it, as its ServiceAccount.
    let (injector, command) = run_deployment(&env, NAMESPACE).await;
    assert_eq!(command.env_value("LOG_FORMAT"), Some("json"));

    // A CA in a Secret, and a webhook configuration that asks for it: injected.
    let ca = ca_secret(&admin, NAMESPACE).await;
    annotated_configuration(&admin, "helm-installed", &format!("{NAMESPACE}/ca")).await;
    let bundle = injected(&admin, "helm-installed", Duration::from_secs(30)).await;
    let Some(bundle) = bundle else {
        panic!(
            "not injected with the chart's RBAC:\n{}",
            injector.log_tails(30)
        );
    };
    assert_eq!(bundle.trim(), ca.trim());
    let logs = injector.log_tails(200);
    assert!(!logs.contains("forbidden"), "{logs}");
    drop(injector);

    chart.uninstall(RELEASE, NAMESPACE).unwrap();
    assert_eq!(chart.existing(&manifest).unwrap(), Vec::<String>::new());
    // The binding is gone with the release: the ServiceAccount may no longer read Secrets.
    let mut config = env.config().clone();
    config.auth_info.impersonate = Some(command.service_account.clone());
    let as_account = Client::try_from(config).unwrap();
    let denied = Api::<Secret>::all(as_account)
        .list_metadata(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.code == 403),
        "{denied}"
    );
    println!("install, injection, uninstall in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_scoped_to_a_namespace_reads_its_secrets_through_a_role() {
    let helm = Helm::ensure().unwrap();
    let env = TestEnv::start().await.unwrap();
    let started = Instant::now();
    let admin = env.client().unwrap();
    create_namespaces(&env, &["team-a", "team-b"]).await;
    let chart = Chart::new(&helm, &env, CHART);
    let manifest = chart
        .install(RELEASE, "injector", &["namespaces={team-a}"])
        .unwrap();
    assert_eq!(
        chart.existing(&manifest).unwrap().len(),
        manifest.object_count()
    );
    let (injector, command) = run_deployment(&env, "injector").await;
    assert!(command.args.iter().any(|a| a == "--namespace=team-a"));

    // The Role in team-a is enough to inject from there...
    let ca = ca_secret(&admin, "team-a").await;
    let other = ca_secret(&admin, "team-b").await;
    annotated_configuration(&admin, "from-team-a", "team-a/ca").await;
    let bundle = injected(&admin, "from-team-a", Duration::from_secs(30)).await;
    let Some(bundle) = bundle else {
        panic!(
            "not injected with the chart's Role:\n{}",
            injector.log_tails(30)
        );
    };
    assert_eq!(bundle.trim(), ca.trim());
    // ...and nothing is read from team-b, where the ServiceAccount has no right.
    annotated_configuration(&admin, "from-team-b", "team-b/ca").await;
    assert_eq!(
        injected(&admin, "from-team-b", Duration::from_secs(2)).await,
        None,
        "injected {other} from outside the scope"
    );
    let mut config = env.config().clone();
    config.auth_info.impersonate = Some(command.service_account.clone());
    let denied = Api::<Secret>::namespaced(Client::try_from(config).unwrap(), "team-b")
        .get("ca")
        .await
        .unwrap_err();
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.code == 403),
        "{denied}"
    );
    let logs = injector.log_tails(200);
    assert!(!logs.contains("forbidden"), "{logs}");
    drop(injector);

    chart.uninstall(RELEASE, "injector").unwrap();
    assert_eq!(chart.existing(&manifest).unwrap(), Vec::<String>::new());
    println!(
        "install (one namespace), injection, uninstall in {:?}",
        started.elapsed()
    );
}

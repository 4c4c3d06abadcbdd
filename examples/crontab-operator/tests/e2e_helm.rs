//! The Helm chart `deploy/helm/crontab-operator` on a test control plane, with `helm` built
//! from its Go module (stackable-testenv's `helm`): `helm lint` and `helm template` of each
//! mode checked with a server-side dry run, then `helm install` in both modes. There is no
//! kubelet, so the Deployment's command line (arguments, environment) runs the real binary as
//! the chart's ServiceAccount (impersonated) behind a forwarder that plays the Service: it
//! becomes ready (its CA in the CRD's caBundle), CronTabs are converted through the API
//! server and the elected leader renders their ConfigMaps, so the chart's RBAC is enough for
//! the mode. `helm uninstall` removes the release and keeps the CRD.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use crontab_operator::{CRD_NAME, controller::config_map_name, v1, v1beta1};
use k8s_openapi::{
    api::{coordination::v1::Lease, core::v1::ConfigMap},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use stackable_testenv::{
    TestEnv,
    forwarder::Forwarder,
    helm::{
        Helm,
        release::{Chart, ContainerCommand, Listen, Manifest, sorted_names},
    },
    replicas::Replicas,
};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/crontab-operator");
const RELEASE: &str = "crontab-operator";
const NAMESPACE: &str = "crontab-operator";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:crontab-operator:crontab-operator";

/// What the chart renders in every mode.
const RELEASE_OBJECTS: [&str; 8] = [
    "serviceaccount/crontab-operator",
    "role.rbac.authorization.k8s.io/crontab-operator",
    "rolebinding.rbac.authorization.k8s.io/crontab-operator",
    "clusterrole.rbac.authorization.k8s.io/crontab-operator",
    "clusterrolebinding.rbac.authorization.k8s.io/crontab-operator",
    "service/crontab-operator",
    "deployment.apps/crontab-operator",
    "poddisruptionbudget.policy/crontab-operator",
];
const CRD: &str = "customresourcedefinition.apiextensions.k8s.io/crontabs.example.com";

/// The ClusterRole of a rendered manifest (the text between its `kind:` and the next object).
fn cluster_role(manifest: &str) -> &str {
    let start = manifest.find("kind: ClusterRole\n").unwrap();
    let rest = &manifest[start..];
    &rest[..rest.find("\n---").unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_lints_and_renders_what_the_api_server_accepts_in_each_mode() {
    let helm = Helm::ensure().unwrap();
    let env = TestEnv::start().await.unwrap();
    let started = Instant::now();
    let chart = Chart::new(&helm, &env, CHART);
    env.create_namespace_named(NAMESPACE).await.unwrap();

    let with_crd = sorted_names(&[&RELEASE_OBJECTS[..], &[CRD]].concat());
    let cases: [(&str, &[&str], Vec<String>); 4] = [
        ("defaults (inject)", &[], with_crd.clone()),
        (
            "install: the operator applies the CRD",
            &["caBundleMode=install"],
            sorted_names(&RELEASE_OBJECTS),
        ),
        (
            "inject, CRD applied elsewhere",
            &["crd.enabled=false"],
            sorted_names(&RELEASE_OBJECTS),
        ),
        (
            "webhook only, no controller, one replica",
            &["controller=false", "replicaCount=1"],
            with_crd,
        ),
    ];
    for (case, sets, expected) in cases {
        let lint = chart.lint(sets).unwrap();
        assert!(lint.contains("0 chart(s) failed"), "{case}: {lint}");
        let objects = chart.dry_run(RELEASE, NAMESPACE, sets).unwrap();
        assert_eq!(objects, expected, "{case}");
    }

    // The RBAC follows the mode: `create` on the CRD only when the operator installs it, and
    // no rule for the controller when it does not run.
    let inject = chart.template(RELEASE, NAMESPACE, &[]).unwrap();
    assert!(!cluster_role(&inject).contains("\"create\"]"));
    assert!(inject.contains("name: INJECT_CA_BUNDLE"));
    assert!(inject.contains("helm.sh/resource-policy: keep"));
    let install = chart
        .template(RELEASE, NAMESPACE, &["caBundleMode=install"])
        .unwrap();
    assert!(
        cluster_role(&install).contains("\"patch\", \"create\"]"),
        "{}",
        cluster_role(&install)
    );
    assert!(install.contains("name: INSTALL_CRD") && !install.contains("INJECT_CA_BUNDLE"));
    let webhook_only = chart
        .template(RELEASE, NAMESPACE, &["controller=false"])
        .unwrap();
    assert!(!webhook_only.contains("crontabs/status") && !webhook_only.contains("leases"));
    // The CRD's conversion webhook calls the release's Service.
    let renamed = chart
        .template("nightly", NAMESPACE, &["service.port=9443"])
        .unwrap();
    assert!(
        renamed.contains("name: nightly-crontab-operator\n          namespace: crontab-operator\n          path: /convert\n          port: 9443"),
        "{renamed}"
    );

    let error = chart
        .template(RELEASE, NAMESPACE, &["caBundleMode=olm"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("caBundleMode"), "{error}");
    println!(
        "lint, template and dry run of 4 cases in {:?}",
        started.elapsed()
    );
}

/// Installs the chart with `sets` (and the Service port of a forwarder), runs the
/// Deployment's command line as its ServiceAccount behind that forwarder, waits until it is
/// ready, and shows it at work: a CronTab created as v1beta1 (the storage version) is read as
/// v1 through the conversion webhook, and its ConfigMap is rendered by the leader.
async fn install_and_run(
    env: &TestEnv,
    chart: &Chart<'_>,
    sets: &[&str],
) -> (Replicas, ContainerCommand, Manifest) {
    let client = env.client().unwrap();
    let forwarder = Forwarder::kube_proxy().await.unwrap();
    let manifest = chart
        .install_served_locally(RELEASE, NAMESPACE, sets, forwarder.local_addr().port())
        .await
        .unwrap();

    let command = ContainerCommand::of_deployment(env, NAMESPACE, RELEASE)
        .await
        .unwrap();
    assert_eq!(command.service_account, SERVICE_ACCOUNT);
    assert_eq!(command.replica_count, 2);
    assert_eq!(command.pod_name_env, ["POD_NAME"]);
    let replicas = command
        .replicas(
            env,
            env!("CARGO_BIN_EXE_crontab-operator"),
            &[("bind", Listen::Https), ("health-bind", Listen::Health)],
        )
        .unwrap()
        .name_prefix("crontab-operator")
        .behind(&forwarder)
        .readiness_path("/readyz")
        .start_ready(command.replica_count, Duration::from_secs(60))
        .await
        .unwrap();

    // Conversion through the API server: stored as v1beta1, read as v1.
    let v1beta1_api: Api<v1beta1::CronTab> = Api::namespaced(client.clone(), NAMESPACE);
    v1beta1_api
        .create(
            &PostParams::default(),
            &v1beta1::CronTab {
                metadata: ObjectMeta {
                    name: Some("nightly".to_owned()),
                    namespace: Some(NAMESPACE.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: v1beta1::CronTabSpec {
                    cron_spec: "0 3 * * *".into(),
                    image: "busybox:1".into(),
                    replicas: None,
                    host_port: "db.example.com:5432".into(),
                },
                status: None,
            },
        )
        .await
        .unwrap();
    let nightly = Api::<v1::CronTab>::namespaced(client.clone(), NAMESPACE)
        .get("nightly")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", replicas.log_tails(40)));
    assert_eq!(
        (nightly.spec.host.as_str(), nightly.spec.port),
        ("db.example.com", 5432)
    );

    // The controller (leader election on its Lease, CronTabs watched as v1, ConfigMaps).
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(30);
    while config_maps
        .get_opt(&config_map_name("nightly"))
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "no ConfigMap rendered with the chart's RBAC:\n{}",
            replicas.log_tails(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One of the two replicas holds the Lease, under its own Pod name.
    let lease = Api::<Lease>::namespaced(client.clone(), NAMESPACE)
        .get("crontab-operator-controller")
        .await
        .unwrap();
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(
        ["crontab-operator-0", "crontab-operator-1"].contains(&holder.as_str()),
        "{holder}"
    );
    let logs = replicas.log_tails(400);
    assert!(!logs.contains("forbidden"), "{logs}");
    drop(forwarder);
    (replicas, command, manifest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_inject_mode_runs_the_operator_as_its_service_account() {
    let helm = Helm::ensure().unwrap();
    let env = TestEnv::start().await.unwrap();
    let started = Instant::now();
    let chart = Chart::new(&helm, &env, CHART);
    let crds: Api<CustomResourceDefinition> = Api::all(env.client().unwrap());
    let (replicas, command, manifest) = install_and_run(&env, &chart, &[]).await;
    assert_eq!(command.env_value("INJECT_CA_BUNDLE"), Some("true"));
    // The chart applied the CRD; the operator only wrote its caBundle.
    let crd = crds.get(CRD_NAME).await.unwrap();
    let managers: Vec<String> = crd
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "helm"), "{managers:?}");
    // An upgrade (Helm 4 applies server-side) leaves the bundle alone: the chart has no
    // caBundle, so helm owns no such field.
    let bundle = |crd: &CustomResourceDefinition| {
        crd.spec
            .conversion
            .as_ref()
            .and_then(|c| c.webhook.as_ref())
            .and_then(|w| w.client_config.as_ref())
            .and_then(|c| c.ca_bundle.clone())
    };
    let injected = bundle(&crd);
    assert!(injected.is_some());
    chart
        .upgrade(RELEASE, NAMESPACE, &["logging.level=debug"])
        .unwrap();
    let upgraded = crds.get(CRD_NAME).await.unwrap();
    assert_eq!(bundle(&upgraded), injected);
    let upgraded = ContainerCommand::of_deployment(&env, NAMESPACE, RELEASE)
        .await
        .unwrap();
    assert_eq!(upgraded.env_value("RUST_LOG"), Some("debug"));
    drop(replicas);

    chart.uninstall(RELEASE, NAMESPACE).unwrap();
    // The CRD stays (helm.sh/resource-policy: keep), and with it the CronTabs.
    assert_eq!(chart.existing(&manifest).unwrap(), [CRD]);
    println!(
        "install (inject), conversion, controller, uninstall in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_install_mode_lets_the_operator_apply_its_crd() {
    let helm = Helm::ensure().unwrap();
    let env = TestEnv::start().await.unwrap();
    let started = Instant::now();
    let chart = Chart::new(&helm, &env, CHART);
    let crds: Api<CustomResourceDefinition> = Api::all(env.client().unwrap());
    let (replicas, command, manifest) =
        install_and_run(&env, &chart, &["caBundleMode=install"]).await;
    assert_eq!(command.env_value("INSTALL_CRD"), Some("true"));
    // The operator applied the CRD itself (the chart rendered none).
    let crd = crds.get(CRD_NAME).await.unwrap();
    let managers: Vec<String> = crd
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "crontab-operator"),
        "{managers:?}"
    );
    assert!(!managers.iter().any(|m| m == "helm"), "{managers:?}");
    drop(replicas);

    chart.uninstall(RELEASE, NAMESPACE).unwrap();
    assert_eq!(chart.existing(&manifest).unwrap(), Vec::<String>::new());
    // The CRD the operator applied is not the release's: it stays.
    assert!(crds.get_opt(CRD_NAME).await.unwrap().is_some());
    println!(
        "install (install), conversion, controller, uninstall in {:?}",
        started.elapsed()
    );
}

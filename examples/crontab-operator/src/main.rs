//! The CronTab operator binary: serves the CronTab conversion webhook over HTTPS on every
//! replica, runs the CronTab controller on the elected leader, and serves `/livez`, `/readyz`
//! and `/metrics` over HTTP. This `main` is the template for an operator: it only wires things
//! (see `operator::run` for the order of start and shutdown).
//!
//! Every replica shares one CA through a Secret and serves a leaf of its own; with
//! `--inject-ca-bundle` the CA bundle is kept in the CRD's `caBundle`, and a replica reports
//! ready only while its leaf's CA is there. On SIGTERM the controller stops first, then
//! `/readyz` turns 503, connections are still accepted for `--drain-period`, then in-flight
//! requests get a grace period.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use clap::Parser;
use crontab_operator::{
    controller::ControllerMetrics,
    operator,
    server::{self, ServerOptions, webhook_server},
};
use snafu::{ResultExt, Snafu};
use stackable_cainject::{Installed, ServingCertificates, ServingCertificatesArgs, Target};
use stackable_certs::LeafOptions;
use stackable_conversion::WebhookTarget;
use stackable_runtime::Election;
use stackable_telemetry::{LogArgs, Telemetry};
use stackable_webhook::Limits;

/// The Secret holding the shared CA when `--ca-secret` is not given.
const DEFAULT_CA_SECRET: &str = "crontab-operator-webhook-ca";

/// Serves the CronTab conversion webhook.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// HTTPS address of the conversion webhook.
    #[arg(long, env = "BIND_ADDRESS", default_value = "0.0.0.0:8443")]
    bind: SocketAddr,
    /// Plain-HTTP address of /livez, /readyz and /metrics.
    #[arg(long, env = "HEALTH_BIND_ADDRESS", default_value = "0.0.0.0:8080")]
    health_bind: SocketAddr,
    /// Name of the Service in front of this operator (goes into the certificate).
    #[arg(long, env = "SERVICE_NAME", default_value = "crontab-operator")]
    service_name: String,
    /// Namespace of that Service and of the CA Secret (the Pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "crontab-operator")]
    namespace: String,
    /// Extra IP addresses for the certificate (e.g. when the API server calls a URL).
    #[arg(long = "ip-address")]
    ip_addresses: Vec<IpAddr>,
    /// Keep the CA bundle in the `caBundle` of the CRD `crontabs.example.com` in-process
    /// (stackable-cainject), instead of leaving it to an external injector (which can read
    /// `ca.crt` of the CA Secret). Needs RBAC `get`, `watch`, `patch` on that CRD.
    #[arg(long, env = "INJECT_CA_BUNDLE")]
    inject_ca_bundle: bool,
    /// Install the CRD `crontabs.example.com` itself (server-side apply, field manager
    /// `crontab-operator`) with the caBundle in the first write, and keep it in step; implies
    /// `--inject-ca-bundle`. Needs RBAC `create`, `patch` on that CRD; when RBAC forbids it,
    /// the operator only injects into the CRD applied from `deploy/crds/`.
    #[arg(long, env = "INSTALL_CRD")]
    install_crd: bool,
    /// The port of the Service in front of the webhook, for the CRD's `clientConfig` (with
    /// `--install-crd`).
    #[arg(long, env = "WEBHOOK_SERVICE_PORT", default_value_t = 443)]
    webhook_service_port: u16,
    /// Keep the CA in this process's memory instead of the shared Secret: for one process
    /// only (a demo, a test); two processes would fight over the caBundle.
    #[arg(long, env = "SINGLE_PROCESS")]
    single_process: bool,
    /// How long `/readyz` answers 503 after SIGTERM while connections are still accepted.
    #[arg(long, env = "DRAIN_PERIOD", value_parser = humantime::parse_duration, default_value = "5s")]
    drain_period: Duration,
    /// Run the CronTab controller (on the elected leader only).
    #[arg(long, env = "CONTROLLER", default_value_t = true, action = clap::ArgAction::Set)]
    controller: bool,
    /// This replica's identity in the leader election (the Pod name).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// How long the leader Lease holds without renewal: a new leader takes over at most this
    /// (plus a third of it) after the leader died.
    #[arg(long, env = "LEASE_DURATION", value_parser = humantime::parse_duration, default_value = "15s")]
    lease_duration: Duration,
    #[command(flatten)]
    certificates: ServingCertificatesArgs,
    #[command(flatten)]
    log: LogArgs,
}

/// Why the operator stopped.
#[derive(Debug, Snafu)]
enum Error {
    /// Logging could not be set up.
    #[snafu(display("cannot set up logging"))]
    Telemetry { source: stackable_telemetry::Error },
    /// Setting up the server failed.
    #[snafu(display("could not set up the webhook server"))]
    Setup { source: server::Error },
    /// The CRD could not be built (a programming error).
    #[snafu(display("the CronTab CRD is invalid"))]
    Crd {
        source: stackable_conversion::CrdError,
    },
    /// No Kubernetes client could be configured (KUBECONFIG or in-cluster).
    #[snafu(display("could not configure a Kubernetes client (KUBECONFIG or in-cluster)"))]
    KubeClient { source: kube::Error },
    /// The operator failed.
    #[snafu(display("the operator failed"))]
    Operator { source: operator::Error },
}

#[snafu::report]
#[tokio::main]
async fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let _telemetry = Telemetry::from_args("crontab-operator", &cli.log)
        .init()
        .context(TelemetrySnafu)?;
    let leaf = cli.ip_addresses.iter().fold(
        LeafOptions::for_service(&cli.service_name, &cli.namespace),
        |leaf, ip| leaf.ip_address(*ip),
    );
    let client = kube::Client::try_default().await.context(KubeClientSnafu)?;
    let ca_secret = cli.certificates.ca_secret_or(DEFAULT_CA_SECRET);
    let mut certificates = if cli.single_process {
        ServingCertificates::single_process(client.clone(), leaf)
    } else {
        ServingCertificates::shared(client.clone(), &cli.namespace, ca_secret, leaf)
    }
    .policy(cli.certificates.policy())
    .field_manager("crontab-operator");
    if cli.install_crd {
        let target = WebhookTarget::service(&cli.service_name, &cli.namespace)
            .path(crontab_operator::crd::CONVERT_PATH)
            .port(i32::from(cli.webhook_service_port));
        let crd = crontab_operator::crd(target).context(CrdSnafu)?;
        certificates = certificates.install([Installed::crd(&crd)]);
    } else if cli.inject_ca_bundle {
        certificates = certificates.inject_into([Target::crd(crontab_operator::CRD_NAME)]);
    }
    let mut options = ServerOptions::in_memory(
        cli.bind,
        &cli.service_name,
        &cli.namespace,
        &cli.ip_addresses,
    );
    options.health_bind = Some(cli.health_bind);
    options.certificates = certificates.into();
    options.limits = Limits {
        drain_period: cli.drain_period,
        ..Limits::default()
    };
    // The operator handles signals: the controller stops before the webhook drains.
    options.handle_signals = false;
    let server = webhook_server(options).context(SetupSnafu)?;
    let metrics = ControllerMetrics::default();
    metrics.register(server.metrics());
    // Whether this replica leads, and whether its controller's caches are synced: a gauge,
    // not a readiness check. The controller lists CronTabs as v1, which the API server converts
    // by calling this webhook through the Service, and the Service only routes to ready Pods:
    // a leader that waited for its caches before reporting ready would never sync as the only
    // replica (see operator::run).
    let synced = Arc::new(tokio::sync::watch::channel(false).0);
    let leading = Arc::new(tokio::sync::watch::channel(false).0);
    let election = cli.controller.then(|| Election {
        namespace: cli.namespace.clone(),
        name: "crontab-operator-controller".to_owned(),
        identity: cli
            .pod_name
            .clone()
            .unwrap_or_else(|| format!("crontab-operator-{}", std::process::id())),
        duration: cli.lease_duration,
    });
    tracing::info!(
        service = %format!("{}.{}", cli.service_name, cli.namespace),
        ca_secret = %if cli.single_process { "(in memory)" } else { ca_secret },
        inject_ca_bundle = cli.inject_ca_bundle,
        install_crd = cli.install_crd,
        controller = cli.controller,
        "starting the CronTab operator"
    );
    operator::run(client, server, election, metrics, synced, leading)
        .await
        .context(OperatorSnafu)
}

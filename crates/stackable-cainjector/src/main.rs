//! `stackable-cainjector`: the standalone caBundle injector (see the crate README).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use kube::runtime::events::Reporter;
use snafu::{ResultExt, Snafu};
use stackable_cainjector::{
    ApiServerCa, Config, Metrics, ServiceCa, annotations::ObjectKey, controller,
};
use stackable_runtime::{Endpoint, Readiness};
use stackable_telemetry::{LogArgs, Telemetry};

/// Where a Pod's service account CA is mounted (the kubelet updates it when the cluster CA
/// rotates).
const IN_CLUSTER_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// Injects caBundle into objects annotated for cert-manager's cainjector or OpenShift's
/// service CA operator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Server-side apply field manager.
    #[arg(
        long,
        env = "CAINJECTOR_FIELD_MANAGER",
        default_value = "stackable-cainjector"
    )]
    field_manager: String,

    /// Namespace whose Secrets, ConfigMaps and Certificates are watched (repeatable or
    /// comma-separated); all namespaces when absent.
    #[arg(
        long = "namespace",
        env = "CAINJECTOR_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,

    /// `<namespace>/<secret>` whose `ca.crt` is injected for
    /// `service.beta.openshift.io/inject-cabundle`. Without it (or
    /// `--service-ca-from-api-server`) that annotation is refused.
    #[arg(long, env = "CAINJECTOR_SERVICE_CA_SECRET")]
    service_ca_secret: Option<String>,

    /// Inject the API server CA for `service.beta.openshift.io/inject-cabundle`.
    #[arg(
        long,
        env = "CAINJECTOR_SERVICE_CA_FROM_API_SERVER",
        conflicts_with = "service_ca_secret"
    )]
    service_ca_from_api_server: bool,

    /// Also inject into ConfigMaps (`data["service-ca.crt"]`). Needs the RBAC of
    /// `deploy/rbac-configmaps.yaml`. A ConfigMap only gets a CA from its own namespace.
    #[arg(long, env = "CAINJECTOR_CONFIG_MAPS")]
    config_maps: bool,

    /// Every target is checked again this often (with jitter), even without a change.
    #[arg(long, env = "CAINJECTOR_RESYNC_PERIOD", value_parser = humantime::parse_duration, default_value = "10m")]
    resync_period: Duration,

    /// How long a certificate that left its source stays in the injected bundle (so Pods
    /// still serving a certificate it signed stay trusted until their volume refreshes); 0
    /// replaces the bundle at once.
    #[arg(long, env = "CAINJECTOR_GRACE_PERIOD", value_parser = humantime::parse_duration, default_value = "1h")]
    grace_period: Duration,

    /// Reconciliations running at once.
    #[arg(long, env = "CAINJECTOR_CONCURRENCY", default_value_t = 4)]
    concurrency: u16,

    /// The API server CA file for `cert-manager.io/inject-apiserver-ca` (re-read when it
    /// changes). Default: the service account's CA in a Pod, else the kubeconfig's CA.
    #[arg(long, env = "CAINJECTOR_API_SERVER_CA_FILE")]
    api_server_ca_file: Option<PathBuf>,

    /// Address of the metrics endpoint (`GET /metrics`); empty disables it.
    #[arg(
        long,
        env = "CAINJECTOR_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    metrics_address: String,

    /// Instance name in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,

    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Snafu)]
enum Error {
    #[snafu(display("cannot set up logging"))]
    Telemetry { source: stackable_telemetry::Error },

    #[snafu(display("--service-ca-secret {value:?} is not <namespace>/<name>"))]
    ServiceCaSecret { value: String },

    #[snafu(display("--metrics-address {value:?} is not host:port"))]
    MetricsAddress {
        value: String,
        source: std::net::AddrParseError,
    },

    #[snafu(display("cannot load a kubeconfig or in-cluster configuration"))]
    KubeConfig {
        source: kube::config::InferConfigError,
    },

    #[snafu(display("cannot build a Kubernetes client"))]
    KubeClient { source: kube::Error },

    #[snafu(display("the controller stopped"))]
    Controller { source: controller::Error },

    #[snafu(display("cannot start the metrics endpoint"))]
    Metrics {
        source: stackable_runtime::endpoint::Error,
    },
}

#[tokio::main]
#[snafu::report]
async fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    let _telemetry = Telemetry::from_args("stackable-cainjector", &cli.log)
        .init()
        .context(TelemetrySnafu)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        namespaces = ?cli.namespaces,
        config_maps = cli.config_maps,
        "starting stackable-cainjector"
    );

    let service_ca = match &cli.service_ca_secret {
        None if cli.service_ca_from_api_server => ServiceCa::ApiServerCa,
        None => ServiceCa::None,
        Some(value) => match value.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                ServiceCa::Secret(ObjectKey::new(ns, name))
            }
            _ => return ServiceCaSecretSnafu { value }.fail(),
        },
    };

    let kube_config = kube::Config::infer().await.context(KubeConfigSnafu)?;
    let in_cluster = PathBuf::from(IN_CLUSTER_CA);
    let api_server_ca = match (&cli.api_server_ca_file, &kube_config.root_cert) {
        (Some(path), _) => ApiServerCa::File(path.clone()),
        (None, _) if in_cluster.exists() => ApiServerCa::File(in_cluster),
        (None, Some(der)) => ApiServerCa::Pem(stackable_certs::CaBundle::der_to_pem(der)),
        (None, None) => ApiServerCa::Unknown,
    };
    let client = kube::Client::try_from(kube_config).context(KubeClientSnafu)?;

    let metrics = Metrics::new();
    if !cli.metrics_address.is_empty() {
        let address: SocketAddr = cli.metrics_address.parse().context(MetricsAddressSnafu {
            value: cli.metrics_address.clone(),
        })?;
        // Nothing makes the injector unready once it runs: `/readyz` is always ok.
        let endpoint = Endpoint::bind(address, metrics.registry(), Readiness::new(true))
            .await
            .context(MetricsSnafu)?;
        tokio::spawn(endpoint.serve());
    }

    let mut config = Config::new(
        cli.field_manager,
        Reporter {
            controller: "stackable-cainjector".to_owned(),
            instance: cli.pod_name,
        },
    );
    config.namespaces = cli.namespaces;
    config.api_server_ca = api_server_ca;
    config.service_ca = service_ca;
    config.config_maps = cli.config_maps;
    config.resync_period = cli.resync_period;
    config.concurrency = cli.concurrency;
    config.grace_period = cli.grace_period;
    tokio::select! {
        result = controller::run(client, config, metrics) => result.context(ControllerSnafu),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted, stopping");
            Ok(())
        }
    }
}

//! `stackable-cainjector`: the standalone caBundle injector (see the crate README).

use std::net::SocketAddr;

use clap::Parser;
use kube::runtime::events::Reporter;
use snafu::{ResultExt, Snafu};
use stackable_cainject::annotations::ObjectKey;
use stackable_cainjector::{Config, Metrics, ServiceCa, controller};
use tracing_subscriber::EnvFilter;

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
    /// `service.beta.openshift.io/inject-cabundle`; the API server CA when absent.
    #[arg(long, env = "CAINJECTOR_SERVICE_CA_SECRET")]
    service_ca_secret: Option<String>,

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
}

#[derive(Debug, Snafu)]
enum Error {
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
}

#[tokio::main]
#[snafu::report]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();

    let service_ca = match &cli.service_ca_secret {
        None => ServiceCa::ApiServerCa,
        Some(value) => match value.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                ServiceCa::Secret(ObjectKey::new(ns, name))
            }
            _ => return ServiceCaSecretSnafu { value }.fail(),
        },
    };

    let kube_config = kube::Config::infer().await.context(KubeConfigSnafu)?;
    let api_server_ca = kube_config.root_cert.as_deref().map(controller::der_to_pem);
    let client = kube::Client::try_from(kube_config).context(KubeClientSnafu)?;

    let metrics = Metrics::new();
    if !cli.metrics_address.is_empty() {
        let address: SocketAddr = cli.metrics_address.parse().context(MetricsAddressSnafu {
            value: cli.metrics_address.clone(),
        })?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(error) = metrics.serve(address).await {
                tracing::error!(%error, "the metrics endpoint stopped");
            }
        });
    }

    let config = Config {
        field_manager: cli.field_manager,
        namespaces: cli.namespaces,
        api_server_ca,
        service_ca,
        reporter: Reporter {
            controller: "stackable-cainjector".to_owned(),
            instance: cli.pod_name,
        },
    };
    tokio::select! {
        result = controller::run(client, config, metrics) => result.context(ControllerSnafu),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted, stopping");
            Ok(())
        }
    }
}

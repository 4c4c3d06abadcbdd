//! The CronTab operator binary: serves the CronTab conversion webhook over HTTPS with
//! certificates it generates and rotates itself, and `/livez`, `/readyz`, `/metrics` over HTTP.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use crontab_operator::server::{self, ServerOptions, webhook_server};
use snafu::{ResultExt, Snafu};
use stackable_cainject::{CaInjector, InjectionStatus, Target};
use stackable_certs::{
    LeafOptions,
    rotation::{RotationDriver, RotationPolicy},
};
use stackable_webhook::CertSource;
use tracing_subscriber::EnvFilter;

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
    /// Namespace of that Service (the Pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "crontab-operator")]
    namespace: String,
    /// Extra IP addresses for the certificate (e.g. when the API server calls a URL).
    #[arg(long = "ip-address")]
    ip_addresses: Vec<IpAddr>,
    /// Inject the CA bundle into the CRD `crontabs.example.com` in-process (stackable-cainject),
    /// instead of leaving it to an external injector. Needs RBAC `patch` on that CRD.
    #[arg(long, env = "INJECT_CA_BUNDLE")]
    inject_ca_bundle: bool,
}

/// Why the operator stopped.
#[derive(Debug, Snafu)]
enum Error {
    /// Setting up the server failed.
    #[snafu(display("could not set up the webhook server"))]
    Setup { source: server::Error },
    /// Generating the certificates failed.
    #[snafu(display("could not generate the serving certificates"))]
    Certificates {
        source: stackable_certs::rotation::Error,
    },
    /// No Kubernetes client could be configured (KUBECONFIG or in-cluster).
    #[snafu(display("could not configure a Kubernetes client for CA injection"))]
    KubeClient { source: kube::Error },
    /// Serving failed.
    #[snafu(display("the webhook server failed"))]
    Serve {
        source: stackable_webhook::ServerError,
    },
}

#[snafu::report]
#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let mut options = ServerOptions::generated(
        cli.bind,
        &cli.service_name,
        &cli.namespace,
        &cli.ip_addresses,
    );
    options.health_bind = Some(cli.health_bind);
    let mut injector = None;
    if cli.inject_ca_bundle {
        // One rotation driver feeds both the server (serving certificate) and the injector
        // (the CRD's caBundle), so a CA rotation reaches both from the same event.
        let leaf = cli.ip_addresses.iter().fold(
            LeafOptions::for_service(&cli.service_name, &cli.namespace),
            |leaf, ip| leaf.ip_address(*ip),
        );
        let rotation = RotationDriver::new(RotationPolicy::default(), leaf)
            .start()
            .await
            .context(CertificatesSnafu)?;
        let client = kube::Client::try_default().await.context(KubeClientSnafu)?;
        let handle = CaInjector::new(
            client,
            "crontab-operator",
            [Target::crd(crontab_operator::CRD_NAME)],
        )
        .start(rotation.subscribe());
        options.certificates = CertSource::Rotation(rotation);
        injector = Some(handle);
    }
    let running = webhook_server(options)
        .context(SetupSnafu)?
        .start()
        .await
        .context(ServeSnafu)?;
    tracing::info!(
        address = %running.local_addr(),
        health = ?running.health_addr(),
        service = %format!("{}.{}", cli.service_name, cli.namespace),
        inject_ca_bundle = cli.inject_ca_bundle,
        "serving CronTab conversions"
    );
    if let Some(handle) = &injector {
        let mut status = handle.status();
        tokio::spawn(async move {
            if status.wait_for(InjectionStatus::is_ready).await.is_ok() {
                tracing::info!("caBundle injected into the CRD");
            }
        });
    }
    let result = running.wait().await.context(ServeSnafu);
    // The injector stops with the server (dropping its handle stops it).
    drop(injector);
    result
}

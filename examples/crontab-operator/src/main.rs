//! The CronTab operator binary: serves the CronTab conversion webhook over HTTPS with
//! certificates it generates and rotates itself, and `/livez`, `/readyz`, `/metrics` over HTTP.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use crontab_operator::server::{self, ServerOptions, webhook_server};
use snafu::{ResultExt, Snafu};
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
}

/// Why the operator stopped.
#[derive(Debug, Snafu)]
enum Error {
    /// Setting up the server failed.
    #[snafu(display("could not set up the webhook server"))]
    Setup { source: server::Error },
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
    let running = webhook_server(options)
        .context(SetupSnafu)?
        .start()
        .await
        .context(ServeSnafu)?;
    tracing::info!(
        address = %running.local_addr(),
        health = ?running.health_addr(),
        service = %format!("{}.{}", cli.service_name, cli.namespace),
        "serving CronTab conversions; the CRD's caBundle must be filled by a CA injector"
    );
    running.wait().await.context(ServeSnafu)
}

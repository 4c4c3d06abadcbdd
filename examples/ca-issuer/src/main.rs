//! The CA issuer binary: runs the `CAIssuer` / `ClusterCAIssuer` issuer controllers and the
//! `CertificateRequest` and Kubernetes `CertificateSigningRequest` controllers
//! (stackable-issuer), signing with the CA of each issuer's Secret, on the replica that holds
//! the Lease `ca-issuer` (the others stand by), and serves `/livez`, `/healthz`, `/readyz`
//! and `/metrics` over plain HTTP. `ca-issuer crds` prints the CRDs.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use ca_issuer::{api, signer::CaSigner};
use clap::{Parser, Subcommand};
use prometheus_client::registry::Registry;
use snafu::{ResultExt as _, Snafu};
use stackable_issuer::{Election, Endpoint, IssuerControllers, IssuerMetrics, Readiness};
use stackable_telemetry::{LogArgs, Telemetry};

/// A cert-manager external issuer whose CA lives in a Secret.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The namespace of the Secrets of ClusterCAIssuers (usually the issuer's own namespace).
    #[arg(long, env = "CLUSTER_RESOURCE_NAMESPACE", default_value = "ca-issuer")]
    cluster_resource_namespace: String,
    /// The field manager of status writes and the reporting controller of Events.
    #[arg(long, env = "FIELD_OWNER", default_value = "ca-issuer.stackable.tech")]
    field_owner: String,
    /// How long a request is retried after retryable errors, from its creation.
    #[arg(long, env = "MAX_RETRY_DURATION", value_parser = humantime::parse_duration, default_value = "2m")]
    max_retry_duration: Duration,
    /// How often Ready issuers are checked again (their Secret is not watched); 0 turns it off.
    #[arg(long, env = "RECHECK_INTERVAL", value_parser = humantime::parse_duration, default_value = "1m")]
    recheck_interval: Duration,
    /// Do not sign Kubernetes CertificateSigningRequests.
    #[arg(long)]
    no_kubernetes_csrs: bool,
    /// Plain-HTTP address of /livez, /healthz, /readyz and /metrics.
    #[arg(long, env = "HEALTH_BIND_ADDRESS", default_value = "0.0.0.0:8080")]
    health_bind: SocketAddr,
    /// Run the controllers only while holding the Lease (several replicas, one signs).
    /// `false`: always run them (a single process).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// The Lease's name.
    #[arg(long, env = "LEASE_NAME", default_value = "ca-issuer")]
    lease_name: String,
    /// The Lease's namespace (the Pod's).
    #[arg(long, env = "POD_NAMESPACE", default_value = "ca-issuer")]
    lease_namespace: String,
    /// This replica's identity in the election (the Pod name).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// How long the Lease holds without renewal: another replica takes over at most this (plus
    /// a third of it) after the leader died.
    #[arg(long, env = "LEASE_DURATION", value_parser = humantime::parse_duration, default_value = "15s")]
    lease_duration: Duration,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the CAIssuer and ClusterCAIssuer CRDs as YAML.
    Crds,
}

#[derive(Debug, Snafu)]
enum Error {
    #[snafu(display("cannot render the CRDs"))]
    RenderCrds { source: serde_saphyr::ser::Error },
    #[snafu(display("cannot set up logging"))]
    Telemetry { source: stackable_telemetry::Error },
    #[snafu(display("cannot connect to the Kubernetes API server"))]
    Connect { source: kube::Error },
    #[snafu(display("cannot serve the health and metrics endpoint"))]
    Endpoint {
        source: stackable_runtime::endpoint::Error,
    },
    #[snafu(display("the issuer controllers stopped"))]
    Controllers { source: stackable_issuer::Error },
}

#[tokio::main]
#[snafu::report]
async fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    if let Some(Command::Crds) = cli.command {
        print!("{}", api::crds_yaml().context(RenderCrdsSnafu)?);
        return Ok(());
    }
    let _telemetry = Telemetry::from_args("ca-issuer", &cli.log)
        .init()
        .context(TelemetrySnafu)?;
    let client = kube::Client::try_default().await.context(ConnectSnafu)?;
    let signer = CaSigner::new(client.clone(), cli.cluster_resource_namespace);
    let recheck = (!cli.recheck_interval.is_zero()).then_some(cli.recheck_interval);
    let metrics = IssuerMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let readiness = Readiness::new(false);
    let endpoint = Endpoint::bind(cli.health_bind, Arc::new(registry), readiness.clone())
        .await
        .context(EndpointSnafu)?;
    tokio::spawn(endpoint.serve());
    let mut controllers = IssuerControllers::new(client, signer, cli.field_owner)
        .max_retry_duration(cli.max_retry_duration)
        .recheck_interval(recheck)
        .certificate_signing_requests(!cli.no_kubernetes_csrs)
        .readiness(readiness)
        .metrics(metrics);
    if cli.leader_election {
        controllers = controllers.leader_election(Election {
            namespace: cli.lease_namespace,
            name: cli.lease_name,
            identity: cli
                .pod_name
                .unwrap_or_else(|| format!("ca-issuer-{}", std::process::id())),
            duration: cli.lease_duration,
        });
    }
    controllers
        .run_until(shutdown_signal())
        .await
        .context(ControllersSnafu)
}

/// SIGTERM (the kubelet) or SIGINT: the controllers finish what is in flight and the Lease is
/// released, so that another replica takes over without waiting for it to expire.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut sigterm) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutting down");
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}

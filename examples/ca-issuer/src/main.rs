//! The CA issuer binary: runs the `CAIssuer` / `ClusterCAIssuer` issuer controllers and the
//! `CertificateRequest` and Kubernetes `CertificateSigningRequest` controllers
//! (stackable-issuer), signing with the CA of each issuer's Secret. `ca-issuer crds` prints
//! the CRDs.

use std::time::Duration;

use ca_issuer::{api, signer::CaSigner};
use clap::{Parser, Subcommand};
use snafu::{ResultExt as _, Snafu};
use stackable_issuer::IssuerControllers;
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
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    IssuerControllers::new(client, signer, cli.field_owner)
        .max_retry_duration(cli.max_retry_duration)
        .recheck_interval(recheck)
        .certificate_signing_requests(!cli.no_kubernetes_csrs)
        .run_until(shutdown)
        .await
        .context(ControllersSnafu)
}

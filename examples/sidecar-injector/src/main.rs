//! The sidecar-injector example operator: serves the webhooks of [`sidecar_injector`] over
//! HTTPS with certificates from a cert-manager Secret mount or generated in memory.
//!
//! See <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>
//! and `deploy/` for the manifests.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use sidecar_injector::InjectorConfig;
use snafu::{ResultExt, Snafu};
use stackable_cainject::{CaInjector, InjectionStatus, Target};
use stackable_certs::{
    LeafOptions,
    rotation::{RotationDriver, RotationPolicy},
};
use stackable_webhook::{CertSource, FileSource, Limits, WebhookServer};

#[derive(Debug, Snafu)]
enum Error {
    #[snafu(display("failed to configure the webhook server"))]
    Build {
        source: stackable_webhook::ServerError,
    },

    #[snafu(display("the webhook server failed"))]
    Serve {
        source: stackable_webhook::ServerError,
    },

    #[snafu(display("could not generate the serving certificates"))]
    Certificates {
        source: stackable_certs::rotation::Error,
    },

    #[snafu(display("could not configure a Kubernetes client for CA injection"))]
    KubeClient { source: kube::Error },

    #[snafu(display("failed to write the CA bundle to {}", path.display()))]
    WriteCaBundle {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Command line flags (each can also be set through the environment).
#[derive(Debug, Parser)]
#[command(about, version)]
struct Args {
    /// HTTPS address of the webhooks.
    #[arg(long, env = "BIND", default_value = "0.0.0.0:8443")]
    bind: SocketAddr,

    /// Plain-HTTP address of /livez, /readyz and /metrics (default: served on the HTTPS port).
    #[arg(long, env = "HEALTH_BIND")]
    health_bind: Option<SocketAddr>,

    /// Directory with tls.crt and tls.key (a cert-manager Secret mount). Without it an
    /// in-memory CA and leaf are generated.
    #[arg(long, env = "CERT_DIR")]
    cert_dir: Option<PathBuf>,

    /// Service name for the generated leaf certificate.
    #[arg(long, env = "SERVICE_NAME", default_value = "sidecar-injector")]
    service_name: String,

    /// Namespace for the generated leaf certificate.
    #[arg(long, env = "NAMESPACE", default_value = "default")]
    namespace: String,

    /// Write the generated CA bundle (PEM) here, for the webhook configurations' caBundle.
    #[arg(long, env = "CA_BUNDLE_OUT")]
    ca_bundle_out: Option<PathBuf>,

    /// Image of the injected logging sidecar.
    #[arg(
        long,
        env = "SIDECAR_IMAGE",
        default_value = "docker.io/fluent/fluent-bit:3.2"
    )]
    sidecar_image: String,

    /// Inject the generated CA bundle in-process (stackable-cainject) into the Mutating- and
    /// ValidatingWebhookConfiguration named by `--webhook-configuration`. Needs RBAC `patch`
    /// on both; not possible with `--cert-dir` (whoever writes the files owns the bundle).
    #[arg(long, env = "INJECT_CA_BUNDLE", conflicts_with = "cert_dir")]
    inject_ca_bundle: bool,

    /// Name of both webhook configurations (for `--inject-ca-bundle`).
    #[arg(
        long,
        env = "WEBHOOK_CONFIGURATION",
        default_value = "sidecar-injector"
    )]
    webhook_configuration: String,

    /// Offer HTTP/2 (off by default, see the HTTP/2 Rapid Reset CVEs).
    #[arg(long, env = "HTTP2")]
    http2: bool,
}

#[tokio::main]
#[snafu::report]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let config = InjectorConfig {
        sidecar_image: args.sidecar_image.clone(),
    };

    let leaf = LeafOptions::for_service(args.service_name.as_str(), args.namespace.as_str());
    let mut injector = None;
    let certificates = match &args.cert_dir {
        Some(dir) => CertSource::Files(FileSource::dir(dir)),
        None if args.inject_ca_bundle => {
            // One rotation driver feeds the server and the injector: a CA rotation reaches
            // the serving certificate and both webhook configurations from the same event.
            let rotation = RotationDriver::new(RotationPolicy::default(), leaf)
                .start()
                .await
                .context(CertificatesSnafu)?;
            let client = kube::Client::try_default().await.context(KubeClientSnafu)?;
            let targets = [
                Target::mutating_webhook(args.webhook_configuration.as_str()),
                Target::validating_webhook(args.webhook_configuration.as_str()),
            ];
            injector = Some(
                CaInjector::new(client, "sidecar-injector", targets).start(rotation.subscribe()),
            );
            CertSource::Rotation(rotation)
        }
        None => CertSource::in_memory(leaf),
    };
    let mut builder = WebhookServer::builder()
        .bind(args.bind)
        .http2(args.http2)
        .limits(Limits {
            shutdown_grace: Duration::from_secs(20),
            ..Limits::default()
        })
        .certificates(certificates);
    builder = sidecar_injector::mount(builder, config);
    if let Some(health) = args.health_bind {
        builder = builder.health_bind(health);
    }
    let server = builder
        .build()
        .context(BuildSnafu)?
        .start()
        .await
        .context(ServeSnafu)?;
    if let (Some(path), Some(bundle)) = (&args.ca_bundle_out, server.ca_bundle_pem()) {
        std::fs::write(path, bundle).context(WriteCaBundleSnafu { path: path.clone() })?;
        tracing::info!(path = %path.display(), "wrote the CA bundle");
    }
    if let Some(handle) = &injector {
        let mut status = handle.status();
        tokio::spawn(async move {
            if status.wait_for(InjectionStatus::is_ready).await.is_ok() {
                tracing::info!("caBundle injected into both webhook configurations");
            }
        });
    }
    let result = server.wait().await.context(ServeSnafu);
    // The injector stops with the server (dropping its handle stops it).
    drop(injector);
    result
}

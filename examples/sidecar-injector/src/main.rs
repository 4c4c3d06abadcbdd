//! The sidecar-injector example operator: serves the webhooks of [`sidecar_injector`] over
//! HTTPS with certificates from a cert-manager Secret mount or generated in memory.
//!
//! See <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>
//! and `deploy/` for the manifests.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use sidecar_injector::{CONFIGURATION_NAME, InjectorConfig};
use snafu::{ResultExt, Snafu};
use stackable_cainject::{Installed, ServingCertificates, ServingCertificatesArgs, Target};
use stackable_certs::LeafOptions;
use stackable_telemetry::{LogArgs, Telemetry};
use stackable_webhook::{CertSource, ClientAuth, Endpoint, FileSource, Limits, WebhookServer};

/// The Secret holding the shared CA when `--ca-secret` is not given.
const DEFAULT_CA_SECRET: &str = "sidecar-injector-webhook-ca";

#[derive(Debug, Snafu)]
enum Error {
    #[snafu(display("cannot set up logging"))]
    Telemetry { source: stackable_telemetry::Error },

    #[snafu(display("failed to configure the webhook server"))]
    Build {
        source: stackable_webhook::ServerError,
    },

    #[snafu(display("failed to start the webhook server"))]
    Start {
        source: stackable_webhook::ServerError,
    },

    #[snafu(display("the webhook server failed"))]
    Serve {
        source: stackable_webhook::ServerError,
    },

    #[snafu(display("could not configure a Kubernetes client (KUBECONFIG or in-cluster)"))]
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

    /// Directory with tls.crt and tls.key (a cert-manager Secret mount) instead of the shared
    /// CA Secret; whoever writes the files owns the caBundle.
    #[arg(long, env = "CERT_DIR", conflicts_with_all = ["in_memory", "inject_ca_bundle"])]
    cert_dir: Option<PathBuf>,

    /// A CA in this process's memory, no Kubernetes API access at all: for a local run of one
    /// process (with `--ca-bundle-out`). Replicas share a CA through `--ca-secret` (the
    /// default).
    #[arg(long, env = "IN_MEMORY", conflicts_with = "inject_ca_bundle")]
    in_memory: bool,

    /// Service name for the leaf certificate.
    #[arg(long, env = "SERVICE_NAME", default_value = "sidecar-injector")]
    service_name: String,

    /// Namespace of that Service and of the CA Secret (the Pod's namespace).
    #[arg(long, env = "NAMESPACE", default_value = "default")]
    namespace: String,

    /// Write the CA bundle (PEM) here once it is known, for the webhook configurations'
    /// caBundle (with `--in-memory`).
    #[arg(long, env = "CA_BUNDLE_OUT")]
    ca_bundle_out: Option<PathBuf>,

    /// Image of the injected logging sidecar.
    #[arg(
        long,
        env = "SIDECAR_IMAGE",
        default_value = "docker.io/fluent/fluent-bit:3.2"
    )]
    sidecar_image: String,

    /// Keep the CA bundle in the caBundle of the Mutating- and ValidatingWebhookConfiguration
    /// named by `--webhook-configuration` (stackable-cainject, in-process). Needs RBAC `get`,
    /// `watch`, `patch` on both.
    #[arg(long, env = "INJECT_CA_BUNDLE")]
    inject_ca_bundle: bool,

    /// Install both webhook configurations itself, rendered from the routes' registrations
    /// (server-side apply, field manager `sidecar-injector`) with the caBundle in the first
    /// write, and keep them in step; implies `--inject-ca-bundle`. Needs RBAC `create`,
    /// `patch` on both; when RBAC forbids it, the injector only injects into the
    /// configurations applied from `deploy/webhooks.yaml`.
    #[arg(long, env = "INSTALL_WEBHOOKS", conflicts_with_all = ["cert_dir", "in_memory"])]
    install_webhooks: bool,

    /// Name of both webhook configurations (for `--inject-ca-bundle`, `--install-webhooks`).
    #[arg(
        long,
        env = "WEBHOOK_CONFIGURATION",
        default_value = CONFIGURATION_NAME
    )]
    webhook_configuration: String,

    /// The port of the Service in front of the webhooks, for the configurations' `clientConfig`
    /// (with `--install-webhooks`).
    #[arg(long, env = "WEBHOOK_SERVICE_PORT", default_value_t = 443)]
    webhook_service_port: u16,

    /// Require a client certificate chaining to a CA of this PEM file (the one the API server's
    /// webhook kubeconfig certificate comes from, see the README): callers without one are
    /// refused at the TLS handshake. Re-read when the file changes. Default: no client
    /// certificate asked for.
    #[arg(long, env = "CLIENT_CA_FILE")]
    client_ca_file: Option<PathBuf>,

    /// With `--client-ca-file`, accept only certificates whose subject common name or a DNS
    /// subjectAltName is one of these (comma-separated; default: any certificate of the CA).
    #[arg(
        long,
        env = "CLIENT_ALLOWED_NAMES",
        value_delimiter = ',',
        requires = "client_ca_file"
    )]
    client_allowed_names: Vec<String>,

    /// Offer HTTP/2 (off by default, see the HTTP/2 Rapid Reset CVEs).
    #[arg(long, env = "HTTP2")]
    http2: bool,

    /// How long `/readyz` answers 503 after SIGTERM while connections are still accepted.
    #[arg(long, env = "DRAIN_PERIOD", value_parser = humantime::parse_duration, default_value = "5s")]
    drain_period: Duration,

    #[command(flatten)]
    certificates: ServingCertificatesArgs,

    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
#[snafu::report]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let _telemetry = Telemetry::from_args("sidecar-injector", &args.log)
        .init()
        .context(TelemetrySnafu)?;
    let config = InjectorConfig {
        sidecar_image: args.sidecar_image.clone(),
        namespace: args.namespace.clone(),
    };
    // The routes first: the webhook configurations are rendered from their registrations.
    let mut builder = sidecar_injector::mount(WebhookServer::builder(), config);

    let leaf = LeafOptions::for_service(args.service_name.as_str(), args.namespace.as_str());
    let certificates = match &args.cert_dir {
        Some(dir) => CertSource::Files(FileSource::dir(dir)),
        None if args.in_memory => CertSource::in_memory(leaf),
        None => {
            // Every replica shares the CA in one Secret and serves a leaf of its own; the
            // server reports ready only while that CA is in both configurations' caBundle.
            let client = kube::Client::try_default().await.context(KubeClientSnafu)?;
            let mut shared = ServingCertificates::shared(
                client,
                &args.namespace,
                args.certificates.ca_secret_or(DEFAULT_CA_SECRET),
                leaf,
            )
            .policy(args.certificates.policy())
            .field_manager("sidecar-injector");
            if args.install_webhooks {
                let endpoint = Endpoint::service(&args.service_name, &args.namespace)
                    .port(i32::from(args.webhook_service_port));
                let rendered =
                    builder.admission_configurations(&args.webhook_configuration, &endpoint);
                let mutating = rendered.mutating.iter().map(Installed::mutating_webhook);
                let validating = rendered
                    .validating
                    .iter()
                    .map(Installed::validating_webhook);
                shared = shared.install(mutating.chain(validating));
            } else if args.inject_ca_bundle {
                shared = shared.inject_into([
                    Target::mutating_webhook(args.webhook_configuration.as_str()),
                    Target::validating_webhook(args.webhook_configuration.as_str()),
                ]);
            }
            shared.into()
        }
    };
    builder = builder
        .bind(args.bind)
        .http2(args.http2)
        .limits(Limits {
            shutdown_grace: Duration::from_secs(20),
            drain_period: args.drain_period,
            ..Limits::default()
        })
        .certificates(certificates);
    if let Some(path) = &args.client_ca_file {
        // Loaded by `start`: a missing or unusable file fails it with the path.
        builder = builder.client_auth(
            ClientAuth::ca_file(path).allowed_names(args.client_allowed_names.iter().cloned()),
        );
    }
    if let Some(health) = args.health_bind {
        builder = builder.health_bind(health);
    }
    let server = builder
        .build()
        .context(BuildSnafu)?
        .start()
        .await
        .context(StartSnafu)?;
    if let (Some(path), Some(bundle)) = (&args.ca_bundle_out, server.ca_bundle_pem()) {
        std::fs::write(path, bundle).context(WriteCaBundleSnafu { path: path.clone() })?;
        tracing::info!(path = %path.display(), "wrote the CA bundle");
    }
    server.wait().await.context(ServeSnafu)
}

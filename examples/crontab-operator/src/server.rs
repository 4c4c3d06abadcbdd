//! The conversion webhook server of the CronTab operator: the [`router`](crate::router) mounted
//! on [`CONVERT_PATH`](crate::crd::CONVERT_PATH) of a `stackable-webhook` HTTPS server. The binary
//! shares its CA with every replica through a Secret (`stackable-cainject`'s
//! `ServingCertificates`); tests use an in-memory CA.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#configure-customresourcedefinition-to-use-conversion-webhooks>.

use std::net::SocketAddr;

use snafu::{ResultExt, Snafu};
use stackable_certs::LeafOptions;
use stackable_conversion::BuildError;
use stackable_webhook::{CertSource, Limits, ServerError, WebhookServer};

use crate::crd::CONVERT_PATH;

/// Why the webhook server could not be set up.
#[derive(Debug, Snafu)]
pub enum Error {
    /// The CronTab versions are inconsistent (a programming error).
    #[snafu(display("the CronTab conversion graph is invalid"))]
    Conversion {
        /// What is wrong.
        source: BuildError,
    },
    /// The server could not be built.
    #[snafu(display("the webhook server could not be built"))]
    Build {
        /// What failed.
        source: ServerError,
    },
}

/// Where and how to serve.
#[derive(Debug)]
pub struct ServerOptions {
    /// HTTPS address of the webhook.
    pub bind: SocketAddr,
    /// Plain-HTTP address of `/livez`, `/readyz` and `/metrics` (`None`: on the HTTPS address).
    pub health_bind: Option<SocketAddr>,
    /// Where the serving certificate comes from.
    pub certificates: CertSource,
    /// Stop on SIGTERM/SIGINT (after draining, see [`Limits::drain_period`]).
    pub handle_signals: bool,
    /// Timeouts, body limit, drain period.
    pub limits: Limits,
}

impl ServerOptions {
    /// Certificates in this process's memory for the Service `name.namespace` (and the extra
    /// IPs): for tests and a single process; the binary shares its CA through a Secret.
    pub fn in_memory(
        bind: SocketAddr,
        service_name: &str,
        namespace: &str,
        ip_addresses: &[std::net::IpAddr],
    ) -> Self {
        let leaf = ip_addresses.iter().fold(
            LeafOptions::for_service(service_name, namespace),
            |leaf, ip| leaf.ip_address(*ip),
        );
        Self {
            bind,
            health_bind: None,
            certificates: CertSource::in_memory(leaf),
            handle_signals: true,
            limits: Limits::default(),
        }
    }
}

/// The webhook server, ready to `start()`.
pub fn webhook_server(options: ServerOptions) -> Result<WebhookServer, Error> {
    let router = crate::router().context(ConversionSnafu)?;
    let mut builder = WebhookServer::builder()
        .bind(options.bind)
        .certificates(options.certificates)
        .handle_signals(options.handle_signals)
        .limits(options.limits)
        // With stackable-conversion's `webhook` feature the router is a `Converter` itself.
        .conversion(CONVERT_PATH, router);
    if let Some(health) = options.health_bind {
        builder = builder.health_bind(health);
    }
    builder.build().context(BuildSnafu)
}

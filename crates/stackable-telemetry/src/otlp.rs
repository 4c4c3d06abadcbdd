//! Export of spans over OTLP/HTTP with protobuf
//! (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>), configured by the standard
//! variables (<https://opentelemetry.io/docs/specs/otel/protocol/exporter/>):
//!
//! - on when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   (`/v1/traces` appended) is set, or `OTEL_TRACES_EXPORTER=otlp` (then
//!   `http://localhost:4318/v1/traces`); off with `OTEL_TRACES_EXPORTER=none` or
//!   `OTEL_SDK_DISABLED=true`;
//! - `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, `_TIMEOUT`, `_COMPRESSION` as the spec says;
//!   `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the process;
//! - `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` must be `http/protobuf` (the default) when set:
//!   gRPC is not built in (it would add tonic for a collector that listens on both ports
//!   anyway); `https://` endpoints use rustls on aws-lc-rs with the system's roots.
//!
//! Spans are batched on a thread of their own and sent in the background; a failed export is
//! logged (target `opentelemetry_sdk`, `BatchSpanProcessor.ExportError`) and never blocks the
//! process. Spans of the HTTP client that sends them are not exported (no feedback loop).

use std::env;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use snafu::{ResultExt as _, Snafu};
use tracing::Subscriber;
use tracing_subscriber::{Layer, filter::filter_fn, registry::LookupSpan};

/// The only protocol built in.
pub const HTTP_PROTOBUF: &str = "http/protobuf";

/// Targets whose spans are never exported: the exporter's own HTTP stack.
const NOT_EXPORTED: &[&str] = &[
    "opentelemetry",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "tower",
];

/// Why the exporter could not be set up.
#[derive(Debug, Snafu)]
pub enum Error {
    /// A protocol other than `http/protobuf` was asked for.
    #[snafu(display(
        "{variable}={protocol:?} is not supported; only {HTTP_PROTOBUF} is built in (the collector's port 4318)"
    ))]
    UnsupportedProtocol {
        /// The variable that asked.
        variable: &'static str,
        /// What it asked for.
        protocol: String,
    },

    /// The exporter rejected its configuration (an endpoint that is not a URL, a bad header).
    #[snafu(display("cannot build the OTLP span exporter"))]
    Build {
        /// The exporter's error.
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// A running exporter: the tracer provider whose batch thread sends the spans.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
    scope: String,
}

impl Exporter {
    /// The exporter the environment asks for, or `None` when it asks for none. `endpoint`
    /// (the full URL spans are posted to) overrides the variables and turns the export on
    /// unless `OTEL_SDK_DISABLED=true`.
    pub fn from_env(service_name: &str, endpoint: Option<&str>) -> Result<Option<Self>, Error> {
        let var = |name: &str| env::var(name).ok();
        let on = match endpoint {
            Some(_) => !disabled(var),
            None => enabled(var),
        };
        if !on {
            return Ok(None);
        }
        check_protocol(var)?;
        let mut builder = SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let exporter = builder.build().context(BuildSnafu)?;
        let mut resource = Resource::builder();
        if env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service_name.to_owned());
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Some(Self {
            provider,
            scope: service_name.to_owned(),
        }))
    }

    /// The layer turning `tracing` spans into OpenTelemetry spans.
    pub(crate) fn layer<S>(&self) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer(self.scope.clone()))
            .with_filter(filter_fn(|metadata| {
                !NOT_EXPORTED
                    .iter()
                    .any(|prefix| is_target_or_child(metadata.target(), prefix))
            }))
            .boxed()
    }

    /// Sends what is still batched and stops the batch thread.
    pub(crate) fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "the OTLP exporter did not shut down cleanly; spans may be lost");
        }
    }
}

/// Whether `target` is `prefix` or one of its modules (`hyper` matches `hyper::client`, not
/// `hyperlocal`).
fn is_target_or_child(target: &str, prefix: &str) -> bool {
    target
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'))
}

/// Whether the variables (read through `var`) turn the export on.
fn enabled(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|value| !value.trim().is_empty());
    if disabled(&var) {
        return false;
    }
    match var("OTEL_TRACES_EXPORTER").map(|value| value.trim().to_ascii_lowercase()) {
        Some(exporter) if exporter == "none" => false,
        Some(exporter) if exporter == "otlp" => true,
        _ => set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT"),
    }
}

/// `OTEL_SDK_DISABLED=true`.
fn disabled(var: impl Fn(&str) -> Option<String>) -> bool {
    var("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// An error unless the protocol variables are unset, empty or `http/protobuf`.
fn check_protocol(var: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(protocol) = var(variable)
            && !protocol.trim().is_empty()
            && protocol.trim() != HTTP_PROTOBUF
        {
            return UnsupportedProtocolSnafu { variable, protocol }.fail();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn enabled_with(vars: &[(&str, &str)]) -> bool {
        let vars: BTreeMap<&str, &str> = vars.iter().copied().collect();
        enabled(|name| vars.get(name).map(|v| (*v).to_owned()))
    }

    #[test]
    fn on_with_an_endpoint_or_otlp_and_off_when_disabled() {
        assert!(!enabled_with(&[]));
        assert!(!enabled_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]));
        assert!(enabled_with(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4318"
        )]));
        assert!(enabled_with(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/v1/traces"
        )]));
        assert!(enabled_with(&[("OTEL_TRACES_EXPORTER", "otlp")]));
        assert!(!enabled_with(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
        ]));
        assert!(!enabled_with(&[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
        ]));
    }

    #[test]
    fn only_http_protobuf_is_accepted() {
        let with = |vars: &[(&str, &str)]| {
            let vars: BTreeMap<&str, &str> = vars.iter().copied().collect();
            check_protocol(|name| vars.get(name).map(|v| (*v).to_owned()))
                .map_err(|e| e.to_string())
        };
        assert!(with(&[]).is_ok());
        assert!(with(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).is_ok());
        assert_eq!(
            with(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")])
                .err()
                .as_deref(),
            Some(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\"grpc\" is not supported; only http/protobuf is built in (the collector's port 4318)"
            )
        );
        assert!(with(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).is_err());
    }

    #[test]
    fn the_exporters_own_http_stack_is_not_exported() {
        assert!(is_target_or_child("hyper", "hyper"));
        assert!(is_target_or_child("hyper::client::conn", "hyper"));
        assert!(is_target_or_child("hyper_util::client", "hyper"));
        assert!(!is_target_or_child("hyperlocal", "hyper"));
        assert!(!is_target_or_child("stackable_webhook::router", "hyper"));
    }
}

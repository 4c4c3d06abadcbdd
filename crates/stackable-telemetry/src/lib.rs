//! One logging and tracing setup for every binary of the kit.
//!
//! Container runtimes capture stdout into a file, so colour codes there end up as garbage in
//! `kubectl logs` and log pipelines. [`Telemetry`] writes
//!
//! - text lines (coloured only when stdout is a terminal and `NO_COLOR` is unset) or one JSON
//!   object per line (`--log-format json`, env `LOG_FORMAT`),
//! - with UTC RFC 3339 timestamps (`2026-05-04T09:12:33.081472Z`),
//! - with the fields of every open span on each line (a webhook request's `uid`, `kind`,
//!   `namespace`, `name`; the injector's `target`),
//! - filtered by `RUST_LOG` directives, overridden by `--log-level`,
//! - and, with the `otlp` feature, exports spans over OTLP/HTTP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set
//!   (<https://opentelemetry.io/docs/specs/otel/protocol/exporter/>).
//!
//! A binary flattens `LogArgs` (feature `clap`) into its arguments and calls
//! `Telemetry::from_args("my-operator", &cli.log).init()?` first thing in `main`; without
//! clap:
//!
//! ```no_run
//! use stackable_telemetry::{LogFilter, LogFormat, Telemetry};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let _telemetry = Telemetry::new("my-operator")
//!     .format(LogFormat::Json)
//!     .filter(LogFilter::new("info,kube=debug")?)
//!     .init()?;
//! tracing::info!("started");
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/telemetry.md` for the fields of a JSON line and the OTLP variables.

#[cfg(feature = "clap")]
mod args;
mod filter;
mod format;
mod json;
#[cfg(feature = "otlp")]
pub mod otlp;
mod telemetry;

#[cfg(feature = "clap")]
pub use args::LogArgs;
pub use filter::{DEFAULT_FILTER, InvalidLogFilter, LogFilter};
pub use format::{LogFormat, UnknownLogFormat};
pub use telemetry::{Colour, Error, Telemetry, TelemetryGuard};

/// The README's example, compiled as a doctest (it uses the `clap` feature, which every binary
/// of the workspace enables).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "clap"))]
pub struct ReadmeDoctests;

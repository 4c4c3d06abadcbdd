//! [`Telemetry`]: builds the one `tracing` subscriber of a process from a [`LogFormat`], a
//! [`LogFilter`] and, with the `otlp` feature, an OTLP exporter of spans.

use std::io::IsTerminal as _;

use snafu::{ResultExt as _, Snafu};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::{
    Layer, Registry,
    fmt::{MakeWriter, format::JsonFields, time::SystemTime},
    layer::SubscriberExt as _,
    registry::LookupSpan,
    util::SubscriberInitExt as _,
};

use crate::{LogFilter, LogFormat, filter::InvalidLogFilter, json::JsonLine};

/// Why the subscriber could not be set up.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum Error {
    /// `RUST_LOG` does not parse (only when the filter was not given explicitly).
    #[snafu(display("RUST_LOG does not parse"))]
    RustLog {
        /// The parse error.
        source: InvalidLogFilter,
    },

    /// Another global subscriber was installed first.
    #[snafu(display("a global tracing subscriber is already installed"))]
    SetGlobalDefault {
        /// The error of `try_init`.
        source: tracing_subscriber::util::TryInitError,
    },

    /// The OTLP exporter could not be built from the `OTEL_EXPORTER_OTLP_*` variables.
    #[cfg(feature = "otlp")]
    #[snafu(display("cannot set up the OTLP exporter of spans"))]
    Otlp {
        /// What was wrong.
        source: crate::otlp::Error,
    },
}

/// Whether lines carry ANSI colour codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Colour {
    /// Colour when stdout is a terminal and `NO_COLOR` (<https://no-color.org>) is unset or
    /// empty; never with [`LogFormat::Json`] or a writer given to [`Telemetry::dispatch`].
    #[default]
    Auto,
    /// Always colour (text only).
    Always,
    /// Never colour.
    Never,
}

/// The logging (and tracing) setup of one process; [`Telemetry::init`] installs it.
///
/// ```no_run
/// use stackable_telemetry::{LogFormat, Telemetry};
///
/// # fn main() -> Result<(), stackable_telemetry::Error> {
/// let _telemetry = Telemetry::new("my-operator").format(LogFormat::Json).init()?;
/// tracing::info!("started");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Telemetry {
    service_name: String,
    format: LogFormat,
    filter: Option<LogFilter>,
    colour: Colour,
    #[cfg(feature = "otlp")]
    otlp_endpoint: Option<String>,
}

/// Keeps the exporter of spans running; dropping it flushes the spans not yet sent (with the
/// `otlp` feature). Hold it until `main` returns.
#[must_use = "dropping the guard stops the export of spans"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    otlp: Option<crate::otlp::Exporter>,
}

impl TelemetryGuard {
    /// Whether spans are exported over OTLP (the `otlp` feature and an endpoint in the
    /// environment).
    pub fn exports_spans(&self) -> bool {
        #[cfg(feature = "otlp")]
        {
            self.otlp.is_some()
        }
        #[cfg(not(feature = "otlp"))]
        {
            false
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(otlp) = self.otlp.take() {
            otlp.shutdown();
        }
    }
}

impl Telemetry {
    /// Text lines, the filter from `RUST_LOG` (else `info`), colour on a terminal.
    /// `service_name` names the process in exported spans (`service.name`, unless
    /// `OTEL_SERVICE_NAME` says otherwise).
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            format: LogFormat::Text,
            filter: None,
            colour: Colour::Auto,
            #[cfg(feature = "otlp")]
            otlp_endpoint: None,
        }
    }

    /// The setup the shared flags ask for.
    #[cfg(feature = "clap")]
    pub fn from_args(service_name: impl Into<String>, args: &crate::LogArgs) -> Self {
        let telemetry = Self::new(service_name).format(args.log_format);
        match &args.log_level {
            Some(filter) => telemetry.filter(filter.clone()),
            None => telemetry,
        }
    }

    /// Writes lines in `format`.
    pub fn format(mut self, format: LogFormat) -> Self {
        self.format = format;
        self
    }

    /// Writes the lines `filter` lets through (instead of `RUST_LOG`).
    pub fn filter(mut self, filter: LogFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Colours text lines as asked.
    pub fn colour(mut self, colour: Colour) -> Self {
        self.colour = colour;
        self
    }

    /// Exports spans to `endpoint` (the full URL, e.g. `http://collector:4318/v1/traces`)
    /// whatever `OTEL_EXPORTER_OTLP_*` say.
    #[cfg(feature = "otlp")]
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp_endpoint = Some(endpoint.into());
        self
    }

    /// Installs the subscriber for the whole process, writing to stdout, and forwards `log`
    /// records to it. Call once, first thing in `main`, and keep the guard.
    pub fn init(self) -> Result<TelemetryGuard, Error> {
        let ansi = match self.colour {
            Colour::Auto => std::io::stdout().is_terminal() && !no_color(),
            Colour::Always => true,
            Colour::Never => false,
        };
        let (subscriber, guard) = self.subscriber(std::io::stdout, ansi)?;
        subscriber.try_init().context(SetGlobalDefaultSnafu)?;
        Ok(guard)
    }

    /// The subscriber writing to `writer` (colour only with [`Colour::Always`]), to install
    /// where [`init`](Self::init) does not fit: a test's `tracing::dispatcher::with_default`,
    /// or a writer other than stdout.
    pub fn dispatch<W>(self, writer: W) -> Result<(Dispatch, TelemetryGuard), Error>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let ansi = self.colour == Colour::Always;
        let (subscriber, guard) = self.subscriber(writer, ansi)?;
        Ok((Dispatch::new(subscriber), guard))
    }

    fn subscriber<W>(
        self,
        writer: W,
        ansi: bool,
    ) -> Result<(impl Subscriber + Send + Sync + 'static, TelemetryGuard), Error>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let filter = match self.filter {
            Some(filter) => filter,
            None => LogFilter::from_env().context(RustLogSnafu)?,
        };
        #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
        let mut guard = TelemetryGuard::default();
        #[cfg(feature = "otlp")]
        let spans = match crate::otlp::Exporter::from_env(
            &self.service_name,
            self.otlp_endpoint.as_deref(),
        )
        .context(OtlpSnafu)?
        {
            Some(exporter) => {
                let layer = exporter.layer();
                guard.otlp = Some(exporter);
                Some(layer)
            }
            None => None,
        };
        #[cfg(not(feature = "otlp"))]
        let _ = &self.service_name;
        let subscriber =
            Registry::default()
                .with(filter.env_filter())
                .with(lines(self.format, writer, ansi));
        #[cfg(feature = "otlp")]
        let subscriber = subscriber.with(spans);
        Ok((subscriber, guard))
    }
}

/// The layer writing one line per event.
fn lines<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // UTC, RFC 3339 with microseconds: `2026-05-04T09:12:33.081472Z`.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_timer(SystemTime);
    match format {
        LogFormat::Text => layer.with_ansi(ansi).boxed(),
        LogFormat::Json => layer
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .boxed(),
    }
}

/// `NO_COLOR` set to anything but the empty string.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

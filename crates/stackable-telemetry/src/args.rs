//! The logging flags every binary shares (clap): flatten [`LogArgs`] into the binary's
//! arguments and hand them to [`Telemetry::from_args`](crate::Telemetry::from_args).

use crate::{LogFilter, LogFormat};

/// `--log-format text|json` (env `LOG_FORMAT`) and `--log-level <FILTER>` (env `RUST_LOG`).
///
/// ```
/// use clap::Parser;
/// use stackable_telemetry::{LogArgs, LogFormat};
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     log: LogArgs,
/// }
///
/// let cli = Cli::parse_from(["my-operator", "--log-format", "json", "--log-level", "info,kube=debug"]);
/// assert_eq!(cli.log.log_format, LogFormat::Json);
/// assert!(Cli::try_parse_from(["my-operator", "--log-format", "xml"]).is_err());
/// ```
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// Format of the log lines on stdout: `text` (for people; coloured only on a terminal) or
    /// `json` (one object per line, for log pipelines).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Which log lines to write: a level (`debug`) or `RUST_LOG` directives
    /// (`info,kube=debug`). Default: info.
    #[arg(long, env = "RUST_LOG", value_name = "FILTER")]
    pub log_level: Option<LogFilter>,
}

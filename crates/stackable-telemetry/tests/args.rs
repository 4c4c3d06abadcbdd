//! The shared flags: `--log-format text|json` (env `LOG_FORMAT`), `--log-level` (env
//! `RUST_LOG`), and clear errors for bad values. (Environment variables are covered by the
//! binaries' tests, which set them on a child process.)

use clap::{CommandFactory as _, Parser};
use stackable_telemetry::{LogArgs, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "my-operator")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
}

#[test]
fn flags_parse() {
    let cli = Cli::try_parse_from(["my-operator", "--log-format", "json"]).unwrap();
    assert_eq!(cli.log.log_format, LogFormat::Json);
    let cli = Cli::try_parse_from(["my-operator", "--log-level", "info,kube=debug"]).unwrap();
    assert_eq!(
        cli.log.log_level.map(|f| f.to_string()).as_deref(),
        Some("info,kube=debug")
    );
}

#[test]
fn an_unknown_format_is_a_usage_error_listing_the_formats() {
    let error = Cli::try_parse_from(["my-operator", "--log-format", "xml"]).unwrap_err();
    assert_eq!(error.kind(), clap::error::ErrorKind::InvalidValue);
    assert_eq!(error.exit_code(), 2);
    let message = error.render().to_string();
    assert!(
        message.contains("invalid value 'xml' for '--log-format <LOG_FORMAT>'"),
        "{message}"
    );
    assert!(
        message.contains("[possible values: text, json]"),
        "{message}"
    );
}

#[test]
fn a_bad_filter_is_a_usage_error() {
    let error = Cli::try_parse_from(["my-operator", "--log-level", "kube=loud"]).unwrap_err();
    assert_eq!(error.exit_code(), 2);
    let message = error.render().to_string();
    assert!(
        message.contains("invalid log filter \"kube=loud\""),
        "{message}"
    );
}

#[test]
fn help_names_the_variables() {
    let help = Cli::command().render_long_help().to_string();
    assert!(help.contains("[env: LOG_FORMAT="), "{help}");
    assert!(help.contains("[env: RUST_LOG"), "{help}");
}

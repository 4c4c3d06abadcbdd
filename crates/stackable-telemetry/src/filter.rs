//! Which log lines are written: `RUST_LOG`-style directives
//! (<https://docs.rs/tracing-subscriber/latest/tracing_subscriber/filter/struct.EnvFilter.html#directives>),
//! a level (`info`) or a level per target (`info,kube=debug,stackable_webhook=trace`).

use std::{fmt, str::FromStr};

use snafu::{ResultExt, Snafu};
use tracing_subscriber::EnvFilter;

/// The filter used when neither `--log-level` nor `RUST_LOG` says otherwise.
pub const DEFAULT_FILTER: &str = "info";

/// Directives that were checked to parse; build an [`EnvFilter`] from them with
/// [`LogFilter::env_filter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFilter {
    directives: String,
}

/// Directives that do not parse.
#[derive(Debug, Snafu)]
#[snafu(display(
    "invalid log filter {directives:?}: {source} (expected e.g. \"info\" or \"info,kube=debug\")"
))]
pub struct InvalidLogFilter {
    directives: String,
    source: tracing_subscriber::filter::ParseError,
}

impl LogFilter {
    /// Checks `directives`.
    pub fn new(directives: impl Into<String>) -> Result<Self, InvalidLogFilter> {
        let directives = directives.into();
        parse(&directives).context(InvalidLogFilterSnafu {
            directives: directives.clone(),
        })?;
        Ok(Self { directives })
    }

    /// `RUST_LOG` when it is set and not empty, else [`DEFAULT_FILTER`]; an error when
    /// `RUST_LOG` does not parse.
    pub fn from_env() -> Result<Self, InvalidLogFilter> {
        match std::env::var(EnvFilter::DEFAULT_ENV) {
            Ok(value) if !value.trim().is_empty() => Self::new(value),
            _ => Ok(Self::default()),
        }
    }

    /// The directives as given.
    pub fn as_str(&self) -> &str {
        &self.directives
    }

    /// A new [`EnvFilter`] of these directives (one per layer that filters).
    pub fn env_filter(&self) -> EnvFilter {
        // Checked in `new`; the fallback is never taken.
        parse(&self.directives).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
    }
}

fn parse(directives: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    EnvFilter::builder().parse(directives)
}

impl Default for LogFilter {
    fn default() -> Self {
        Self {
            directives: DEFAULT_FILTER.to_owned(),
        }
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.directives)
    }
}

impl FromStr for LogFilter {
    type Err = InvalidLogFilter;

    fn from_str(directives: &str) -> Result<Self, Self::Err> {
        Self::new(directives)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_levels_and_directives_and_refuses_garbage() {
        assert_eq!(LogFilter::default().as_str(), "info");
        assert!(LogFilter::new("debug").is_ok());
        assert!(LogFilter::new("info,kube=debug,stackable_webhook[webhook]=trace").is_ok());
        let error = LogFilter::new("info,kube=loud")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "invalid log filter \"info,kube=loud\": error parsing level filter: expected one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\", or a number 0-5 (expected e.g. \"info\" or \"info,kube=debug\")"
            )
        );
    }
}

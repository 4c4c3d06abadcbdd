//! The format of the log lines: `text` for a person at a terminal, `json` for a log pipeline
//! (Loki, Elasticsearch, `kubectl logs | jq`), one object per line.

use std::{fmt, str::FromStr};

use snafu::Snafu;

/// How each log line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// `2026-05-04T09:12:33.081472Z  INFO webhook{route=/mutate uid=… kind=Pod}: target: message
    /// key=value`: spans and their fields before the message; colour only on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`),
    /// `spans` (the names of the open spans, outermost first) and `span` (their fields).
    Json,
}

impl LogFormat {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [LogFormat; 2] = [LogFormat::Text, LogFormat::Json];

    /// The name used on the command line and in `LOG_FORMAT`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is neither `text` nor `json`.
#[derive(Debug, Snafu)]
#[snafu(display("unknown log format {value:?}; expected one of: text, json"))]
pub struct UnknownLogFormat {
    value: String,
}

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        LogFormat::ALL
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(value.trim()))
            .ok_or_else(|| UnknownLogFormatSnafu { value }.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_names_and_refuses_others() {
        assert_eq!("text".parse::<LogFormat>().ok(), Some(LogFormat::Text));
        assert_eq!("JSON".parse::<LogFormat>().ok(), Some(LogFormat::Json));
        let error = "xml".parse::<LogFormat>().err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("unknown log format \"xml\"; expected one of: text, json")
        );
        assert_eq!(LogFormat::default().to_string(), "text");
    }
}

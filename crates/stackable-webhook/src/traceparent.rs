//! The W3C `traceparent` header (<https://www.w3.org/TR/trace-context/#traceparent-header>),
//! which the Kubernetes API server sends on webhook calls when it traces the request
//! (`APIServerTracing`,
//! <https://kubernetes.io/docs/concepts/cluster-administration/system-traces/>).
//!
//! Every webhook request's `webhook` span records the header's `trace_id` and
//! `parent_span_id`, so the lines logged while answering can be found from the API server's
//! trace. With the `otel` feature, and when the process's subscriber has an OpenTelemetry layer
//! (stackable-telemetry's `otlp` feature sets one up), the span's parent is the API server's
//! span: the webhook's spans are exported as part of the API server's trace (the `tracestate`
//! header is carried along). A header that is not a valid version-`00` `traceparent` is
//! ignored, as the specification asks.
//!
//! Which trace the header names depends on the API server (`tests/e2e_traceparent.rs`, through
//! kube-apiserver 1.37): with a tracing configuration, its own, or the client's for users in
//! `system:masters`/`system:monitoring`; without one, any client's header is passed on unchanged.
//! The ids are for finding lines and spans, not for trusting the caller.

use std::{fmt, str::FromStr};

use http::HeaderMap;
use snafu::Snafu;

/// The name of the header.
pub const TRACEPARENT: &str = "traceparent";

/// Why a `traceparent` value was refused.
#[derive(Debug, PartialEq, Eq, Snafu)]
pub enum TraceParentError {
    /// Not `version-traceid-parentid-flags` of 2, 32, 16 and 2 characters (55 in all).
    #[snafu(display(
        "a traceparent is 55 characters, 00-<32 hex>-<16 hex>-<2 hex>; got {length} characters"
    ))]
    Shape {
        /// The length of the value.
        length: usize,
    },

    /// A version other than `00`.
    #[snafu(display("traceparent version {version:?} is not supported (only 00)"))]
    Version {
        /// The version field.
        version: String,
    },

    /// A field that is not lowercase hexadecimal.
    #[snafu(display("the {field} of a traceparent must be lowercase hexadecimal"))]
    NotHex {
        /// `trace-id`, `parent-id` or `trace-flags`.
        field: &'static str,
    },

    /// An all-zero trace or parent id (invalid by the specification).
    #[snafu(display("the {field} of a traceparent must not be all zeros"))]
    AllZeros {
        /// `trace-id` or `parent-id`.
        field: &'static str,
    },
}

/// A parsed version-`00` `traceparent`: the caller's trace, its span, and the trace flags.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_span_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// Parses a header value strictly: version `00`, then 32 and 16 lowercase hex characters
    /// (not all zeros) and 2 of flags, separated by `-`, nothing more.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let bytes = value.as_bytes();
        if bytes.len() != 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return ShapeSnafu {
                length: bytes.len(),
            }
            .fail();
        }
        if &bytes[..2] != b"00" {
            return VersionSnafu {
                version: String::from_utf8_lossy(&bytes[..2]).into_owned(),
            }
            .fail();
        }
        let mut trace_id = [0u8; 16];
        decode_hex(&bytes[3..35], &mut trace_id, "trace-id")?;
        let mut parent_span_id = [0u8; 8];
        decode_hex(&bytes[36..52], &mut parent_span_id, "parent-id")?;
        let mut flags = [0u8; 1];
        decode_hex(&bytes[53..55], &mut flags, "trace-flags")?;
        if trace_id == [0; 16] {
            return AllZerosSnafu { field: "trace-id" }.fail();
        }
        if parent_span_id == [0; 8] {
            return AllZerosSnafu { field: "parent-id" }.fail();
        }
        Ok(Self {
            trace_id,
            parent_span_id,
            flags: flags[0],
        })
    }

    /// The trace id (16 bytes).
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The id of the caller's span, the parent of the webhook's (8 bytes).
    pub fn parent_span_id(&self) -> [u8; 8] {
        self.parent_span_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled the trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 lowercase hex characters.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The parent span id as 16 lowercase hex characters.
    pub fn parent_span_id_hex(&self) -> String {
        hex(&self.parent_span_id)
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

/// The header form, `00-<trace-id>-<parent-id>-<flags>`.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.parent_span_id_hex(),
            self.flags
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

fn decode_hex(text: &[u8], out: &mut [u8], field: &'static str) -> Result<(), TraceParentError> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (Some(high), Some(low)) = (nibble(pair[0]), nibble(pair[1])) else {
            return NotHexSnafu { field }.fail();
        };
        *byte = high << 4 | low;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// Continues the caller's trace in `span` (a request's `webhook` span, not yet entered): records
/// `trace_id` and `parent_span_id` and, with the `otel` feature, makes the remote span its
/// parent. An absent or invalid header changes nothing (an invalid one is logged at debug).
pub(crate) fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let Some(value) = headers.get(TRACEPARENT) else {
        return;
    };
    let parent = match value.to_str() {
        Ok(text) => TraceParent::parse(text),
        Err(_) => ShapeSnafu {
            length: value.len(),
        }
        .fail(),
    };
    let parent = match parent {
        Ok(parent) => parent,
        Err(error) => {
            tracing::debug!(%error, "ignoring an invalid traceparent header");
            return;
        }
    };
    crate::span_fields::record(
        span,
        [
            ("trace_id", Some(&parent.trace_id_hex())),
            ("parent_span_id", Some(&parent.parent_span_id_hex())),
        ],
    );
    #[cfg(feature = "otel")]
    otel::set_remote_parent(
        span,
        &parent,
        headers
            .get("tracestate")
            .and_then(|value| value.to_str().ok()),
    );
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::TraceParent;

    /// Makes the API server's span the parent of `span` when the subscriber has an
    /// OpenTelemetry layer (without one there is nothing to continue, and nothing happens).
    pub(super) fn set_remote_parent(
        span: &tracing::Span,
        parent: &TraceParent,
        tracestate: Option<&str>,
    ) {
        let state = tracestate
            .and_then(|value| value.parse::<TraceState>().ok())
            .unwrap_or_default();
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.parent_span_id),
            TraceFlags::new(parent.flags),
            true,
            state,
        );
        let context = opentelemetry::Context::new().with_remote_span_context(remote);
        if let Err(error) = span.set_parent(context) {
            tracing::trace!(%error, "no OpenTelemetry layer; the trace is not continued");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_is_parsed_and_printed_back() {
        let parent = TraceParent::parse(VALID).unwrap();
        assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.parent_span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(parent.trace_id()[0], 0x4b);
        assert_eq!(parent.parent_span_id()[7], 0xb7);
        assert!(parent.sampled());
        assert_eq!(parent.to_string(), VALID);
        let unsampled: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
            .parse()
            .unwrap();
        assert!(!unsampled.sampled());
        assert_eq!(unsampled.flags(), 0);
    }

    #[test]
    fn invalid_headers_are_refused() {
        for (value, expected) in [
            ("", TraceParentError::Shape { length: 0 }),
            (
                // A future version with more fields: not accepted.
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                TraceParentError::Shape { length: 61 },
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Version {
                    version: "ff".into(),
                },
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Version {
                    version: "01".into(),
                },
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                TraceParentError::NotHex { field: "trace-id" },
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
                TraceParentError::NotHex { field: "parent-id" },
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                TraceParentError::NotHex {
                    field: "trace-flags",
                },
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                TraceParentError::AllZeros { field: "trace-id" },
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                TraceParentError::AllZeros { field: "parent-id" },
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Shape { length: 55 },
            ),
            (
                " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Shape { length: 56 },
            ),
        ] {
            assert_eq!(TraceParent::parse(value), Err(expected), "{value:?}");
        }
    }
}

//! The lines [`Telemetry`] writes, captured in memory: JSON objects with the documented
//! fields, text without colour codes unless asked, spans' fields on every line, the filter.
//! (Lines of the real binaries through a real pipe: each binary's `tests/logging.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::{
    io,
    sync::{Arc, Mutex},
};

use serde_json::Value;
use stackable_telemetry::{Colour, LogFilter, LogFormat, Telemetry};

/// Everything written, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Logs what a webhook request logs: an event in a `webhook` span (with the request's
/// identity) inside which a nested span is open, and a debug event.
fn log_a_request(telemetry: Telemetry) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let (dispatch, _guard) = telemetry.dispatch(move || writer.clone()).unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        let request = tracing::info_span!(
            "webhook",
            route = "/mutate",
            uid = "705ab4f5-6393-11e8-b7cc-42010a800002",
            kind = "Pod",
            namespace = "team-a",
            name = "web-0",
            outcome = tracing::field::Empty,
        );
        let _request = request.enter();
        request.record("outcome", "allowed");
        let step = tracing::info_span!("patch", operations = 2);
        let _step = step.enter();
        tracing::info!(sidecar = "fluent-bit", "injected the sidecar");
        tracing::debug!("a debug line");
    });
    captured.text()
}

#[test]
fn json_gives_one_object_per_line_with_the_documented_fields() {
    let before = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let out = log_a_request(
        Telemetry::new("test")
            .format(LogFormat::Json)
            .filter(LogFilter::new("info").unwrap()),
    );
    let after = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "the debug line is filtered out: {out}");
    let line: Value = serde_json::from_str(lines[0]).unwrap();

    // UTC, RFC 3339 with microseconds, between the two readings of the clock.
    let timestamp = line["timestamp"].as_str().unwrap();
    assert_eq!(
        timestamp.len(),
        "2026-05-04T09:12:33.081472Z".len(),
        "{timestamp}"
    );
    assert!(
        timestamp.ends_with('Z') && &timestamp[10..11] == "T",
        "{timestamp}"
    );
    assert!(
        before.as_str() <= timestamp && timestamp <= after.as_str(),
        "{before} {timestamp} {after}"
    );

    assert_eq!(line["level"], "INFO");
    assert_eq!(line["target"], "logging");
    assert_eq!(line["fields"]["message"], "injected the sidecar");
    assert_eq!(line["fields"]["sidecar"], "fluent-bit");
    // The open spans' names, outermost first, and all their fields; a span field called
    // `name` (the object's name) is not confused with a span's name.
    assert_eq!(line["spans"], serde_json::json!(["webhook", "patch"]));
    assert_eq!(
        line["span"],
        serde_json::json!({
            "route": "/mutate",
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": "Pod",
            "namespace": "team-a",
            "name": "web-0",
            "outcome": "allowed",
            "operations": 2,
        })
    );
    // Key order: timestamp, level, target, fields, spans, span; every key once.
    let keys: Vec<&str> = [
        "\"timestamp\":",
        "\"level\":",
        "\"target\":",
        "\"fields\":",
        "\"spans\":",
        "\"span\":",
    ]
    .into_iter()
    .collect();
    let positions: Vec<usize> = keys.iter().map(|k| lines[0].find(k).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{}", lines[0]);
    assert_eq!(lines[0].matches("\"name\":").count(), 1, "{}", lines[0]);
    // The event's fields in the order written, the message first.
    assert!(
        lines[0].contains(r#""fields":{"message":"injected the sidecar","sidecar":"fluent-bit"}"#),
        "{}",
        lines[0]
    );
    assert!(!out.contains('\u{1b}'));
}

#[test]
fn text_has_no_escape_bytes_unless_asked_and_shows_span_fields() {
    let out = log_a_request(Telemetry::new("test").filter(LogFilter::new("debug").unwrap()));
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    let first = out.lines().next().unwrap();
    assert!(first.contains(" INFO "), "{first}");
    assert!(
        first.contains(
            "webhook{route=\"/mutate\" uid=\"705ab4f5-6393-11e8-b7cc-42010a800002\" kind=\"Pod\" namespace=\"team-a\" name=\"web-0\" outcome=\"allowed\"}:patch{operations=2}: logging: injected the sidecar sidecar=\"fluent-bit\""
        ),
        "{first}"
    );
    // Timestamp first: `2026-05-04T09:12:33.081472Z`.
    assert_eq!(&first[10..11], "T", "{first}");
    assert_eq!(&first[26..27], "Z", "{first}");

    let coloured = log_a_request(Telemetry::new("test").colour(Colour::Always));
    assert!(coloured.contains('\u{1b}'), "{coloured:?}");
}

#[test]
fn the_filter_takes_levels_per_target() {
    let out =
        log_a_request(Telemetry::new("test").filter(LogFilter::new("warn,logging=debug").unwrap()));
    assert_eq!(out.lines().count(), 2, "{out}");
    let out = log_a_request(Telemetry::new("test").filter(LogFilter::new("warn").unwrap()));
    assert_eq!(out, "");
}

//! The JSON line: one object per event, in this order:
//!
//! ```json
//! {"timestamp":"2026-12-02T00:37:05.377557Z","level":"WARN","target":"stackable_cainjector::reconcile",
//!  "fields":{"message":"refused to inject; the previous caBundle stays","reason":"…"},
//!  "spans":["reconciling object","inject"],
//!  "span":{"object.reason":"unknown","object.ref":"…","target":"ValidatingWebhookConfiguration my-hooks"}}
//! ```
//!
//! `spans` names the open spans, outermost first; `span` holds the fields of all of them (an
//! inner span's field wins over an outer one's of the same name). Both are absent outside
//! any span. Unlike tracing-subscriber's own JSON format, which writes a span's name under
//! `name` beside its fields, a span field called `name` (a webhook request's object name) is
//! kept: a line never has a key twice.

use std::fmt;

use serde_json::{Map, Value};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormattedFields,
        format::{JsonFields, Writer},
        time::{FormatTime as _, SystemTime},
    },
    registry::LookupSpan,
};

/// Formats an event as one JSON line; span fields must be recorded by [`JsonFields`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct JsonLine;

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        // A `log` record forwarded by tracing-log: its own target, without the `log.*` fields.
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = Fields {
            values: Vec::new(),
            skip_log_fields: normalized.is_some(),
        };
        event.record(&mut fields);

        let mut names = Vec::new();
        let mut span_fields = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                names.push(Value::String(span.name().to_owned()));
                let extensions = span.extensions();
                let recorded =
                    extensions
                        .get::<FormattedFields<JsonFields>>()
                        .and_then(|formatted| {
                            serde_json::from_str::<Map<String, Value>>(formatted).ok()
                        });
                span_fields.extend(recorded.into_iter().flatten());
            }
        }

        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":");
        push(&mut line, &Value::String(timestamp))?;
        line.push_str(",\"level\":");
        push(
            &mut line,
            &Value::String(metadata.level().as_str().to_owned()),
        )?;
        line.push_str(",\"target\":");
        push(&mut line, &Value::String(metadata.target().to_owned()))?;
        // The event's fields in the order they were written (`message` first).
        line.push_str(",\"fields\":{");
        for (i, (name, value)) in fields.values.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            push(&mut line, &Value::String(name.clone()))?;
            line.push(':');
            push(&mut line, value)?;
        }
        line.push('}');
        if !names.is_empty() {
            line.push_str(",\"spans\":");
            push(&mut line, &Value::Array(names))?;
            line.push_str(",\"span\":");
            push(&mut line, &Value::Object(span_fields))?;
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

fn push(line: &mut String, value: &Value) -> fmt::Result {
    line.push_str(&serde_json::to_string(value).map_err(|_| fmt::Error)?);
    Ok(())
}

/// An event's fields as JSON values: numbers and booleans as such, the rest as strings.
struct Fields {
    values: Vec<(String, Value)>,
    skip_log_fields: bool,
}

impl Fields {
    fn insert(&mut self, field: &Field, value: Value) {
        if self.skip_log_fields && field.name().starts_with("log.") {
            return;
        }
        self.values.push((field.name().to_owned(), value));
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field, Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, Value::from(format!("{value:?}")));
    }
}

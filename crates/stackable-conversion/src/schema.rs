//! CRD schemas the API server accepts without a warning.
//!
//! schemars writes the Rust integer width as the OpenAPI `format` (`uint16`, `int8`,
//! `uint64`, `uint`, ...). The API server knows only `int32` and `int64` for integers (and a fixed
//! list of string and number formats,
//! <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#format>):
//! any other format makes every apply of the CRD warn `unrecognized format "uint16"`, and is not
//! checked. [`normalize_formats`] removes such formats and puts the bounds the Rust type implies
//! into `minimum`/`maximum` instead (where schemars did not already), so the schema still says
//! what the type can hold, and the API server enforces it.

use serde_json::{Map, Value, json};

/// Every `format` the API server's CRD validation recognises.
pub const KNOWN_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "password",
    "date",
    "date-time",
    "datetime",
    "duration",
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
];

/// The bounds of a Rust integer format, as schemars names them.
fn integer_bounds(format: &str) -> (Option<Value>, Option<Value>) {
    match format {
        "int8" => (Some(json!(i8::MIN)), Some(json!(i8::MAX))),
        "int16" => (Some(json!(i16::MIN)), Some(json!(i16::MAX))),
        "uint8" => (Some(json!(0)), Some(json!(u8::MAX))),
        "uint16" => (Some(json!(0)), Some(json!(u16::MAX))),
        "uint32" => (Some(json!(0)), Some(json!(u32::MAX))),
        // Larger bounds than 2^53 are not exact in a float64 schema: the minimum only.
        "uint64" | "uint" | "uint128" => (Some(json!(0)), None),
        _ => (None, None),
    }
}

/// Removes every `format` the API server does not know from a JSON schema (recursively),
/// putting the integer bounds it implied into `minimum`/`maximum`.
pub fn normalize_formats(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            normalize_object(object);
            for (key, value) in object.iter_mut() {
                // `enum`/`default`/`example` hold data, not schemas.
                if !matches!(key.as_str(), "enum" | "default" | "example") {
                    normalize_formats(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_formats),
        _ => {}
    }
}

fn normalize_object(object: &mut Map<String, Value>) {
    let Some(format) = object
        .get("format")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    if KNOWN_FORMATS.contains(&format.as_str()) {
        return;
    }
    object.remove("format");
    if object.get("type").and_then(Value::as_str) == Some("integer") {
        let (minimum, maximum) = integer_bounds(&format);
        if let Some(minimum) = minimum {
            object.entry("minimum").or_insert(minimum);
        }
        if let Some(maximum) = maximum {
            object.entry("maximum").or_insert(maximum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_formats_become_bounds_known_ones_stay() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "port": { "type": "integer", "format": "uint16" },
                "small": { "type": "integer", "format": "int8" },
                "count": { "type": "integer", "format": "uint64" },
                "bounded": { "type": "integer", "format": "uint8", "minimum": 1 },
                "replicas": { "type": "integer", "format": "int32" },
                "ratio": { "type": "number", "format": "double" },
                "since": { "type": "string", "format": "date-time" },
                "weird": { "type": "string", "format": "made-up" },
                "list": { "type": "array", "items": { "type": "integer", "format": "uint32" } },
                "choice": { "type": "string", "enum": [{ "format": "uint16" }] }
            }
        });
        normalize_formats(&mut schema);
        let p = &schema["properties"];
        assert_eq!(
            p["port"],
            json!({ "type": "integer", "minimum": 0, "maximum": 65535 })
        );
        assert_eq!(
            p["small"],
            json!({ "type": "integer", "minimum": -128, "maximum": 127 })
        );
        assert_eq!(p["count"], json!({ "type": "integer", "minimum": 0 }));
        assert_eq!(p["bounded"]["minimum"], 1, "an existing bound stays");
        assert_eq!(p["bounded"]["maximum"], 255);
        assert_eq!(p["replicas"]["format"], "int32");
        assert_eq!(p["ratio"]["format"], "double");
        assert_eq!(p["since"]["format"], "date-time");
        assert!(p["weird"].get("format").is_none());
        assert_eq!(
            p["list"]["items"],
            json!({ "type": "integer", "minimum": 0, "maximum": 4294967295u32 })
        );
        assert_eq!(
            p["choice"]["enum"][0]["format"], "uint16",
            "data is left alone"
        );
    }
}

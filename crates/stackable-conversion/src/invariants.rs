//! The checks the API server makes on a conversion webhook's answer, as a function.
//!
//! The kube-apiserver (`k8s.io/apiextensions-apiserver/pkg/apiserver/conversion/webhook_converter.go`)
//! rejects a `ConversionResponse` whose `uid` differs from the request's, whose object count or
//! order differs, whose objects have another `apiVersion` than the desired one, another `kind`,
//! `name`, `namespace` or `uid`, or whose labels and annotations are not string maps with valid
//! keys; everything else in `metadata` it silently restores from the original. This module checks
//! all of that, and more strictly that *all* metadata except labels and annotations is unchanged,
//! so tests (and users' tests) can assert that every answer would be accepted.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#response>.

use kube::core::conversion::{ConversionRequest, ConversionResponse};
use serde_json::{Map, Value};
use snafu::Snafu;

/// A way in which a response would be rejected by the API server (or breaks this crate's stricter
/// promise of untouched metadata).
#[derive(Debug, Snafu, PartialEq, Eq)]
pub enum InvariantViolation {
    /// The response does not echo the request uid.
    #[snafu(display("response uid {found:?} differs from request uid {expected:?}"))]
    Uid {
        /// Request uid.
        expected: String,
        /// Response uid.
        found: String,
    },

    /// `result.status` is neither `Success` nor `Failure`.
    #[snafu(display("result.status is neither Success nor Failure"))]
    NoStatus,

    /// A failed response carries objects or no message.
    #[snafu(display("a failed response must have a message and no objects ({objects} objects)"))]
    BadFailure {
        /// How many objects it carries.
        objects: usize,
    },

    /// A successful response has another number of objects than the request.
    #[snafu(display("{found} objects returned for {expected} sent"))]
    Count {
        /// Sent.
        expected: usize,
        /// Returned.
        found: usize,
    },

    /// An object has not the desired apiVersion.
    #[snafu(display("object {index} has apiVersion {found:?}, desired {expected:?}"))]
    ApiVersion {
        /// Position of the object.
        index: usize,
        /// desiredAPIVersion.
        expected: String,
        /// What it has.
        found: String,
    },

    /// An object changed kind.
    #[snafu(display("object {index} has kind {found:?}, sent as {expected:?}"))]
    Kind {
        /// Position of the object.
        index: usize,
        /// Kind sent.
        expected: String,
        /// Kind returned.
        found: String,
    },

    /// A metadata field other than labels and annotations changed.
    #[snafu(display("object {index}: metadata.{field} changed from {expected} to {found}"))]
    Metadata {
        /// Position of the object.
        index: usize,
        /// The field.
        field: String,
        /// The value sent (JSON).
        expected: String,
        /// The value returned (JSON).
        found: String,
    },

    /// Labels or annotations are not a map of strings with valid keys.
    #[snafu(display("object {index}: metadata.{field} is invalid: {reason}"))]
    LabelsOrAnnotations {
        /// Position of the object.
        index: usize,
        /// `labels` or `annotations`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn metadata_of(object: &Value) -> Map<String, Value> {
    object
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Whether `key` is a valid label or annotation key: an optional DNS-subdomain prefix and `/`,
/// then a name of at most 63 characters (alphanumerics, `-`, `_`, `.`; alphanumeric at both ends).
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|prefix| {
        !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && label.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && label.ends_with(|c: char| c.is_ascii_alphanumeric())
            })
    });
    name_ok && prefix_ok
}

/// The API server's limit on the total size of an object's annotations (keys plus values).
pub const MAX_ANNOTATIONS_SIZE: usize = 256 * 1024;

/// The total size of annotations as the API server counts it (keys plus values, in bytes).
pub fn annotations_size(annotations: &Map<String, Value>) -> usize {
    annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum()
}

fn check_string_map(
    index: usize,
    field: &str,
    value: Option<&Value>,
) -> Result<(), InvariantViolation> {
    let fail = |reason: String| InvariantViolation::LabelsOrAnnotations {
        index,
        field: field.to_owned(),
        reason,
    };
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(map)) => {
            if field == "annotations" && annotations_size(map) > MAX_ANNOTATIONS_SIZE {
                return Err(fail(format!(
                    "total size {} exceeds {MAX_ANNOTATIONS_SIZE} bytes",
                    annotations_size(map)
                )));
            }
            for (key, value) in map {
                if !value.is_string() {
                    return Err(fail(format!("value of {key:?} is not a string")));
                }
                if !is_qualified_name(key) {
                    return Err(fail(format!("{key:?} is not a valid key")));
                }
            }
            Ok(())
        }
        Some(other) => Err(fail(format!("not a map but {other}"))),
    }
}

/// Checks that `response` is a valid answer to `request`, as the API server would, plus the
/// stricter rule that metadata other than labels and annotations is unchanged byte for byte.
pub fn check_response(
    request: &ConversionRequest,
    response: &ConversionResponse,
) -> Result<(), InvariantViolation> {
    if response.uid != request.uid {
        return UidSnafu {
            expected: request.uid.clone(),
            found: response.uid.clone(),
        }
        .fail();
    }
    if response.result.is_failure() {
        if response.result.message.is_empty() || !response.converted_objects.is_empty() {
            return BadFailureSnafu {
                objects: response.converted_objects.len(),
            }
            .fail();
        }
        return Ok(());
    }
    if !response.result.is_success() {
        return NoStatusSnafu.fail();
    }
    if response.converted_objects.len() != request.objects.len() {
        return CountSnafu {
            expected: request.objects.len(),
            found: response.converted_objects.len(),
        }
        .fail();
    }
    for (index, (sent, got)) in request
        .objects
        .iter()
        .zip(&response.converted_objects)
        .enumerate()
    {
        if str_at(got, "apiVersion") != request.desired_api_version {
            return ApiVersionSnafu {
                index,
                expected: request.desired_api_version.clone(),
                found: str_at(got, "apiVersion"),
            }
            .fail();
        }
        if str_at(got, "kind") != str_at(sent, "kind") {
            return KindSnafu {
                index,
                expected: str_at(sent, "kind"),
                found: str_at(got, "kind"),
            }
            .fail();
        }
        let mut sent_meta = metadata_of(sent);
        let mut got_meta = metadata_of(got);
        for field in ["labels", "annotations"] {
            check_string_map(index, field, got_meta.get(field))?;
            sent_meta.remove(field);
            got_meta.remove(field);
        }
        let mut keys: Vec<&String> = sent_meta.keys().chain(got_meta.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (expected, found) = (sent_meta.get(key), got_meta.get(key));
            if expected != found {
                let json =
                    |v: Option<&Value>| v.map_or_else(|| "(absent)".to_owned(), Value::to_string);
                return MetadataSnafu {
                    index,
                    field: key.clone(),
                    expected: json(expected),
                    found: json(found),
                }
                .fail();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        assert!(is_qualified_name("conversion.stackable.tech/stash.v1beta1"));
        assert!(is_qualified_name("app"));
        assert!(!is_qualified_name("Bad.Prefix/x"));
        assert!(!is_qualified_name("x/"));
        assert!(!is_qualified_name(&format!("p/{}", "a".repeat(64))));
        assert!(!is_qualified_name("p/-a"));
    }
}

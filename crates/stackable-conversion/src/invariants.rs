//! The checks the API server makes on a conversion webhook's answer, as a function.
//!
//! [`check_response`] is the kube-apiserver's own check
//! (`k8s.io/apiextensions-apiserver/pkg/apiserver/conversion/webhook_converter.go`, Kubernetes
//! 1.37), rule for rule: it refuses a response whose `uid` differs from the request's; a response
//! whose `result.status` is not `Success` is a failure it passes on to the client (accepted);
//! a success must hold as many objects as were sent, each with the desired `apiVersion`, the
//! original `kind`, `metadata.name`, `metadata.namespace` and `metadata.uid`, and a `metadata`
//! map; `labels` and `annotations` may be absent or `null` (then they are removed), otherwise
//! they are maps of strings, and *when they differ from the original* label keys must be
//! qualified names and label values valid, annotation keys qualified names once lowercased and
//! annotations at most 256 KiB (see [`names`](crate::names)). Everything else in `metadata` the
//! API server silently restores from the original.
//!
//! [`check_response_strict`] adds this crate's own promises (metadata other than labels and
//! annotations unchanged byte for byte, a failure with a message and no objects), for tests of
//! converters built with it.
//!
//! `examples/crontab-operator/tests/e2e_check_response.rs` sends answers the API server accepts
//! and refuses through a real kube-apiserver and compares its verdict with [`check_response`].
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#response>.

use kube::core::conversion::{ConversionRequest, ConversionResponse};
use serde_json::{Map, Value};
use snafu::Snafu;

use crate::names;

/// A way in which a response would be refused by the API server ([`check_response`]), or breaks
/// this crate's stricter promises ([`check_response_strict`]).
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

    /// `result.status` is neither `Success` nor `Failure` (strict only: the API server reports it
    /// as a failed conversion).
    #[snafu(display("result.status is neither Success nor Failure"))]
    NoStatus,

    /// A failed response carries objects or no message (strict only).
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

    /// A converted object has no `metadata` map (the API server: "missing metadata in converted
    /// object").
    #[snafu(display("object {index} has no metadata map"))]
    MissingMetadata {
        /// Position of the object.
        index: usize,
    },

    /// `name`, `namespace` or `uid` changed (refused by the API server), or, strict only, any
    /// other metadata field but labels and annotations (the API server restores those).
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

    /// Labels or annotations are not a map of strings, or (when changed) have an invalid key or
    /// label value, or annotations over 256 KiB.
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

fn field_text<'a>(metadata: &'a Map<String, Value>, field: &str) -> &'a str {
    metadata
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn metadata_of(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

/// The API server's `restoreObjectMeta` check of `metadata.<field>` (labels or annotations):
/// absent or `null` is fine (the field is removed); otherwise a map of strings, validated when it
/// differs from the original (or always, with `strict`).
fn check_string_map(
    index: usize,
    field: &str,
    original: Option<&Value>,
    converted: Option<&Value>,
    strict: bool,
) -> Result<(), InvariantViolation> {
    let fail = |reason: String| InvariantViolation::LabelsOrAnnotations {
        index,
        field: field.to_owned(),
        reason,
    };
    let map = match converted {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(map)) => map,
        Some(other) => return Err(fail(format!("not a map but {other}"))),
    };
    let original = match original {
        None | Some(Value::Null) => None,
        Some(Value::Object(original)) => Some(original),
        Some(other) => return Err(fail(format!("the original is not a map but {other}"))),
    };
    let mut changed = original.map_or(0, Map::len) != map.len();
    for (key, value) in map {
        if !value.is_string() {
            return Err(fail(format!("value of {key:?} is not a string")));
        }
        changed |= original.and_then(|o| o.get(key)) != Some(value);
    }
    if !changed && !strict {
        return Ok(());
    }
    if field == "annotations" {
        if let Some(key) = map.keys().find(|key| !names::is_annotation_key(key)) {
            return Err(fail(format!("{key:?} is not a valid key")));
        }
        let size = names::annotations_size(map);
        if size > names::MAX_ANNOTATIONS_SIZE {
            return Err(fail(format!(
                "total size {size} exceeds {} bytes",
                names::MAX_ANNOTATIONS_SIZE
            )));
        }
    } else {
        for (key, value) in map {
            if !names::is_qualified_name(key) {
                return Err(fail(format!("{key:?} is not a valid key")));
            }
            let value = value.as_str().unwrap_or_default();
            if !names::is_label_value(value) {
                return Err(fail(format!(
                    "{value:?} (of {key:?}) is not a valid label value"
                )));
            }
        }
    }
    Ok(())
}

/// Checks `response` exactly as the API server checks a conversion webhook's answer
/// (`webhook_converter.go` in `k8s.io/apiextensions-apiserver`, Kubernetes 1.37): `Ok` when it
/// accepts the answer, that is a failure it passes on to the client (any `result.status` but
/// `Success`), or converted objects that pass every check; see the [module docs](self).
pub fn check_response(
    request: &ConversionRequest,
    response: &ConversionResponse,
) -> Result<(), InvariantViolation> {
    check(request, response, false)
}

/// [`check_response`], plus this crate's stricter promises: `result.status` is `Success` or
/// `Failure`, a failure has a message and no objects, labels and annotations are always valid,
/// and all other metadata is unchanged (the API server would silently restore it).
pub fn check_response_strict(
    request: &ConversionRequest,
    response: &ConversionResponse,
) -> Result<(), InvariantViolation> {
    if response.uid == request.uid && response.result.is_failure() {
        if response.result.message.is_empty() || !response.converted_objects.is_empty() {
            return BadFailureSnafu {
                objects: response.converted_objects.len(),
            }
            .fail();
        }
        return Ok(());
    }
    if response.uid == request.uid && !response.result.is_success() {
        return NoStatusSnafu.fail();
    }
    check(request, response, true)
}

fn check(
    request: &ConversionRequest,
    response: &ConversionResponse,
    strict: bool,
) -> Result<(), InvariantViolation> {
    if response.uid != request.uid {
        return UidSnafu {
            expected: request.uid.clone(),
            found: response.uid.clone(),
        }
        .fail();
    }
    if !response.result.is_success() {
        return Ok(());
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
        let empty = Map::new();
        let sent_meta = metadata_of(sent).unwrap_or(&empty);
        let got_meta = match got.get("metadata") {
            Some(Value::Object(map)) => map,
            _ => return MissingMetadataSnafu { index }.fail(),
        };
        let json = |v: Option<&Value>| v.map_or_else(|| "(absent)".to_owned(), Value::to_string);
        // Compared as the API server reads them: a missing or non-string field is "".
        for field in ["name", "namespace", "uid"] {
            if field_text(sent_meta, field) != field_text(got_meta, field) {
                return MetadataSnafu {
                    index,
                    field,
                    expected: json(sent_meta.get(field)),
                    found: json(got_meta.get(field)),
                }
                .fail();
            }
        }
        for field in ["labels", "annotations"] {
            check_string_map(
                index,
                field,
                sent_meta.get(field),
                got_meta.get(field),
                strict,
            )?;
        }
        if !strict {
            continue;
        }
        let mut keys: Vec<&String> = sent_meta.keys().chain(got_meta.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            if key == "labels" || key == "annotations" {
                continue;
            }
            let (expected, found) = (sent_meta.get(key), got_meta.get(key));
            if expected != found {
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
    use kube::core::Status;
    use serde_json::json;

    use super::*;

    fn request() -> ConversionRequest {
        ConversionRequest {
            types: None,
            uid: "u".into(),
            desired_api_version: "example.com/v1".into(),
            objects: vec![json!({
                "apiVersion": "example.com/v1beta1", "kind": "CronTab",
                "metadata": {"name": "a", "namespace": "ns", "uid": "1", "resourceVersion": "7",
                             "labels": {"app": "x"}, "annotations": {"note": "n"}},
                "spec": {}
            })],
        }
    }

    /// The answer with the converted object changed by `tweak`.
    fn answer(tweak: impl FnOnce(&mut Value)) -> ConversionResponse {
        let request = request();
        let mut object = request.objects[0].clone();
        object["apiVersion"] = json!("example.com/v1");
        tweak(&mut object);
        ConversionResponse::for_request(request).success(vec![object])
    }

    fn verdicts(tweak: impl FnOnce(&mut Value)) -> (bool, bool) {
        let response = answer(tweak);
        (
            check_response(&request(), &response).is_ok(),
            check_response_strict(&request(), &response).is_ok(),
        )
    }

    #[test]
    fn the_api_servers_rules() {
        // (accepted by the API server, accepted by the strict check)
        assert_eq!(verdicts(|_| {}), (true, true));
        assert_eq!(
            verdicts(|o| o["metadata"]["resourceVersion"] = json!("8")),
            (true, false)
        );
        assert_eq!(
            verdicts(|o| o["metadata"]["annotations"]["Example.COM/Key"] = json!("v")),
            (true, true)
        );
        assert_eq!(
            verdicts(|o| o["metadata"]["labels"] = Value::Null),
            (true, true)
        );
        assert_eq!(
            verdicts(|o| o["metadata"]["labels"]["app"] = json!("-bad-")),
            (false, false)
        );
        assert_eq!(
            verdicts(|o| o["metadata"]["labels"]["Example.com/x"] = json!("v")),
            (false, false)
        );
        assert_eq!(
            verdicts(|o| o["metadata"]["annotations"]["note"] = json!(1)),
            (false, false)
        );
        assert_eq!(
            verdicts(|o| o["metadata"]["name"] = json!("b")),
            (false, false)
        );
        assert_eq!(
            verdicts(|o| o["metadata"]["uid"] = json!("2")),
            (false, false)
        );
        assert_eq!(
            verdicts(|o| {
                o.as_object_mut().map(|m| m.remove("metadata"));
            }),
            (false, false)
        );
        assert_eq!(verdicts(|o| o["kind"] = json!("AtJob")), (false, false));
        assert_eq!(
            verdicts(|o| o["apiVersion"] = json!("example.com/v1beta1")),
            (false, false)
        );
        assert_eq!(
            verdicts(|o| o["metadata"]["annotations"]["big"] = json!("x".repeat(256 * 1024))),
            (false, false)
        );
    }

    #[test]
    fn failures_and_uids() {
        let request = request();
        let failed = ConversionResponse::for_request(request.clone())
            .failure(Status::failure("no", "BadRequest"));
        assert!(check_response(&request, &failed).is_ok());
        assert!(check_response_strict(&request, &failed).is_ok());
        // No status at all: the API server reports "status was '', not 'Success'".
        let unset = ConversionResponse::for_request(request.clone());
        assert!(check_response(&request, &unset).is_ok());
        assert_eq!(
            check_response_strict(&request, &unset),
            Err(InvariantViolation::NoStatus)
        );
        let mut other = answer(|_| {});
        other.uid = "other".into();
        assert!(matches!(
            check_response(&request, &other),
            Err(InvariantViolation::Uid { .. })
        ));
        let mut short = answer(|_| {});
        short.converted_objects.clear();
        assert!(matches!(
            check_response(&request, &short),
            Err(InvariantViolation::Count { .. })
        ));
    }
}

//! Decoding an `AdmissionReview` into the handler's type, and the definite refusal of one that
//! does not decode.
//!
//! The API server treats an HTTP error from a webhook as a failed call and applies the
//! webhook's `failurePolicy`: with `Ignore`, a review the server could not read would be
//! admitted unvalidated. So, as controller-runtime does (`pkg/webhook/admission/http.go`
//! answers `Errored(http.StatusBadRequest, err)` in an `AdmissionReview`), every body that
//! reaches an admission route is answered with an `AdmissionReview` whose response is
//! `allowed: false` with code 400 and a message naming what did not decode — carrying the
//! request's `uid` and `apiVersion` whenever they can be read, which is what makes the API
//! server accept the answer as a denial. An object of another kind (CONNECT options such as
//! `PodExecOptions`, a `Deployment` sent to a `Pod` handler) or of a newer schema than the Rust
//! type is such a case.

use bytes::Bytes;
use kube::core::{
    Resource, TypeMeta,
    admission::{AdmissionRequest, AdmissionReview},
};
use serde::{
    Deserializer as _,
    de::{DeserializeOwned, Error as _, IgnoredAny, MapAccess, Visitor},
};
use serde_json::Value;
use snafu::Snafu;

use super::SUPPORTED_ADMISSION_VERSIONS;
use crate::router::Reply;

/// Why an admission route could not decode a request (the message of the refusal).
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum DecodeError {
    /// The body is not JSON.
    #[snafu(display("request body is not valid JSON: {source}"))]
    NotJson {
        /// The parse error.
        source: serde_json::Error,
    },

    /// The body is JSON but not an `AdmissionReview`.
    #[snafu(display("expected kind AdmissionReview, got {kind}"))]
    NotAdmissionReview {
        /// The `kind` found (`<none>` when absent or not a string).
        kind: String,
    },

    /// The `AdmissionReview` is of a version this server does not serve.
    #[snafu(display(
        "unsupported AdmissionReview apiVersion {api_version} (supported: {})",
        SUPPORTED_ADMISSION_VERSIONS.join(", ")
    ))]
    UnsupportedVersion {
        /// The `apiVersion` found.
        api_version: String,
    },

    /// The `AdmissionReview` has no `request`.
    #[snafu(display("AdmissionReview has no request"))]
    NoRequest,

    /// `request.object` or `request.oldObject` does not decode into the handler's type.
    #[snafu(display(
        "{field} (kind {kind}, operation {operation}) does not decode into {type_name}: {source}"
    ))]
    Object {
        /// `request.object` or `request.oldObject`.
        field: &'static str,
        /// The `kind` of the object as sent (`request.kind.kind` when the object has none).
        kind: String,
        /// The request's operation.
        operation: String,
        /// The handler's type.
        type_name: String,
        /// The decode error.
        source: serde_json::Error,
    },

    /// The envelope around the objects is malformed (a field missing or of the wrong type).
    #[snafu(display("malformed AdmissionReview request: {source}"))]
    Envelope {
        /// The decode error.
        source: serde_json::Error,
    },
}

/// The identity of a review, read before the whole is decoded, so that a refusal can answer it.
struct Identity {
    api_version: &'static str,
    uid: String,
}

impl Identity {
    fn of(value: &Value) -> Self {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .and_then(|version| {
                SUPPORTED_ADMISSION_VERSIONS
                    .iter()
                    .copied()
                    .find(|supported| *supported == version)
            })
            .unwrap_or(SUPPORTED_ADMISSION_VERSIONS[0]);
        let uid = value
            .pointer("/request/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Self { api_version, uid }
    }

    fn none() -> Self {
        Self {
            api_version: SUPPORTED_ADMISSION_VERSIONS[0],
            uid: String::new(),
        }
    }
}

/// The short name of `K` (`Pod` for `k8s_openapi::api::core::v1::Pod`).
fn short_type_name<K>() -> &'static str {
    let full = std::any::type_name::<K>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Names what in `value` (a review that did not decode as a whole) fails to decode into `K`.
fn explain<K: DeserializeOwned>(value: &Value, whole: serde_json::Error) -> DecodeError {
    let request = value.get("request");
    let operation = request
        .and_then(|r| r.get("operation"))
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    let request_kind = request
        .and_then(|r| r.pointer("/kind/kind"))
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    for (field, key) in [
        ("request.object", "object"),
        ("request.oldObject", "oldObject"),
    ] {
        let Some(object) = request.and_then(|r| r.get(key)).filter(|o| !o.is_null()) else {
            continue;
        };
        if let Err(source) = K::deserialize(object) {
            let kind = object
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or(request_kind);
            return DecodeError::Object {
                field,
                kind: kind.to_owned(),
                operation: operation.to_owned(),
                type_name: short_type_name::<K>().to_owned(),
                source,
            };
        }
    }
    DecodeError::Envelope { source: whole }
}

/// Decodes a review; what does not decode is answered with a refusal (see the module docs).
///
/// The fast path decodes the body once, straight into `AdmissionRequest<K>`. Anything it does
/// not accept (not JSON, another kind or version, no request, an object that is not a `K`,
/// duplicate keys) goes to [`decode_slow`], which answers exactly as it always has.
pub(crate) fn decode<K>(body: &Bytes) -> Result<AdmissionRequest<K>, Reply>
where
    K: Resource + DeserializeOwned,
{
    let mut slot = None;
    if decode_fast::<K>(body, &mut slot).is_some()
        && let Some(request) = slot
    {
        record_request(&request);
        return Ok(request);
    }
    decode_slow(body)
}

/// The envelope of a review as the fast path reads it, the request decoded straight from the
/// body into `request`, the caller's slot: no intermediate `serde_json::Value` tree (kube's
/// `AdmissionReview` flattens its `TypeMeta`, which makes serde buffer the whole review before
/// decoding it), and the request (5.6 KB for a Pod) is not moved through the layers of a
/// derived struct and their `Result`s on its way out (each move a `memcpy` of its size).
/// Refused, as derived `Deserialize` refuses them: a key given twice; and, as the reference
/// decoder refuses it, a review that is not a JSON object (a derived struct also reads the list
/// of its fields' values). Keys, `apiVersion` and `kind` are read borrowed, so one written with
/// escapes is refused here and read by the reference decoder.
struct Envelope<'s, K: Resource> {
    request: &'s mut Option<AdmissionRequest<K>>,
}

impl<'de, K: Resource + DeserializeOwned> Visitor<'de> for Envelope<'_, K> {
    /// `apiVersion` and `kind`, when given (and not `null`).
    type Value = (Option<&'de str>, Option<&'de str>);

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("an AdmissionReview")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut api_version, mut kind, mut request) = (None, None, false);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "apiVersion" if api_version.is_none() => {
                    api_version = Some(map.next_value::<Option<&'de str>>()?);
                }
                "kind" if kind.is_none() => kind = Some(map.next_value::<Option<&'de str>>()?),
                "request" if !request => {
                    request = true;
                    *self.request = map.next_value()?;
                }
                "apiVersion" | "kind" | "request" => {
                    return Err(A::Error::custom("a key given twice"));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((api_version.flatten(), kind.flatten()))
    }
}

/// One pass from the body into `slot`, the typed request; `None` when anything is off (`slot`
/// may then hold a request, which the caller drops). One UTF-8 check of the whole body, then
/// serde_json reads it as text: `from_slice` checks each string it reads on its own, keys
/// included (315 in the 4.5 KB Pod review of the bench: 29,500 instructions, against 2,000 for
/// one check of the whole body); a body that is not UTF-8 is not JSON either, and is refused by
/// [`decode_slow`] as it always has been.
fn decode_fast<K>(body: &[u8], slot: &mut Option<AdmissionRequest<K>>) -> Option<()>
where
    K: Resource + DeserializeOwned,
{
    let mut reader = serde_json::Deserializer::from_str(std::str::from_utf8(body).ok()?);
    let (api_version, kind) = reader.deserialize_map(Envelope { request: slot }).ok()?;
    reader.end().ok()?;
    if kind != Some("AdmissionReview") {
        return None;
    }
    let api_version = api_version.and_then(|version| {
        SUPPORTED_ADMISSION_VERSIONS
            .iter()
            .copied()
            .find(|supported| *supported == version)
    })?;
    slot.as_mut()?.types = TypeMeta {
        api_version: api_version.to_owned(),
        kind: "AdmissionReview".to_owned(),
    };
    Some(())
}

/// `request.object` as a JSON tree, as the reference decoder reads it (the last of duplicate
/// keys wins); `None` when absent or `null`.
pub(super) fn raw_object_tree(body: &[u8]) -> Option<Value> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    value
        .pointer_mut("/request/object")
        .map(Value::take)
        .filter(|object| !object.is_null())
}

/// Puts the request's identity on the current (`webhook`) span, in one record (see
/// [`crate::span_fields`]).
fn record_request<K: Resource>(request: &AdmissionRequest<K>) {
    let operation = tracing::field::debug(&request.operation);
    crate::span_fields::record(
        &tracing::Span::current(),
        [
            ("uid", Some(&request.uid.as_str())),
            ("kind", Some(&request.kind.kind.as_str())),
            (
                "namespace",
                Some(&request.namespace.as_deref().unwrap_or("")),
            ),
            ("name", Some(&request.name.as_str())),
            ("operation", Some(&operation)),
        ],
    );
}

/// The reference decoder: the body as a JSON tree, the envelope checked field by field, then
/// the typed review; a refusal names what did not decode.
fn decode_slow<K>(body: &Bytes) -> Result<AdmissionRequest<K>, Reply>
where
    K: Resource + DeserializeOwned,
{
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(source) => return Err(refusal(&Identity::none(), &DecodeError::NotJson { source })),
    };
    let identity = Identity::of(&value);
    if let Err(error) = check_envelope(&value) {
        return Err(refusal(&identity, &error));
    }
    let review: AdmissionReview<K> = match serde_json::from_value(value) {
        Ok(review) => review,
        Err(whole) => {
            // The failure path reads the body again to name what did not decode; the
            // success path moves the parsed tree into the typed review without a copy.
            let error = match serde_json::from_slice::<Value>(body) {
                Ok(value) => explain::<K>(&value, whole),
                Err(_) => DecodeError::Envelope { source: whole },
            };
            return Err(refusal(&identity, &error));
        }
    };
    let request: AdmissionRequest<K> = match review.try_into() {
        Ok(request) => request,
        Err(_) => return Err(refusal(&identity, &DecodeError::NoRequest)),
    };
    record_request(&request);
    Ok(request)
}

/// Checks `kind`, `apiVersion` and the presence of `request`.
fn check_envelope(value: &Value) -> Result<(), DecodeError> {
    let kind = value.get("kind").and_then(Value::as_str);
    if kind != Some("AdmissionReview") {
        return NotAdmissionReviewSnafu {
            kind: kind.unwrap_or("<none>"),
        }
        .fail();
    }
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    if !api_version.is_some_and(|v| SUPPORTED_ADMISSION_VERSIONS.contains(&v)) {
        return UnsupportedVersionSnafu {
            api_version: api_version.unwrap_or("<none>"),
        }
        .fail();
    }
    if value.get("request").is_none_or(Value::is_null) {
        return NoRequestSnafu.fail();
    }
    Ok(())
}

/// An `AdmissionReview` refusing the request: `allowed: false`, code 400, reason `BadRequest`.
fn refusal(identity: &Identity, error: &DecodeError) -> Reply {
    let message = error.to_string();
    let span = tracing::Span::current();
    span.record("uid", identity.uid.as_str());
    tracing::warn!(%message, "refusing an admission request that does not decode");
    let review = serde_json::json!({
        "apiVersion": identity.api_version,
        "kind": "AdmissionReview",
        "response": {
            "uid": identity.uid,
            "allowed": false,
            "status": {
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "BadRequest",
                "code": 400,
            },
        },
    });
    Reply::json(200, review.to_string().into_bytes(), "bad_request")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use k8s_openapi::api::core::v1::Pod;
    use tracing::field::Empty;

    use super::*;

    /// The lines a text `fmt` subscriber writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_request_is_recorded_on_the_current_span() {
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "name": "web-0",
                "namespace": "shop",
                "operation": "DELETE",
                "userInfo": {"username": "tester"},
                "oldObject": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}},
            },
        });
        let body = Bytes::from(serde_json::to_vec(&body).unwrap());
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // The server's span: every field, in one record.
            tracing::info_span!(
                "webhook",
                route = "/v",
                uid = Empty,
                kind = Empty,
                namespace = Empty,
                name = Empty,
                operation = Empty,
                outcome = Empty,
            )
            .in_scope(|| {
                decode::<Pod>(&body).unwrap();
                tracing::info!("whole");
            });
            // A span with some of the fields gets those.
            tracing::info_span!("partial", name = Empty, uid = Empty).in_scope(|| {
                decode::<Pod>(&body).unwrap();
                tracing::info!("some");
            });
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(
                r#"webhook{route="/v" uid="u-1" kind="Pod" namespace="shop" name="web-0" operation=Delete}: "#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"partial{uid="u-1" name="web-0"}: "#),
            "{text}"
        );
    }

    /// What the fast path reads, the reference decoder reads the same; what it does not read, it
    /// leaves to the reference decoder (whose answer is then the answer).
    #[test]
    fn the_fast_path_reads_only_what_the_reference_decoder_reads() {
        let request = serde_json::json!({
            "uid": "u-2",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"}},
        })
        .to_string();
        let review = |head: &str, tail: &str| format!(r#"{{{head}"request":{request}{tail}}}"#);
        let v1 = r#""apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","#;
        let cases = [
            // (body, read by the fast path)
            (review(v1, ""), true),
            (
                review(
                    r#""apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","#,
                    "",
                ),
                true,
            ),
            (
                review(&format!("{v1}\"extra\":[1,{{}}],"), r#","more":null"#),
                true,
            ),
            (format!(" {} ", review(v1, "")), true),
            // A key given twice.
            (review(v1, &format!(r#","request":{request}"#)), false),
            (
                review(&format!(r#"{v1}"kind":"AdmissionReview","#), ""),
                false,
            ),
            // Escapes in a key or in `kind`.
            (
                review(
                    r#""apiVersion":"admission.k8s.io/v1","ki\u006ed":"AdmissionReview","#,
                    "",
                ),
                false,
            ),
            (
                review(
                    r#""apiVersion":"admission.k8s.io\/v1","kind":"AdmissionReview","#,
                    "",
                ),
                false,
            ),
            // Not a review of a version served, or of another kind, or without a request.
            (
                review(
                    r#""apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","#,
                    "",
                ),
                false,
            ),
            (
                review(r#""apiVersion":"admission.k8s.io/v1","kind":null,"#, ""),
                false,
            ),
            (format!(r#"{{{v1}"request":null}}"#), false),
            (format!(r#"{{{v1}"uid":"x"}}"#), false),
            // A list of the values of the fields, in their order (derived structs read it).
            (
                format!(r#"["admission.k8s.io/v1","AdmissionReview",{request}]"#),
                false,
            ),
            // Not JSON, or more after it.
            (format!("{} x", review(v1, "")), false),
            (review(v1, "").replace("web-1", r"web-\u12"), false),
        ];
        for (body, fast_reads) in cases {
            let mut slot = None;
            let fast = decode_fast::<Pod>(body.as_bytes(), &mut slot).and(slot);
            assert_eq!(fast.is_some(), fast_reads, "{body}");
            let reference = decode_slow::<Pod>(&Bytes::from(body.clone()));
            if let Some(fast) = fast {
                let Ok(reference) = &reference else {
                    panic!("the reference refuses {body}");
                };
                assert_eq!(
                    serde_json::to_value(&fast).unwrap(),
                    serde_json::to_value(reference).unwrap(),
                    "{body}"
                );
            }
            // Whichever path reads it, `decode` answers as the reference decoder does.
            assert_eq!(
                decode::<Pod>(&Bytes::from(body.clone())).is_ok(),
                reference.is_ok(),
                "{body}"
            );
        }
    }

    #[test]
    fn short_type_names() {
        assert_eq!(short_type_name::<Pod>(), "Pod");
        assert_eq!(short_type_name::<Vec<Pod>>(), "Vec");
    }
}

//! Typed validating and mutating admission handlers
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>).
//!
//! A handler receives kube's [`AdmissionRequest<K>`] with `object` and `oldObject` decoded into
//! `K`. A validating handler answers a [`Validation`]; a mutating handler answers a
//! [`Mutation<K>`] holding the modified object, from which the server computes the JSON Patch
//! against the object **exactly as received**: fields the Rust type does not know are kept.

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc};

use bytes::Bytes;
use futures::{FutureExt, future::BoxFuture};
use kube::core::{
    Resource,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::router::{Reply, panic_message};

/// The `apiVersion`s of `AdmissionReview` the server accepts and echoes back.
pub const SUPPORTED_ADMISSION_VERSIONS: [&str; 2] =
    ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// The answer of a validating handler: allow, or deny with a reason and an HTTP-style code,
/// plus warnings shown to the API client either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    allowed: bool,
    code: u16,
    reason: String,
    warnings: Vec<String>,
}

impl Validation {
    /// Admits the request.
    pub fn allow() -> Self {
        Self {
            allowed: true,
            code: 200,
            reason: String::new(),
            warnings: Vec::new(),
        }
    }

    /// Refuses the request with a reason shown to the API client (code 403 unless changed).
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            code: 403,
            reason: reason.into(),
            warnings: Vec::new(),
        }
    }

    /// Sets the HTTP-style code returned to the API client with a denial (e.g. 400, 422).
    #[must_use]
    pub fn with_code(mut self, code: u16) -> Self {
        self.code = code;
        self
    }

    /// Adds a warning (shown by kubectl as `Warning: ...`). Keep it under 120 characters.
    #[must_use]
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    /// Whether the request is admitted.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    fn into_response(self, base: AdmissionResponse) -> AdmissionResponse {
        let mut response = if self.allowed {
            base
        } else {
            let mut denied = base.deny(self.reason);
            denied.result.code = self.code;
            denied.result.status = Some(kube::core::response::StatusSummary::Failure);
            denied
        };
        if !self.warnings.is_empty() {
            response.warnings = Some(self.warnings);
        }
        response
    }
}

/// What a mutating handler did with the object.
#[derive(Clone, Debug, PartialEq)]
enum MutationOutcome<K> {
    Unchanged,
    Patched(Box<K>),
    Denied { reason: String, code: u16 },
}

/// The answer of a mutating handler: the modified object (the server computes the patch),
/// no change, or a denial; plus warnings.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation<K> {
    outcome: MutationOutcome<K>,
    warnings: Vec<String>,
}

impl<K> Mutation<K> {
    /// Admits the request without changing the object.
    pub fn unchanged() -> Self {
        Self {
            outcome: MutationOutcome::Unchanged,
            warnings: Vec::new(),
        }
    }

    /// Admits the request with `object` as the desired state. The server diffs it against the
    /// object as received and sends a JSON Patch (none when nothing changed).
    pub fn patched(object: K) -> Self {
        Self {
            outcome: MutationOutcome::Patched(Box::new(object)),
            warnings: Vec::new(),
        }
    }

    /// Refuses the request (code 403 unless changed with [`Mutation::with_code`]).
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            outcome: MutationOutcome::Denied {
                reason: reason.into(),
                code: 403,
            },
            warnings: Vec::new(),
        }
    }

    /// Sets the code of a denial; no effect otherwise.
    #[must_use]
    pub fn with_code(mut self, new_code: u16) -> Self {
        if let MutationOutcome::Denied { code, .. } = &mut self.outcome {
            *code = new_code;
        }
        self
    }

    /// Adds a warning shown to the API client.
    #[must_use]
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }
}

/// A validating admission handler for objects of type `K`.
///
/// Implemented for every `Fn(AdmissionRequest<K>) -> impl Future<Output = Validation>`.
pub trait ValidatingHandler<K: Resource>: Send + Sync + 'static {
    /// Decides on one request.
    fn validate(&self, request: AdmissionRequest<K>) -> impl Future<Output = Validation> + Send;
}

impl<K, F, Fut> ValidatingHandler<K> for F
where
    K: Resource,
    F: Fn(AdmissionRequest<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Validation> + Send,
{
    fn validate(&self, request: AdmissionRequest<K>) -> impl Future<Output = Validation> + Send {
        self(request)
    }
}

/// A mutating admission handler for objects of type `K`.
///
/// Implemented for every `Fn(AdmissionRequest<K>) -> impl Future<Output = Mutation<K>>`.
/// The object to modify is `request.object` (absent for DELETE).
pub trait MutatingHandler<K: Resource>: Send + Sync + 'static {
    /// Mutates (or not) one request's object.
    fn mutate(&self, request: AdmissionRequest<K>) -> impl Future<Output = Mutation<K>> + Send;
}

impl<K, F, Fut> MutatingHandler<K> for F
where
    K: Resource,
    F: Fn(AdmissionRequest<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Mutation<K>> + Send,
{
    fn mutate(&self, request: AdmissionRequest<K>) -> impl Future<Output = Mutation<K>> + Send {
        self(request)
    }
}

/// Decoded review plus the raw request object (as received) for patch computation.
struct Decoded<K: Resource> {
    request: AdmissionRequest<K>,
    raw_object: Option<Value>,
}

fn decode<K>(body: &Bytes, keep_raw: bool) -> Result<Decoded<K>, Reply>
where
    K: Resource + DeserializeOwned,
{
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| Reply::bad_request(format!("request body is not valid JSON: {error}")))?;
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let kind = value.get("kind").and_then(Value::as_str);
    if kind != Some("AdmissionReview") {
        return Err(Reply::bad_request(format!(
            "expected kind AdmissionReview, got {}",
            kind.unwrap_or("<none>")
        )));
    }
    if !api_version.is_some_and(|v| SUPPORTED_ADMISSION_VERSIONS.contains(&v)) {
        return Err(Reply::bad_request(format!(
            "unsupported AdmissionReview apiVersion {} (supported: {})",
            api_version.unwrap_or("<none>"),
            SUPPORTED_ADMISSION_VERSIONS.join(", ")
        )));
    }
    let raw_object = keep_raw
        .then(|| value.get("request"))
        .flatten()
        .and_then(|request| request.get("object"))
        .filter(|object| !object.is_null())
        .cloned();
    let review: AdmissionReview<K> = serde_json::from_value(value)
        .map_err(|error| Reply::bad_request(format!("malformed AdmissionReview: {error}")))?;
    let request: AdmissionRequest<K> = review
        .try_into()
        .map_err(|_| Reply::bad_request("AdmissionReview has no request".to_owned()))?;
    let span = tracing::Span::current();
    span.record("uid", request.uid.as_str());
    span.record("kind", request.kind.kind.as_str());
    span.record("namespace", request.namespace.as_deref().unwrap_or(""));
    span.record("name", request.name.as_str());
    span.record("operation", tracing::field::debug(&request.operation));
    Ok(Decoded {
        request,
        raw_object,
    })
}

fn review_reply(response: AdmissionResponse, outcome: &'static str) -> Reply {
    // kube-core serialises `patch` (a Go `[]byte`) as an array of numbers; the API server
    // accepts that, but the documented wire form is a base64 string, so send that.
    let patch = response.patch.clone();
    let mut review = match serde_json::to_value(response.into_review()) {
        Ok(review) => review,
        Err(error) => {
            return Reply::internal(format!("failed to serialise AdmissionReview: {error}"));
        }
    };
    if let (Some(patch), Some(slot)) = (
        patch,
        review
            .get_mut("response")
            .and_then(|response| response.get_mut("patch")),
    ) {
        use base64::Engine as _;
        *slot = Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    match serde_json::to_vec(&review) {
        Ok(body) => Reply::json(200, body, outcome),
        Err(error) => Reply::internal(format!("failed to serialise AdmissionReview: {error}")),
    }
}

fn panic_response(base: AdmissionResponse, message: &str) -> AdmissionResponse {
    let mut response = base.deny(format!("webhook handler panicked: {message}"));
    response.result.code = 500;
    response.result.status = Some(kube::core::response::StatusSummary::Failure);
    response.result.reason = "InternalError".to_owned();
    response
}

pub(crate) fn validating_route<K, H>(handler: H) -> crate::router::BoxHandler
where
    K: Resource + DeserializeOwned + Send + 'static,
    H: ValidatingHandler<K>,
{
    let handler = Arc::new(handler);
    Arc::new(move |body: Bytes| -> BoxFuture<'static, Reply> {
        let handler = handler.clone();
        Box::pin(async move {
            let decoded = match decode::<K>(&body, false) {
                Ok(decoded) => decoded,
                Err(reply) => return reply,
            };
            let base = AdmissionResponse::from(&decoded.request);
            let request = decoded.request;
            let verdict = AssertUnwindSafe(async move { handler.validate(request).await })
                .catch_unwind()
                .await;
            match verdict {
                Ok(validation) => {
                    let outcome = if validation.allowed {
                        "allowed"
                    } else {
                        "denied"
                    };
                    review_reply(validation.into_response(base), outcome)
                }
                Err(panic) => {
                    let message = panic_message(&panic);
                    tracing::error!(panic = %message, "validating handler panicked");
                    review_reply(panic_response(base, &message), "panic")
                }
            }
        })
    })
}

pub(crate) fn mutating_route<K, H>(handler: H) -> crate::router::BoxHandler
where
    K: Resource + DeserializeOwned + Serialize + Send + 'static,
    H: MutatingHandler<K>,
{
    let handler = Arc::new(handler);
    Arc::new(move |body: Bytes| -> BoxFuture<'static, Reply> {
        let handler = handler.clone();
        Box::pin(async move {
            let decoded = match decode::<K>(&body, true) {
                Ok(decoded) => decoded,
                Err(reply) => return reply,
            };
            let base = AdmissionResponse::from(&decoded.request);
            // The object as the Rust type sees it: the base of the three-way merge.
            let typed_original = match decoded.request.object.as_ref().map(serde_json::to_value) {
                Some(Ok(value)) => Some(value),
                Some(Err(error)) => {
                    return Reply::internal(format!("failed to serialise the object: {error}"));
                }
                None => None,
            };
            let request = decoded.request;
            let mutation = AssertUnwindSafe(async move { handler.mutate(request).await })
                .catch_unwind()
                .await;
            let mutation = match mutation {
                Ok(mutation) => mutation,
                Err(panic) => {
                    let message = panic_message(&panic);
                    tracing::error!(panic = %message, "mutating handler panicked");
                    return review_reply(panic_response(base, &message), "panic");
                }
            };
            let mut response = base;
            if !mutation.warnings.is_empty() {
                response.warnings = Some(mutation.warnings);
            }
            match mutation.outcome {
                MutationOutcome::Unchanged => review_reply(response, "allowed"),
                MutationOutcome::Denied { reason, code } => {
                    let mut response = response.deny(reason);
                    response.result.code = code;
                    response.result.status = Some(kube::core::response::StatusSummary::Failure);
                    review_reply(response, "denied")
                }
                MutationOutcome::Patched(object) => {
                    let (Some(raw), Some(typed_original)) = (decoded.raw_object, typed_original)
                    else {
                        tracing::warn!(
                            "mutating handler patched a request without an object (DELETE?); ignored"
                        );
                        return review_reply(response, "allowed");
                    };
                    let desired = match serde_json::to_value(&object) {
                        Ok(value) => value,
                        Err(error) => {
                            return Reply::internal(format!(
                                "failed to serialise the mutated object: {error}"
                            ));
                        }
                    };
                    let patch = compute_patch(&raw, &typed_original, &desired);
                    if patch.0.is_empty() {
                        return review_reply(response, "allowed");
                    }
                    match response.with_patch(patch) {
                        Ok(response) => review_reply(response, "patched"),
                        Err(error) => {
                            Reply::internal(format!("failed to serialise patch: {error}"))
                        }
                    }
                }
            }
        })
    })
}

/// Computes the JSON Patch that turns `raw` (the object as received) into `raw` with the
/// changes the handler made, where the handler's changes are `typed_original -> desired`
/// (both serialised from the Rust type).
///
/// A three-way merge: subtrees the handler did not change keep their raw JSON, so fields the
/// Rust type does not know (or normalises away) are never removed by the patch. Lists whose
/// elements all carry a `name` (containers, volumes, env, ...) are matched by name, other lists
/// by position.
pub fn compute_patch(raw: &Value, typed_original: &Value, desired: &Value) -> json_patch::Patch {
    let mut merged = raw.clone();
    merge3(&mut merged, typed_original, desired);
    json_patch::diff(raw, &merged)
}

fn element_name(value: &Value) -> Option<&str> {
    value.get("name").and_then(Value::as_str)
}

fn merge3(target: &mut Value, base: &Value, desired: &Value) {
    if base == desired {
        // The handler left this subtree alone: keep the raw JSON untouched.
        return;
    }
    match (target, base, desired) {
        (Value::Object(target), Value::Object(base), Value::Object(desired)) => {
            for (key, desired_value) in desired {
                match (target.get_mut(key), base.get(key)) {
                    (Some(target_value), Some(base_value)) => {
                        merge3(target_value, base_value, desired_value)
                    }
                    _ => {
                        target.insert(key.clone(), desired_value.clone());
                    }
                }
            }
            for key in base.keys() {
                if !desired.contains_key(key) {
                    target.remove(key);
                }
            }
        }
        (Value::Array(target), Value::Array(base), Value::Array(desired))
            if target.len() == base.len() =>
        {
            let by_name = base
                .iter()
                .chain(desired.iter())
                .all(|v| element_name(v).is_some());
            let mut result = Vec::with_capacity(desired.len());
            for (index, desired_value) in desired.iter().enumerate() {
                let base_index = if by_name {
                    base.iter()
                        .position(|b| element_name(b) == element_name(desired_value))
                } else if index < base.len() {
                    Some(index)
                } else {
                    None
                };
                match base_index {
                    Some(base_index) => {
                        let mut value = target[base_index].clone();
                        merge3(&mut value, &base[base_index], desired_value);
                        result.push(value);
                    }
                    None => result.push(desired_value.clone()),
                }
            }
            *target = result;
        }
        (target, _, desired) => *target = desired.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_fields_survive_and_changes_apply() {
        let raw = json!({
            "metadata": {"name": "p", "labels": {"a": "1"}, "futureField": {"x": 1}},
            "spec": {"containers": [{"name": "main", "image": "img", "unknownInContainer": true}]}
        });
        // What the Rust type sees: no unknown fields.
        let typed = json!({
            "metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "main", "image": "img"}]}
        });
        let desired = json!({
            "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [
                {"name": "sidecar", "image": "log"},
                {"name": "main", "image": "img"}
            ]}
        });
        let patch = compute_patch(&raw, &typed, &desired);
        let mut patched = raw.clone();
        json_patch::patch(&mut patched, &patch).unwrap();
        assert_eq!(patched["metadata"]["futureField"], json!({"x": 1}));
        assert_eq!(patched["metadata"]["labels"]["b"], json!("2"));
        assert_eq!(patched["spec"]["containers"][0]["name"], json!("sidecar"));
        assert_eq!(
            patched["spec"]["containers"][1]["unknownInContainer"],
            json!(true)
        );
    }

    #[test]
    fn no_change_means_empty_patch() {
        let raw = json!({"a": 1, "unknown": 2});
        let typed = json!({"a": 1});
        assert!(compute_patch(&raw, &typed, &typed).0.is_empty());
    }

    #[test]
    fn removals_apply() {
        let raw = json!({"a": 1, "b": 2, "unknown": 3});
        let typed = json!({"a": 1, "b": 2});
        let desired = json!({"a": 1});
        let mut patched = raw.clone();
        json_patch::patch(&mut patched, &compute_patch(&raw, &typed, &desired)).unwrap();
        assert_eq!(patched, json!({"a": 1, "unknown": 3}));
    }

    #[test]
    fn positional_lists_merge() {
        let raw = json!({"l": [{"v": 1, "u": 0}, {"v": 2}]});
        let typed = json!({"l": [{"v": 1}, {"v": 2}]});
        let desired = json!({"l": [{"v": 5}, {"v": 2}, {"v": 3}]});
        let mut patched = raw.clone();
        json_patch::patch(&mut patched, &compute_patch(&raw, &typed, &desired)).unwrap();
        assert_eq!(
            patched,
            json!({"l": [{"v": 5, "u": 0}, {"v": 2}, {"v": 3}]})
        );
    }

    #[test]
    fn deny_carries_code_and_reason() {
        let v = Validation::deny("nope").with_code(422).with_warning("w");
        assert!(!v.is_allowed());
        assert_eq!(v.code, 422);
        assert_eq!(v.warnings, vec!["w".to_owned()]);
    }
}

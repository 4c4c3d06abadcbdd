//! The validating and mutating routes: decode, call the handler (catching a panic), answer.

use std::{collections::HashMap, panic::AssertUnwindSafe, sync::Arc};

use bytes::Bytes;
use futures::{
    FutureExt,
    future::{BoxFuture, CatchUnwind, Either, Ready, ready},
};
use kube::core::{Resource, admission::AdmissionResponse, response::Status};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    MutatingHandler, ValidatingHandler,
    answer::MutationOutcome,
    decode::{decode, raw_object_tree},
    patch::{compute_patch, compute_patch_tokens},
    snapshot::Snapshot,
    text::review_object,
};
use crate::router::{Reply, panic_message};

/// The answer as written on the wire: kube's `AdmissionReview` envelope around an
/// `AdmissionResponse`, serialised straight from borrowed fields (no intermediate JSON tree).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewAnswer<'a> {
    api_version: &'a str,
    kind: &'a str,
    response: ResponseAnswer<'a>,
}

/// `AdmissionResponse` as serialised by kube-core, except `patch`: kube-core writes it (a Go
/// `[]byte`) as an array of numbers; the API server accepts that, but the documented wire form is
/// a base64 string, so that is what is sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseAnswer<'a> {
    uid: &'a str,
    allowed: bool,
    status: &'a Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    /// `JSONPatch` with a patch (the only type there is; kube-core keeps the field private).
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "is_empty")]
    audit_annotations: &'a HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a Vec<String>>,
}

fn is_empty(map: &&HashMap<String, String>) -> bool {
    map.is_empty()
}

fn review_reply(response: AdmissionResponse, outcome: &'static str) -> Reply {
    use base64::Engine as _;
    let answer = ReviewAnswer {
        api_version: &response.types.api_version,
        kind: &response.types.kind,
        response: ResponseAnswer {
            uid: &response.uid,
            allowed: response.allowed,
            status: &response.result,
            patch: response
                .patch
                .as_ref()
                .map(|patch| base64::engine::general_purpose::STANDARD.encode(patch)),
            patch_type: response.patch.as_ref().map(|_| "JSONPatch"),
            audit_annotations: &response.audit_annotations,
            warnings: response.warnings.as_ref(),
        },
    };
    let mut body = Vec::with_capacity(256);
    match serde_json::to_writer(&mut body, &answer) {
        Ok(()) => Reply::json(200, body, outcome),
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

/// Calls a handler and runs its future, catching a panic of either: of the call itself (a
/// handler that is a plain function doing work before it returns its future) or of the future.
///
/// Not `async move { handler.validate(request).await }.catch_unwind()`: that block would keep its
/// own copy of the request next to the one in the handler's future, and the route's future,
/// moved whole into its box on every request, would be twice as large (14 KB for a Pod; the
/// `AdmissionRequest<Pod>` alone is 5.6 KB).
fn call_handler<F: Future>(
    call: impl FnOnce() -> F,
) -> Either<CatchUnwind<AssertUnwindSafe<F>>, Ready<std::thread::Result<F::Output>>> {
    match std::panic::catch_unwind(AssertUnwindSafe(call)) {
        Ok(future) => Either::Left(AssertUnwindSafe(future).catch_unwind()),
        Err(panic) => Either::Right(ready(Err(panic))),
    }
}

pub(crate) fn validating_route<K, H>(handler: H) -> crate::router::BoxHandler
where
    K: Resource + DeserializeOwned + Send + 'static,
    H: ValidatingHandler<K>,
{
    let handler = Arc::new(handler);
    Arc::new(move |body: Bytes| -> BoxFuture<'static, Reply> {
        Box::pin(validating(handler.clone(), body))
    })
}

/// A validating request, decoded, decided and answered: the future boxed on every request.
///
/// The decoded request is a local of a block that ends before the handler's future is awaited:
/// rustc keeps a local whose scope spans an `.await` in the future's state even after the local
/// was moved out (rust-lang/rust#59087), so a `let request` at the top level cost the future
/// the request's size (5.6 KB for a Pod) on top of the handler's future that holds it, and the
/// whole future is moved into its box.
async fn validating<K, H>(handler: Arc<H>, body: Bytes) -> Reply
where
    K: Resource + DeserializeOwned + Send + 'static,
    H: ValidatingHandler<K>,
{
    let (base, call) = {
        let request = match decode::<K>(&body) {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        drop(body);
        let base = AdmissionResponse::from(&request);
        // The request moves straight into the handler's future, which this future holds once
        // (see `call_handler`).
        (base, call_handler(|| handler.validate(request)))
    };
    match call.await {
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
}

/// The patch of a mutating handler: nothing when the snapshots are the same; otherwise
/// [`compute_patch_tokens`] against `request.object` as found in the body, read only where the
/// handler changed something. The old way, [`compute_patch`] on trees with the object decoded
/// from the body by serde_json, for an object holding serde_json's private types (see
/// [`Snapshot::Tree`]) or a body [`review_object`] does not read (none the decoder read).
fn patch_of(
    body: &[u8],
    original: &Snapshot,
    desired: &Snapshot,
) -> Result<json_patch::Patch, Reply> {
    if let (Snapshot::Tokens(original), Snapshot::Tokens(desired)) = (original, desired) {
        if original == desired {
            return Ok(json_patch::Patch::default());
        }
        if let Some(raw) = std::str::from_utf8(body).ok().and_then(review_object) {
            return compute_patch_tokens(raw, original, desired).map_err(|error| {
                Reply::internal(format!("failed to read the request's object: {error}"))
            });
        }
    }
    let Some(raw) = raw_object_tree(body) else {
        return Err(Reply::internal(
            "the request's object could not be read again".to_owned(),
        ));
    };
    match (original.to_value(), desired.to_value()) {
        (Some(original), Some(desired)) => Ok(compute_patch(&raw, &original, &desired)),
        _ => Err(Reply::internal(
            "failed to read the serialised object".to_owned(),
        )),
    }
}

pub(crate) fn mutating_route<K, H>(handler: H) -> crate::router::BoxHandler
where
    K: Resource + DeserializeOwned + Serialize + Send + 'static,
    H: MutatingHandler<K>,
{
    let handler = Arc::new(handler);
    Arc::new(move |body: Bytes| -> BoxFuture<'static, Reply> {
        Box::pin(mutating(handler.clone(), body))
    })
}

/// A mutating request, decoded, handled and answered with its patch: the future boxed on every
/// request.
async fn mutating<K, H>(handler: Arc<H>, body: Bytes) -> Reply
where
    K: Resource + DeserializeOwned + Serialize + Send + 'static,
    H: MutatingHandler<K>,
{
    // The request in a block of its own (see `validating`).
    let (base, typed_original, call) = {
        let request = match decode::<K>(&body) {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        let base = AdmissionResponse::from(&request);
        // The object as the Rust type sees it: the base of the three-way merge (as
        // `serde_json::to_value` sees it, see `Snapshot`).
        let typed_original = match request.object.as_ref().map(Snapshot::of) {
            Some(Ok(snapshot)) => Some(snapshot),
            Some(Err(error)) => {
                return Reply::internal(format!("failed to serialise the object: {error}"));
            }
            None => None,
        };
        (
            base,
            typed_original,
            call_handler(|| handler.mutate(request)),
        )
    };
    let mutation = match call.await {
        Ok(mutation) => mutation,
        Err(panic) => {
            let message = panic_message(&panic);
            tracing::error!(panic = %message, "mutating handler panicked");
            return review_reply(panic_response(base, &message), "panic");
        }
    };
    let mut response = base;
    mutation.notes.apply(&mut response);
    match mutation.outcome {
        MutationOutcome::Unchanged => review_reply(response, "allowed"),
        MutationOutcome::Denied { reason, code } => {
            let mut response = response.deny(reason);
            response.result.code = code;
            response.result.status = Some(kube::core::response::StatusSummary::Failure);
            review_reply(response, "denied")
        }
        MutationOutcome::Patched(object) => {
            let Some(typed_original) = typed_original else {
                tracing::warn!(
                    "mutating handler patched a request without an object (DELETE?); ignored"
                );
                return review_reply(response, "allowed");
            };
            let desired = match Snapshot::of(&*object) {
                Ok(snapshot) => snapshot,
                Err(error) => {
                    return Reply::internal(format!(
                        "failed to serialise the mutated object: {error}"
                    ));
                }
            };
            drop(object);
            let patch = match patch_of(&body, &typed_original, &desired) {
                Ok(patch) => patch,
                Err(reply) => return reply,
            };
            if patch.0.is_empty() {
                return review_reply(response, "allowed");
            }
            match response.with_patch(patch) {
                Ok(response) => review_reply(response, "patched"),
                Err(error) => Reply::internal(format!("failed to serialise patch: {error}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::core::admission::AdmissionRequest;

    use super::*;
    use crate::admission::{Mutation, Validation};

    /// The future boxed on every request holds the handler's future, not the decoded request
    /// beside it: with handlers whose futures keep one field of the request, it is smaller than
    /// the request (it was the request's size plus the rest).
    #[test]
    fn the_route_futures_do_not_keep_the_request() {
        let request = size_of::<AdmissionRequest<Pod>>();
        let validating = validating::<Pod, _>(
            Arc::new(|request: AdmissionRequest<Pod>| async move {
                if request.dry_run {
                    Validation::deny("dry run")
                } else {
                    Validation::allow()
                }
            }),
            Bytes::new(),
        );
        assert!(
            size_of_val(&validating) < request,
            "validating: {} bytes, the request {request}",
            size_of_val(&validating)
        );
        let mutating = mutating::<Pod, _>(
            Arc::new(|request: AdmissionRequest<Pod>| async move {
                if request.dry_run {
                    Mutation::deny("dry run")
                } else {
                    Mutation::unchanged()
                }
            }),
            Bytes::new(),
        );
        assert!(
            size_of_val(&mutating) < request,
            "mutating: {} bytes, the request {request}",
            size_of_val(&mutating)
        );
    }
}

//! The validating and mutating routes: decode, call the handler (catching a panic), answer.

use std::{panic::AssertUnwindSafe, sync::Arc};

use bytes::Bytes;
use futures::{FutureExt, future::BoxFuture};
use kube::core::{Resource, admission::AdmissionResponse};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{
    MutatingHandler, ValidatingHandler, answer::MutationOutcome, decode::decode,
    patch::compute_patch,
};
use crate::router::{Reply, panic_message};

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

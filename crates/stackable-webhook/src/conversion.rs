//! The CRD conversion webhook route
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>).
//!
//! The server decodes the `ConversionReview`, hands its request to a [`Converter`] and
//! serialises the answer. It knows nothing of CRD versions: that is the converter's job
//! (see the `stackable-conversion` crate). Only `apiextensions.k8s.io/v1` reviews are converted;
//! another version gets a failed review saying so. Reviews larger than
//! [`INLINE_CONVERSION_MAX_BYTES`] are converted on tokio's blocking pool, off the async workers.

use std::{panic::AssertUnwindSafe, sync::Arc};

use bytes::Bytes;
use futures::future::BoxFuture;
use kube::core::{
    Status,
    conversion::{ConversionRequest, ConversionResponse, ConversionReview},
    response::StatusSummary,
};

use crate::router::{BoxHandler, Reply, panic_message};

/// Converts the objects of one `ConversionReview` request.
///
/// Synchronous on purpose: conversion must be pure and fast. Large reviews run on tokio's
/// blocking pool (see [`INLINE_CONVERSION_MAX_BYTES`]). A panic is caught and answered as a
/// failed conversion (code 500).
pub trait Converter: Send + Sync + 'static {
    /// Converts `request.objects` to `request.desired_api_version`. Build the answer with
    /// `ConversionResponse::for_request(request).success(objects)` or `.failure(status)`.
    fn convert(&self, request: ConversionRequest) -> ConversionResponse;
}

impl<F> Converter for F
where
    F: Fn(ConversionRequest) -> ConversionResponse + Send + Sync + 'static,
{
    fn convert(&self, request: ConversionRequest) -> ConversionResponse {
        self(request)
    }
}

impl<C: Converter + ?Sized> Converter for Arc<C> {
    fn convert(&self, request: ConversionRequest) -> ConversionResponse {
        (**self).convert(request)
    }
}

fn failure(code: u16, reason: &str, message: String) -> Status {
    Status {
        status: Some(StatusSummary::Failure),
        code,
        message,
        metadata: None,
        reason: reason.to_owned(),
        details: None,
    }
}

/// The `apiVersion` of the only `ConversionReview` version served: a review of another version
/// is answered with a failed review (in that version) whose message says so.
pub const CONVERSION_REVIEW_API_VERSION: &str = "apiextensions.k8s.io/v1";

/// Reviews up to this size are converted on the async worker that read them; larger ones on
/// tokio's blocking pool, so that a review of a whole LIST (megabytes, tens to hundreds of
/// milliseconds of CPU) never delays health probes, TLS handshakes or admission requests served
/// by the same worker. Below it, handing the work to another thread would cost more than the
/// conversion itself.
pub const INLINE_CONVERSION_MAX_BYTES: usize = 256 * 1024;

pub(crate) fn conversion_route<C: Converter>(converter: C) -> BoxHandler {
    let converter = Arc::new(converter);
    Arc::new(move |body: Bytes| -> BoxFuture<'static, Reply> {
        let converter = converter.clone();
        Box::pin(async move {
            if body.len() <= INLINE_CONVERSION_MAX_BYTES {
                return answer(converter.as_ref(), &body);
            }
            // The span of this request, so the blocking thread's logs and fields land in it.
            let span = tracing::Span::current();
            let converted = tokio::task::spawn_blocking(move || {
                span.in_scope(|| answer(converter.as_ref(), &body))
            })
            .await;
            match converted {
                Ok(reply) => reply,
                Err(error) => Reply::internal(format!("the conversion task failed: {error}")),
            }
        })
    })
}

/// Decodes the review, converts it (catching a panic) and encodes the answer.
fn answer<C: Converter>(converter: &C, body: &[u8]) -> Reply {
    let review: ConversionReview = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(error) => {
            return Reply::bad_request(format!("malformed ConversionReview: {error}"));
        }
    };
    if review.types.kind != "ConversionReview" {
        return Reply::bad_request(format!(
            "expected kind ConversionReview, got {}",
            review.types.kind
        ));
    }
    if review.types.api_version != CONVERSION_REVIEW_API_VERSION {
        // The API server sends the first of the CRD's `conversionReviewVersions` it supports and
        // expects an answer in that version: a failed review it passes on to the client.
        let message = format!(
            "ConversionReview {:?} is not supported; only {CONVERSION_REVIEW_API_VERSION} (set conversionReviewVersions: [\"v1\"] in the CRD)",
            review.types.api_version
        );
        tracing::warn!(%message, "refusing a ConversionReview");
        let response = ConversionResponse {
            types: Some(review.types),
            uid: review
                .request
                .map(|request| request.uid)
                .unwrap_or_default(),
            result: failure(400, "BadRequest", message),
            converted_objects: Vec::new(),
        };
        return match serde_json::to_vec(&response.into_review()) {
            Ok(body) => Reply::json(200, body, "failed"),
            Err(error) => Reply::internal(format!("failed to serialise ConversionReview: {error}")),
        };
    }
    let request = match ConversionRequest::from_review(review) {
        Ok(request) => request,
        Err(_) => return Reply::bad_request("ConversionReview has no request".to_owned()),
    };
    let span = tracing::Span::current();
    span.record("uid", request.uid.as_str());
    span.record("kind", "ConversionReview");
    span.record("operation", request.desired_api_version.as_str());
    // Only what the answer needs, not a copy of every object.
    let fallback = ConversionResponse::for_request(ConversionRequest {
        types: request.types.clone(),
        uid: request.uid.clone(),
        desired_api_version: request.desired_api_version.clone(),
        objects: Vec::new(),
    });
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| converter.convert(request)));
    let (response, outcome) = match outcome {
        Ok(response) => {
            let failed = response.result.status == Some(StatusSummary::Failure);
            (response, if failed { "failed" } else { "converted" })
        }
        Err(panic) => {
            let message = panic_message(&panic);
            tracing::error!(panic = %message, "converter panicked");
            (
                fallback.failure(failure(
                    500,
                    "InternalError",
                    format!("converter panicked: {message}"),
                )),
                "panic",
            )
        }
    };
    match serde_json::to_vec(&response.into_review()) {
        Ok(body) => Reply::json(200, body, outcome),
        Err(error) => Reply::internal(format!("failed to serialise ConversionReview: {error}")),
    }
}

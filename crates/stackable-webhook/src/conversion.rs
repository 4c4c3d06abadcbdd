//! The CRD conversion webhook route
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>).
//!
//! The server decodes the `ConversionReview`, hands its request to a [`Converter`] and
//! serialises the answer. It knows nothing of CRD versions: that is the converter's job
//! (see the `stackable-conversion` crate). Only `apiextensions.k8s.io/v1` reviews are converted;
//! another version gets a failed review saying so. Reviews larger than
//! [`INLINE_CONVERSION_MAX_BYTES`] are converted off the async workers, one at a time, on one
//! dedicated thread of the process (see [`INLINE_CONVERSION_MAX_BYTES`] for why one).

use std::{
    borrow::Cow,
    panic::AssertUnwindSafe,
    sync::{Arc, OnceLock, mpsc},
};

use bytes::Bytes;
use futures::future::BoxFuture;
use kube::core::{
    Status,
    conversion::{ConversionRequest, ConversionResponse},
    response::StatusSummary,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::router::{BoxHandler, Reply, panic_message};

pub(crate) mod json;

pub use json::ObjectMembers;

/// One `ConversionReview` request with its objects as raw JSON text, borrowed from the request
/// body: nothing of the objects is parsed into trees. The route also hands over where each
/// object's top-level members and those of its `metadata` are, as its reader found them while
/// validating the body ([`object_members`](Self::object_members)); build one with
/// [`new`](Self::new).
#[derive(Debug)]
pub struct RawConversionRequest<'a> {
    /// The request uid (the server echoes it in the answer).
    pub uid: Cow<'a, str>,
    /// The API version to convert to (`group/version`).
    pub desired_api_version: Cow<'a, str>,
    /// The objects, each exactly as received: the JSON text of one value (the server has
    /// checked that the whole review is valid JSON, as serde_json would), without the
    /// whitespace around it.
    pub objects: Vec<&'a str>,
    /// Where the members of the objects are, when the route's own reader read the body.
    members: Option<json::ReviewMembers<'a>>,
}

impl<'a> RawConversionRequest<'a> {
    /// A request of these objects (each the JSON text of one valid JSON value), without notes
    /// on their members ([`object_members`](Self::object_members) gives `None`).
    pub fn new(
        uid: impl Into<Cow<'a, str>>,
        desired_api_version: impl Into<Cow<'a, str>>,
        objects: Vec<&'a str>,
    ) -> Self {
        Self {
            uid: uid.into(),
            desired_api_version: desired_api_version.into(),
            objects,
            members: None,
        }
    }

    /// The top-level members of object `index` and those of its `metadata`, as the route's
    /// reader noted them while validating the body, so that a converter need not read the
    /// object again to find them: exactly what serde_json reads into maps of raw values at
    /// those two levels (a key given twice is given twice, in order; of two `metadata`, the
    /// last counts, as in serde_json). `None` when the request has no notes (the body was read
    /// by serde_json, or the request was built with [`new`](Self::new)) or the object has none
    /// (it is not a JSON object, or a key at those two levels holds escapes).
    pub fn object_members(&self, index: usize) -> Option<ObjectMembers<'_, 'a>> {
        self.members.as_ref()?.object(index)
    }
}

/// Converts the objects of one `ConversionReview` request.
///
/// Synchronous on purpose: conversion must be pure and fast. Large reviews run on the
/// conversion thread (see [`INLINE_CONVERSION_MAX_BYTES`]). A panic is caught and answered as a
/// failed conversion (code 500).
pub trait Converter: Send + Sync + 'static {
    /// Converts `request.objects` to `request.desired_api_version`. Build the answer with
    /// `ConversionResponse::for_request(request).success(objects)` or `.failure(status)`.
    fn convert(&self, request: ConversionRequest) -> ConversionResponse;

    /// What the server calls: converts the objects of `request` and appends the JSON array of
    /// the converted objects (as many, in the same order) to `out`, or returns the failure to
    /// report (what was appended is then discarded). The server writes the rest of the
    /// `ConversionReview`, with the request's uid.
    ///
    /// The default parses each object into a `serde_json::Value` and calls
    /// [`convert`](Self::convert). Override it to convert without building those trees (the
    /// `ConversionRouter` of `stackable-conversion` does: for a review of a whole LIST, most of
    /// the bytes are `managedFields` that a converter only has to copy).
    fn convert_raw(
        &self,
        request: &RawConversionRequest<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Box<Status>> {
        let objects = request
            .objects
            .iter()
            .map(|object| serde_json::from_str(object))
            .collect::<Result<Vec<serde_json::Value>, _>>()
            .map_err(|error| {
                failure(400, "BadRequest", format!("an object is not JSON: {error}"))
            })?;
        let response = self.convert(ConversionRequest {
            types: None,
            uid: request.uid.clone().into_owned(),
            desired_api_version: request.desired_api_version.clone().into_owned(),
            objects,
        });
        if response.result.status != Some(StatusSummary::Success) {
            return Err(Box::new(response.result));
        }
        serde_json::to_writer(out, &response.converted_objects).map_err(|error| {
            Box::new(failure(
                500,
                "InternalError",
                format!("failed to serialise the converted objects: {error}"),
            ))
        })
    }
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

    fn convert_raw(
        &self,
        request: &RawConversionRequest<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Box<Status>> {
        (**self).convert_raw(request, out)
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

/// Reviews up to this size are converted on the async worker that read them; larger ones on a
/// dedicated conversion thread, so that a review of a whole LIST (megabytes, tens of
/// milliseconds of CPU) never delays health probes, TLS handshakes or admission requests served
/// by the same worker. Below it, handing the work to another thread would cost more than the
/// conversion itself.
///
/// The conversion thread is one per process and converts large reviews one after the other
/// (they queue; small ones never wait for it). One thread keeps memory bounded: with glibc's
/// malloc every thread allocates from its own arena and keeps what it freed there for reuse,
/// so answers written on tokio's blocking pool (whichever of its threads was free) left an
/// answer-sized buffer behind in several arenas; written on one thread, one buffer is reused by
/// every large review. If the thread cannot be started, tokio's blocking pool is used.
pub const INLINE_CONVERSION_MAX_BYTES: usize = 256 * 1024;

/// A large review to convert on the conversion thread.
type Job = Box<dyn FnOnce() + Send>;

/// The conversion thread's queue (started on first use); `None` if it could not be started.
fn conversion_thread() -> Option<&'static mpsc::Sender<Job>> {
    static THREAD: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    THREAD
        .get_or_init(|| {
            let (sender, receiver) = mpsc::channel::<Job>();
            let spawned = std::thread::Builder::new()
                .name("webhook-conversion".to_owned())
                .spawn(move || {
                    while let Ok(job) = receiver.recv() {
                        // `answer` catches the converter's panics; this keeps the thread alive
                        // whatever else happens.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                });
            match spawned {
                Ok(_) => Some(sender),
                Err(error) => {
                    tracing::warn!(%error, "cannot start the conversion thread; large reviews are converted on tokio's blocking pool");
                    None
                }
            }
        })
        .as_ref()
}

/// Converts a large review off the async workers: on the conversion thread, else on tokio's
/// blocking pool.
async fn answer_off_workers<C: Converter>(converter: Arc<C>, body: Bytes) -> Reply {
    // The span of this request, so the other thread's logs and fields land in it.
    let span = tracing::Span::current();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let reply = span.in_scope(|| answer(converter.as_ref(), &body));
        // The request body is freed here, before the answer is sent.
        drop(body);
        let _ = sender.send(reply);
    });
    let job = match conversion_thread() {
        Some(thread) => match thread.send(job) {
            Ok(()) => None,
            Err(mpsc::SendError(job)) => Some(job),
        },
        None => Some(job),
    };
    if let Some(job) = job
        && let Err(error) = tokio::task::spawn_blocking(job).await
    {
        return Reply::internal(format!("the conversion task failed: {error}"));
    }
    match receiver.await {
        Ok(reply) => reply,
        Err(_) => Reply::internal("the conversion task failed".to_owned()),
    }
}

pub(crate) fn conversion_route<C: Converter>(converter: C) -> BoxHandler {
    let converter = Arc::new(converter);
    Arc::new(move |body: Bytes| -> BoxFuture<'static, Reply> {
        let converter = converter.clone();
        Box::pin(async move {
            if body.len() <= INLINE_CONVERSION_MAX_BYTES {
                return answer(converter.as_ref(), &body);
            }
            answer_off_workers(converter, body).await
        })
    })
}

/// A `ConversionReview` as received: the objects stay raw JSON borrowed from the body.
#[derive(Deserialize)]
struct ReviewIn<'a> {
    #[serde(rename = "apiVersion", borrow)]
    api_version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize)]
struct RequestIn<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(rename = "desiredAPIVersion", borrow)]
    desired_api_version: Cow<'a, str>,
    #[serde(borrow)]
    objects: Vec<&'a RawValue>,
}

/// Writes `{"apiVersion":…,"kind":"ConversionReview","response":{"uid":…,"result":` into `out`.
fn write_head(out: &mut Vec<u8>, api_version: &str, uid: &str) -> Result<(), serde_json::Error> {
    out.extend_from_slice(br#"{"apiVersion":"#);
    serde_json::to_writer(&mut *out, api_version)?;
    out.extend_from_slice(br#","kind":"ConversionReview","response":{"uid":"#);
    serde_json::to_writer(&mut *out, uid)?;
    out.extend_from_slice(br#","result":"#);
    Ok(())
}

/// A review answering `uid` with `result` and, on success, the objects `write` appends.
fn encode(
    capacity: usize,
    api_version: &str,
    uid: &str,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), Box<Status>>,
) -> Result<crate::buffers::Buffer<u8>, serde_json::Error> {
    let mut buffer = crate::buffers::buffer(capacity);
    let out: &mut Vec<u8> = &mut buffer;
    write_head(out, api_version, uid)?;
    let head = out.len();
    serde_json::to_writer(&mut *out, &Status::success())?;
    out.extend_from_slice(br#","convertedObjects":"#);
    match write(out) {
        Ok(()) => out.extend_from_slice(b"}}"),
        Err(status) => {
            out.truncate(head);
            serde_json::to_writer(&mut *out, &status)?;
            out.extend_from_slice(br#","convertedObjects":[]}}"#);
        }
    }
    Ok(buffer)
}

/// The identity of a converted object, read without the rest of it.
#[derive(Deserialize)]
struct ObjectHead<'a> {
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metadata: Option<MetadataHead<'a>>,
}

#[derive(Deserialize)]
struct MetadataHead<'a> {
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

/// Records the review in the request's `webhook` span: `uid`, the desired version as the
/// `operation`, the number of `objects`, the first object's `kind` (`CronTab`), and its
/// `namespace` and `name` when it is the only one (a GET; a LIST converts many).
fn record_in_span(request: &RawConversionRequest<'_>) {
    let objects = request.objects.len();
    let head = request
        .objects
        .first()
        .and_then(|object| serde_json::from_str::<ObjectHead<'_>>(object).ok());
    let kind = head.as_ref().and_then(|head| head.kind.as_deref());
    let metadata = head
        .as_ref()
        .and_then(|head| head.metadata.as_ref())
        .filter(|_| objects == 1);
    let namespace = metadata.and_then(|metadata| metadata.namespace.as_deref());
    let name = metadata.and_then(|metadata| metadata.name.as_deref());
    // One record (see `crate::span_fields`).
    crate::span_fields::record(
        &tracing::Span::current(),
        [
            ("uid", Some(&request.uid.as_ref())),
            ("operation", Some(&request.desired_api_version.as_ref())),
            ("objects", Some(&objects)),
            (
                "kind",
                kind.as_ref().map(|kind| kind as &dyn tracing::Value),
            ),
            (
                "namespace",
                namespace
                    .as_ref()
                    .map(|namespace| namespace as &dyn tracing::Value),
            ),
            (
                "name",
                name.as_ref().map(|name| name as &dyn tracing::Value),
            ),
        ],
    );
}

/// The review's `apiVersion` and request, or the answer refusing the body.
fn decode(body: &[u8]) -> Result<(Cow<'_, str>, RawConversionRequest<'_>), Reply> {
    // Checking UTF-8 once for the whole body is much faster than serde_json's check of each
    // string (and of each object's raw text) when it reads bytes.
    let text = std::str::from_utf8(body).ok();
    // The common case: one validating pass that also finds the objects (see `json`).
    if let Some(review) = text.and_then(json::review) {
        if review.kind != "ConversionReview" {
            return Err(Reply::bad_request(format!(
                "expected kind ConversionReview, got {}",
                review.kind
            )));
        }
        let request = RawConversionRequest {
            uid: review.uid,
            desired_api_version: review.desired_api_version,
            objects: review.objects,
            members: Some(review.members),
        };
        return Ok((review.api_version, request));
    }
    // Anything else is serde_json's to read or refuse, with its messages.
    let parsed = match text {
        Some(text) => serde_json::from_str(text),
        None => serde_json::from_slice(body),
    };
    let review: ReviewIn<'_> = match parsed {
        Ok(review) => review,
        Err(error) => {
            return Err(Reply::bad_request(format!(
                "malformed ConversionReview: {error}"
            )));
        }
    };
    if review.kind != "ConversionReview" {
        return Err(Reply::bad_request(format!(
            "expected kind ConversionReview, got {}",
            review.kind
        )));
    }
    let Some(request) = review.request else {
        return Err(Reply::bad_request(
            "ConversionReview has no request".to_owned(),
        ));
    };
    let request = RawConversionRequest::new(
        request.uid,
        request.desired_api_version,
        request.objects.iter().map(|object| object.get()).collect(),
    );
    Ok((review.api_version, request))
}

/// Decodes the review, converts it (catching a panic) and encodes the answer.
pub(crate) fn answer<C: Converter>(converter: &C, body: &[u8]) -> Reply {
    let (api_version, request) = match decode(body) {
        Ok(review) => review,
        Err(reply) => return reply,
    };
    record_in_span(&request);
    let mut outcome = "converted";
    let encoded = if api_version != CONVERSION_REVIEW_API_VERSION {
        // The API server sends the first of the CRD's `conversionReviewVersions` it supports and
        // expects an answer in that version: a failed review it passes on to the client.
        let message = format!(
            "ConversionReview {:?} is not supported; only {CONVERSION_REVIEW_API_VERSION} (set conversionReviewVersions: [\"v1\"] in the CRD)",
            api_version
        );
        tracing::warn!(%message, "refusing a ConversionReview");
        outcome = "failed";
        encode(512, &api_version, &request.uid, |_| {
            Err(Box::new(failure(400, "BadRequest", message)))
        })
    } else {
        // The answer is about as large as the review; reserve it once.
        let capacity = body.len() + body.len() / 8 + 1024;
        encode(capacity, &api_version, &request.uid, |out| {
            let converted =
                std::panic::catch_unwind(AssertUnwindSafe(|| converter.convert_raw(&request, out)));
            match converted {
                Ok(Ok(())) => Ok(()),
                Ok(Err(status)) => {
                    outcome = "failed";
                    Err(status)
                }
                Err(panic) => {
                    let message = panic_message(&panic);
                    tracing::error!(panic = %message, "converter panicked");
                    outcome = "panic";
                    Err(Box::new(failure(
                        500,
                        "InternalError",
                        format!("converter panicked: {message}"),
                    )))
                }
            }
        })
    };
    match encoded {
        Ok(body) => Reply::json(200, body.into_bytes(), outcome),
        Err(error) => Reply::internal(format!("failed to serialise ConversionReview: {error}")),
    }
}

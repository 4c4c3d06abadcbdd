//! Entry points for the fuzz targets of `stackable-fuzz` (hidden, not a stable API).
//!
//! A route reads the body the API server sent before any handler runs; these functions run
//! exactly that reading, without a server, TLS or HTTP, so a fuzzer can feed it millions of
//! bodies per minute. See `docs/fuzzing.md`.

use bytes::Bytes;
use kube::core::{Resource, admission::AdmissionRequest};
use serde::de::DeserializeOwned;

use crate::Converter;

/// What an admission route makes of a body before calling its handler: the request, or the
/// answer it sends instead (HTTP status and JSON body; a refusal in an `AdmissionReview`).
pub fn admission_review<K>(body: &[u8]) -> Result<AdmissionRequest<K>, (u16, Vec<u8>)>
where
    K: Resource + DeserializeOwned,
{
    crate::admission::decode::decode::<K>(&Bytes::copy_from_slice(body))
        .map_err(|reply| (reply.status, reply.body))
}

/// What a conversion route answers to a body, with `converter` converting: HTTP status and
/// JSON body.
pub fn conversion_review<C: Converter>(converter: &C, body: &[u8]) -> (u16, Vec<u8>) {
    let reply = crate::conversion::answer(converter, body);
    (reply.status, reply.body)
}

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
        .map_err(|reply| (reply.status, Vec::from(reply.body)))
}

/// What a conversion route answers to a body, with `converter` converting: HTTP status and
/// JSON body.
pub fn conversion_review<C: Converter>(converter: &C, body: &[u8]) -> (u16, Vec<u8>) {
    let reply = crate::conversion::answer(converter, body);
    (reply.status, Vec::from(reply.body))
}

/// The fields the conversion route reads from a review body in its own validating pass:
/// `apiVersion`, `kind`, `request.uid`, `request.desiredAPIVersion` and each object's JSON text;
/// `None` when it leaves the body to serde_json (invalid JSON, or not a plain review). When it
/// reads a body, serde_json must read the same.
pub fn conversion_review_fields(
    body: &str,
) -> Option<(String, String, String, String, Vec<String>)> {
    crate::conversion::json::review(body).map(|review| {
        (
            review.api_version.into_owned(),
            review.kind.into_owned(),
            review.uid.into_owned(),
            review.desired_api_version.into_owned(),
            review
                .objects
                .iter()
                .map(|&object| object.to_owned())
                .collect(),
        )
    })
}

/// The notes on one object: its top-level members but `metadata`, and the members of `metadata`
/// when it is an object (each key and raw JSON value).
pub type NotedObject = (Vec<(String, String)>, Option<Vec<(String, String)>>);

/// The notes the conversion route's own read of a review body takes on each object (see
/// `RawConversionRequest::object_members`), `None` for an object without notes; `None` when it
/// leaves the body to serde_json. Each noted object must be what serde_json reads into maps of
/// raw values at those two levels.
pub fn conversion_review_notes(body: &str) -> Option<Vec<Option<NotedObject>>> {
    let review = crate::conversion::json::review(body)?;
    let owned = |(key, value): (&str, &str)| (key.to_owned(), value.to_owned());
    Some(
        (0..review.objects.len())
            .map(|index| {
                let noted = review.members.object(index)?;
                Some((
                    noted.members().map(owned).collect(),
                    noted
                        .metadata()
                        .map(|metadata| metadata.map(owned).collect()),
                ))
            })
            .collect(),
    )
}

/// Whether the conversion route's JSON validator takes `text` as one JSON value (it must agree
/// with `serde_json::from_str::<serde::de::IgnoredAny>`).
pub fn conversion_json_is_valid(text: &str) -> bool {
    crate::conversion::json::is_json(text)
}

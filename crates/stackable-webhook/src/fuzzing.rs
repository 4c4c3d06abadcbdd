//! Entry points for the fuzz targets of `stackable-fuzz` (hidden, not a stable API).
//!
//! A route reads the body the API server sent before any handler runs; these functions run
//! exactly that reading, without a server, TLS or HTTP, so a fuzzer can feed it millions of
//! bodies per minute. See `docs/fuzzing.md`.

use std::collections::BTreeMap;

use bytes::Bytes;
use kube::core::{Resource, admission::AdmissionRequest};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

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

/// Checks the contract of the notes the conversion route's own read of `body` takes (see
/// [`conversion_review_notes`]): for each object, the noted members, and `metadata`'s, are what
/// serde_json reads into maps of raw values at those two levels (the last of a key given twice
/// counts); an object without notes is not a map, or has a key with escapes at those levels.
/// `Ok` too when the route leaves the body to serde_json. The error names the object and what
/// differs.
pub fn conversion_notes_agree(body: &str) -> Result<(), String> {
    crate::conversion::json::review(body).map_or(Ok(()), |review| notes_agree(&review))
}

/// [`conversion_notes_agree`] of a review the route has read.
pub(crate) fn notes_agree(review: &crate::conversion::json::Review<'_>) -> Result<(), String> {
    for (index, object) in review.objects.iter().enumerate() {
        let noted = review.members.object(index);
        let Some(mut expected) = raw_map(object) else {
            if noted.is_some() {
                return Err(format!(
                    "object {index} is not a map but has notes: {object}"
                ));
            }
            continue;
        };
        let Some(noted) = noted else {
            if !object.contains('\\') {
                return Err(format!("object {index} has no notes: {object}"));
            }
            continue;
        };
        let metadata = expected.remove("metadata");
        let members: Vec<_> = noted.members().collect();
        if members.iter().any(|(k, _)| *k == "metadata") {
            return Err(format!(
                "object {index}: metadata among the members: {object}"
            ));
        }
        if noted_map(members.into_iter()) != expected {
            return Err(format!("object {index}: members differ: {object}"));
        }
        let expected_metadata = metadata.as_deref().and_then(raw_map);
        if noted.metadata().map(noted_map) != expected_metadata {
            return Err(format!("object {index}: metadata differs: {object}"));
        }
    }
    Ok(())
}

/// A JSON object as serde_json reads it into a map of raw values (the last of a key given twice
/// counts); `None` when `json` is not an object.
fn raw_map(json: &str) -> Option<BTreeMap<String, String>> {
    let map: BTreeMap<String, Box<RawValue>> = serde_json::from_str(json).ok()?;
    Some(
        map.into_iter()
            .map(|(k, v)| (k, v.get().to_owned()))
            .collect(),
    )
}

/// Noted members as a map (the last of a key given twice counts, as in serde_json).
fn noted_map<'a>(members: impl Iterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    members.map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

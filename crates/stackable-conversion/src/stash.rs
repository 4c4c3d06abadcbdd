//! Lossless round trips: the fields a version cannot hold are stashed in an annotation.
//!
//! When an object converts from version A to version B, the B object is converted back to A and
//! compared with the original, by meaning (see [`semantic`](crate::semantic): `null`, empty
//! collections and absent fields are one, numbers compare by value). Whatever the round trip did
//! not give back is *lost*; only that is written, as a JSON merge patch, into the annotation
//! `<prefix>A` of the B object (by default `conversion.stackable.tech/stash.A`):
//!
//! ```json
//! {"lost":{"spec":{"timeZone":"Europe/Berlin"}}}
//! ```
//!
//! A lossless object gets no annotation. A conversion along a chain (A -> X -> B) compares the
//! end of the chain with its start, so it writes at most one stash, the one of A.
//!
//! When the object later converts into A, the stash is taken out of the annotations and each lost
//! field is put back, unless the object was changed through B in a way that contradicts it:
//! putting a field back must not change what the object looks like in B (so a field B cannot
//! hold always comes back, and a field B holds differently, like `hostPort: "db:0080"` shown as
//! `port: 80` in B, comes back only while B still says `80`).
//!
//! `status` gets one more rule. The status subresource replaces the whole status and keeps the
//! rest of the object, including the stash, as it was; a status field B cannot hold would then
//! come back from the stash with a stale value. So when lost fields are under `status`, the stash
//! records a digest of the status as A sees it after the round trip (`statusDigest`), and the
//! status part of the stash is put back only while the status converted from B still has that
//! digest. Once the status has been written through B, the status fields B cannot hold are gone
//! (the writer's status wins); the spec part is unaffected.
//!
//! See <https://book.kubebuilder.io/multiversion-tutorial/conversion-concepts> and
//! <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use snafu::ResultExt;

use crate::{
    graph::{InvalidStashSnafu, StepError},
    semantic,
};

/// Top-level keys that are not part of an object's body.
const NON_BODY_KEYS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// The top-level field the status subresource writes.
const STATUS: &str = "status";

/// What a stash annotation holds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Stash {
    /// The lost fields of the body, as a merge patch.
    pub(crate) lost: Map<String, Value>,
    /// With lost `status` fields: the digest of the status after the round trip (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status_digest: Option<String>,
}

impl Stash {
    /// Reads a stash annotation's value.
    pub(crate) fn parse(key: &str, text: &str) -> Result<Self, StepError> {
        serde_json::from_str(text).context(InvalidStashSnafu {
            key: key.to_owned(),
        })
    }

    /// The annotation value.
    pub(crate) fn to_annotation(&self) -> String {
        // Serialising a map of JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The stash of a conversion whose round trip gave `round_trip` back for `original` (both
    /// bodies); `None` when nothing was lost.
    pub(crate) fn of_round_trip(
        original: &Map<String, Value>,
        round_trip: &Map<String, Value>,
    ) -> Option<Self> {
        let lost = semantic::lost_fields(original, round_trip)?;
        let status_digest = lost.contains_key(STATUS).then(|| status_digest(round_trip));
        Some(Self {
            lost,
            status_digest,
        })
    }
}

fn status_digest(body: &Map<String, Value>) -> String {
    format!("{:016x}", semantic::digest(body.get(STATUS)))
}

/// The body of an object: every top-level field except `apiVersion`, `kind` and `metadata`.
pub(crate) fn body(object: &Value) -> Map<String, Value> {
    object
        .as_object()
        .map(|map| {
            map.iter()
                .filter(|(k, _)| !NON_BODY_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces the body of `object` by `new_body`, keeping `apiVersion`, `kind` and `metadata`.
fn set_body(object: &mut Value, new_body: Map<String, Value>) {
    if let Some(map) = object.as_object_mut() {
        map.retain(|k, _| NON_BODY_KEYS.contains(&k.as_str()));
        map.extend(new_body);
    }
}

/// Puts the fields of `stash` back into `current` (the object converted from `source`, in the
/// stash's version), where that does not contradict `source`; see the [module docs](self).
/// `back` converts an object of the stash's version into the version of `source`.
pub(crate) fn restore(
    mut current: Value,
    stash: Stash,
    source: &Map<String, Value>,
    back: &dyn Fn(Value) -> Result<Value, StepError>,
) -> Value {
    let current_body = body(&current);
    let mut lost = stash.lost;
    if lost.contains_key(STATUS)
        && stash.status_digest.as_deref() != Some(status_digest(&current_body).as_str())
    {
        tracing::debug!("status changed since the stash was written; its status part is stale");
        lost.remove(STATUS);
    }
    if lost.is_empty() {
        return current;
    }

    // Usually everything comes back at once: the candidate converts back to the source.
    let mut candidate = current_body.clone();
    semantic::apply_fields(&mut candidate, &lost);
    let with_body = |body: &Map<String, Value>| {
        let mut object = current.clone();
        set_body(&mut object, body.clone());
        object
    };
    let back_body = |body: &Map<String, Value>| back(with_body(body)).map(|b| self::body(&b));
    if back_body(&candidate).is_ok_and(|b| semantic::maps_equivalent(&b, source)) {
        set_body(&mut current, candidate);
        return current;
    }

    // Otherwise field by field: keep those whose return only moves the object, as the source
    // version sees it, towards the source.
    let Ok(mut seen) = back_body(&current_body) else {
        return current;
    };
    let source = Value::Object(source.clone());
    let mut result = current_body;
    for leaf in semantic::leaves(&lost) {
        let mut attempt = result.clone();
        semantic::apply_fields(&mut attempt, &leaf);
        let Ok(attempt_seen) = back_body(&attempt) else {
            continue;
        };
        if semantic::changes_agree(
            Some(&Value::Object(seen.clone())),
            Some(&Value::Object(attempt_seen.clone())),
            Some(&source),
        ) {
            result = attempt;
            seen = attempt_seen;
        }
    }
    set_body(&mut current, result);
    current
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_stash_holds_only_the_lost_fields() {
        let original = map(json!({"spec": {"host": "db", "timeZone": "UTC"}, "status": {"a": 1}}));
        let back = map(json!({"spec": {"host": "db", "timeZone": null}, "status": {"a": 1.0}}));
        let stash = Stash::of_round_trip(&original, &back).unwrap();
        assert_eq!(
            stash.to_annotation(),
            r#"{"lost":{"spec":{"timeZone":"UTC"}}}"#
        );
        assert_eq!(Stash::parse("k", &stash.to_annotation()).unwrap(), stash);
        assert!(Stash::of_round_trip(&original, &original).is_none());
    }

    #[test]
    fn lost_status_fields_carry_a_digest_of_the_round_tripped_status() {
        let original = map(json!({"status": {"a": 1, "onlyInA": "x"}}));
        let back = map(json!({"status": {"a": 1}}));
        let stash = Stash::of_round_trip(&original, &back).unwrap();
        assert_eq!(stash.lost, map(json!({"status": {"onlyInA": "x"}})));
        assert_eq!(stash.status_digest, Some(status_digest(&back)));
    }

    #[test]
    fn a_stash_of_another_shape_is_refused() {
        assert!(Stash::parse("k", r#"{"spec":{"x":1}}"#).is_err());
        assert!(Stash::parse("k", "not json").is_err());
    }

    /// `back` of a pair where B keeps `port` but drops `timeZone` and `status.onlyInA`.
    fn back(object: Value) -> Result<Value, StepError> {
        let mut object = object;
        if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("timeZone");
        }
        if let Some(status) = object.get_mut("status").and_then(Value::as_object_mut) {
            status.remove("onlyInA");
        }
        Ok(object)
    }

    #[test]
    fn restore_brings_back_fields_the_other_version_cannot_hold() {
        let stash = Stash {
            lost: map(json!({"spec": {"timeZone": "UTC"}})),
            status_digest: None,
        };
        let current = json!({"metadata": {}, "spec": {"port": 81}});
        let source = map(json!({"spec": {"port": 81}}));
        let restored = restore(current, stash, &source, &back);
        assert_eq!(restored["spec"], json!({"port": 81, "timeZone": "UTC"}));
    }

    #[test]
    fn restore_keeps_edits_made_through_the_other_version() {
        // The stash says port 80, the object was edited to 81 through the other version.
        let stash = Stash {
            lost: map(json!({"spec": {"port": 80, "timeZone": "UTC"}})),
            status_digest: None,
        };
        let current = json!({"spec": {"port": 81}});
        let source = map(json!({"spec": {"port": 81}}));
        let restored = restore(current, stash, &source, &back);
        assert_eq!(restored["spec"], json!({"port": 81, "timeZone": "UTC"}));
    }

    #[test]
    fn a_stale_status_is_not_brought_back() {
        let original = map(json!({"status": {"a": 1, "onlyInA": "x"}}));
        let round_trip = map(json!({"status": {"a": 1}}));
        let stash = Stash::of_round_trip(&original, &round_trip).unwrap();

        // Status unchanged: the field comes back.
        let current = json!({"status": {"a": 1}});
        let restored = restore(current, stash.clone(), &round_trip, &back);
        assert_eq!(restored["status"], json!({"a": 1, "onlyInA": "x"}));

        // Status written through the other version: the stale field stays away.
        let current = json!({"status": {"a": 2}});
        let source = map(json!({"status": {"a": 2}}));
        let restored = restore(current, stash, &source, &back);
        assert_eq!(restored["status"], json!({"a": 2}));
    }
}

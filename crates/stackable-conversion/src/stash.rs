//! Lossless round trips: fields a version cannot hold are stashed in an annotation.
//!
//! When a step from version A to version B loses information (converting the result back to A
//! does not give the original A), the body of the A object (every top-level field except
//! `apiVersion`, `kind` and `metadata`, so `spec` and `status`) is written as JSON into the
//! annotation `<prefix>A` of the B object (by default `conversion.stackable.tech/stash.A`), as
//! kubebuilder recommends. When the object later converts back into A, the stash is merged into
//! the result and the annotation removed: fields the object did not change while it was a B
//! come back from the stash, fields that were changed through B keep their new value.
//!
//! The merge is a three-way merge per JSON field: `stash` is the A body as stashed, `base` is what
//! the stash becomes after the lossy round trip A -> B -> A, and `current` is the A body
//! converted from the B object now. Where `current` equals `base` nothing was edited through B,
//! so the stashed value wins; elsewhere `current` wins.
//!
//! See <https://book.kubebuilder.io/multiversion-tutorial/conversion-concepts> and
//! <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>.

use serde_json::{Map, Value};
use snafu::ResultExt;

use crate::graph::{InvalidStashSnafu, StepError};

/// Top-level keys that are not part of an object's body.
const NON_BODY_KEYS: [&str; 3] = ["apiVersion", "kind", "metadata"];

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

fn annotations_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let metadata = object
        .as_object_mut()?
        .get_mut("metadata")?
        .as_object_mut()?;
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if annotations.is_null() {
        *annotations = Value::Object(Map::new());
    }
    annotations.as_object_mut()
}

fn take_annotation(object: &mut Value, key: &str) -> Option<String> {
    let metadata = object
        .as_object_mut()?
        .get_mut("metadata")?
        .as_object_mut()?;
    let annotations = metadata.get_mut("annotations")?.as_object_mut()?;
    let value = annotations.remove(key)?;
    if annotations.is_empty() {
        metadata.remove("annotations");
    }
    match value {
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// Rebuilds a full object of the version that was stashed: the stashed body with the
/// `apiVersion`, `kind` and `metadata` of `like`.
fn with_body_of(like: &Value, stashed_body: Map<String, Value>) -> Value {
    let mut object = like.clone();
    set_body(&mut object, stashed_body);
    object
}

/// Three-way merge of one JSON field; `None` means the field is absent.
fn merge(stash: Option<&Value>, base: Option<&Value>, current: Option<&Value>) -> Option<Value> {
    if current == base {
        return stash.cloned();
    }
    match (stash, base, current) {
        (Some(Value::Object(s)), Some(Value::Object(b)), Some(Value::Object(c))) => {
            let mut keys: Vec<&String> = s.keys().chain(b.keys()).chain(c.keys()).collect();
            keys.sort();
            keys.dedup();
            let merged = keys
                .into_iter()
                .filter_map(|k| merge(s.get(k), b.get(k), c.get(k)).map(|v| (k.clone(), v)))
                .collect();
            Some(Value::Object(merged))
        }
        _ => current.cloned(),
    }
}

/// One step from version A (`object`, carrying the stash annotations it has) to version B:
/// converts, restores B's stash if there is one, and stashes A's body if B cannot hold it.
pub(crate) fn hop(
    object: Value,
    forward: &(dyn Fn(Value) -> Result<Value, StepError> + Send + Sync),
    backward: &(dyn Fn(Value) -> Result<Value, StepError> + Send + Sync),
    stash_key_from: &str,
    stash_key_to: &str,
) -> Result<Value, StepError> {
    let original_body = body(&object);
    let mut converted = forward(object)?;

    // Restore what an earlier conversion out of B stashed.
    if let Some(stash_json) = take_annotation(&mut converted, stash_key_to) {
        let stashed_body: Map<String, Value> =
            serde_json::from_str(&stash_json).context(InvalidStashSnafu {
                key: stash_key_to.to_owned(),
            })?;
        let stashed = with_body_of(&converted, stashed_body.clone());
        // The stash after the lossy round trip B -> A -> B.
        let base = backward(stashed).and_then(forward).map(|b| body(&b));
        let merged = match base {
            Ok(base) => merge(
                Some(&Value::Object(stashed_body)),
                Some(&Value::Object(base)),
                Some(&Value::Object(body(&converted))),
            ),
            // The stash no longer converts (e.g. a newer operator changed a type): keep what
            // converting the current object gave.
            Err(error) => {
                tracing::debug!(%error, key = stash_key_to, "stash does not round-trip; ignoring it");
                None
            }
        };
        if let Some(Value::Object(merged)) = merged {
            set_body(&mut converted, merged);
        }
    }

    // Stash A's body if B cannot hold all of it.
    let lossless = match backward(converted.clone()) {
        Ok(back) => body(&back) == original_body,
        Err(_) => false,
    };
    if !lossless {
        let json = Value::Object(original_body).to_string();
        if let Some(annotations) = annotations_mut(&mut converted) {
            annotations.insert(stash_key_from.to_owned(), Value::String(json));
        }
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_restores_untouched_fields_and_keeps_edits() {
        let stash = json!({"spec": {"host": "a", "port": 1, "tz": "UTC"}});
        let base = json!({"spec": {"host": "a", "port": 1}});
        let current = json!({"spec": {"host": "b", "port": 1}});
        let merged = merge(Some(&stash), Some(&base), Some(&current));
        assert_eq!(
            merged,
            Some(json!({"spec": {"host": "b", "port": 1, "tz": "UTC"}}))
        );
    }

    #[test]
    fn merge_without_edits_restores_the_stash_exactly() {
        let stash = json!({"spec": {"list": [1, 2, 3], "x": null}});
        let base = json!({"spec": {"list": [1, 2]}});
        let merged = merge(Some(&stash), Some(&base), Some(&base));
        assert_eq!(merged, Some(stash));
    }

    #[test]
    fn merge_keeps_a_field_removed_through_the_other_version() {
        let stash = json!({"a": 1, "b": 2});
        let base = json!({"a": 1, "b": 2});
        let current = json!({"a": 1});
        assert_eq!(
            merge(Some(&stash), Some(&base), Some(&current)),
            Some(json!({"a": 1}))
        );
    }

    #[test]
    fn body_excludes_type_and_metadata() {
        let object = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "spec": 1, "status": 2});
        assert_eq!(
            Value::Object(body(&object)),
            json!({"spec": 1, "status": 2})
        );
    }
}

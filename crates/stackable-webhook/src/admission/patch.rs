//! The JSON Patch of a mutating handler, computed against the object as received.

use serde_json::Value;

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
}

//! JSON compared by meaning, the way the API server stores it: what the stash uses to tell a
//! real loss from a different spelling of the same object.
//!
//! Two values are *equivalent* when they differ only in ways the API server and typed clients
//! do not keep apart: a field that is `null`, an empty list or an empty map is the same as an
//! absent field (Go's `omitempty` and Rust's `skip_serializing_if` drop it, schema defaulting
//! fills in empty collections), and numbers are compared by value (`1` and `1.0` are one
//! number; the API server decodes JSON numbers into `int64` or `float64`). Everything else is
//! compared exactly, object keys in any order.
//!
//! [`lost`] is the JSON diff of a round trip: the fields of the original that the round trip did
//! not give back, as a JSON merge patch ([RFC 7386](https://www.rfc-editor.org/rfc/rfc7386))
//! that [`apply`] puts back. Fields the round trip added (defaults) are not losses.

use serde_json::{Map, Number, Value};

/// Whether a field holding `value` carries nothing: absent, `null`, `[]`, `{}`, or a map of
/// such fields only.
pub(crate) fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::Object(map)) => map.values().all(|v| is_empty(Some(v))),
        Some(_) => false,
    }
}

fn numbers_equal(a: &Number, b: &Number) -> bool {
    match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
        (Some(x), Some(y), _, _) => x == y,
        (_, _, Some(x), Some(y)) => x == y,
        // One is a float, or the two integers are of different signs beyond i64.
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// Whether two fields (`None`: absent) mean the same; see the [module docs](self).
pub(crate) fn equivalent(a: Option<&Value>, b: Option<&Value>) -> bool {
    if is_empty(a) || is_empty(b) {
        return is_empty(a) && is_empty(b);
    }
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x == y,
        (Some(Value::String(x)), Some(Value::String(y))) => x == y,
        (Some(Value::Number(x)), Some(Value::Number(y))) => numbers_equal(x, y),
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equivalent(Some(x), Some(y)))
        }
        (Some(Value::Object(x)), Some(Value::Object(y))) => maps_equivalent(x, y),
        _ => false,
    }
}

/// [`equivalent`] for two maps (two object bodies).
pub(crate) fn maps_equivalent(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.iter().all(|(k, v)| equivalent(Some(v), b.get(k)))
        && b.iter()
            .filter(|(k, _)| !a.contains_key(*k))
            .all(|(_, v)| is_empty(Some(v)))
}

/// The fields of `original` that `round_trip` does not give back, as a merge patch; `None` when
/// nothing was lost.
pub(crate) fn lost(original: Option<&Value>, round_trip: Option<&Value>) -> Option<Value> {
    if is_empty(original) || equivalent(original, round_trip) {
        return None;
    }
    match (original, round_trip) {
        (Some(Value::Object(original)), other)
            if other.is_none_or(Value::is_object) || is_empty(other) =>
        {
            let empty = Map::new();
            let other = other.and_then(Value::as_object).unwrap_or(&empty);
            let patch: Map<String, Value> = original
                .iter()
                .filter_map(|(k, v)| lost(Some(v), other.get(k)).map(|l| (k.clone(), l)))
                .collect();
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        (original, _) => original.cloned(),
    }
}

/// [`lost`] for two maps (two object bodies).
pub(crate) fn lost_fields(
    original: &Map<String, Value>,
    round_trip: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let patch: Map<String, Value> = original
        .iter()
        .filter_map(|(k, v)| lost(Some(v), round_trip.get(k)).map(|l| (k.clone(), l)))
        .collect();
    (!patch.is_empty()).then_some(patch)
}

/// Applies a merge patch without deletions (what [`lost`] produces): maps are merged key by key,
/// anything else replaces the target.
pub(crate) fn apply(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Some(map) = target.as_object_mut() {
                apply_fields(map, patch);
            }
        }
        other => *target = other.clone(),
    }
}

/// [`apply`] onto a map (an object body).
pub(crate) fn apply_fields(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        apply(target.entry(key.clone()).or_insert(Value::Null), value);
    }
}

/// The leaves of a merge patch, each as a patch of its own (path from the root kept).
pub(crate) fn leaves(patch: &Map<String, Value>) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    for (key, value) in patch {
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                for leaf in leaves(inner) {
                    out.push(Map::from_iter([(key.clone(), Value::Object(leaf))]));
                }
            }
            other => out.push(Map::from_iter([(key.clone(), other.clone())])),
        }
    }
    out
}

/// `Some(Some(map))` for a map, `Some(None)` for an empty field, `None` for anything else.
fn as_map(value: Option<&Value>) -> Option<Option<&Map<String, Value>>> {
    match value {
        Some(Value::Object(map)) => Some(Some(map)),
        value if is_empty(value) => Some(None),
        _ => None,
    }
}

/// Whether every field that differs between `before` and `after` has, in `after`, the value it
/// has in `target`: the change from `before` to `after` only moves towards `target`.
pub(crate) fn changes_agree(
    before: Option<&Value>,
    after: Option<&Value>,
    target: Option<&Value>,
) -> bool {
    if equivalent(before, after) {
        return true;
    }
    match (as_map(before), after, as_map(target)) {
        (Some(before), Some(Value::Object(after)), Some(target)) => {
            let keys = before
                .into_iter()
                .flat_map(Map::keys)
                .chain(after.keys())
                .collect::<std::collections::BTreeSet<_>>();
            keys.into_iter().all(|k| {
                changes_agree(
                    before.and_then(|m| m.get(k)),
                    after.get(k),
                    target.and_then(|m| m.get(k)),
                )
            })
        }
        _ => equivalent(after, target),
    }
}

/// A 64-bit FNV-1a digest of a value's meaning: equivalent values (see [`equivalent`]) have
/// the same digest.
pub(crate) fn digest(value: Option<&Value>) -> u64 {
    let mut hash = Fnv(0xcbf2_9ce4_8422_2325);
    feed(&mut hash, value);
    hash.0
}

struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn feed(hash: &mut Fnv, value: Option<&Value>) {
    if is_empty(value) {
        hash.write(b"~");
        return;
    }
    match value {
        Some(Value::Bool(b)) => hash.write(if *b { b"t" } else { b"f" }),
        Some(Value::Number(n)) => {
            let text = match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i.to_string(),
                (_, Some(u), _) => u.to_string(),
                // Integral floats hash like the integer they equal.
                (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => (f as i64).to_string(),
                (_, _, Some(f)) => format!("{f:?}"),
                _ => n.to_string(),
            };
            hash.write(b"n");
            hash.write(text.as_bytes());
        }
        Some(Value::String(s)) => {
            hash.write(b"s");
            hash.write(&(s.len() as u64).to_le_bytes());
            hash.write(s.as_bytes());
        }
        Some(Value::Array(items)) => {
            hash.write(b"[");
            for item in items {
                feed(hash, Some(item));
            }
            hash.write(b"]");
        }
        Some(Value::Object(map)) => {
            let mut keys: Vec<&String> = map
                .iter()
                .filter(|(_, v)| !is_empty(Some(v)))
                .map(|(k, _)| k)
                .collect();
            keys.sort();
            hash.write(b"{");
            for key in keys {
                hash.write(&(key.len() as u64).to_le_bytes());
                hash.write(key.as_bytes());
                feed(hash, map.get(key));
            }
            hash.write(b"}");
        }
        None | Some(Value::Null) => hash.write(b"~"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn eq(a: Value, b: Value) -> bool {
        equivalent(Some(&a), Some(&b)) && digest(Some(&a)) == digest(Some(&b))
    }

    #[test]
    fn null_empty_and_absent_are_one() {
        assert!(eq(json!({"a": null}), json!({})));
        assert!(eq(json!({"a": []}), json!({})));
        assert!(eq(json!({"a": {"b": null}}), json!({})));
        assert!(equivalent(None, Some(&json!({"x": []}))));
        assert!(!eq(json!({"a": [null]}), json!({})));
        assert!(!eq(json!({"a": ""}), json!({})));
        assert!(!eq(json!({"a": 0}), json!({})));
        assert!(!eq(json!({"a": false}), json!({})));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(eq(json!(1), json!(1.0)));
        assert!(eq(json!({"port": 5432}), json!({"port": 5432.0})));
        assert!(!eq(json!(1), json!(1.5)));
        assert!(eq(json!(u64::MAX), json!(u64::MAX)));
        assert!(!eq(json!(-1), json!(u64::MAX)));
        assert!(!eq(json!(1), json!("1")));
    }

    #[test]
    fn objects_ignore_key_order_and_lists_do_not() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"c":2,"d":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"d":3,"c":2},"a":1}"#).unwrap();
        assert!(eq(a, b));
        assert!(!eq(json!([1, 2]), json!([2, 1])));
        assert!(!eq(json!([1, 2]), json!([1, 2, 3])));
    }

    #[test]
    fn lost_holds_only_what_the_round_trip_dropped_or_changed() {
        let original = json!({"spec": {"host": "db", "timeZone": "UTC", "tags": [], "x": null, "port": 80},
                              "status": {"active": 1}});
        let back =
            json!({"spec": {"host": "db", "port": 80.0, "replicas": 1}, "status": {"active": 1}});
        assert_eq!(
            lost(Some(&original), Some(&back)),
            Some(json!({"spec": {"timeZone": "UTC"}}))
        );
        assert_eq!(lost(Some(&original), Some(&original)), None);
        // A changed value is lost; so is a map the round trip turned into something else.
        assert_eq!(
            lost(Some(&json!({"a": "x:080"})), Some(&json!({"a": "x:80"}))),
            Some(json!({"a": "x:080"}))
        );
        assert_eq!(
            lost(Some(&json!({"a": {"b": 1}})), Some(&json!({"a": "b=1"}))),
            Some(json!({"a": {"b": 1}}))
        );
        // Added fields (defaults) are not losses.
        assert_eq!(
            lost(Some(&json!({"a": 1})), Some(&json!({"a": 1, "b": 2}))),
            None
        );
    }

    #[test]
    fn apply_puts_back_what_lost_found() {
        let original =
            json!({"spec": {"host": "db", "timeZone": "UTC", "deep": {"a": [1], "b": 2}}});
        let back = json!({"spec": {"host": "db", "deep": {"b": 2}}});
        let patch = lost(Some(&original), Some(&back)).unwrap();
        let mut restored = back.clone();
        apply(&mut restored, &patch);
        assert!(equivalent(Some(&restored), Some(&original)));
        let leaves = leaves(patch.as_object().unwrap());
        assert_eq!(
            leaves,
            vec![
                json!({"spec": {"deep": {"a": [1]}}})
                    .as_object()
                    .unwrap()
                    .clone(),
                json!({"spec": {"timeZone": "UTC"}})
                    .as_object()
                    .unwrap()
                    .clone(),
            ]
        );
    }

    #[test]
    fn changes_agree_only_when_they_move_towards_the_target() {
        let before = json!({"host": "db", "port": 81});
        let target = json!({"host": "db", "port": 81});
        // Restoring a field the target cannot see changes nothing: agrees.
        assert!(changes_agree(Some(&before), Some(&before), Some(&target)));
        // Restoring changes port 81 (edited through the other version) back to 80: disagrees.
        let after = json!({"host": "db", "port": 80});
        assert!(!changes_agree(Some(&before), Some(&after), Some(&target)));
        // A change that lands on the target's value agrees.
        let before = json!({"host": "db", "port": 80});
        let after = json!({"host": "db", "port": 81});
        assert!(changes_agree(Some(&before), Some(&after), Some(&target)));
    }
}

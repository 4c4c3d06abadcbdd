//! The JSON Patch of a mutating handler, computed against the object as received.

use json_patch::{
    AddOperation, CopyOperation, MoveOperation, PatchOperation, RemoveOperation, ReplaceOperation,
    TestOperation, jsonptr::PointerBuf,
};
use serde_json::Value;

use super::{
    snapshot,
    text::{Members, RawObject},
};

/// Computes the JSON Patch that turns `raw` (the object as received) into `raw` with the
/// changes the handler made, where the handler's changes are `typed_original -> desired`
/// (both serialised from the Rust type).
///
/// A three-way merge: subtrees the handler did not change keep their raw JSON, so fields the
/// Rust type does not know (or normalises away) are never removed by the patch. Lists whose
/// elements all carry a distinct `name` (containers, volumes, ...) are matched by name; in other
/// lists the elements the handler left as they were are matched first (a longest common
/// subsequence) and keep their raw JSON; between two of them, the elements are matched by
/// position when the handler kept their number, otherwise taken as the handler made them, so
/// unknown fields never move onto or away from an element the handler left alone. (An element
/// removed and another inserted at the same spot look like one changed in place: the new one
/// keeps the old one's unknown fields.)
pub fn compute_patch(raw: &Value, typed_original: &Value, desired: &Value) -> json_patch::Patch {
    let mut patch = json_patch::Patch::default();
    let mut pointer = PointerBuf::new();
    patch3(raw, typed_original, desired, &mut pointer, &mut patch);
    patch
}

/// The operations `json_patch::diff(raw, merged)` gives, where `merged` is `raw` with the
/// handler's changes merged in (see [`merge3`]), without building `merged` as a whole: subtrees
/// the handler left alone are skipped, and only a changed list is merged into a copy. The
/// operations on the keys of one object may come in another order than the whole-tree diff's;
/// they touch distinct keys, so applying them gives the same document.
fn patch3(
    raw: &Value,
    base: &Value,
    desired: &Value,
    pointer: &mut PointerBuf,
    patch: &mut json_patch::Patch,
) {
    if base == desired {
        return;
    }
    match (raw, base, desired) {
        (Value::Object(raw), Value::Object(base), Value::Object(desired)) => {
            for (key, desired_value) in desired {
                pointer.push_back(key.as_str());
                match (raw.get(key), base.get(key)) {
                    (Some(raw_value), Some(base_value)) => {
                        patch3(raw_value, base_value, desired_value, pointer, patch);
                    }
                    (Some(raw_value), None) => diff_at(raw_value, desired_value, pointer, patch),
                    (None, _) => patch.0.push(PatchOperation::Add(AddOperation {
                        path: pointer.clone(),
                        value: desired_value.clone(),
                    })),
                }
                pointer.pop_back();
            }
            for key in base.keys() {
                if !desired.contains_key(key) && raw.contains_key(key) {
                    pointer.push_back(key.as_str());
                    patch.0.push(PatchOperation::Remove(RemoveOperation {
                        path: pointer.clone(),
                    }));
                    pointer.pop_back();
                }
            }
        }
        (Value::Array(_), Value::Array(_), Value::Array(_)) => {
            let mut merged = raw.clone();
            merge3(&mut merged, base, desired);
            diff_at(raw, &merged, pointer, patch);
        }
        (raw, _, desired) => diff_at(raw, desired, pointer, patch),
    }
}

/// [`compute_patch`] without the trees: `raw` is the object as received (JSON text), `base`
/// and `desired` the object before and after the handler as [`Snapshot`](super::snapshot)s
/// wrote them (one node each). Where `base` and `desired` are the same bytes nothing is read;
/// only the objects on the way to what the handler changed are split into their members, and
/// only the changed subtrees are decoded. The same operations, in the same order, as
/// [`compute_patch`] on `serde_json::from_str(raw)` and the snapshots' trees.
pub(super) fn compute_patch_tokens(
    raw: RawObject<'_>,
    base: &[u8],
    desired: &[u8],
) -> Result<json_patch::Patch, serde_json::Error> {
    let mut patch = json_patch::Patch::default();
    let mut pointer = PointerBuf::new();
    patch3_tokens(
        raw.text,
        raw.members,
        base,
        desired,
        &mut pointer,
        &mut patch,
    )?;
    Ok(patch)
}

fn unreadable(what: &str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(format!("{what} does not read"))
}

/// The tree of a snapshot's node.
fn tree(node: &[u8]) -> Result<Value, serde_json::Error> {
    snapshot::value(node).ok_or_else(|| unreadable("the serialised object"))
}

/// [`patch3`] on `raw`'s text and the snapshots' nodes: equal nodes are equal trees (and
/// different ones that are equal trees give no operation either way); the object arm is
/// [`patch3`]'s, reading each object's members (`raw`'s unless already read: `raw_members`);
/// anything else is decoded and goes to [`patch3`].
fn patch3_tokens(
    raw: &str,
    raw_members: Option<Members<'_, &str>>,
    base: &[u8],
    desired: &[u8],
    pointer: &mut PointerBuf,
    patch: &mut json_patch::Patch,
) -> Result<(), serde_json::Error> {
    if base == desired {
        return Ok(());
    }
    if snapshot::is_object(base)
        && snapshot::is_object(desired)
        && raw.trim_start().starts_with('{')
    {
        let raw = match raw_members {
            Some(members) => members,
            None => Members::read(raw).ok_or_else(|| unreadable("the request's object"))?,
        };
        let base = Members::of_node(base).ok_or_else(|| unreadable("the serialised object"))?;
        let desired =
            Members::of_node(desired).ok_or_else(|| unreadable("the serialised object"))?;
        // The keys come in map order, sorted unless serde_json preserves the order.
        let (mut in_raw, mut in_base) = (raw.lookup(), base.lookup());
        for member in desired.in_map_order() {
            let key = member.key.as_ref();
            let (raw_value, base_value) = (in_raw.get(key), in_base.get(key));
            if raw_value.is_some() && base_value == Some(member.value) {
                // What the recursion would find at once: the handler left it alone.
                continue;
            }
            pointer.push_back(key);
            match (raw_value, base_value) {
                (Some(raw_value), Some(base_value)) => {
                    patch3_tokens(raw_value, None, base_value, member.value, pointer, patch)?;
                }
                (Some(raw_value), None) => {
                    let raw_value: Value = serde_json::from_str(raw_value)?;
                    diff_at(&raw_value, &tree(member.value)?, pointer, patch);
                }
                (None, _) => patch.0.push(PatchOperation::Add(AddOperation {
                    path: pointer.clone(),
                    value: tree(member.value)?,
                })),
            }
            pointer.pop_back();
        }
        let (mut in_desired, mut in_raw) = (desired.lookup(), raw.lookup());
        for member in base.in_map_order() {
            let key = member.key.as_ref();
            if in_desired.get(key).is_none() && in_raw.get(key).is_some() {
                pointer.push_back(key);
                patch.0.push(PatchOperation::Remove(RemoveOperation {
                    path: pointer.clone(),
                }));
                pointer.pop_back();
            }
        }
        return Ok(());
    }
    let raw: Value = serde_json::from_str(raw)?;
    patch3(&raw, &tree(base)?, &tree(desired)?, pointer, patch);
    Ok(())
}

/// `json_patch::diff(left, right)` with every path below `pointer`.
fn diff_at(left: &Value, right: &Value, pointer: &PointerBuf, patch: &mut json_patch::Patch) {
    let mut operations = json_patch::diff(left, right).0;
    if !pointer.is_root() {
        for operation in &mut operations {
            let path = match operation {
                PatchOperation::Add(AddOperation { path, .. })
                | PatchOperation::Remove(RemoveOperation { path })
                | PatchOperation::Replace(ReplaceOperation { path, .. })
                | PatchOperation::Move(MoveOperation { path, .. })
                | PatchOperation::Copy(CopyOperation { path, .. })
                | PatchOperation::Test(TestOperation { path, .. }) => path,
            };
            *path = pointer.concat(path);
            if let PatchOperation::Move(MoveOperation { from, .. })
            | PatchOperation::Copy(CopyOperation { from, .. }) = operation
            {
                *from = pointer.concat(from);
            }
        }
    }
    patch.0.extend(operations);
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
            *target = if unique_names(base) && unique_names(desired) {
                merge_by_name(target, base, desired)
            } else {
                merge_aligned(target, base, desired)
            };
        }
        (target, _, desired) => *target = desired.clone(),
    }
}

/// Whether every element carries a `name` and no two share one (containers, volumes; not `env`
/// with a repeated name, whose elements cannot be told apart by name).
fn unique_names(list: &[Value]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    list.iter()
        .all(|value| element_name(value).is_some_and(|name| seen.insert(name)))
}

/// Elements matched by name; new names are taken as the handler made them.
fn merge_by_name(target: &[Value], base: &[Value], desired: &[Value]) -> Vec<Value> {
    desired
        .iter()
        .map(|desired_value| {
            let name = element_name(desired_value);
            match base.iter().position(|b| element_name(b) == name) {
                Some(index) => {
                    let mut value = target[index].clone();
                    merge3(&mut value, &base[index], desired_value);
                    value
                }
                None => desired_value.clone(),
            }
        })
        .collect()
}

/// Lists of the same length: element `i` of the result is element `i` merged.
fn merge_by_position(target: &[Value], base: &[Value], desired: &[Value]) -> Vec<Value> {
    target
        .iter()
        .zip(base)
        .zip(desired)
        .map(|((target_value, base_value), desired_value)| {
            let mut value = target_value.clone();
            merge3(&mut value, base_value, desired_value);
            value
        })
        .collect()
}

/// Above this many comparisons (middle lengths multiplied) no common subsequence is searched:
/// the changed middle is matched by position or taken as the handler made it.
const MAX_ALIGNMENT_CELLS: usize = 1 << 20;

/// Lists without distinct names (tolerations, `env` repeating a name): matching by position alone
/// would move the fields the type does not know to another element when one is inserted or
/// removed (even when another insertion or removal restores the length). The elements the
/// handler left as they were are matched to theirs and keep their raw JSON; each run of elements
/// between two of them is merged by position when the handler kept its length (elements
/// changed in place) and otherwise taken as the handler made it (what the type does not know
/// about those elements is dropped, never moved onto another one).
fn merge_aligned(target: &[Value], base: &[Value], desired: &[Value]) -> Vec<Value> {
    let mut result = Vec::with_capacity(desired.len());
    let (mut base_at, mut desired_at) = (0, 0);
    let end = (base.len(), desired.len());
    for (base_index, desired_index) in unchanged_elements(base, desired).into_iter().chain([end]) {
        let base_run = &base[base_at..base_index];
        let desired_run = &desired[desired_at..desired_index];
        if base_run.len() == desired_run.len() {
            result.extend(merge_by_position(
                &target[base_at..base_index],
                base_run,
                desired_run,
            ));
        } else {
            result.extend_from_slice(desired_run);
        }
        if let Some(unchanged) = target.get(base_index) {
            result.push(unchanged.clone());
        }
        (base_at, desired_at) = (base_index + 1, desired_index + 1);
    }
    result
}

/// The pairs `(i, j)`, in order, of a longest common subsequence of `base` and `desired`
/// (`base[i] == desired[j]`): the common prefix and suffix, and in between the classic dynamic
/// programme (none when the changed middle is larger than [`MAX_ALIGNMENT_CELLS`]).
fn unchanged_elements(base: &[Value], desired: &[Value]) -> Vec<(usize, usize)> {
    let prefix = base
        .iter()
        .zip(desired)
        .take_while(|(base_value, desired_value)| base_value == desired_value)
        .count();
    let suffix = base[prefix..]
        .iter()
        .rev()
        .zip(desired[prefix..].iter().rev())
        .take_while(|(base_value, desired_value)| base_value == desired_value)
        .count();
    let base_middle = &base[prefix..base.len() - suffix];
    let desired_middle = &desired[prefix..desired.len() - suffix];
    let mut pairs: Vec<(usize, usize)> = (0..prefix).map(|index| (index, index)).collect();
    let width = desired_middle.len() + 1;
    let cells = (base_middle.len() + 1).saturating_mul(width);
    if !base_middle.is_empty() && !desired_middle.is_empty() && cells <= MAX_ALIGNMENT_CELLS {
        // longest[i * width + j]: the length of a longest common subsequence of
        // base_middle[i..] and desired_middle[j..].
        let mut longest = vec![0u32; cells];
        for i in (0..base_middle.len()).rev() {
            for j in (0..desired_middle.len()).rev() {
                longest[i * width + j] = if base_middle[i] == desired_middle[j] {
                    longest[(i + 1) * width + j + 1] + 1
                } else {
                    longest[(i + 1) * width + j].max(longest[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < base_middle.len() && j < desired_middle.len() {
            if base_middle[i] == desired_middle[j] {
                pairs.push((prefix + i, prefix + j));
                (i, j) = (i + 1, j + 1);
            } else if longest[(i + 1) * width + j] >= longest[i * width + j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    pairs.extend((0..suffix).map(|k| (base.len() - suffix + k, desired.len() - suffix + k)));
    pairs
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
        let desired = json!({"l": [{"v": 5}, {"v": 2}]});
        let mut patched = raw.clone();
        json_patch::patch(&mut patched, &compute_patch(&raw, &typed, &desired)).unwrap();
        assert_eq!(patched, json!({"l": [{"v": 5, "u": 0}, {"v": 2}]}));
    }

    fn apply(raw: &Value, typed: &Value, desired: &Value) -> Value {
        let mut patched = raw.clone();
        json_patch::patch(&mut patched, &compute_patch(raw, typed, desired)).unwrap();
        patched
    }

    #[test]
    fn an_inserted_toleration_does_not_take_over_unknown_fields() {
        let raw = json!({"tolerations": [
            {"key": "a", "operator": "Exists", "futureField": "of-a"},
            {"key": "b", "operator": "Exists", "futureField": "of-b"}
        ]});
        let typed = json!({"tolerations": [
            {"key": "a", "operator": "Exists"},
            {"key": "b", "operator": "Exists"}
        ]});
        let inserted = json!({"tolerations": [
            {"key": "new", "operator": "Exists"},
            {"key": "a", "operator": "Exists"},
            {"key": "b", "operator": "Exists"}
        ]});
        assert_eq!(
            apply(&raw, &typed, &inserted),
            json!({"tolerations": [
                {"key": "new", "operator": "Exists"},
                {"key": "a", "operator": "Exists", "futureField": "of-a"},
                {"key": "b", "operator": "Exists", "futureField": "of-b"}
            ]})
        );
        let removed = json!({"tolerations": [{"key": "b", "operator": "Exists"}]});
        assert_eq!(
            apply(&raw, &typed, &removed),
            json!({"tolerations": [{"key": "b", "operator": "Exists", "futureField": "of-b"}]})
        );
    }

    #[test]
    fn an_insertion_and_a_removal_of_the_same_length_move_nothing() {
        // Same length before and after: matching by position would give `new` the fields of `a`
        // and `a` those of `b`.
        let raw = json!({"tolerations": [
            {"key": "a", "futureField": "of-a"},
            {"key": "b", "futureField": "of-b"}
        ]});
        let typed = json!({"tolerations": [{"key": "a"}, {"key": "b"}]});
        let desired = json!({"tolerations": [{"key": "new"}, {"key": "a"}]});
        assert_eq!(
            apply(&raw, &typed, &desired),
            json!({"tolerations": [{"key": "new"}, {"key": "a", "futureField": "of-a"}]})
        );
        // An element changed next to an insertion keeps its fields: between two elements the
        // handler kept as they were, the changed ones are matched by position when their
        // number is unchanged.
        let raw = json!({"tolerations": [
            {"key": "a", "futureField": "of-a"},
            {"key": "b", "futureField": "of-b"},
            {"key": "c", "futureField": "of-c"}
        ]});
        let typed = json!({"tolerations": [{"key": "a"}, {"key": "b"}, {"key": "c"}]});
        let desired =
            json!({"tolerations": [{"key": "new"}, {"key": "a"}, {"key": "b2"}, {"key": "c"}]});
        assert_eq!(
            apply(&raw, &typed, &desired),
            json!({"tolerations": [
                {"key": "new"},
                {"key": "a", "futureField": "of-a"},
                {"key": "b2", "futureField": "of-b"},
                {"key": "c", "futureField": "of-c"}
            ]})
        );
    }

    #[test]
    fn repeated_names_are_not_matched_by_name() {
        // `env` may repeat a name (the last one wins in the container); matching by name would
        // give both elements the first one's unknown fields.
        let raw = json!({"env": [
            {"name": "A", "value": "1", "futureField": "first"},
            {"name": "A", "value": "2"}
        ]});
        let typed = json!({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]});
        let desired = json!({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "3"}]});
        assert_eq!(
            apply(&raw, &typed, &desired),
            json!({"env": [
                {"name": "A", "value": "1", "futureField": "first"},
                {"name": "A", "value": "3"}
            ]})
        );
        let appended = json!({"env": [
            {"name": "A", "value": "1"},
            {"name": "A", "value": "2"},
            {"name": "A", "value": "4"}
        ]});
        assert_eq!(
            apply(&raw, &typed, &appended),
            json!({"env": [
                {"name": "A", "value": "1", "futureField": "first"},
                {"name": "A", "value": "2"},
                {"name": "A", "value": "4"}
            ]})
        );
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Value, json};

        use super::{super::merge3, apply};
        use crate::admission::{snapshot::Snapshot, text::RawObject};

        /// Small JSON trees over few keys and names, so that the three trees of a case overlap.
        fn tree() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                (0u8..3).prop_map(|n| json!(n)),
                prop::sample::select(vec!["x", "y"]).prop_map(|s| json!(s)),
            ];
            leaf.prop_recursive(4, 48, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop::sample::select(vec!["a", "b", "c", "name"]).prop_map(str::to_owned),
                        inner,
                        0..4,
                    )
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
                ]
            })
        }

        proptest! {
            /// Whatever the three trees, the patch applied to `raw` gives exactly `raw` with
            /// the handler's changes merged in (what the whole-tree merge and diff gave).
            #[test]
            fn the_patch_gives_the_merged_document(raw in tree(), base in tree(), desired in tree()) {
                let mut merged = raw.clone();
                merge3(&mut merged, &base, &desired);
                prop_assert_eq!(&apply(&raw, &base, &desired), &merged);
                // The same operations, in the same order, from `raw`'s JSON text (as the API
                // server may send it, with whitespace) and the snapshots of `base` and
                // `desired`.
                let text = serde_json::to_string_pretty(&raw).unwrap();
                let (Snapshot::Tokens(base_tokens), Snapshot::Tokens(desired_tokens)) =
                    (Snapshot::of(&base).unwrap(), Snapshot::of(&desired).unwrap())
                else {
                    panic!("no private tokens here");
                };
                let expected = super::super::compute_patch(&raw, &base, &desired);
                let from_tokens = super::super::compute_patch_tokens(
                    RawObject::text(&text),
                    &base_tokens,
                    &desired_tokens,
                )
                .unwrap();
                prop_assert_eq!(&from_tokens, &expected);
                // With the object's members read where the body is searched for it.
                let body = format!(r#"{{"request": {{"object": {text}}}}}"#);
                if let Some(object) = crate::admission::text::review_object(&body) {
                    let from_body =
                        super::super::compute_patch_tokens(object, &base_tokens, &desired_tokens)
                            .unwrap();
                    prop_assert_eq!(&from_body, &expected);
                }
            }
        }

        /// What the handler does to a list of distinct elements.
        #[derive(Clone, Debug)]
        enum Edit {
            Insert(usize),
            Remove(usize),
            Change(usize),
        }

        fn element(id: u32, value: u32) -> Value {
            json!({"id": id, "value": value})
        }

        proptest! {
            /// Whatever is inserted, removed or changed (one to three edits), the patch (applied by `json_patch`)
            /// gives exactly the handler's list, and every unknown field is still on the
            /// element it came with (never moved to another one).
            #[test]
            fn unknown_fields_stay_with_their_element(
                values in proptest::collection::vec(0u32..3, 0..8),
                unknown in proptest::collection::vec(any::<bool>(), 8),
                edits in proptest::collection::vec(prop_oneof![
                    (0usize..9).prop_map(Edit::Insert),
                    (0usize..8).prop_map(Edit::Remove),
                    (0usize..8).prop_map(Edit::Change),
                ], 1..4),
            ) {
                let typed: Vec<Value> = values.iter().enumerate()
                    .map(|(id, value)| element(id as u32, *value))
                    .collect();
                let raw: Vec<Value> = typed.iter().zip(&unknown)
                    .map(|(element, has_unknown)| {
                        let mut element = element.clone();
                        if *has_unknown {
                            element["unknown"] = json!(element["id"].clone());
                        }
                        element
                    })
                    .collect();
                let mut desired = typed.clone();
                for edit in &edits {
                    match *edit {
                        Edit::Insert(at) => desired.insert(at.min(desired.len()), element(100, 0)),
                        Edit::Remove(at) if at < desired.len() => { desired.remove(at); }
                        Edit::Change(at) if at < desired.len() => desired[at]["value"] = json!(9),
                        _ => {}
                    }
                }
                let patched = apply(&json!({"l": raw}), &json!({"l": typed}), &json!({"l": desired}));
                let patched = patched["l"].as_array().unwrap();
                let known: Vec<Value> = patched.iter().map(|element| {
                    let mut element = element.clone();
                    element.as_object_mut().unwrap().remove("unknown");
                    element
                }).collect();
                prop_assert_eq!(&known, &desired);
                // Ids of the elements the handler kept as they were.
                let unchanged: Vec<&Value> = desired.iter()
                    .filter(|element| typed.contains(element))
                    .map(|element| &element["id"])
                    .collect();
                for element in patched {
                    let id = &element["id"];
                    match element.get("unknown") {
                        // Another element's fields only where the handler changed or replaced
                        // elements in place (a removal and an insertion at one spot look like a
                        // change), never on or from an element it kept as it was, and never
                        // after a single edit.
                        Some(unknown) if unknown != id => {
                            prop_assert!(edits.len() > 1, "{element} after one edit");
                            prop_assert!(!unchanged.contains(&id), "{element} was kept as it was");
                            prop_assert!(!unchanged.contains(&unknown), "{element} has a kept one's fields");
                        }
                        Some(_) => {}
                        // The elements kept as they were keep their fields.
                        None => prop_assert!(
                            !(unchanged.contains(&id) && unknown[id.as_u64().unwrap() as usize]),
                            "{element} lost its unknown field"
                        ),
                    }
                }
            }
        }
    }
}

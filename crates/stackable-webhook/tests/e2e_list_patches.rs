//! Through the real kube-apiserver (stackable-testenv): the JSON Patch of a mutating handler keeps
//! fields the handler's type does not know on the list element they came with when elements are
//! inserted, removed, changed or appended with a repeated name, in lists without names
//! (`tolerations`-like) and with possibly repeated names (`env`-like).
//!
//! A CRD (`ListPatch`, group `patches.example.com`) whose list elements preserve unknown fields;
//! every element is created with an `origin` id and a nested `future` object the handler's Rust
//! type (`Toleration`, `EnvVar` below) does not have. The handler applies the edits the object
//! itself names in `spec.edits`. For each object read back from the API server:
//! - the known fields of each list are exactly what the handler made;
//! - an element carries unknown fields only if they are those of the element it came from (or of
//!   one the handler's type cannot tell apart from it: same known fields); after a single edit,
//!   removed elements' ones are gone and inserted elements have none; no id appears twice;
//! - every element the handler kept as it was keeps its unknown fields, and after a single edit
//!   every kept element (the changed one too) does;
//! - after several edits, an element the handler changed or inserted may carry those of one it
//!   changed or removed at that spot (a removal and an insertion at one place look like a change
//!   in place to the handler's type), never those of an element kept as it was;
//! - the stored spec equals the raw spec with `compute_patch`'s patch applied by `json_patch`
//!   (the reference implementation).
//!
//! Pods are not used: the API server decodes a Pod into its Go types before admission, so a field
//! it does not know never reaches the webhook, and the k8s-openapi of these tests (`latest`,
//! v1_37) has every field of the test kube-apiserver (v1.37): a Pod never holds a field the
//! handler's type lacks. A CRD preserving unknown fields is how a webhook really receives them
//! (as does an older operator built with an older k8s-openapi).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{local_builder, start, stop};
use futures::{StreamExt, stream};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::{
    Api, CustomResource,
    api::{ApiResource, DynamicObject, GroupVersionKind, PostParams},
    core::admission::AdmissionRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stackable_testenv::{
    TestEnv,
    webhooks::{LocalWebhook, create_until, mutating_configuration, namespace_with_service},
};
use stackable_webhook::{CertSource, Mutation, admission::compute_patch};

/// The handler's view of the object: no `origin`, no `future` in the list elements.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "patches.example.com",
    version = "v1",
    kind = "ListPatch",
    namespaced,
    schema = "disabled"
)]
struct ListPatchSpec {
    #[serde(default)]
    edits: Vec<Edit>,
    #[serde(default)]
    tolerations: Vec<Toleration>,
    #[serde(default)]
    env: Vec<EnvVar>,
}

/// One edit the handler makes: `op` is `insert`, `remove`, `change` or `duplicate` (append an
/// element with the key or name of the one at `index`), on `list` (`tolerations` or `env`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
struct Edit {
    list: String,
    op: String,
    index: usize,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Toleration {
    key: String,
    operator: String,
    value: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
struct EnvVar {
    name: String,
    value: String,
}

/// What the edits need of an element.
trait Element: Clone {
    /// A new element; `n` tells apart the new elements of one object.
    fn new(n: usize) -> Self;
    /// A new element with the key (name) of `self`.
    fn duplicate(&self, n: usize) -> Self;
    fn change(&mut self);
}

impl Element for Toleration {
    fn new(n: usize) -> Self {
        Toleration {
            key: format!("new-{n}"),
            operator: "Equal".to_owned(),
            value: format!("n{n}"),
        }
    }
    fn duplicate(&self, n: usize) -> Self {
        Toleration {
            value: format!("d{n}"),
            ..self.clone()
        }
    }
    fn change(&mut self) {
        self.value.push_str("-changed");
    }
}

impl Element for EnvVar {
    fn new(n: usize) -> Self {
        EnvVar {
            name: format!("NEW_{n}"),
            value: format!("n{n}"),
        }
    }
    fn duplicate(&self, n: usize) -> Self {
        EnvVar {
            name: self.name.clone(),
            value: format!("d{n}"),
        }
    }
    fn change(&mut self) {
        self.value.push_str("-changed");
    }
}

/// An element with where it came from: `Some(index in the received list)` or `None` (new), and
/// whether the handler changed it.
#[derive(Clone, Debug)]
struct Tracked<T> {
    origin: Option<usize>,
    changed: bool,
    value: T,
}

/// Applies the edits of `list_name` to `list`; the handler and the test's model share this.
fn apply_edits<T: Element>(edits: &[Edit], list_name: &str, list: &mut Vec<Tracked<T>>) {
    for (n, edit) in edits.iter().enumerate() {
        if edit.list != list_name {
            continue;
        }
        let index = edit.index;
        match edit.op.as_str() {
            "insert" => list.insert(
                index.min(list.len()),
                Tracked {
                    origin: None,
                    changed: true,
                    value: T::new(n),
                },
            ),
            "remove" if index < list.len() => {
                list.remove(index);
            }
            "change" if index < list.len() => {
                list[index].value.change();
                list[index].changed = true;
            }
            "duplicate" if index < list.len() => {
                let value = list[index].value.duplicate(n);
                list.push(Tracked {
                    origin: None,
                    changed: true,
                    value,
                });
            }
            _ => {}
        }
    }
}

fn tracked<T: Clone>(list: &[T]) -> Vec<Tracked<T>> {
    list.iter()
        .enumerate()
        .map(|(index, value)| Tracked {
            origin: Some(index),
            changed: false,
            value: value.clone(),
        })
        .collect()
}

/// The handler: the edits the object names.
fn mutate(spec: &mut ListPatchSpec) {
    let mut tolerations = tracked(&spec.tolerations);
    apply_edits(&spec.edits, "tolerations", &mut tolerations);
    spec.tolerations = tolerations.into_iter().map(|t| t.value).collect();
    let mut env = tracked(&spec.env);
    apply_edits(&spec.edits, "env", &mut env);
    spec.env = env.into_iter().map(|t| t.value).collect();
}

/// A small seeded generator (splitmix64), so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Fields of a received element the handler's type does not know.
fn unknown_fields(list: &str, index: usize) -> Value {
    json!({"origin": format!("{list}-{index}"), "future": {"n": index, "tags": [list, index]}})
}

fn with_unknown_fields(mut element: Value, list: &str, index: usize) -> Value {
    if let (Some(element), Value::Object(unknown)) =
        (element.as_object_mut(), unknown_fields(list, index))
    {
        element.extend(unknown);
    }
    element
}

/// A created object's spec: its lists (elements with unknown fields) and its edits.
fn raw_spec(tolerations: &[Toleration], env: &[EnvVar], edits: &[Edit]) -> Value {
    let list = |name: &str, values: Vec<Value>| -> Value {
        values
            .into_iter()
            .enumerate()
            .map(|(index, value)| with_unknown_fields(value, name, index))
            .collect()
    };
    json!({
        "edits": edits,
        "tolerations": list("tolerations", tolerations.iter().map(|t| serde_json::to_value(t).unwrap()).collect()),
        "env": list("env", env.iter().map(|e| serde_json::to_value(e).unwrap()).collect()),
    })
}

fn edit(list: &str, op: &str, index: usize) -> Edit {
    Edit {
        list: list.to_owned(),
        op: op.to_owned(),
        index,
    }
}

/// The lists of one object as the handler's type sees them, and the edits it names.
type Case = (Vec<Toleration>, Vec<EnvVar>, Vec<Edit>);

/// A random case: up to 7 tolerations (keys and values from small sets, so equal elements
/// happen), up to 7 env entries (names from three, so repeated names happen) and 1-3 edits.
fn random_case(rng: &mut Rng) -> Case {
    let tolerations = (0..rng.below(8))
        .map(|_| Toleration {
            key: ["a", "b", "c"][rng.below(3)].to_owned(),
            operator: "Equal".to_owned(),
            value: format!("v{}", rng.below(4)),
        })
        .collect();
    let env = (0..rng.below(8))
        .map(|_| EnvVar {
            name: ["A", "B", "C"][rng.below(3)].to_owned(),
            value: format!("v{}", rng.below(6)),
        })
        .collect();
    let edits = (0..1 + rng.below(3))
        .map(|_| {
            edit(
                ["tolerations", "env"][rng.below(2)],
                ["insert", "remove", "change", "duplicate"][rng.below(4)],
                rng.below(8),
            )
        })
        .collect();
    (tolerations, env, edits)
}

/// The hand-written cases: each edit once on each list, at the start, middle and end.
fn named_cases() -> Vec<Case> {
    let tolerations: Vec<Toleration> = ["a", "b", "c"]
        .iter()
        .map(|key| Toleration {
            key: (*key).to_owned(),
            operator: "Equal".to_owned(),
            value: "x".to_owned(),
        })
        .collect();
    // `A` twice: the names do not tell the elements apart.
    let env: Vec<EnvVar> = [("A", "1"), ("B", "2"), ("A", "3")]
        .iter()
        .map(|(name, value)| EnvVar {
            name: (*name).to_owned(),
            value: (*value).to_owned(),
        })
        .collect();
    let mut cases = Vec::new();
    for list in ["tolerations", "env"] {
        for op in ["insert", "remove", "change", "duplicate"] {
            for index in [0, 1, 2, 3] {
                cases.push((
                    tolerations.clone(),
                    env.clone(),
                    vec![edit(list, op, index)],
                ));
            }
        }
        // An insertion and a removal that leave the length as it was.
        cases.push((
            tolerations.clone(),
            env.clone(),
            vec![edit(list, "insert", 0), edit(list, "remove", 3)],
        ));
        cases.push((
            tolerations.clone(),
            env.clone(),
            vec![edit(list, "remove", 0), edit(list, "duplicate", 0)],
        ));
    }
    // Two equal tolerations: one removed.
    let twins = vec![tolerations[0].clone(), tolerations[0].clone()];
    cases.push((twins, Vec::new(), vec![edit("tolerations", "remove", 0)]));
    cases
}

/// Figures of one run.
#[derive(Debug, Default)]
struct Counts {
    objects: usize,
    kept: usize,
    replaced: usize,
    dropped: usize,
}

/// Checks one list of a read-back object; returns the elements with their own unknown fields
/// (or a twin's), with those of an element replaced in place, and kept ones without any.
fn check_list<T: Element + Serialize + PartialEq + std::fmt::Debug>(
    case: &str,
    list_name: &str,
    received: &[T],
    edits: &[Edit],
    stored: &[Value],
    names_match: bool,
) -> (usize, usize, usize) {
    let mut model = tracked(received);
    apply_edits(edits, list_name, &mut model);
    let list_edits = edits.iter().filter(|edit| edit.list == list_name).count();
    let known = |element: &Value| -> Value {
        let mut element = element.clone();
        if let Some(object) = element.as_object_mut() {
            object.remove("origin");
            object.remove("future");
        }
        element
    };
    let stored_known: Vec<Value> = stored.iter().map(known).collect();
    let desired: Vec<Value> = model
        .iter()
        .map(|t| serde_json::to_value(&t.value).unwrap())
        .collect();
    assert_eq!(
        stored_known, desired,
        "{case}: {list_name} is not what the handler made"
    );
    // Lists whose elements all carry distinct names before and after are matched by name, the
    // way the API server's strategic merge does: the same name is the same element.
    if names_match {
        for element in &mut model {
            let name = serde_json::to_value(&element.value).unwrap()["name"].clone();
            element.origin = received
                .iter()
                .position(|r| serde_json::to_value(r).unwrap()["name"] == name);
        }
    }
    let mut seen = BTreeSet::new();
    let (mut with, mut replaced, mut without) = (0, 0, 0);
    for (index, (element, tracked)) in stored.iter().zip(&model).enumerate() {
        let Some(origin) = element.get("origin") else {
            if tracked.origin.is_some() && !tracked.changed {
                panic!(
                    "{case}: {list_name}[{index}] was left alone by the handler but lost its unknown fields: {stored:?}"
                );
            }
            if tracked.origin.is_some() {
                without += 1;
            }
            continue;
        };
        with += 1;
        // The unknown fields must be those of its origin or of an element of the received list
        // the handler's type cannot tell apart from the origin...
        let unknown = json!({"origin": origin, "future": element["future"]});
        let twins: Vec<Value> = match tracked.origin {
            Some(origin) => received
                .iter()
                .enumerate()
                .filter(|(_, r)| *r == &received[origin])
                .map(|(i, _)| unknown_fields(list_name, i))
                .collect(),
            None => Vec::new(),
        };
        // ...or, after several edits, those of an element removed or changed where this one
        // was inserted or changed: a removal and an insertion at one spot look like a change
        // in place to the handler's type. Never on an element kept as it was, never after a
        // single edit, and never those of a kept one: each kept element carries its own or a
        // twin's (checked here and above) and no id appears twice (below).
        let replaced_in_place = list_edits > 1 && (tracked.changed || tracked.origin.is_none());
        assert!(
            twins.contains(&unknown) || replaced_in_place,
            "{case}: {list_name}[{index}] (came from {:?}) carries {unknown}, allowed {twins:?}; stored {stored:?}",
            tracked.origin
        );
        if !twins.contains(&unknown) {
            replaced += 1;
        }
        assert!(
            seen.insert(origin.to_string()),
            "{case}: {origin} appears twice in {list_name}: {stored:?}"
        );
    }
    if list_edits <= 1 {
        let survivors = model.iter().filter(|t| t.origin.is_some()).count();
        assert_eq!(
            with, survivors,
            "{case}: after at most one edit every kept element of {list_name} keeps its unknown fields: {stored:?}"
        );
    }
    (with - replaced, replaced, without)
}

fn unique_names(list: &[EnvVar]) -> bool {
    let names: BTreeSet<&str> = list.iter().map(|e| e.name.as_str()).collect();
    names.len() == list.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_patches_keep_unknown_fields_on_their_element() {
    let crd = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "listpatches.patches.example.com"},
        "spec": {
            "group": "patches.example.com",
            "names": {"kind": "ListPatch", "plural": "listpatches", "singular": "listpatch"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "edits": {"type": "array", "items": {"type": "object", "properties": {
                        "list": {"type": "string"}, "op": {"type": "string"}, "index": {"type": "integer"}
                    }}},
                    "tolerations": {"type": "array", "items": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {"key": {"type": "string"}, "operator": {"type": "string"}, "value": {"type": "string"}}
                    }},
                    "env": {"type": "array", "items": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {"name": {"type": "string"}, "value": {"type": "string"}}
                    }}
                }}}
            }}}]
        }
    }))
    .unwrap();
    let env = TestEnv::builder().crds([crd]).start().await.unwrap();
    let (namespace, leaf) = namespace_with_service(&env, "list-patches", "hook")
        .await
        .unwrap();
    let builder = local_builder()
        .certificates(CertSource::in_memory(leaf))
        .mutating(
            "/mutate",
            |request: AdmissionRequest<ListPatch>| async move {
                let Some(mut object) = request.object else {
                    return Mutation::unchanged();
                };
                mutate(&mut object.spec);
                Mutation::patched(object)
            },
        );
    let server = start(builder).await;
    let client = env.client().unwrap();
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(
            &PostParams::default(),
            &mutating_configuration(
                &format!("{namespace}-lists"),
                [LocalWebhook::service(
                    "lists.patches.example.com",
                    &namespace,
                    "hook",
                    server.local_addr().port(),
                    "/mutate",
                )
                .ca_bundle(&server.ca_bundle_pem().unwrap())
                .rule("patches.example.com", "v1", "listpatches", &["CREATE"])
                .in_namespace(&namespace)],
            ),
        )
        .await
        .unwrap();

    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "patches.example.com",
        "v1",
        "ListPatch",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
    let object = |name: &str, spec: Value| {
        let mut object = DynamicObject::new(name, &resource);
        object.data = json!({ "spec": spec });
        object
    };
    // Until the API server calls the webhook: an appended toleration shows it.
    let probe = object(
        "probe",
        raw_spec(&[], &[], &[edit("tolerations", "insert", 0)]),
    );
    create_until(&api, &probe, Duration::from_secs(60), |outcome| {
        matches!(outcome, Ok(created) if created.data["spec"]["tolerations"].as_array().is_some_and(|l| !l.is_empty()))
    })
    .await
    .expect("the webhook never became active")
    .unwrap();

    let seed = std::env::var("LIST_PATCHES_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5eed_1157);
    let mut rng = Rng(seed);
    let mut cases: Vec<(String, Case)> = named_cases()
        .into_iter()
        .enumerate()
        .map(|(i, case)| (format!("named-{i}"), case))
        .collect();
    cases.extend((0..200).map(|i| (format!("random-{i}"), random_case(&mut rng))));

    let started = std::time::Instant::now();
    let created: Vec<_> = stream::iter(cases)
        .map(|(name, (tolerations, env_vars, edits))| {
            let api = api.clone();
            let spec = raw_spec(&tolerations, &env_vars, &edits);
            let created = object(&name, spec.clone());
            async move {
                api.create(&PostParams::default(), &created).await.unwrap();
                let stored = api.get(&name).await.unwrap();
                (name, tolerations, env_vars, edits, spec, stored)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let mut counts = Counts::default();
    for (name, tolerations, env_vars, edits, raw, stored) in created {
        let case = format!("{name} (seed {seed:#x}, edits {edits:?})");
        let stored_spec = &stored.data["spec"];
        let (with, replaced, without) = check_list(
            &case,
            "tolerations",
            &tolerations,
            &edits,
            stored_spec["tolerations"].as_array().unwrap(),
            false,
        );
        counts.kept += with;
        counts.replaced += replaced;
        counts.dropped += without;
        let mut edited = tracked(&env_vars);
        apply_edits(&edits, "env", &mut edited);
        let edited: Vec<EnvVar> = edited.into_iter().map(|t| t.value).collect();
        let (with, replaced, without) = check_list(
            &case,
            "env",
            &env_vars,
            &edits,
            stored_spec["env"].as_array().unwrap(),
            unique_names(&env_vars) && unique_names(&edited),
        );
        counts.kept += with;
        counts.replaced += replaced;
        counts.dropped += without;

        // The reference: the same patch applied by `json_patch` to the spec as received.
        let typed: ListPatchSpec = serde_json::from_value(raw.clone()).unwrap();
        let mut desired = typed.clone();
        mutate(&mut desired);
        let (raw, typed, desired) = (
            json!({ "spec": raw }),
            json!({ "spec": typed }),
            json!({ "spec": desired }),
        );
        let mut reference = raw.clone();
        json_patch::patch(&mut reference, &compute_patch(&raw, &typed, &desired)).unwrap();
        assert_eq!(
            &reference["spec"], stored_spec,
            "{case}: the API server stored something else than json_patch makes of the patch"
        );
        counts.objects += 1;
    }
    println!(
        "{} objects created and read back in {elapsed:?}: {} elements with their own unknown fields, {} with those of one replaced in place, {} changed ones without",
        counts.objects, counts.kept, counts.replaced, counts.dropped
    );
    assert!(counts.objects > 200, "{counts:?}");
    stop(server).await;
}

//! One object of a review, converted from its version to the desired one as raw JSON.
//!
//! The object's members are read without building trees ([`raw`](crate::raw)): the typed steps
//! get a small JSON text made of `apiVersion`, `kind`, the metadata conversions may see (`name`,
//! `namespace`, `generateName`, `uid`, `labels`, `annotations` without the stash keys this
//! conversion handles) and the body (`spec`, `status`, …) as received. The answer is written
//! from the original `metadata` text (untouched unless labels or annotations changed) and the
//! body the steps produced. Only the body is ever parsed into `serde_json::Value`s: for the
//! loss check of the [`stash`](crate::stash), and to put a stash back.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-request-and-response>.

use std::borrow::Cow;

use serde_json::{Map, Value};
use snafu::ResultExt;

use crate::{
    fingerprint::{self, Fingerprint},
    graph::{DeserializeSnafu, KindConverter, StepError},
    json_ser::Layout,
    names::{MAX_ANNOTATIONS_SIZE, annotations_size},
    raw::{Members, Object, ObjectWriter, is_blank_text},
    stash::{self, Stash},
};

/// Top-level keys that are not part of an object's body.
const NON_BODY_KEYS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// The metadata user conversions see; everything else is carried through untouched.
const VISIBLE_METADATA: [&str; 6] = [
    "name",
    "namespace",
    "generateName",
    "uid",
    "labels",
    "annotations",
];

/// An object of a review, read as raw members.
pub(crate) struct Source<'a> {
    /// The object as JSON text.
    pub(crate) text: &'a str,
    /// The top-level members but `metadata`.
    pub(crate) members: Members<'a>,
    /// `kind`, as raw JSON.
    pub(crate) kind: &'a str,
    /// The members of `metadata` (empty when absent or not an object).
    pub(crate) metadata: Members<'a>,
}

impl Source<'_> {
    fn body(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members
            .0
            .iter()
            .filter(|(k, _)| !NON_BODY_KEYS.contains(&k.as_ref()))
            .map(|(k, v)| (k.as_ref(), *v))
    }

    /// The fingerprint of the body (`None` when a member is not JSON, which cannot happen for
    /// members read from JSON).
    fn body_fingerprint(&self) -> Option<Fingerprint> {
        let mut sum = 0u64;
        let mut any = false;
        for (key, value) in self.body() {
            let value = fingerprint::of(value)?;
            if !value.empty {
                sum = sum.wrapping_add(fingerprint::member(key, value));
                any = true;
            }
        }
        Some(fingerprint::map(sum, any))
    }
}

/// Why one object could not be converted (the router says which object).
#[derive(Debug)]
pub(crate) enum ObjectError {
    /// A step, or reading the stash, failed.
    Step(StepError),
    /// The converted annotations are over the API server's limit.
    AnnotationsTooLarge {
        /// Their size.
        size: usize,
    },
}

impl From<StepError> for ObjectError {
    fn from(error: StepError) -> Self {
        Self::Step(error)
    }
}

/// Where one conversion goes.
pub(crate) struct Route<'r> {
    pub(crate) converter: &'r KindConverter,
    /// The source version and its API version.
    pub(crate) from: &'r str,
    pub(crate) from_api_version: &'r str,
    /// The target version and its API version.
    pub(crate) to: &'r str,
    pub(crate) to_api_version: &'r str,
    /// The steps there and back.
    pub(crate) path: &'r [String],
    pub(crate) back_path: &'r [String],
    /// The stash annotation keys of `from` and `to`.
    pub(crate) key_from: &'r str,
    pub(crate) key_to: &'r str,
}

fn parse_map(raw: Option<&[u8]>) -> Map<String, Value> {
    raw.and_then(|json| serde_json::from_slice(json).ok())
        .unwrap_or_default()
}

/// The body members as values.
fn body_values<'a>(members: impl Iterator<Item = (&'a str, &'a str)>) -> Map<String, Value> {
    members
        .map(|(k, v)| {
            let value = serde_json::from_str(v).unwrap_or(Value::Null);
            (k.to_owned(), value)
        })
        .collect()
}

/// Whether two raw string maps (labels or annotations) hold the same entries.
fn same_map(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    let blank = |json: Option<&[u8]>| json.is_none_or(is_blank_text);
    match (a, b) {
        (Some(a), Some(b)) if a == b => true,
        _ if blank(a) && blank(b) => true,
        (Some(a), Some(b)) => parse_map(Some(a)) == parse_map(Some(b)),
        _ => false,
    }
}

/// Buffers reused from one object to the next, so that converting an object allocates little.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The text the typed steps read (a `String`: built from `&str` pieces, read without
    /// checking again that it is UTF-8).
    input: String,
    /// The text they write.
    converted: Vec<u8>,
    /// Where the members of `converted` are, when the step noted them.
    layout: Layout,
}

/// Converts `source` along `route` and writes the converted object to `out`.
pub(crate) fn convert(
    route: &Route<'_>,
    source: &Source<'_>,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<(), ObjectError> {
    let converter = route.converter;
    let (key_from, key_to) = (route.key_from, route.key_to);

    // The annotations the steps see: without the stash of `to` (taken out to be put back) and
    // of `from` (on an object in `from` it describes nothing).
    let original_annotations = source.metadata.get("annotations");
    let mut visible_annotations: Option<Cow<'_, str>> = original_annotations.map(Cow::Borrowed);
    let mut stash_text = None;
    if let Some(json) = original_annotations
        && (json.contains(converter.stash_prefix()) || json.contains('\\'))
    {
        let mut map = parse_map(Some(json.as_bytes()));
        let from_removed = map.remove(key_from).is_some();
        stash_text = map.remove(key_to).map(|value| match value {
            Value::String(text) => text,
            other => other.to_string(),
        });
        if from_removed || stash_text.is_some() {
            visible_annotations =
                (!map.is_empty()).then(|| Cow::Owned(Value::Object(map).to_string()));
        }
    }

    // The text the typed steps read.
    let Scratch {
        input,
        converted,
        layout,
    } = scratch;
    input.clear();
    let mut object = ObjectWriter::open(input);
    object.string("apiVersion", route.from_api_version);
    object.raw("kind", source.kind);
    let mut visible = object.nested("metadata");
    for (key, value) in &source.metadata.0 {
        match key.as_ref() {
            "annotations" => {
                if let Some(annotations) = &visible_annotations {
                    visible.raw(key, annotations);
                }
            }
            name if VISIBLE_METADATA.contains(&name) => visible.member(key, value),
            _ => {}
        }
    }
    visible.close();
    for (key, value) in &source.members.0 {
        if !NON_BODY_KEYS.contains(&key.as_ref()) {
            object.member(key, value);
        }
    }
    object.close();

    let mut round_trip = converter.round_trip(
        route.from,
        route.path,
        route.back_path,
        input,
        converted,
        layout,
    )?;
    let back = |text: &[u8]| converter.run(route.to, route.back_path, text);
    let source_body = || body_values(source.body());

    if let Some(text) = stash_text {
        let stash = Stash::parse(key_to, &text)?;
        let current: Value = serde_json::from_slice(converted).context(DeserializeSnafu {
            api_version: route.to_api_version,
        })?;
        let back_value = |object: Value| -> Result<Value, StepError> {
            let back = back(object.to_string().as_bytes())?;
            serde_json::from_slice(&back).context(DeserializeSnafu {
                api_version: route.from_api_version,
            })
        };
        let restored = stash::restore(current, stash, &source_body(), &back_value);
        *converted = restored.to_string().into_bytes();
        layout.invalidate();
        round_trip = back(converted)
            .ok()
            .and_then(|text| fingerprint::of_body(&text));
    }

    // What the round trip loses: nothing when the fingerprints of the two bodies agree (no
    // trees built); otherwise the exact comparison decides.
    let exact = |round_trip: &[u8]| {
        let round_trip = Members::parse_bytes(round_trip).unwrap_or_default();
        let round_trip = body_values(
            round_trip
                .0
                .iter()
                .filter(|(k, _)| !NON_BODY_KEYS.contains(&k.as_ref()))
                .map(|(k, v)| (k.as_ref(), *v)),
        );
        Stash::of_round_trip(&source_body(), &round_trip)
    };
    let everything = || {
        // The way back fails: keep everything, to be safe.
        let body = source_body();
        (!body.is_empty()).then_some(Stash {
            lost: body,
            status_digest: None,
        })
    };
    let lost = match round_trip {
        Some(fingerprint) if Some(fingerprint) == source.body_fingerprint() => None,
        Some(_) => match back(converted) {
            Ok(round_trip) => exact(&round_trip),
            Err(_) => everything(),
        },
        None => everything(),
    };

    // The members of the converted object: where the writer noted them, else read again.
    let noted = layout.is_valid();
    #[cfg(debug_assertions)]
    if noted
        && let Ok(text) = std::str::from_utf8(converted)
        && let Some(object) = layout.object(text)
    {
        crate::json_ser::assert_same_members(&object, text);
    }
    let read = if noted {
        Object::default()
    } else {
        std::str::from_utf8(converted)
            .ok()
            .and_then(Object::parse_str)
            .unwrap_or_default()
    };
    let converted: &[u8] = converted;
    let converted_member = |key: &str| -> Option<&[u8]> {
        if noted {
            layout.metadata_member(converted, key)
        } else {
            read.metadata.as_ref()?.get(key).map(str::as_bytes)
        }
    };
    let labels = converted_member("labels");
    let mut annotations: Option<Cow<'_, [u8]>> = converted_member("annotations").map(Cow::Borrowed);
    if let Some(lost) = lost {
        let mut map = parse_map(annotations.as_deref());
        map.insert(key_from.to_owned(), Value::String(lost.to_annotation()));
        annotations = Some(Cow::Owned(Value::Object(map).to_string().into_bytes()));
    }
    let source_labels = source.metadata.get("labels").map(str::as_bytes);
    let original_annotations = original_annotations.map(str::as_bytes);
    let labels_changed = !same_map(source_labels, labels);
    let annotations_changed = !same_map(original_annotations, annotations.as_deref());
    if annotations_changed && let Some(json) = annotations.as_deref() {
        let size = annotations_size(&parse_map(Some(json)));
        if size > MAX_ANNOTATIONS_SIZE {
            return Err(ObjectError::AnnotationsTooLarge { size });
        }
    }

    let mut object = ObjectWriter::open(out);
    object.string("apiVersion", route.to_api_version);
    object.raw("kind", source.kind);
    // The metadata as received, labels and annotations replaced only when they changed: as
    // one piece of text when neither did.
    let unchanged = (!labels_changed && !annotations_changed)
        .then(|| source.metadata.enclosing_object(source.text))
        .flatten();
    if let Some(metadata) = unchanged {
        object.raw("metadata", metadata);
        write_body(&mut object, noted, layout, converted, &read);
        object.close();
        return Ok(());
    }
    let mut writer = object.nested("metadata");
    let put = |writer: &mut ObjectWriter<'_>, key: &str, value: Option<&[u8]>| {
        if let Some(value) = value.filter(|v| !is_blank_text(v)) {
            writer.raw_bytes(key, value);
        }
    };
    for (key, value) in &source.metadata.0 {
        match key.as_ref() {
            "labels" if labels_changed => put(&mut writer, key, labels),
            "annotations" if annotations_changed => put(&mut writer, key, annotations.as_deref()),
            _ => writer.member(key, value),
        }
    }
    if labels_changed && source_labels.is_none() {
        put(&mut writer, "labels", labels);
    }
    if annotations_changed && original_annotations.is_none() {
        put(&mut writer, "annotations", annotations.as_deref());
    }
    writer.close();
    write_body(&mut object, noted, layout, converted, &read);
    object.close();
    Ok(())
}

/// Writes the body members of the converted object: where the writer `noted` them in
/// `layout`, else as `read`.
fn write_body(
    object: &mut ObjectWriter<'_>,
    noted: bool,
    layout: &Layout,
    converted: &[u8],
    read: &Object<'_>,
) {
    if noted {
        for (key, value) in layout.members(converted) {
            if !NON_BODY_KEYS.iter().any(|k| k.as_bytes() == key) {
                object.plain_member(key, value);
            }
        }
    } else {
        for (key, value) in &read.members.0 {
            if !NON_BODY_KEYS.contains(&key.as_ref()) {
                object.member(key, value);
            }
        }
    }
}

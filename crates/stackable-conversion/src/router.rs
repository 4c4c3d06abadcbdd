//! Routing a `ConversionReview` to the [`KindConverter`] of each object's group and kind.
//!
//! The API server sends a `ConversionReview` (`apiextensions.k8s.io/v1`) with a list of objects,
//! each in its own `apiVersion`, and a `desiredAPIVersion`. The answer must hold as many objects,
//! in the same order, each in the desired version, with the same kind and untouched metadata
//! except labels and annotations, and echo the request `uid`. Metadata is carried through *as
//! received* (the JSON value, never re-serialised from a typed struct). One failing object fails
//! the whole review with a message naming it.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-request-and-response>.

use std::{borrow::Cow, collections::BTreeMap};

use kube::core::{
    Status,
    conversion::{ConversionRequest, ConversionResponse, ConversionReview},
};
use serde_json::{Value, value::RawValue};
use snafu::{ResultExt, Snafu};

use crate::{
    graph::{KindConverter, StepError, api_version},
    names::MAX_ANNOTATIONS_SIZE,
    object::{self, ObjectError, Route, Scratch, Source},
    raw::{Members, Object, text},
};

/// The `apiVersion` of the only `ConversionReview` version this crate answers.
pub const CONVERSION_REVIEW_API_VERSION: &str = "apiextensions.k8s.io/v1";

/// Why a [`ConversionRouter`] could not be built.
#[derive(Debug, Snafu, PartialEq, Eq)]
pub enum RouterError {
    /// Two converters were given for the same group and kind.
    #[snafu(display("two converters for kind {kind} in group {group:?}"))]
    DuplicateKind {
        /// The group.
        group: String,
        /// The kind.
        kind: String,
    },
}

/// Why a review failed; its `Display` is the message the API server passes on to the client.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum ReviewError {
    /// The review holds no request.
    #[snafu(display("the ConversionReview holds no request"))]
    MissingRequest,

    /// The review is not `apiextensions.k8s.io/v1`.
    #[snafu(display(
        "ConversionReview {api_version:?} is not supported; only {CONVERSION_REVIEW_API_VERSION} (set conversionReviewVersions: [\"v1\"] in the CRD)"
    ))]
    UnsupportedReviewVersion {
        /// The apiVersion received.
        api_version: String,
    },

    /// `desiredAPIVersion` is not `group/version`.
    #[snafu(display("desiredAPIVersion {desired:?} is not of the form group/version"))]
    InvalidDesiredApiVersion {
        /// What was received.
        desired: String,
    },

    /// An object is not a JSON object, or has no `apiVersion`/`kind`.
    #[snafu(display("object {index} ({object}) has no {field}"))]
    MissingTypeMeta {
        /// Position in the review.
        index: usize,
        /// `namespace/name` as far as known.
        object: String,
        /// `apiVersion` or `kind`.
        field: String,
    },

    /// No converter handles the object's group and kind.
    #[snafu(display("{kind} {object}: no converter for kind {kind} in group {group:?}"))]
    UnknownKind {
        /// `namespace/name`.
        object: String,
        /// The group.
        group: String,
        /// The kind.
        kind: String,
    },

    /// The object's group differs from the desired one.
    #[snafu(display("{kind} {object}: cannot convert from group {group:?} to {desired:?}"))]
    GroupMismatch {
        /// `namespace/name`.
        object: String,
        /// The kind.
        kind: String,
        /// The object's group.
        group: String,
        /// desiredAPIVersion.
        desired: String,
    },

    /// The object's version or the desired version is not one of the kind's versions.
    #[snafu(display(
        "{kind} {object}: unknown version {version:?} (known versions: {})",
        known.join(", ")
    ))]
    UnknownVersion {
        /// `namespace/name`.
        object: String,
        /// The kind.
        kind: String,
        /// The unknown version.
        version: String,
        /// The versions of the kind.
        known: Vec<String>,
    },

    /// The converted object's annotations (with the stash) exceed the API server's limit.
    #[snafu(display(
        "{kind} {object}: converted annotations would be {size} bytes, over the API server's limit of {limit}; a stash of fields the target version cannot hold is too large"
    ))]
    AnnotationsTooLarge {
        /// `namespace/name`.
        object: String,
        /// The kind.
        kind: String,
        /// Their size.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// The objects could not be written as, or read from, JSON (only with the `Value` API).
    #[snafu(display("the objects could not be encoded as JSON: {source}"))]
    Encode {
        /// What serde said.
        source: serde_json::Error,
    },

    /// A conversion step failed.
    #[snafu(display("{kind} {object} could not be converted from {from} to {to}: {source}"))]
    Conversion {
        /// `namespace/name`.
        object: String,
        /// The kind.
        kind: String,
        /// The object's apiVersion.
        from: String,
        /// desiredAPIVersion.
        to: String,
        /// What failed.
        source: Box<StepError>,
    },
}

impl ReviewError {
    /// The `Status` that reports this error to the API server.
    pub fn to_status(&self) -> Status {
        let (reason, code) = match self {
            ReviewError::Conversion { .. } | ReviewError::AnnotationsTooLarge { .. } => {
                ("Invalid", 422)
            }
            _ => ("BadRequest", 400),
        };
        Status::failure(&self.to_string(), reason).with_code(code)
    }
}

/// Routes the objects of a review to the converter of their group and kind.
#[derive(Debug, Clone, Default)]
pub struct ConversionRouter {
    kinds: BTreeMap<(String, String), KindConverter>,
}

impl From<KindConverter> for ConversionRouter {
    fn from(converter: KindConverter) -> Self {
        let mut kinds = BTreeMap::new();
        kinds.insert(
            (converter.group().to_owned(), converter.kind().to_owned()),
            converter,
        );
        Self { kinds }
    }
}

/// `namespace/name` (or `name`, or `generateName*`) of an object, from its metadata members.
fn describe(metadata: &Members<'_>) -> String {
    let field = |key: &str| metadata.text(key).unwrap_or_default();
    let name = match (field("name"), field("generateName")) {
        (name, generate) if name.is_empty() && generate.is_empty() => "<unnamed>".to_owned(),
        (name, generate) if name.is_empty() => format!("{generate}*"),
        (name, _) => name.into_owned(),
    };
    match field("namespace") {
        namespace if namespace.is_empty() => name,
        namespace => format!("{namespace}/{name}"),
    }
}

impl ConversionRouter {
    /// A router for the given kinds; fails if two converters handle the same group and kind.
    pub fn new(converters: impl IntoIterator<Item = KindConverter>) -> Result<Self, RouterError> {
        let mut kinds = BTreeMap::new();
        for converter in converters {
            let key = (converter.group().to_owned(), converter.kind().to_owned());
            if kinds.contains_key(&key) {
                return DuplicateKindSnafu {
                    group: key.0,
                    kind: key.1,
                }
                .fail();
            }
            kinds.insert(key, converter);
        }
        Ok(Self { kinds })
    }

    /// The converter of a group and kind.
    pub fn converter(&self, group: &str, kind: &str) -> Option<&KindConverter> {
        self.kinds
            .iter()
            .find(|((g, k), _)| g == group && k == kind)
            .map(|(_, converter)| converter)
    }

    /// Answers a whole `ConversionReview`: the response echoes the request uid.
    pub fn convert_review(&self, review: ConversionReview) -> ConversionReview {
        if review.types.api_version != CONVERSION_REVIEW_API_VERSION {
            let error = ReviewError::UnsupportedReviewVersion {
                api_version: review.types.api_version.clone(),
            };
            let uid = review.request.map(|r| r.uid).unwrap_or_default();
            let mut response = ConversionResponse::invalid(error.to_status());
            response.uid = uid;
            return response.into_review();
        }
        match ConversionRequest::from_review(review) {
            Ok(request) => self.convert_request(request).into_review(),
            Err(_) => {
                ConversionResponse::invalid(ReviewError::MissingRequest.to_status()).into_review()
            }
        }
    }

    /// Answers one `ConversionRequest`.
    pub fn convert_request(&self, mut request: ConversionRequest) -> ConversionResponse {
        let desired = request.desired_api_version.clone();
        let objects = std::mem::take(&mut request.objects);
        let response = ConversionResponse::for_request(request);
        match self.convert_objects(objects, &desired) {
            Ok(converted) => response.success(converted),
            Err(error) => {
                tracing::warn!(%error, desired_api_version = desired, "conversion failed");
                response.failure(error.to_status())
            }
        }
    }

    /// Converts every object to `desired_api_version`; the first failure fails them all.
    /// An empty list converts to an empty list; an object already in the desired version is
    /// returned unchanged.
    pub fn convert_objects(
        &self,
        objects: Vec<Value>,
        desired_api_version: &str,
    ) -> Result<Vec<Value>, ReviewError> {
        let raw: Vec<Box<RawValue>> = objects
            .iter()
            .map(serde_json::value::to_raw_value)
            .collect::<Result<_, _>>()
            .context(EncodeSnafu)?;
        let raw: Vec<&RawValue> = raw.iter().map(AsRef::as_ref).collect();
        let mut out = Vec::new();
        self.convert_raw(&raw, desired_api_version, &mut out)?;
        serde_json::from_slice(&out).context(EncodeSnafu)
    }

    /// Converts every object (raw JSON, as received) to `desired_api_version` and appends the
    /// JSON array of the converted objects to `out`; the first failure fails them all (and
    /// leaves `out` as it was). This is what the webhook serves: metadata is copied as text,
    /// never parsed into a tree.
    pub fn convert_raw(
        &self,
        objects: &[&RawValue],
        desired_api_version: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), ReviewError> {
        self.convert_texts(
            objects.iter().map(|object| object.get()),
            |_, _| None,
            desired_api_version,
            out,
        )
    }

    /// [`convert_raw`](Self::convert_raw) of objects given as JSON text that is known to be
    /// valid (what the webhook route checked); text that is not valid JSON is refused or
    /// copied as it is, never a panic. `noted` fills the member lists of object `index` (see
    /// [`Object::read_into`]) when whoever read the review noted them, and returns `None` when
    /// not: the object is then read here.
    fn convert_texts<'o>(
        &self,
        objects: impl Iterator<Item = &'o str>,
        mut noted: impl FnMut(usize, &mut (Members<'o>, Members<'o>)) -> Option<()>,
        desired_api_version: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), ReviewError> {
        let Some((desired_group, desired_version)) = desired_api_version.split_once('/') else {
            return InvalidDesiredApiVersionSnafu {
                desired: desired_api_version,
            }
            .fail();
        };
        if desired_group.is_empty() || desired_version.is_empty() {
            return InvalidDesiredApiVersionSnafu {
                desired: desired_api_version,
            }
            .fail();
        }
        let start = out.len();
        out.push(b'[');
        let mut scratch = Scratch::default();
        // The member lists of the object at hand, reused from object to object.
        let mut members = (Members::default(), Members::default());
        // Where the previous object went, for the next one of the same version and kind.
        let mut last = None;
        for (index, object) in objects.enumerate() {
            if index > 0 {
                out.push(b',');
            }
            let desired = (desired_api_version, desired_group, desired_version);
            let converted = self.convert_object(
                index,
                object,
                desired,
                (&mut members, &mut noted, &mut last),
                &mut scratch,
                out,
            );
            if let Err(error) = converted {
                out.truncate(start);
                return Err(error);
            }
        }
        out.push(b']');
        Ok(())
    }

    /// Converts one object to `desired` (`group/version`, group, version).
    /// `lists` holds the member lists of the previous object, to reuse: this one's are put
    /// there when it converts; `noted` fills them when the object's members were noted (see
    /// [`convert_texts`](Self::convert_texts)); `last` is where the previous object went, taken
    /// again when this one's `apiVersion` and `kind` are the same text.
    fn convert_object<'o, 's>(
        &'s self,
        index: usize,
        raw: &'o str,
        desired: (&str, &str, &str),
        (lists, noted, last): (
            &mut (Members<'o>, Members<'o>),
            &mut impl FnMut(usize, &mut (Members<'o>, Members<'o>)) -> Option<()>,
            &mut Option<Target<'s, 'o>>,
        ),
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Result<(), ReviewError> {
        if noted(index, lists).is_none()
            && Object::read_into(raw, &mut lists.0, &mut lists.1).is_none()
        {
            // Not an object: no members (the error below says so).
            lists.0.0.clear();
            lists.1.0.clear();
        }
        let (members, metadata) = std::mem::take(lists);
        let target = match last {
            Some(target) if target.is_for(&members) => target,
            _ => last.insert(self.target(index, &members, &metadata, (desired.1, desired.2))?),
        };
        if target.path.is_empty() {
            out.extend_from_slice(raw.as_bytes());
            *lists = (members, metadata);
            return Ok(());
        }
        // `desired_group/desired_version`, as checked when the target was found.
        let to_api_version = desired.0;
        let route = Route {
            converter: target.converter,
            from: target.version(),
            from_api_version: &target.from_api_version,
            to: desired.2,
            to_api_version,
            path: target.path,
            back_path: target.back_path,
            key_from: target.key_from,
            key_to: target.key_to,
        };
        let source = Source {
            text: raw,
            kind: target.kind_raw,
            metadata,
            members,
        };
        let converted =
            object::convert(&route, &source, scratch, out).map_err(|error| match error {
                ObjectError::Step(source_error) => ReviewError::Conversion {
                    object: describe(&source.metadata),
                    kind: target.kind.to_string(),
                    from: target.from_api_version.to_string(),
                    to: to_api_version.to_owned(),
                    source: Box::new(source_error),
                },
                ObjectError::AnnotationsTooLarge { size } => ReviewError::AnnotationsTooLarge {
                    object: describe(&source.metadata),
                    kind: target.kind.to_string(),
                    size,
                    limit: MAX_ANNOTATIONS_SIZE,
                },
            });
        *lists = (source.members, source.metadata);
        converted
    }

    /// Where object `index` (its top-level `members` and its `metadata`'s) goes, checked: its
    /// `apiVersion` and `kind` are there, the kind is this router's, in the desired group, and
    /// both versions are the kind's.
    fn target<'o, 's>(
        &'s self,
        index: usize,
        members: &Members<'o>,
        metadata: &Members<'o>,
        (desired_group, desired_version): (&str, &str),
    ) -> Result<Target<'s, 'o>, ReviewError> {
        let type_field = |field: &str| -> Result<(&'o str, Cow<'o, str>), ReviewError> {
            match members.get(field).map(|raw| (raw, text(raw))) {
                Some((raw, Some(value))) if !value.is_empty() => Ok((raw, value)),
                _ => MissingTypeMetaSnafu {
                    index,
                    object: describe(metadata),
                    field,
                }
                .fail(),
            }
        };
        let (api_version_raw, from_api_version) = type_field("apiVersion")?;
        let (kind_raw, kind) = type_field("kind")?;
        let (group, version) = from_api_version
            .split_once('/')
            .unwrap_or(("", from_api_version.as_ref()));
        let Some(converter) = self.converter(group, &kind) else {
            return UnknownKindSnafu {
                object: describe(metadata),
                group,
                kind,
            }
            .fail();
        };
        if group != desired_group {
            return GroupMismatchSnafu {
                object: describe(metadata),
                kind,
                group,
                desired: api_version(desired_group, desired_version),
            }
            .fail();
        }
        let unknown = |version: &str| ReviewError::UnknownVersion {
            object: describe(metadata),
            kind: kind.to_string(),
            version: version.to_owned(),
            known: converter.versions().to_vec(),
        };
        if converter.path(version, version).is_none() {
            return Err(unknown(version));
        }
        let (Some(path), Some(back_path)) = (
            converter.path(version, desired_version),
            converter.path(desired_version, version),
        ) else {
            return Err(unknown(desired_version));
        };
        let version_start = from_api_version.len() - version.len();
        Ok(Target {
            api_version_raw,
            kind_raw,
            key_from: converter.stash_key(version),
            key_to: converter.stash_key(desired_version),
            from_api_version,
            version_start,
            kind,
            converter,
            path,
            back_path,
        })
    }
}

/// Where the objects of one `apiVersion` and `kind` go: found for the first of a review and
/// taken again for the next ones while both stay the same text (a LIST sends one kind, all in
/// the storage version), so that an object of 500 bytes does not pay for finding its kind and
/// the paths between the two versions each time.
pub(crate) struct Target<'s, 'o> {
    /// `apiVersion` and `kind` as raw JSON, as in the object.
    api_version_raw: &'o str,
    kind_raw: &'o str,
    /// `apiVersion` and `kind` read.
    from_api_version: Cow<'o, str>,
    kind: Cow<'o, str>,
    /// Where the version begins in `from_api_version`.
    version_start: usize,
    converter: &'s KindConverter,
    /// The steps there and back.
    path: &'s [String],
    back_path: &'s [String],
    /// The stash annotation keys of the source and the desired version.
    key_from: &'s str,
    key_to: &'s str,
}

impl Target<'_, '_> {
    /// Whether an object with these top-level members goes where this one goes.
    fn is_for(&self, members: &Members<'_>) -> bool {
        members.get("apiVersion") == Some(self.api_version_raw)
            && members.get("kind") == Some(self.kind_raw)
    }

    /// The source version.
    fn version(&self) -> &str {
        self.from_api_version
            .get(self.version_start..)
            .unwrap_or_default()
    }
}

/// With feature `webhook`: mount the router on a `stackable-webhook` server directly,
/// `.conversion("/convert", router)`.
#[cfg(feature = "webhook")]
impl stackable_webhook::Converter for ConversionRouter {
    fn convert(&self, request: ConversionRequest) -> ConversionResponse {
        self.convert_request(request)
    }

    /// The raw path: objects are read and written as JSON text, metadata never parsed.
    fn convert_raw<'a>(
        &self,
        request: &stackable_webhook::RawConversionRequest<'a>,
        out: &mut Vec<u8>,
    ) -> Result<(), Box<Status>> {
        let objects = request.objects.iter().copied();
        // The members the route noted while it validated the body: each object is not read
        // again here.
        let noted = |index: usize, (members, metadata): &mut (Members<'a>, Members<'a>)| {
            let noted = request.object_members(index)?;
            members.0.clear();
            metadata.0.clear();
            members.0.extend(
                noted
                    .members()
                    .map(|(key, value)| (Cow::Borrowed(key), value)),
            );
            if let Some(noted) = noted.metadata() {
                metadata
                    .0
                    .extend(noted.map(|(key, value)| (Cow::Borrowed(key), value)));
            }
            Some(())
        };
        self.convert_texts(objects, noted, &request.desired_api_version, out)
            .map_err(|error| {
                tracing::warn!(%error, desired_api_version = %request.desired_api_version, "conversion failed");
                Box::new(error.to_status())
            })
    }
}

#[cfg(all(test, feature = "webhook"))]
mod webhook_tests {
    use super::*;

    #[test]
    fn the_router_is_a_webhook_converter() {
        fn converter(c: impl stackable_webhook::Converter) -> impl stackable_webhook::Converter {
            c
        }
        let router = converter(ConversionRouter::default());
        let request = ConversionRequest {
            types: None,
            uid: "u".into(),
            desired_api_version: "example.com/v1".into(),
            objects: vec![
                serde_json::json!({"apiVersion": "example.com/v1beta1", "kind": "CronTab", "metadata": {"name": "x"}}),
            ],
        };
        let response = stackable_webhook::Converter::convert(&router, request);
        assert_eq!(response.uid, "u");
        assert!(
            response
                .result
                .message
                .contains("no converter for kind CronTab")
        );
    }
}

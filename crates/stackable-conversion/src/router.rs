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

use std::collections::BTreeMap;

use kube::core::{
    Status,
    conversion::{ConversionRequest, ConversionResponse, ConversionReview},
};
use serde_json::{Map, Value};
use snafu::Snafu;

use crate::{
    graph::{KindConverter, StepError, api_version},
    names::{MAX_ANNOTATIONS_SIZE, annotations_size},
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

/// `namespace/name` (or `name`, or `generateName*`) of an object, for messages.
fn describe(object: &Value) -> String {
    let metadata = object.get("metadata");
    let field = |k: &str| {
        metadata
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let name = match (field("name"), field("generateName")) {
        ("", "") => "<unnamed>".to_owned(),
        ("", generate) => format!("{generate}*"),
        (name, _) => name.to_owned(),
    };
    match field("namespace") {
        "" => name,
        namespace => format!("{namespace}/{name}"),
    }
}

/// The metadata user conversions see: identity, labels and annotations. Everything else is
/// carried through from the original JSON untouched.
const VISIBLE_METADATA: [&str; 6] = [
    "name",
    "namespace",
    "generateName",
    "uid",
    "labels",
    "annotations",
];

fn is_empty_map(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(map)) => map.is_empty(),
        Some(_) => false,
    }
}

/// The original metadata, with labels and annotations taken from the converted object when
/// (and only when) conversion changed them.
fn restore_metadata(original: Option<&Value>, converted: Option<&Value>) -> Value {
    let mut metadata = original
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    if let Some(map) = metadata.as_object_mut() {
        for field in ["labels", "annotations"] {
            let before = map.get(field);
            let after = converted.and_then(|c| c.get(field));
            let unchanged = before == after || (is_empty_map(before) && is_empty_map(after));
            if unchanged {
                continue;
            }
            match after {
                Some(value) if !is_empty_map(Some(value)) => {
                    map.insert(field.to_owned(), value.clone());
                }
                _ => {
                    map.remove(field);
                }
            }
        }
    }
    metadata
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
        self.kinds.get(&(group.to_owned(), kind.to_owned()))
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
    pub fn convert_request(&self, request: ConversionRequest) -> ConversionResponse {
        let desired = request.desired_api_version.clone();
        let objects = request.objects.clone();
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
        objects
            .into_iter()
            .enumerate()
            .map(|(index, object)| {
                self.convert_object(index, object, desired_group, desired_version)
            })
            .collect()
    }

    fn convert_object(
        &self,
        index: usize,
        object: Value,
        desired_group: &str,
        desired_version: &str,
    ) -> Result<Value, ReviewError> {
        let name = describe(&object);
        let type_field = |field: &str| -> Result<String, ReviewError> {
            match object.get(field).and_then(Value::as_str) {
                Some(value) if !value.is_empty() => Ok(value.to_owned()),
                _ => MissingTypeMetaSnafu {
                    index,
                    object: name.clone(),
                    field,
                }
                .fail(),
            }
        };
        let from_api_version = type_field("apiVersion")?;
        let kind = type_field("kind")?;
        let (group, version) = from_api_version
            .split_once('/')
            .unwrap_or(("", from_api_version.as_str()));
        let Some(converter) = self.converter(group, &kind) else {
            return UnknownKindSnafu {
                object: name,
                group,
                kind,
            }
            .fail();
        };
        if group != desired_group {
            return GroupMismatchSnafu {
                object: name,
                kind,
                group,
                desired: api_version(desired_group, desired_version),
            }
            .fail();
        }
        let unknown = |version: &str| ReviewError::UnknownVersion {
            object: name.clone(),
            kind: kind.clone(),
            version: version.to_owned(),
            known: converter.versions().to_vec(),
        };
        if converter.path(version, version).is_none() {
            return Err(unknown(version));
        }
        let Some(path) = converter.path(version, desired_version) else {
            return Err(unknown(desired_version));
        };
        if path.is_empty() {
            return Ok(object);
        }

        // Split off the metadata: conversions see a reduced copy; the original is restored.
        let Value::Object(mut map) = object else {
            // type_field succeeded, so this is an object.
            return Ok(Value::Null);
        };
        let original_metadata = map.remove("metadata");
        let visible: Map<String, Value> = original_metadata
            .as_ref()
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| VISIBLE_METADATA.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        map.insert("metadata".to_owned(), Value::Object(visible));

        let mut converted = converter
            .convert_between(version, desired_version, Value::Object(map))
            .map_err(|source| ReviewError::Conversion {
                object: name.clone(),
                kind: kind.clone(),
                from: from_api_version.clone(),
                to: api_version(desired_group, desired_version),
                source: Box::new(source),
            })?;
        let metadata = restore_metadata(original_metadata.as_ref(), converted.get("metadata"));
        if let Some(annotations) = metadata.get("annotations").and_then(Value::as_object) {
            let size = annotations_size(annotations);
            if size > MAX_ANNOTATIONS_SIZE {
                return AnnotationsTooLargeSnafu {
                    object: name,
                    kind,
                    size,
                    limit: MAX_ANNOTATIONS_SIZE,
                }
                .fail();
            }
        }
        if let Some(map) = converted.as_object_mut() {
            map.insert("metadata".to_owned(), metadata);
            map.insert(
                "apiVersion".to_owned(),
                Value::String(api_version(desired_group, desired_version)),
            );
            map.insert("kind".to_owned(), Value::String(kind));
        }
        Ok(converted)
    }
}

/// With feature `webhook`: mount the router on a `stackable-webhook` server directly,
/// `.conversion("/convert", router)`.
#[cfg(feature = "webhook")]
impl stackable_webhook::Converter for ConversionRouter {
    fn convert(&self, request: ConversionRequest) -> ConversionResponse {
        self.convert_request(request)
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

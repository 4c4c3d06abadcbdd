//! One typed conversion step between two adjacent versions, erased to JSON text in and out: the
//! user's `From`/`TryFrom` between two `#[derive(CustomResource)]` types, with serde on both
//! sides. [`typed_round_trip`] also converts the result back, from the typed value, and returns
//! the fingerprint of what came back (for the stash's loss check) instead of writing it out.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>.

use std::sync::Arc;

use kube::core::Resource;
use serde::{Serialize, de::DeserializeOwned};
use snafu::ResultExt;

use crate::{
    fingerprint::Fingerprint,
    graph::{BoxError, ConvertSnafu, DeserializeSnafu, SerializeSnafu, StepError},
    json_ser::Layout,
};

/// One typed step from a version to another, erased to JSON text in, JSON text out.
pub(crate) type StepFn = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, StepError> + Send + Sync>;

/// One typed step there and, from the typed result, back: reads the object as text (built from
/// `&str` pieces, so UTF-8 without checking again), writes the converted text into the
/// buffer (cleared first; reused from object to object), notes where its members are in the
/// layout, and returns the fingerprint of the body the round trip gives (`None` when the way
/// back fails). Neither reads the converted object again nor writes the round trip as text.
pub(crate) type RoundTripFn = Arc<
    dyn Fn(&str, &mut Vec<u8>, &mut Layout) -> Result<Option<Fingerprint>, StepError> + Send + Sync,
>;

/// The conversions from one version to an adjacent one.
#[derive(Clone)]
pub(crate) struct Edge {
    /// There.
    pub(crate) step: StepFn,
    /// There, and from the typed result back.
    pub(crate) round_trip: RoundTripFn,
}

/// Reads JSON bytes: through `&str` when they are UTF-8 (checked once, quickly, instead of
/// string by string as serde_json does for bytes).
pub(crate) fn read<T: DeserializeOwned>(json: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(json) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(json),
    }
}

pub(crate) fn typed_step<A, B>() -> StepFn
where
    A: Resource<DynamicType = ()> + DeserializeOwned,
    B: Resource<DynamicType = ()> + Serialize + TryFrom<A>,
    <B as TryFrom<A>>::Error: Into<BoxError>,
{
    let from = A::api_version(&()).into_owned();
    let to = B::api_version(&()).into_owned();
    Arc::new(move |object: &[u8]| {
        let a: A = read(object).context(DeserializeSnafu {
            api_version: from.as_str(),
        })?;
        let b = B::try_from(a).map_err(Into::into).context(ConvertSnafu {
            from: from.as_str(),
            to: to.as_str(),
        })?;
        crate::json_ser::to_vec(&b).context(SerializeSnafu {
            api_version: to.as_str(),
        })
    })
}

pub(crate) fn typed_round_trip<A, B>() -> RoundTripFn
where
    A: Resource<DynamicType = ()> + Serialize + DeserializeOwned + TryFrom<B>,
    B: Resource<DynamicType = ()> + Serialize + TryFrom<A>,
    <A as TryFrom<B>>::Error: Into<BoxError>,
    <B as TryFrom<A>>::Error: Into<BoxError>,
{
    let from = A::api_version(&()).into_owned();
    let to = B::api_version(&()).into_owned();
    Arc::new(
        move |object: &str, converted: &mut Vec<u8>, layout: &mut Layout| {
            let a: A = serde_json::from_str(object).context(DeserializeSnafu {
                api_version: from.as_str(),
            })?;
            let b = B::try_from(a).map_err(Into::into).context(ConvertSnafu {
                from: from.as_str(),
                to: to.as_str(),
            })?;
            crate::json_ser::write_object(&b, converted, layout).context(SerializeSnafu {
                api_version: to.as_str(),
            })?;
            let back = match A::try_from(b) {
                Ok(a) => crate::fingerprint_ser::of_body(&a).ok(),
                Err(error) => {
                    let error: BoxError = error.into();
                    tracing::debug!(%error, from = to.as_str(), to = from.as_str(), "the converted object does not convert back");
                    None
                }
            };
            Ok(back)
        },
    )
}

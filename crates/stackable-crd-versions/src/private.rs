//! What generated code uses; not a public interface.

pub use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
pub use stackable_conversion::{
    BuildError, ConversionRouter, CrdError, CrdVersion, KindConverter, MultiVersionCrd,
    WebhookTarget,
};

use crate::ConversionError;

/// Converts every element, naming the position of the first that fails.
pub fn convert_vec<A, B>(
    values: Vec<A>,
    mut convert: impl FnMut(A) -> Result<B, ConversionError>,
) -> Result<Vec<B>, ConversionError> {
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| convert(value).map_err(|e| e.at_index(index)))
        .collect()
}

/// Converts every value of a map into the map type `C`.
pub fn convert_map<C, K, A, B, I, F>(values: I, mut convert: F) -> Result<C, ConversionError>
where
    C: FromIterator<(K, B)>,
    I: IntoIterator<Item = (K, A)>,
    F: FnMut(A) -> Result<B, ConversionError>,
{
    values
        .into_iter()
        .map(|(key, value)| convert(value).map(|value| (key, value)))
        .collect()
}

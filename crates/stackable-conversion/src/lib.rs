//! Typed ConversionReview routing between the versions of a CRD, and merged multi-version CRDs.
//!
//! Kubernetes serves several versions of a custom resource but stores one. When a client asks
//! for another version than the stored one, the API server sends the objects to a conversion
//! webhook in a `ConversionReview`. This crate is that webhook's logic, without any HTTP or TLS:
//!
//! - [`KindConverter`]: the Rust types of each version of one kind (one
//!   `#[derive(CustomResource)]` struct per version) and plain `From`/`TryFrom` conversions between
//!   them, through a hub or along a chain; inconsistent setups fail at startup.
//! - [`ConversionRouter`]: answers a `ConversionReview` by routing each object by group and kind,
//!   converting it from its own version to `desiredAPIVersion` along the shortest path, carrying
//!   metadata through as received, and stashing fields an older version cannot hold in an
//!   annotation ([`stash`]) so that round trips are lossless.
//! - [`check_response`]: the API server's checks on an answer, rule for rule, for tests
//!   ([`check_response_strict`] adds this crate's promise of untouched metadata).
//! - [`MultiVersionCrd`]: one CRD from the per-version CRDs, with webhook conversion configured.
//! - [`testing`] (feature `testing`): a proptest round-trip checker for a user's versions.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>.
//!
//! ```
//! use kube::CustomResource;
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//! use stackable_conversion::{ConversionRouter, KindConverter};
//!
//! mod v1alpha1 {
//!     use super::*;
//!     #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
//!     #[kube(group = "example.com", version = "v1alpha1", kind = "Widget", namespaced)]
//!     pub struct WidgetSpec { pub size: String }
//! }
//! mod v1 {
//!     use super::*;
//!     #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
//!     #[kube(group = "example.com", version = "v1", kind = "Widget", namespaced)]
//!     pub struct WidgetSpec { pub size_cm: u32 }
//! }
//!
//! impl TryFrom<v1alpha1::Widget> for v1::Widget {
//!     type Error = String;
//!     fn try_from(old: v1alpha1::Widget) -> Result<Self, String> {
//!         let size_cm = old.spec.size.trim_end_matches("cm").parse()
//!             .map_err(|_| format!("spec.size {:?} is not like \"12cm\"", old.spec.size))?;
//!         Ok(v1::Widget { metadata: old.metadata, spec: v1::WidgetSpec { size_cm } })
//!     }
//! }
//! impl From<v1::Widget> for v1alpha1::Widget {
//!     fn from(new: v1::Widget) -> Self {
//!         let size = format!("{}cm", new.spec.size_cm);
//!         v1alpha1::Widget { metadata: new.metadata, spec: v1alpha1::WidgetSpec { size } }
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let widgets = KindConverter::builder()
//!     .hub::<v1::Widget>()
//!     .step::<v1alpha1::Widget, v1::Widget>()
//!     .build()?;
//! let router = ConversionRouter::from(widgets);
//!
//! let converted = router.convert_objects(
//!     vec![serde_json::json!({
//!         "apiVersion": "example.com/v1alpha1", "kind": "Widget",
//!         "metadata": {"name": "w", "namespace": "default", "uid": "1234"},
//!         "spec": {"size": "12cm"}
//!     })],
//!     "example.com/v1",
//! )?;
//! assert_eq!(converted[0]["spec"]["size_cm"], 12);
//! # Ok(())
//! # }
//! ```

pub mod crd;
mod fingerprint;
mod fingerprint_ser;
pub mod graph;
pub mod invariants;
mod json_ser;
#[cfg(feature = "migrate")]
pub mod migrate;
pub mod names;
mod object;
mod raw;
pub mod router;
pub mod schema;
mod semantic;
pub mod stash;
mod step;
#[cfg(feature = "testing")]
pub mod testing;

pub use crd::{CrdError, CrdVersion, MultiVersionCrd, WebhookTarget};
pub use graph::{
    BuildError, DEFAULT_STASH_ANNOTATION_PREFIX, KindConverter, KindConverterBuilder, StepError,
};
pub use invariants::{InvariantViolation, check_response, check_response_strict};
pub use router::{ConversionRouter, ReviewError, RouterError};

/// An error and its sources, joined with `": "`, for a one-line `Status` message.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

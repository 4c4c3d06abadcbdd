//! A kind that uses every action: a type change with a fallible upgrade, nested versioned types
//! in `Vec`, `BTreeMap` and `Option<Box<…>>`, an enum whose variants are added (with and
//! without a fallback), renamed, deprecated and removed, a field removed with a default for the
//! way back, a type added in a later version, a doc comment for one version, and a hub.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stackable_crd_versions::versioned;

#[versioned(version(v1alpha1), version(v1beta1, storage, hub), version(v1))]
/// The Widget kind.
pub mod widget {
    use super::*;

    /// A widget.
    #[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
    #[kube(
        group = "test.example.com",
        kind = "Widget",
        namespaced,
        status = "WidgetStatus",
        derive = "PartialEq"
    )]
    #[serde(rename_all = "camelCase")]
    pub struct WidgetSpec {
        /// The size in millimetres; `size: "12cm"` in v1alpha1.
        #[versioned(doc(v1alpha1 = "The size, like \"12cm\" or \"120mm\"."))]
        #[versioned(changed(
            since = v1beta1,
            from_name = size,
            from_type = String,
            try_upgrade = parse_size,
            downgrade = format_size
        ))]
        pub size_mm: u32,
        /// The parts.
        pub parts: Vec<Part>,
        /// Named dimensions.
        #[serde(default)]
        pub dimensions: BTreeMap<String, Dimension>,
        /// A spare dimension.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub spare: Option<Box<Dimension>>,
        /// A free text.
        #[versioned(deprecated(since = v1beta1, note = "labels say it better"))]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub description: Option<String>,
        /// Built the old way.
        #[versioned(removed(since = v1, default = legacy_default))]
        pub legacy: bool,
        /// The colour.
        #[versioned(added(since = v1, default = grey))]
        pub colour: Colour,
    }

    /// What was seen.
    #[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct WidgetStatus {
        /// Dimensions measured.
        #[serde(default)]
        pub measured: Vec<Dimension>,
    }

    /// A length.
    #[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Dimension {
        /// Millimetres.
        #[versioned(renamed(since = v1, from = length))]
        pub millimetres: u32,
        /// Allowed deviation.
        #[versioned(added(since = v1beta1))]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tolerance: Option<u32>,
    }

    /// A part.
    #[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub enum Part {
        /// A bolt.
        Bolt,
        /// A nut.
        Nut {
            /// Its size.
            size: u32,
        },
        /// A washer.
        #[versioned(renamed(since = v1, from = Ring))]
        Washer(Dimension),
        /// A spring; a bolt in v1alpha1.
        #[versioned(added(since = v1beta1, downgrade_to = Bolt))]
        Spring,
        /// A sprocket; v1beta1 has nothing like it.
        #[versioned(added(since = v1))]
        Sprocket,
        /// A rivet; a bolt from v1 on.
        #[versioned(
            deprecated(since = v1beta1, note = "use bolts"),
            removed(since = v1, upgrade_to = Bolt)
        )]
        Rivet,
    }

    /// A colour.
    #[versioned(added(since = v1))]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Colour {
        /// Grey.
        #[default]
        Grey,
        /// Red.
        Red,
    }

    /// `size` is not like `12cm` or `120mm`.
    #[versioned(skip)]
    #[derive(Debug)]
    pub struct BadSize(pub String);

    impl std::fmt::Display for BadSize {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?} is not a size like \"12cm\" or \"120mm\"", self.0)
        }
    }

    impl std::error::Error for BadSize {}

    fn parse_size(size: String) -> Result<u32, BadSize> {
        let parsed = if let Some(cm) = size.strip_suffix("cm") {
            cm.parse::<u32>().ok().and_then(|cm| cm.checked_mul(10))
        } else if let Some(mm) = size.strip_suffix("mm") {
            mm.parse::<u32>().ok()
        } else {
            None
        };
        parsed.ok_or(BadSize(size))
    }

    fn format_size(mm: u32) -> String {
        if mm.is_multiple_of(10) {
            format!("{}cm", mm / 10)
        } else {
            format!("{mm}mm")
        }
    }

    fn legacy_default() -> bool {
        true
    }

    fn grey() -> v1::Colour {
        v1::Colour::Grey
    }
}

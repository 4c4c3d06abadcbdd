//! Every action on one kind (`common/widget.rs`): type changes with fallible functions, nested
//! versioned types in `Vec`, `BTreeMap` and `Option<Box<…>>`, enum variants added (with and
//! without a fallback), renamed, deprecated and removed, a removed field with a default, a type
//! added later. Round trips through the router for every pair of versions (proptest), and the
//! errors of conversions that cannot succeed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The versions declared once.
#[path = "common/widget.rs"]
pub mod declared;

use std::collections::BTreeMap;

use declared::widget::{WidgetVersions, v1, v1alpha1, v1beta1};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::{collection, option, prelude::*};
use serde_json::json;
use stackable_conversion::{ConversionRouter, testing::check_round_trip};

const CASES: u32 = 96;

fn router() -> ConversionRouter {
    WidgetVersions::router().expect("a chain")
}

fn meta() -> impl Strategy<Value = ObjectMeta> {
    "[a-z]{1,8}".prop_map(|name| ObjectMeta {
        name: Some(name),
        namespace: Some("w".into()),
        ..ObjectMeta::default()
    })
}

fn v1alpha1_dimension() -> impl Strategy<Value = v1alpha1::Dimension> {
    any::<u32>().prop_map(|length| v1alpha1::Dimension { length })
}

fn v1beta1_dimension() -> impl Strategy<Value = v1beta1::Dimension> {
    (any::<u32>(), option::of(0..100u32))
        .prop_map(|(length, tolerance)| v1beta1::Dimension { length, tolerance })
}

fn v1_dimension() -> impl Strategy<Value = v1::Dimension> {
    (any::<u32>(), option::of(0..100u32)).prop_map(|(millimetres, tolerance)| v1::Dimension {
        millimetres,
        tolerance,
    })
}

fn size() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..400_000_000u32).prop_map(|cm| format!("{cm}cm")),
        any::<u32>().prop_map(|mm| format!("{mm}mm")),
    ]
}

fn v1alpha1_widget() -> impl Strategy<Value = v1alpha1::Widget> {
    let part = prop_oneof![
        Just(v1alpha1::Part::Bolt),
        any::<u32>().prop_map(|size| v1alpha1::Part::Nut { size }),
        v1alpha1_dimension().prop_map(v1alpha1::Part::Ring),
        Just(v1alpha1::Part::Rivet),
    ];
    (
        meta(),
        size(),
        collection::vec(part, 0..4),
        collection::btree_map("[a-z]{1,4}", v1alpha1_dimension(), 0..3),
        option::of(v1alpha1_dimension().prop_map(Box::new)),
        option::of("[a-z ]{0,8}"),
        any::<bool>(),
        option::of(collection::vec(v1alpha1_dimension(), 0..3)),
    )
        .prop_map(
            |(metadata, size, parts, dimensions, spare, description, legacy, measured)| {
                v1alpha1::Widget {
                    metadata,
                    spec: v1alpha1::WidgetSpec {
                        size,
                        parts,
                        dimensions,
                        spare,
                        description,
                        legacy,
                    },
                    status: measured.map(|measured| v1alpha1::WidgetStatus { measured }),
                }
            },
        )
}

fn v1beta1_widget() -> impl Strategy<Value = v1beta1::Widget> {
    let part = prop_oneof![
        Just(v1beta1::Part::Bolt),
        any::<u32>().prop_map(|size| v1beta1::Part::Nut { size }),
        v1beta1_dimension().prop_map(v1beta1::Part::Ring),
        Just(v1beta1::Part::Spring),
        Just(v1beta1::Part::Rivet),
    ];
    (
        meta(),
        any::<u32>(),
        collection::vec(part, 0..4),
        collection::btree_map("[a-z]{1,4}", v1beta1_dimension(), 0..3),
        option::of(v1beta1_dimension().prop_map(Box::new)),
        option::of("[a-z ]{0,8}"),
        any::<bool>(),
        option::of(collection::vec(v1beta1_dimension(), 0..3)),
    )
        .prop_map(
            |(metadata, size_mm, parts, dimensions, spare, description, legacy, measured)| {
                v1beta1::Widget {
                    metadata,
                    spec: v1beta1::WidgetSpec {
                        size_mm,
                        parts,
                        dimensions,
                        spare,
                        description,
                        legacy,
                    },
                    status: measured.map(|measured| v1beta1::WidgetStatus { measured }),
                }
            },
        )
}

/// v1 widgets without sprockets: v1beta1 cannot hold one (see the test of that below).
fn v1_widget() -> impl Strategy<Value = v1::Widget> {
    let part = prop_oneof![
        Just(v1::Part::Bolt),
        any::<u32>().prop_map(|size| v1::Part::Nut { size }),
        v1_dimension().prop_map(v1::Part::Washer),
        Just(v1::Part::Spring),
    ];
    let colour = prop_oneof![Just(v1::Colour::Grey), Just(v1::Colour::Red)];
    (
        meta(),
        any::<u32>(),
        collection::vec(part, 0..4),
        collection::btree_map("[a-z]{1,4}", v1_dimension(), 0..3),
        option::of(v1_dimension().prop_map(Box::new)),
        option::of("[a-z ]{0,8}"),
        colour,
        option::of(collection::vec(v1_dimension(), 0..3)),
    )
        .prop_map(
            |(metadata, size_mm, parts, dimensions, spare, description, colour, measured)| {
                v1::Widget {
                    metadata,
                    spec: v1::WidgetSpec {
                        size_mm,
                        parts,
                        dimensions,
                        spare,
                        description,
                        colour,
                    },
                    status: measured.map(|measured| v1::WidgetStatus { measured }),
                }
            },
        )
}

#[test]
fn round_trips_between_every_two_versions_are_lossless() {
    let router = router();
    check_round_trip::<v1alpha1::Widget, v1beta1::Widget>(&router, v1alpha1_widget(), CASES);
    check_round_trip::<v1beta1::Widget, v1alpha1::Widget>(&router, v1beta1_widget(), CASES);
    check_round_trip::<v1beta1::Widget, v1::Widget>(&router, v1beta1_widget(), CASES);
    check_round_trip::<v1::Widget, v1beta1::Widget>(&router, v1_widget(), CASES);
    check_round_trip::<v1alpha1::Widget, v1::Widget>(&router, v1alpha1_widget(), CASES);
    check_round_trip::<v1::Widget, v1alpha1::Widget>(&router, v1_widget(), CASES);
}

#[test]
fn typed_conversions_follow_the_actions() {
    let old = v1alpha1::WidgetSpec {
        size: "12cm".into(),
        parts: vec![
            v1alpha1::Part::Rivet,
            v1alpha1::Part::Ring(v1alpha1::Dimension { length: 3 }),
        ],
        dimensions: BTreeMap::from([("w".into(), v1alpha1::Dimension { length: 7 })]),
        spare: Some(Box::new(v1alpha1::Dimension { length: 9 })),
        description: Some("old".into()),
        legacy: false,
    };
    let beta = v1beta1::WidgetSpec::try_from(old).unwrap();
    assert_eq!(beta.size_mm, 120);
    assert_eq!(beta.dimensions["w"].tolerance, None);
    let new = v1::WidgetSpec::from(beta);
    assert_eq!(
        new.parts,
        [
            v1::Part::Bolt,
            v1::Part::Washer(v1::Dimension {
                millimetres: 3,
                tolerance: None
            })
        ]
    );
    assert_eq!(new.colour, v1::Colour::Grey);
    assert_eq!(new.spare.as_ref().unwrap().millimetres, 9);

    // Back down: the removed field gets its default, a spring becomes a bolt in v1alpha1.
    let beta = v1beta1::WidgetSpec::try_from(v1::WidgetSpec {
        parts: vec![v1::Part::Spring],
        ..new
    })
    .unwrap();
    assert!(beta.legacy);
    let old = v1alpha1::WidgetSpec::from(beta);
    assert_eq!(old.size, "12cm");
    assert_eq!(old.parts, [v1alpha1::Part::Bolt]);
}

#[test]
fn a_value_the_target_cannot_hold_fails_with_its_path() {
    let spec = v1::WidgetSpec {
        size_mm: 1,
        parts: vec![v1::Part::Bolt, v1::Part::Sprocket],
        dimensions: BTreeMap::new(),
        spare: None,
        description: None,
        colour: v1::Colour::Red,
    };
    let error = v1beta1::WidgetSpec::try_from(spec).unwrap_err();
    assert_eq!(
        error.to_string(),
        "parts[1]: the value \"sprocket\" does not exist in version v1beta1"
    );

    let error = router()
        .convert_objects(
            vec![json!({
                "apiVersion": "test.example.com/v1alpha1", "kind": "Widget",
                "metadata": {"name": "w", "namespace": "w"},
                "spec": {"size": "12 inches", "parts": [], "legacy": true}
            })],
            "test.example.com/v1",
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("spec.size: \"12 inches\" is not a size like \"12cm\" or \"120mm\""),
        "{error}"
    );
}

#[test]
fn the_converter_goes_through_the_hub() {
    let converter = WidgetVersions::converter().unwrap();
    assert_eq!(converter.hub(), Some("v1beta1"));
    assert_eq!(converter.versions(), ["v1beta1", "v1alpha1", "v1"]);
    assert_eq!(converter.path("v1alpha1", "v1").unwrap(), ["v1beta1", "v1"]);
}

#[test]
fn a_version_can_have_its_own_doc_comment() {
    let description = |schema: schemars::Schema, field: &str| {
        serde_json::to_value(schema).unwrap()["properties"][field]["description"].clone()
    };
    assert_eq!(
        description(schemars::schema_for!(v1alpha1::WidgetSpec), "size"),
        json!("The size, like \"12cm\" or \"120mm\".")
    );
    assert_eq!(
        description(schemars::schema_for!(v1::WidgetSpec), "sizeMm"),
        json!("The size in millimetres; `size: \"12cm\"` in v1alpha1.")
    );
}

/// (Through schemars directly: kube's structural schema rewriter refuses enums that mix unit
/// and data variants, like `Part`, so this kind has no CRD.)
#[test]
fn deprecations_reach_the_schema_descriptions() {
    let description = |schema: schemars::Schema| {
        serde_json::to_value(schema).unwrap()["properties"]["description"]["description"].clone()
    };
    assert_eq!(
        description(schemars::schema_for!(v1beta1::WidgetSpec)),
        json!("A free text.\n\nDeprecated since v1beta1: labels say it better")
    );
    assert_eq!(
        description(schemars::schema_for!(v1::WidgetSpec)),
        json!("A free text.\n\nDeprecated since v1beta1: labels say it better")
    );
    assert_eq!(
        description(schemars::schema_for!(v1alpha1::WidgetSpec)),
        json!("A free text.")
    );
}

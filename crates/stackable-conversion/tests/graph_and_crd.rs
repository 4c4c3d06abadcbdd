//! Construction-time checks of `KindConverter`, chain paths over three versions, and the
//! multi-version CRD builder.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use stackable_conversion::{
    BuildError, ConversionRouter, CrdError, CrdVersion, KindConverter, MultiVersionCrd,
    RouterError, WebhookTarget, check_response,
};

mod v1alpha1 {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(group = "test.io", version = "v1alpha1", kind = "Thing", namespaced)]
    pub struct ThingSpec {
        pub n: String,
    }
}
mod v1beta1 {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(group = "test.io", version = "v1beta1", kind = "Thing", namespaced)]
    pub struct ThingSpec {
        pub count: i64,
    }
}
mod v1 {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(group = "test.io", version = "v1", kind = "Thing", namespaced)]
    pub struct ThingSpec {
        pub count: i64,
        pub unit: String,
    }
}
mod other_group {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(group = "other.io", version = "v2", kind = "Thing", namespaced)]
    pub struct ThingSpec {
        pub count: i64,
    }
}
mod other_kind {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(group = "test.io", version = "v2", kind = "Gadget", namespaced)]
    pub struct GadgetSpec {
        pub count: i64,
    }
}
mod cluster_scoped {
    use super::*;
    #[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
    #[kube(group = "test.io", version = "v2", kind = "Thing")]
    pub struct ThingSpec {
        pub count: i64,
    }
}

impl TryFrom<v1alpha1::Thing> for v1beta1::Thing {
    type Error = String;
    fn try_from(t: v1alpha1::Thing) -> Result<Self, String> {
        let count = t
            .spec
            .n
            .parse()
            .map_err(|e| format!("spec.n {:?}: {e}", t.spec.n))?;
        Ok(v1beta1::Thing {
            metadata: t.metadata,
            spec: v1beta1::ThingSpec { count },
        })
    }
}
impl From<v1beta1::Thing> for v1alpha1::Thing {
    fn from(t: v1beta1::Thing) -> Self {
        v1alpha1::Thing {
            metadata: t.metadata,
            spec: v1alpha1::ThingSpec {
                n: t.spec.count.to_string(),
            },
        }
    }
}
impl From<v1beta1::Thing> for v1::Thing {
    fn from(t: v1beta1::Thing) -> Self {
        v1::Thing {
            metadata: t.metadata,
            spec: v1::ThingSpec {
                count: t.spec.count,
                unit: "pieces".into(),
            },
        }
    }
}
impl From<v1::Thing> for v1beta1::Thing {
    fn from(t: v1::Thing) -> Self {
        v1beta1::Thing {
            metadata: t.metadata,
            spec: v1beta1::ThingSpec {
                count: t.spec.count,
            },
        }
    }
}
impl From<v1alpha1::Thing> for v1::Thing {
    fn from(t: v1alpha1::Thing) -> Self {
        v1::Thing {
            metadata: t.metadata,
            spec: v1::ThingSpec {
                count: 0,
                unit: t.spec.n,
            },
        }
    }
}
impl From<v1::Thing> for v1alpha1::Thing {
    fn from(t: v1::Thing) -> Self {
        v1alpha1::Thing {
            metadata: t.metadata,
            spec: v1alpha1::ThingSpec { n: t.spec.unit },
        }
    }
}
impl From<other_group::Thing> for v1::Thing {
    fn from(t: other_group::Thing) -> Self {
        v1::Thing {
            metadata: t.metadata,
            spec: v1::ThingSpec {
                count: t.spec.count,
                unit: String::new(),
            },
        }
    }
}
impl From<v1::Thing> for other_group::Thing {
    fn from(t: v1::Thing) -> Self {
        other_group::Thing {
            metadata: t.metadata,
            spec: other_group::ThingSpec {
                count: t.spec.count,
            },
        }
    }
}
impl From<other_kind::Gadget> for v1::Thing {
    fn from(t: other_kind::Gadget) -> Self {
        v1::Thing {
            metadata: t.metadata,
            spec: v1::ThingSpec {
                count: t.spec.count,
                unit: String::new(),
            },
        }
    }
}
impl From<v1::Thing> for other_kind::Gadget {
    fn from(t: v1::Thing) -> Self {
        other_kind::Gadget {
            metadata: t.metadata,
            spec: other_kind::GadgetSpec {
                count: t.spec.count,
            },
        }
    }
}

fn chain() -> KindConverter {
    KindConverter::builder()
        .step::<v1alpha1::Thing, v1beta1::Thing>()
        .step::<v1beta1::Thing, v1::Thing>()
        .build()
        .unwrap()
}

#[test]
fn chain_finds_paths_between_all_versions() {
    let c = chain();
    assert_eq!(c.path("v1alpha1", "v1").unwrap(), ["v1beta1", "v1"]);
    assert_eq!(c.path("v1", "v1alpha1").unwrap(), ["v1beta1", "v1alpha1"]);
    assert_eq!(c.path("v1beta1", "v1beta1").unwrap(), [] as [String; 0]);
    assert!(c.path("v2", "v1").is_none());
    assert_eq!(c.hub(), None);
}

#[test]
fn chain_converts_over_two_hops_and_back_losslessly() {
    let router = ConversionRouter::from(chain());
    let object = json!({
        "apiVersion": "test.io/v1", "kind": "Thing",
        "metadata": {"name": "t", "namespace": "ns", "uid": "u", "resourceVersion": "9"},
        "spec": {"count": 42, "unit": "kg"}
    });
    let down = router
        .convert_objects(vec![object.clone()], "test.io/v1alpha1")
        .unwrap();
    assert_eq!(down[0]["spec"], json!({"n": "42"}));
    // `unit` is lost on the way: stashed under the v1 key, and only there (the chain passes
    // through v1beta1, which gets no stash of its own).
    assert_eq!(
        down[0]["metadata"]["annotations"],
        json!({"conversion.stackable.tech/stash.v1": r#"{"lost":{"spec":{"unit":"kg"}}}"#})
    );
    let up = router.convert_objects(down, "test.io/v1").unwrap();
    assert_eq!(up, vec![object]);
}

/// Objects of one review in several versions, one `apiVersion` written with an escape, in any
/// order: each goes its own way (the router finds where an object goes once for a run of
/// objects with the same `apiVersion` and `kind` and must look again when either changes).
#[test]
fn each_object_of_a_review_converts_from_its_own_version() {
    let router = ConversionRouter::from(chain());
    let thing = |api_version: &str, name: &str, spec: serde_json::Value| json!({"apiVersion": api_version, "kind": "Thing", "metadata": {"name": name}, "spec": spec});
    let objects = vec![
        thing("test.io/v1alpha1", "a", json!({"n": "1"})),
        thing("test.io/v1alpha1", "b", json!({"n": "2"})),
        thing("test.io/v1", "c", json!({"count": 3, "unit": "kg"})),
        thing("test.io/v1beta1", "d", json!({"count": 4})),
        thing("test.io/v1alpha1", "e", json!({"n": "5"})),
    ];
    let converted = router
        .convert_objects(objects.clone(), "test.io/v1")
        .unwrap();
    let specs: Vec<_> = converted.iter().map(|o| o["spec"].clone()).collect();
    assert_eq!(
        specs,
        [
            json!({"count": 1, "unit": "pieces"}),
            json!({"count": 2, "unit": "pieces"}),
            json!({"count": 3, "unit": "kg"}),
            json!({"count": 4, "unit": "pieces"}),
            json!({"count": 5, "unit": "pieces"}),
        ]
    );
    assert!(converted.iter().all(|o| o["apiVersion"] == "test.io/v1"));
    assert_eq!(converted[2], objects[2], "already in v1: unchanged");

    // The same `apiVersion` written with an escaped slash, between objects without.
    let texts = [
        r#"{"apiVersion":"test.io/v1alpha1","kind":"Thing","metadata":{"name":"f"},"spec":{"n":"6"}}"#,
        r#"{"apiVersion":"test.io\/v1alpha1","kind":"Thing","metadata":{"name":"g"},"spec":{"n":"7"}}"#,
        r#"{"apiVersion":"test.io/v1alpha1","kind":"Thing","metadata":{"name":"h"},"spec":{"n":"8"}}"#,
    ];
    let raw: Vec<Box<serde_json::value::RawValue>> = texts
        .iter()
        .map(|t| serde_json::value::RawValue::from_string((*t).to_owned()).unwrap())
        .collect();
    let raw: Vec<&serde_json::value::RawValue> = raw.iter().map(AsRef::as_ref).collect();
    let mut out = Vec::new();
    router.convert_raw(&raw, "test.io/v1", &mut out).unwrap();
    let converted: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
    let counts: Vec<_> = converted
        .iter()
        .map(|o| o["spec"]["count"].clone())
        .collect();
    assert_eq!(counts, [json!(6), json!(7), json!(8)]);

    // A version the kind does not have, after objects that converted: the review fails, named.
    let mut objects = objects;
    objects.push(thing("test.io/v9", "z", json!({})));
    let error = router
        .convert_objects(objects, "test.io/v1")
        .unwrap_err()
        .to_string();
    assert!(error.contains("v9"), "{error}");
}

#[test]
fn a_failing_step_names_object_version_and_reason() {
    let router = ConversionRouter::from(chain());
    let request = kube::core::conversion::ConversionRequest {
        types: None,
        uid: "x".into(),
        desired_api_version: "test.io/v1".into(),
        objects: vec![json!({
            "apiVersion": "test.io/v1alpha1", "kind": "Thing",
            "metadata": {"name": "bad", "namespace": "ns"}, "spec": {"n": "many"}
        })],
    };
    let response = router.convert_request(request.clone());
    check_response(&request, &response).unwrap();
    let message = &response.result.message;
    assert!(message.contains("Thing ns/bad"), "{message}");
    assert!(
        message.contains("from test.io/v1alpha1 to test.io/v1"),
        "{message}"
    );
    assert!(message.contains("spec.n \"many\""), "{message}");
    assert_eq!(response.result.code, 422);
}

#[test]
fn hub_with_all_spokes_builds() {
    let c = KindConverter::builder()
        .hub::<v1::Thing>()
        .step::<v1alpha1::Thing, v1::Thing>()
        .step::<v1beta1::Thing, v1::Thing>()
        .build()
        .unwrap();
    assert_eq!(c.hub(), Some("v1"));
    assert_eq!(c.path("v1alpha1", "v1beta1").unwrap(), ["v1", "v1beta1"]);
}

#[test]
fn construction_errors() {
    let two_hubs = KindConverter::builder()
        .hub::<v1::Thing>()
        .hub::<v1beta1::Thing>()
        .step::<v1beta1::Thing, v1::Thing>()
        .build()
        .unwrap_err();
    assert_eq!(
        two_hubs,
        BuildError::TwoHubs {
            first: "test.io/v1".into(),
            second: "test.io/v1beta1".into()
        }
    );

    let missing = KindConverter::builder()
        .hub::<v1::Thing>()
        .version::<v1alpha1::Thing>()
        .step::<v1beta1::Thing, v1::Thing>()
        .build()
        .unwrap_err();
    assert_eq!(
        missing,
        BuildError::MissingStep {
            spoke: "test.io/v1alpha1".into(),
            hub: "test.io/v1".into()
        }
    );

    let bypass = KindConverter::builder()
        .hub::<v1::Thing>()
        .step::<v1alpha1::Thing, v1beta1::Thing>()
        .step::<v1beta1::Thing, v1::Thing>()
        .build()
        .unwrap_err();
    assert!(
        matches!(bypass, BuildError::StepBypassesHub { .. }),
        "{bypass}"
    );

    let no_path = KindConverter::builder()
        .version::<v1alpha1::Thing>()
        .step::<v1beta1::Thing, v1::Thing>()
        .build()
        .unwrap_err();
    assert!(matches!(no_path, BuildError::NoPath { .. }), "{no_path}");
    assert!(no_path.to_string().contains("test.io/v1alpha1"));

    let group = KindConverter::builder()
        .step::<v1::Thing, other_group::Thing>()
        .build()
        .unwrap_err();
    assert!(
        matches!(group, BuildError::MismatchedGroup { .. }),
        "{group}"
    );

    let kind = KindConverter::builder()
        .step::<v1::Thing, other_kind::Gadget>()
        .build()
        .unwrap_err();
    assert!(matches!(kind, BuildError::MismatchedKind { .. }), "{kind}");

    let duplicate = KindConverter::builder()
        .step::<v1beta1::Thing, v1::Thing>()
        .step::<v1beta1::Thing, v1::Thing>()
        .build()
        .unwrap_err();
    assert!(
        matches!(duplicate, BuildError::DuplicateStep { .. }),
        "{duplicate}"
    );

    assert_eq!(
        KindConverter::builder().build().unwrap_err(),
        BuildError::NoVersions
    );

    let prefix = KindConverter::builder()
        .step::<v1beta1::Thing, v1::Thing>()
        .stash_annotation_prefix("Not A Prefix/")
        .build()
        .unwrap_err();
    assert!(
        matches!(prefix, BuildError::InvalidStashPrefix { .. }),
        "{prefix}"
    );
}

#[test]
fn router_refuses_two_converters_for_one_kind() {
    let error = ConversionRouter::new([chain(), chain()]).unwrap_err();
    assert_eq!(
        error,
        RouterError::DuplicateKind {
            group: "test.io".into(),
            kind: "Thing".into()
        }
    );
}

fn target() -> WebhookTarget {
    WebhookTarget::service("op", "ops")
        .path("/convert")
        .port(8443)
}

#[test]
fn crd_merges_versions_with_flags_and_webhook() {
    let crd = MultiVersionCrd::new()
        .version(CrdVersion::of::<v1alpha1::Thing>().served(false))
        .version(CrdVersion::of::<v1beta1::Thing>().deprecated(Some("use v1")))
        .version(CrdVersion::of::<v1::Thing>().storage())
        .webhook(target())
        .build()
        .unwrap();
    let value = serde_json::to_value(&crd).unwrap();
    assert_eq!(value["metadata"]["name"], "things.test.io");
    let versions = value["spec"]["versions"].as_array().unwrap();
    let flags: Vec<_> = versions
        .iter()
        .map(|v| {
            (
                v["name"].clone(),
                v["served"].clone(),
                v["storage"].clone(),
                v["deprecated"].clone(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        vec![
            (json!("v1alpha1"), json!(false), json!(false), json!(null)),
            (json!("v1beta1"), json!(true), json!(false), json!(true)),
            (json!("v1"), json!(true), json!(true), json!(null)),
        ]
    );
    assert_eq!(versions[1]["deprecationWarning"], "use v1");
    assert!(
        versions
            .iter()
            .all(|v| v["schema"]["openAPIV3Schema"].is_object())
    );
    assert_eq!(
        value["spec"]["conversion"],
        json!({
            "strategy": "Webhook",
            "webhook": {
                "conversionReviewVersions": ["v1"],
                "clientConfig": {"service": {"name": "op", "namespace": "ops", "path": "/convert", "port": 8443}}
            }
        })
    );

    let url = MultiVersionCrd::new()
        .version(CrdVersion::of::<v1::Thing>().storage())
        .webhook(WebhookTarget::Url("https://127.0.0.1:8443/convert".into()))
        .build()
        .unwrap();
    let conversion = serde_json::to_value(url.spec.conversion).unwrap();
    assert_eq!(
        conversion["webhook"]["clientConfig"],
        json!({"url": "https://127.0.0.1:8443/convert"})
    );
}

#[test]
fn crd_errors() {
    let none = MultiVersionCrd::new()
        .version(CrdVersion::of::<v1alpha1::Thing>())
        .version(CrdVersion::of::<v1::Thing>())
        .build()
        .unwrap_err();
    assert!(
        matches!(none, CrdError::StorageVersionCount { ref versions } if versions.is_empty()),
        "{none}"
    );

    let two = MultiVersionCrd::new()
        .version(CrdVersion::of::<v1alpha1::Thing>().storage())
        .version(CrdVersion::of::<v1::Thing>().storage())
        .build()
        .unwrap_err();
    assert!(two.to_string().contains("found 2 (v1alpha1, v1)"), "{two}");

    let group = MultiVersionCrd::new()
        .version(CrdVersion::of::<v1::Thing>().storage())
        .version(CrdVersion::of::<other_group::Thing>())
        .build()
        .unwrap_err();
    assert!(matches!(group, CrdError::Mismatch { .. }), "{group}");

    let kind = MultiVersionCrd::new()
        .version(CrdVersion::of::<v1::Thing>().storage())
        .version(CrdVersion::of::<other_kind::Gadget>())
        .build()
        .unwrap_err();
    assert!(matches!(kind, CrdError::Mismatch { .. }), "{kind}");

    let scope = MultiVersionCrd::new()
        .version(CrdVersion::of::<v1::Thing>().storage())
        .version(CrdVersion::of::<cluster_scoped::Thing>())
        .build()
        .unwrap_err();
    assert!(
        matches!(scope, CrdError::Mismatch { ref property, .. } if property == "scope"),
        "{scope}"
    );

    let duplicate = MultiVersionCrd::new()
        .version(CrdVersion::of::<v1::Thing>().storage())
        .version(CrdVersion::of::<v1::Thing>())
        .build()
        .unwrap_err();
    assert_eq!(
        duplicate,
        CrdError::DuplicateVersion {
            version: "v1".into()
        }
    );

    let unserved = MultiVersionCrd::new()
        .version(CrdVersion::of::<v1::Thing>().storage().served(false))
        .build()
        .unwrap_err();
    assert_eq!(unserved, CrdError::NoServedVersion);

    assert_eq!(
        MultiVersionCrd::new().build().unwrap_err(),
        CrdError::NoVersions
    );

    let merged = MultiVersionCrd::new()
        .version(CrdVersion::of::<v1::Thing>().storage())
        .version(CrdVersion::of::<v1beta1::Thing>())
        .build()
        .unwrap();
    let not_single = MultiVersionCrd::new()
        .version(CrdVersion::new(merged).storage())
        .build()
        .unwrap_err();
    assert!(
        matches!(not_single, CrdError::NotSingleVersion { count: 2, .. }),
        "{not_single}"
    );
    let _ = v1::Thing::crd_name();
}

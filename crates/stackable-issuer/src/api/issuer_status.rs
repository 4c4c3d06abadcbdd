//! The status of an issuer kind of the user: [`IssuerStatus`].
//!
//! Conditions are Kubernetes' standard `metav1.Condition`s
//! (<https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/>,
//! KEP-1623), keyed by type so that server-side apply merges them per type. The issuer
//! controller owns the `Ready` condition and records the generation it checked in its
//! `observedGeneration`.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Condition type `Ready` of an issuer.
pub const CONDITION_READY: &str = "Ready";

/// The status of an issuer (issuer-lib's `IssuerStatus`): use it as the `status` of your
/// issuer kinds (`#[kube(status = "IssuerStatus")]`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct IssuerStatus {
    /// Conditions keyed by type; the library owns `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl IssuerStatus {
    /// The condition of type `type_`, if any.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The `Ready` condition, if any.
    pub fn ready(&self) -> Option<&Condition> {
        self.condition(CONDITION_READY)
    }
}

impl JsonSchema for IssuerStatus {
    fn schema_name() -> Cow<'static, str> {
        "IssuerStatus".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The status of the issuer, written by the issuer controller.",
            "type": "object",
            "properties": {
                "conditions": {
                    "description": "Conditions keyed by type; `Ready` tells whether the issuer can sign.",
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {
                        "type": "object",
                        "required": ["type", "status", "lastTransitionTime", "reason", "message"],
                        "properties": {
                            "type": {"type": "string", "maxLength": 316},
                            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                            "lastTransitionTime": {"type": "string", "format": "date-time"},
                            "reason": {"type": "string", "maxLength": 1024},
                            "message": {"type": "string", "maxLength": 32768}
                        }
                    }
                }
            }
        })
    }
}

//! Objects the operator installs itself: a CRD (or webhook configuration) applied whole, with
//! the current `caBundle` in the same server-side apply, and kept in step.
//!
//! Injecting a bundle into an object someone else created leaves a window where the API server
//! holds a conversion webhook (or admission webhook) without a bundle. An operator that installs
//! its own CRD can close it: [`Installed`] objects are applied only once the bundle exists, and
//! the bundle is part of the first write. They are re-applied when the bundle changes and when a
//! field the operator owns drifts; fields it does not own (a label someone added, a field another
//! field manager owns) are left alone, as server-side apply does
//! (<https://kubernetes.io/docs/reference/using-api/server-side-apply/>).

use std::sync::Arc;

use k8s_openapi::{
    api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use serde_json::{Value, json};

use crate::{
    patch::encode_ca_bundle,
    target::{Target, TargetKind},
};

/// An object the operator applies whole, with the current bundle in it.
#[derive(Clone, Debug)]
pub struct Installed {
    target: Target,
    object: Arc<Value>,
}

impl Installed {
    /// A CRD with webhook conversion (its `clientConfig` set; the `caBundle` is filled in).
    pub fn crd(crd: &CustomResourceDefinition) -> Self {
        Self::new(
            Target::crd(crd.metadata.name.clone().unwrap_or_default()),
            serde_json::to_value(crd).unwrap_or(Value::Null),
        )
    }

    /// A ValidatingWebhookConfiguration (every entry's `caBundle` is filled in).
    pub fn validating_webhook(configuration: &ValidatingWebhookConfiguration) -> Self {
        Self::new(
            Target::validating_webhook(configuration.metadata.name.clone().unwrap_or_default()),
            serde_json::to_value(configuration).unwrap_or(Value::Null),
        )
    }

    /// A MutatingWebhookConfiguration (every entry's `caBundle` is filled in).
    pub fn mutating_webhook(configuration: &MutatingWebhookConfiguration) -> Self {
        Self::new(
            Target::mutating_webhook(configuration.metadata.name.clone().unwrap_or_default()),
            serde_json::to_value(configuration).unwrap_or(Value::Null),
        )
    }

    fn new(target: Target, mut object: Value) -> Self {
        if let Some(object) = object.as_object_mut() {
            object.remove("status");
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|key, _| matches!(key.as_str(), "name" | "labels" | "annotations"));
            }
            object.insert("apiVersion".to_owned(), json!(target.kind().api_version()));
            object.insert("kind".to_owned(), json!(target.kind().kind()));
        }
        Installed {
            target,
            object: Arc::new(object),
        }
    }

    /// The target the object is.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The body to apply: the object with `bundle_pem` in every caBundle field.
    pub fn body(&self, bundle_pem: &str) -> Value {
        let mut body = (*self.object).clone();
        let encoded = json!(encode_ca_bundle(bundle_pem));
        match self.target.kind() {
            TargetKind::CustomResourceDefinition => {
                if let Some(config) = body.pointer_mut("/spec/conversion/webhook/clientConfig")
                    && let Some(config) = config.as_object_mut()
                {
                    config.insert("caBundle".to_owned(), encoded);
                }
            }
            TargetKind::ValidatingWebhookConfiguration
            | TargetKind::MutatingWebhookConfiguration => {
                if let Some(entries) = body.get_mut("webhooks").and_then(Value::as_array_mut) {
                    for entry in entries {
                        if let Some(config) =
                            entry.get_mut("clientConfig").and_then(Value::as_object_mut)
                        {
                            config.insert("caBundle".to_owned(), encoded.clone());
                        }
                    }
                }
            }
            TargetKind::ApiService => {
                if let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("caBundle".to_owned(), encoded);
                }
            }
            TargetKind::ConfigMap => {}
        }
        body
    }

    /// Whether `current` (as the API returns it) already holds `body`: every field of the body
    /// has the same value there (the API server's defaults and other managers' fields may be
    /// added), and a CRD is Established.
    pub fn is_installed(&self, current: &Value, body: &Value) -> bool {
        contains(current, body)
            && (self.target.kind() != TargetKind::CustomResourceDefinition || established(current))
    }
}

/// Whether a CRD's `Established` condition is `True`.
pub fn established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Established")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Whether `whole` contains `part`: objects key by key, arrays element by element (same
/// length), numbers by value (`0` and `0.0` are equal), the rest by equality.
pub fn contains(whole: &Value, part: &Value) -> bool {
    match (whole, part) {
        (Value::Object(whole), Value::Object(part)) => part
            .iter()
            .all(|(key, value)| whole.get(key).is_some_and(|w| contains(w, value))),
        (Value::Array(whole), Value::Array(part)) => {
            whole.len() == part.len() && whole.iter().zip(part).all(|(w, p)| contains(w, p))
        }
        (Value::Number(w), Value::Number(p)) => w.as_f64() == p.as_f64(),
        (w, p) => w == p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";

    fn crd() -> CustomResourceDefinition {
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": { "name": "gadgets.example.com", "resourceVersion": "7", "uid": "u" },
            "spec": {
                "group": "example.com", "scope": "Namespaced",
                "names": { "kind": "Gadget", "plural": "gadgets" },
                "versions": [{ "name": "v1", "served": true, "storage": true,
                    "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                        "port": { "type": "integer", "minimum": 0.0, "maximum": 65535.0 } } } } }],
                "conversion": { "strategy": "Webhook", "webhook": { "conversionReviewVersions": ["v1"],
                    "clientConfig": { "service": { "name": "s", "namespace": "n" } } } }
            },
            "status": { "storedVersions": ["v1"] }
        }))
        .unwrap()
    }

    #[test]
    fn the_body_carries_the_bundle_and_no_server_fields() {
        let installed = Installed::crd(&crd());
        let body = installed.body(PEM);
        assert_eq!(
            body.pointer("/spec/conversion/webhook/clientConfig/caBundle"),
            Some(&json!(encode_ca_bundle(PEM)))
        );
        assert_eq!(body["metadata"], json!({ "name": "gadgets.example.com" }));
        assert!(body.get("status").is_none());
    }

    #[test]
    fn installed_means_contained_and_established() {
        let installed = Installed::crd(&crd());
        let body = installed.body(PEM);
        let mut current = body.clone();
        // The API server adds defaults and writes integers without a fraction.
        current["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["port"] =
            json!({ "type": "integer", "minimum": 0, "maximum": 65535 });
        current["metadata"]["labels"] = json!({ "team": "someone-elses" });
        current["spec"]["preserveUnknownFields"] = json!(false);
        assert!(
            !installed.is_installed(&current, &body),
            "not Established yet"
        );
        current["status"] = json!({ "conditions": [{ "type": "Established", "status": "True" }] });
        assert!(installed.is_installed(&current, &body));
        // A field it owns drifted, or another bundle: not installed.
        let mut drifted = current.clone();
        drifted["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"] = json!("other");
        assert!(!installed.is_installed(&drifted, &body));
    }
}

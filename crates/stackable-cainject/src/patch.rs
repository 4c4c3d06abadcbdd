//! Minimal server-side apply bodies that hold only the caBundle fields.
//!
//! Server-side apply records which field manager owns which field
//! (<https://kubernetes.io/docs/reference/using-api/server-side-apply/>). The injector applies
//! an object with `apiVersion`, `kind`, `metadata.name` (and namespace) and nothing but the
//! caBundle path, so it owns exactly those fields and Helm, kubectl or a GitOps tool keep
//! owning everything else. Webhook entries are addressed by `name`, the key of the
//! `webhooks` map-list in the API server's apply schema.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};
use snafu::{Snafu, ensure};

use crate::target::{CONFIG_MAP_KEY, Target, TargetKind, WebhookSelection};

/// Why no patch can be built for a target.
#[derive(Debug, Snafu, PartialEq, Eq)]
pub enum PatchError {
    /// A CRD that does not use webhook conversion has no caBundle to inject.
    #[snafu(display(
        "{target} has no webhook conversion (spec.conversion.strategy is {strategy:?}, not \"Webhook\"): \
         set spec.conversion.strategy: Webhook and spec.conversion.webhook.clientConfig before injecting a caBundle"
    ))]
    NoWebhookConversion {
        /// The target.
        target: String,
        /// The strategy found (`None` when absent).
        strategy: String,
    },

    /// A CRD with strategy Webhook but no `spec.conversion.webhook.clientConfig`.
    #[snafu(display(
        "{target} has spec.conversion.strategy Webhook but no spec.conversion.webhook.clientConfig"
    ))]
    NoConversionClientConfig {
        /// The target.
        target: String,
    },

    /// A webhook configuration without entries.
    #[snafu(display("{target} has no webhooks[] entries to inject into"))]
    NoWebhooks {
        /// The target.
        target: String,
    },

    /// Selected webhook entries that the configuration does not contain.
    #[snafu(display("{target} has no webhooks[] entries named {missing:?} (it has {present:?})"))]
    MissingWebhooks {
        /// The target.
        target: String,
        /// The selected names not found.
        missing: Vec<String>,
        /// The names present.
        present: Vec<String>,
    },
}

/// The bundle as the API encodes `caBundle` (base64 of the PEM bytes).
pub fn encode_ca_bundle(pem: &str) -> String {
    STANDARD.encode(pem.as_bytes())
}

fn object_meta(target: &Target) -> Value {
    match target.namespace() {
        Some(ns) => json!({ "name": target.name(), "namespace": ns }),
        None => json!({ "name": target.name() }),
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// Webhook entry names of `current` that `selection` picks, in object order.
fn selected_webhooks(
    target: &Target,
    current: &Value,
    selection: &WebhookSelection,
) -> Result<Vec<(String, Option<String>)>, PatchError> {
    let entries = current
        .get("webhooks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    ensure!(
        !entries.is_empty(),
        NoWebhooksSnafu {
            target: target.to_string()
        }
    );
    let present: Vec<String> = entries
        .iter()
        .filter_map(|e| str_at(e, "/name").map(str::to_owned))
        .collect();
    if let WebhookSelection::Named(names) = selection {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !present.contains(n))
            .cloned()
            .collect();
        ensure!(
            missing.is_empty(),
            MissingWebhooksSnafu {
                target: target.to_string(),
                missing,
                present: present.clone(),
            }
        );
    }
    Ok(entries
        .iter()
        .filter_map(|e| {
            let name = str_at(e, "/name")?;
            selection.selects(name).then(|| {
                (
                    name.to_owned(),
                    str_at(e, "/clientConfig/caBundle").map(str::to_owned),
                )
            })
        })
        .collect())
}

/// Whether `current` (the object as the API returns it) already carries `bundle_pem` in
/// every field the target covers.
pub fn is_injected(target: &Target, current: &Value, bundle_pem: &str) -> Result<bool, PatchError> {
    Ok(apply_body(target, current, bundle_pem)?.is_none())
}

/// The server-side apply body that writes `bundle_pem` into `target`, or `None` when the
/// object already holds it (no write needed).
///
/// `current` is the object as the API returns it; it is read to check that the target
/// has the fields to inject into (a CRD's webhook conversion, the webhook entries).
pub fn apply_body(
    target: &Target,
    current: &Value,
    bundle_pem: &str,
) -> Result<Option<Value>, PatchError> {
    body(target, current, bundle_pem, false)
}

/// Like [`apply_body`], and the annotations this writer owns: `annotations` are set, any other
/// key of `owned` is left out (so server-side apply removes it, when this field manager owned
/// it). `None` when the object already carries the bundle and exactly these annotations.
///
/// The body always holds the caBundle fields as well: a server-side apply that left them out
/// would remove them.
pub fn apply_body_with_annotations(
    target: &Target,
    current: &Value,
    bundle_pem: &str,
    annotations: &BTreeMap<String, String>,
    owned: &[&str],
) -> Result<Option<Value>, PatchError> {
    let current_annotations = current.pointer("/metadata/annotations");
    let annotations_match = owned.iter().all(|key| {
        current_annotations
            .and_then(|a| a.get(*key))
            .and_then(Value::as_str)
            == annotations.get(*key).map(String::as_str)
    });
    if annotations_match && body(target, current, bundle_pem, false)?.is_none() {
        return Ok(None);
    }
    let mut full = body(target, current, bundle_pem, true)?.unwrap_or(Value::Null);
    if !annotations.is_empty()
        && let Some(meta) = full.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("annotations".to_owned(), json!(annotations));
    }
    Ok(Some(full))
}

fn body(
    target: &Target,
    current: &Value,
    bundle_pem: &str,
    always: bool,
) -> Result<Option<Value>, PatchError> {
    let encoded = encode_ca_bundle(bundle_pem);
    let head = |rest: Value| -> Value {
        let mut body = json!({
            "apiVersion": target.kind().api_version(),
            "kind": target.kind().kind(),
            "metadata": object_meta(target),
        });
        if let (Some(body), Some(rest)) = (body.as_object_mut(), rest.as_object()) {
            body.extend(rest.clone());
        }
        body
    };
    match target.kind() {
        TargetKind::CustomResourceDefinition => {
            let strategy = str_at(current, "/spec/conversion/strategy");
            ensure!(
                strategy == Some("Webhook"),
                NoWebhookConversionSnafu {
                    target: target.to_string(),
                    strategy: strategy.unwrap_or("None").to_owned(),
                }
            );
            ensure!(
                current
                    .pointer("/spec/conversion/webhook/clientConfig")
                    .is_some_and(Value::is_object),
                NoConversionClientConfigSnafu {
                    target: target.to_string()
                }
            );
            if !always
                && str_at(current, "/spec/conversion/webhook/clientConfig/caBundle")
                    == Some(encoded.as_str())
            {
                return Ok(None);
            }
            Ok(Some(head(json!({
                "spec": { "conversion": { "webhook": { "clientConfig": { "caBundle": encoded } } } }
            }))))
        }
        TargetKind::ValidatingWebhookConfiguration | TargetKind::MutatingWebhookConfiguration => {
            let entries = selected_webhooks(target, current, target.webhooks())?;
            if !always
                && entries
                    .iter()
                    .all(|(_, bundle)| bundle.as_deref() == Some(encoded.as_str()))
            {
                return Ok(None);
            }
            let webhooks: Vec<Value> = entries
                .into_iter()
                .map(|(name, _)| json!({ "name": name, "clientConfig": { "caBundle": encoded } }))
                .collect();
            Ok(Some(head(json!({ "webhooks": webhooks }))))
        }
        TargetKind::ApiService => {
            if !always && str_at(current, "/spec/caBundle") == Some(encoded.as_str()) {
                return Ok(None);
            }
            Ok(Some(head(json!({ "spec": { "caBundle": encoded } }))))
        }
        TargetKind::ConfigMap => {
            let key_pointer = format!("/data/{CONFIG_MAP_KEY}");
            if !always && str_at(current, &key_pointer) == Some(bundle_pem) {
                return Ok(None);
            }
            Ok(Some(head(
                json!({ "data": { CONFIG_MAP_KEY: bundle_pem } }),
            )))
        }
    }
}

/// The PEM bundles `current` carries in every field the target covers (one per selected
/// webhook entry; `None` for a field without a bundle). Empty when the object has no field to
/// inject into.
pub fn published_bundles(target: &Target, current: &Value) -> Vec<Option<String>> {
    let decode = |b64: Option<&str>| -> Option<String> {
        let bytes = STANDARD.decode(b64?).ok()?;
        String::from_utf8(bytes).ok()
    };
    match target.kind() {
        TargetKind::CustomResourceDefinition => vec![decode(str_at(
            current,
            "/spec/conversion/webhook/clientConfig/caBundle",
        ))],
        TargetKind::ValidatingWebhookConfiguration | TargetKind::MutatingWebhookConfiguration => {
            selected_webhooks(target, current, target.webhooks())
                .map(|entries| {
                    entries
                        .into_iter()
                        .map(|(_, bundle)| decode(bundle.as_deref()))
                        .collect()
                })
                .unwrap_or_default()
        }
        TargetKind::ApiService => vec![decode(str_at(current, "/spec/caBundle"))],
        TargetKind::ConfigMap => {
            vec![str_at(current, &format!("/data/{CONFIG_MAP_KEY}")).map(str::to_owned)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_applied_with_the_bundle_and_compared() {
        let target = Target::crd("crontabs.example.com");
        let current = crd(json!({
            "strategy": "Webhook",
            "webhook": { "clientConfig": { "caBundle": encode_ca_bundle(PEM) } }
        }));
        let owned = ["x.example.com/retired"];
        // Bundle in place, no annotation wanted, none there: nothing to write.
        assert_eq!(
            apply_body_with_annotations(&target, &current, PEM, &BTreeMap::new(), &owned).unwrap(),
            None
        );
        // An annotation wanted: the body carries it and the caBundle (ownership kept).
        let wanted = BTreeMap::from([("x.example.com/retired".to_owned(), "{}".to_owned())]);
        let body = apply_body_with_annotations(&target, &current, PEM, &wanted, &owned)
            .unwrap()
            .unwrap();
        assert_eq!(
            body["metadata"]["annotations"]["x.example.com/retired"],
            "{}"
        );
        assert_eq!(
            body.pointer("/spec/conversion/webhook/clientConfig/caBundle"),
            Some(&json!(encode_ca_bundle(PEM)))
        );
        // The object carries it: nothing to write; it carries one no longer wanted: written.
        let mut with = current.clone();
        with["metadata"]["annotations"] = json!({"x.example.com/retired": "{}"});
        assert_eq!(
            apply_body_with_annotations(&target, &with, PEM, &wanted, &owned).unwrap(),
            None
        );
        let body = apply_body_with_annotations(&target, &with, PEM, &BTreeMap::new(), &owned)
            .unwrap()
            .unwrap();
        assert!(body["metadata"].get("annotations").is_none());
    }

    #[test]
    fn published_bundles_are_read_from_every_selected_field() {
        let encoded = encode_ca_bundle(PEM);
        let crd_target = Target::crd("crontabs.example.com");
        let with = crd(json!({
            "strategy": "Webhook",
            "webhook": { "clientConfig": { "caBundle": encoded } }
        }));
        assert_eq!(
            published_bundles(&crd_target, &with),
            vec![Some(PEM.to_owned())]
        );
        let without = crd(json!({ "strategy": "Webhook", "webhook": { "clientConfig": {} } }));
        assert_eq!(published_bundles(&crd_target, &without), vec![None]);

        let hooks = Target::validating_webhook("v");
        let config = json!({
            "webhooks": [
                { "name": "a", "clientConfig": { "caBundle": encoded } },
                { "name": "b", "clientConfig": {} },
            ]
        });
        assert_eq!(
            published_bundles(&hooks, &config),
            vec![Some(PEM.to_owned()), None]
        );
        assert!(published_bundles(&hooks, &json!({})).is_empty());
    }

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";

    fn crd(conversion: Value) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": { "name": "crontabs.example.com", "resourceVersion": "7" },
            "spec": { "group": "example.com", "conversion": conversion }
        })
    }

    #[test]
    fn crd_body_is_minimal() {
        let target = Target::crd("crontabs.example.com");
        let current = crd(json!({
            "strategy": "Webhook",
            "webhook": { "clientConfig": { "service": { "name": "s", "namespace": "n" } },
                         "conversionReviewVersions": ["v1"] }
        }));
        let body = apply_body(&target, &current, PEM).unwrap().unwrap();
        assert_eq!(
            body,
            json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": { "name": "crontabs.example.com" },
                "spec": { "conversion": { "webhook": { "clientConfig": {
                    "caBundle": encode_ca_bundle(PEM) } } } }
            })
        );
    }

    #[test]
    fn crd_already_injected_needs_no_write() {
        let target = Target::crd("crontabs.example.com");
        let current = crd(json!({
            "strategy": "Webhook",
            "webhook": { "clientConfig": { "caBundle": encode_ca_bundle(PEM) } }
        }));
        assert_eq!(apply_body(&target, &current, PEM).unwrap(), None);
        assert!(is_injected(&target, &current, PEM).unwrap());
        assert!(!is_injected(&target, &current, "other").unwrap());
    }

    #[test]
    fn crd_without_webhook_conversion_is_an_error() {
        let target = Target::crd("crontabs.example.com");
        let err = apply_body(&target, &crd(json!({ "strategy": "None" })), PEM).unwrap_err();
        assert!(matches!(err, PatchError::NoWebhookConversion { .. }));
        let message = err.to_string();
        assert!(message.contains("crontabs.example.com"), "{message}");
        assert!(message.contains("no webhook conversion"), "{message}");
        let no_conversion = json!({ "metadata": { "name": "x" }, "spec": {} });
        assert!(matches!(
            apply_body(&target, &no_conversion, PEM),
            Err(PatchError::NoWebhookConversion { strategy, .. }) if strategy == "None"
        ));
        let no_client = crd(json!({ "strategy": "Webhook" }));
        assert!(matches!(
            apply_body(&target, &no_client, PEM),
            Err(PatchError::NoConversionClientConfig { .. })
        ));
    }

    fn webhooks(entries: &[(&str, Option<&str>)]) -> Value {
        let entries: Vec<Value> = entries
            .iter()
            .map(|(name, bundle)| {
                let mut cc = json!({ "service": { "name": "s", "namespace": "n" } });
                if let Some(b) = bundle {
                    cc["caBundle"] = json!(b);
                }
                json!({ "name": name, "clientConfig": cc, "sideEffects": "None" })
            })
            .collect();
        json!({ "metadata": { "name": "hooks" }, "webhooks": entries })
    }

    #[test]
    fn webhook_body_keys_entries_by_name() {
        let target = Target::mutating_webhook("hooks");
        let current = webhooks(&[("a.x.io", None), ("b.x.io", Some("old"))]);
        let body = apply_body(&target, &current, PEM).unwrap().unwrap();
        let enc = encode_ca_bundle(PEM);
        assert_eq!(
            body,
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": { "name": "hooks" },
                "webhooks": [
                    { "name": "a.x.io", "clientConfig": { "caBundle": enc } },
                    { "name": "b.x.io", "clientConfig": { "caBundle": enc } },
                ]
            })
        );
    }

    #[test]
    fn webhook_selection_limits_entries_and_reports_missing() {
        let enc = encode_ca_bundle(PEM);
        let current = webhooks(&[("a.x.io", None), ("b.x.io", None)]);
        let target = Target::validating_webhook("hooks").only_webhooks(["b.x.io"]);
        let body = apply_body(&target, &current, PEM).unwrap().unwrap();
        assert_eq!(
            body["webhooks"],
            json!([{ "name": "b.x.io", "clientConfig": { "caBundle": enc } }])
        );
        // Only the selected entry has to match for "already injected".
        let current = webhooks(&[("a.x.io", None), ("b.x.io", Some(&enc))]);
        assert_eq!(apply_body(&target, &current, PEM).unwrap(), None);
        let all = Target::validating_webhook("hooks");
        assert!(apply_body(&all, &current, PEM).unwrap().is_some());

        let target = Target::validating_webhook("hooks").only_webhooks(["c.x.io"]);
        let err = apply_body(&target, &current, PEM).unwrap_err();
        assert!(err.to_string().contains("c.x.io"), "{err}");
        let err = apply_body(&all, &json!({ "metadata": {} }), PEM).unwrap_err();
        assert!(matches!(err, PatchError::NoWebhooks { .. }));
    }

    #[test]
    fn api_service_and_config_map_bodies() {
        let body = apply_body(&Target::api_service("v1.x.io"), &json!({ "spec": {} }), PEM)
            .unwrap()
            .unwrap();
        assert_eq!(
            body,
            json!({
                "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": { "name": "v1.x.io" },
                "spec": { "caBundle": encode_ca_bundle(PEM) }
            })
        );
        let target = Target::config_map("ns", "trust");
        let body = apply_body(&target, &json!({ "data": { "other": "x" } }), PEM)
            .unwrap()
            .unwrap();
        assert_eq!(
            body,
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "trust", "namespace": "ns" },
                "data": { "service-ca.crt": PEM }
            })
        );
        let current = json!({ "data": { "service-ca.crt": PEM } });
        assert_eq!(apply_body(&target, &current, PEM).unwrap(), None);
    }
}

//! The objects a caBundle is injected into, and how to address them in the API.
//!
//! The fields are those the API server reads when it calls a webhook or an aggregated API:
//! a CRD's `spec.conversion.webhook.clientConfig.caBundle`
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#configure-customresourcedefinition-to-use-conversion-webhooks>),
//! `webhooks[].clientConfig.caBundle` of admission webhook configurations
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>),
//! an APIService's `spec.caBundle`
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/configure-aggregation-layer/>), and the
//! `service-ca.crt` key of a ConfigMap (as OpenShift's service CA operator does).

use std::{collections::BTreeSet, fmt};

use kube::core::{ApiResource, GroupVersionKind};

/// The kinds of object a bundle can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    /// `apiextensions.k8s.io/v1` CustomResourceDefinition (conversion webhook).
    CustomResourceDefinition,
    /// `admissionregistration.k8s.io/v1` ValidatingWebhookConfiguration.
    ValidatingWebhookConfiguration,
    /// `admissionregistration.k8s.io/v1` MutatingWebhookConfiguration.
    MutatingWebhookConfiguration,
    /// `apiregistration.k8s.io/v1` APIService.
    ApiService,
    /// `v1` ConfigMap, key `service-ca.crt`.
    ConfigMap,
}

/// The ConfigMap key a bundle is written to (OpenShift's `service-ca.crt`).
pub const CONFIG_MAP_KEY: &str = "service-ca.crt";

impl TargetKind {
    /// Every kind.
    pub const ALL: [TargetKind; 5] = [
        TargetKind::CustomResourceDefinition,
        TargetKind::ValidatingWebhookConfiguration,
        TargetKind::MutatingWebhookConfiguration,
        TargetKind::ApiService,
        TargetKind::ConfigMap,
    ];

    /// The API group (empty for the core group).
    pub fn group(self) -> &'static str {
        match self {
            TargetKind::CustomResourceDefinition => "apiextensions.k8s.io",
            TargetKind::ValidatingWebhookConfiguration
            | TargetKind::MutatingWebhookConfiguration => "admissionregistration.k8s.io",
            TargetKind::ApiService => "apiregistration.k8s.io",
            TargetKind::ConfigMap => "",
        }
    }

    /// The API version (always `v1`).
    pub fn version(self) -> &'static str {
        "v1"
    }

    /// The `apiVersion` field value.
    pub fn api_version(self) -> String {
        match self.group() {
            "" => self.version().to_owned(),
            group => format!("{group}/{}", self.version()),
        }
    }

    /// The `kind` field value.
    pub fn kind(self) -> &'static str {
        match self {
            TargetKind::CustomResourceDefinition => "CustomResourceDefinition",
            TargetKind::ValidatingWebhookConfiguration => "ValidatingWebhookConfiguration",
            TargetKind::MutatingWebhookConfiguration => "MutatingWebhookConfiguration",
            TargetKind::ApiService => "APIService",
            TargetKind::ConfigMap => "ConfigMap",
        }
    }

    /// The resource (plural) name.
    pub fn plural(self) -> &'static str {
        match self {
            TargetKind::CustomResourceDefinition => "customresourcedefinitions",
            TargetKind::ValidatingWebhookConfiguration => "validatingwebhookconfigurations",
            TargetKind::MutatingWebhookConfiguration => "mutatingwebhookconfigurations",
            TargetKind::ApiService => "apiservices",
            TargetKind::ConfigMap => "configmaps",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, TargetKind::ConfigMap)
    }

    /// The resource as RBAC spells it: `plural.group`, or `plural` for the core group.
    pub fn rbac_resource(self) -> String {
        match self.group() {
            "" => self.plural().to_owned(),
            group => format!("{}.{group}", self.plural()),
        }
    }

    /// The [`ApiResource`] for a dynamic API.
    pub fn api_resource(self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group(), self.version(), self.kind()),
            self.plural(),
        )
    }

    /// Looks a kind up by its `kind` field value.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.kind() == kind)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// Which entries of a webhook configuration receive the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum WebhookSelection {
    /// Every entry of `webhooks[]`.
    #[default]
    All,
    /// Only the entries with these names; a missing name is an error.
    Named(BTreeSet<String>),
}

impl WebhookSelection {
    /// Whether the entry named `name` is selected.
    pub fn selects(&self, name: &str) -> bool {
        match self {
            WebhookSelection::All => true,
            WebhookSelection::Named(names) => names.contains(name),
        }
    }
}

/// One object to inject into, by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    kind: TargetKind,
    name: String,
    namespace: Option<String>,
    webhooks: WebhookSelection,
}

impl Target {
    /// A CRD's conversion webhook, by CRD name (`crontabs.example.com`).
    pub fn crd(name: impl Into<String>) -> Self {
        Self::cluster(TargetKind::CustomResourceDefinition, name)
    }

    /// Every entry of a ValidatingWebhookConfiguration.
    pub fn validating_webhook(name: impl Into<String>) -> Self {
        Self::cluster(TargetKind::ValidatingWebhookConfiguration, name)
    }

    /// Every entry of a MutatingWebhookConfiguration.
    pub fn mutating_webhook(name: impl Into<String>) -> Self {
        Self::cluster(TargetKind::MutatingWebhookConfiguration, name)
    }

    /// An APIService (`v1beta1.metrics.k8s.io`).
    pub fn api_service(name: impl Into<String>) -> Self {
        Self::cluster(TargetKind::ApiService, name)
    }

    /// A ConfigMap's `service-ca.crt` key.
    pub fn config_map(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: TargetKind::ConfigMap,
            name: name.into(),
            namespace: Some(namespace.into()),
            webhooks: WebhookSelection::All,
        }
    }

    /// A target of any kind; `namespace` is used only for namespaced kinds.
    pub fn new(kind: TargetKind, namespace: Option<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            namespace: if kind.namespaced() { namespace } else { None },
            webhooks: WebhookSelection::All,
        }
    }

    fn cluster(kind: TargetKind, name: impl Into<String>) -> Self {
        Self::new(kind, None, name)
    }

    /// Restricts a webhook configuration target to the named entries.
    #[must_use]
    pub fn only_webhooks<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.webhooks = WebhookSelection::Named(names.into_iter().map(Into::into).collect());
        self
    }

    /// The kind.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace (ConfigMaps only).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The selected webhook entries.
    pub fn webhooks(&self) -> &WebhookSelection {
        &self.webhooks
    }

    /// The RBAC rule needed to perform `verb` on this object, for error messages:
    /// `patch customresourcedefinitions.apiextensions.k8s.io crontabs.example.com`.
    pub fn rbac_rule(&self, verb: &str) -> String {
        let resource = self.kind.rbac_resource();
        match &self.namespace {
            Some(ns) => format!("{verb} {resource} {} (namespace {ns})", self.name),
            None => format!("{verb} {resource} {}", self.name),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_each_kind() {
        assert_eq!(
            TargetKind::CustomResourceDefinition.api_version(),
            "apiextensions.k8s.io/v1"
        );
        assert_eq!(TargetKind::ConfigMap.api_version(), "v1");
        assert_eq!(TargetKind::ApiService.kind(), "APIService");
        let ar = TargetKind::MutatingWebhookConfiguration.api_resource();
        assert_eq!(ar.plural, "mutatingwebhookconfigurations");
        assert_eq!(ar.api_version, "admissionregistration.k8s.io/v1");
        for kind in TargetKind::ALL {
            assert_eq!(TargetKind::from_kind(kind.kind()), Some(kind));
        }
        assert_eq!(TargetKind::from_kind("Secret"), None);
    }

    #[test]
    fn rbac_rules_name_the_object() {
        assert_eq!(
            Target::crd("crontabs.example.com").rbac_rule("patch"),
            "patch customresourcedefinitions.apiextensions.k8s.io crontabs.example.com"
        );
        assert_eq!(
            Target::config_map("ns1", "trust").rbac_rule("get"),
            "get configmaps trust (namespace ns1)"
        );
        assert_eq!(
            Target::api_service("v1.x.io").rbac_rule("patch"),
            "patch apiservices.apiregistration.k8s.io v1.x.io"
        );
    }

    #[test]
    fn cluster_kinds_drop_namespace_and_selection_works() {
        let t = Target::new(TargetKind::ApiService, Some("x".into()), "a");
        assert_eq!(t.namespace(), None);
        let t = Target::validating_webhook("v").only_webhooks(["a.example.com"]);
        assert!(t.webhooks().selects("a.example.com"));
        assert!(!t.webhooks().selects("b.example.com"));
        assert!(WebhookSelection::All.selects("anything"));
        assert_eq!(t.to_string(), "ValidatingWebhookConfiguration v");
    }
}

//! Webhook configurations from code: an admission route declares, next to its handler, which
//! requests the API server sends it ([`Registration`]); the server renders the
//! `ValidatingWebhookConfiguration` and `MutatingWebhookConfiguration` for the Service (or URL)
//! that reaches it ([`WebhookServerBuilder::admission_configurations`]), so the rules in the
//! cluster and the routes in the binary cannot drift apart.
//!
//! The field meanings are the API server's
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#webhook-configuration>);
//! the defaults are the safe ones: `failurePolicy: Fail`, `sideEffects: None`, a 10 s timeout,
//! `admissionReviewVersions: ["v1"]`, `matchPolicy: Equivalent`.
//!
//! ```
//! use std::time::Duration;
//! use k8s_openapi::api::core::v1::Pod;
//! use kube::core::admission::{AdmissionRequest, Operation};
//! use stackable_webhook::{
//!     CertSource, Endpoint, Registration, Rule, Validation, WebhookServer, registration::Scope,
//! };
//!
//! let builder = WebhookServer::builder().validating_registered(
//!     "/validate",
//!     Registration::new("pods.validate.example.com")
//!         .rule(Rule::for_resource::<Pod>([Operation::Create, Operation::Update]).scope(Scope::Namespaced))
//!         .timeout(Duration::from_secs(5)),
//!     |_: AdmissionRequest<Pod>| async { Validation::allow() },
//! );
//! let configurations = builder
//!     .admission_configurations("example", &Endpoint::service("example", "example-ns").port(443));
//! let validating = configurations.validating.expect("one validating route");
//! assert_eq!(validating.webhooks.as_ref().map(Vec::len), Some(1));
//! assert!(configurations.mutating.is_none());
//! ```

use std::{collections::BTreeSet, time::Duration};

use k8s_openapi::{
    api::admissionregistration::v1::{
        MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
        ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use kube::core::{Resource, admission::Operation};

/// Which objects a rule matches by scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Namespaced and cluster-scoped objects (`*`, the API server's default).
    #[default]
    All,
    /// Only namespaced objects.
    Namespaced,
    /// Only cluster-scoped objects.
    Cluster,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::All => "*",
            Scope::Namespaced => "Namespaced",
            Scope::Cluster => "Cluster",
        }
    }
}

/// What the API server does when the webhook cannot be called (or times out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// The request is rejected (the default: a policy that can be skipped is no policy).
    #[default]
    Fail,
    /// The request goes on as if the webhook had allowed it.
    Ignore,
}

/// Whether calling the webhook has effects outside the request (dry runs need `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SideEffects {
    /// No side effects (the default; the only value dry-run requests are sent with).
    #[default]
    None,
    /// Side effects only when the request is not a dry run.
    NoneOnDryRun,
}

/// One rule: operations on resources of API groups and versions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Rule {
    operations: Vec<String>,
    api_groups: Vec<String>,
    api_versions: Vec<String>,
    resources: Vec<String>,
    scope: Scope,
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

impl Rule {
    /// Operations on the resource of `K` (its group, version and plural).
    pub fn for_resource<K: Resource<DynamicType = ()>>(
        operations: impl IntoIterator<Item = Operation>,
    ) -> Self {
        Self::new(
            operations,
            [K::group(&()).into_owned()],
            [K::version(&()).into_owned()],
            [K::plural(&()).into_owned()],
        )
    }

    /// Operations on `resources` (plural names, `*`, or `name/subresource`) of `api_groups`
    /// (`""` is the core group) in `api_versions`.
    pub fn new<S: Into<String>>(
        operations: impl IntoIterator<Item = Operation>,
        api_groups: impl IntoIterator<Item = S>,
        api_versions: impl IntoIterator<Item = S>,
        resources: impl IntoIterator<Item = S>,
    ) -> Self {
        Rule {
            operations: operations
                .into_iter()
                .map(|o| operation_name(&o).to_owned())
                .collect(),
            api_groups: api_groups.into_iter().map(Into::into).collect(),
            api_versions: api_versions.into_iter().map(Into::into).collect(),
            resources: resources.into_iter().map(Into::into).collect(),
            scope: Scope::All,
        }
    }

    /// Every operation (`*`) instead of the listed ones.
    pub fn all_operations(mut self) -> Self {
        self.operations = vec!["*".to_owned()];
        self
    }

    /// Restricts the rule to namespaced or cluster-scoped objects.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    fn render(&self) -> RuleWithOperations {
        RuleWithOperations {
            api_groups: Some(self.api_groups.clone()),
            api_versions: Some(self.api_versions.clone()),
            operations: Some(self.operations.clone()),
            resources: Some(self.resources.clone()),
            scope: Some(self.scope.as_str().to_owned()),
        }
    }
}

/// How one admission route is registered with the API server: the entry of the webhook
/// configuration that sends requests to it.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Registration {
    name: String,
    rules: Vec<Rule>,
    failure_policy: FailurePolicy,
    side_effects: SideEffects,
    timeout: Duration,
    namespace_selector: Option<LabelSelector>,
    object_selector: Option<LabelSelector>,
    match_conditions: Vec<(String, String)>,
    reinvocation: bool,
}

impl Registration {
    /// An entry named `name` (fully qualified, e.g. `pods.validate.example.com`; unique in the
    /// configuration) with no rules yet, failure policy `Fail`, no side effects, 10 s timeout.
    pub fn new(name: impl Into<String>) -> Self {
        Registration {
            name: name.into(),
            rules: Vec::new(),
            failure_policy: FailurePolicy::Fail,
            side_effects: SideEffects::None,
            timeout: Duration::from_secs(10),
            namespace_selector: None,
            object_selector: None,
            match_conditions: Vec::new(),
            reinvocation: false,
        }
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a rule.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// What the API server does when the webhook cannot be called.
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Whether the webhook has side effects.
    pub fn side_effects(mut self, side_effects: SideEffects) -> Self {
        self.side_effects = side_effects;
        self
    }

    /// How long the API server waits for an answer (whole seconds, 1 to 30).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Only objects in namespaces matching `selector`.
    pub fn namespace_selector(mut self, selector: LabelSelector) -> Self {
        self.namespace_selector = Some(selector);
        self
    }

    /// Only objects matching `selector`.
    pub fn object_selector(mut self, selector: LabelSelector) -> Self {
        self.object_selector = Some(selector);
        self
    }

    /// Only requests for which the CEL `expression` is true (the API server evaluates it;
    /// `name` names it in errors).
    pub fn match_condition(
        mut self,
        name: impl Into<String>,
        expression: impl Into<String>,
    ) -> Self {
        self.match_conditions.push((name.into(), expression.into()));
        self
    }

    /// For a mutating webhook: call it again when a later mutating webhook changed the object
    /// (`reinvocationPolicy: IfNeeded`).
    pub fn reinvoke_if_needed(mut self) -> Self {
        self.reinvocation = true;
        self
    }

    /// Why the API server would reject this entry, if it would (checked when the server is
    /// built).
    pub(crate) fn problem(&self) -> Option<String> {
        let segments = self.name.split('.').collect::<Vec<_>>();
        if segments.len() < 3 || segments.iter().any(|s| !is_dns_label(s)) {
            return Some(format!(
                "the name {:?} must be a fully qualified DNS name of at least three labels (e.g. pods.validate.example.com)",
                self.name
            ));
        }
        if self.rules.is_empty() {
            return Some("it has no rules: the API server would never call it".to_owned());
        }
        if !(1..=30).contains(&self.timeout.as_secs()) || self.timeout.subsec_nanos() != 0 {
            return Some(format!(
                "the timeout {:?} must be whole seconds from 1 to 30",
                self.timeout
            ));
        }
        None
    }

    fn timeout_seconds(&self) -> i32 {
        i32::try_from(self.timeout.as_secs()).unwrap_or(30)
    }

    fn failure_policy_str(&self) -> String {
        match self.failure_policy {
            FailurePolicy::Fail => "Fail",
            FailurePolicy::Ignore => "Ignore",
        }
        .to_owned()
    }

    fn side_effects_str(&self) -> String {
        match self.side_effects {
            SideEffects::None => "None",
            SideEffects::NoneOnDryRun => "NoneOnDryRun",
        }
        .to_owned()
    }

    fn match_conditions(&self) -> Option<Vec<MatchCondition>> {
        (!self.match_conditions.is_empty()).then(|| {
            self.match_conditions
                .iter()
                .map(|(name, expression)| MatchCondition {
                    name: name.clone(),
                    expression: expression.clone(),
                })
                .collect()
        })
    }

    pub(crate) fn validating(&self, client_config: WebhookClientConfig) -> ValidatingWebhook {
        ValidatingWebhook {
            admission_review_versions: vec!["v1".to_owned()],
            client_config,
            failure_policy: Some(self.failure_policy_str()),
            match_conditions: self.match_conditions(),
            match_policy: Some("Equivalent".to_owned()),
            name: self.name.clone(),
            namespace_selector: self.namespace_selector.clone(),
            object_selector: self.object_selector.clone(),
            rules: Some(self.rules.iter().map(Rule::render).collect()),
            side_effects: self.side_effects_str(),
            timeout_seconds: Some(self.timeout_seconds()),
        }
    }

    pub(crate) fn mutating(&self, client_config: WebhookClientConfig) -> MutatingWebhook {
        MutatingWebhook {
            admission_review_versions: vec!["v1".to_owned()],
            client_config,
            failure_policy: Some(self.failure_policy_str()),
            match_conditions: self.match_conditions(),
            match_policy: Some("Equivalent".to_owned()),
            name: self.name.clone(),
            namespace_selector: self.namespace_selector.clone(),
            object_selector: self.object_selector.clone(),
            reinvocation_policy: Some(
                if self.reinvocation {
                    "IfNeeded"
                } else {
                    "Never"
                }
                .to_owned(),
            ),
            rules: Some(self.rules.iter().map(Rule::render).collect()),
            side_effects: self.side_effects_str(),
            timeout_seconds: Some(self.timeout_seconds()),
        }
    }
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Where the API server reaches this server: a Service in the cluster or a base URL; each
/// route's path is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Endpoint {
    /// A Service.
    Service {
        /// Service name.
        name: String,
        /// Service namespace.
        namespace: String,
        /// Service port (the API server's default is 443).
        port: Option<i32>,
    },
    /// A base URL (`https://host:port`, no path), e.g. for a webhook outside the cluster.
    Url(String),
}

impl Endpoint {
    /// A Service, on the API server's default port 443 unless [`Endpoint::port`] says otherwise.
    pub fn service(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        Endpoint::Service {
            name: name.into(),
            namespace: namespace.into(),
            port: None,
        }
    }

    /// A base URL.
    pub fn url(base: impl Into<String>) -> Self {
        Endpoint::Url(base.into())
    }

    /// Sets the Service port.
    pub fn port(mut self, new_port: i32) -> Self {
        if let Endpoint::Service { port, .. } = &mut self {
            *port = Some(new_port);
        }
        self
    }

    /// The client configuration for the route on `path` (without `caBundle`: the injector or
    /// installer fills it in).
    pub fn client_config(&self, path: &str) -> WebhookClientConfig {
        match self {
            Endpoint::Service {
                name,
                namespace,
                port,
            } => WebhookClientConfig {
                ca_bundle: None,
                service: Some(ServiceReference {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    path: Some(path.to_owned()),
                    port: *port,
                }),
                url: None,
            },
            Endpoint::Url(base) => WebhookClientConfig {
                ca_bundle: None,
                service: None,
                url: Some(format!("{}{path}", base.trim_end_matches('/'))),
            },
        }
    }
}

/// The webhook configurations a server's registered admission routes need.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdmissionConfigurations {
    /// The validating routes' configuration (`None` when there is none).
    pub validating: Option<ValidatingWebhookConfiguration>,
    /// The mutating routes' configuration (`None` when there is none).
    pub mutating: Option<MutatingWebhookConfiguration>,
}

/// Whether a registered route validates or mutates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegisteredKind {
    Validating,
    Mutating,
}

/// Renders the configurations named `name` for `(path, kind, registration)` entries, in order.
pub(crate) fn render<'a>(
    name: &str,
    endpoint: &Endpoint,
    entries: impl IntoIterator<Item = (&'a str, RegisteredKind, &'a Registration)>,
) -> AdmissionConfigurations {
    let mut validating = Vec::new();
    let mut mutating = Vec::new();
    for (path, kind, registration) in entries {
        let client_config = endpoint.client_config(path);
        match kind {
            RegisteredKind::Validating => validating.push(registration.validating(client_config)),
            RegisteredKind::Mutating => mutating.push(registration.mutating(client_config)),
        }
    }
    let metadata = || ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    };
    AdmissionConfigurations {
        validating: (!validating.is_empty()).then(|| ValidatingWebhookConfiguration {
            metadata: metadata(),
            webhooks: Some(validating),
        }),
        mutating: (!mutating.is_empty()).then(|| MutatingWebhookConfiguration {
            metadata: metadata(),
            webhooks: Some(mutating),
        }),
    }
}

/// Names used by more than one entry.
pub(crate) fn duplicate_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut seen = BTreeSet::new();
    names
        .into_iter()
        .find(|n| !seen.insert(*n))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;

    use super::*;

    #[test]
    fn a_rule_for_a_resource_takes_its_group_version_and_plural() {
        let rule = Rule::for_resource::<Pod>([Operation::Create]).render();
        assert_eq!(rule.api_groups, Some(vec![String::new()]));
        assert_eq!(rule.api_versions, Some(vec!["v1".to_owned()]));
        assert_eq!(rule.resources, Some(vec!["pods".to_owned()]));
        assert_eq!(rule.operations, Some(vec!["CREATE".to_owned()]));
        assert_eq!(rule.scope.as_deref(), Some("*"));
    }

    #[test]
    fn the_api_servers_constraints_are_checked() {
        let rule = || Rule::for_resource::<Pod>([Operation::Create]);
        assert!(Registration::new("a.b.c").rule(rule()).problem().is_none());
        assert!(
            Registration::new("validate")
                .rule(rule())
                .problem()
                .is_some()
        );
        assert!(
            Registration::new("Pods.x.io")
                .rule(rule())
                .problem()
                .is_some()
        );
        assert!(Registration::new("a.b.c").problem().is_some());
        let slow = Registration::new("a.b.c")
            .rule(rule())
            .timeout(Duration::from_secs(31));
        assert!(slow.problem().is_some());
        assert_eq!(duplicate_names(["a", "b", "a"]), Some("a".to_owned()));
        assert_eq!(duplicate_names(["a", "b"]), None);
    }

    #[test]
    fn a_url_endpoint_appends_the_path() {
        let config = Endpoint::url("https://127.0.0.1:8443/").client_config("/validate");
        assert_eq!(
            config.url.as_deref(),
            Some("https://127.0.0.1:8443/validate")
        );
        let config = Endpoint::service("s", "ns").port(8443).client_config("/m");
        let service = config.service.expect("a service");
        assert_eq!(
            (service.path.as_deref(), service.port),
            (Some("/m"), Some(8443))
        );
    }
}

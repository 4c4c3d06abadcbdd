//! Admission webhooks served from this machine, as the test API server sees them.
//!
//! A webhook server under test listens on 127.0.0.1; the API server of a [`TestEnv`] reaches
//! it either by URL (`https://127.0.0.1:PORT/path`) or through a Service made with
//! [`TestEnv::create_external_name_service`]. This module builds the
//! `ValidatingWebhookConfiguration` / `MutatingWebhookConfiguration` objects that point there
//! ([`LocalWebhook`], [`validating_configuration`], [`mutating_configuration`]), the
//! certificate names the server needs ([`serving_leaf`], [`namespace_with_service`]), and waits until the API server
//! really calls the webhook ([`create_until`]): it learns new configurations and Services
//! through informers, so the first requests after registering a webhook may pass without it
//! or fail to reach it.
//!
//! The objects follow the Kubernetes guide to
//! [dynamic admission control](https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/).
//! Nothing here knows the webhook server: any HTTPS server on 127.0.0.1 will do.
//! [`client_auth`] makes the API server present a client certificate to such webhooks.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use k8s_openapi::api::{admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::ConfigMap};
//! use kube::{Api, api::PostParams};
//! use stackable_testenv::{
//!     TestEnv,
//!     webhooks::{LocalWebhook, create_until, namespace_with_service, validating_configuration},
//! };
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let env = TestEnv::start().await?;
//! // A namespace with the Service `hook` leading to 127.0.0.1.
//! let (namespace, leaf) = namespace_with_service(&env, "my-webhook", "hook").await?;
//! // Start your HTTPS server on 127.0.0.1 with a certificate for `leaf`...
//! # let _ = leaf;
//! // ...and learn its port and CA bundle.
//! let (port, ca_bundle_pem) = (8443, String::from("-----BEGIN CERTIFICATE-----..."));
//!
//! let webhook = LocalWebhook::service("deny.example.com", &namespace, "hook", port, "/validate")
//!     .ca_bundle(&ca_bundle_pem)
//!     .rule("", "v1", "configmaps", &["CREATE"])
//!     .in_namespace(&namespace);
//! let configuration = validating_configuration("deny-configmaps", [webhook]);
//! Api::<ValidatingWebhookConfiguration>::all(env.client()?)
//!     .create(&PostParams::default(), &configuration)
//!     .await?;
//!
//! // Create a ConfigMap until the webhook refuses it (created ones are deleted again).
//! let config_maps: Api<ConfigMap> = Api::namespaced(env.client()?, &namespace);
//! let mut probe = ConfigMap::default();
//! probe.metadata.name = Some("probe".into());
//! let refused = create_until(&config_maps, &probe, Duration::from_secs(60), |outcome| {
//!     matches!(outcome, Err(error) if error.to_string().contains("denied"))
//! })
//! .await?;
//! assert!(refused.is_err());
//! # Ok(())
//! # }
//! ```

pub mod client_auth;

use std::{
    fmt::Debug,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use k8s_openapi::{
    ByteString,
    api::admissionregistration::v1::{
        MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
        ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
    serde::{Serialize, de::DeserializeOwned},
};
use kube::{
    Api, Resource,
    api::{DeleteParams, PostParams},
};
use snafu::{OptionExt, ResultExt, Snafu};
use stackable_certs::LeafOptions;

use crate::{TestEnv, env::webhook_service_dns_names};

/// How long [`create_until`] waits between two attempts.
const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// The label every namespace carries with its own name (set by the API server).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Errors of [`create_until`].
#[derive(Debug, Snafu)]
pub enum Error {
    /// The object has no `metadata.name`, so one created without the webhook could not be
    /// deleted before the next attempt.
    #[snafu(display("the object given to create_until has no metadata.name"))]
    NoName,

    /// An object created before the webhook was active could not be deleted again.
    #[snafu(display("cannot delete {name}, created before the webhook was active"))]
    Delete {
        /// The object's name.
        name: String,
        /// The cause.
        source: kube::Error,
    },

    /// The outcome never showed the webhook at work.
    #[snafu(display(
        "creating {name} never showed the webhook at work within {timeout:?}; last outcome: {last}"
    ))]
    NeverCalled {
        /// The object's name.
        name: String,
        /// How long it tried.
        timeout: Duration,
        /// What the last attempt saw.
        last: String,
    },
}

/// The certificate request of a webhook server on this machine called through the Service
/// `service` in `namespace` (see [`webhook_service_dns_names`]) or by URL on 127.0.0.1.
pub fn serving_leaf(namespace: &str, service: &str) -> LeafOptions {
    webhook_service_dns_names(namespace, service)
        .into_iter()
        .fold(
            LeafOptions::new().ip_address(Ipv4Addr::LOCALHOST.into()),
            LeafOptions::dns_name,
        )
}

/// The fields validating and mutating webhook entries share (they are distinct types with
/// the same field names), plus the `extra` ones of one kind.
macro_rules! webhook_entry {
    ($kind:ident, $webhook:expr, { $($extra:tt)* }) => {{
        let webhook: &LocalWebhook = $webhook;
        $kind {
            name: webhook.name.clone(),
            client_config: webhook.client_config.clone(),
            rules: Some(webhook.rules.clone()),
            namespace_selector: webhook.namespace_selector.clone(),
            object_selector: webhook.object_selector.clone(),
            failure_policy: Some(webhook.failure_policy.clone()),
            timeout_seconds: webhook.timeout_seconds,
            side_effects: "None".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            $($extra)*
            ..$kind::default()
        }
    }};
}

/// Creates a namespace for one test (named `prefix-…`, see [`TestEnv::create_namespace`]) and
/// in it the ExternalName Service `service` that leads the API server to this machine (see
/// [`TestEnv::create_external_name_service`]). Returns the namespace and the certificate
/// request of a server reached through that Service or by URL ([`serving_leaf`]).
pub async fn namespace_with_service(
    env: &TestEnv,
    prefix: &str,
    service: &str,
) -> Result<(String, LeafOptions), crate::Error> {
    let namespace = env.create_namespace(prefix).await?;
    env.create_external_name_service(&namespace, service)
        .await?;
    let leaf = serving_leaf(&namespace, service);
    Ok((namespace, leaf))
}

/// One webhook of a validating or mutating configuration, called on this machine.
///
/// Defaults: no rules (add them with [`LocalWebhook::rule`]), `sideEffects: None`,
/// `admissionReviewVersions: [v1]`, `failurePolicy: Fail`, the API server's default timeout.
#[derive(Clone, Debug)]
pub struct LocalWebhook {
    name: String,
    client_config: WebhookClientConfig,
    rules: Vec<RuleWithOperations>,
    namespace_selector: Option<LabelSelector>,
    object_selector: Option<LabelSelector>,
    failure_policy: String,
    timeout_seconds: Option<i32>,
    reinvocation_policy: Option<String>,
}

impl LocalWebhook {
    fn new(name: &str, client_config: WebhookClientConfig) -> Self {
        LocalWebhook {
            name: name.to_owned(),
            client_config,
            rules: Vec::new(),
            namespace_selector: None,
            object_selector: None,
            failure_policy: "Fail".to_owned(),
            timeout_seconds: None,
            reinvocation_policy: None,
        }
    }

    /// A webhook named `name` (a DNS-like name, unique in its configuration) called at
    /// `https://127.0.0.1:{port}{path}`. The serving certificate needs the IP SAN 127.0.0.1.
    pub fn url(name: &str, port: u16, path: &str) -> Self {
        Self::new(
            name,
            WebhookClientConfig {
                url: Some(format!("https://127.0.0.1:{port}{path}")),
                ..WebhookClientConfig::default()
            },
        )
    }

    /// A webhook named `name` called through the Service `service` in `namespace` on `port`
    /// and `path`. Create the Service with [`TestEnv::create_external_name_service`] first;
    /// the serving certificate needs the names of [`serving_leaf`].
    pub fn service(name: &str, namespace: &str, service: &str, port: u16, path: &str) -> Self {
        Self::new(
            name,
            WebhookClientConfig {
                service: Some(ServiceReference {
                    namespace: namespace.to_owned(),
                    name: service.to_owned(),
                    port: Some(i32::from(port)),
                    path: Some(path.to_owned()),
                }),
                ..WebhookClientConfig::default()
            },
        )
    }

    /// Sets `caBundle`, the PEM CA bundle the API server trusts for this webhook. Without
    /// it the API server uses its own trust and fails to call a server with a private CA.
    pub fn ca_bundle(mut self, pem: &str) -> Self {
        self.client_config.ca_bundle = Some(ByteString(pem.as_bytes().to_vec()));
        self
    }

    /// Adds a rule: the webhook is called for `operations` (`CREATE`, `UPDATE`, `DELETE`,
    /// `CONNECT` or `*`) on `resource` of `api_group` (`""` for the core group) `api_version`.
    pub fn rule(
        mut self,
        api_group: &str,
        api_version: &str,
        resource: &str,
        operations: &[&str],
    ) -> Self {
        self.rules.push(RuleWithOperations {
            api_groups: Some(vec![api_group.to_owned()]),
            api_versions: Some(vec![api_version.to_owned()]),
            resources: Some(vec![resource.to_owned()]),
            operations: Some(operations.iter().map(|&op| op.to_owned()).collect()),
            scope: None,
        });
        self
    }

    /// Calls the webhook only for objects in `namespace` (a `namespaceSelector` on the
    /// `kubernetes.io/metadata.name` label), so tests in other namespaces are not affected.
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace_selector = Some(match_labels(NAMESPACE_NAME_LABEL, namespace));
        self
    }

    /// Calls the webhook only for objects labelled `key=value` (an `objectSelector`).
    pub fn object_label(mut self, key: &str, value: &str) -> Self {
        self.object_selector = Some(match_labels(key, value));
        self
    }

    /// Sets `failurePolicy` (`Fail`, the default here, or `Ignore`).
    pub fn failure_policy(mut self, policy: &str) -> Self {
        policy.clone_into(&mut self.failure_policy);
        self
    }

    /// Sets `timeoutSeconds` (1 to 30; the API server's default is 10).
    pub fn timeout_seconds(mut self, seconds: i32) -> Self {
        self.timeout_seconds = Some(seconds);
        self
    }

    /// Sets `reinvocationPolicy` (`Never` or `IfNeeded`); only mutating webhooks have it.
    pub fn reinvocation_policy(mut self, policy: &str) -> Self {
        self.reinvocation_policy = Some(policy.to_owned());
        self
    }

    /// This webhook as an entry of a `ValidatingWebhookConfiguration`.
    pub fn validating(&self) -> ValidatingWebhook {
        webhook_entry!(ValidatingWebhook, self, {})
    }

    /// This webhook as an entry of a `MutatingWebhookConfiguration`.
    pub fn mutating(&self) -> MutatingWebhook {
        webhook_entry!(MutatingWebhook, self, {
            reinvocation_policy: self.reinvocation_policy.clone(),
        })
    }
}

fn match_labels(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some([(key.to_owned(), value.to_owned())].into()),
        ..LabelSelector::default()
    }
}

fn metadata(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

/// A `ValidatingWebhookConfiguration` named `name` with the given webhooks.
pub fn validating_configuration(
    name: &str,
    webhooks: impl IntoIterator<Item = LocalWebhook>,
) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: metadata(name),
        webhooks: Some(webhooks.into_iter().map(|w| w.validating()).collect()),
    }
}

/// A `MutatingWebhookConfiguration` named `name` with the given webhooks.
pub fn mutating_configuration(
    name: &str,
    webhooks: impl IntoIterator<Item = LocalWebhook>,
) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: metadata(name),
        webhooks: Some(webhooks.into_iter().map(|w| w.mutating()).collect()),
    }
}

/// Creates `object` through `api` until `accept` says the outcome shows the webhook at work
/// (a mutation in the created object, a refusal, a failed call...), and returns that outcome.
///
/// Right after a webhook configuration (or the Service it names) is created, the API server
/// may not call the webhook yet. An object created in the meantime is deleted again (grace
/// period 0) before the next attempt, every [`RETRY_INTERVAL`] until `timeout`. `accept` may
/// panic to fail the test on an outcome that must never happen.
pub async fn create_until<K>(
    api: &Api<K>,
    object: &K,
    timeout: Duration,
    mut accept: impl FnMut(&Result<K, kube::Error>) -> bool,
) -> Result<Result<K, kube::Error>, Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.meta().name.clone().context(NoNameSnafu)?;
    let started = Instant::now();
    loop {
        let outcome = api.create(&PostParams::default(), object).await;
        if accept(&outcome) {
            tracing::debug!(name, elapsed = ?started.elapsed(), "the webhook is active");
            return Ok(outcome);
        }
        let last = match outcome {
            Ok(_) => {
                api.delete(&name, &DeleteParams::default().grace_period(0))
                    .await
                    .context(DeleteSnafu { name: name.clone() })?;
                "created as if there were no webhook".to_owned()
            }
            Err(error) => error.to_string(),
        };
        tracing::debug!(name, last, "the webhook is not active yet");
        if started.elapsed() >= timeout {
            return NeverCalledSnafu {
                name,
                timeout,
                last,
            }
            .fail();
        }
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_webhook_points_at_the_service() {
        let webhook = LocalWebhook::service("a.example.com", "ns", "hook", 8443, "/validate")
            .ca_bundle("PEM")
            .rule("", "v1", "pods", &["CREATE", "UPDATE"])
            .in_namespace("ns")
            .timeout_seconds(5)
            .validating();
        let json = serde_json::to_value(&webhook).unwrap_or_default();
        assert_eq!(
            json["clientConfig"],
            serde_json::json!({
                "service": {"namespace": "ns", "name": "hook", "port": 8443, "path": "/validate"},
                "caBundle": "UEVN"
            })
        );
        assert_eq!(
            json["rules"],
            serde_json::json!([{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                                "operations": ["CREATE", "UPDATE"]}])
        );
        assert_eq!(
            json["namespaceSelector"],
            serde_json::json!({"matchLabels": {"kubernetes.io/metadata.name": "ns"}})
        );
        assert_eq!(json["failurePolicy"], "Fail");
        assert_eq!(json["sideEffects"], "None");
        assert_eq!(json["admissionReviewVersions"], serde_json::json!(["v1"]));
        assert_eq!(json["timeoutSeconds"], 5);
    }

    #[test]
    fn url_webhook_and_mutating_fields() {
        let webhook = LocalWebhook::url("m.example.com", 9443, "/mutate")
            .object_label("inject", "true")
            .failure_policy("Ignore")
            .reinvocation_policy("IfNeeded");
        let configuration = mutating_configuration("inject", [webhook.clone()]);
        let json = serde_json::to_value(&configuration).unwrap_or_default();
        assert_eq!(json["metadata"]["name"], "inject");
        let entry = &json["webhooks"][0];
        assert_eq!(
            entry["clientConfig"]["url"],
            "https://127.0.0.1:9443/mutate"
        );
        assert!(entry["clientConfig"].get("service").is_none());
        assert_eq!(
            entry["objectSelector"],
            serde_json::json!({"matchLabels": {"inject": "true"}})
        );
        assert_eq!(entry["failurePolicy"], "Ignore");
        assert_eq!(entry["reinvocationPolicy"], "IfNeeded");
        assert!(entry.get("timeoutSeconds").is_none());
        // The validating form has no reinvocation policy.
        let validating = serde_json::to_value(webhook.validating()).unwrap_or_default();
        assert!(validating.get("reinvocationPolicy").is_none());
    }

    #[test]
    fn serving_leaf_names_the_service_and_loopback() {
        let leaf = serving_leaf("ns", "hook");
        assert_eq!(leaf.dns_names(), webhook_service_dns_names("ns", "hook"));
        assert_eq!(
            leaf.ip_addresses(),
            [std::net::IpAddr::from(Ipv4Addr::LOCALHOST)]
        );
    }
}

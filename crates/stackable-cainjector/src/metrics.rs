//! Prometheus metrics of the standalone injector (served by `stackable-runtime`'s
//! [`Endpoint`](stackable_runtime::Endpoint) in the OpenMetrics text format,
//! <https://prometheus.io/docs/instrumenting/exposition_formats/>).

use std::sync::Arc;

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

type Labels = Vec<(String, String)>;

/// The injector's counters, labelled by target `kind`.
#[derive(Debug, Clone)]
pub struct Metrics {
    injections: Family<Labels, Counter>,
    refusals: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn labels(kind: &str) -> Labels {
    vec![("kind".to_owned(), kind.to_owned())]
}

impl Metrics {
    /// Counters registered in a fresh registry.
    pub fn new() -> Self {
        let injections = Family::<Labels, Counter>::default();
        let refusals = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let mut registry = Registry::with_prefix("cainjector");
        registry.register(
            "injections",
            "caBundle writes (objects that did not carry the bundle yet)",
            injections.clone(),
        );
        registry.register(
            "refusals",
            "bundles refused (bad PEM, anti-hijack rules, missing source)",
            refusals.clone(),
        );
        registry.register(
            "errors",
            "failed API requests while injecting",
            errors.clone(),
        );
        Metrics {
            injections,
            refusals,
            errors,
            registry: Arc::new(registry),
        }
    }

    /// The registry of these counters (for the HTTP endpoint).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Counts one injection into an object of `kind`.
    pub fn injected(&self, kind: &str) {
        self.injections.get_or_create(&labels(kind)).inc();
    }

    /// Counts one refusal for an object of `kind`.
    pub fn refused(&self, kind: &str) {
        self.refusals.get_or_create(&labels(kind)).inc();
    }

    /// Counts one error for an object of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&labels(kind)).inc();
    }

    /// Total injections so far (all kinds).
    pub fn injections_total(&self) -> u64 {
        sum(&self.injections)
    }

    /// Total refusals so far (all kinds).
    pub fn refusals_total(&self) -> u64 {
        sum(&self.refusals)
    }

    /// Total errors so far (all kinds).
    pub fn errors_total(&self) -> u64 {
        sum(&self.errors)
    }

    /// The metrics in the text exposition format.
    pub fn render(&self) -> String {
        stackable_runtime::endpoint::render(&self.registry)
    }
}

fn sum(family: &Family<Labels, Counter>) -> u64 {
    [
        "CustomResourceDefinition",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
        "ConfigMap",
    ]
    .iter()
    .map(|kind| family.get_or_create(&labels(kind)).get())
    .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let metrics = Metrics::new();
        metrics.injected("ConfigMap");
        metrics.injected("ConfigMap");
        metrics.refused("APIService");
        assert_eq!(metrics.injections_total(), 2);
        assert_eq!(metrics.refusals_total(), 1);
        assert_eq!(metrics.errors_total(), 0);
        let text = metrics.render();
        assert!(
            text.contains("cainjector_injections_total{kind=\"ConfigMap\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("cainjector_refusals_total{kind=\"APIService\"} 1"),
            "{text}"
        );
    }
}

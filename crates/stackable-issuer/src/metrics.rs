//! The controllers' Prometheus metrics (prometheus-client; served by `stackable-runtime`'s
//! [`Endpoint`](stackable_runtime::Endpoint) in the OpenMetrics text format):
//!
//! - `issuer_reconciles_total{kind}`: reconciliations finished, by kind (the user's issuer
//!   kinds, `CertificateRequest`, `CertificateSigningRequest`);
//! - `issuer_reconcile_errors_total{kind}`: those that failed on the Kubernetes side (or in an
//!   ignore hook) and are retried with backoff;
//! - `issuer_signed_total{kind}`: requests signed, by request kind;
//! - `issuer_leader`: 1 while this replica leads (runs the controllers), else 0.

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

type Labels = Vec<(String, String)>;

fn labels(kind: &str) -> Labels {
    vec![("kind".to_owned(), kind.to_owned())]
}

/// The controllers' counters and the leader gauge. Clones share the same values; register them
/// once with [`IssuerMetrics::register`] and hand a clone to
/// [`IssuerControllers::metrics`](crate::IssuerControllers::metrics).
#[derive(Clone, Debug, Default)]
pub struct IssuerMetrics {
    reconciles: Family<Labels, Counter>,
    reconcile_errors: Family<Labels, Counter>,
    signed: Family<Labels, Counter>,
    leader: Gauge,
}

impl IssuerMetrics {
    /// Registers the metrics in `registry`, under the prefix `issuer`.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("issuer");
        registry.register(
            "reconciles",
            "reconciliations finished, by kind",
            self.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "reconciliations that failed and are retried with backoff, by kind",
            self.reconcile_errors.clone(),
        );
        registry.register("signed", "requests signed, by kind", self.signed.clone());
        registry.register(
            "leader",
            "1 while this replica leads and runs the controllers",
            self.leader.clone(),
        );
    }

    /// Reconciliations of `kind` so far.
    pub fn reconciles(&self, kind: &str) -> u64 {
        self.reconciles.get_or_create(&labels(kind)).get()
    }

    /// Failed reconciliations of `kind` so far.
    pub fn reconcile_errors(&self, kind: &str) -> u64 {
        self.reconcile_errors.get_or_create(&labels(kind)).get()
    }

    /// Requests of `kind` signed so far.
    pub fn signed(&self, kind: &str) -> u64 {
        self.signed.get_or_create(&labels(kind)).get()
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    pub(crate) fn reconciled(&self, kind: &str, failed: bool) {
        self.reconciles.get_or_create(&labels(kind)).inc();
        if failed {
            self.reconcile_errors.get_or_create(&labels(kind)).inc();
        }
    }

    pub(crate) fn signed_one(&self, kind: &str) {
        self.signed.get_or_create(&labels(kind)).inc();
    }

    pub(crate) fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let metrics = IssuerMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.reconciled("CertificateRequest", false);
        metrics.reconciled("CertificateRequest", true);
        metrics.signed_one("CertificateRequest");
        metrics.set_leader(true);
        assert_eq!(metrics.reconciles("CertificateRequest"), 2);
        assert_eq!(metrics.reconcile_errors("CertificateRequest"), 1);
        let text = stackable_runtime::endpoint::render(&registry);
        for line in [
            "issuer_reconciles_total{kind=\"CertificateRequest\"} 2",
            "issuer_reconcile_errors_total{kind=\"CertificateRequest\"} 1",
            "issuer_signed_total{kind=\"CertificateRequest\"} 1",
            "issuer_leader 1",
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
    }
}

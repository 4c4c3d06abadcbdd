//! The standalone caBundle injector: honours cert-manager's `cert-manager.io/inject-ca-from`,
//! `inject-ca-from-secret` and `inject-apiserver-ca` annotations and OpenShift's
//! `service.beta.openshift.io/inject-cabundle` on CRDs, webhook configurations, APIServices
//! and ConfigMaps (<https://cert-manager.io/docs/concepts/ca-injector/>).
//!
//! The binary `stackable-cainjector` wraps [`controller::run`]; tests run it in-process.

pub mod controller;
pub mod metrics;

pub use controller::{Config, ServiceCa, run};
pub use metrics::Metrics;

//! The standalone caBundle injector: honours cert-manager's `cert-manager.io/inject-ca-from`,
//! `inject-ca-from-secret` and `inject-apiserver-ca` annotations and OpenShift's
//! `service.beta.openshift.io/inject-cabundle` on CRDs, webhook configurations, APIServices
//! and (opt-in) ConfigMaps (<https://cert-manager.io/docs/concepts/ca-injector/>).
//!
//! Built on kube-runtime: one [`applier`](kube::runtime::controller::applier) per target kind
//! ([`controller`]), reconciling one target at a time ([`reconcile`]) from its annotation's
//! source ([`sources`]), triggered by the target, the Secrets and Certificates it reads
//! ([`index`], [`watches`], [`cert_manager`]) and a periodic resync. The binary
//! `stackable-cainjector` wraps [`controller::run`]; tests run it in-process.

pub mod annotations;
pub mod cert_manager;
mod config;
mod context;
pub mod controller;
pub mod grace;
pub mod index;
pub mod metrics;
pub mod reconcile;
pub mod sources;
pub mod watches;

pub use config::{ApiServerCa, Config, ServiceCa};
pub use controller::run;
pub use metrics::Metrics;

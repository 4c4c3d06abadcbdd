//! What every operator process needs besides its controllers, written once:
//!
//! - [`leader`]: leader election with a `coordination.k8s.io/v1` Lease (kube-lease-manager),
//!   so that of several replicas one reconciles and the others stand by;
//! - [`endpoint`]: a plain-HTTP listener on hyper for the kubelet's probes (`/livez`,
//!   `/healthz`, `/readyz`) and Prometheus (`/metrics`, OpenMetrics text from a
//!   prometheus-client registry).
//!
//! Used by the `stackable-issuer` controllers and binaries built on them, the standalone
//! injector `stackable-cainjector` and the CronTab example operator. Webhook servers serve the
//! same paths on their own listener (`stackable-webhook`), beside their TLS routes.

pub mod endpoint;
pub mod leader;

pub use endpoint::{Endpoint, Readiness};
pub use leader::{Election, Leadership};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

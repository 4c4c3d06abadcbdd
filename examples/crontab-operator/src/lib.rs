//! The CronTab example operator: one CRD (`crontabs.example.com`) in three versions and the typed
//! conversions between them, served by a conversion webhook.
//!
//! This is the example of the Kubernetes documentation on CRD versioning
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>),
//! grown into a realistic schema change:
//!
//! | v1beta1 (storage, deprecated) | v1 (hub, watched by the controller) | v2                                 |
//! |-------------------------------|-------------------------------------|------------------------------------|
//! | `spec.cronSpec`               | `spec.schedule` (renamed)           | `spec.schedule`                    |
//! | `spec.hostPort: "host:port"`  | `spec.host` + `spec.port` (split)   | `spec.host` + `spec.port`          |
//! | —                             | `spec.timeZone` (new, optional)     | `spec.timeZone`                    |
//! | —                             | —                                   | `spec.concurrencyPolicy` (an enum) |
//! | `status.active`               | `status.activeJobs` (renamed)       | `status.runningJobs` (renamed)     |
//!
//! `spec.timeZone` cannot be held by v1beta1: it survives v1 -> v1beta1 -> v1 in the stash
//! annotation `conversion.stackable.tech/stash.v1` (see [`stackable_conversion::stash`]); in the
//! same way `spec.concurrencyPolicy` (and `spec.timeZone`) of a v2 object survive v1 and v1beta1
//! in `conversion.stackable.tech/stash.v2`.

pub mod controller;
pub mod convert;
pub mod crd;
pub mod operator;
pub mod server;
pub mod v1;
pub mod v1beta1;
pub mod v2;

pub use convert::{HostPortError, converter, router};
pub use crd::{CRD_NAME, crd, default_webhook_target};

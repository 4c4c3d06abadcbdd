//! The CronTab example operator: one CRD (`crontabs.example.com`) in two versions and the typed
//! conversions between them, served by a conversion webhook.
//!
//! This is the example of the Kubernetes documentation on CRD versioning
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>),
//! grown into a realistic schema change:
//!
//! | v1beta1 (storage, deprecated) | v1                                   |
//! |-------------------------------|--------------------------------------|
//! | `spec.cronSpec`               | `spec.schedule` (renamed)            |
//! | `spec.hostPort: "host:port"`  | `spec.host` + `spec.port` (split)    |
//! | —                             | `spec.timeZone` (new, optional)      |
//! | `status.active`               | `status.activeJobs` (renamed)        |
//!
//! `spec.timeZone` cannot be held by v1beta1: it survives v1 -> v1beta1 -> v1 in the stash
//! annotation `conversion.stackable.tech/stash.v1` (see [`stackable_conversion::stash`]).

pub mod controller;
pub mod convert;
pub mod crd;
pub mod leader;
pub mod operator;
pub mod server;
pub mod v1;
pub mod v1beta1;

pub use convert::{HostPortError, converter, router};
pub use crd::{CRD_NAME, crd, default_webhook_target};

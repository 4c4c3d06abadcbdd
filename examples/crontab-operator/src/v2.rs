//! `example.com/v2` CronTab: `status.activeJobs` renamed to `status.runningJobs`, a new
//! `spec.concurrencyPolicy` enum.
//!
//! The types are generated from the declaration in [`crate::crd::versions`].
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>.

pub use crate::crd::versions::v2::*;

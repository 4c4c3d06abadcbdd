//! `example.com/v1` CronTab: `host` and `port` apart, `schedule` renamed, a new `timeZone`.
//!
//! The types are generated from the declaration in [`crate::crd::versions`].
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>.

pub use crate::crd::versions::v1::*;

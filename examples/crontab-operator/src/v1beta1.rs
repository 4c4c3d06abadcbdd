//! `example.com/v1beta1` CronTab: the storage version, with a combined `hostPort`.
//!
//! The types are generated from the declaration in [`crate::crd::versions`].
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>.

pub use crate::crd::versions::v1beta1::*;

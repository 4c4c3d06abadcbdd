//! `example.com/v1beta1` CronTab: the storage version, with a combined `hostPort`.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a CronTab (v1beta1).
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1beta1",
    kind = "CronTab",
    plural = "crontabs",
    shortname = "ct",
    namespaced,
    status = "CronTabStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct CronTabSpec {
    /// The cron schedule, e.g. `*/5 * * * *`.
    pub cron_spec: String,
    /// The container image to run.
    pub image: String,
    /// How many pods to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Where the job reports to, as `host:port`.
    pub host_port: String,
}

/// The observed state of a CronTab (v1beta1).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronTabStatus {
    /// When the job was last scheduled (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// How many jobs are running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<i32>,
}

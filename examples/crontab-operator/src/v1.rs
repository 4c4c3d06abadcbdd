//! `example.com/v1` CronTab: `host` and `port` apart, `schedule` renamed, a new `timeZone`.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a CronTab (v1).
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "CronTab",
    plural = "crontabs",
    shortname = "ct",
    namespaced,
    status = "CronTabStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct CronTabSpec {
    /// The cron schedule, e.g. `*/5 * * * *` (`cronSpec` in v1beta1).
    pub schedule: String,
    /// The container image to run.
    pub image: String,
    /// How many pods to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The host the job reports to.
    pub host: String,
    /// The port the job reports to.
    pub port: u16,
    /// The time zone of the schedule (IANA name); v1beta1 cannot hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// The observed state of a CronTab (v1).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronTabStatus {
    /// When the job was last scheduled (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// How many jobs are running (`active` in v1beta1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_jobs: Option<i32>,
}

//! The CronTab kind in three versions, declared once.
//!
//! | v1beta1 (storage, deprecated) | v1                                | v2                                  |
//! |-------------------------------|-----------------------------------|-------------------------------------|
//! | `spec.cronSpec`               | `spec.schedule` (renamed)         | `spec.schedule`                     |
//! | `spec.hostPort: "host:port"`  | `spec.host` + `spec.port` (split) | `spec.host` + `spec.port`           |
//! | —                             | `spec.timeZone` (added)           | `spec.timeZone`                     |
//! | —                             | —                                 | `spec.concurrencyPolicy` (an enum)  |
//! | `status.active`               | `status.activeJobs` (renamed)     | `status.runningJobs` (renamed)      |
//!
//! v1beta1 and v1 are the schema of `examples/crontab-operator`; v2 adds a renamed field in the
//! nested status and an enum. The `hostPort` split is not expressible as a field action, so the
//! declaration points at plain functions for it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stackable_crd_versions::versioned;

#[versioned(
    version(
        v1beta1,
        storage,
        deprecated = "example.com/v1beta1 CronTab is deprecated; use example.com/v2"
    ),
    version(v1),
    version(v2)
)]
/// The CronTab kind.
pub mod crontab {
    use snafu::Snafu;

    use super::*;

    /// The desired state of a CronTab.
    #[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
    #[kube(
        group = "example.com",
        kind = "CronTab",
        plural = "crontabs",
        shortname = "ct",
        namespaced,
        status = "CronTabStatus"
    )]
    #[serde(rename_all = "camelCase")]
    pub struct CronTabSpec {
        /// The cron schedule, e.g. `*/5 * * * *`.
        #[versioned(renamed(since = v1, from = cron_spec))]
        pub schedule: String,
        /// The container image to run.
        pub image: String,
        /// How many pods to run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub replicas: Option<i32>,
        /// Where the job reports to, as `host:port`.
        #[versioned(removed(since = v1, downgrade = join_host_port))]
        pub host_port: String,
        /// The host the job reports to.
        #[versioned(added(since = v1, try_upgrade = host_of))]
        pub host: String,
        /// The port the job reports to.
        #[versioned(added(since = v1, try_upgrade = port_of))]
        pub port: u16,
        /// The time zone of the schedule (IANA name).
        #[versioned(added(since = v1))]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub time_zone: Option<String>,
        /// What to do when a run is due while the previous one still runs.
        #[versioned(added(since = v2))]
        #[serde(default)]
        pub concurrency_policy: ConcurrencyPolicy,
    }

    /// The observed state of a CronTab.
    #[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct CronTabStatus {
        /// When the job was last scheduled (RFC 3339).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub last_schedule_time: Option<String>,
        /// How many jobs are running.
        #[versioned(
            renamed(since = v1, from = active),
            renamed(since = v2, from = active_jobs)
        )]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub running_jobs: Option<i32>,
    }

    /// What to do when a run is due while the previous one still runs.
    #[versioned(added(since = v2))]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
    pub enum ConcurrencyPolicy {
        /// Run both.
        #[default]
        Allow,
        /// Skip the new run.
        Forbid,
        /// Stop the old run, start the new one.
        Replace,
    }

    /// `spec.hostPort` of a v1beta1 CronTab is not `host:port`.
    #[versioned(skip)]
    #[derive(Debug, Snafu, PartialEq, Eq)]
    pub enum HostPortError {
        /// No `:` at all.
        #[snafu(display("hostPort {host_port:?} is not of the form host:port"))]
        MissingPort {
            /// The value.
            host_port: String,
        },
        /// The part after the last `:` is not a port number.
        #[snafu(display(
            "hostPort {host_port:?} has no valid port number (0-65535) after the last ':'"
        ))]
        InvalidPort {
            /// The value.
            host_port: String,
        },
    }

    /// Splits `host:port` at the last `:` (so IPv6 hosts like `::1:80` work).
    pub fn split_host_port(host_port: &str) -> Result<(String, u16), HostPortError> {
        let Some((host, port)) = host_port.rsplit_once(':') else {
            return MissingPortSnafu { host_port }.fail();
        };
        let port = port
            .parse()
            .ok()
            .filter(|_| !port.starts_with('+'))
            .ok_or_else(|| InvalidPortSnafu { host_port }.build())?;
        Ok((host.to_owned(), port))
    }

    fn host_of(old: &v1beta1::CronTabSpec) -> Result<String, HostPortError> {
        split_host_port(&old.host_port).map(|(host, _)| host)
    }

    fn port_of(old: &v1beta1::CronTabSpec) -> Result<u16, HostPortError> {
        split_host_port(&old.host_port).map(|(_, port)| port)
    }

    fn join_host_port(new: &v1::CronTabSpec) -> String {
        format!("{}:{}", new.host, new.port)
    }
}

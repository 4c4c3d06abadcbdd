//! The same three CronTab versions as `crontab.rs`, written by hand: each version in full, the
//! conversions between adjacent versions, the converter and the CRD. The macro's output must
//! agree with this (same CRD, same conversions); `docs/versioned.md` shows the two side by side.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stackable_conversion::{
    BuildError, CrdError, CrdVersion, KindConverter, MultiVersionCrd, WebhookTarget,
};

/// The CronTab kind, by hand.
pub mod crontab {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use snafu::Snafu;

    use super::*;

    /// Version `v1beta1`.
    pub mod v1beta1 {
        use super::*;

        /// The desired state of a CronTab.
        #[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
        #[kube(
            group = "example.com",
            kind = "CronTab",
            plural = "crontabs",
            shortname = "ct",
            namespaced,
            status = "CronTabStatus",
            version = "v1beta1"
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

        /// The observed state of a CronTab.
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
    }

    /// Version `v1`.
    pub mod v1 {
        use super::*;

        /// The desired state of a CronTab.
        #[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
        #[kube(
            group = "example.com",
            kind = "CronTab",
            plural = "crontabs",
            shortname = "ct",
            namespaced,
            status = "CronTabStatus",
            version = "v1"
        )]
        #[serde(rename_all = "camelCase")]
        pub struct CronTabSpec {
            /// The cron schedule, e.g. `*/5 * * * *`.
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
            /// The time zone of the schedule (IANA name).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub time_zone: Option<String>,
        }

        /// The observed state of a CronTab.
        #[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct CronTabStatus {
            /// When the job was last scheduled (RFC 3339).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub last_schedule_time: Option<String>,
            /// How many jobs are running.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub active_jobs: Option<i32>,
        }
    }

    /// Version `v2`.
    pub mod v2 {
        use super::*;

        /// The desired state of a CronTab.
        #[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
        #[kube(
            group = "example.com",
            kind = "CronTab",
            plural = "crontabs",
            shortname = "ct",
            namespaced,
            status = "CronTabStatus",
            version = "v2"
        )]
        #[serde(rename_all = "camelCase")]
        pub struct CronTabSpec {
            /// The cron schedule, e.g. `*/5 * * * *`.
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
            /// The time zone of the schedule (IANA name).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub time_zone: Option<String>,
            /// What to do when a run is due while the previous one still runs.
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
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub running_jobs: Option<i32>,
        }

        /// What to do when a run is due while the previous one still runs.
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema,
        )]
        pub enum ConcurrencyPolicy {
            /// Run both.
            #[default]
            Allow,
            /// Skip the new run.
            Forbid,
            /// Stop the old run, start the new one.
            Replace,
        }
    }

    /// `spec.hostPort` of a v1beta1 CronTab is not `host:port`.
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

    impl TryFrom<v1beta1::CronTab> for v1::CronTab {
        type Error = HostPortError;

        fn try_from(old: v1beta1::CronTab) -> Result<Self, Self::Error> {
            let (host, port) = split_host_port(&old.spec.host_port)?;
            Ok(v1::CronTab {
                metadata: old.metadata,
                spec: v1::CronTabSpec {
                    schedule: old.spec.cron_spec,
                    image: old.spec.image,
                    replicas: old.spec.replicas,
                    host,
                    port,
                    time_zone: None,
                },
                status: old.status.map(|status| v1::CronTabStatus {
                    last_schedule_time: status.last_schedule_time,
                    active_jobs: status.active,
                }),
            })
        }
    }

    impl From<v1::CronTab> for v1beta1::CronTab {
        fn from(new: v1::CronTab) -> Self {
            v1beta1::CronTab {
                metadata: new.metadata,
                spec: v1beta1::CronTabSpec {
                    cron_spec: new.spec.schedule,
                    image: new.spec.image,
                    replicas: new.spec.replicas,
                    host_port: format!("{}:{}", new.spec.host, new.spec.port),
                },
                status: new.status.map(|status| v1beta1::CronTabStatus {
                    last_schedule_time: status.last_schedule_time,
                    active: status.active_jobs,
                }),
            }
        }
    }

    impl From<v1::CronTab> for v2::CronTab {
        fn from(old: v1::CronTab) -> Self {
            v2::CronTab {
                metadata: old.metadata,
                spec: v2::CronTabSpec {
                    schedule: old.spec.schedule,
                    image: old.spec.image,
                    replicas: old.spec.replicas,
                    host: old.spec.host,
                    port: old.spec.port,
                    time_zone: old.spec.time_zone,
                    concurrency_policy: v2::ConcurrencyPolicy::default(),
                },
                status: old.status.map(|status| v2::CronTabStatus {
                    last_schedule_time: status.last_schedule_time,
                    running_jobs: status.active_jobs,
                }),
            }
        }
    }

    impl From<v2::CronTab> for v1::CronTab {
        fn from(new: v2::CronTab) -> Self {
            v1::CronTab {
                metadata: new.metadata,
                spec: v1::CronTabSpec {
                    schedule: new.spec.schedule,
                    image: new.spec.image,
                    replicas: new.spec.replicas,
                    host: new.spec.host,
                    port: new.spec.port,
                    time_zone: new.spec.time_zone,
                },
                status: new.status.map(|status| v1::CronTabStatus {
                    last_schedule_time: status.last_schedule_time,
                    active_jobs: status.running_jobs,
                }),
            }
        }
    }

    /// The warning clients get when they use v1beta1.
    pub const V1BETA1_DEPRECATION: &str =
        "example.com/v1beta1 CronTab is deprecated; use example.com/v2";

    /// The conversions, as a chain v1beta1 - v1 - v2.
    pub fn converter() -> Result<KindConverter, BuildError> {
        KindConverter::builder()
            .step::<v1beta1::CronTab, v1::CronTab>()
            .step::<v1::CronTab, v2::CronTab>()
            .build()
    }

    /// The CRD with the three versions and webhook conversion to `target`.
    pub fn crd(target: WebhookTarget) -> Result<CustomResourceDefinition, CrdError> {
        MultiVersionCrd::new()
            .version(
                CrdVersion::of::<v1beta1::CronTab>()
                    .storage()
                    .deprecated(Some(V1BETA1_DEPRECATION)),
            )
            .version(CrdVersion::of::<v1::CronTab>())
            .version(CrdVersion::of::<v2::CronTab>())
            .webhook(target)
            .build()
    }
}

//! The CronTab CRD, declared once: its three versions, the conversions between them, the
//! converter and the multi-version CRD as installed in the cluster all come from the
//! `#[versioned]` declaration [`versions`] (see `stackable-crd-versions`).
//!
//! v1beta1 is the storage version (existing objects are stored as v1beta1) and deprecated; v1 is
//! served, the version the controller watches and the hub of the converter; v2 is served and
//! converts through v1. Conversion goes through the operator's webhook at `/convert`; the
//! `caBundle` is left empty for a CA injector (or the operator itself) to fill.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use stackable_conversion::{CrdError, WebhookTarget};
use stackable_crd_versions::versioned;

pub use versions::CronTabVersions;

/// The warning clients get when they use v1beta1 (the declaration repeats it; a test checks that
/// they agree).
pub const V1BETA1_DEPRECATION: &str =
    "example.com/v1beta1 CronTab is deprecated; use example.com/v1";

/// The name of the CRD.
pub const CRD_NAME: &str = "crontabs.example.com";

/// The path the webhook serves conversions on.
pub const CONVERT_PATH: &str = "/convert";

/// The CronTab versions: `v1beta1`, `v1` and `v2` (re-exported as [`crate::v1beta1`],
/// [`crate::v1`] and [`crate::v2`]). Each type is written as it is in v2; the actions say what
/// was different before.
#[versioned(
    version(
        v1beta1,
        storage,
        deprecated = "example.com/v1beta1 CronTab is deprecated; use example.com/v1"
    ),
    version(v1, hub),
    version(v2)
)]
pub mod versions {
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    /// The desired state of a CronTab (v2).
    #[versioned(doc(
        v1beta1 = "The desired state of a CronTab (v1beta1).",
        v1 = "The desired state of a CronTab (v1)."
    ))]
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
        /// The cron schedule, e.g. `*/5 * * * *` (`cronSpec` in v1beta1).
        #[versioned(
            renamed(since = v1, from = cron_spec),
            doc(v1beta1 = "The cron schedule, e.g. `*/5 * * * *`.")
        )]
        pub schedule: String,
        /// The container image to run.
        pub image: String,
        /// How many pods to run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub replicas: Option<i32>,
        /// Where the job reports to, as `host:port`.
        #[versioned(removed(since = v1, downgrade = crate::convert::join_host_port))]
        pub host_port: String,
        /// The host the job reports to.
        #[versioned(added(since = v1, try_upgrade = crate::convert::host_of))]
        pub host: String,
        /// The port the job reports to.
        #[versioned(added(since = v1, try_upgrade = crate::convert::port_of))]
        pub port: u16,
        /// The time zone of the schedule (IANA name); v1beta1 cannot hold it.
        #[versioned(added(since = v1))]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub time_zone: Option<String>,
        /// What to do when a run is due while the previous one still runs (v2 only).
        #[versioned(added(since = v2))]
        #[serde(default)]
        pub concurrency_policy: ConcurrencyPolicy,
    }

    /// The observed state of a CronTab (v2).
    #[versioned(doc(
        v1beta1 = "The observed state of a CronTab (v1beta1).",
        v1 = "The observed state of a CronTab (v1)."
    ))]
    #[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct CronTabStatus {
        /// When the job was last scheduled (RFC 3339).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub last_schedule_time: Option<String>,
        /// How many jobs are running (`activeJobs` in v1, `active` in v1beta1).
        #[versioned(
            renamed(since = v1, from = active),
            renamed(since = v2, from = active_jobs),
            doc(
                v1beta1 = "How many jobs are running.",
                v1 = "How many jobs are running (`active` in v1beta1)."
            )
        )]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub running_jobs: Option<i32>,
    }

    /// What to do when a run is due while the previous one still runs (`spec.concurrencyPolicy`,
    /// v2 only; objects from older versions get `Allow`).
    #[versioned(added(since = v2))]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
    pub enum ConcurrencyPolicy {
        /// Start the new run while the previous one still runs.
        #[default]
        Allow,
        /// Skip the new run.
        Forbid,
        /// Stop the previous run and start the new one.
        Replace,
    }
}

/// The in-cluster Service of `deploy/`: `crontab-operator` in namespace `crontab-operator`,
/// port 443, path `/convert`.
pub fn default_webhook_target() -> WebhookTarget {
    WebhookTarget::service("crontab-operator", "crontab-operator")
        .path(CONVERT_PATH)
        .port(443)
}

/// The CRD with all three versions and webhook conversion to `target`.
pub fn crd(target: WebhookTarget) -> Result<CustomResourceDefinition, CrdError> {
    CronTabVersions::crd(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_warning_is_the_constant() {
        let crd = crd(default_webhook_target()).expect("the declared versions form a CRD");
        assert_eq!(
            crd.spec.versions[0].deprecation_warning.as_deref(),
            Some(V1BETA1_DEPRECATION)
        );
    }

    #[test]
    fn three_versions_v1beta1_stored_v1_the_hub() {
        assert_eq!(CronTabVersions::VERSIONS, ["v1beta1", "v1", "v2"]);
        assert_eq!(CronTabVersions::STORAGE_VERSION, "v1beta1");
        let converter = CronTabVersions::converter().expect("the declared versions convert");
        assert_eq!(converter.hub(), Some("v1"));
        let crd = crd(default_webhook_target()).expect("the declared versions form a CRD");
        let flags: Vec<_> = crd
            .spec
            .versions
            .iter()
            .map(|v| (v.name.as_str(), v.served, v.storage, v.deprecated))
            .collect();
        assert_eq!(
            flags,
            [
                ("v1beta1", true, true, Some(true)),
                ("v1", true, false, None),
                ("v2", true, false, None)
            ]
        );
    }
}

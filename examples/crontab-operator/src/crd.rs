//! The multi-version CronTab CRD, as installed in the cluster.
//!
//! v1beta1 is the storage version (existing objects are stored as v1beta1) and deprecated; v1 is
//! served. Conversion goes through the operator's webhook at `/convert`; the `caBundle` is left
//! empty for a CA injector (or the operator itself) to fill.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/>.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use stackable_conversion::{CrdError, CrdVersion, MultiVersionCrd, WebhookTarget};

use crate::{v1, v1beta1};

/// The warning clients get when they use v1beta1.
pub const V1BETA1_DEPRECATION: &str =
    "example.com/v1beta1 CronTab is deprecated; use example.com/v1";

/// The name of the CRD.
pub const CRD_NAME: &str = "crontabs.example.com";

/// The path the webhook serves conversions on.
pub const CONVERT_PATH: &str = "/convert";

/// The in-cluster Service of `deploy/`: `crontab-operator` in namespace `crontab-operator`,
/// port 443, path `/convert`.
pub fn default_webhook_target() -> WebhookTarget {
    WebhookTarget::service("crontab-operator", "crontab-operator")
        .path(CONVERT_PATH)
        .port(443)
}

/// The CRD with both versions and webhook conversion to `target`.
pub fn crd(target: WebhookTarget) -> Result<CustomResourceDefinition, CrdError> {
    MultiVersionCrd::new()
        .version(
            CrdVersion::of::<v1beta1::CronTab>()
                .storage()
                .deprecated(Some(V1BETA1_DEPRECATION)),
        )
        .version(CrdVersion::of::<v1::CronTab>())
        .webhook(target)
        .build()
}

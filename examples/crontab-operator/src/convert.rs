//! The conversions between the CronTab versions, and the router that serves them.
//!
//! The conversions are generated from the declaration in [`crate::crd::versions`]; this module
//! holds what its field actions cannot express, the `hostPort` split, as plain functions the
//! declaration points to. v1 is the hub: v1beta1 and v2 convert to and from it. `v1 -> v1beta1`
//! and `v1 <-> v2` cannot fail; `v1beta1 -> v1` fails when `hostPort` is not `host:port` with a
//! port number. Fields an older version cannot hold (`timeZone`, `concurrencyPolicy`) are stashed
//! by `stackable-conversion`, not here.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>.

use snafu::Snafu;
use stackable_conversion::{BuildError, ConversionRouter, KindConverter};

use crate::{crd::CronTabVersions, v1, v1beta1};

/// `spec.hostPort` of a v1beta1 CronTab is not `host:port`.
#[derive(Debug, Snafu, PartialEq, Eq)]
pub enum HostPortError {
    /// No `:` at all.
    #[snafu(display("spec.hostPort {host_port:?} is not of the form host:port"))]
    MissingPort {
        /// The value.
        host_port: String,
    },
    /// The part after the last `:` is not a port number.
    #[snafu(display(
        "spec.hostPort {host_port:?} has no valid port number (0-65535) after the last ':'"
    ))]
    InvalidPort {
        /// The value.
        host_port: String,
    },
}

/// Splits `host:port` at the last `:` (so IPv6 hosts like `::1:80` work).
fn split_host_port(host_port: &str) -> Result<(String, u16), HostPortError> {
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

/// The host of `spec.hostPort` (the upgrade of `spec.host`, see [`crate::crd::versions`]).
pub(crate) fn host_of(old: &v1beta1::CronTabSpec) -> Result<String, HostPortError> {
    split_host_port(&old.host_port).map(|(host, _)| host)
}

/// The port of `spec.hostPort` (the upgrade of `spec.port`).
pub(crate) fn port_of(old: &v1beta1::CronTabSpec) -> Result<u16, HostPortError> {
    split_host_port(&old.host_port).map(|(_, port)| port)
}

/// `host:port` (the downgrade of the removed `spec.hostPort`).
pub(crate) fn join_host_port(new: &v1::CronTabSpec) -> String {
    format!("{}:{}", new.host, new.port)
}

/// The CronTab versions (v1beta1, v1, v2) with v1 as hub.
pub fn converter() -> Result<KindConverter, BuildError> {
    CronTabVersions::converter()
}

/// The router the webhook serves: only CronTabs.
pub fn router() -> Result<ConversionRouter, BuildError> {
    CronTabVersions::router()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splits_at_the_last_colon() {
        assert_eq!(
            split_host_port("example.org:80"),
            Ok(("example.org".into(), 80))
        );
        assert_eq!(split_host_port("::1:443"), Ok(("::1".into(), 443)));
        assert_eq!(split_host_port(":0"), Ok((String::new(), 0)));
        assert!(matches!(
            split_host_port("nope"),
            Err(HostPortError::MissingPort { .. })
        ));
        assert!(matches!(
            split_host_port("h:70000"),
            Err(HostPortError::InvalidPort { .. })
        ));
        assert!(matches!(
            split_host_port("h:+80"),
            Err(HostPortError::InvalidPort { .. })
        ));
        assert!(matches!(
            split_host_port("h:"),
            Err(HostPortError::InvalidPort { .. })
        ));
    }
}

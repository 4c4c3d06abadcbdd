//! The conversions between the CronTab versions, and the router that serves them.
//!
//! v1 is the hub: v1beta1 converts to and from it. `v1 -> v1beta1` cannot fail; `v1beta1 -> v1`
//! fails when `hostPort` is not `host:port` with a port number. Fields v1beta1 cannot hold
//! (`timeZone`) are stashed by `stackable-conversion`, not here.
//!
//! See <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>.

use snafu::Snafu;
use stackable_conversion::{BuildError, ConversionRouter, KindConverter};

use crate::{v1, v1beta1};

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

/// The CronTab versions with v1 as hub.
pub fn converter() -> Result<KindConverter, BuildError> {
    KindConverter::builder()
        .hub::<v1::CronTab>()
        .step::<v1beta1::CronTab, v1::CronTab>()
        .build()
}

/// The router the webhook serves: only CronTabs.
pub fn router() -> Result<ConversionRouter, BuildError> {
    converter().map(ConversionRouter::from)
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

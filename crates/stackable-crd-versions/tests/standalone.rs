//! `#[versioned]` on one type rather than a module: generic types, tuple structs, conversions
//! written by hand for a step the actions cannot express, and how the generated code is seen
//! from the surrounding module (visibility).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Serialize};
use stackable_crd_versions::{ConversionError, versioned};

/// A generic type, versioned on its own.
#[versioned(version(v1), version(v2), version(v3))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits<T: Clone>
where
    T: Default,
{
    /// The ceiling.
    pub max: T,
    /// The floor, new in v2.
    #[versioned(added(since = v2, default = T::default))]
    pub min: T,
    /// Burst allowance; renamed and deprecated.
    #[versioned(
        renamed(since = v2, from = spike),
        deprecated(since = v3, note = "use max")
    )]
    pub burst: Option<T>,
}

/// A private tuple struct: the generated modules keep it visible in this module.
mod port {
    use super::*;

    #[versioned(version(v1), version(v2))]
    #[derive(Clone, Debug, PartialEq)]
    struct Port(u16);

    #[test]
    fn private_types_stay_visible_where_they_were_declared() {
        assert_eq!(v2::Port::from(v1::Port(80)), v2::Port(80));
    }
}

/// Conversions by hand: v1 said `"host:port"`, v2 holds the parts.
mod endpoint {
    use super::*;

    /// An endpoint.
    #[versioned(version(v1), version(v2), convert_by_hand(since = v2))]
    #[derive(Clone, Debug, PartialEq)]
    pub struct Endpoint {
        /// `host:port` in v1.
        #[versioned(removed(since = v2))]
        pub address: String,
        /// The host.
        #[versioned(added(since = v2))]
        pub host: String,
        /// The port.
        #[versioned(added(since = v2))]
        pub port: u16,
    }

    impl TryFrom<v1::Endpoint> for v2::Endpoint {
        type Error = String;
        fn try_from(old: v1::Endpoint) -> Result<Self, String> {
            let (host, port) = old
                .address
                .rsplit_once(':')
                .ok_or_else(|| format!("{:?} has no port", old.address))?;
            Ok(v2::Endpoint {
                host: host.to_owned(),
                port: port.parse().map_err(|_| format!("bad port {port:?}"))?,
            })
        }
    }

    impl From<v2::Endpoint> for v1::Endpoint {
        fn from(new: v2::Endpoint) -> Self {
            v1::Endpoint {
                address: format!("{}:{}", new.host, new.port),
            }
        }
    }
}

/// Holds a type converted by hand: its generated conversion is fallible (the hand-written
/// error type is unknown to the macro) and keeps the path.
#[versioned(version(v1), version(v2))]
pub mod service {
    use super::endpoint;

    /// A service.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Service {
        /// The name.
        pub name: String,
        /// Where it listens.
        pub endpoints: Vec<Listener>,
    }

    /// One listener.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Listener {
        /// Where.
        pub at: Wrapped,
    }

    /// A wrapper around the hand-converted type, so that it is versioned here too.
    #[versioned(convert_by_hand(since = v2))]
    #[derive(Clone, Debug, PartialEq)]
    pub struct Wrapped(pub String);

    impl TryFrom<v1::Wrapped> for v2::Wrapped {
        type Error = String;
        fn try_from(old: v1::Wrapped) -> Result<Self, String> {
            let endpoint =
                endpoint::v2::Endpoint::try_from(endpoint::v1::Endpoint { address: old.0 })?;
            Ok(v2::Wrapped(format!("{}|{}", endpoint.host, endpoint.port)))
        }
    }

    impl From<v2::Wrapped> for v1::Wrapped {
        fn from(new: v2::Wrapped) -> Self {
            v1::Wrapped(new.0.replace('|', ":"))
        }
    }
}

#[test]
fn generic_types_convert_with_their_parameters() {
    let old = v1::Limits::<u8> {
        max: 9,
        spike: Some(3),
    };
    let new = v3::Limits::from(v2::Limits::from(old.clone()));
    assert_eq!(
        new,
        v3::Limits {
            max: 9,
            min: 0,
            burst: Some(3)
        }
    );
    assert_eq!(v1::Limits::from(v2::Limits::from(new)), old);
    assert_eq!(
        serde_json::to_value(v2::Limits::<u8> {
            max: 1,
            min: 0,
            burst: None
        })
        .unwrap(),
        serde_json::json!({"max": 1, "min": 0, "burst": null})
    );
}

#[test]
fn conversions_written_by_hand_are_used_and_their_errors_kept() {
    let ok = service::v2::Service::try_from(service::v1::Service {
        name: "web".into(),
        endpoints: vec![service::v1::Listener {
            at: service::v1::Wrapped("db:80".into()),
        }],
    })
    .unwrap();
    assert_eq!(ok.endpoints[0].at.0, "db|80");
    // The macro cannot know whether a hand-written step fails: what holds it converts with
    // TryFrom in both directions.
    assert_eq!(
        service::v1::Service::try_from(ok).unwrap().endpoints[0]
            .at
            .0,
        "db:80"
    );

    let error: ConversionError = service::v2::Service::try_from(service::v1::Service {
        name: "web".into(),
        endpoints: vec![
            service::v1::Listener {
                at: service::v1::Wrapped("db:80".into()),
            },
            service::v1::Listener {
                at: service::v1::Wrapped("nope".into()),
            },
        ],
    })
    .unwrap_err();
    assert_eq!(error.to_string(), "endpoints[1].at: \"nope\" has no port");
}

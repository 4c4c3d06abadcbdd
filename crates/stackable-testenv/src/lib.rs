//! A real kube-apiserver and etcd on 127.0.0.1, started from Rust, for operator tests.
//!
//! [`TestEnv::start`] finds (or builds, see [`build`]) the binaries, generates certificates,
//! starts etcd and kube-apiserver on free loopback ports, waits until `/readyz` answers 200
//! and hands out [`kube::Client`]s authenticated as a cluster admin. Dropping the
//! [`TestEnv`] stops both processes and removes every temporary file, also when a test
//! panics. It is the same idea as controller-runtime's [envtest], without Go in the test.
//!
//! ```no_run
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::{Api, api::PostParams};
//! use stackable_testenv::TestEnv;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let env = TestEnv::start().await?;
//! let namespace = env.create_namespace("my-test").await?;
//! let api: Api<ConfigMap> = Api::namespaced(env.client()?, &namespace);
//! let mut cm = ConfigMap::default();
//! cm.metadata.name = Some("hello".into());
//! api.create(&PostParams::default(), &cm).await?;
//! # Ok(())
//! # }
//! ```
//!
//! [envtest]: https://book.kubebuilder.io/reference/envtest.html

pub mod assets;
pub mod build;
pub mod env;
pub mod forwarder;
pub mod helm;
pub mod pki;
pub mod ports;
mod process;
pub mod replicas;
pub mod webhooks;

pub use assets::Binaries;
pub use env::{Error, TestEnv, TestEnvBuilder, webhook_service_dns_names};

/// The Kubernetes release this crate builds and tests against.
pub const KUBERNETES_VERSION: &str = "v1.37.2";

/// The README's example, compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The guide's examples, compiled as doctests.
#[doc = include_str!("../../../docs/testenv.md")]
#[cfg(doctest)]
pub struct GuideDoctests;

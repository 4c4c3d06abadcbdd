//! Injects `caBundle` into CRDs, webhook configurations, APIServices and ConfigMaps,
//! in-process ([`CaInjector`]) or from the standalone `stackable-cainjector`.
//!
//! The API server trusts a webhook only through the `caBundle` of the CRD or webhook
//! configuration that points at it
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>).
//! The bundle differs per cluster, so it is patched in at runtime, with a server-side apply
//! that owns only the caBundle fields.
//!
//! ```no_run
//! use stackable_cainject::{CaInjector, Target};
//! # async fn run(client: kube::Client, pem: String) {
//! let (_tx, bundles) = tokio::sync::watch::channel(pem);
//! let injector = CaInjector::new(
//!     client,
//!     "my-operator-cainject",
//!     [Target::crd("crontabs.example.com"), Target::validating_webhook("my-operator")],
//! )
//! .start(bundles);
//! injector.ready().await; // every target carries the bundle
//! # }
//! ```

pub mod apply;
pub mod injector;
pub mod install;
pub mod patch;
pub mod serving;
pub mod target;

pub use apply::{ApplyError, Outcome, Writer};
pub use injector::{BundleSource, CaInjector, InjectionStatus, InjectorHandle, TargetState};
pub use install::Installed;
#[cfg(feature = "clap")]
pub use serving::ServingCertificatesArgs;
pub use serving::{CertificatesStatus, RunningCertificates, ServingCertificates};
pub use target::{Target, TargetKind, WebhookSelection};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

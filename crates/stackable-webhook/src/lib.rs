//! A tower/hyper/rustls HTTPS server for Kubernetes admission and conversion webhooks, with
//! in-place certificate swaps.
//!
//! The Kubernetes API server calls admission webhooks
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>)
//! and CRD conversion webhooks
//! (<https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definition-versioning/#webhook-conversion>)
//! over HTTPS. This crate serves both: typed validating and mutating handlers (the JSON Patch
//! is computed for you, keeping fields your Rust type does not know), a [`Converter`] trait for
//! conversion, health and Prometheus routes, and a certificate that can be swapped at any time
//! without failing a request.
//!
//! ```no_run
//! use std::sync::Arc;
//! use k8s_openapi::api::core::v1::Pod;
//! use kube::core::admission::AdmissionRequest;
//! use stackable_webhook::{CertSource, FileSource, Mutation, Validation, WebhookServer};
//!
//! # async fn run() -> Result<(), stackable_webhook::ServerError> {
//! WebhookServer::builder()
//!     .certificates(CertSource::Files(FileSource::dir("/tmp/k8s-webhook-server/serving-certs")))
//!     .validating("/validate", |request: AdmissionRequest<Pod>| async move {
//!         match request.object.as_ref().and_then(|pod| pod.metadata.name.as_deref()) {
//!             Some(name) if name.starts_with("forbidden") => Validation::deny("forbidden name"),
//!             _ => Validation::allow(),
//!         }
//!     })
//!     .mutating("/mutate", |request: AdmissionRequest<Pod>| async move {
//!         let Some(mut pod) = request.object else { return Mutation::unchanged() };
//!         pod.metadata
//!             .labels
//!             .get_or_insert_with(Default::default)
//!             .insert("mutated".into(), "true".into());
//!         Mutation::patched(pod)
//!     })
//!     .build()?
//!     .run()
//!     .await
//! # }
//! ```

pub mod admission;
mod buffers;
pub mod client_auth;
pub mod conversion;
#[doc(hidden)]
pub mod fuzzing;
mod idle;
mod json_scan;
pub mod metrics;
pub mod readiness;
pub mod registration;
pub mod route;
pub mod router;
pub mod server;
pub mod source;
mod span_fields;
pub mod tls;
pub mod traceparent;

pub use admission::{MutatingHandler, Mutation, ValidatingHandler, Validation};
pub use client_auth::{ClientAuth, ClientCaVerifier};
pub use conversion::{
    CONVERSION_REVIEW_API_VERSION, Converter, INLINE_CONVERSION_MAX_BYTES, ObjectMembers,
    RawConversionRequest,
};
pub use metrics::Metrics;
pub use readiness::{Readiness, ReadinessCheck};
pub use registration::{AdmissionConfigurations, Endpoint, Registration, Rule};
pub use route::{Outcome, Route, RouteService, WebhookRequest, WebhookResponse};
pub use router::{ExtraService, ResponseBody};
pub use server::{Limits, RunningServer, ServerError, WebhookServer, WebhookServerBuilder};
pub use source::{CertSource, FileSource, SourceError};
pub use tls::{CertResolver, MinTlsVersion, TlsError, TlsOptions, certified_key_from_pem};

/// The README's example, compiled as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The guide's examples, compiled as a doctest (they use the `cainject` feature, which the
/// workspace's example operators enable).
#[doc = include_str!("../../../docs/webhook-server.md")]
#[cfg(all(doctest, feature = "cainject"))]
pub struct GuideDoctests;

//! cert-manager external issuers in Rust, with the semantics of cert-manager's
//! [issuer-lib](https://github.com/cert-manager/issuer-lib).
//!
//! An operator that owns a CA signs cert-manager `CertificateRequest`s
//! (<https://cert-manager.io/docs/usage/certificaterequest/>) and Kubernetes
//! `CertificateSigningRequest`s
//! (<https://kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/>)
//! by supplying two functions, a [`Signer`]'s `check(issuer)` and `sign(request, issuer)`, for
//! two issuer kinds of its own (one namespaced, one cluster-scoped, each with an
//! [`api::IssuerStatus`]). [`IssuerControllers`] does the rest on kube-runtime's `Controller`:
//!
//! - **issuers**: `check` → `Ready=True/Checked`; a permanent error → `Failed` until the spec
//!   changes; other errors → `Pending` with backoff; `observedGeneration` on the condition;
//!   `Ready` issuers re-checked periodically (configurable);
//! - **requests**: only those whose `issuerRef` (or `signerName`) names one of the two kinds,
//!   only once approved; denied → `Ready=False/Denied`; waiting for a missing or not-Ready
//!   issuer → `Pending`, woken by the issuer's watch; then `sign`, whose
//!   [`SignerError`] decides between `Failed`, `Pending` with a delay, an issuer error (the
//!   issuer is marked not Ready and checked again) and a retry with backoff until the maximum
//!   retry duration;
//! - status by server-side apply on the status subresource with a field owner, Events
//!   (`events.k8s.io`) with issuer-lib's reasons;
//! - the user's ignore hooks ([`Signer::ignore_issuer`], [`Signer::ignore_certificate_request`]);
//! - with [`IssuerControllers::leader_election`], the controllers run on one replica at a time
//!   (a `coordination.k8s.io` Lease); [`IssuerControllers::readiness`] and
//!   [`IssuerMetrics`] feed a `/readyz` and `/metrics` endpoint ([`Endpoint`]).
//!
//! See the guide, `docs/issuer.md`, and the CA issuer in `examples/ca-issuer`.

pub mod api;
mod conditions;
mod controller;
mod error;
mod issuer;
mod metrics;
mod signer;
#[cfg(feature = "testing")]
pub mod testing;

pub use controller::{
    DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_RETRY_DURATION,
    DEFAULT_RECHECK_INTERVAL, IssuerControllers, issuer_ready_reason, request_reason,
};
pub use error::{Error, Result};
pub use issuer::{AnyIssuer, IssuerResource};
pub use metrics::IssuerMetrics;
pub use signer::{
    BoxError, CSR_DURATION_ANNOTATION, CSR_IS_CA_ANNOTATION, CertificateDetails, DEFAULT_DURATION,
    DEFAULT_PENDING_DELAY, ErrorKind, IssuerRef, PemBundle, RequestCondition, Signer, SignerError,
    SigningRequest,
};
/// Leader election and the health and metrics endpoint (re-exported from `stackable-runtime`).
pub use stackable_runtime::{Election, Endpoint, Readiness};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

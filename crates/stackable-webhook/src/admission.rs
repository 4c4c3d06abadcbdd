//! Typed validating and mutating admission handlers
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/>).
//!
//! A handler receives kube's [`AdmissionRequest<K>`] with `object` and `oldObject` decoded into
//! `K`. A validating handler answers a [`Validation`]; a mutating handler answers a
//! [`Mutation<K>`] holding the modified object, from which the server computes the JSON Patch
//! against the object **exactly as received**: fields the Rust type does not know are kept.

use std::future::Future;

use kube::core::{Resource, admission::AdmissionRequest};

mod answer;
pub mod audit;
pub(crate) mod decode;
mod patch;
mod route;
mod snapshot;
mod text;
pub mod warnings;

pub use answer::{Mutation, Validation};
pub use audit::{AuditAnnotationKeyError, check_audit_annotation_key};
pub use decode::DecodeError;
pub use patch::compute_patch;
pub(crate) use route::{mutating_route, validating_route};

/// The `apiVersion`s of `AdmissionReview` the server accepts and echoes back.
pub const SUPPORTED_ADMISSION_VERSIONS: [&str; 2] =
    ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// A validating admission handler for objects of type `K`.
///
/// Implemented for every `Fn(AdmissionRequest<K>) -> impl Future<Output = Validation>`.
pub trait ValidatingHandler<K: Resource>: Send + Sync + 'static {
    /// Decides on one request.
    fn validate(&self, request: AdmissionRequest<K>) -> impl Future<Output = Validation> + Send;
}

impl<K, F, Fut> ValidatingHandler<K> for F
where
    K: Resource,
    F: Fn(AdmissionRequest<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Validation> + Send,
{
    fn validate(&self, request: AdmissionRequest<K>) -> impl Future<Output = Validation> + Send {
        self(request)
    }
}

/// A mutating admission handler for objects of type `K`.
///
/// Implemented for every `Fn(AdmissionRequest<K>) -> impl Future<Output = Mutation<K>>`.
/// The object to modify is `request.object` (absent for DELETE).
pub trait MutatingHandler<K: Resource>: Send + Sync + 'static {
    /// Mutates (or not) one request's object.
    fn mutate(&self, request: AdmissionRequest<K>) -> impl Future<Output = Mutation<K>> + Send;
}

impl<K, F, Fut> MutatingHandler<K> for F
where
    K: Resource,
    F: Fn(AdmissionRequest<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Mutation<K>> + Send,
{
    fn mutate(&self, request: AdmissionRequest<K>) -> impl Future<Output = Mutation<K>> + Send {
        self(request)
    }
}

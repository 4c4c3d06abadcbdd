//! The few cert-manager API types an issuer needs, written here.
//!
//! No maintained crate provides them for this workspace's kube 5 and k8s-openapi 0.29
//! (`kube-custom-resources-rs` 2024.11.1, the newest, depends on kube `~0`), so the
//! [`CertificateRequest`] of
//! `cert-manager.io/v1` (<https://cert-manager.io/docs/reference/api-docs/#cert-manager.io/v1.CertificateRequest>)
//! is declared by hand with the fields cert-manager's CRD has. Unknown fields are ignored when
//! reading; status is written by server-side apply with only the fields this crate owns.
//!
//! [`IssuerStatus`] is the status an issuer kind of the user
//! carries (issuer-lib's `v1alpha1.IssuerStatus`): a list of `metav1.Condition`s keyed by type.

pub mod certificate_request;
pub mod issuer_status;

pub use certificate_request::{
    CertificateRequest, CertificateRequestCondition, CertificateRequestSpec,
    CertificateRequestStatus, IssuerReference,
};
pub use issuer_status::IssuerStatus;

//! What the user supplies: a [`Signer`] with `check(issuer)` and `sign(request, issuer)`
//! (issuer-lib's `signer.Check` and `signer.Sign`), and what they return.

mod error;
mod go_duration;
mod request;
mod usages;

use std::future::Future;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::Resource;

pub use error::{BoxError, DEFAULT_PENDING_DELAY, ErrorKind, RequestCondition, SignerError};
pub use request::{
    CSR_DURATION_ANNOTATION, CSR_IS_CA_ANNOTATION, CertificateDetails, DEFAULT_DURATION,
    SigningRequest,
};

use crate::issuer::{AnyIssuer, IssuerResource};

/// The issuer a request names, as given to [`Signer::ignore_certificate_request`]
/// (issuer-lib passes its GroupVersionKind and namespaced name).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuerRef {
    /// The issuer kind's API group.
    pub group: String,
    /// The issuer kind ([`Signer::Issuer`]'s or [`Signer::ClusterIssuer`]'s).
    pub kind: String,
    /// The issuer's name.
    pub name: String,
    /// The issuer's namespace (the request's) for the namespaced kind, `None` for the
    /// cluster-scoped kind.
    pub namespace: Option<String>,
}

/// A signed certificate: the chain, leaf first, and the CA that issued it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PemBundle {
    /// The leaf certificate and any intermediates, PEM, leaf first (goes into
    /// `status.certificate`).
    pub chain_pem: String,
    /// The CA certificate, PEM; written to a `CertificateRequest`'s deprecated `status.ca` only
    /// when [`IssuerControllers::set_ca_on_certificate_request`](crate::IssuerControllers::set_ca_on_certificate_request) is on.
    pub ca_pem: Option<String>,
}

/// The business logic of an issuer: whether an issuer can sign, and signing.
///
/// `Issuer` is the namespaced kind (referenced by requests in its namespace), `ClusterIssuer`
/// the cluster-scoped kind (referenced by requests in any namespace, and by Kubernetes CSRs
/// with `signerName: <plural>.<group>/<name>`). Both carry an
/// [`IssuerStatus`](crate::api::IssuerStatus), usually through `#[kube(status = "IssuerStatus")]`.
///
/// ```no_run
/// use stackable_issuer::{AnyIssuer, PemBundle, Signer, SignerError, SigningRequest};
/// # use stackable_issuer::api::IssuerStatus;
/// # #[derive(kube::CustomResource, Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
/// # #[kube(group = "example.com", version = "v1", kind = "MyIssuer", namespaced, status = "IssuerStatus")]
/// # struct MyIssuerSpec {}
/// # #[derive(kube::CustomResource, Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
/// # #[kube(group = "example.com", version = "v1", kind = "MyClusterIssuer", status = "IssuerStatus")]
/// # struct MyClusterIssuerSpec {}
///
/// struct MySigner;
///
/// impl Signer for MySigner {
///     type Issuer = MyIssuer;
///     type ClusterIssuer = MyClusterIssuer;
///
///     async fn check(&self, issuer: AnyIssuer<'_, MyIssuer, MyClusterIssuer>) -> Result<(), SignerError> {
///         Ok(()) // reach the CA, read credentials...
///     }
///
///     async fn sign(
///         &self,
///         request: SigningRequest<'_>,
///         issuer: AnyIssuer<'_, MyIssuer, MyClusterIssuer>,
///     ) -> Result<PemBundle, SignerError> {
///         let details = request.details()?;
///         Err(SignerError::pending("submitted to the CA"))
///     }
/// }
/// ```
pub trait Signer: Send + Sync + 'static {
    /// The namespaced issuer kind.
    type Issuer: IssuerResource + Resource<Scope = NamespaceResourceScope>;
    /// The cluster-scoped issuer kind.
    type ClusterIssuer: IssuerResource + Resource<Scope = ClusterResourceScope>;

    /// Checks whether `issuer` can sign (its configuration, its credentials, its CA).
    ///
    /// `Ok` makes it `Ready=True` (reason `Checked`); a [permanent](SignerError::permanent)
    /// error makes it `Ready=False` (reason `Failed`) until its spec changes; any other error
    /// makes it `Ready=False` (reason `Pending`) and it is checked again with backoff.
    fn check(
        &self,
        issuer: AnyIssuer<'_, Self::Issuer, Self::ClusterIssuer>,
    ) -> impl Future<Output = Result<(), SignerError>> + Send;

    /// Signs an approved `request` with a `Ready` `issuer`. See [`SignerError`] for what each
    /// kind of error does to the request.
    fn sign(
        &self,
        request: SigningRequest<'_>,
        issuer: AnyIssuer<'_, Self::Issuer, Self::ClusterIssuer>,
    ) -> impl Future<Output = Result<PemBundle, SignerError>> + Send;

    /// Whether the issuer controllers leave `issuer` alone (issuer-lib's `IgnoreIssuer`), for
    /// example one that another deployment of the same issuer serves. Asked on every
    /// reconciliation of an issuer that has not failed permanently for its generation, before
    /// anything is written: an ignored issuer gets no condition, no Event and no `check`.
    /// An error is retried with backoff. The default ignores nothing.
    fn ignore_issuer(
        &self,
        issuer: AnyIssuer<'_, Self::Issuer, Self::ClusterIssuer>,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        let _ = issuer;
        async { Ok(false) }
    }

    /// Whether the request controllers leave `request` alone (issuer-lib's
    /// `IgnoreCertificateRequest`; cert-manager `CertificateRequest`s and Kubernetes CSRs
    /// alike). Asked for a request that names one of the two issuer kinds, is approved or
    /// denied and not final yet, before anything is written: an ignored request gets no
    /// condition and no Event. An error is retried with backoff. The default ignores nothing.
    fn ignore_certificate_request(
        &self,
        request: SigningRequest<'_>,
        issuer: &IssuerRef,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        let _ = (request, issuer);
        async { Ok(false) }
    }
}

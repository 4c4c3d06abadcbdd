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
}

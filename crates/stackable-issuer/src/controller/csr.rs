//! Kubernetes `CertificateSigningRequest`s as requests
//! (<https://kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/>,
//! issuer-lib's `certificatesigningRequestObjectHelper`): approval by the `Approved`/`Denied`
//! conditions set through the `/approval` subresource, the outcome in `status.certificate` or
//! a `Failed` condition. Only cluster-scoped issuers sign them, by `signerName`
//! `<plural>.<group>/<name>`.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use super::{
    request::RequestObject,
    request_status::{Existing, Flavor},
    targets::{IssuerKey, IssuerTypes},
};
use crate::{conditions::TRUE, signer::SigningRequest};

fn has_true(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == type_ && c.status == TRUE)
}

impl RequestObject for CertificateSigningRequest {
    const FLAVOR: Flavor = Flavor::KubernetesCsr;

    fn issuer_key(&self, types: &IssuerTypes) -> Option<IssuerKey> {
        types.match_csr(self)
    }

    fn is_approved(&self) -> bool {
        has_true(self, "Approved")
    }

    fn is_denied(&self) -> bool {
        has_true(self, "Denied")
    }

    fn is_ready(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_some_and(|c| !c.0.is_empty())
    }

    fn is_failed(&self) -> bool {
        has_true(self, "Failed")
    }

    fn is_denied_final(&self) -> bool {
        self.is_denied()
    }

    fn has_ready(&self) -> bool {
        true
    }

    fn existing_conditions(&self) -> Vec<Existing> {
        self.status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .map(|c| Existing {
                type_: c.type_.clone(),
                status: c.status.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
            .collect()
    }

    fn signing_request(&self) -> SigningRequest<'_> {
        SigningRequest::CertificateSigningRequest(self)
    }
}

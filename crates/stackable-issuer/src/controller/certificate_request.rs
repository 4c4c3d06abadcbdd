//! cert-manager `CertificateRequest`s as requests (issuer-lib's
//! `certificateRequestObjectHelper`): approval by the `Approved`/`Denied` conditions, the
//! outcome in the `Ready` condition.

use super::{
    request::RequestObject,
    request_status::{Existing, Flavor, request_reason},
    targets::{IssuerKey, IssuerTypes},
};
use crate::{
    api::{
        CertificateRequest,
        certificate_request::{CONDITION_APPROVED, CONDITION_DENIED},
    },
    conditions::{FALSE, TRUE},
    signer::SigningRequest,
};

impl RequestObject for CertificateRequest {
    const FLAVOR: Flavor = Flavor::CertificateRequest;

    fn issuer_key(&self, types: &IssuerTypes) -> Option<IssuerKey> {
        types.match_certificate_request(self)
    }

    fn is_approved(&self) -> bool {
        self.has_true(CONDITION_APPROVED)
    }

    fn is_denied(&self) -> bool {
        self.has_true(CONDITION_DENIED)
    }

    fn is_ready(&self) -> bool {
        self.ready_is(TRUE, None)
    }

    fn is_failed(&self) -> bool {
        self.ready_is(FALSE, Some(request_reason::FAILED))
    }

    fn is_denied_final(&self) -> bool {
        self.ready_is(FALSE, Some(request_reason::DENIED))
    }

    fn has_ready(&self) -> bool {
        self.condition(crate::api::certificate_request::CONDITION_READY)
            .is_some()
    }

    fn existing_conditions(&self) -> Vec<Existing> {
        self.status
            .iter()
            .flat_map(|s| &s.conditions)
            .map(|c| Existing {
                type_: c.type_.clone(),
                status: c.status.clone(),
                last_transition_time: c.last_transition_time.clone(),
            })
            .collect()
    }

    fn signing_request(&self) -> SigningRequest<'_> {
        SigningRequest::CertificateRequest(self)
    }
}

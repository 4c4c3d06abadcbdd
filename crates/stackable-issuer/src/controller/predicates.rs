//! What changes wake which controller (issuer-lib's `predicates.go`), as kube-runtime
//! predicates: a hash of the properties that matter, so that the controllers' own status
//! writes do not wake them again.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::{api::CertificateRequest, issuer::IssuerResource};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

fn hash(value: impl Hash) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    Some(hasher.finish())
}

/// A `CertificateRequest` wakes its controller when an annotation changes, a condition is
/// added or removed, or a condition other than `Ready` changes its status (an approval, a
/// denial, a custom condition).
pub(crate) fn certificate_request(cr: &CertificateRequest) -> Option<u64> {
    let mut conditions: Vec<(&str, Option<&str>)> = cr
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| {
            let status = (c.type_ != crate::api::certificate_request::CONDITION_READY)
                .then_some(c.status.as_str());
            (c.type_.as_str(), status)
        })
        .collect();
    conditions.sort();
    hash((&cr.metadata.annotations, conditions))
}

/// A Kubernetes CSR wakes its controller when an annotation changes or a condition is added,
/// removed or changes its status.
pub(crate) fn csr(csr: &CertificateSigningRequest) -> Option<u64> {
    let mut conditions: Vec<(&str, &str)> = csr
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    conditions.sort();
    hash((&csr.metadata.annotations, conditions))
}

/// An issuer wakes its own controller when its generation or an annotation changes, or its
/// `Ready` condition appears or disappears.
pub(crate) fn issuer<K: IssuerResource>(issuer: &K) -> Option<u64> {
    hash((
        issuer.meta().generation,
        &issuer.meta().annotations,
        issuer.ready_condition().is_some(),
    ))
}

/// An issuer wakes the requests that reference it when its `Ready` condition appears,
/// disappears or changes its status, or when the condition catches up with (or falls behind)
/// the issuer's generation. (issuer-lib looks at the status only; a request waiting for an
/// outdated condition would then wait until something else wakes it.)
pub(crate) fn linked_issuer<K: IssuerResource>(issuer: &K) -> Option<u64> {
    let ready = issuer.ready_condition().map(|c| {
        let current = c.observed_generation.unwrap_or(0) >= issuer.meta().generation.unwrap_or(0);
        (c.status.as_str(), current)
    });
    hash(ready)
}

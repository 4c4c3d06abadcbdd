//! [`PublishedTrust`]: which CAs the clients of the webhook trust right now, as read back from
//! where the trust bundle is published.
//!
//! The Kubernetes API server trusts a webhook only through the `caBundle` of the CRD or webhook
//! configuration that points at it
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>).
//! A replica must not serve a leaf from a new CA before that CA is in every such `caBundle`,
//! and the rotation must not go on while it is not. The injector (stackable-cainject) observes
//! the targets and publishes a [`PublishedTrust`]; the [driver](super::RotationDriver) and
//! [`advance_cas`](super::advance_cas) consult it.

use std::collections::BTreeSet;

use crate::Certificate;

/// The CAs present in the published trust bundle of **every** target, as last observed.
///
/// [`PublishedTrust::unobserved`] (the default) means nobody observes the targets (no in-process
/// injection, or a single process with an external injector): every CA counts as published
/// and only the policy's delays pace a rotation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishedTrust {
    /// `None`: not observed. `Some`: the DER of every CA certificate in every target's bundle.
    observed: Option<BTreeSet<Vec<u8>>>,
    /// The same certificates, parsed, in a stable order (by DER).
    certificates: Vec<Certificate>,
}

impl PublishedTrust {
    /// Nothing is observed: every CA counts as published.
    pub fn unobserved() -> Self {
        Self::default()
    }

    /// The targets were observed and these certificates are in the bundle of every one of them
    /// (empty when a target does not exist yet or holds no bundle).
    pub fn observed(certificates: impl IntoIterator<Item = Certificate>) -> Self {
        let mut by_der: Vec<Certificate> = certificates.into_iter().collect();
        by_der.sort_by(|a, b| a.der().cmp(b.der()));
        by_der.dedup_by(|a, b| a.der() == b.der());
        PublishedTrust {
            observed: Some(by_der.iter().map(|c| c.der().to_vec()).collect()),
            certificates: by_der,
        }
    }

    /// Whether the targets are observed at all.
    pub fn is_observed(&self) -> bool {
        self.observed.is_some()
    }

    /// Whether a client of every target trusts `ca` (always true when unobserved).
    pub fn trusts(&self, ca: &Certificate) -> bool {
        match &self.observed {
            None => true,
            Some(set) => set.contains(ca.der()),
        }
    }

    /// The certificates observed in every target (empty when unobserved).
    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CaOptions, CertificateAuthority};

    #[test]
    fn unobserved_trusts_everything_observed_only_what_it_saw() {
        let a = CertificateAuthority::new(&CaOptions::new("a")).unwrap();
        let b = CertificateAuthority::new(&CaOptions::new("b")).unwrap();
        let unobserved = PublishedTrust::unobserved();
        assert!(unobserved.trusts(a.certificate()));
        assert!(!unobserved.is_observed());

        let observed = PublishedTrust::observed([a.certificate().clone(), a.certificate().clone()]);
        assert!(observed.is_observed());
        assert!(observed.trusts(a.certificate()));
        assert!(!observed.trusts(b.certificate()));
        assert_eq!(observed.certificates().len(), 1);
        assert!(!PublishedTrust::observed([]).trusts(a.certificate()));
    }
}

//! CA bundles: the set of CA certificates a client trusts.
//!
//! This is what goes into the `caBundle` field of a webhook configuration or a CRD's
//! conversion webhook (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>)
//! and into `ca.crt` of a `kubernetes.io/tls` Secret.

use time::OffsetDateTime;

use crate::{
    Certificate,
    error::{NoCertificateSnafu, NotACaSnafu, Result},
};

/// One or more CA certificates, without duplicates, in insertion order.
///
/// Bundles built by [`CaBundle::from_pem`] and [`CaBundle::from_certificates`] are never
/// empty; only [`CaBundle::without_expired`] can yield an empty bundle (check
/// [`CaBundle::is_empty`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaBundle {
    certificates: Vec<Certificate>,
}

impl CaBundle {
    /// Parses a PEM bundle. Fails when there is no certificate, when the input is not PEM or
    /// holds another kind of block, or when a certificate is not a CA. Duplicates are dropped.
    pub fn from_pem(pem: &str) -> Result<Self> {
        Self::from_certificates(Certificate::all_from_pem(pem)?)
    }

    /// Builds a bundle from CA certificates (at least one; every one must be a CA).
    pub fn from_certificates(certificates: impl IntoIterator<Item = Certificate>) -> Result<Self> {
        let mut bundle = CaBundle {
            certificates: Vec::new(),
        };
        for cert in certificates {
            bundle.push(cert)?;
        }
        if bundle.certificates.is_empty() {
            return NoCertificateSnafu {
                what: "a CA bundle needs at least one CA certificate",
            }
            .fail();
        }
        Ok(bundle)
    }

    /// Adds a CA certificate; returns `false` if it was already present.
    pub fn push(&mut self, certificate: Certificate) -> Result<bool> {
        let info = certificate.info();
        if !info.is_ca {
            return NotACaSnafu {
                subject: info.subject.clone(),
                serial: info.serial_hex(),
            }
            .fail();
        }
        if self.contains(&certificate) {
            return Ok(false);
        }
        self.certificates.push(certificate);
        Ok(true)
    }

    /// Whether the bundle holds this exact certificate.
    pub fn contains(&self, certificate: &Certificate) -> bool {
        self.certificates
            .iter()
            .any(|c| c.der() == certificate.der())
    }

    /// The certificates, in insertion order.
    pub fn certificates(&self) -> &[Certificate] {
        &self.certificates
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    /// Whether the bundle is empty (only possible after [`CaBundle::without_expired`]).
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    /// A copy without the certificates whose notAfter is before `now`.
    pub fn without_expired(&self, now: OffsetDateTime) -> CaBundle {
        CaBundle {
            certificates: self
                .certificates
                .iter()
                .filter(|c| c.info().not_after >= now)
                .cloned()
                .collect(),
        }
    }

    /// Whether some CA of the bundle issued (and signed) `leaf`.
    pub fn issued(&self, leaf: &Certificate) -> bool {
        self.certificates.iter().any(|ca| leaf.is_issued_by(ca))
    }

    /// The bundle as concatenated PEM blocks.
    pub fn to_pem(&self) -> String {
        self.certificates.iter().map(Certificate::to_pem).collect()
    }
}

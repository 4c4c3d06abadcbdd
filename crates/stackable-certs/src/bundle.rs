//! CA bundles: the set of CA certificates a client trusts.
//!
//! This is what goes into the `caBundle` field of a webhook configuration or a CRD's
//! conversion webhook (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>)
//! and into `ca.crt` of a `kubernetes.io/tls` Secret.

use time::OffsetDateTime;

use snafu::ResultExt as _;

use crate::{
    Certificate,
    error::{
        AllExpiredSnafu, BundleCertificateSnafu, NoCertificateSnafu, NoPemBlockSnafu, NotACaSnafu,
        Result, UnexpectedPemBlockSnafu,
    },
};

/// One or more trusted certificates, without duplicates, in insertion order: what goes into a
/// `caBundle`. This is the one bundle type of the workspace.
///
/// Bundles built by [`CaBundle::from_pem`] and [`CaBundle::from_certificates`] hold CA
/// certificates only and are never empty; [`CaBundle::from_injection_source`] also takes
/// certificates that are not CAs (what cert-manager's cainjector injects); only
/// [`CaBundle::without_expired`] can yield an empty bundle (check [`CaBundle::is_empty`]).
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

    /// Parses a bundle the way cert-manager's cainjector takes a `ca.crt` to inject: every
    /// certificate counts, a CA or not (the most common webhook setup, a `selfSigned` Issuer
    /// with a Certificate without `isCA`, puts the leaf itself there, and Go's verifier trusts a
    /// certificate that is itself in the root pool); duplicates and certificates expired at
    /// `now` are dropped.
    ///
    /// Refused: input without a certificate (empty, garbage), a PEM block that is not a
    /// certificate (a private key), a certificate that does not parse or has trailing bytes
    /// after its DER (as Go's `x509.ParseCertificate`), and a bundle in which every certificate
    /// has expired. Errors never quote the input.
    pub fn from_injection_source(pem: &[u8], now: OffsetDateTime) -> Result<Self> {
        let blocks = crate::parse_pem(pem, "trust bundle")?;
        let mut bundle = CaBundle {
            certificates: Vec::with_capacity(blocks.len()),
        };
        for (index, block) in blocks.iter().enumerate() {
            if block.tag() != CERT_LABEL {
                return UnexpectedPemBlockSnafu {
                    tag: block.tag().to_string(),
                    expected: CERT_LABEL,
                }
                .fail();
            }
            let certificate = Certificate::from_der(block.contents())
                .context(BundleCertificateSnafu { index })?;
            if !bundle.contains(&certificate) {
                bundle.certificates.push(certificate);
            }
        }
        if bundle.certificates.is_empty() {
            return NoPemBlockSnafu {
                expected: CERT_LABEL,
            }
            .fail();
        }
        let count = bundle.len();
        let bundle = bundle.without_expired(now);
        if bundle.is_empty() {
            return AllExpiredSnafu { count }.fail();
        }
        Ok(bundle)
    }

    /// Adds any certificate, a CA or not (as [`CaBundle::from_injection_source`] does);
    /// returns `false` if it was already present.
    pub fn push_any(&mut self, certificate: Certificate) -> bool {
        if self.contains(&certificate) {
            return false;
        }
        self.certificates.push(certificate);
        true
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

    /// The bundle as concatenated PEM blocks (LF line endings).
    pub fn to_pem(&self) -> String {
        self.certificates.iter().map(Certificate::to_pem).collect()
    }

    /// DER certificates (a kubeconfig's CA, for example) as LF PEM, without parsing them.
    pub fn der_to_pem(certificates: &[Vec<u8>]) -> String {
        certificates
            .iter()
            .map(|der| crate::encode_pem(CERT_LABEL, der.clone()))
            .collect()
    }

    /// Whether every certificate is a CA (bundles from [`CaBundle::from_injection_source`] may
    /// hold a self-signed leaf).
    pub fn all_cas(&self) -> bool {
        self.certificates.iter().all(|c| c.info().is_ca)
    }
}

const CERT_LABEL: &str = "CERTIFICATE";

#[cfg(test)]
mod tests {
    use super::*;

    // Public certificates generated once with openssl (tests/fixtures/README.md).
    const CA_A: &str = include_str!("../tests/fixtures/bundle-ca-a.pem");
    const CA_B: &str = include_str!("../tests/fixtures/bundle-ca-b.pem");
    const LEAF: &str = include_str!("../tests/fixtures/bundle-leaf.pem");
    const EXPIRED_CA: &str = include_str!("../tests/fixtures/bundle-ca-expired.pem");
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nU0VDUkVUQUFB\n-----END PRIVATE KEY-----\n";

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn injectable(pem: &str) -> Result<CaBundle> {
        CaBundle::from_injection_source(pem.as_bytes(), now())
    }

    #[test]
    fn strict_bundles_take_cas_in_order_and_round_trip_as_lf_pem() {
        let two = CaBundle::from_pem(&format!("{CA_A}{CA_B}")).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two.certificates()[0].info().subject, "CN=ca-a");
        assert_eq!(two.to_pem(), format!("{CA_A}{CA_B}"));
        assert!(!two.to_pem().contains('\r'));
        assert!(matches!(
            CaBundle::from_pem(LEAF),
            Err(crate::Error::NotACa { .. })
        ));
    }

    #[test]
    fn injection_sources_take_any_certificate_as_cert_manager_does() {
        // A self-signed leaf (kubebuilder's selfSigned Issuer) or a leaf: injected as given.
        let leaf = injectable(LEAF).unwrap();
        assert_eq!(leaf.len(), 1);
        assert!(!leaf.all_cas());
        let mixed = injectable(&format!("{CA_A}{LEAF}{CA_A}")).unwrap();
        assert_eq!(
            mixed.to_pem(),
            format!("{CA_A}{LEAF}"),
            "deduplicated, in order"
        );
        // Expired ones are dropped; a bundle of expired ones is refused.
        assert_eq!(
            injectable(&format!("{EXPIRED_CA}{CA_B}")).unwrap().to_pem(),
            CA_B
        );
        assert!(matches!(
            injectable(EXPIRED_CA),
            Err(crate::Error::AllExpired { count: 1 })
        ));
    }

    #[test]
    fn injection_sources_refuse_garbage_keys_and_trailing_bytes_without_quoting_them() {
        for (input, expect) in [
            ("", "no CERTIFICATE block"),
            ("SECRET garbage", "no CERTIFICATE block"),
            (&format!("{CA_A}{KEY}") as &str, "PRIVATE KEY"),
            (
                "-----BEGIN CERTIFICATE-----\nU0VDUkVU\n-----END CERTIFICATE-----\n",
                "certificate 0 of the bundle",
            ),
        ] {
            let error = injectable(input).unwrap_err();
            let report = snafu::Report::from_error(&error).to_string();
            assert!(report.contains(expect), "{input:?}: {report}");
            assert!(!report.contains("SECRET"), "quotes the input: {report}");
        }
        // DER with a byte after the certificate: refused, as Go's x509.ParseCertificate does.
        let der = pem::parse(CA_A).unwrap().into_contents();
        let mut longer = der.clone();
        longer.push(0);
        let trailing = crate::encode_pem("CERTIFICATE", longer);
        let report = snafu::Report::from_error(injectable(&trailing).unwrap_err()).to_string();
        assert!(report.contains("trailing bytes"), "{report}");
    }
}

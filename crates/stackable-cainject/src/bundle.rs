//! Trust bundle validation, de-duplication and expiry filtering.
//!
//! The API server trusts a webhook only through the PEM bundle written into the `caBundle`
//! field of the CRD or webhook configuration
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>).
//! A bundle that does not parse, or that contains anything but CA certificates, would break
//! every call to the webhook, so [`TrustBundle::from_pem`] refuses it and the injector keeps
//! the bundle that is already in place.

use std::{fmt, time::SystemTime};

use snafu::{ResultExt, Snafu, ensure};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a PEM source was refused as a trust bundle.
#[derive(Debug, Snafu)]
pub enum BundleError {
    /// The source is not PEM at all.
    #[snafu(display("the trust bundle is not valid PEM"))]
    ParsePem {
        /// The PEM parser's error.
        source: pem::PemError,
    },

    /// The source holds no PEM block.
    #[snafu(display("the trust bundle holds no certificate"))]
    Empty,

    /// A PEM block is not a certificate (for example a private key).
    #[snafu(display("PEM block {index} of the trust bundle is a {tag:?}, not a CERTIFICATE"))]
    NotACertificate {
        /// Zero-based position of the block.
        index: usize,
        /// The PEM tag found.
        tag: String,
    },

    /// A CERTIFICATE block does not parse as X.509.
    #[snafu(display(
        "certificate {index} of the trust bundle is not a valid X.509 certificate: {message}"
    ))]
    ParseCertificate {
        /// Zero-based position of the block.
        index: usize,
        /// The X.509 parser's message.
        message: String,
    },

    /// A certificate is not a CA (no basicConstraints CA:TRUE).
    #[snafu(display(
        "certificate {index} of the trust bundle ({subject}) is not a CA certificate (basicConstraints CA:TRUE is missing)"
    ))]
    NotACa {
        /// Zero-based position of the block.
        index: usize,
        /// The certificate's subject.
        subject: String,
    },

    /// Every certificate of the bundle has expired.
    #[snafu(display("every certificate of the trust bundle has expired ({count} expired)"))]
    AllExpired {
        /// How many certificates were dropped.
        count: usize,
    },
}

/// One CA certificate of a [`TrustBundle`].
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificate {
    der: Vec<u8>,
    subject: String,
    not_after_unix: i64,
}

impl CaCertificate {
    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject, as an RFC 4514 string.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The end of validity, in seconds since the Unix epoch.
    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix
    }

    fn is_expired_at(&self, now: SystemTime) -> bool {
        let now = match now.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            Err(_) => 0,
        };
        self.not_after_unix < now
    }
}

impl fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCertificate")
            .field("subject", &self.subject)
            .field("not_after_unix", &self.not_after_unix)
            .finish()
    }
}

/// A validated bundle of one or more CA certificates, in the order of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    certificates: Vec<CaCertificate>,
}

impl TrustBundle {
    /// Parses PEM and checks that every block is an X.509 CA certificate.
    ///
    /// Anything else (a private key, a leaf certificate, garbage, nothing) is refused.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, BundleError> {
        let blocks = pem::parse_many(pem.as_ref()).context(ParsePemSnafu)?;
        ensure!(!blocks.is_empty(), EmptySnafu);
        let mut certificates = Vec::with_capacity(blocks.len());
        for (index, block) in blocks.into_iter().enumerate() {
            ensure!(
                block.tag() == "CERTIFICATE",
                NotACertificateSnafu {
                    index,
                    tag: block.tag().to_owned(),
                }
            );
            let der = block.into_contents();
            let (subject, is_ca, not_after_unix) = {
                let (_, cert) = X509Certificate::from_der(&der).map_err(|error| {
                    BundleError::ParseCertificate {
                        index,
                        message: error.to_string(),
                    }
                })?;
                let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
                (
                    cert.subject().to_string(),
                    is_ca,
                    cert.validity().not_after.timestamp(),
                )
            };
            ensure!(is_ca, NotACaSnafu { index, subject });
            certificates.push(CaCertificate {
                der,
                subject,
                not_after_unix,
            });
        }
        Ok(Self { certificates })
    }

    /// Drops repeated certificates (same DER), keeping the first occurrence.
    #[must_use]
    pub fn deduplicated(mut self) -> Self {
        let mut seen = std::collections::HashSet::new();
        self.certificates
            .retain(|cert| seen.insert(cert.der.clone()));
        self
    }

    /// Drops certificates whose validity ended before `now`.
    ///
    /// Refuses a bundle in which nothing is left.
    pub fn without_expired(mut self, now: SystemTime) -> Result<Self, BundleError> {
        let before = self.certificates.len();
        self.certificates.retain(|cert| !cert.is_expired_at(now));
        ensure!(
            !self.certificates.is_empty(),
            AllExpiredSnafu { count: before }
        );
        Ok(self)
    }

    /// Parses, de-duplicates and drops expired certificates: what the standalone injector
    /// writes for annotation sources.
    pub fn from_pem_normalized(
        pem: impl AsRef<[u8]>,
        now: SystemTime,
    ) -> Result<Self, BundleError> {
        Self::from_pem(pem)?.deduplicated().without_expired(now)
    }

    /// The certificates, in order.
    pub fn certificates(&self) -> &[CaCertificate] {
        &self.certificates
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    /// Always false: a bundle holds at least one certificate.
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    /// The bundle as PEM (LF line endings, 64 columns), the form written to `caBundle`.
    pub fn to_pem(&self) -> String {
        let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        self.certificates
            .iter()
            .map(|cert| pem::encode_config(&pem::Pem::new("CERTIFICATE", cert.der.clone()), config))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;

    // Test fixtures generated once with openssl; public certificates only.
    pub(crate) const CA_A: &str = include_str!("../tests/fixtures/ca-a.pem");
    pub(crate) const CA_B: &str = include_str!("../tests/fixtures/ca-b.pem");
    pub(crate) const LEAF: &str = include_str!("../tests/fixtures/leaf.pem");
    pub(crate) const EXPIRED_CA: &str = include_str!("../tests/fixtures/ca-expired.pem");
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

    #[test]
    fn accepts_one_and_two_cas_in_order() {
        let one = TrustBundle::from_pem(CA_A).unwrap();
        assert_eq!(one.len(), 1);
        let two = TrustBundle::from_pem(format!("{CA_A}{CA_B}")).unwrap();
        assert_eq!(two.len(), 2);
        assert!(two.certificates()[0].subject().contains("ca-a"));
        assert!(two.certificates()[1].subject().contains("ca-b"));
    }

    #[test]
    fn to_pem_round_trips() {
        let two = TrustBundle::from_pem(format!("{CA_A}{CA_B}")).unwrap();
        let again = TrustBundle::from_pem(two.to_pem()).unwrap();
        assert_eq!(two, again);
        assert_eq!(two.to_pem(), format!("{CA_A}{CA_B}"));
        assert!(!two.to_pem().contains('\r'));
    }

    #[test]
    fn refuses_garbage_empty_keys_and_leaves() {
        assert!(matches!(
            TrustBundle::from_pem("hello"),
            Err(BundleError::Empty) | Err(BundleError::ParsePem { .. })
        ));
        assert!(matches!(TrustBundle::from_pem(""), Err(BundleError::Empty)));
        let err = TrustBundle::from_pem(format!("{CA_A}{KEY}")).unwrap_err();
        assert!(
            matches!(err, BundleError::NotACertificate { index: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("PRIVATE KEY"));
        let err = TrustBundle::from_pem(LEAF).unwrap_err();
        assert!(matches!(err, BundleError::NotACa { index: 0, .. }), "{err}");
        assert!(err.to_string().contains("not a CA"));
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            TrustBundle::from_pem(bad),
            Err(BundleError::ParseCertificate { index: 0, .. })
        ));
    }

    #[test]
    fn deduplicates_keeping_first() {
        let bundle = TrustBundle::from_pem(format!("{CA_A}{CA_B}{CA_A}"))
            .unwrap()
            .deduplicated();
        assert_eq!(bundle.len(), 2);
        assert_eq!(bundle.to_pem(), format!("{CA_A}{CA_B}"));
    }

    #[test]
    fn drops_expired_and_refuses_all_expired() {
        let now = SystemTime::now();
        let bundle = TrustBundle::from_pem(format!("{EXPIRED_CA}{CA_A}"))
            .unwrap()
            .without_expired(now)
            .unwrap();
        assert_eq!(bundle.to_pem(), CA_A);
        let err = TrustBundle::from_pem(EXPIRED_CA)
            .unwrap()
            .without_expired(now)
            .unwrap_err();
        assert!(matches!(err, BundleError::AllExpired { count: 1 }));
        // Far in the future even the valid CA has expired.
        let later = now + Duration::from_secs(200 * 365 * 24 * 3600);
        assert!(
            TrustBundle::from_pem(CA_A)
                .unwrap()
                .without_expired(later)
                .is_err()
        );
    }

    #[test]
    fn normalized_combines_all_steps() {
        let bundle = TrustBundle::from_pem_normalized(
            format!("{CA_B}{EXPIRED_CA}{CA_B}{CA_A}"),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(bundle.to_pem(), format!("{CA_B}{CA_A}"));
    }
}

//! PKCS#10 certificate signing requests (RFC 2986, <https://www.rfc-editor.org/rfc/rfc2986>):
//! parsed, their self-signature verified, and inspected, so that a CA can sign a key it does
//! not hold ([`CertificateAuthority::sign_request`](crate::CertificateAuthority::sign_request)).
//!
//! This is what an issuer for cert-manager `CertificateRequest`s or Kubernetes
//! `CertificateSigningRequest`s (<https://kubernetes.io/docs/reference/access-authn-authz/certificate-signing-requests/>)
//! receives: the requester keeps its private key and sends the public key, the subject, the
//! subjectAltNames and optionally the extensions it wants (basicConstraints, keyUsage,
//! extendedKeyUsage). Other requested extensions are refused, as are requests whose signature
//! does not verify.

use std::{fmt, net::IpAddr};

use rcgen::{ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};
use x509_parser::{certification_request::X509CertificationRequest, prelude::FromDer as _};

use crate::{
    KeyAlgorithm,
    error::{NoPemBlockSnafu, ParseCertificateRequestSnafu, Result},
};

/// A key usage (X.509 keyUsage bit, RFC 5280 §4.2.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyUsage {
    /// digitalSignature
    DigitalSignature,
    /// contentCommitment (nonRepudiation)
    ContentCommitment,
    /// keyEncipherment
    KeyEncipherment,
    /// dataEncipherment
    DataEncipherment,
    /// keyAgreement
    KeyAgreement,
    /// keyCertSign
    KeyCertSign,
    /// cRLSign
    CrlSign,
    /// encipherOnly
    EncipherOnly,
    /// decipherOnly
    DecipherOnly,
}

/// An extended key usage (RFC 5280 §4.2.1.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ExtendedKeyUsage {
    /// anyExtendedKeyUsage
    Any,
    /// id-kp-serverAuth
    ServerAuth,
    /// id-kp-clientAuth
    ClientAuth,
    /// id-kp-codeSigning
    CodeSigning,
    /// id-kp-emailProtection
    EmailProtection,
    /// id-kp-timeStamping
    TimeStamping,
    /// id-kp-OCSPSigning
    OcspSigning,
}

impl KeyUsage {
    pub(crate) fn to_rcgen(self) -> KeyUsagePurpose {
        match self {
            KeyUsage::DigitalSignature => KeyUsagePurpose::DigitalSignature,
            KeyUsage::ContentCommitment => KeyUsagePurpose::ContentCommitment,
            KeyUsage::KeyEncipherment => KeyUsagePurpose::KeyEncipherment,
            KeyUsage::DataEncipherment => KeyUsagePurpose::DataEncipherment,
            KeyUsage::KeyAgreement => KeyUsagePurpose::KeyAgreement,
            KeyUsage::KeyCertSign => KeyUsagePurpose::KeyCertSign,
            KeyUsage::CrlSign => KeyUsagePurpose::CrlSign,
            KeyUsage::EncipherOnly => KeyUsagePurpose::EncipherOnly,
            KeyUsage::DecipherOnly => KeyUsagePurpose::DecipherOnly,
        }
    }

    fn from_rcgen(usage: &KeyUsagePurpose) -> Self {
        match usage {
            KeyUsagePurpose::DigitalSignature => KeyUsage::DigitalSignature,
            KeyUsagePurpose::ContentCommitment => KeyUsage::ContentCommitment,
            KeyUsagePurpose::KeyEncipherment => KeyUsage::KeyEncipherment,
            KeyUsagePurpose::DataEncipherment => KeyUsage::DataEncipherment,
            KeyUsagePurpose::KeyAgreement => KeyUsage::KeyAgreement,
            KeyUsagePurpose::KeyCertSign => KeyUsage::KeyCertSign,
            KeyUsagePurpose::CrlSign => KeyUsage::CrlSign,
            KeyUsagePurpose::EncipherOnly => KeyUsage::EncipherOnly,
            KeyUsagePurpose::DecipherOnly => KeyUsage::DecipherOnly,
        }
    }
}

impl ExtendedKeyUsage {
    pub(crate) fn to_rcgen(self) -> ExtendedKeyUsagePurpose {
        match self {
            ExtendedKeyUsage::Any => ExtendedKeyUsagePurpose::Any,
            ExtendedKeyUsage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
            ExtendedKeyUsage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
            ExtendedKeyUsage::TimeStamping => ExtendedKeyUsagePurpose::TimeStamping,
            ExtendedKeyUsage::OcspSigning => ExtendedKeyUsagePurpose::OcspSigning,
        }
    }

    fn from_rcgen(usage: &ExtendedKeyUsagePurpose) -> Option<Self> {
        Some(match usage {
            ExtendedKeyUsagePurpose::Any => ExtendedKeyUsage::Any,
            ExtendedKeyUsagePurpose::ServerAuth => ExtendedKeyUsage::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth => ExtendedKeyUsage::ClientAuth,
            ExtendedKeyUsagePurpose::CodeSigning => ExtendedKeyUsage::CodeSigning,
            ExtendedKeyUsagePurpose::EmailProtection => ExtendedKeyUsage::EmailProtection,
            ExtendedKeyUsagePurpose::TimeStamping => ExtendedKeyUsage::TimeStamping,
            ExtendedKeyUsagePurpose::OcspSigning => ExtendedKeyUsage::OcspSigning,
            ExtendedKeyUsagePurpose::Other(_) => return None,
        })
    }
}

/// What a certificate signing request asks for, as found by
/// [`CertificateSigningRequest::info`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CsrInfo {
    /// Subject in RFC 4514 form (empty when the request has no subject).
    pub subject: String,
    /// The subject's common names.
    pub common_names: Vec<String>,
    /// DNS subjectAltNames.
    pub dns_names: Vec<String>,
    /// IP address subjectAltNames.
    pub ip_addresses: Vec<IpAddr>,
    /// URI subjectAltNames.
    pub uris: Vec<String>,
    /// E-mail (rfc822Name) subjectAltNames.
    pub email_addresses: Vec<String>,
    /// The requested basicConstraints CA flag (`None`: the extension is not requested).
    pub requested_ca: Option<bool>,
    /// The requested keyUsage bits (empty: the extension is not requested).
    pub key_usages: Vec<KeyUsage>,
    /// The requested extendedKeyUsages (empty: the extension is not requested).
    pub extended_key_usages: Vec<ExtendedKeyUsage>,
    /// The algorithm of the requester's key, if it is one this crate supports.
    pub key_algorithm: Option<KeyAlgorithm>,
}

/// A PKCS#10 certificate signing request whose signature has been verified.
#[derive(Clone)]
pub struct CertificateSigningRequest {
    der: Vec<u8>,
    pub(crate) params: rcgen::CertificateSigningRequestParams,
    info: CsrInfo,
}

impl fmt::Debug for CertificateSigningRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateSigningRequest")
            .field("subject", &self.info.subject)
            .field("dns_names", &self.info.dns_names)
            .field("requested_ca", &self.info.requested_ca)
            .finish()
    }
}

/// The PEM labels of a certificate signing request (Go and OpenSSL write the first; the second
/// is the older Netscape form some tools still write).
const CSR_LABELS: [&str; 2] = ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"];

impl CertificateSigningRequest {
    /// Parses the one `CERTIFICATE REQUEST` block of a PEM document; other blocks, several
    /// requests or none are refused.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let blocks = crate::parse_pem(pem, "certificate signing request")?;
        let mut requests = blocks.iter().filter(|b| CSR_LABELS.contains(&b.tag()));
        let (Some(block), None) = (requests.next(), requests.next()) else {
            return match blocks.len() {
                0 => NoPemBlockSnafu {
                    expected: CSR_LABELS[0],
                }
                .fail(),
                _ => ParseCertificateRequestSnafu {
                    reason: "the PEM input must hold exactly one CERTIFICATE REQUEST block",
                }
                .fail(),
            };
        };
        if blocks.len() != 1 {
            return ParseCertificateRequestSnafu {
                reason: "the PEM input holds other blocks besides the CERTIFICATE REQUEST",
            }
            .fail();
        }
        Self::from_der(block.contents())
    }

    /// Parses a DER request and verifies its signature. Trailing bytes are refused.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let fail = |reason: String| ParseCertificateRequestSnafu { reason }.build();
        let (rest, parsed) =
            X509CertificationRequest::from_der(der).map_err(|e| fail(e.to_string()))?;
        if !rest.is_empty() {
            return Err(fail(format!(
                "{} trailing bytes after the request",
                rest.len()
            )));
        }
        let subject = parsed.certification_request_info.subject.to_string();
        let common_names = parsed
            .certification_request_info
            .subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect();
        let key_algorithm = key_algorithm(&parsed);
        let params =
            rcgen::CertificateSigningRequestParams::from_der(&der.into()).map_err(|e| {
                fail(match e {
                    rcgen::Error::InvalidCertificationRequestSignature => {
                        "the request's signature does not verify".to_string()
                    }
                    rcgen::Error::UnsupportedExtension => {
                        "the request asks for an extension other than subjectAltName, \
                         basicConstraints, keyUsage and extendedKeyUsage, or for an \
                         unsupported extendedKeyUsage"
                            .to_string()
                    }
                    other => other.to_string(),
                })
            })?;

        let mut info = CsrInfo {
            subject,
            common_names,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            email_addresses: Vec::new(),
            requested_ca: match params.params.is_ca {
                IsCa::Ca(_) => Some(true),
                IsCa::ExplicitNoCa => Some(false),
                IsCa::NoCa => None,
            },
            key_usages: params
                .params
                .key_usages
                .iter()
                .map(KeyUsage::from_rcgen)
                .collect(),
            extended_key_usages: Vec::new(),
            key_algorithm,
        };
        for usage in &params.params.extended_key_usages {
            let Some(usage) = ExtendedKeyUsage::from_rcgen(usage) else {
                return Err(fail(
                    "the request asks for an unsupported extendedKeyUsage".into(),
                ));
            };
            info.extended_key_usages.push(usage);
        }
        info.key_usages.sort();
        info.key_usages.dedup();
        info.extended_key_usages.sort();
        info.extended_key_usages.dedup();
        for name in &params.params.subject_alt_names {
            match name {
                SanType::DnsName(n) => info.dns_names.push(n.as_str().to_string()),
                SanType::IpAddress(ip) => info.ip_addresses.push(*ip),
                SanType::URI(u) => info.uris.push(u.as_str().to_string()),
                SanType::Rfc822Name(e) => info.email_addresses.push(e.as_str().to_string()),
                _ => {
                    return Err(fail(
                        "the request asks for an otherName subjectAltName, which is not supported"
                            .into(),
                    ));
                }
            }
        }
        Ok(CertificateSigningRequest {
            der: der.to_vec(),
            params,
            info,
        })
    }

    /// What the request asks for.
    pub fn info(&self) -> &CsrInfo {
        &self.info
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

fn key_algorithm(csr: &X509CertificationRequest<'_>) -> Option<KeyAlgorithm> {
    use x509_parser::public_key::PublicKey as X509PublicKey;
    let spki = &csr.certification_request_info.subject_pki;
    match spki.parsed() {
        Ok(X509PublicKey::EC(point)) => match point.key_size() {
            256 => Some(KeyAlgorithm::EcdsaP256),
            384 => Some(KeyAlgorithm::EcdsaP384),
            _ => None,
        },
        Ok(X509PublicKey::RSA(rsa)) => match rsa.key_size() {
            2048 => Some(KeyAlgorithm::Rsa2048),
            3072 => Some(KeyAlgorithm::Rsa3072),
            4096 => Some(KeyAlgorithm::Rsa4096),
            _ => None,
        },
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            Some(KeyAlgorithm::Ed25519)
        }
        _ => None,
    }
}

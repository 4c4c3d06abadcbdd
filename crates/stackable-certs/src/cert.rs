//! X.509 certificates: loading, serialising and inspecting them.
//!
//! Inspection uses x509-parser; [`Certificate::is_issued_by`] checks the issuer name *and*
//! the signature (x509-parser's `verify-aws` feature, backed by aws-lc-rs). See RFC 5280
//! (<https://www.rfc-editor.org/rfc/rfc5280>) and the Kubernetes notes on webhook TLS
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>).

use std::{fmt, net::IpAddr};

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::{
    certificate::X509Certificate, extensions::GeneralName, prelude::FromDer,
    public_key::PublicKey as X509PublicKey,
};

use crate::{
    KeyAlgorithm, PrivateKey,
    error::{NoPemBlockSnafu, ParseCertificateSnafu, Result, UnexpectedPemBlockSnafu},
};

/// An X.509 certificate in DER form, validated on construction.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    info: CertificateInfo,
}

/// What a certificate says, as found by [`Certificate::info`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// Subject in RFC 4514 form (for example `CN=admin, O=system:masters`).
    pub subject: String,
    /// Issuer in RFC 4514 form.
    pub issuer: String,
    /// The subject's common names.
    pub common_names: Vec<String>,
    /// The subject's organisations.
    pub organizations: Vec<String>,
    /// Serial number (big-endian bytes as encoded).
    pub serial: Vec<u8>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// DNS subjectAltNames.
    pub dns_names: Vec<String>,
    /// IP address subjectAltNames.
    pub ip_addresses: Vec<IpAddr>,
    /// basicConstraints CA flag.
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint.
    pub path_len: Option<u32>,
    /// keyUsage keyCertSign (true if keyUsage is absent, as RFC 5280 allows).
    pub key_cert_sign: bool,
    /// extendedKeyUsage serverAuth (true if the EKU extension is absent).
    pub server_auth: bool,
    /// extendedKeyUsage clientAuth (true if the EKU extension is absent).
    pub client_auth: bool,
    /// The key algorithm, if it is one this crate supports.
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Subject key identifier.
    pub subject_key_id: Option<Vec<u8>>,
    /// Authority key identifier (key id part).
    pub authority_key_id: Option<Vec<u8>>,
    /// SHA-256 over the DER encoding.
    pub sha256_fingerprint: [u8; 32],
}

impl CertificateInfo {
    /// The serial number as lower-case hex.
    pub fn serial_hex(&self) -> String {
        hex(&self.serial)
    }

    /// The SHA-256 fingerprint as lower-case hex without separators.
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.sha256_fingerprint)
    }

    /// Whether the certificate is valid at `now`.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Total lifetime (notAfter - notBefore).
    pub fn lifetime(&self) -> time::Duration {
        self.not_after - self.not_before
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.info.subject)
            .field("serial", &self.info.serial_hex())
            .field("not_after", &self.info.not_after)
            .field("sha256", &self.info.fingerprint_hex())
            .finish()
    }
}

const CERT_LABEL: &str = "CERTIFICATE";

impl Certificate {
    /// Parses a DER certificate. Trailing bytes are rejected.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let info = inspect(der)?;
        Ok(Certificate {
            der: der.to_vec(),
            info,
        })
    }

    /// Parses the first `CERTIFICATE` block of a PEM document.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let mut all = Self::all_from_pem(pem)?;
        Ok(all.remove(0))
    }

    /// Parses every `CERTIFICATE` block of a PEM document (at least one is required; any
    /// other kind of block is an error).
    pub fn all_from_pem(pem: &str) -> Result<Vec<Self>> {
        let blocks = crate::parse_pem(pem, "certificate")?;
        let mut certs = Vec::with_capacity(blocks.len());
        for block in blocks {
            if block.tag() != CERT_LABEL {
                return UnexpectedPemBlockSnafu {
                    tag: block.tag().to_string(),
                    expected: CERT_LABEL,
                }
                .fail();
            }
            certs.push(Self::from_der(block.contents())?);
        }
        if certs.is_empty() {
            return NoPemBlockSnafu {
                expected: CERT_LABEL,
            }
            .fail();
        }
        Ok(certs)
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM encoding (one `CERTIFICATE` block, LF line endings as Kubernetes and Go
    /// write them).
    pub fn to_pem(&self) -> String {
        crate::encode_pem(CERT_LABEL, self.der.clone())
    }

    /// The certificate in the form rustls takes.
    pub fn to_rustls(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.der.clone())
    }

    /// What the certificate says.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// Whether `issuer` issued this certificate: the issuer name matches the issuer's subject
    /// and the signature verifies with the issuer's public key.
    pub fn is_issued_by(&self, issuer: &Certificate) -> bool {
        let (Ok((_, this)), Ok((_, other))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        this.issuer().as_raw() == other.subject().as_raw()
            && this.verify_signature(Some(other.public_key())).is_ok()
    }

    /// Whether the certificate is self-signed (and the signature verifies).
    pub fn is_self_signed(&self) -> bool {
        self.is_issued_by(self)
    }

    /// Whether `key` is the private key for this certificate's public key.
    pub fn matches_key(&self, key: &PrivateKey) -> bool {
        let Ok((_, this)) = X509Certificate::from_der(&self.der) else {
            return false;
        };
        match key.public_key_raw() {
            Ok(raw) => this.public_key().subject_public_key.data.as_ref() == raw.as_slice(),
            Err(_) => false,
        }
    }
}

fn to_time(t: x509_parser::time::ASN1Time) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| {
        ParseCertificateSnafu {
            reason: format!("time out of range: {e}"),
        }
        .build()
    })
}

fn inspect(der: &[u8]) -> Result<CertificateInfo> {
    let fail = |reason: String| ParseCertificateSnafu { reason }.build();
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| fail(e.to_string()))?;
    if !rest.is_empty() {
        return Err(fail(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }

    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| fail(format!("subjectAltName: {e}")))?
    {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_string()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        ip_addresses.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }

    let basic = cert
        .basic_constraints()
        .map_err(|e| fail(format!("basicConstraints: {e}")))?;
    let (is_ca, path_len) = basic
        .map(|b| (b.value.ca, b.value.path_len_constraint))
        .unwrap_or((false, None));
    let key_cert_sign = cert
        .key_usage()
        .map_err(|e| fail(format!("keyUsage: {e}")))?
        .is_none_or(|ku| ku.value.key_cert_sign());
    let eku = cert
        .extended_key_usage()
        .map_err(|e| fail(format!("extendedKeyUsage: {e}")))?;
    let (server_auth, client_auth) = eku
        .map(|e| {
            (
                e.value.any || e.value.server_auth,
                e.value.any || e.value.client_auth,
            )
        })
        .unwrap_or((true, true));

    let mut subject_key_id = None;
    let mut authority_key_id = None;
    for ext in cert.iter_extensions() {
        match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                subject_key_id = Some(id.0.to_vec());
            }
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }

    let spki = cert.public_key();
    let key_algorithm = match spki.parsed() {
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
    };

    let strings =
        |iter: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
            iter.filter_map(|a| a.as_str().ok().map(str::to_string))
                .collect::<Vec<_>>()
        };

    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut sha256_fingerprint = [0u8; 32];
    sha256_fingerprint.copy_from_slice(digest.as_ref());

    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        common_names: strings(&mut cert.subject().iter_common_name()),
        organizations: strings(&mut cert.subject().iter_organization()),
        serial: cert.raw_serial().to_vec(),
        not_before: to_time(cert.validity().not_before)?,
        not_after: to_time(cert.validity().not_after)?,
        dns_names,
        ip_addresses,
        is_ca,
        path_len,
        key_cert_sign,
        server_auth,
        client_auth,
        key_algorithm,
        subject_key_id,
        authority_key_id,
        sha256_fingerprint,
    })
}

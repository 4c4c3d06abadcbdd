//! A self-signed certificate authority that issues leaf certificates.
//!
//! The CA certificate carries basicConstraints `CA:TRUE, pathlen:0`, keyUsage
//! `keyCertSign, cRLSign`, subject and authority key identifiers and a random positive
//! 20-byte serial (RFC 5280 §4.1.2.2, <https://www.rfc-editor.org/rfc/rfc5280#section-4.1.2.2>).
//! notBefore is backdated by [`CLOCK_SKEW_BACKDATE`] so that API servers whose clocks lag a
//! little accept fresh certificates.

use std::{net::IpAddr, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use snafu::{ResultExt as _, ensure};
use time::OffsetDateTime;

use crate::{
    Certificate, KeyAlgorithm, LeafOptions, PrivateKey,
    error::{
        CaCannotSignSnafu, CaExpiredSnafu, InvalidDnsNameSnafu, InvalidOptionsSnafu,
        KeyMismatchSnafu, NotACaSnafu, Result, SignCertificateSnafu,
    },
};

/// Default CA validity: 365 days.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Default CA common name.
pub const DEFAULT_CA_COMMON_NAME: &str = "Stackable webhook CA";

/// The longest validity accepted (100 years); X.509 times end at year 9999.
pub const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// How far notBefore is set into the past, for clock skew between cluster nodes.
pub const CLOCK_SKEW_BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Options for a new CA.
///
/// Defaults: common name [`DEFAULT_CA_COMMON_NAME`], no organisation, validity
/// [`DEFAULT_CA_VALIDITY`] (365 days), key algorithm [`KeyAlgorithm::EcdsaP256`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaOptions {
    /// Subject common name.
    pub common_name: String,
    /// Subject organisation, if any.
    pub organization: Option<String>,
    /// Validity from now (notBefore is additionally backdated by [`CLOCK_SKEW_BACKDATE`]).
    pub validity: Duration,
    /// Key algorithm of the CA key.
    pub key_algorithm: KeyAlgorithm,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions {
            common_name: DEFAULT_CA_COMMON_NAME.to_string(),
            organization: None,
            validity: DEFAULT_CA_VALIDITY,
            key_algorithm: KeyAlgorithm::default(),
        }
    }
}

impl CaOptions {
    /// Defaults with the given common name.
    pub fn new(common_name: impl Into<String>) -> Self {
        CaOptions {
            common_name: common_name.into(),
            ..Default::default()
        }
    }

    /// Sets the validity.
    pub fn validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Sets the key algorithm.
    pub fn key_algorithm(mut self, algorithm: KeyAlgorithm) -> Self {
        self.key_algorithm = algorithm;
        self
    }

    /// Sets the organisation.
    pub fn organization(mut self, organization: impl Into<String>) -> Self {
        self.organization = Some(organization.into());
        self
    }
}

/// A leaf certificate, its key and the CA certificate(s) that issued it.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    /// The leaf certificate.
    pub certificate: Certificate,
    /// The leaf's private key.
    pub key: PrivateKey,
    /// The issuing CA certificate(s), nearest first.
    pub chain: Vec<Certificate>,
}

/// A CA certificate and its private key.
#[derive(Clone, Debug)]
pub struct CertificateAuthority {
    certificate: Certificate,
    key: PrivateKey,
}

pub(crate) fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 20];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| {
        InvalidOptionsSnafu {
            reason: "the system random number generator failed",
        }
        .build()
    })?;
    // Positive (top bit clear) and exactly 20 bytes in DER (second-highest bit set).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn to_time_duration(d: Duration) -> Result<time::Duration> {
    ensure!(
        d <= MAX_VALIDITY,
        InvalidOptionsSnafu {
            reason: format!("duration {d:?} is longer than the maximum of 100 years"),
        }
    );
    time::Duration::try_from(d).map_err(|_| {
        InvalidOptionsSnafu {
            reason: format!("duration {d:?} is out of range"),
        }
        .build()
    })
}

pub(crate) fn add(now: OffsetDateTime, d: Duration) -> Result<OffsetDateTime> {
    now.checked_add(to_time_duration(d)?).ok_or_else(|| {
        InvalidOptionsSnafu {
            reason: format!("{now} + {d:?} is out of range"),
        }
        .build()
    })
}

pub(crate) fn sub(now: OffsetDateTime, d: Duration) -> Result<OffsetDateTime> {
    now.checked_sub(to_time_duration(d)?).ok_or_else(|| {
        InvalidOptionsSnafu {
            reason: format!("{now} - {d:?} is out of range"),
        }
        .build()
    })
}

/// RFC 1123 host names, optionally with a leading `*.` wildcard label.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && name.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Truncates to whole seconds, as X.509 times carry no fractions.
pub(crate) fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

impl CertificateAuthority {
    /// Creates a self-signed CA valid from now.
    pub fn new(options: &CaOptions) -> Result<Self> {
        Self::new_at(options, OffsetDateTime::now_utc())
    }

    /// Creates a self-signed CA as if the time were `now` (for tests and the rotation state
    /// machine, which runs on an injected clock).
    pub fn new_at(options: &CaOptions, now: OffsetDateTime) -> Result<Self> {
        ensure!(
            !options.common_name.trim().is_empty(),
            InvalidOptionsSnafu {
                reason: "the CA common name must not be empty"
            }
        );
        ensure!(
            options.validity > Duration::ZERO,
            InvalidOptionsSnafu {
                reason: "the CA validity must be positive"
            }
        );
        let key = PrivateKey::generate(options.key_algorithm)?;
        let key_pair = key.key_pair()?;

        let now = whole_seconds(now);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, options.common_name.as_str());
        if let Some(o) = &options.organization {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        params.distinguished_name = dn;
        params.not_before = sub(now, CLOCK_SKEW_BACKDATE)?;
        params.not_after = add(now, options.validity)?;
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;

        let cert = params
            .self_signed(&key_pair)
            .context(SignCertificateSnafu {
                subject: options.common_name.clone(),
            })?;
        let certificate = Certificate::from_der(cert.der())?;
        tracing::debug!(
            subject = %certificate.info().subject,
            serial = %certificate.info().serial_hex(),
            not_after = %certificate.info().not_after,
            key_algorithm = %options.key_algorithm,
            "created self-signed CA"
        );
        Ok(CertificateAuthority { certificate, key })
    }

    /// Reassembles a CA from its certificate and key; fails when the certificate is not a CA
    /// that may sign certificates or the key does not belong to it.
    pub fn from_parts(certificate: Certificate, key: PrivateKey) -> Result<Self> {
        let info = certificate.info();
        ensure!(
            info.is_ca,
            NotACaSnafu {
                subject: info.subject.clone(),
                serial: info.serial_hex(),
            }
        );
        ensure!(
            info.key_cert_sign,
            CaCannotSignSnafu {
                subject: info.subject.clone()
            }
        );
        ensure!(
            certificate.matches_key(&key),
            KeyMismatchSnafu {
                subject: info.subject.clone()
            }
        );
        Ok(CertificateAuthority { certificate, key })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The CA private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// Issues a leaf certificate valid from now.
    pub fn issue(&self, options: &LeafOptions) -> Result<IssuedCertificate> {
        self.issue_at(options, OffsetDateTime::now_utc())
    }

    /// Issues a leaf certificate as if the time were `now`. The validity is clamped to the
    /// CA's notAfter; issuing from a CA that is not valid at `now` fails.
    pub fn issue_at(
        &self,
        options: &LeafOptions,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate> {
        let now = whole_seconds(now);
        let ca_info = self.certificate.info();
        ensure!(
            ca_info.not_after > now,
            CaExpiredSnafu {
                subject: ca_info.subject.clone(),
                not_after: ca_info.not_after,
                at: now,
            }
        );
        let dns_names = options.dns_names();
        let ips: &[IpAddr] = options.ip_addresses();
        let common_name = options
            .get_common_name()
            .map(str::to_string)
            .or_else(|| dns_names.first().filter(|n| n.len() <= 64).cloned())
            .or_else(|| ips.first().map(|ip| ip.to_string()));
        let Some(common_name) = common_name else {
            return InvalidOptionsSnafu {
                reason: "a leaf certificate needs a DNS name, an IP address or a common name",
            }
            .fail();
        };
        ensure!(
            options.get_validity() > Duration::ZERO,
            InvalidOptionsSnafu {
                reason: "the leaf validity must be positive"
            }
        );

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name.as_str());
        for o in options.organizations() {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        params.distinguished_name = dn;
        for name in &dns_names {
            ensure!(
                valid_dns_name(name),
                InvalidOptionsSnafu {
                    reason: format!(
                        "{name:?} is not a valid DNS name (letters, digits, '-', dot-separated labels of 1-63 characters, optional leading '*.')"
                    ),
                }
            );
            let ia5 = name
                .clone()
                .try_into()
                .context(InvalidDnsNameSnafu { name: name.clone() })?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let not_before = sub(now, CLOCK_SKEW_BACKDATE)?;
        params.not_before = not_before.max(ca_info.not_before);
        params.not_after = add(now, options.get_validity())?.min(ca_info.not_after);
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = if options.get_key_algorithm().is_rsa() {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        } else {
            vec![KeyUsagePurpose::DigitalSignature]
        };
        if options.wants_server_auth() {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if options.wants_client_auth() {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;

        let key = PrivateKey::generate(options.get_key_algorithm())?;
        let key_pair = key.key_pair()?;
        let ca_key_pair = self.key.key_pair()?;
        let issuer = Issuer::from_ca_cert_der(&self.certificate.to_rustls(), &ca_key_pair)
            .context(SignCertificateSnafu {
                subject: ca_info.subject.clone(),
            })?;
        let cert = params
            .signed_by(&key_pair, &issuer)
            .context(SignCertificateSnafu {
                subject: common_name.clone(),
            })?;
        let certificate = Certificate::from_der(cert.der())?;
        tracing::debug!(
            subject = %certificate.info().subject,
            serial = %certificate.info().serial_hex(),
            issuer = %ca_info.subject,
            not_after = %certificate.info().not_after,
            "issued leaf certificate"
        );
        Ok(IssuedCertificate {
            certificate,
            key,
            chain: vec![self.certificate.clone()],
        })
    }
}

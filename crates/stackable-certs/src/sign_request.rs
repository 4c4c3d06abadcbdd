//! Signing a certificate signing request: [`SigningOptions`] and
//! [`CertificateAuthority::sign_request`], for issuers of requests made elsewhere (cert-manager
//! `CertificateRequest`s, Kubernetes `CertificateSigningRequest`s). The certificate gets the
//! request's subject, subjectAltNames and public key; the CA decides validity, CA flag and
//! usages, and refuses a request whose extensions ask for something else (as cert-manager's
//! `pki.CertificateTemplateValidateAndOverride*` do).

use std::time::Duration;

use rcgen::{BasicConstraints, IsCa, Issuer};
use snafu::{ResultExt as _, ensure};
use time::OffsetDateTime;

use crate::{
    Certificate, CertificateAuthority,
    ca::{CLOCK_SKEW_BACKDATE, add, random_serial, sub, whole_seconds},
    error::{CaExpiredSnafu, InvalidOptionsSnafu, Result, SignCertificateSnafu},
};

/// What a certificate signed from a request ([`CertificateAuthority::sign_request`]) carries
/// beyond the request's subject, subjectAltNames and public key.
///
/// Defaults: validity 90 days (cert-manager's default duration), not a CA, keyUsage
/// `digitalSignature, keyEncipherment`, no extendedKeyUsage (cert-manager's default usages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningOptions {
    /// Validity from now (clamped to the CA's notAfter; notBefore is backdated by
    /// [`CLOCK_SKEW_BACKDATE`]).
    pub validity: Duration,
    /// basicConstraints CA flag of the new certificate.
    pub is_ca: bool,
    /// keyUsage bits of the new certificate.
    pub key_usages: Vec<crate::KeyUsage>,
    /// extendedKeyUsages of the new certificate.
    pub extended_key_usages: Vec<crate::ExtendedKeyUsage>,
}

impl Default for SigningOptions {
    fn default() -> Self {
        SigningOptions {
            validity: Duration::from_secs(90 * 24 * 60 * 60),
            is_ca: false,
            key_usages: vec![
                crate::KeyUsage::DigitalSignature,
                crate::KeyUsage::KeyEncipherment,
            ],
            extended_key_usages: Vec::new(),
        }
    }
}

fn sorted<T: Ord + Clone>(items: &[T]) -> Vec<T> {
    let mut items = items.to_vec();
    items.sort();
    items.dedup();
    items
}

impl CertificateAuthority {
    /// Signs a verified certificate signing request valid from now: see
    /// [`Self::sign_request_at`].
    pub fn sign_request(
        &self,
        request: &crate::CertificateSigningRequest,
        options: &SigningOptions,
    ) -> Result<Certificate> {
        self.sign_request_at(request, options, OffsetDateTime::now_utc())
    }

    /// Signs a verified certificate signing request as if the time were `now`.
    ///
    /// The certificate gets the request's subject, subjectAltNames and public key, and the
    /// validity, CA flag and usages of `options`. As cert-manager does
    /// (`pki.CertificateTemplateValidateAndOverride*`), an extension the request asks for must
    /// agree with `options`: a request for `CA:TRUE` when `options.is_ca` is false (or the
    /// reverse), or for other keyUsage / extendedKeyUsage sets, is refused
    /// ([`Error::CertificateRequestMismatch`](crate::Error::CertificateRequestMismatch)). A CA
    /// certificate is refused when this CA's pathLenConstraint is 0 (no verifier would accept
    /// what it signs). The validity is clamped to the CA's notAfter; a CA that is not valid at
    /// `now` signs nothing.
    pub fn sign_request_at(
        &self,
        request: &crate::CertificateSigningRequest,
        options: &SigningOptions,
        now: OffsetDateTime,
    ) -> Result<Certificate> {
        use crate::error::CertificateRequestMismatchSnafu as Mismatch;
        let now = whole_seconds(now);
        let ca_info = self.certificate().info();
        ensure!(
            ca_info.not_after > now,
            CaExpiredSnafu {
                subject: ca_info.subject.clone(),
                not_after: ca_info.not_after,
                at: now,
            }
        );
        ensure!(
            options.validity > Duration::ZERO,
            InvalidOptionsSnafu {
                reason: "the certificate validity must be positive"
            }
        );
        let asked = request.info();
        if let Some(requested_ca) = asked.requested_ca {
            ensure!(
                requested_ca == options.is_ca,
                Mismatch {
                    reason: format!(
                        "the request asks for basicConstraints CA:{} but the certificate may only \
                         be issued with CA:{}",
                        upper(requested_ca),
                        upper(options.is_ca)
                    ),
                }
            );
        }
        let key_usages = sorted(&options.key_usages);
        if !asked.key_usages.is_empty() {
            ensure!(
                asked.key_usages == key_usages,
                Mismatch {
                    reason: format!(
                        "the request asks for keyUsage {:?} but the certificate may only be \
                         issued with {key_usages:?}",
                        asked.key_usages
                    ),
                }
            );
        }
        let extended_key_usages = sorted(&options.extended_key_usages);
        if !asked.extended_key_usages.is_empty() {
            ensure!(
                asked.extended_key_usages == extended_key_usages,
                Mismatch {
                    reason: format!(
                        "the request asks for extendedKeyUsage {:?} but the certificate may \
                         only be issued with {extended_key_usages:?}",
                        asked.extended_key_usages
                    ),
                }
            );
        }
        if options.is_ca {
            ensure!(
                ca_info.path_len != Some(0),
                Mismatch {
                    reason: format!(
                        "the issuing CA {:?} has pathLenConstraint 0 and cannot issue CA \
                         certificates",
                        ca_info.subject
                    ),
                }
            );
        }

        let mut params = request.params.params.clone();
        let not_before = sub(now, CLOCK_SKEW_BACKDATE)?;
        params.not_before = not_before.max(ca_info.not_before);
        params.not_after = add(now, options.validity)?.min(ca_info.not_after);
        params.serial_number = Some(random_serial()?);
        params.is_ca = if options.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = key_usages.iter().map(|u| u.to_rcgen()).collect();
        params.extended_key_usages = extended_key_usages.iter().map(|u| u.to_rcgen()).collect();
        params.use_authority_key_identifier_extension = true;
        let csr_params = rcgen::CertificateSigningRequestParams {
            params,
            public_key: request.params.public_key.clone(),
        };

        let ca_key_pair = self.key().key_pair()?;
        let issuer = Issuer::from_ca_cert_der(&self.certificate().to_rustls(), &ca_key_pair)
            .context(SignCertificateSnafu {
                subject: ca_info.subject.clone(),
            })?;
        let cert = csr_params
            .signed_by(&issuer)
            .context(SignCertificateSnafu {
                subject: asked.subject.clone(),
            })?;
        let certificate = Certificate::from_der(cert.der())?;
        tracing::debug!(
            subject = %certificate.info().subject,
            serial = %certificate.info().serial_hex(),
            issuer = %ca_info.subject,
            not_after = %certificate.info().not_after,
            is_ca = options.is_ca,
            "signed a certificate signing request"
        );
        Ok(certificate)
    }
}

fn upper(flag: bool) -> &'static str {
    if flag { "TRUE" } else { "FALSE" }
}

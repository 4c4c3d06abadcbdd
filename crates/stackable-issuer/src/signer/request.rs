//! The request `sign` is given: [`SigningRequest`], a cert-manager `CertificateRequest` or a
//! Kubernetes `CertificateSigningRequest`, and what it asks for in one shape:
//! [`CertificateDetails`] (issuer-lib's `CertificateRequestObject.GetCertificateDetails`).

use std::time::Duration;

use k8s_openapi::{
    api::certificates::v1::CertificateSigningRequest as KubeCsr,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use stackable_certs::{CertificateSigningRequest, ExtendedKeyUsage, KeyUsage, SigningOptions};

use super::{
    SignerError, go_duration,
    usages::{self, Usage},
};
use crate::api::CertificateRequest;

/// cert-manager's default certificate duration: 90 days.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// The annotation of a Kubernetes CSR that asks for a CA certificate (cert-manager's
/// experimental API).
pub const CSR_IS_CA_ANNOTATION: &str = "experimental.cert-manager.io/request-is-ca";

/// The annotation of a Kubernetes CSR that asks for a duration as a Go duration (it wins over
/// `spec.expirationSeconds`, as in cert-manager).
pub const CSR_DURATION_ANNOTATION: &str = "experimental.cert-manager.io/request-duration";

/// The request being signed.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum SigningRequest<'a> {
    /// A cert-manager `CertificateRequest`.
    CertificateRequest(&'a CertificateRequest),
    /// A Kubernetes `CertificateSigningRequest`.
    CertificateSigningRequest(&'a KubeCsr),
}

/// What a request asks for, with cert-manager's defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateDetails {
    /// The PEM-encoded PKCS#10 request (unparsed; see [`Self::parse_csr`]).
    pub csr_pem: Vec<u8>,
    /// The requested validity ([`DEFAULT_DURATION`] when none is given).
    pub duration: Duration,
    /// Whether [`Self::duration`] is the default because the request names none (an issuer
    /// may then shorten it to its own limit instead of refusing).
    pub duration_is_default: bool,
    /// Whether a CA certificate is requested.
    pub is_ca: bool,
    /// The requested keyUsage bits (sorted; `keyCertSign` added for a cert-manager CA
    /// request, as cert-manager does).
    pub key_usages: Vec<KeyUsage>,
    /// The requested extendedKeyUsages (sorted).
    pub extended_key_usages: Vec<ExtendedKeyUsage>,
}

impl<'a> SigningRequest<'a> {
    /// The request's metadata (name, namespace, labels, annotations, creationTimestamp).
    pub fn metadata(&self) -> &'a ObjectMeta {
        match self {
            SigningRequest::CertificateRequest(cr) => &cr.metadata,
            SigningRequest::CertificateSigningRequest(csr) => &csr.metadata,
        }
    }

    /// The PEM-encoded PKCS#10 request.
    pub fn csr_pem(&self) -> &'a [u8] {
        match self {
            SigningRequest::CertificateRequest(cr) => &cr.spec.request.0,
            SigningRequest::CertificateSigningRequest(csr) => &csr.spec.request.0,
        }
    }

    /// What the request asks for. A duration or usage that cannot be read is a
    /// [permanent](SignerError::permanent) error: retrying does not fix a request.
    pub fn details(&self) -> Result<CertificateDetails, SignerError> {
        let (duration, is_ca, names, ca_adds_cert_sign) = match self {
            SigningRequest::CertificateRequest(cr) => {
                let duration = match &cr.spec.duration {
                    Some(text) => Some(
                        go_duration::parse(text)
                            .map_err(|e| SignerError::permanent(format!("spec.duration: {e}")))?,
                    ),
                    None => None,
                };
                (duration, cr.spec.is_ca, cr.spec.usages.clone(), true)
            }
            SigningRequest::CertificateSigningRequest(csr) => {
                let annotations = csr.metadata.annotations.as_ref();
                let annotation = |key: &str| annotations.and_then(|a| a.get(key));
                let duration = match (
                    annotation(CSR_DURATION_ANNOTATION),
                    csr.spec.expiration_seconds,
                ) {
                    (Some(text), _) => Some(go_duration::parse(text).map_err(|e| {
                        SignerError::permanent(format!("annotation {CSR_DURATION_ANNOTATION}: {e}"))
                    })?),
                    (None, Some(seconds)) => {
                        Some(Duration::from_secs(u64::try_from(seconds).map_err(
                            |_| SignerError::permanent("spec.expirationSeconds is negative"),
                        )?))
                    }
                    (None, None) => None,
                };
                let is_ca = annotation(CSR_IS_CA_ANNOTATION).is_some_and(|v| v == "true");
                (
                    duration,
                    is_ca,
                    csr.spec.usages.clone().unwrap_or_default(),
                    false,
                )
            }
        };
        let names = if names.is_empty() {
            usages::DEFAULT.iter().map(|s| s.to_string()).collect()
        } else {
            names
        };
        let mut key_usages = Vec::new();
        let mut extended_key_usages = Vec::new();
        let mut unknown = Vec::new();
        let mut unsupported = Vec::new();
        if is_ca && ca_adds_cert_sign {
            key_usages.push(KeyUsage::KeyCertSign);
        }
        for name in &names {
            match usages::parse(name) {
                Ok(Some(Usage::Key(usage))) => key_usages.push(usage),
                Ok(Some(Usage::Extended(usage))) => extended_key_usages.push(usage),
                Ok(None) => unsupported.push(name.as_str()),
                Err(()) => unknown.push(name.as_str()),
            }
        }
        if !unknown.is_empty() {
            return Err(SignerError::permanent(format!(
                "unknown key usages: {unknown:?}"
            )));
        }
        if !unsupported.is_empty() {
            return Err(SignerError::permanent(format!(
                "key usages not supported by this issuer: {unsupported:?}"
            )));
        }
        key_usages.sort();
        key_usages.dedup();
        extended_key_usages.sort();
        extended_key_usages.dedup();
        Ok(CertificateDetails {
            csr_pem: self.csr_pem().to_vec(),
            duration: duration.unwrap_or(DEFAULT_DURATION),
            duration_is_default: duration.is_none(),
            is_ca,
            key_usages,
            extended_key_usages,
        })
    }
}

impl CertificateDetails {
    /// Parses the PKCS#10 request and verifies its signature; a request that does not parse
    /// or verify is a [permanent](SignerError::permanent) error.
    pub fn parse_csr(&self) -> Result<CertificateSigningRequest, SignerError> {
        CertificateSigningRequest::from_pem(&self.csr_pem)
            .map_err(|e| SignerError::permanent(format!("the request's CSR is unusable: {e}")))
    }

    /// The options for [`CertificateAuthority::sign_request`](stackable_certs::CertificateAuthority::sign_request):
    /// this duration, CA flag and these usages.
    pub fn signing_options(&self) -> SigningOptions {
        SigningOptions {
            validity: self.duration,
            is_ca: self.is_ca,
            key_usages: self.key_usages.clone(),
            extended_key_usages: self.extended_key_usages.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::ErrorKind;

    fn cr(spec: serde_json::Value) -> CertificateRequest {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "a"}, "spec": spec}))
            .unwrap_or_default()
    }

    #[test]
    fn certificate_request_defaults_and_ca_usages() -> Result<(), SignerError> {
        let plain = cr(serde_json::json!({"request": "LS0t"}));
        let details = SigningRequest::CertificateRequest(&plain).details()?;
        assert_eq!(details.duration, DEFAULT_DURATION);
        assert!(details.duration_is_default);
        assert!(!details.is_ca);
        assert_eq!(
            details.key_usages,
            [KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment]
        );
        assert!(details.extended_key_usages.is_empty());
        assert_eq!(details.csr_pem, b"---");

        let ca = cr(
            serde_json::json!({"isCA": true, "duration": "1h", "usages": ["cert sign", "server auth", "signing"]}),
        );
        let details = SigningRequest::CertificateRequest(&ca).details()?;
        assert_eq!(details.duration, Duration::from_secs(3600));
        assert!(!details.duration_is_default);
        assert_eq!(
            details.key_usages,
            [KeyUsage::DigitalSignature, KeyUsage::KeyCertSign]
        );
        assert_eq!(details.extended_key_usages, [ExtendedKeyUsage::ServerAuth]);
        let options = details.signing_options();
        assert!(options.is_ca);
        assert_eq!(options.validity, Duration::from_secs(3600));
        Ok(())
    }

    #[test]
    fn bad_durations_and_usages_are_permanent() {
        for spec in [
            serde_json::json!({"duration": "forever"}),
            serde_json::json!({"usages": ["world domination"]}),
            serde_json::json!({"usages": ["ipsec tunnel"]}),
        ] {
            let request = cr(spec.clone());
            let Err(error) = SigningRequest::CertificateRequest(&request).details() else {
                panic!("{spec} was accepted");
            };
            assert_eq!(error.kind(), ErrorKind::Permanent, "{spec}");
        }
        let garbage = cr(serde_json::json!({"request": "Z2FyYmFnZQ=="}));
        let details = SigningRequest::CertificateRequest(&garbage).details();
        let error = details.and_then(|d| d.parse_csr().map(|_| ())).err();
        assert_eq!(error.map(|e| e.kind()), Some(ErrorKind::Permanent));
    }

    #[test]
    fn kubernetes_csr_annotations_win_over_expiration_seconds() -> Result<(), SignerError> {
        let csr: KubeCsr = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "annotations": {
                CSR_DURATION_ANNOTATION: "2h", CSR_IS_CA_ANNOTATION: "true"}},
            "spec": {"request": "LS0t", "signerName": "x.y/z", "expirationSeconds": 600,
                     "usages": ["client auth", "digital signature"]},
        }))
        .map_err(SignerError::permanent)?;
        let details = SigningRequest::CertificateSigningRequest(&csr).details()?;
        assert_eq!(details.duration, Duration::from_secs(7200));
        assert!(details.is_ca);
        // Kubernetes CSRs get exactly the usages they name (cert-manager's BuildKeyUsagesKube).
        assert_eq!(details.key_usages, [KeyUsage::DigitalSignature]);
        assert_eq!(details.extended_key_usages, [ExtendedKeyUsage::ClientAuth]);

        let mut plain = csr.clone();
        plain.metadata.annotations = None;
        let details = SigningRequest::CertificateSigningRequest(&plain).details()?;
        assert_eq!(details.duration, Duration::from_secs(600));
        assert!(!details.is_ca);
        Ok(())
    }
}

//! stackable-issuer: what a requester writes — a cert-manager `CertificateRequest` or a
//! Kubernetes `CertificateSigningRequest` (duration, usages, annotations, the PKCS#10 PEM) —
//! read into what it asks for, its CSR parsed and verified, and signed by a CA.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest as KubeCsr;
use serde_json::{Value, json};
use stackable_issuer::{SigningRequest, api::CertificateRequest};

use super::head;
use crate::{Target, seeds::material, variant};

/// See the module docs.
pub const CERTIFICATE_REQUEST: Target = Target {
    name: "certificate_request",
    about: "stackable-issuer: a CertificateRequest or CertificateSigningRequest (JSON as the API \
            server serves it) through SigningRequest::details, CertificateDetails::parse_csr and \
            CertificateAuthority::sign_request",
    run: certificate_request,
    seeds,
    dictionary: &[
        "CertificateRequest",
        "CertificateSigningRequest",
        "cert-manager.io/v1",
        "certificates.k8s.io/v1",
        "duration",
        "isCA",
        "usages",
        "request",
        "expirationSeconds",
        "experimental.cert-manager.io/request-duration",
        "experimental.cert-manager.io/request-is-ca",
        "server auth",
        "client auth",
        "digital signature",
        "key encipherment",
        "cert sign",
        "2160h",
        "1.5h",
        "0.000000001s",
        "µs",
    ],
    max_len: 64 * 1024,
    slow: Duration::from_millis(500),
};

/// See the module docs.
pub fn certificate_request(input: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(input) else {
        return "not-json".to_owned();
    };
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (cr, csr);
    let request = if kind == "CertificateSigningRequest" {
        match serde_json::from_value::<KubeCsr>(value) {
            Ok(object) => {
                csr = object;
                SigningRequest::CertificateSigningRequest(&csr)
            }
            Err(_) => return "csr:not-decoded".to_owned(),
        }
    } else {
        match serde_json::from_value::<CertificateRequest>(value) {
            Ok(object) => {
                cr = object;
                SigningRequest::CertificateRequest(&cr)
            }
            Err(_) => return "cr:not-decoded".to_owned(),
        }
    };
    let details = match request.details() {
        Ok(details) => details,
        Err(error) => return format!("details:{}", head(&error.to_string())),
    };
    let parsed = match details.parse_csr() {
        Ok(parsed) => parsed,
        Err(error) => return format!("csr:{}", head(&error.to_string())),
    };
    match material()
        .ca
        .sign_request(&parsed, &details.signing_options())
    {
        Ok(certificate) => {
            assert!(
                certificate.is_issued_by(material().ca.certificate()),
                "a signed certificate is not issued by its CA"
            );
            "signed".to_owned()
        }
        Err(error) => format!("sign:{}", variant(&error)),
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let m = material();
    let mut seeds = Vec::new();
    for csr in &m.csrs {
        let request = STANDARD.encode(csr);
        seeds.push(json!({
            "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {"request": request, "duration": "2160h0m0s", "isCA": false,
                "usages": ["digital signature", "key encipherment", "server auth"],
                "issuerRef": {"name": "ca", "kind": "Issuer", "group": "fuzz.io"}}
        }));
        seeds.push(json!({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "r", "annotations": {
                "experimental.cert-manager.io/request-duration": "1h30m",
                "experimental.cert-manager.io/request-is-ca": "true"}},
            "spec": {"request": request, "signerName": "issuers.fuzz.io/default.ca",
                "expirationSeconds": 3600, "usages": ["client auth"]}
        }));
    }
    seeds
        .into_iter()
        .map(|seed| serde_json::to_vec(&seed).unwrap_or_default())
        .collect()
}

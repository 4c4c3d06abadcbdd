//! CA and leaf certificate generation, inspection, Secret storage and trust-preserving
//! rotation for Kubernetes webhooks.
//!
//! The Kubernetes API server only calls admission and conversion webhooks over HTTPS and
//! verifies the serving certificate against the `caBundle` of the webhook configuration
//! (see <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>).
//! This crate gives an operator everything it needs to own that TLS material itself,
//! without cert-manager:
//!
//! - [`ca::CertificateAuthority`] creates a self-signed CA and issues leaf certificates
//!   ([`LeafOptions`], [`IssuedCertificate`]),
//! - [`Certificate`], [`PrivateKey`] and [`CaBundle`] load, inspect and serialise material,
//! - [`CertificateSigningRequest`] parses and verifies a PKCS#10 request that
//!   [`CertificateAuthority::sign_request`] signs (for issuers of requests made elsewhere),
//! - [`ServingMaterial`] is what a TLS server needs (leaf chain, key, trust bundle),
//! - [`rotation`] renews leaves and rotates the CA in stages that never break trust, and
//!   publishes the current [`ServingMaterial`] on a [`tokio::sync::watch`] channel.
//!
//! ```
//! use stackable_certs::{ca::{CaOptions, CertificateAuthority}, LeafOptions};
//!
//! let ca = CertificateAuthority::new(&CaOptions::default())?;
//! let issued = ca.issue(&LeafOptions::for_service("my-webhook", "default"))?;
//! assert!(issued.certificate.is_issued_by(ca.certificate()));
//! assert!(issued.certificate.info().dns_names.contains(&"my-webhook.default.svc".to_string()));
//! # Ok::<(), stackable_certs::Error>(())
//! ```

pub mod bundle;
pub mod ca;
pub mod cert;
pub mod csr;
mod error;
pub mod key;
pub mod leaf;
pub mod rotation;
pub mod serving;
mod sign_request;

pub use bundle::CaBundle;
pub use ca::{CaOptions, CertificateAuthority, IssuedCertificate};
pub use cert::{Certificate, CertificateInfo};
pub use csr::{CertificateSigningRequest, CsrInfo, ExtendedKeyUsage, KeyUsage};
pub use error::{Error, Result};
pub use key::{KeyAlgorithm, PrivateKey};
pub use leaf::LeafOptions;
pub use rotation::MaterialReceiver;
pub use serving::ServingMaterial;
pub use sign_request::SigningOptions;

/// Parses every PEM block of `pem`; an error says what is wrong with the armour without quoting
/// any of the input (see [`Error::ParsePem`]).
pub(crate) fn parse_pem(pem: impl AsRef<[u8]>, what: &'static str) -> Result<Vec<pem::Pem>> {
    pem::parse_many(pem).map_err(|error| Error::ParsePem {
        what,
        reason: match error {
            pem::PemError::MismatchedTags(..) => "the BEGIN and END labels differ",
            pem::PemError::MalformedFraming => "malformed BEGIN/END lines",
            pem::PemError::MissingBeginTag => "a block has no BEGIN line",
            pem::PemError::MissingEndTag => "a block has no END line",
            pem::PemError::MissingData => "a block has no data",
            pem::PemError::InvalidData(_) => "a block's data is not valid base64",
            pem::PemError::InvalidHeader(_) => "a block has an invalid header line",
            pem::PemError::NotUtf8(_) => "the input is not UTF-8",
        },
    })
}

/// PEM with LF line endings (the `pem` crate defaults to CRLF), as Kubernetes and Go write it.
pub(crate) fn encode_pem(tag: &str, contents: Vec<u8>) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, contents),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

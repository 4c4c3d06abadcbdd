//! The error type shared by the certificate, key, bundle and CA modules.
//!
//! Every variant names what failed and carries the context needed to act on it (which
//! certificate, which key, which algorithm). Webhook TLS requirements:
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>.

use snafu::Snafu;
use time::OffsetDateTime;

use crate::KeyAlgorithm;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while generating, loading or checking certificates and keys.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum Error {
    /// The input is not valid PEM.
    #[snafu(display("failed to parse PEM input ({what}): {reason}"))]
    ParsePem {
        /// What was being parsed.
        what: &'static str,
        /// What is wrong with the PEM armour. Never the `pem` crate's own error: its messages
        /// quote the labels and headers it read, and a damaged label swallows the key lines
        /// after it (found by the `private_key_pem` fuzz target).
        reason: &'static str,
    },

    /// The PEM input holds no block of the expected kind.
    #[snafu(display("the PEM input contains no {expected} block"))]
    NoPemBlock {
        /// The expected PEM label(s).
        expected: &'static str,
    },

    /// A PEM block of an unexpected kind was found.
    #[snafu(display("unexpected PEM block {tag:?} (expected {expected})"))]
    UnexpectedPemBlock {
        /// The label found.
        tag: String,
        /// The expected PEM label(s).
        expected: &'static str,
    },

    /// The DER input is not a valid X.509 certificate.
    #[snafu(display("failed to parse X.509 certificate: {reason}"))]
    ParseCertificate {
        /// Why parsing failed.
        reason: String,
    },

    /// The private key could not be parsed in any supported form.
    #[snafu(display(
        "failed to parse private key (tried {tried}); supported are PKCS#8, PKCS#1 (RSA) and SEC1 (EC P-256/P-384)"
    ))]
    ParsePrivateKey {
        /// The forms that were tried.
        tried: &'static str,
    },

    /// The key or certificate uses an algorithm this crate does not support.
    #[snafu(display("unsupported key algorithm: {detail}"))]
    UnsupportedKeyAlgorithm {
        /// What was found.
        detail: String,
    },

    /// A key algorithm name was not recognised.
    #[snafu(display(
        "unknown key algorithm {name:?}; expected one of ecdsa-p256, ecdsa-p384, ed25519, rsa-2048, rsa-3072, rsa-4096"
    ))]
    UnknownKeyAlgorithm {
        /// The name given.
        name: String,
    },

    /// Generating a key pair failed.
    #[snafu(display("failed to generate a {algorithm} key"))]
    GenerateKey {
        /// The requested algorithm.
        algorithm: KeyAlgorithm,
    },

    /// Loading a key into the signer failed.
    #[snafu(display("failed to load the {algorithm} key for signing"))]
    LoadSigningKey {
        /// The key's algorithm.
        algorithm: KeyAlgorithm,
        /// The underlying error.
        source: rcgen::Error,
    },

    /// A bundle or CA was given a certificate that is not a CA.
    #[snafu(display("certificate {subject:?} (serial {serial}) is not a CA certificate"))]
    NotACa {
        /// Subject of the offending certificate.
        subject: String,
        /// Serial (hex) of the offending certificate.
        serial: String,
    },

    /// The CA certificate may not sign certificates (keyUsage lacks keyCertSign).
    #[snafu(display("CA certificate {subject:?} lacks the keyCertSign key usage"))]
    CaCannotSign {
        /// Subject of the CA.
        subject: String,
    },

    /// The private key does not belong to the certificate.
    #[snafu(display("the private key does not match the public key of certificate {subject:?}"))]
    KeyMismatch {
        /// Subject of the certificate.
        subject: String,
    },

    /// No certificate was given where at least one is required.
    #[snafu(display("no certificate found ({what})"))]
    NoCertificate {
        /// What was expected.
        what: &'static str,
    },

    /// Every certificate of a trust bundle has expired.
    #[snafu(display("every certificate of the bundle has expired ({count} expired)"))]
    AllExpired {
        /// How many certificates there were.
        count: usize,
    },

    /// A certificate of a bundle does not parse.
    #[snafu(display("certificate {index} of the bundle is not a valid X.509 certificate"))]
    BundleCertificate {
        /// Zero-based position of the PEM block.
        index: usize,
        /// The parse error.
        #[snafu(source(from(Error, Box::new)))]
        source: Box<Error>,
    },

    /// The CA has expired (or expires before the leaf could be valid).
    #[snafu(display("CA {subject:?} is not valid at {at} (valid until {not_after})"))]
    CaExpired {
        /// Subject of the CA.
        subject: String,
        /// Expiry of the CA.
        not_after: OffsetDateTime,
        /// The time the CA was needed at.
        at: OffsetDateTime,
    },

    /// The input is not a usable PKCS#10 certificate signing request.
    #[snafu(display("failed to parse the certificate signing request: {reason}"))]
    ParseCertificateRequest {
        /// Why parsing or verifying failed (never quotes the input).
        reason: String,
    },

    /// A certificate signing request asks for something the signing options do not grant.
    #[snafu(display(
        "the certificate signing request does not match what may be issued: {reason}"
    ))]
    CertificateRequestMismatch {
        /// What differs.
        reason: String,
    },

    /// The leaf or CA options are not usable.
    #[snafu(display("invalid certificate options: {reason}"))]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },

    /// A DNS name is not valid for a certificate SAN.
    #[snafu(display("invalid DNS name {name:?} for a subjectAltName"))]
    InvalidDnsName {
        /// The name.
        name: String,
        /// The underlying error.
        source: rcgen::Error,
    },

    /// rcgen failed to build or sign a certificate.
    #[snafu(display("failed to sign the certificate for {subject:?}"))]
    SignCertificate {
        /// Subject of the certificate being signed.
        subject: String,
        /// The underlying error.
        source: rcgen::Error,
    },

    /// A PEM certificate chain or key could not be read for rustls.
    #[snafu(display("failed to parse the {what} PEM"))]
    RustlsPem {
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// The PEM error (never quotes the input).
        source: rustls_pki_types::pem::Error,
    },

    /// The key was parsed but the provider refused it, or it does not belong to the leaf.
    #[snafu(display("the private key is unusable or does not match the leaf certificate"))]
    UnusableKeyPair {
        /// The rustls error.
        source: rustls::Error,
    },

    /// rustls did not accept the key.
    #[snafu(display("rustls cannot use the {algorithm} private key"))]
    RustlsKey {
        /// The key's algorithm.
        algorithm: KeyAlgorithm,
        /// The underlying error.
        source: rustls::Error,
    },
}

//! [`ServingMaterial`]: what a TLS server needs to serve, plus the trust bundle its clients
//! need (the `caBundle` of the webhook configuration, see
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>).

use std::{fmt, sync::Arc};

use rustls::sign::CertifiedKey;
use snafu::{ResultExt as _, ensure};
use time::OffsetDateTime;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::{
    CaBundle, Certificate, IssuedCertificate, LeafOptions, PrivateKey,
    ca::{CaOptions, CertificateAuthority},
    error::{
        KeyMismatchSnafu, NoCertificateSnafu, Result, RustlsKeySnafu, RustlsPemSnafu,
        UnusableKeyPairSnafu,
    },
};

/// Loads a PEM certificate chain (leaf first) and a PEM private key into what a rustls server
/// serves, with the workspace's one crypto provider (aws-lc-rs): any key form and size it
/// accepts (PKCS#8, PKCS#1, SEC1; RSA of any size, ECDSA, Ed25519), as cert-manager and OLM
/// write them. Refused: no certificate, unparseable PEM, a key the provider cannot use, a key
/// that does not belong to the leaf. Errors never quote the input.
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context(RustlsPemSnafu {
            what: "certificate chain",
        })?;
    if chain.is_empty() {
        return NoCertificateSnafu {
            what: "the certificate PEM holds no CERTIFICATE block",
        }
        .fail();
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).context(RustlsPemSnafu {
        what: "private key",
    })?;
    let signing_key = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key)
        .context(UnusableKeyPairSnafu)?;
    let certified = CertifiedKey::new(chain, signing_key);
    // Unlike `CertifiedKey::from_der`, an unknown consistency is an error here: every
    // aws-lc-rs key can report its public key, so "unknown" means something is wrong.
    certified.keys_match().context(UnusableKeyPairSnafu)?;
    Ok(certified)
}

/// A leaf chain (leaf first), its key and the bundle of CAs clients should trust.
#[derive(Clone, PartialEq, Eq)]
pub struct ServingMaterial {
    chain: Vec<Certificate>,
    key: PrivateKey,
    trust: CaBundle,
}

impl fmt::Debug for ServingMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingMaterial")
            .field("chain", &self.chain)
            .field("key", &self.key)
            .field("trust", &self.trust)
            .finish()
    }
}

impl ServingMaterial {
    /// Assembles serving material; fails when the chain is empty or the key does not belong
    /// to the leaf.
    pub fn new(chain: Vec<Certificate>, key: PrivateKey, trust: CaBundle) -> Result<Self> {
        let Some(leaf) = chain.first() else {
            return NoCertificateSnafu {
                what: "serving material needs a leaf certificate",
            }
            .fail();
        };
        ensure!(
            leaf.matches_key(&key),
            KeyMismatchSnafu {
                subject: leaf.info().subject.clone()
            }
        );
        Ok(ServingMaterial { chain, key, trust })
    }

    /// Serving material from an issued leaf: the chain is the leaf alone (the CA is the trust
    /// anchor and need not be sent), the trust bundle is `trust`.
    pub fn from_issued(issued: IssuedCertificate, trust: CaBundle) -> Result<Self> {
        Self::new(vec![issued.certificate], issued.key, trust)
    }

    /// A one-off CA plus a leaf for `leaf` options; handy in tests and examples. Production
    /// code uses [`crate::rotation::RotationDriver`].
    pub fn generate(ca: &CaOptions, leaf: &LeafOptions) -> Result<Self> {
        let ca = CertificateAuthority::new(ca)?;
        let issued = ca.issue(leaf)?;
        let trust = CaBundle::from_certificates([ca.certificate().clone()])?;
        Self::from_issued(issued, trust)
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &Certificate {
        // `new` guarantees a non-empty chain.
        &self.chain[0]
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// The leaf's private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The trust bundle.
    pub fn ca_bundle(&self) -> &CaBundle {
        &self.trust
    }

    /// The trust bundle as PEM (what goes into `caBundle`, base64-encoded by the API).
    pub fn ca_bundle_pem(&self) -> String {
        self.trust.to_pem()
    }

    /// The chain as PEM (what goes into `tls.crt`).
    pub fn chain_pem(&self) -> String {
        self.chain.iter().map(Certificate::to_pem).collect()
    }

    /// The leaf's notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.leaf().info().not_after
    }

    /// The chain and key for rustls (aws-lc-rs provider).
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>> {
        let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(
            &self.key.to_rustls(),
        )
        .context(RustlsKeySnafu {
            algorithm: self.key.algorithm(),
        })?;
        let chain = self.chain.iter().map(Certificate::to_rustls).collect();
        Ok(Arc::new(CertifiedKey::new(chain, signing_key)))
    }
}

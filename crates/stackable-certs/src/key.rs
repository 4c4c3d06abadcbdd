//! Private keys and key algorithms.
//!
//! Keys are kept as PKCS#8 DER (RFC 5958) internally, whatever form they were loaded from:
//! PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`, the form OLM
//! mounts). The key bytes are zeroed when a [`PrivateKey`] is dropped and never printed by
//! [`Debug`](std::fmt::Debug). See
//! <https://kubernetes.io/docs/concepts/configuration/secret/#tls-secrets> for where such keys
//! end up in Kubernetes.

use std::{fmt, str::FromStr};

use aws_lc_rs::{
    encoding::AsDer,
    rsa::KeySize,
    signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
        Ed25519KeyPair, RsaKeyPair,
    },
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use snafu::{OptionExt as _, ResultExt as _};
use zeroize::Zeroizing;

use crate::error::{
    self, GenerateKeySnafu, LoadSigningKeySnafu, NoPemBlockSnafu, ParsePrivateKeySnafu, Result,
    UnexpectedPemBlockSnafu, UnknownKeyAlgorithmSnafu, UnsupportedKeyAlgorithmSnafu,
};

/// The key algorithm of a certificate's key pair.
///
/// The default is ECDSA on P-256 with SHA-256: small, fast and accepted by every verifier
/// (Go's crypto/x509 as used by the Kubernetes API server, rustls/webpki, OpenSSL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256, signatures with SHA-256.
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA on NIST P-384, signatures with SHA-384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    /// Ed25519.
    #[serde(rename = "ed25519")]
    Ed25519,
    /// RSA with a 2048 bit modulus, PKCS#1 v1.5 signatures with SHA-256.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// RSA with a 3072 bit modulus, PKCS#1 v1.5 signatures with SHA-256.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    /// RSA with a 4096 bit modulus, PKCS#1 v1.5 signatures with SHA-256.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl KeyAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [KeyAlgorithm; 6] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];

    /// The canonical name (`ecdsa-p256`, `rsa-2048`, ...).
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
        }
    }

    /// Whether this is one of the RSA algorithms.
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
        )
    }

    /// The rcgen signature algorithm used when this key signs.
    pub(crate) fn signature_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                &rcgen::PKCS_RSA_SHA256
            }
        }
    }

    fn rsa_from_bits(bits: usize) -> Result<Self> {
        match bits {
            2048 => Ok(KeyAlgorithm::Rsa2048),
            3072 => Ok(KeyAlgorithm::Rsa3072),
            4096 => Ok(KeyAlgorithm::Rsa4096),
            other => UnsupportedKeyAlgorithmSnafu {
                detail: format!("RSA with a {other} bit modulus (supported: 2048, 3072, 4096)"),
            }
            .fail(),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = error::Error;

    fn from_str(s: &str) -> Result<Self> {
        let normalized = s.trim().to_ascii_lowercase();
        KeyAlgorithm::ALL
            .into_iter()
            .find(|alg| alg.name() == normalized)
            .context(UnknownKeyAlgorithmSnafu { name: s })
    }
}

/// A private key, held as PKCS#8 DER.
///
/// The bytes are zeroed on drop; [`Debug`](fmt::Debug) prints only the algorithm.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    algorithm: KeyAlgorithm,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .field("pkcs8", &"<redacted>")
            .finish()
    }
}

const KEY_PEM_LABELS: &str = "PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY";

impl PrivateKey {
    /// Generates a fresh key (RSA keys are generated by aws-lc-rs).
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self> {
        let fail = || GenerateKeySnafu { algorithm }.build();
        let pkcs8: Vec<u8> = match algorithm {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                let alg = if algorithm == KeyAlgorithm::EcdsaP256 {
                    &ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &ECDSA_P384_SHA384_ASN1_SIGNING
                };
                let kp = EcdsaKeyPair::generate(alg).map_err(|_| fail())?;
                kp.to_pkcs8v1().map_err(|_| fail())?.as_ref().to_vec()
            }
            KeyAlgorithm::Ed25519 => {
                let kp = Ed25519KeyPair::generate().map_err(|_| fail())?;
                kp.to_pkcs8v1().map_err(|_| fail())?.as_ref().to_vec()
            }
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                let size = match algorithm {
                    KeyAlgorithm::Rsa2048 => KeySize::Rsa2048,
                    KeyAlgorithm::Rsa3072 => KeySize::Rsa3072,
                    _ => KeySize::Rsa4096,
                };
                let kp = RsaKeyPair::generate(size).map_err(|_| fail())?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                    kp.as_der().map_err(|_| fail())?;
                der.as_ref().to_vec()
            }
        };
        Ok(PrivateKey {
            pkcs8: Zeroizing::new(pkcs8),
            algorithm,
        })
    }

    /// Loads a key from PEM: `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or
    /// `EC PRIVATE KEY` (SEC1, P-256/P-384). The first key block is used; other blocks (for
    /// example certificates in a combined file) are skipped.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let blocks = crate::parse_pem(pem, "private key")?;
        let mut other = None;
        for block in &blocks {
            let contents = Zeroizing::new(block.contents().to_vec());
            match block.tag() {
                "PRIVATE KEY" => return Self::from_pkcs8_der(&contents),
                "RSA PRIVATE KEY" => return Self::from_pkcs1_der(&contents),
                "EC PRIVATE KEY" => return Self::from_sec1_der(&contents),
                tag => other = other.or(Some(tag.to_string())),
            }
        }
        match other {
            Some(tag) => UnexpectedPemBlockSnafu {
                tag,
                expected: KEY_PEM_LABELS,
            }
            .fail(),
            None => NoPemBlockSnafu {
                expected: KEY_PEM_LABELS,
            }
            .fail(),
        }
    }

    /// Loads a key from DER in any supported form (PKCS#8, PKCS#1, SEC1).
    pub fn from_der(der: &[u8]) -> Result<Self> {
        Self::from_pkcs8_der(der)
            .or_else(|_| Self::from_pkcs1_der(der))
            .or_else(|_| Self::from_sec1_der(der))
            .map_err(|_| {
                ParsePrivateKeySnafu {
                    tried: "PKCS#8, PKCS#1, SEC1",
                }
                .build()
            })
    }

    /// Loads a PKCS#8 (RFC 5958) key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let algorithm = if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der).is_ok() {
            KeyAlgorithm::EcdsaP256
        } else if EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, der).is_ok() {
            KeyAlgorithm::EcdsaP384
        } else if Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).is_ok() {
            KeyAlgorithm::Ed25519
        } else if let Ok(kp) = RsaKeyPair::from_pkcs8(der) {
            KeyAlgorithm::rsa_from_bits(kp.public_modulus_len() * 8)?
        } else {
            return ParsePrivateKeySnafu { tried: "PKCS#8" }.fail();
        };
        Ok(PrivateKey {
            pkcs8: Zeroizing::new(der.to_vec()),
            algorithm,
        })
    }

    /// Loads a PKCS#1 `RSAPrivateKey` and converts it to PKCS#8.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<Self> {
        let fail = || ParsePrivateKeySnafu { tried: "PKCS#1" }.build();
        let kp = RsaKeyPair::from_der(der).map_err(|_| fail())?;
        let algorithm = KeyAlgorithm::rsa_from_bits(kp.public_modulus_len() * 8)?;
        let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der<'static> = kp.as_der().map_err(|_| fail())?;
        Ok(PrivateKey {
            pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
            algorithm,
        })
    }

    /// Loads a SEC1 `ECPrivateKey` (P-256 or P-384) and converts it to PKCS#8.
    pub fn from_sec1_der(der: &[u8]) -> Result<Self> {
        let fail = || ParsePrivateKeySnafu { tried: "SEC1" }.build();
        let (kp, algorithm) = if let Ok(kp) =
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, der)
        {
            (kp, KeyAlgorithm::EcdsaP256)
        } else if let Ok(kp) =
            EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_ASN1_SIGNING, der)
        {
            (kp, KeyAlgorithm::EcdsaP384)
        } else {
            return Err(fail());
        };
        let pkcs8 = kp.to_pkcs8v1().map_err(|_| fail())?;
        Ok(PrivateKey {
            pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
            algorithm,
        })
    }

    /// The key algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The PKCS#8 DER bytes. Handle with care.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, LF line endings).
    pub fn to_pem(&self) -> String {
        crate::encode_pem("PRIVATE KEY", self.pkcs8.to_vec())
    }

    /// The key in the form rustls takes.
    pub fn to_rustls(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.to_vec()))
    }

    /// The raw public key (as in a certificate's subjectPublicKey BIT STRING).
    pub fn public_key_raw(&self) -> Result<Vec<u8>> {
        let kp = self.key_pair()?;
        Ok(kp.public_key_raw().to_vec())
    }

    /// The key loaded into rcgen for signing.
    pub(crate) fn key_pair(&self) -> Result<rcgen::KeyPair> {
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(self.pkcs8.as_slice()),
            self.algorithm.signature_algorithm(),
        )
        .context(LoadSigningKeySnafu {
            algorithm: self.algorithm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of an error with all its sources, as a log line would show it.
    fn chain(error: &crate::Error) -> String {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        message
    }

    /// Damaged PEM armour around a key is refused without quoting the key: the `pem` crate's
    /// own errors quote the labels and headers it read, and a damaged END label swallows the
    /// key lines after it. Found by the `private_key_pem` fuzz target (docs/fuzzing.md).
    #[test]
    fn damaged_pem_armour_is_refused_without_quoting_the_key() {
        let pem = PrivateKey::generate(KeyAlgorithm::EcdsaP256)
            .unwrap()
            .to_pem();
        let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let damaged = [
            // END label cut: the label read runs into the key lines after it.
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE -\n{}\n-----\n",
                body[0],
                body.join("\n")
            ),
            // A blank line after the first line: that line is read as an invalid header.
            format!(
                "-----BEGIN RSA PRIVATE KEY-----\n{}\n\n-----END RSA PRIVATE KEY-----\n",
                body.join("\n")
            ),
        ];
        for input in damaged {
            let error = PrivateKey::from_pem(&input).unwrap_err();
            assert!(matches!(error, crate::Error::ParsePem { .. }), "{error:?}");
            let message = chain(&error);
            for line in &body {
                assert!(
                    !message.contains(line),
                    "the error quotes the key: {message}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for alg in KeyAlgorithm::ALL {
            assert_eq!(alg.to_string().parse::<KeyAlgorithm>().unwrap(), alg);
            let json = serde_json::to_string(&alg).unwrap();
            assert_eq!(json, format!("\"{alg}\""));
        }
        assert!("rsa-1024".parse::<KeyAlgorithm>().is_err());
        assert_eq!(KeyAlgorithm::default(), KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn generate_and_reload_every_algorithm() {
        for alg in KeyAlgorithm::ALL {
            let key = PrivateKey::generate(alg).unwrap();
            assert_eq!(key.algorithm(), alg);
            let pem = key.to_pem();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let reloaded = PrivateKey::from_pem(&pem).unwrap();
            assert_eq!(reloaded, key);
            assert!(!format!("{key:?}").contains(&pem[30..60]));
        }
    }

    #[test]
    fn debug_redacts() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("redacted"));
        assert!(!debug.contains("MIG"));
    }
}

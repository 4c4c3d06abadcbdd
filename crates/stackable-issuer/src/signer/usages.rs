//! cert-manager's and Kubernetes' key usage names (`spec.usages` of a `CertificateRequest`
//! and of a `CertificateSigningRequest`) as X.509 key usages, as cert-manager's
//! `pki.KeyUsagesForCertificateOrCertificateRequest` and `pki.BuildKeyUsagesKube` map them.

use stackable_certs::{ExtendedKeyUsage, KeyUsage};

/// A usage name mapped to what the certificate carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Usage {
    Key(KeyUsage),
    Extended(ExtendedKeyUsage),
}

/// The default usages when a request names none (cert-manager's and Kubernetes' default).
pub(crate) const DEFAULT: [&str; 2] = ["digital signature", "key encipherment"];

/// `Ok(None)`: a name cert-manager knows that no certificate made here can carry (IPsec and
/// server-gated-crypto purposes); `Err`: a name cert-manager does not know.
pub(crate) fn parse(name: &str) -> Result<Option<Usage>, ()> {
    use ExtendedKeyUsage as E;
    use KeyUsage as K;
    Ok(Some(match name {
        "signing" | "digital signature" => Usage::Key(K::DigitalSignature),
        "content commitment" => Usage::Key(K::ContentCommitment),
        "key encipherment" => Usage::Key(K::KeyEncipherment),
        "key agreement" => Usage::Key(K::KeyAgreement),
        "data encipherment" => Usage::Key(K::DataEncipherment),
        "cert sign" => Usage::Key(K::KeyCertSign),
        "crl sign" => Usage::Key(K::CrlSign),
        "encipher only" => Usage::Key(K::EncipherOnly),
        "decipher only" => Usage::Key(K::DecipherOnly),
        "any" => Usage::Extended(E::Any),
        "server auth" => Usage::Extended(E::ServerAuth),
        "client auth" => Usage::Extended(E::ClientAuth),
        "code signing" => Usage::Extended(E::CodeSigning),
        "email protection" | "s/mime" => Usage::Extended(E::EmailProtection),
        "timestamping" => Usage::Extended(E::TimeStamping),
        "ocsp signing" => Usage::Extended(E::OcspSigning),
        "ipsec end system" | "ipsec tunnel" | "ipsec user" | "microsoft sgc" | "netscape sgc" => {
            return Ok(None);
        }
        _ => return Err(()),
    }))
}

//! Seed material shared by the targets: keys and certificates of every form the parsers take
//! (generated once per process; the OpenSSL-made test keys of stackable-certs), and CSRs.

use std::sync::OnceLock;

use stackable_certs::{
    LeafOptions,
    ca::{CaOptions, CertificateAuthority},
};

/// PEM and DER material.
#[derive(Debug)]
pub(crate) struct Material {
    /// The CA that issued `leaf` (also signs the issuer target's requests).
    pub(crate) ca: CertificateAuthority,
    /// The CA's certificate, PEM.
    pub(crate) ca_pem: String,
    /// The CA's key, PKCS#8 PEM.
    pub(crate) ca_key_pem: String,
    /// A leaf chain (leaf, CA), PEM.
    pub(crate) leaf_chain_pem: String,
    /// The leaf's key, PKCS#8 PEM.
    pub(crate) leaf_key_pem: String,
    /// Certificates made by OpenSSL (CAs, a leaf, an expired CA), PEM.
    pub(crate) openssl_certificates: Vec<&'static str>,
    /// Keys made by OpenSSL (PKCS#1 RSA, SEC1 and PKCS#8 EC, PKCS#8 Ed25519), PEM.
    pub(crate) openssl_keys: Vec<&'static str>,
    /// PKCS#10 requests (PEM), one per key type and with extensions.
    pub(crate) csrs: Vec<String>,
}

pub(crate) fn material() -> &'static Material {
    static MATERIAL: OnceLock<Material> = OnceLock::new();
    MATERIAL.get_or_init(|| {
        let ca = CertificateAuthority::new(&CaOptions::new("fuzz CA"))
            .unwrap_or_else(|error| panic!("generating the seed CA: {error}"));
        let issued = ca
            .issue(&LeafOptions::for_service("fuzz", "default"))
            .unwrap_or_else(|error| panic!("issuing the seed leaf: {error}"));
        let mut leaf_chain_pem = issued.certificate.to_pem();
        for certificate in &issued.chain {
            leaf_chain_pem.push_str(&certificate.to_pem());
        }
        Material {
            ca_pem: ca.certificate().to_pem(),
            ca_key_pem: ca.key().to_pem(),
            leaf_chain_pem,
            leaf_key_pem: issued.key.to_pem(),
            ca,
            openssl_certificates: vec![
                include_str!("../../stackable-certs/tests/fixtures/bundle-ca-a.pem"),
                include_str!("../../stackable-certs/tests/fixtures/bundle-ca-b.pem"),
                include_str!("../../stackable-certs/tests/fixtures/bundle-leaf.pem"),
                include_str!("../../stackable-certs/tests/fixtures/bundle-ca-expired.pem"),
            ],
            openssl_keys: vec![
                include_str!("../../stackable-certs/tests/fixtures/rsa2048-pkcs1.pem"),
                include_str!("../../stackable-certs/tests/fixtures/ec-p256-sec1.pem"),
                include_str!("../../stackable-certs/tests/fixtures/ec-p384-sec1.pem"),
                include_str!("../../stackable-certs/tests/fixtures/ec-p256-pkcs8.pem"),
                include_str!("../../stackable-certs/tests/fixtures/ed25519-pkcs8.pem"),
            ],
            csrs: csrs(),
        }
    })
}

/// Requests made by rcgen: ECDSA P-256 with names of every kind and usages, Ed25519, and a CA
/// request.
fn csrs() -> Vec<String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, PKCS_ED25519, SanType,
    };
    let mut out = Vec::new();
    let mut make = |key: Option<KeyPair>, edit: &dyn Fn(&mut CertificateParams)| {
        let Ok(key) = key.map_or_else(KeyPair::generate, Ok) else {
            return;
        };
        let Ok(mut params) = CertificateParams::new(vec!["app.example.com".to_owned()]) else {
            return;
        };
        params.distinguished_name.push(DnType::CommonName, "app");
        edit(&mut params);
        if let Ok(pem) = params.serialize_request(&key).and_then(|csr| csr.pem()) {
            out.push(pem);
        }
    };
    make(None, &|p| {
        if let Ok(ip) = "10.0.0.1".parse() {
            p.subject_alt_names.push(SanType::IpAddress(ip));
        }
        if let Ok(uri) = "spiffe://cluster/ns/a".try_into() {
            p.subject_alt_names.push(SanType::URI(uri));
        }
        if let Ok(mail) = "a@example.com".try_into() {
            p.subject_alt_names.push(SanType::Rfc822Name(mail));
        }
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    make(KeyPair::generate_for(&PKCS_ED25519).ok(), &|_| {});
    make(None, &|p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    });
    out
}

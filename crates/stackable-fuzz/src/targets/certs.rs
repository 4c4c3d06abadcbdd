//! stackable-certs' readers of certificates, keys and requests, and the serving pair a file
//! source loads (stackable-webhook's `FileSource`, cert-manager's and OLM's mounted Secrets).

use std::time::Duration;

use stackable_certs::{CaBundle, Certificate, CertificateSigningRequest, PrivateKey};
use time::OffsetDateTime;

use super::text;
use crate::{Target, seeds::material, variant};

const PEM_WORDS: &[&str] = &[
    "-----BEGIN CERTIFICATE-----\n",
    "-----END CERTIFICATE-----\n",
    "-----BEGIN PRIVATE KEY-----\n",
    "-----END PRIVATE KEY-----\n",
    "-----BEGIN RSA PRIVATE KEY-----\n",
    "-----BEGIN EC PRIVATE KEY-----\n",
    "-----BEGIN CERTIFICATE REQUEST-----\n",
    "-----END CERTIFICATE REQUEST-----\n",
    "Proc-Type: 4,ENCRYPTED\n",
    "\r\n",
    "====",
];

/// Certificates and CA bundles from PEM.
pub const CERTIFICATE_PEM: Target = Target {
    name: "certificate_pem",
    about: "stackable-certs: Certificate::from_pem, Certificate::all_from_pem, CaBundle::from_pem \
            and CaBundle::from_injection_source (a caBundle source's ca.crt); what parses must \
            write PEM that parses back to the same certificates",
    run: certificate_pem,
    seeds: certificate_seeds,
    dictionary: PEM_WORDS,
    max_len: 64 * 1024,
    slow: Duration::from_millis(200),
};

/// Private keys from PEM.
pub const PRIVATE_KEY_PEM: Target = Target {
    name: "private_key_pem",
    about: "stackable-certs: PrivateKey::from_pem (PKCS#8, PKCS#1, SEC1); what parses must \
            write PEM that parses back to the same key, and an error must not quote the input",
    run: private_key_pem,
    seeds: key_seeds,
    dictionary: PEM_WORDS,
    max_len: 16 * 1024,
    slow: Duration::from_millis(500),
};

/// Certificates, keys and requests from DER (the first byte chooses the reader).
pub const DER: Target = Target {
    name: "der",
    about: "stackable-certs: Certificate::from_der, PrivateKey::from_der/from_pkcs8_der/\
            from_pkcs1_der/from_sec1_der, CertificateSigningRequest::from_der (the first input \
            byte chooses the reader)",
    run: der,
    seeds: der_seeds,
    dictionary: &[],
    max_len: 16 * 1024,
    slow: Duration::from_millis(500),
};

/// The serving pair of a file source.
pub const SERVING_FILES: Target = Target {
    name: "serving_files",
    about: "stackable-webhook: certified_key_from_pem (what FileSource loads from tls.crt and \
            tls.key; the input is both files, split at the first NUL byte); an error must not \
            quote the key",
    run: serving_files,
    seeds: serving_seeds,
    dictionary: PEM_WORDS,
    max_len: 32 * 1024,
    slow: Duration::from_millis(500),
};

/// PKCS#10 requests from PEM.
pub const CSR_PEM: Target = Target {
    name: "csr_pem",
    about: "stackable-certs: CertificateSigningRequest::from_pem (parse and verify the \
            signature, read names, usages and the key algorithm)",
    run: csr_pem,
    seeds: csr_seeds,
    dictionary: PEM_WORDS,
    max_len: 16 * 1024,
    slow: Duration::from_millis(200),
};

/// Panics when `error` (with its sources) quotes a line of the PEM body of `input`: errors
/// about key material must never carry it into a log.
pub(crate) fn assert_not_quoted(error: &(dyn std::error::Error + 'static), input: &[u8]) {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    let input = String::from_utf8_lossy(input);
    for line in input.lines() {
        let line = line.trim();
        if line.len() >= 24
            && !line.starts_with("-----")
            && line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        {
            assert!(
                !message.contains(line),
                "an error quotes the input: {message}"
            );
        }
    }
}

/// See [`CERTIFICATE_PEM`].
pub fn certificate_pem(input: &[u8]) -> String {
    let now = OffsetDateTime::now_utc();
    let injection = match CaBundle::from_injection_source(input, now) {
        Ok(bundle) => {
            assert!(
                !bundle.is_empty(),
                "an injection bundle without certificates"
            );
            let again = CaBundle::from_injection_source(bundle.to_pem().as_bytes(), now);
            assert!(
                again
                    .as_ref()
                    .is_ok_and(|again| again.certificates() == bundle.certificates()),
                "the bundle's PEM does not read back: {again:?}"
            );
            "ok".to_owned()
        }
        Err(error) => variant(&error),
    };
    let Ok(pem) = text(input) else {
        return format!("injection:{injection}/not-utf8");
    };
    let all = match Certificate::all_from_pem(pem) {
        Ok(certificates) => {
            for certificate in &certificates {
                let again = Certificate::from_pem(&certificate.to_pem());
                assert!(
                    again.as_ref().is_ok_and(|again| again == certificate),
                    "a certificate's PEM does not read back: {again:?}"
                );
                // What a caller reads of a certificate.
                let _ = (certificate.info(), certificate.is_self_signed());
            }
            "ok".to_owned()
        }
        Err(error) => variant(&error),
    };
    let _ = Certificate::from_pem(pem);
    let bundle = match CaBundle::from_pem(pem) {
        Ok(bundle) => {
            let _ = (bundle.all_cas(), bundle.without_expired(now));
            "ok".to_owned()
        }
        Err(error) => variant(&error),
    };
    format!("injection:{injection}/all:{all}/bundle:{bundle}")
}

/// See [`PRIVATE_KEY_PEM`].
pub fn private_key_pem(input: &[u8]) -> String {
    let pem = match text(input) {
        Ok(pem) => pem,
        Err(label) => return label,
    };
    match PrivateKey::from_pem(pem) {
        Ok(key) => {
            let again = PrivateKey::from_pem(&key.to_pem());
            assert!(
                again
                    .as_ref()
                    .is_ok_and(|again| again.pkcs8_der() == key.pkcs8_der()),
                "a key's PEM does not read back"
            );
            let _ = key.public_key_raw();
            format!("ok:{}", key.algorithm().name())
        }
        Err(error) => {
            assert_not_quoted(&error, input);
            variant(&error)
        }
    }
}

/// See [`DER`].
pub fn der(input: &[u8]) -> String {
    let Some((&selector, der)) = input.split_first() else {
        return "empty".to_owned();
    };
    let (reader, result) = match selector % 6 {
        0 => (
            "certificate",
            Certificate::from_der(der).map(|c| {
                let _ = c.info();
            }),
        ),
        1 => ("key", PrivateKey::from_der(der).map(drop)),
        2 => ("pkcs8", PrivateKey::from_pkcs8_der(der).map(drop)),
        3 => ("pkcs1", PrivateKey::from_pkcs1_der(der).map(drop)),
        4 => ("sec1", PrivateKey::from_sec1_der(der).map(drop)),
        _ => (
            "csr",
            CertificateSigningRequest::from_der(der).map(|c| {
                let _ = c.info();
            }),
        ),
    };
    match result {
        Ok(()) => format!("{reader}:ok"),
        Err(error) => {
            assert_not_quoted(&error, input);
            format!("{reader}:{}", variant(&error))
        }
    }
}

/// See [`SERVING_FILES`].
pub fn serving_files(input: &[u8]) -> String {
    let (cert, key) = match input.iter().position(|b| *b == 0) {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[][..]),
    };
    match stackable_webhook::certified_key_from_pem(cert, key, "tls.crt") {
        Ok(_) => "ok".to_owned(),
        Err(error) => {
            assert_not_quoted(&error, key);
            variant(&error)
        }
    }
}

/// See [`CSR_PEM`].
pub fn csr_pem(input: &[u8]) -> String {
    match CertificateSigningRequest::from_pem(input) {
        Ok(csr) => {
            let info = csr.info();
            let _ = (&info.dns_names, &info.key_usages, csr.der());
            "ok".to_owned()
        }
        Err(error) => variant(&error),
    }
}

fn certificate_seeds() -> Vec<Vec<u8>> {
    let m = material();
    let mut seeds: Vec<Vec<u8>> = m
        .openssl_certificates
        .iter()
        .map(|pem| pem.as_bytes().to_vec())
        .collect();
    seeds.push(m.ca_pem.clone().into_bytes());
    seeds.push(m.leaf_chain_pem.clone().into_bytes());
    seeds.push(format!("{}{}", m.openssl_certificates[0], m.openssl_certificates[1]).into_bytes());
    seeds.push(format!("{}{}", m.ca_pem, m.ca_key_pem).into_bytes());
    seeds
}

fn key_seeds() -> Vec<Vec<u8>> {
    let m = material();
    let mut seeds: Vec<Vec<u8>> = m
        .openssl_keys
        .iter()
        .map(|pem| pem.as_bytes().to_vec())
        .collect();
    seeds.push(m.ca_key_pem.clone().into_bytes());
    seeds.push(m.leaf_key_pem.clone().into_bytes());
    seeds
}

fn der_seeds() -> Vec<Vec<u8>> {
    let m = material();
    let mut seeds = Vec::new();
    let mut add = |selector: u8, pem_text: &str| {
        for block in pem::parse_many(pem_text).unwrap_or_default() {
            let mut seed = vec![selector];
            seed.extend_from_slice(block.contents());
            seeds.push(seed);
        }
    };
    for pem_text in &m.openssl_certificates {
        add(0, pem_text);
    }
    add(0, &m.leaf_chain_pem);
    add(1, &m.leaf_key_pem);
    add(2, &m.ca_key_pem);
    add(3, m.openssl_keys[0]);
    add(4, m.openssl_keys[1]);
    add(4, m.openssl_keys[2]);
    add(2, m.openssl_keys[4]);
    for csr in &m.csrs {
        add(5, csr);
    }
    seeds
}

fn serving_seeds() -> Vec<Vec<u8>> {
    let m = material();
    let mut seed = m.leaf_chain_pem.clone().into_bytes();
    seed.push(0);
    seed.extend_from_slice(m.leaf_key_pem.as_bytes());
    let mut mismatched = m.openssl_certificates[2].as_bytes().to_vec();
    mismatched.push(0);
    mismatched.extend_from_slice(m.openssl_keys[0].as_bytes());
    vec![seed, mismatched]
}

fn csr_seeds() -> Vec<Vec<u8>> {
    material()
        .csrs
        .iter()
        .map(|pem| pem.clone().into_bytes())
        .collect()
}

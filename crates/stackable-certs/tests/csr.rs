//! Certificate signing requests: parsing and verifying PKCS#10, and a CA signing a key it does
//! not hold, honouring and refusing what the request asks for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use stackable_certs::{
    CertificateSigningRequest, Error, ExtendedKeyUsage, KeyAlgorithm, KeyUsage, SigningOptions,
    ca::{CLOCK_SKEW_BACKDATE, CaOptions, CertificateAuthority},
};
use time::OffsetDateTime;

fn request(edit: impl FnOnce(&mut CertificateParams)) -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["app.example.com".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "app");
    edit(&mut params);
    let csr = params.serialize_request(&key).unwrap();
    (csr.pem().unwrap(), key)
}

fn ca() -> CertificateAuthority {
    CertificateAuthority::new(&CaOptions::new("issuer test CA")).unwrap()
}

#[test]
fn reads_what_a_request_asks_for() {
    let (pem, _) = request(|p| {
        p.subject_alt_names
            .push(SanType::IpAddress("10.0.0.1".parse().unwrap()));
        p.subject_alt_names
            .push(SanType::URI("spiffe://cluster/ns/a".try_into().unwrap()));
        p.subject_alt_names
            .push(SanType::Rfc822Name("a@example.com".try_into().unwrap()));
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    let csr = CertificateSigningRequest::from_pem(pem.as_bytes()).unwrap();
    let info = csr.info();
    assert_eq!(info.common_names, ["app"]);
    assert_eq!(info.dns_names, ["app.example.com"]);
    assert_eq!(
        info.ip_addresses,
        ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(info.uris, ["spiffe://cluster/ns/a"]);
    assert_eq!(info.email_addresses, ["a@example.com"]);
    assert_eq!(info.requested_ca, Some(false));
    assert_eq!(info.key_usages, [KeyUsage::DigitalSignature]);
    assert_eq!(info.extended_key_usages, [ExtendedKeyUsage::ServerAuth]);
    assert_eq!(info.key_algorithm, Some(KeyAlgorithm::EcdsaP256));
}

#[test]
fn signs_the_requesters_key_with_its_names_and_the_granted_options() {
    let ca = ca();
    let (pem, key) = request(|_| {});
    let csr = CertificateSigningRequest::from_pem(pem.as_bytes()).unwrap();
    let now = OffsetDateTime::now_utc();
    let options = SigningOptions {
        validity: Duration::from_secs(3600),
        extended_key_usages: vec![ExtendedKeyUsage::ServerAuth],
        ..Default::default()
    };
    let cert = ca.sign_request_at(&csr, &options, now).unwrap();
    let info = cert.info();
    assert!(cert.is_issued_by(ca.certificate()));
    assert_eq!(info.dns_names, ["app.example.com"]);
    assert_eq!(info.common_names, ["app"]);
    assert!(!info.is_ca);
    assert!(info.server_auth && !info.client_auth);
    assert!(!info.key_cert_sign);
    let lifetime = info.lifetime();
    let expected =
        time::Duration::seconds(3600) + time::Duration::try_from(CLOCK_SKEW_BACKDATE).unwrap();
    assert!(
        (lifetime - expected).abs() <= time::Duration::seconds(1),
        "{lifetime}"
    );
    // The requester's public key, not a key of the CA's making.
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    assert_eq!(
        parsed.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
}

#[test]
fn signs_a_ca_only_when_granted_and_when_its_own_path_length_allows() {
    let (pem, _) = request(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained));
    let csr = CertificateSigningRequest::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(csr.info().requested_ca, Some(true));

    let refused = ca()
        .sign_request(&csr, &SigningOptions::default())
        .unwrap_err();
    assert!(
        matches!(refused, Error::CertificateRequestMismatch { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("CA:TRUE"), "{refused}");

    let ca_options = SigningOptions {
        is_ca: true,
        key_usages: vec![
            KeyUsage::DigitalSignature,
            KeyUsage::KeyEncipherment,
            KeyUsage::KeyCertSign,
        ],
        ..Default::default()
    };
    // The CAs of this crate have pathlen 0: what they sign as a CA would verify nowhere.
    let refused = ca().sign_request(&csr, &ca_options).unwrap_err();
    assert!(
        refused.to_string().contains("pathLenConstraint 0"),
        "{refused}"
    );

    // A root without a path length limit (made by rcgen, as an external CA would be).
    let root_key = KeyPair::generate().unwrap();
    let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
    root.distinguished_name
        .push(DnType::CommonName, "unconstrained root");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root.self_signed(&root_key).unwrap();
    let root = CertificateAuthority::from_parts(
        stackable_certs::Certificate::from_der(root_cert.der()).unwrap(),
        stackable_certs::PrivateKey::from_pem(&root_key.serialize_pem()).unwrap(),
    )
    .unwrap();
    let intermediate = root.sign_request(&csr, &ca_options).unwrap();
    assert!(intermediate.info().is_ca);
    assert!(intermediate.info().key_cert_sign);
    assert!(intermediate.is_issued_by(root.certificate()));
}

#[test]
fn refuses_usages_other_than_the_granted_ones() {
    let (pem, _) = request(|p| {
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let csr = CertificateSigningRequest::from_pem(pem.as_bytes()).unwrap();
    let server = SigningOptions {
        extended_key_usages: vec![ExtendedKeyUsage::ServerAuth],
        ..Default::default()
    };
    let refused = ca().sign_request(&csr, &server).unwrap_err();
    assert!(
        refused.to_string().contains("extendedKeyUsage"),
        "{refused}"
    );
    let only_signature = SigningOptions {
        key_usages: vec![KeyUsage::DigitalSignature],
        extended_key_usages: vec![ExtendedKeyUsage::ClientAuth],
        ..Default::default()
    };
    let refused = ca().sign_request(&csr, &only_signature).unwrap_err();
    assert!(refused.to_string().contains("keyUsage"), "{refused}");
    let client = SigningOptions {
        extended_key_usages: vec![ExtendedKeyUsage::ClientAuth],
        ..Default::default()
    };
    let cert = ca().sign_request(&csr, &client).unwrap();
    assert!(cert.info().client_auth && !cert.info().server_auth);
}

#[test]
fn clamps_to_the_ca_and_refuses_when_the_ca_has_expired() {
    let now = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::new_at(
        &CaOptions::new("short CA").validity(Duration::from_secs(600)),
        now,
    )
    .unwrap();
    let (pem, _) = request(|_| {});
    let csr = CertificateSigningRequest::from_pem(pem.as_bytes()).unwrap();
    let cert = ca
        .sign_request_at(&csr, &SigningOptions::default(), now)
        .unwrap();
    assert_eq!(cert.info().not_after, ca.certificate().info().not_after);
    let later = now + time::Duration::hours(1);
    let refused = ca
        .sign_request_at(&csr, &SigningOptions::default(), later)
        .unwrap_err();
    assert!(matches!(refused, Error::CaExpired { .. }), "{refused}");
}

#[test]
fn refuses_bad_input_without_quoting_it() {
    let (pem, _) = request(|_| {});
    // A flipped bit in the signature.
    let block = pem::parse(&pem).unwrap();
    let mut der = block.contents().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let error = CertificateSigningRequest::from_der(&der).unwrap_err();
    assert!(
        matches!(error, Error::ParseCertificateRequest { .. }),
        "{error}"
    );

    for garbage in [
        &b"not pem at all"[..],
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        b"",
    ] {
        assert!(CertificateSigningRequest::from_pem(garbage).is_err());
    }
    let twice = format!("{pem}{pem}");
    let error = CertificateSigningRequest::from_pem(twice.as_bytes()).unwrap_err();
    assert!(error.to_string().contains("exactly one"), "{error}");
    let certificate = ca().certificate().to_pem();
    assert!(CertificateSigningRequest::from_pem(certificate.as_bytes()).is_err());
    let mut trailing = block.contents().to_vec();
    trailing.push(0);
    let error = CertificateSigningRequest::from_der(&trailing).unwrap_err();
    assert!(error.to_string().contains("trailing"), "{error}");
}

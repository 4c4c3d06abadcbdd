//! Keys, certificates, bundles and CA/leaf properties: loading every key form, the X.509
//! fields the CA and leaves must carry, and property tests (PEM round trips; garbage never
//! panics).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashSet, time::Duration};

use proptest::prelude::*;
use stackable_certs::{
    CaBundle, Certificate, KeyAlgorithm, LeafOptions, PrivateKey,
    ca::{CLOCK_SKEW_BACKDATE, CaOptions, CertificateAuthority},
};
use time::OffsetDateTime;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn loads_pkcs1_sec1_and_pkcs8_keys_and_signs_with_them() {
    for (file, alg) in [
        ("rsa2048-pkcs1.pem", KeyAlgorithm::Rsa2048),
        ("ec-p256-sec1.pem", KeyAlgorithm::EcdsaP256),
        ("ec-p384-sec1.pem", KeyAlgorithm::EcdsaP384),
        ("ed25519-pkcs8.pem", KeyAlgorithm::Ed25519),
        ("ec-p256-pkcs8.pem", KeyAlgorithm::EcdsaP256),
    ] {
        let key = PrivateKey::from_pem(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(key.algorithm(), alg, "{file}");
        // Re-encoded as PKCS#8 and loadable again.
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{file}");
        assert_eq!(PrivateKey::from_pem(&pem).unwrap(), key);
        // Usable as a CA key: a CA from an existing certificate + key.
        let ca = CertificateAuthority::new(&CaOptions::default().key_algorithm(alg)).unwrap();
        assert!(CertificateAuthority::from_parts(ca.certificate().clone(), key.clone()).is_err());
        assert!(
            CertificateAuthority::from_parts(ca.certificate().clone(), ca.key().clone()).is_ok()
        );
    }
}

#[test]
fn ca_certificate_fields() {
    let before = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::new(
        &CaOptions::new("My CA")
            .organization("Stackable")
            .validity(Duration::from_secs(7 * 24 * 3600)),
    )
    .unwrap();
    let info = ca.certificate().info();
    assert!(info.is_ca);
    assert_eq!(info.path_len, Some(0));
    assert!(info.key_cert_sign);
    assert_eq!(info.common_names, ["My CA"]);
    assert_eq!(info.organizations, ["Stackable"]);
    assert_eq!(info.serial.len(), 20);
    assert!(info.serial[0] & 0x80 == 0, "serial must be positive");
    let ski = info.subject_key_id.clone().expect("subject key id");
    assert_eq!(info.authority_key_id.as_ref(), Some(&ski));
    assert!(ca.certificate().is_self_signed());
    // Backdated for clock skew, valid for the requested time.
    let skew = time::Duration::try_from(CLOCK_SKEW_BACKDATE).unwrap();
    assert!(info.not_before <= before - skew + time::Duration::SECOND);
    assert!(info.not_before >= before - skew - time::Duration::seconds(5));
    let expected_end = before + time::Duration::days(7);
    assert!((info.not_after - expected_end).abs() < time::Duration::seconds(5));
}

#[test]
fn serials_are_unique_even_for_the_same_key() {
    let ca = CertificateAuthority::new(&CaOptions::default()).unwrap();
    let mut serials = HashSet::new();
    for _ in 0..20 {
        let leaf = ca.issue(&LeafOptions::for_service("a", "b")).unwrap();
        assert_eq!(leaf.certificate.info().serial.len(), 20);
        assert!(serials.insert(leaf.certificate.info().serial.clone()));
    }
}

#[test]
fn leaf_fields_and_clamping() {
    let ca =
        CertificateAuthority::new(&CaOptions::default().validity(Duration::from_secs(24 * 3600)))
            .unwrap();
    let issued = ca
        .issue(
            &LeafOptions::for_service("hook", "ns")
                .cluster_domain("corp.internal")
                .dns_name("hook.example.com")
                .ip_address("10.1.2.3".parse().unwrap())
                .validity(Duration::from_secs(365 * 24 * 3600)),
        )
        .unwrap();
    let info = issued.certificate.info();
    assert_eq!(
        info.dns_names,
        [
            "hook",
            "hook.ns",
            "hook.ns.svc",
            "hook.ns.svc.corp.internal",
            "hook.example.com"
        ]
    );
    assert_eq!(
        info.ip_addresses,
        ["10.1.2.3".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(!info.is_ca);
    assert!(info.server_auth);
    assert!(!info.client_auth);
    assert_eq!(
        info.not_after,
        ca.certificate().info().not_after,
        "validity clamped to the CA"
    );
    assert!(info.not_before >= ca.certificate().info().not_before);
    assert!(issued.certificate.is_issued_by(ca.certificate()));
    assert_eq!(issued.chain, [ca.certificate().clone()]);
    assert!(issued.certificate.matches_key(&issued.key));

    // Signature check, not only names: a CA with the same subject but another key.
    let twin = CertificateAuthority::new(&CaOptions::default()).unwrap();
    assert_eq!(
        twin.certificate().info().subject,
        ca.certificate().info().subject
    );
    assert!(!issued.certificate.is_issued_by(twin.certificate()));
}

#[test]
fn expired_ca_cannot_issue() {
    let past = OffsetDateTime::now_utc() - time::Duration::days(10);
    let ca = CertificateAuthority::new_at(
        &CaOptions::default().validity(Duration::from_secs(24 * 3600)),
        past,
    )
    .unwrap();
    let err = ca.issue(&LeafOptions::for_service("a", "b")).unwrap_err();
    assert!(err.to_string().contains("not valid"), "{err}");
    assert!(ca.issue(&LeafOptions::new()).is_err());
}

#[test]
fn bundle_rules() {
    let ca1 = CertificateAuthority::new(&CaOptions::new("one")).unwrap();
    let ca2 = CertificateAuthority::new(&CaOptions::new("two")).unwrap();
    let pem = format!(
        "{}{}{}",
        ca1.certificate().to_pem(),
        ca2.certificate().to_pem(),
        ca1.certificate().to_pem()
    );
    let bundle = CaBundle::from_pem(&pem).unwrap();
    assert_eq!(bundle.len(), 2, "duplicates are dropped");
    assert_eq!(CaBundle::from_pem(&bundle.to_pem()).unwrap(), bundle);

    assert!(CaBundle::from_pem("").is_err());
    assert!(CaBundle::from_pem("hello").is_err());
    let leaf = ca1.issue(&LeafOptions::for_service("a", "b")).unwrap();
    let err = CaBundle::from_pem(&leaf.certificate.to_pem()).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
    assert!(CaBundle::from_pem(&leaf.key.to_pem()).is_err());

    let old = CertificateAuthority::new_at(
        &CaOptions::new("old").validity(Duration::from_secs(3600)),
        OffsetDateTime::now_utc() - time::Duration::days(1),
    )
    .unwrap();
    let mixed = CaBundle::from_certificates([old.certificate().clone(), ca1.certificate().clone()])
        .unwrap();
    let pruned = mixed.without_expired(OffsetDateTime::now_utc());
    assert_eq!(pruned.certificates(), [ca1.certificate().clone()]);
    assert!(pruned.issued(&leaf.certificate));
}

#[test]
fn certificate_pem_and_der_round_trip() {
    let ca = CertificateAuthority::new(&CaOptions::default()).unwrap();
    let cert = ca.certificate();
    assert_eq!(&Certificate::from_pem(&cert.to_pem()).unwrap(), cert);
    assert_eq!(&Certificate::from_der(cert.der()).unwrap(), cert);
    let mut trailing = cert.der().to_vec();
    trailing.push(0);
    assert!(Certificate::from_der(&trailing).is_err());
    assert_eq!(cert.info().fingerprint_hex().len(), 64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn garbage_der_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Certificate::from_der(&bytes);
        let _ = PrivateKey::from_der(&bytes);
        let _ = PrivateKey::from_pkcs8_der(&bytes);
    }

    #[test]
    fn garbage_pem_never_panics(text in ".{0,2000}") {
        let _ = Certificate::from_pem(&text);
        let _ = CaBundle::from_pem(&text);
        let _ = PrivateKey::from_pem(&text);
    }

    #[test]
    fn garbage_inside_pem_armour_is_an_error(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        label in prop::sample::select(vec!["CERTIFICATE", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]),
    ) {
        let pem = pem::encode(&pem::Pem::new(label, bytes));
        prop_assert!(Certificate::from_pem(&pem).is_err());
        prop_assert!(CaBundle::from_pem(&pem).is_err());
        prop_assert!(PrivateKey::from_pem(&pem).is_err());
    }

    #[test]
    fn mutated_certificates_never_panic(pos in 0usize..4096, byte in any::<u8>(), cut in 0usize..4096) {
        let der = sample_cert().der().to_vec();
        let mut mutated = der.clone();
        let i = pos % mutated.len();
        mutated[i] = byte;
        if let Ok(cert) = Certificate::from_der(&mutated) {
            let _ = cert.info().dns_names.len();
            let _ = cert.is_issued_by(sample_ca());
        }
        let truncated = &der[..cut % der.len()];
        prop_assert!(Certificate::from_der(truncated).is_err());
    }

    #[test]
    fn pem_round_trips(alg in prop::sample::select(vec![KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Ed25519]),
                       name in "[a-z]([a-z0-9-]{0,18}[a-z0-9])?", ns in "[a-z]([a-z0-9-]{0,18}[a-z0-9])?") {
        let key = PrivateKey::generate(alg).unwrap();
        prop_assert_eq!(&PrivateKey::from_pem(&key.to_pem()).unwrap(), &key);
        let issued = sample_ca_authority()
            .issue(&LeafOptions::for_service(name.clone(), ns.clone()).key_algorithm(alg))
            .unwrap();
        let cert = &issued.certificate;
        prop_assert_eq!(&Certificate::from_pem(&cert.to_pem()).unwrap(), cert);
        let svc = format!("{name}.{ns}.svc");
        prop_assert!(cert.info().dns_names.contains(&svc));
        let bundle = CaBundle::from_certificates([sample_ca().clone()]).unwrap();
        prop_assert_eq!(CaBundle::from_pem(&bundle.to_pem()).unwrap(), bundle);
    }
}

fn sample_ca_authority() -> &'static CertificateAuthority {
    static CA: std::sync::OnceLock<CertificateAuthority> = std::sync::OnceLock::new();
    CA.get_or_init(|| CertificateAuthority::new(&CaOptions::default()).unwrap())
}

fn sample_ca() -> &'static Certificate {
    sample_ca_authority().certificate()
}

fn sample_cert() -> &'static Certificate {
    static LEAF: std::sync::OnceLock<Certificate> = std::sync::OnceLock::new();
    LEAF.get_or_init(|| {
        sample_ca_authority()
            .issue(&LeafOptions::for_service("a", "b").ip_address("::1".parse().unwrap()))
            .unwrap()
            .certificate
    })
}

#[test]
fn absurd_validities_are_errors_not_panics() {
    assert!(CertificateAuthority::new(&CaOptions::default().validity(Duration::MAX)).is_err());
    assert!(
        CertificateAuthority::new(
            &CaOptions::default().validity(Duration::from_secs(200 * 365 * 86400))
        )
        .is_err()
    );
    assert!(CertificateAuthority::new(&CaOptions::default().validity(Duration::ZERO)).is_err());
    let ca = CertificateAuthority::new(&CaOptions::default()).unwrap();
    assert!(
        ca.issue(&LeafOptions::for_service("a", "b").validity(Duration::MAX))
            .is_err()
    );
    assert!(
        ca.issue(&LeafOptions::for_service("a", "b").validity(Duration::ZERO))
            .is_err()
    );
}

#[test]
fn advance_with_an_unvalidated_policy_does_not_panic() {
    use stackable_certs::rotation::{RotationPolicy, RotationState, advance};
    for policy in [
        RotationPolicy {
            renew_remaining_fraction: f64::NAN,
            ..RotationPolicy::default()
        },
        RotationPolicy {
            renew_remaining_fraction: 1e300,
            propagation_delay: Duration::MAX,
            overlap: Duration::MAX,
            ..RotationPolicy::default()
        },
        RotationPolicy {
            ca_validity: Duration::MAX,
            ..RotationPolicy::default()
        },
    ] {
        let _ = advance(
            &RotationState::empty(),
            &policy,
            &LeafOptions::for_service("a", "b"),
            OffsetDateTime::now_utc(),
        );
    }
}

#[test]
fn invalid_dns_names_are_rejected() {
    let ca = CertificateAuthority::new(&CaOptions::default()).unwrap();
    for bad in [
        "",
        "has space",
        "a..b",
        "-a",
        "ä.example",
        "a\u{0}b",
        &"x".repeat(64),
    ] {
        assert!(
            ca.issue(&LeafOptions::new().dns_name(bad)).is_err(),
            "{bad:?} accepted"
        );
    }
    for good in [
        "a",
        "*.example.com",
        "my-hook.ns.svc.cluster.local.",
        "x1.y_2",
    ] {
        ca.issue(&LeafOptions::new().dns_name(good))
            .unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
}

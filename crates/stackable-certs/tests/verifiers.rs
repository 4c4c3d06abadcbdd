//! Generated certificates checked by independent verifiers, for every key algorithm:
//! rustls/webpki (aws-lc-rs), OpenSSL and Go's crypto/x509 (what kube-apiserver uses),
//! plus a real in-memory TLS handshake with `ServingMaterial::certified_key`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
};

use stackable_certs::{
    CaBundle, KeyAlgorithm, LeafOptions, ServingMaterial,
    ca::{CaOptions, CertificateAuthority},
};
use time::OffsetDateTime;

const SERVICE: &str = "my-webhook";
const NAMESPACE: &str = "ops";

struct Case {
    dir: PathBuf,
    bundle: CaBundle,
    material: ServingMaterial,
}

fn make_case(root: &Path, alg: KeyAlgorithm) -> Case {
    let ca =
        CertificateAuthority::new(&CaOptions::new(format!("test CA {alg}")).key_algorithm(alg))
            .unwrap();
    let issued = ca
        .issue(
            &LeafOptions::for_service(SERVICE, NAMESPACE)
                .ip_address("127.0.0.1".parse().unwrap())
                .ip_address("::1".parse().unwrap())
                .key_algorithm(alg),
        )
        .unwrap();
    assert_eq!(issued.key.algorithm(), alg);
    assert_eq!(issued.certificate.info().key_algorithm, Some(alg));
    let bundle = CaBundle::from_certificates([ca.certificate().clone()]).unwrap();
    let material = ServingMaterial::from_issued(issued, bundle.clone()).unwrap();
    let dir = root.join(alg.name());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), bundle.to_pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), material.chain_pem()).unwrap();
    std::fs::write(dir.join("tls.key"), material.key().to_pem()).unwrap();
    // A second, unrelated CA: nothing it did not sign may verify.
    let other = CertificateAuthority::new(&CaOptions::new("other CA").key_algorithm(alg)).unwrap();
    std::fs::write(dir.join("other-ca.crt"), other.certificate().to_pem()).unwrap();
    Case {
        dir,
        bundle,
        material,
    }
}

fn cases(root: &Path) -> Vec<Case> {
    KeyAlgorithm::ALL
        .into_iter()
        .map(|alg| make_case(root, alg))
        .collect()
}

const GOOD_NAMES: [&str; 6] = [
    "my-webhook",
    "my-webhook.ops",
    "my-webhook.ops.svc",
    "my-webhook.ops.svc.cluster.local",
    "127.0.0.1",
    "::1",
];
const BAD_NAMES: [&str; 3] = ["other.ops.svc", "my-webhook.default.svc", "10.0.0.1"];

#[test]
fn rustls_webpki_accepts_every_algorithm() {
    let tmp = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    for case in cases(tmp.path()) {
        let leaf = case.material.leaf();
        for name in GOOD_NAMES {
            common::webpki_verify(&case.bundle, leaf, name, now)
                .unwrap_or_else(|e| panic!("{}: {name}: {e}", case.dir.display()));
        }
        for name in BAD_NAMES {
            assert!(
                common::webpki_verify(&case.bundle, leaf, name, now).is_err(),
                "{name} must not verify"
            );
        }
        let other =
            CaBundle::from_pem(&std::fs::read_to_string(case.dir.join("other-ca.crt")).unwrap())
                .unwrap();
        assert!(common::webpki_verify(&other, leaf, GOOD_NAMES[2], now).is_err());
        // Not yet valid / expired.
        let late = leaf.info().not_after + time::Duration::HOUR;
        assert!(common::webpki_verify(&case.bundle, leaf, GOOD_NAMES[2], late).is_err());
    }
}

fn openssl() -> &'static str {
    let path = "/usr/bin/openssl";
    assert!(
        Path::new(path).exists() || Command::new("openssl").arg("version").output().is_ok(),
        "openssl is required for this test but was not found (looked for {path} and `openssl` on PATH)"
    );
    if Path::new(path).exists() {
        path
    } else {
        "openssl"
    }
}

fn openssl_verify(dir: &Path, ca_file: &str, name: &str) -> (bool, String) {
    let flag = if name.parse::<IpAddr>().is_ok() {
        "-verify_ip"
    } else {
        "-verify_hostname"
    };
    let out = Command::new(openssl())
        .current_dir(dir)
        .args([
            "verify",
            "-purpose",
            "sslserver",
            flag,
            name,
            "-CAfile",
            ca_file,
            "tls.crt",
        ])
        .output()
        .expect("failed to run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.contains("tls.crt: OK"), text)
}

#[test]
fn openssl_accepts_every_algorithm() {
    let tmp = tempfile::tempdir().unwrap();
    for case in cases(tmp.path()) {
        for name in GOOD_NAMES {
            let (ok, text) = openssl_verify(&case.dir, "ca.crt", name);
            assert!(
                ok,
                "{}: openssl rejected {name}: {text}",
                case.dir.display()
            );
        }
        for name in BAD_NAMES {
            let (ok, text) = openssl_verify(&case.dir, "ca.crt", name);
            assert!(
                !ok,
                "{}: openssl accepted {name}: {text}",
                case.dir.display()
            );
        }
        let (ok, text) = openssl_verify(&case.dir, "other-ca.crt", GOOD_NAMES[2]);
        assert!(
            !ok,
            "openssl accepted a leaf against an unrelated CA: {text}"
        );

        // OpenSSL also reads our PKCS#8 key and agrees it matches the certificate.
        let key_pub = Command::new(openssl())
            .current_dir(&case.dir)
            .args(["pkey", "-in", "tls.key", "-pubout"])
            .output()
            .unwrap();
        let cert_pub = Command::new(openssl())
            .current_dir(&case.dir)
            .args(["x509", "-in", "tls.crt", "-noout", "-pubkey"])
            .output()
            .unwrap();
        assert!(key_pub.status.success() && cert_pub.status.success());
        assert_eq!(key_pub.stdout, cert_pub.stdout);
    }
}

fn go_verify(lines: &str) -> (bool, String) {
    let go_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go-verify");
    let child = Command::new("go")
        .args(["run", "."])
        .current_dir(&go_dir)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "the Go toolchain (`go`) is required for this test but could not be started: {e}"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn go_crypto_x509_accepts_every_algorithm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    let mut expected = 0;
    for case in cases(tmp.path()) {
        let ca = case.dir.join("ca.crt");
        let other = case.dir.join("other-ca.crt");
        let leaf = case.dir.join("tls.crt");
        for name in GOOD_NAMES {
            lines += &format!("{} {} {name} server ok\n", ca.display(), leaf.display());
            expected += 1;
        }
        for name in BAD_NAMES {
            lines += &format!("{} {} {name} server fail\n", ca.display(), leaf.display());
            expected += 1;
        }
        lines += &format!(
            "{} {} {} server fail\n",
            other.display(),
            leaf.display(),
            GOOD_NAMES[2]
        );
        // Server leaves carry no clientAuth EKU.
        lines += &format!("{} {} - client fail\n", ca.display(), leaf.display());
        expected += 2;
    }
    // A client certificate for the Kubernetes admin (CN=admin, O=system:masters).
    let ca = CertificateAuthority::new(&CaOptions::default()).unwrap();
    let admin = ca
        .issue(
            &LeafOptions::new()
                .common_name("admin")
                .organization("system:masters")
                .client_auth(true)
                .server_auth(false),
        )
        .unwrap();
    assert_eq!(admin.certificate.info().organizations, ["system:masters"]);
    assert_eq!(admin.certificate.info().common_names, ["admin"]);
    let admin_dir = tmp.path().join("admin");
    std::fs::create_dir_all(&admin_dir).unwrap();
    std::fs::write(admin_dir.join("ca.crt"), ca.certificate().to_pem()).unwrap();
    std::fs::write(admin_dir.join("tls.crt"), admin.certificate.to_pem()).unwrap();
    lines += &format!(
        "{0}/ca.crt {0}/tls.crt - client ok\n{0}/ca.crt {0}/tls.crt admin server fail\n",
        admin_dir.display()
    );
    expected += 2;

    let (ok, text) = go_verify(&lines);
    assert!(ok, "Go crypto/x509 disagreed:\n{text}");
    assert!(
        text.contains(&format!("cases={expected} unexpected=0")),
        "unexpected Go output:\n{text}"
    );
}

/// A full TLS 1.3 handshake in memory with the material's `certified_key`.
#[test]
fn rustls_handshake_with_certified_key() {
    use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    for alg in KeyAlgorithm::ALL {
        let material = ServingMaterial::generate(
            &CaOptions::default().key_algorithm(alg),
            &LeafOptions::for_service(SERVICE, NAMESPACE).key_algorithm(alg),
        )
        .unwrap();
        let certified = material.certified_key().unwrap();
        let server_config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(certified)));
        let mut roots = rustls::RootCertStore::empty();
        for ca in material.ca_bundle().certificates() {
            roots.add(ca.to_rustls()).unwrap();
        }
        let client_config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client = ClientConnection::new(
            Arc::new(client_config),
            "my-webhook.ops.svc".try_into().unwrap(),
        )
        .unwrap();
        let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client
                .process_new_packets()
                .unwrap_or_else(|e| panic!("{alg}: handshake failed: {e}"));
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        assert!(!client.is_handshaking(), "{alg}: handshake did not finish");
    }
}

#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

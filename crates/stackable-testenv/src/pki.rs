//! The certificates and keys of a test control plane, generated with `stackable-certs`.
//!
//! One CA signs the API server's serving certificate (SANs `127.0.0.1`, `localhost`,
//! `kubernetes`, `kubernetes.default`, `kubernetes.default.svc`, ...) and an admin client
//! certificate (`CN=admin`, `O=system:masters`, clientAuth), and is the API server's
//! `--client-ca-file`. A separate RSA key signs and verifies service-account tokens
//! (`--service-account-key-file` reads RSA keys in PKCS#8 but EC keys only in SEC1 form,
//! so RSA it is). See [PKI certificates and requirements].
//!
//! [PKI certificates and requirements]: https://kubernetes.io/docs/setup/best-practices/certificates/

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use snafu::{ResultExt, Snafu};
use stackable_certs::{CaOptions, CertificateAuthority, KeyAlgorithm, LeafOptions, PrivateKey};

/// How long the generated certificates are valid (a test run is far shorter).
const VALIDITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Errors while generating or writing the material.
#[derive(Debug, Snafu)]
pub enum Error {
    /// Generating a certificate or key failed.
    #[snafu(display("cannot generate the {what}"))]
    Generate {
        /// Which certificate or key.
        what: String,
        /// The cause.
        source: stackable_certs::Error,
    },

    /// Writing a file failed.
    #[snafu(display("cannot write {path:?}"))]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Where the material is written.
#[derive(Clone, Debug)]
pub(crate) struct Files {
    pub(crate) dir: PathBuf,
    pub(crate) ca_cert: PathBuf,
    pub(crate) serving_cert: PathBuf,
    pub(crate) serving_key: PathBuf,
    pub(crate) service_account_key: PathBuf,
}

impl Files {
    pub(crate) fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            service_account_key: dir.join("service-account.key"),
        }
    }
}

/// The generated material: files for the API server, PEM for the kubeconfig.
pub(crate) struct Pki {
    pub(crate) files: Files,
    pub(crate) ca_pem: String,
    pub(crate) admin_cert_pem: String,
    admin_key_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("files", &self.files)
            .field("admin_key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// The admin client key.
    pub(crate) fn admin_key_pem(&self) -> &str {
        &self.admin_key_pem
    }
}

/// Generates the material and writes the API server's files into `dir`.
pub(crate) fn generate(dir: &Path) -> Result<Pki, Error> {
    let files = Files::in_dir(dir);
    let write = |path: &Path, contents: &str| -> Result<(), Error> {
        std::fs::write(path, contents).context(WriteSnafu { path })
    };
    std::fs::create_dir_all(dir).context(WriteSnafu { path: dir })?;

    let ca = CertificateAuthority::new(&CaOptions::new("stackable-testenv-ca").validity(VALIDITY))
        .context(GenerateSnafu { what: "CA" })?;

    let mut serving = LeafOptions::new()
        .common_name("kube-apiserver")
        .server_auth(true)
        .validity(VALIDITY);
    for name in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        serving = serving.dns_name(name);
    }
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    ] {
        serving = serving.ip_address(ip);
    }
    let serving = ca.issue(&serving).context(GenerateSnafu {
        what: "API server serving certificate",
    })?;

    let admin = ca
        .issue(
            &LeafOptions::new()
                .common_name("admin")
                .organization("system:masters")
                .client_auth(true)
                .server_auth(false)
                .validity(VALIDITY),
        )
        .context(GenerateSnafu {
            what: "admin client certificate",
        })?;

    let service_account = PrivateKey::generate(KeyAlgorithm::Rsa2048).context(GenerateSnafu {
        what: "service-account signing key",
    })?;

    let ca_pem = ca.certificate().to_pem();
    write(&files.ca_cert, &ca_pem)?;
    write(&files.serving_cert, &serving.certificate.to_pem())?;
    write(&files.serving_key, &serving.key.to_pem())?;
    write(&files.service_account_key, &service_account.to_pem())?;

    Ok(Pki {
        files,
        ca_pem,
        admin_cert_pem: admin.certificate.to_pem(),
        admin_key_pem: admin.key.to_pem(),
    })
}

#[cfg(test)]
mod tests {
    use stackable_certs::Certificate;

    use super::*;

    #[test]
    fn material_fits_the_api_server() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = generate(tmp.path()).unwrap();
        let ca = Certificate::from_pem(&pki.ca_pem).unwrap();

        let serving =
            Certificate::from_pem(&std::fs::read_to_string(&pki.files.serving_cert).unwrap())
                .unwrap();
        assert!(serving.is_issued_by(&ca));
        let info = serving.info();
        for name in ["localhost", "kubernetes.default.svc"] {
            assert!(info.dns_names.iter().any(|n| n == name), "{name} missing");
        }
        assert!(info.ip_addresses.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));

        let admin = Certificate::from_pem(&pki.admin_cert_pem).unwrap();
        assert!(admin.is_issued_by(&ca));
        assert_eq!(admin.info().common_names, vec!["admin".to_owned()]);
        assert_eq!(
            admin.info().organizations,
            vec!["system:masters".to_owned()]
        );
        assert!(admin.matches_key(&PrivateKey::from_pem(pki.admin_key_pem()).unwrap()));

        let sa = std::fs::read_to_string(&pki.files.service_account_key).unwrap();
        assert!(PrivateKey::from_pem(&sa).unwrap().algorithm().is_rsa());
        assert!(!format!("{pki:?}").contains("PRIVATE KEY"));
    }
}

//! A client certificate for the API server's admission webhook calls: the
//! `--admission-control-config-file` of kube-apiserver, and the kubeconfig it names.
//!
//! kube-apiserver presents a client certificate to an admission webhook when its admission
//! configuration gives the `ValidatingAdmissionWebhook` and `MutatingAdmissionWebhook` plugins
//! a kubeconfig whose `users` match the webhook
//! ([Kubernetes docs](https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#authenticate-apiservers)).
//! For a Service webhook the API server looks the user up as `<service>.<namespace>.svc:<port>`
//! ([`service_user`]); a webhook by URL as the URL's `host:port`. The files are read once, when
//! kube-apiserver starts: write them (with the port of the webhook server) before
//! [`TestEnvBuilder::start`](crate::env::TestEnvBuilder::start). CRD conversion webhooks get no
//! client certificate whatever the files say.
//!
//! ```no_run
//! use stackable_testenv::{TestEnv, webhooks::client_auth::{WebhookClientAuth, service_user}};
//!
//! # async fn example(cert_pem: &str, key_pem: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let port = 8443; // the webhook server's (or the forwarder's in front of it)
//! let files = WebhookClientAuth::new([service_user("my-namespace", "hook", port)])
//!     .write(dir.path(), cert_pem, key_pem)?;
//! let env = TestEnv::builder().apiserver_flag(files.apiserver_flag()).start().await?;
//! # let _ = env;
//! # Ok(())
//! # }
//! ```

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use base64::Engine as _;
use snafu::{OptionExt, ResultExt, Snafu};

/// Errors writing the files.
#[derive(Debug, Snafu)]
pub enum Error {
    /// A file could not be written.
    #[snafu(display("cannot write {}", path.display()))]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// PEM given to [`tls_client_config`] holds no usable certificate or key.
    #[snafu(display("the {what} PEM holds no usable {what}"))]
    Pem {
        /// Which PEM: `CA bundle`, `client certificate` or `client key`.
        what: &'static str,
    },

    /// rustls refused the configuration (versions, key).
    #[snafu(display("cannot build the TLS client configuration"))]
    Tls {
        /// The cause.
        source: rustls::Error,
    },
}

/// A rustls client configuration (aws-lc-rs) trusting only the certificates of
/// `ca_bundle_pem`, speaking `versions`, offering `alpn` and presenting `client`
/// (certificate PEM, key PEM) when given: how a test calls a webhook server as the API server
/// with its client certificate does, or as a caller without one.
pub fn tls_client_config(
    ca_bundle_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
    client: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_bundle_pem.as_bytes()) {
        let cert = cert.ok().context(PemSnafu { what: "CA bundle" })?;
        roots.add(cert).context(TlsSnafu)?;
    }
    if roots.is_empty() {
        return PemSnafu { what: "CA bundle" }.fail();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .context(TlsSnafu)?
    .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .ok()
                .filter(|chain| !chain.is_empty())
                .context(PemSnafu {
                    what: "client certificate",
                })?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .ok()
                .context(PemSnafu { what: "client key" })?;
            builder
                .with_client_auth_cert(chain, key)
                .context(TlsSnafu)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The user name kube-apiserver looks up for a webhook called through the Service `service`
/// in `namespace` on `port` (its first candidate; `*.svc` style wildcards match a port other
/// than 443 only with the port, see docs/webhook-server.md).
pub fn service_user(namespace: &str, service: &str, port: u16) -> String {
    format!("{service}.{namespace}.svc:{port}")
}

/// The users (webhook targets) that get the client certificate; see the [module](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookClientAuth {
    users: Vec<String>,
}

/// The files [`WebhookClientAuth::write`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFiles {
    /// The `AdmissionConfiguration` for `--admission-control-config-file`.
    pub admission_configuration: PathBuf,
    /// The kubeconfig it names, holding the client certificate and key.
    pub kubeconfig: PathBuf,
}

impl WrittenFiles {
    /// `--admission-control-config-file=<path>`, for
    /// [`TestEnvBuilder::apiserver_flag`](crate::env::TestEnvBuilder::apiserver_flag).
    pub fn apiserver_flag(&self) -> String {
        format!(
            "--admission-control-config-file={}",
            self.admission_configuration.display()
        )
    }
}

impl WebhookClientAuth {
    /// The client certificate goes to webhooks matching one of `users` (e.g.
    /// [`service_user`], `127.0.0.1:8443`, `*.svc`).
    pub fn new(users: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            users: users.into_iter().map(Into::into).collect(),
        }
    }

    /// The `AdmissionConfiguration` (the YAML of docs/webhook-server.md "Authenticating the API
    /// server") pointing both webhook admission plugins at `kubeconfig` (an absolute path).
    pub fn admission_configuration(kubeconfig: &Path) -> String {
        let plugin = |name: &str| {
            format!(
                "  - name: {name}\n    configuration:\n      apiVersion: apiserver.config.k8s.io/v1\n      kind: WebhookAdmissionConfiguration\n      kubeConfigFile: {}\n",
                kubeconfig.display()
            )
        };
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n{}{}",
            plugin("ValidatingAdmissionWebhook"),
            plugin("MutatingAdmissionWebhook")
        )
    }

    /// The kubeconfig: one user per target, each with the client certificate and key (PEM).
    pub fn kubeconfig(&self, cert_pem: &str, key_pem: &str) -> String {
        let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
        let mut kubeconfig = "apiVersion: v1\nkind: Config\nusers:\n".to_owned();
        for user in &self.users {
            kubeconfig.push_str(&format!(
                "  - name: \"{user}\"\n    user:\n      client-certificate-data: {}\n      client-key-data: {}\n",
                b64(cert_pem),
                b64(key_pem)
            ));
        }
        kubeconfig
    }

    /// Writes `admission.yaml` and `webhook-clients.kubeconfig` into `dir` (absolute paths
    /// are written into the configuration when `dir` is absolute, as kube-apiserver needs).
    pub fn write(&self, dir: &Path, cert_pem: &str, key_pem: &str) -> Result<WrittenFiles, Error> {
        let files = WrittenFiles {
            admission_configuration: dir.join("admission.yaml"),
            kubeconfig: dir.join("webhook-clients.kubeconfig"),
        };
        let write = |path: &Path, contents: String| {
            std::fs::write(path, contents).context(WriteSnafu { path })
        };
        write(&files.kubeconfig, self.kubeconfig(cert_pem, key_pem))?;
        write(
            &files.admission_configuration,
            Self::admission_configuration(&files.kubeconfig),
        )?;
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_both_plugins_and_one_user_per_target() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let auth = WebhookClientAuth::new([service_user("ns", "hook", 8443), "*.svc".to_owned()]);
        let files = auth
            .write(dir.path(), "CERT", "KEY")
            .unwrap_or_else(|e| panic!("{e}"));
        let admission = std::fs::read_to_string(&files.admission_configuration).unwrap_or_default();
        let kubeconfig_line = format!("kubeConfigFile: {}\n", files.kubeconfig.display());
        assert_eq!(
            admission.matches(&kubeconfig_line).count(),
            2,
            "{admission}"
        );
        assert!(admission.contains("- name: ValidatingAdmissionWebhook"));
        assert!(admission.contains("- name: MutatingAdmissionWebhook"));
        let kubeconfig = std::fs::read_to_string(&files.kubeconfig).unwrap_or_default();
        assert!(
            kubeconfig.contains("- name: \"hook.ns.svc:8443\""),
            "{kubeconfig}"
        );
        assert!(kubeconfig.contains("- name: \"*.svc\""), "{kubeconfig}");
        // base64("CERT") and base64("KEY"), once per user.
        assert_eq!(
            kubeconfig
                .matches("client-certificate-data: Q0VSVA==")
                .count(),
            2
        );
        assert_eq!(kubeconfig.matches("client-key-data: S0VZ").count(), 2);
        assert_eq!(
            files.apiserver_flag(),
            format!(
                "--admission-control-config-file={}",
                dir.path().join("admission.yaml").display()
            )
        );
    }
}

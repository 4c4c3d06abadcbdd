//! Authenticating the API server: a client certificate from a configured CA, required at the
//! TLS handshake, with the CA bundle swapped in place like the serving certificate.
//!
//! The Kubernetes API server presents a client certificate to an admission webhook when its
//! `--admission-control-config-file` names a kubeconfig whose `users` match the webhook
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#authenticate-apiservers>).
//! This is controller-runtime's `ClientCAName`: the client certificate must chain to the CA
//! bundle; like controller-runtime, any certificate from that CA is accepted unless
//! [`ClientAuth::allowed_names`] narrows it to some common names or DNS names.
//!
//! The API server presents no client certificate to CRD conversion webhooks (apiextensions-
//! apiserver builds their client from an empty kubeconfig), so a server requiring one cannot
//! serve conversion: [`WebhookServerBuilder::build`](crate::WebhookServerBuilder::build) refuses
//! the combination.

use std::{
    fmt,
    path::PathBuf,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use rustls::{
    DistinguishedName, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, UnixTime},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use snafu::ResultExt;
use stackable_certs::{CaBundle, Certificate};
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::Metrics,
    source::{BadClientCaSnafu, SourceError, read_files, watch_files},
    tls::{ClientCaAnchorSnafu, ClientCaSnafu, ClientVerifierSnafu, TlsError, provider},
};

/// Where the trusted client CA bundle comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ClientCaSource {
    /// A PEM file, reloaded on change.
    File {
        path: PathBuf,
        poll_interval: Duration,
    },
    /// A fixed bundle (swap it by hand through [`ClientCaVerifier::swap`]).
    Bundle(CaBundle),
}

/// Requires a client certificate chaining to a CA bundle (see the [module](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAuth {
    source: ClientCaSource,
    allowed_names: Vec<String>,
}

impl ClientAuth {
    /// Trust the CA certificates of a PEM file (e.g. `ca.crt` of a mounted Secret or
    /// ConfigMap), reloaded when it changes (file-system events and every 10 s, like
    /// [`FileSource`](crate::FileSource)).
    pub fn ca_file(path: impl Into<PathBuf>) -> Self {
        Self::from_source(ClientCaSource::File {
            path: path.into(),
            poll_interval: Duration::from_secs(10),
        })
    }

    /// Trust a fixed bundle (swap another in with [`ClientCaVerifier::swap`], reached through
    /// [`RunningServer::client_ca`](crate::RunningServer::client_ca)).
    pub fn ca_bundle(bundle: CaBundle) -> Self {
        Self::from_source(ClientCaSource::Bundle(bundle))
    }

    fn from_source(source: ClientCaSource) -> Self {
        Self {
            source,
            allowed_names: Vec::new(),
        }
    }

    /// Accept only certificates whose subject common name or a DNS subjectAltName is one of
    /// `names` (default: any certificate from the CA, as controller-runtime does).
    #[must_use]
    pub fn allowed_names(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Changes how often the CA file is compared without a file-system event (default 10 s;
    /// no effect on [`ClientAuth::ca_bundle`]).
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        if let ClientCaSource::File { poll_interval, .. } = &mut self.source {
            *poll_interval = interval;
        }
        self
    }

    /// Loads the first bundle and, for a file, starts watching it.
    pub(crate) async fn start(
        self,
        metrics: Metrics,
        token: CancellationToken,
    ) -> Result<Arc<ClientCaVerifier>, SourceError> {
        match self.source {
            ClientCaSource::Bundle(bundle) => {
                let verifier = ClientCaVerifier::new(&bundle, self.allowed_names)
                    .context(BadClientCaSnafu { path: "memory" })?;
                Ok(Arc::new(verifier))
            }
            ClientCaSource::File {
                path,
                poll_interval,
            } => {
                let paths = vec![path.clone()];
                let first = read_files(&paths).await?;
                let bundle = parse_bundle(&first[0], &path)
                    .context(BadClientCaSnafu { path: path.clone() })?;
                let verifier = Arc::new(
                    ClientCaVerifier::new(&bundle, self.allowed_names)
                        .context(BadClientCaSnafu { path: path.clone() })?,
                );
                tracing::info!(path = %path.display(), cas = bundle.len(), "client CA bundle loaded");
                let swapper = verifier.clone();
                watch_files(paths, poll_interval, first, token, move |contents| {
                    let swapped = parse_bundle(&contents[0], &path)
                        .and_then(|bundle| swapper.swap(&bundle).map(|()| bundle.len()));
                    match swapped {
                        Ok(cas) => {
                            tracing::info!(path = %path.display(), cas, "client CA bundle reloaded")
                        }
                        Err(error) => {
                            metrics.cert_reload_errors.inc();
                            tracing::warn!(
                                path = %path.display(),
                                error = %snafu::Report::from_error(error),
                                "refused a client CA reload; the previous bundle keeps verifying"
                            );
                        }
                    }
                })?;
                Ok(verifier)
            }
        }
    }
}

fn parse_bundle(pem: &[u8], path: &std::path::Path) -> Result<CaBundle, TlsError> {
    // Not UTF-8 is not PEM either: the lossy text fails to parse with a PEM error.
    CaBundle::from_pem(&String::from_utf8_lossy(pem)).context(ClientCaSnafu {
        source_name: path.display().to_string(),
    })
}

/// A rustls [`ClientCertVerifier`] over the current client CA bundle: every handshake reads the
/// bundle stored last ([`ClientCaVerifier::swap`]), established connections keep the
/// verdict they got.
///
/// The `CertificateRequest` names no CAs (empty `certificate_authorities`): the names would
/// change with the bundle, and clients then send the certificate they have. The API server's
/// client (client-go) sends its configured certificate whatever the request names.
pub struct ClientCaVerifier {
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    allowed_names: Vec<String>,
    schemes: Vec<SignatureScheme>,
}

impl fmt::Debug for ClientCaVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCaVerifier")
            .field("allowed_names", &self.allowed_names)
            .finish_non_exhaustive()
    }
}

impl ClientCaVerifier {
    /// A verifier trusting `bundle`; `allowed_names` empty accepts any certificate from it.
    pub fn new(bundle: &CaBundle, allowed_names: Vec<String>) -> Result<Self, TlsError> {
        let inner = webpki_verifier(bundle)?;
        let schemes = inner.supported_verify_schemes();
        Ok(Self {
            current: RwLock::new(inner),
            allowed_names,
            schemes,
        })
    }

    /// Trusts `bundle` from the next handshake on.
    pub fn swap(&self, bundle: &CaBundle) -> Result<(), TlsError> {
        let inner = webpki_verifier(bundle)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = inner;
        Ok(())
    }

    fn inner(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn name_allowed(&self, end_entity: &CertificateDer<'_>) -> bool {
        if self.allowed_names.is_empty() {
            return true;
        }
        let Ok(certificate) = Certificate::from_der(end_entity.as_ref()) else {
            return false;
        };
        let info = certificate.info();
        info.common_names
            .iter()
            .chain(&info.dns_names)
            .any(|name| self.allowed_names.contains(name))
    }
}

fn webpki_verifier(bundle: &CaBundle) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in bundle.certificates() {
        roots
            .add(certificate.to_rustls())
            .context(ClientCaAnchorSnafu)?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .context(ClientVerifierSnafu)
}

impl ClientCertVerifier for ClientCaVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner()
            .verify_client_cert(end_entity, intermediates, now)?;
        if !self.name_allowed(end_entity) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

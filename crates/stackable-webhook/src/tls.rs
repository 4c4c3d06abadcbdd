//! TLS for the webhook server: a hot-swappable certificate resolver and the rustls
//! [`ServerConfig`] built on the aws-lc-rs provider (TLS 1.2 and 1.3 only), shaped by
//! [`TlsOptions`] (minimum version, cipher suites, ALPN).
//!
//! The Kubernetes API server calls webhooks over HTTPS and verifies the serving certificate
//! against the `caBundle` of the webhook configuration
//! (<https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>).
//! The [`CertResolver`] holds the current [`CertifiedKey`]; swapping it changes what new TLS
//! handshakes get, while established connections keep the key they negotiated with.

use std::{
    fmt,
    sync::{Arc, PoisonError, RwLock},
};

use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert, danger::ClientCertVerifier},
    sign::CertifiedKey,
};
use snafu::{OptionExt, ResultExt, Snafu};

use crate::metrics::Metrics;

/// Errors raised while loading certificates or building the TLS configuration.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
pub enum TlsError {
    /// The certificate chain and key could not be loaded (see
    /// [`stackable_certs::serving::certified_key_from_pem`]).
    #[snafu(display("the certificate and key in {source_name} are unusable"))]
    LoadKeyPair {
        /// Where the PEM came from (a path or "memory").
        source_name: String,
        /// What is wrong.
        source: stackable_certs::Error,
    },

    /// The rustls server configuration could not be built.
    #[snafu(display("failed to build the rustls server configuration"))]
    BuildServerConfig {
        /// The rustls error.
        source: rustls::Error,
    },

    /// A cipher suite of [`TlsOptions::cipher_suites`] is not one of the aws-lc-rs provider.
    #[snafu(display("the cipher suite {suite} is not offered by the aws-lc-rs provider"))]
    UnknownCipherSuite {
        /// The suite, as rustls names it.
        suite: String,
    },

    /// A TLS version the options allow has no cipher suite in [`TlsOptions::cipher_suites`].
    #[snafu(display(
        "{version} is allowed but no {version} cipher suite is listed: clients speaking it would be refused; list one or raise min_version"
    ))]
    NoSuiteForVersion {
        /// The version without a suite.
        version: &'static str,
    },

    /// An ALPN protocol the server cannot speak.
    #[snafu(display(
        "the ALPN protocol {protocol:?} is not served: only \"h2\" and \"http/1.1\" are"
    ))]
    UnsupportedAlpn {
        /// The protocol, lossily decoded.
        protocol: String,
    },

    /// ALPN offers `h2` while HTTP/2 is off.
    #[snafu(display(
        "ALPN offers \"h2\" but HTTP/2 is off: enable WebhookServerBuilder::http2 or drop \"h2\""
    ))]
    AlpnH2WithoutHttp2,

    /// The client CA bundle is unusable.
    #[snafu(display("the client CA bundle from {source_name} is unusable"))]
    ClientCa {
        /// Where the PEM came from (a path or "memory").
        source_name: String,
        /// What is wrong.
        source: stackable_certs::Error,
    },

    /// A certificate of the client CA bundle is no usable trust anchor.
    #[snafu(display("a certificate of the client CA bundle is no usable trust anchor"))]
    ClientCaAnchor {
        /// The rustls error.
        source: rustls::Error,
    },

    /// rustls refused to build a client certificate verifier for the bundle.
    #[snafu(display("failed to build the client certificate verifier"))]
    ClientVerifier {
        /// The rustls error.
        source: rustls::server::VerifierBuilderError,
    },
}

/// The lowest TLS version the server accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinTlsVersion {
    /// TLS 1.2 and 1.3 (the default; what kube-apiserver's own `--tls-min-version` defaults to).
    #[default]
    Tls12,
    /// TLS 1.3 only. Every supported Kubernetes API server speaks it.
    Tls13,
}

/// How the server speaks TLS, beyond its certificate: checked by
/// [`WebhookServerBuilder::build`](crate::WebhookServerBuilder::build).
///
/// The defaults are safe: TLS 1.2 and 1.3, the aws-lc-rs provider's default suites (AEAD
/// only, forward-secret key exchange), ALPN `h2` + `http/1.1` when HTTP/2 is enabled, else
/// `http/1.1`. The aws-lc-rs provider is the only one: there is no switch for another (with the
/// crate's `fips` feature it is aws-lc's FIPS module, offering only FIPS suites and key exchanges).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// The lowest version accepted.
    pub min_version: MinTlsVersion,
    /// The cipher suites, in the server's order of preference (`None`: the provider's
    /// defaults). Every allowed version needs at least one.
    pub cipher_suites: Option<Vec<rustls::CipherSuite>>,
    /// The ALPN protocols offered, in order (`None`: derived from
    /// [`WebhookServerBuilder::http2`](crate::WebhookServerBuilder::http2)). Only `h2` (with
    /// HTTP/2 enabled) and `http/1.1` are served; an empty list offers no ALPN (HTTP/1.1).
    pub alpn: Option<Vec<Vec<u8>>>,
}

impl TlsOptions {
    fn versions(&self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        const BOTH: &[&rustls::SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match self.min_version {
            MinTlsVersion::Tls12 => BOTH,
            MinTlsVersion::Tls13 => TLS13,
        }
    }

    /// The provider with the chosen suites, refusing unknown suites and allowed versions
    /// without a suite.
    fn provider(&self) -> Result<rustls::crypto::CryptoProvider, TlsError> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if let Some(wanted) = &self.cipher_suites {
            let mut suites = Vec::with_capacity(wanted.len());
            for suite in wanted {
                let found = provider
                    .cipher_suites
                    .iter()
                    .find(|s| s.suite() == *suite)
                    .context(UnknownCipherSuiteSnafu {
                        suite: match suite.as_str() {
                            Some(name) => format!("{name} (0x{:04x})", u16::from(*suite)),
                            None => format!("0x{:04x}", u16::from(*suite)),
                        },
                    })?;
                suites.push(*found);
            }
            provider.cipher_suites = suites;
        }
        for version in self.versions() {
            if !provider
                .cipher_suites
                .iter()
                .any(|s| s.version().version == version.version)
            {
                return NoSuiteForVersionSnafu {
                    version: match version.version {
                        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2",
                        _ => "TLS 1.3",
                    },
                }
                .fail();
            }
        }
        Ok(provider)
    }

    fn alpn(&self, http2: bool) -> Result<Vec<Vec<u8>>, TlsError> {
        let Some(alpn) = &self.alpn else {
            return Ok(if http2 {
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            });
        };
        for protocol in alpn {
            match protocol.as_slice() {
                b"http/1.1" => {}
                b"h2" if http2 => {}
                b"h2" => return AlpnH2WithoutHttp2Snafu.fail(),
                other => {
                    return UnsupportedAlpnSnafu {
                        protocol: String::from_utf8_lossy(other).into_owned(),
                    }
                    .fail();
                }
            }
        }
        Ok(alpn.clone())
    }

    /// Checks the options as [`server_config`] will use them.
    pub(crate) fn validate(&self, http2: bool) -> Result<(), TlsError> {
        self.provider()?;
        self.alpn(http2)?;
        Ok(())
    }
}

/// A [`ResolvesServerCert`] that serves whatever [`CertifiedKey`] was stored last.
///
/// A `std::sync::RwLock<Option<Arc<CertifiedKey>>>` is used rather than an extra crate:
/// a read only clones an `Arc` (tens of nanoseconds uncontended), while the handshake it
/// serves costs around a millisecond of public-key cryptography, and writes happen a few
/// times per certificate lifetime. The lock is never held across anything that can panic,
/// so poisoning is impossible in practice and is ignored if it happens.
#[derive(Default)]
pub struct CertResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    ca_bundle_pem: RwLock<Option<String>>,
    metrics: Option<Metrics>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material: only say whether a certificate is loaded.
        f.debug_struct("CertResolver")
            .field("has_certificate", &self.current().is_some())
            .finish()
    }
}

impl CertResolver {
    /// Creates an empty resolver. Handshakes fail until a certificate is stored.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with_metrics(metrics: Metrics) -> Self {
        Self {
            current: RwLock::new(None),
            ca_bundle_pem: RwLock::new(None),
            metrics: Some(metrics),
        }
    }

    /// Replaces the served certificate. New handshakes use it from now on.
    pub fn swap(&self, key: Arc<CertifiedKey>) {
        let expiry = key
            .end_entity_cert()
            .ok()
            .and_then(|cert| not_after_unix(cert.as_ref()));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(key);
        if let Some(metrics) = &self.metrics {
            metrics.cert_swaps.inc();
            if let Some(expiry) = expiry {
                metrics.cert_expiry.set(expiry);
            }
        }
        tracing::info!(not_after_unix = expiry, "serving certificate swapped");
    }

    /// The certificate currently served, if any.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes the CA bundle that verifies the served certificates (for `caBundle`).
    pub fn set_ca_bundle_pem(&self, pem: String) {
        *self
            .ca_bundle_pem
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(pem);
    }

    /// The CA bundle (PEM) to put into `caBundle`, when the source knows it (in-memory, shared,
    /// material and rotation sources do; file sources do not).
    pub fn ca_bundle_pem(&self) -> Option<String> {
        self.ca_bundle_pem
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a certificate is loaded (used by `/readyz`).
    pub fn is_ready(&self) -> bool {
        self.current().is_some()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// The only crypto provider the workspace uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the server configuration: aws-lc-rs, the versions, suites and ALPN of `options`
/// (ALPN `h2` by default only when `http2` is set), certificates from `resolver`, and client
/// certificates checked by `client_verifier` when one is given.
pub fn server_config(
    resolver: Arc<CertResolver>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    options: &TlsOptions,
    http2: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(Arc::new(options.provider()?))
        .with_protocol_versions(options.versions())
        .context(BuildServerConfigSnafu)?;
    let mut config = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    }
    .with_cert_resolver(resolver);
    // No session resumption: a resumed session skips the certificate resolver (and the client
    // certificate verifier), so after a swap a client could keep seeing the old certificate on
    // "new" connections. The API server's Go client does not resume sessions anyway, so this
    // costs nothing in practice and makes "new handshakes get the new certificate" exact.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = options.alpn(http2)?;
    Ok(Arc::new(config))
}

/// Parses a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1)
/// into a [`CertifiedKey`], refusing a key that does not match the leaf certificate (the
/// loading itself is stackable-certs', the one X.509/PEM layer of the workspace).
///
/// `source_name` names where the PEM came from in error messages.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    source_name: &str,
) -> Result<CertifiedKey, TlsError> {
    stackable_certs::serving::certified_key_from_pem(cert_pem, key_pem)
        .context(LoadKeyPairSnafu { source_name })
}

/// The `notAfter` of a DER certificate as Unix seconds, if it parses.
pub(crate) fn not_after_unix(der: &[u8]) -> Option<i64> {
    let cert = stackable_certs::Certificate::from_der(der).ok()?;
    Some(cert.info().not_after.unix_timestamp())
}

/// The serial number (hex, as `openssl x509 -serial` without colons) of the leaf certificate
/// of `key`.
pub fn leaf_serial(key: &CertifiedKey) -> Option<String> {
    let der = key.end_entity_cert().ok()?;
    let cert = stackable_certs::Certificate::from_der(der.as_ref()).ok()?;
    Some(cert.info().serial_hex())
}

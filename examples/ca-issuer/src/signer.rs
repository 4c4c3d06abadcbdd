//! `check` and `sign` of the CA issuers: the CA from the issuer's Secret, signing with
//! stackable-certs, and the issuer's policy (`allowCA`, `maxDuration`).
//!
//! Errors are classified for stackable-issuer:
//! - an unreadable spec (`maxDuration`) is permanent for `check` (a spec change fixes it);
//! - a missing or unusable Secret is retryable for `check` (fixing the Secret bumps no
//!   generation, so the issuer must keep looking) and an issuer error for `sign` (the issuer
//!   is marked not Ready and checked again, the request waits);
//! - what the request asks that the issuer does not allow, or a CSR that does not parse or
//!   whose extensions disagree with the request's spec, is permanent for `sign`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use stackable_certs::{Certificate, CertificateAuthority, PrivateKey};
use stackable_issuer::{AnyIssuer, PemBundle, Signer, SignerError, SigningRequest};

use crate::api::{CAIssuer, CaIssuerConfig, ClusterCAIssuer};

/// The key of the CA certificate (chain) in the Secret.
pub const CERT_KEY: &str = "tls.crt";
/// The key of the CA private key in the Secret.
pub const KEY_KEY: &str = "tls.key";

/// Signs with the CA of a `CAIssuer`'s or `ClusterCAIssuer`'s Secret.
#[derive(Clone)]
pub struct CaSigner {
    client: Client,
    cluster_resource_namespace: String,
}

impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSigner")
            .field(
                "cluster_resource_namespace",
                &self.cluster_resource_namespace,
            )
            .finish_non_exhaustive()
    }
}

/// A CA loaded from a Secret: the signer, and the chain above it (for the certificate chain).
struct LoadedCa {
    authority: CertificateAuthority,
    /// The certificates after the first in `tls.crt` (intermediates and root, if given).
    parents: Vec<Certificate>,
}

impl CaSigner {
    /// Reads Secrets of `CAIssuer`s in their namespace and of `ClusterCAIssuer`s in
    /// `cluster_resource_namespace`.
    pub fn new(client: Client, cluster_resource_namespace: impl Into<String>) -> Self {
        CaSigner {
            client,
            cluster_resource_namespace: cluster_resource_namespace.into(),
        }
    }

    fn config_and_namespace<'a>(
        &'a self,
        issuer: &AnyIssuer<'a, CAIssuer, ClusterCAIssuer>,
    ) -> (&'a CaIssuerConfig, &'a str) {
        match issuer {
            AnyIssuer::Issuer(i) => (
                &i.spec.config,
                i.metadata.namespace.as_deref().unwrap_or_default(),
            ),
            AnyIssuer::ClusterIssuer(c) => (&c.spec.config, &self.cluster_resource_namespace),
        }
    }

    /// Loads and validates the CA; the error says which Secret and what is wrong (never its
    /// content).
    async fn load(&self, config: &CaIssuerConfig, namespace: &str) -> Result<LoadedCa, String> {
        let name = &config.secret_name;
        if name.is_empty() {
            return Err("spec.secretName is empty".into());
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = match secrets.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => return Err(format!("Secret {namespace}/{name} not found")),
            Err(error) => return Err(format!("cannot read Secret {namespace}/{name}: {error}")),
        };
        let data = secret.data.unwrap_or_default();
        let field = |key: &str| {
            data.get(key)
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .ok_or_else(|| format!("Secret {namespace}/{name} has no {key}"))
        };
        let mut chain = Certificate::all_from_pem(&field(CERT_KEY)?)
            .map_err(|e| format!("{CERT_KEY} of Secret {namespace}/{name}: {e}"))?;
        let key = PrivateKey::from_pem(&field(KEY_KEY)?)
            .map_err(|e| format!("{KEY_KEY} of Secret {namespace}/{name}: {e}"))?;
        let certificate = chain.remove(0);
        let now = time::OffsetDateTime::now_utc();
        if !certificate.info().is_valid_at(now) {
            return Err(format!(
                "the CA of Secret {namespace}/{name} is not valid now (valid {} to {})",
                certificate.info().not_before,
                certificate.info().not_after
            ));
        }
        let authority = CertificateAuthority::from_parts(certificate, key)
            .map_err(|e| format!("Secret {namespace}/{name}: {e}"))?;
        Ok(LoadedCa {
            authority,
            parents: chain,
        })
    }
}

/// `maxDuration` as a duration (humantime's syntax, which reads Go's `720h` too).
fn max_duration(config: &CaIssuerConfig) -> Result<Option<Duration>, String> {
    config
        .max_duration
        .as_deref()
        .map(|text| {
            humantime::parse_duration(text)
                .map_err(|e| format!("spec.maxDuration {text:?} is not a duration: {e}"))
        })
        .transpose()
}

impl Signer for CaSigner {
    type Issuer = CAIssuer;
    type ClusterIssuer = ClusterCAIssuer;

    async fn check(
        &self,
        issuer: AnyIssuer<'_, CAIssuer, ClusterCAIssuer>,
    ) -> Result<(), SignerError> {
        let (config, namespace) = self.config_and_namespace(&issuer);
        max_duration(config).map_err(SignerError::permanent)?;
        self.load(config, namespace)
            .await
            .map(|_| ())
            .map_err(SignerError::retryable)
    }

    async fn sign(
        &self,
        request: SigningRequest<'_>,
        issuer: AnyIssuer<'_, CAIssuer, ClusterCAIssuer>,
    ) -> Result<PemBundle, SignerError> {
        let (config, namespace) = self.config_and_namespace(&issuer);
        let mut details = request.details()?;
        if details.is_ca && !config.allow_ca {
            return Err(SignerError::permanent(
                "this issuer does not sign CA certificates (spec.allowCA is false)",
            ));
        }
        if let Some(max) = max_duration(config).map_err(SignerError::issuer)?
            && details.duration > max
        {
            if details.duration_is_default {
                // Nothing was asked: the issuer's limit rather than cert-manager's 90 days.
                details.duration = max;
            } else {
                return Err(SignerError::permanent(format!(
                    "the requested duration {} is longer than this issuer's maxDuration {}",
                    humantime::format_duration(details.duration),
                    humantime::format_duration(max)
                )));
            }
        }
        let csr = details.parse_csr()?;
        let ca = self
            .load(config, namespace)
            .await
            .map_err(SignerError::issuer)?;
        let leaf = ca
            .authority
            .sign_request(&csr, &details.signing_options())
            .map_err(|e| match e {
                stackable_certs::Error::CaExpired { .. } => SignerError::issuer(e),
                other => SignerError::permanent(other),
            })?;
        // The chain: the leaf, then the CA unless it is a self-signed root, then its parents
        // except a self-signed root (as cert-manager's CA issuer does).
        let mut chain_pem = leaf.to_pem();
        let ca_certificate = ca.authority.certificate();
        let root = ca
            .parents
            .last()
            .cloned()
            .unwrap_or_else(|| ca_certificate.clone());
        for certificate in std::iter::once(ca_certificate).chain(ca.parents.iter()) {
            if !certificate.is_self_signed() {
                chain_pem.push_str(&certificate.to_pem());
            }
        }
        Ok(PemBundle {
            chain_pem,
            ca_pem: Some(root.to_pem()),
        })
    }
}

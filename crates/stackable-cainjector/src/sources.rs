//! From an annotation's source to the bundle to inject, with cert-manager's checks.
//!
//! What is injected is what cert-manager's cainjector injects: every certificate of `ca.crt`,
//! a CA or not (a `selfSigned` Issuer's leaf is its own CA), without duplicates or expired
//! ones ([`CaBundle::from_injection_source`]); garbage, keys and empty data are refused and the
//! target keeps the bundle it has.
//!
//! Least privilege: a namespaced target (a ConfigMap) only ever gets a CA from its own
//! namespace: whoever may annotate a ConfigMap in namespace A must not be able to read B's CA,
//! nor learn whether B's Secrets exist (the refusal names the rule, and nothing is read).
//! Cluster-scoped targets (CRDs, webhook configurations, APIServices) can only be annotated by
//! cluster administrators, as with cert-manager.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, api::DynamicObject};
use stackable_cainject::Target;
use stackable_certs::CaBundle;
use time::OffsetDateTime;

use crate::{
    annotations::{self, CaSource, ObjectKey},
    config::{ApiServerCa, ServiceCa},
    context::Context,
    index::Reference,
};

/// Why a source gave no bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The source yields nothing until it (or the annotation) changes: reported on the target,
    /// whose bundle stays; checked again when the source changes and at the next resync.
    Refused(String),
    /// Reading failed in a way that may pass (a 429, a 5xx, a timeout, a forbidden request
    /// while RBAC is being fixed): retried with backoff.
    Retry(String),
}

/// Classifies an API error of a read of `what`: permanent or worth retrying.
pub(crate) fn classify(what: &str, rule: &str, error: &kube::Error) -> Failure {
    match error {
        kube::Error::Api(status) if status.code == 404 => {
            Failure::Refused(format!("{what} does not exist"))
        }
        kube::Error::Api(status) if status.code == 403 => Failure::Retry(format!(
            "forbidden to read {what}: the injector needs the RBAC rule \"{rule}\""
        )),
        kube::Error::Api(status) if status.code == 429 || status.code >= 500 => Failure::Retry(
            format!("cannot read {what} ({}): {}", status.code, status.message),
        ),
        kube::Error::Api(status) => Failure::Refused(format!(
            "cannot read {what} ({}): {}",
            status.code, status.message
        )),
        // Transport errors, timeouts, a restarting API server.
        other => Failure::Retry(format!("cannot read {what}: {other}")),
    }
}

impl Context {
    /// GETs a Secret and reads its `ca.crt`; the Secret is dropped right after.
    async fn secret_ca(
        &self,
        key: &ObjectKey,
        check: impl FnOnce(&BTreeMap<String, String>) -> Result<(), Failure>,
    ) -> Result<CaBundle, Failure> {
        let api: Api<Secret> = Api::namespaced(self.client().clone(), &key.namespace);
        let what = format!("Secret {key}");
        let rule = format!("get secrets {} (namespace {})", key.name, key.namespace);
        let secret = match api.get_opt(&key.name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => return Err(Failure::Refused(format!("{what} does not exist"))),
            Err(error) => return Err(classify(&what, &rule, &error)),
        };
        check(
            secret
                .metadata
                .annotations
                .as_ref()
                .unwrap_or(&BTreeMap::new()),
        )?;
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(annotations::CA_CRT_KEY))
            .ok_or_else(|| {
                Failure::Refused(format!("{what} has no {} key", annotations::CA_CRT_KEY))
            })?;
        CaBundle::from_injection_source(&data.0, OffsetDateTime::now_utc()).map_err(|error| {
            Failure::Refused(format!(
                "{} of {what} refused: {}",
                annotations::CA_CRT_KEY,
                snafu::Report::from_error(error)
            ))
        })
    }

    /// Resolves a source to a bundle, recording in the index what the target reads.
    pub(crate) async fn resolve(
        &self,
        target: &Target,
        source: &CaSource,
    ) -> Result<CaBundle, Failure> {
        if let CaSource::Secret(key) | CaSource::Certificate(key) = source {
            // A ConfigMap may only read its own namespace: refused before anything is read,
            // so the refusal says nothing about the other namespace.
            if let Some(own) = target.namespace()
                && own != key.namespace
            {
                self.untrack(target);
                return Err(Failure::Refused(format!(
                    "{target} may only take a CA from its own namespace {own}, not from {source}"
                )));
            }
            // A source outside the watched namespaces would be read once and never followed.
            if !self.config.in_scope(&key.namespace) {
                self.untrack(target);
                return Err(Failure::Refused(format!(
                    "{source} is outside the namespaces this injector watches ({:?}); add --namespace {}",
                    self.config.namespaces, key.namespace
                )));
            }
        }
        match source {
            CaSource::Secret(key) => {
                self.track(target, vec![Reference::Secret(key.clone())]);
                self.secret_ca(key, |annotations| {
                    if annotations::allows_direct_injection(annotations) {
                        Ok(())
                    } else {
                        Err(Failure::Refused(format!(
                            "Secret {key} is not marked {}: \"true\", so {} may not read it",
                            annotations::ALLOW_DIRECT_INJECTION,
                            annotations::INJECT_CA_FROM_SECRET
                        )))
                    }
                })
                .await
            }
            CaSource::Certificate(key) => self.certificate_ca(target, key).await,
            CaSource::ApiServerCa => {
                self.track_api_server_ca(target);
                self.api_server_ca()
            }
            CaSource::ServiceCa => match &self.config.service_ca {
                ServiceCa::None => {
                    self.untrack(target);
                    Err(Failure::Refused(format!(
                        "{} needs a configured service CA (--service-ca-secret <namespace>/<name>, or --service-ca-from-api-server); none is configured, so nothing is injected",
                        annotations::OPENSHIFT_INJECT_CABUNDLE
                    )))
                }
                ServiceCa::ApiServerCa => {
                    self.track_api_server_ca(target);
                    self.api_server_ca()
                }
                ServiceCa::Secret(key) => {
                    self.track(target, vec![Reference::Secret(key.clone())]);
                    self.secret_ca(key, |_| Ok(())).await
                }
            },
        }
    }

    async fn certificate_ca(&self, target: &Target, key: &ObjectKey) -> Result<CaBundle, Failure> {
        self.track(target, vec![Reference::Certificate(key.clone())]);
        let Some(ar) = self.certificates() else {
            return Err(Failure::Refused(format!(
                "{} names Certificate {key}, but cert-manager's Certificate CRD ({}, cert-manager.io/v1) is not installed; the bundle is injected as soon as it is",
                annotations::INJECT_CA_FROM,
                crate::cert_manager::CERTIFICATE_CRD
            )));
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client().clone(), &key.namespace, &ar);
        let what = format!("Certificate {key}");
        let rule = format!(
            "get certificates.cert-manager.io {} (namespace {})",
            key.name, key.namespace
        );
        let certificate = match api.get_opt(&key.name).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(Failure::Refused(format!("{what} does not exist"))),
            Err(error) => return Err(classify(&what, &rule, &error)),
        };
        let Some(secret_name) = certificate
            .data
            .pointer("/spec/secretName")
            .and_then(serde_json::Value::as_str)
        else {
            return Err(Failure::Refused(format!("{what} has no spec.secretName")));
        };
        let secret = ObjectKey::new(&key.namespace, secret_name);
        self.track(
            target,
            vec![
                Reference::Certificate(key.clone()),
                Reference::Secret(secret.clone()),
            ],
        );
        self.secret_ca(&secret, |annotations| {
            if annotations::belongs_to_certificate(annotations, &key.name) {
                Ok(())
            } else {
                Err(Failure::Refused(format!(
                    "Secret {secret} does not carry {}: {:?}, so it was not written for Certificate {key}",
                    annotations::CERTIFICATE_NAME,
                    key.name
                )))
            }
        })
        .await
    }

    fn api_server_ca(&self) -> Result<CaBundle, Failure> {
        let pem = match &self.config.api_server_ca {
            ApiServerCa::Unknown => None,
            ApiServerCa::Pem(pem) => Some(pem.clone()),
            ApiServerCa::File(_) => self.api_server_ca_from_file(),
        };
        let pem = pem.ok_or_else(|| {
            Failure::Refused(
                "the injector knows no API server CA (its kubeconfig or service account has none)"
                    .to_owned(),
            )
        })?;
        CaBundle::from_injection_source(pem.as_bytes(), OffsetDateTime::now_utc()).map_err(
            |error| {
                Failure::Refused(format!(
                    "the API server CA was refused: {}",
                    snafu::Report::from_error(error)
                ))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("m", "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn transient_and_forbidden_are_retried_the_rest_refused() {
        for code in [403, 429, 500, 503] {
            assert!(
                matches!(classify("Secret a/b", "r", &api(code)), Failure::Retry(_)),
                "{code}"
            );
        }
        for code in [400, 404, 422] {
            assert!(
                matches!(classify("Secret a/b", "r", &api(code)), Failure::Refused(_)),
                "{code}"
            );
        }
        let Failure::Retry(message) = classify("Secret a/b", "get secrets b", &api(403)) else {
            unreachable!()
        };
        assert!(message.contains("get secrets b"), "{message}");
    }
}

//! cert-manager's and OpenShift's CA injection annotations.
//!
//! The standalone injector honours the annotations of cert-manager's cainjector
//! (<https://cert-manager.io/docs/concepts/ca-injector/>) and OpenShift's service CA operator
//! (<https://docs.openshift.com/container-platform/latest/security/certificates/service-serving-certificate.html>)
//! with the same meaning, so manifests written for either work unchanged.

use std::{collections::BTreeMap, fmt};

use snafu::{Snafu, ensure};

use stackable_cainject::TargetKind;

/// `cert-manager.io/inject-ca-from: <namespace>/<certificate>`.
pub const INJECT_CA_FROM: &str = "cert-manager.io/inject-ca-from";
/// `cert-manager.io/inject-ca-from-secret: <namespace>/<secret>`.
pub const INJECT_CA_FROM_SECRET: &str = "cert-manager.io/inject-ca-from-secret";
/// `cert-manager.io/inject-apiserver-ca: "true"`.
pub const INJECT_APISERVER_CA: &str = "cert-manager.io/inject-apiserver-ca";
/// Annotation a Secret must carry (`"true"`) to be used by `inject-ca-from-secret`.
pub const ALLOW_DIRECT_INJECTION: &str = "cert-manager.io/allow-direct-injection";
/// Annotation on a Secret naming the Certificate that wrote it.
pub const CERTIFICATE_NAME: &str = "cert-manager.io/certificate-name";
/// `service.beta.openshift.io/inject-cabundle: "true"`.
pub const OPENSHIFT_INJECT_CABUNDLE: &str = "service.beta.openshift.io/inject-cabundle";
/// The Secret key a CA bundle is read from.
pub const CA_CRT_KEY: &str = "ca.crt";

/// A namespaced object by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where an annotated object wants its CA bundle from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CaSource {
    /// `ca.crt` of a Secret marked `cert-manager.io/allow-direct-injection: "true"`.
    Secret(ObjectKey),
    /// `ca.crt` of the Secret named by a cert-manager Certificate's `spec.secretName`,
    /// which must carry `cert-manager.io/certificate-name` equal to the Certificate's name.
    Certificate(ObjectKey),
    /// The API server's CA, as the injector's own service account or kubeconfig trusts it.
    ApiServerCa,
    /// The injector's configured service CA (OpenShift's `inject-cabundle`).
    ServiceCa,
}

impl fmt::Display for CaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaSource::Secret(key) => write!(f, "Secret {key}"),
            CaSource::Certificate(key) => write!(f, "Certificate {key}"),
            CaSource::ApiServerCa => f.write_str("the API server CA"),
            CaSource::ServiceCa => f.write_str("the configured service CA"),
        }
    }
}

/// Why an object's injection annotations cannot be honoured.
#[derive(Debug, Snafu, PartialEq, Eq)]
pub enum AnnotationError {
    /// A reference is not `<namespace>/<name>`.
    #[snafu(display("annotation {annotation}: {value:?} is not <namespace>/<name>"))]
    BadReference {
        /// The annotation.
        annotation: String,
        /// Its value.
        value: String,
    },

    /// A boolean annotation with a value other than "true" or "false".
    #[snafu(display("annotation {annotation}: {value:?} is neither \"true\" nor \"false\""))]
    BadBoolean {
        /// The annotation.
        annotation: String,
        /// Its value.
        value: String,
    },

    /// More than one source annotation.
    #[snafu(display(
        "the object carries more than one CA injection annotation ({annotations:?}); keep exactly one"
    ))]
    Conflicting {
        /// The annotations found.
        annotations: Vec<String>,
    },
}

fn parse_reference(
    annotation: &str,
    value: &str,
    own_namespace: Option<&str>,
) -> Result<ObjectKey, AnnotationError> {
    let bad = || AnnotationError::BadReference {
        annotation: annotation.to_owned(),
        value: value.to_owned(),
    };
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ObjectKey::new(ns, name))
        }
        None if !value.is_empty() => own_namespace
            .map(|ns| ObjectKey::new(ns, value))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn parse_bool(annotation: &str, value: &str) -> Result<bool, AnnotationError> {
    match value {
        "true" => Ok(true),
        "false" | "" => Ok(false),
        _ => BadBooleanSnafu { annotation, value }.fail(),
    }
}

/// Reads the CA source from an object's annotations; `None` when it asks for no injection.
///
/// `own_namespace` is the namespace of a namespaced target (a ConfigMap): a bare name then
/// refers to that namespace. Cluster-scoped targets must write `<namespace>/<name>`.
pub fn parse_source(
    _kind: TargetKind,
    own_namespace: Option<&str>,
    annotations: &BTreeMap<String, String>,
) -> Result<Option<CaSource>, AnnotationError> {
    let mut found: Vec<(&str, CaSource)> = Vec::new();
    if let Some(value) = annotations.get(INJECT_CA_FROM_SECRET) {
        let key = parse_reference(INJECT_CA_FROM_SECRET, value.trim(), own_namespace)?;
        found.push((INJECT_CA_FROM_SECRET, CaSource::Secret(key)));
    }
    if let Some(value) = annotations.get(INJECT_CA_FROM) {
        let key = parse_reference(INJECT_CA_FROM, value.trim(), own_namespace)?;
        found.push((INJECT_CA_FROM, CaSource::Certificate(key)));
    }
    if let Some(value) = annotations.get(INJECT_APISERVER_CA)
        && parse_bool(INJECT_APISERVER_CA, value.trim())?
    {
        found.push((INJECT_APISERVER_CA, CaSource::ApiServerCa));
    }
    if let Some(value) = annotations.get(OPENSHIFT_INJECT_CABUNDLE)
        && parse_bool(OPENSHIFT_INJECT_CABUNDLE, value.trim())?
    {
        found.push((OPENSHIFT_INJECT_CABUNDLE, CaSource::ServiceCa));
    }
    ensure!(
        found.len() <= 1,
        ConflictingSnafu {
            annotations: found
                .iter()
                .map(|(a, _)| (*a).to_owned())
                .collect::<Vec<_>>(),
        }
    );
    Ok(found.pop().map(|(_, source)| source))
}

/// Whether a Secret's annotations allow `inject-ca-from-secret` to read it.
pub fn allows_direct_injection(secret_annotations: &BTreeMap<String, String>) -> bool {
    secret_annotations
        .get(ALLOW_DIRECT_INJECTION)
        .is_some_and(|v| v == "true")
}

/// Whether a Secret was written for the Certificate `certificate` (its
/// `cert-manager.io/certificate-name` annotation equals the Certificate's name).
pub fn belongs_to_certificate(
    secret_annotations: &BTreeMap<String, String>,
    certificate: &str,
) -> bool {
    secret_annotations
        .get(CERTIFICATE_NAME)
        .is_some_and(|v| v == certificate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const CRD: TargetKind = TargetKind::CustomResourceDefinition;

    #[test]
    fn parses_each_annotation() {
        assert_eq!(
            parse_source(CRD, None, &ann(&[(INJECT_CA_FROM_SECRET, "ns/s")])).unwrap(),
            Some(CaSource::Secret(ObjectKey::new("ns", "s")))
        );
        assert_eq!(
            parse_source(CRD, None, &ann(&[(INJECT_CA_FROM, "ns/c")])).unwrap(),
            Some(CaSource::Certificate(ObjectKey::new("ns", "c")))
        );
        assert_eq!(
            parse_source(CRD, None, &ann(&[(INJECT_APISERVER_CA, "true")])).unwrap(),
            Some(CaSource::ApiServerCa)
        );
        assert_eq!(
            parse_source(
                TargetKind::ConfigMap,
                Some("ns"),
                &ann(&[(OPENSHIFT_INJECT_CABUNDLE, "true")])
            )
            .unwrap(),
            Some(CaSource::ServiceCa)
        );
        assert_eq!(
            parse_source(
                CRD,
                None,
                &ann(&[(INJECT_APISERVER_CA, "false"), ("x", "y")])
            )
            .unwrap(),
            None
        );
        assert_eq!(parse_source(CRD, None, &BTreeMap::new()).unwrap(), None);
    }

    #[test]
    fn bare_names_only_for_namespaced_targets() {
        assert_eq!(
            parse_source(
                TargetKind::ConfigMap,
                Some("own"),
                &ann(&[(INJECT_CA_FROM_SECRET, "s")])
            )
            .unwrap(),
            Some(CaSource::Secret(ObjectKey::new("own", "s")))
        );
        let err = parse_source(CRD, None, &ann(&[(INJECT_CA_FROM_SECRET, "s")])).unwrap_err();
        assert!(err.to_string().contains("<namespace>/<name>"), "{err}");
        for bad in ["", "/s", "ns/", "a/b/c"] {
            assert!(
                parse_source(CRD, None, &ann(&[(INJECT_CA_FROM, bad)])).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_bad_booleans_and_conflicts() {
        let err = parse_source(CRD, None, &ann(&[(INJECT_APISERVER_CA, "yes")])).unwrap_err();
        assert!(matches!(err, AnnotationError::BadBoolean { .. }));
        let err = parse_source(
            CRD,
            None,
            &ann(&[(INJECT_CA_FROM, "a/b"), (INJECT_APISERVER_CA, "true")]),
        )
        .unwrap_err();
        assert!(
            matches!(err, AnnotationError::Conflicting { ref annotations } if annotations.len() == 2)
        );
    }

    #[test]
    fn anti_hijack_checks() {
        assert!(allows_direct_injection(&ann(&[(
            ALLOW_DIRECT_INJECTION,
            "true"
        )])));
        assert!(!allows_direct_injection(&ann(&[(
            ALLOW_DIRECT_INJECTION,
            "True"
        )])));
        assert!(!allows_direct_injection(&BTreeMap::new()));
        assert!(belongs_to_certificate(
            &ann(&[(CERTIFICATE_NAME, "c")]),
            "c"
        ));
        assert!(!belongs_to_certificate(
            &ann(&[(CERTIFICATE_NAME, "other")]),
            "c"
        ));
        assert!(!belongs_to_certificate(&BTreeMap::new(), "c"));
    }
}

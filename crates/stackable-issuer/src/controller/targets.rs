//! Which issuer a request is for (issuer-lib's `matchIssuerType`): a `CertificateRequest`'s
//! `issuerRef` by group and kind, a Kubernetes CSR's `signerName`; anything else is foreign.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Resource as _;

use crate::{
    api::CertificateRequest,
    signer::{IssuerRef, Signer},
};

/// Which of the two issuer kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    Namespaced,
    Cluster,
}

/// The issuer a request is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct IssuerKey {
    pub(crate) scope: Scope,
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
}

/// The group, kind and plural of both issuer kinds.
#[derive(Clone, Debug)]
pub(crate) struct IssuerTypes {
    group: String,
    namespaced: (String, String),
    cluster_group: String,
    cluster: (String, String),
}

impl IssuerTypes {
    pub(crate) fn of<S: Signer>() -> Self {
        IssuerTypes {
            group: S::Issuer::group(&()).into_owned(),
            namespaced: (
                S::Issuer::kind(&()).into_owned(),
                S::Issuer::plural(&()).into_owned(),
            ),
            cluster_group: S::ClusterIssuer::group(&()).into_owned(),
            cluster: (
                S::ClusterIssuer::kind(&()).into_owned(),
                S::ClusterIssuer::plural(&()).into_owned(),
            ),
        }
    }

    /// The `signerName` prefix of cluster issuers: `<plural>.<group>`.
    pub(crate) fn signer_name_prefix(&self) -> String {
        format!("{}.{}", self.cluster.1, self.cluster_group)
    }

    /// The `signerName` of the cluster issuer `name`.
    pub(crate) fn signer_name(&self, name: &str) -> String {
        format!("{}/{name}", self.signer_name_prefix())
    }

    /// The issuer of a `CertificateRequest`: the first kind (namespaced, then cluster) whose
    /// group equals `issuerRef.group` and whose kind equals `issuerRef.kind` (an empty kind
    /// matches the first); a namespaced issuer lives in the request's namespace.
    pub(crate) fn match_certificate_request(&self, cr: &CertificateRequest) -> Option<IssuerKey> {
        let reference = &cr.spec.issuer_ref;
        let group = reference.group.as_deref().unwrap_or_default();
        let kind = reference.kind.as_deref().unwrap_or_default();
        if reference.name.is_empty() {
            return None;
        }
        let matches = |g: &str, k: &str| group == g && (kind.is_empty() || kind == k);
        if matches(&self.group, &self.namespaced.0) {
            return Some(IssuerKey {
                scope: Scope::Namespaced,
                namespace: Some(cr.metadata.namespace.clone()?),
                name: reference.name.clone(),
            });
        }
        if matches(&self.cluster_group, &self.cluster.0) {
            return Some(IssuerKey {
                scope: Scope::Cluster,
                namespace: None,
                name: reference.name.clone(),
            });
        }
        None
    }

    /// The public form of `key` (for the user's ignore hook).
    pub(crate) fn reference(&self, key: &IssuerKey) -> IssuerRef {
        let (group, kind) = match key.scope {
            Scope::Namespaced => (&self.group, &self.namespaced.0),
            Scope::Cluster => (&self.cluster_group, &self.cluster.0),
        };
        IssuerRef {
            group: group.clone(),
            kind: kind.clone(),
            name: key.name.clone(),
            namespace: key.namespace.clone(),
        }
    }

    /// The issuer of a Kubernetes CSR: `signerName` `<plural>.<group>/<name>` of the cluster
    /// kind (namespaced issuers do not sign Kubernetes CSRs).
    pub(crate) fn match_csr(&self, csr: &CertificateSigningRequest) -> Option<IssuerKey> {
        let (prefix, name) = csr.spec.signer_name.split_once('/')?;
        if prefix != self.signer_name_prefix() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(IssuerKey {
            scope: Scope::Cluster,
            namespace: None,
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> IssuerTypes {
        IssuerTypes {
            group: "ca.example.com".into(),
            namespaced: ("CAIssuer".into(), "caissuers".into()),
            cluster_group: "ca.example.com".into(),
            cluster: ("ClusterCAIssuer".into(), "clustercaissuers".into()),
        }
    }

    fn cr(issuer_ref: serde_json::Value) -> CertificateRequest {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r", "namespace": "team"},
            "spec": {"issuerRef": issuer_ref},
        }))
        .unwrap_or_default()
    }

    #[test]
    fn matches_group_and_kind_and_ignores_foreign_references() {
        let t = types();
        let key = |scope, namespace: Option<&str>| {
            Some(IssuerKey {
                scope,
                namespace: namespace.map(str::to_owned),
                name: "ca".into(),
            })
        };
        let namespaced =
            serde_json::json!({"name": "ca", "kind": "CAIssuer", "group": "ca.example.com"});
        assert_eq!(
            t.match_certificate_request(&cr(namespaced)),
            key(Scope::Namespaced, Some("team"))
        );
        let cluster =
            serde_json::json!({"name": "ca", "kind": "ClusterCAIssuer", "group": "ca.example.com"});
        assert_eq!(
            t.match_certificate_request(&cr(cluster)),
            key(Scope::Cluster, None)
        );
        // An empty kind is the first configured kind.
        let empty = serde_json::json!({"name": "ca", "group": "ca.example.com"});
        assert_eq!(
            t.match_certificate_request(&cr(empty)),
            key(Scope::Namespaced, Some("team"))
        );
        for foreign in [
            serde_json::json!({"name": "ca", "kind": "Issuer", "group": "cert-manager.io"}),
            serde_json::json!({"name": "ca", "kind": "CAIssuer"}),
            serde_json::json!({"name": "ca", "kind": "Other", "group": "ca.example.com"}),
            serde_json::json!({"name": "", "kind": "CAIssuer", "group": "ca.example.com"}),
        ] {
            assert_eq!(
                t.match_certificate_request(&cr(foreign.clone())),
                None,
                "{foreign}"
            );
        }
    }

    #[test]
    fn matches_signer_names_of_cluster_issuers_only() {
        let t = types();
        let csr = |signer: &str| {
            let mut csr = CertificateSigningRequest::default();
            csr.spec.signer_name = signer.into();
            csr
        };
        assert_eq!(t.signer_name("ca"), "clustercaissuers.ca.example.com/ca");
        assert_eq!(
            t.match_csr(&csr("clustercaissuers.ca.example.com/ca"))
                .map(|k| k.name),
            Some("ca".into())
        );
        for foreign in [
            "caissuers.ca.example.com/team.ca",
            "kubernetes.io/kube-apiserver-client",
            "clustercaissuers.ca.example.com/",
            "clustercaissuers.ca.example.com/a/b",
            "clustercaissuers.ca.example.com",
        ] {
            assert_eq!(t.match_csr(&csr(foreign)), None, "{foreign}");
        }
    }
}

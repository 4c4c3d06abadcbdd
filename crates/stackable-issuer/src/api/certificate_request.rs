//! cert-manager's `CertificateRequest` (`cert-manager.io/v1`), read by the request controller.
//!
//! Reference: <https://cert-manager.io/docs/usage/certificaterequest/> and the CRD in
//! cert-manager's `deploy/crds/cert-manager.io_certificaterequests.yaml`.

use std::{borrow::Cow, collections::BTreeMap};

use k8s_openapi::{
    ByteString, NamespaceResourceScope,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
};
use serde::{Deserialize, Serialize};

/// The API group of cert-manager's resources.
pub const GROUP: &str = "cert-manager.io";
/// The served version this crate reads.
pub const VERSION: &str = "v1";

/// Condition type `Ready` (set by issuers).
pub const CONDITION_READY: &str = "Ready";
/// Condition type `Approved` (set by an approver).
pub const CONDITION_APPROVED: &str = "Approved";
/// Condition type `Denied` (set by an approver).
pub const CONDITION_DENIED: &str = "Denied";

/// A request for a certificate: a PEM CSR, the issuer it is for and what the certificate may
/// carry. Serialised with its `apiVersion` and `kind`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CertificateRequest {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// What is requested.
    #[serde(default)]
    pub spec: CertificateRequestSpec,
    /// What happened to the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CertificateRequestStatus>,
}

/// `spec` of a [`CertificateRequest`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestSpec {
    /// Requested validity as a Go duration (`2160h`); cert-manager's default is 90 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// The issuer that is to sign the request.
    #[serde(default)]
    pub issuer_ref: IssuerReference,
    /// The PEM-encoded PKCS#10 request (base64 in JSON).
    #[serde(default)]
    pub request: ByteString,
    /// Whether a CA certificate is requested.
    #[serde(default, rename = "isCA")]
    pub is_ca: bool,
    /// Requested key usages (cert-manager's names, `digital signature`, `server auth`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
    /// Who created the request (set by cert-manager's webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The requester's UID (set by cert-manager's webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The requester's groups (set by cert-manager's webhook).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes of the requester (set by cert-manager's webhook).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// `spec.issuerRef`: which issuer, by name, kind and API group.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct IssuerReference {
    /// Name of the issuer.
    #[serde(default)]
    pub name: String,
    /// Kind of the issuer (empty: the first kind of the group an issuer serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// API group of the issuer (empty: cert-manager.io).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// `status` of a [`CertificateRequest`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestStatus {
    /// Conditions, keyed by type (`Ready`, `Approved`, `Denied`, `InvalidRequest`, ...).
    #[serde(default)]
    pub conditions: Vec<CertificateRequestCondition>,
    /// The signed certificate chain, PEM (base64 in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<ByteString>,
    /// The CA that signed it, PEM (deprecated by cert-manager; base64 in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<ByteString>,
    /// When the request failed permanently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_time: Option<Time>,
}

/// A condition of a [`CertificateRequest`] (cert-manager's `CertificateRequestCondition`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestCondition {
    /// The condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

impl CertificateRequest {
    /// The condition of type `type_`, if any.
    pub fn condition(&self, type_: &str) -> Option<&CertificateRequestCondition> {
        self.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
    }

    /// Whether a condition of type `type_` has status `True`.
    pub fn has_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }

    /// Whether the `Ready` condition has status `status` and (if given) reason `reason`.
    pub fn ready_is(&self, status: &str, reason: Option<&str>) -> bool {
        self.condition(CONDITION_READY).is_some_and(|c| {
            c.status == status && reason.is_none_or(|r| c.reason.as_deref() == Some(r))
        })
    }
}

impl Serialize for CertificateRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Typed<'a> {
            api_version: &'static str,
            kind: &'static str,
            metadata: &'a ObjectMeta,
            spec: &'a CertificateRequestSpec,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<&'a CertificateRequestStatus>,
        }
        Typed {
            api_version: "cert-manager.io/v1",
            kind: "CertificateRequest",
            metadata: &self.metadata,
            spec: &self.spec,
            status: self.status.as_ref(),
        }
        .serialize(serializer)
    }
}

impl kube::Resource for CertificateRequest {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "CertificateRequest".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn api_version(_: &()) -> Cow<'_, str> {
        "cert-manager.io/v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "certificaterequests".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_cert_manager_writes_and_ignores_the_rest() -> Result<(), serde_json::Error> {
        let cr: CertificateRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "cert-manager.io/v1",
            "kind": "CertificateRequest",
            "metadata": {"name": "a", "namespace": "b"},
            "spec": {
                "request": "LS0t",
                "isCA": true,
                "duration": "1h0m0s",
                "issuerRef": {"name": "ca", "kind": "CAIssuer", "group": "x.example.com"},
                "usages": ["server auth"],
                "somethingNew": 1,
            },
            "status": {"conditions": [
                {"type": "Approved", "status": "True", "reason": "policy", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]},
        }))?;
        assert!(cr.spec.is_ca);
        assert_eq!(cr.spec.request.0, b"---");
        assert_eq!(cr.spec.issuer_ref.kind.as_deref(), Some("CAIssuer"));
        assert!(cr.has_true(CONDITION_APPROVED));
        assert!(!cr.has_true(CONDITION_DENIED));
        assert!(!cr.ready_is("True", None));
        let json = serde_json::to_value(&cr)?;
        assert_eq!(json["apiVersion"], "cert-manager.io/v1");
        assert_eq!(json["kind"], "CertificateRequest");
        assert_eq!(json["spec"]["isCA"], true);
        assert_eq!(json["spec"]["issuerRef"]["kind"], "CAIssuer");
        Ok(())
    }
}

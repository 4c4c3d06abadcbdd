//! The status a request controller writes, and its Events (issuer-lib's
//! `certificateRequestPatchHelper` and `certificatesigningRequestPatchHelper`).
//!
//! A cert-manager `CertificateRequest` carries the outcome in its `Ready` condition
//! (`Initializing`, `Pending`, `Denied`, `Failed`, `Issued`), `failureTime` and
//! `certificate`. A Kubernetes CSR has no `Ready` condition: it gets `status.certificate`, or a
//! `Failed` condition; every other step is only an Event.

use k8s_openapi::{ByteString, apimachinery::pkg::apis::meta::v1::Time};
use serde_json::{Value, json};

use super::events::{EventSpec, reason};
use crate::{
    conditions::{self, FALSE, TRUE, UNKNOWN},
    signer::PemBundle,
};

/// Reasons of a `CertificateRequest`'s `Ready` condition (cert-manager's and issuer-lib's).
pub mod request_reason {
    /// The controller has started on the request.
    pub const INITIALIZING: &str = "Initializing";
    /// Waiting for the issuer, or for `sign` to succeed.
    pub const PENDING: &str = "Pending";
    /// An approver denied the request.
    pub const DENIED: &str = "Denied";
    /// Signing failed permanently.
    pub const FAILED: &str = "Failed";
    /// The certificate is in `status.certificate`.
    pub const ISSUED: &str = "Issued";
}

/// Which kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    CertificateRequest,
    KubernetesCsr,
}

impl Flavor {
    fn noun(self) -> &'static str {
        match self {
            Flavor::CertificateRequest => "CertificateRequest",
            Flavor::KubernetesCsr => "CertificateSigningRequest",
        }
    }
}

/// A condition as the request has it now.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Existing {
    pub(crate) type_: String,
    pub(crate) status: String,
    pub(crate) last_transition_time: Option<Time>,
}

/// The status fields to apply and the Events to publish.
#[derive(Debug)]
pub(crate) struct StatusPatch {
    flavor: Flavor,
    existing: Vec<Existing>,
    now: Time,
    conditions: Vec<Value>,
    certificate: Option<String>,
    ca: Option<String>,
    failure_time: Option<Time>,
    pub(crate) events: Vec<EventSpec>,
}

const MAX_MESSAGE: usize = 32 * 1024;

impl StatusPatch {
    pub(crate) fn new(flavor: Flavor, existing: Vec<Existing>, now: Time) -> Self {
        StatusPatch {
            flavor,
            existing,
            now,
            conditions: Vec::new(),
            certificate: None,
            ca: None,
            failure_time: None,
            events: Vec::new(),
        }
    }

    fn set_condition(&mut self, type_: &str, status: &str, reason: &str, message: &str) {
        let old = self.existing.iter().find(|c| c.type_ == type_);
        let time = conditions::transition_time(
            old.map(|c| c.status.as_str()),
            old.and_then(|c| c.last_transition_time.as_ref()),
            status,
            &self.now,
        );
        let mut condition = json!({
            "type": type_,
            "status": status,
            "reason": reason,
            "message": conditions::truncate(message, MAX_MESSAGE),
            "lastTransitionTime": time,
        });
        if self.flavor == Flavor::KubernetesCsr {
            condition["lastUpdateTime"] = json!(self.now);
        }
        self.conditions.retain(|c| c["type"] != type_);
        self.conditions.push(condition);
    }

    /// The `Ready` condition of a `CertificateRequest`; a CSR has none.
    fn set_ready(&mut self, status: &str, reason: &str, message: &str) {
        if self.flavor == Flavor::CertificateRequest {
            self.set_condition(
                crate::api::certificate_request::CONDITION_READY,
                status,
                reason,
                message,
            );
        }
    }

    /// The first step: a denied request gets `Ready=False/Denied` and `failureTime`; a
    /// `CertificateRequest` without `Ready` gets `Ready=Unknown/Initializing`. Returns whether
    /// something was set (then the reconciliation ends; the write wakes it again).
    pub(crate) fn set_initializing(&mut self, denied: bool, has_ready: bool, owner: &str) -> bool {
        if self.flavor == Flavor::KubernetesCsr {
            return false;
        }
        if denied {
            let message =
                "Detected that the CertificateRequest is denied, so it will never be Ready.";
            self.set_ready(FALSE, request_reason::DENIED, message);
            self.failure_time = Some(self.now.clone());
            self.events
                .push(EventSpec::warning(reason::PERMANENT_ERROR, message));
            return true;
        }
        if has_ready {
            return false;
        }
        self.set_ready(
            UNKNOWN,
            request_reason::INITIALIZING,
            &format!("{owner} has started reconciling this CertificateRequest"),
        );
        true
    }

    pub(crate) fn set_waiting_for_issuer_exist(&mut self, not_found: &str) {
        let message = format!("{not_found}. Waiting for it to be created.");
        self.set_ready(FALSE, request_reason::PENDING, &message);
        self.events
            .push(EventSpec::normal(reason::WAITING_FOR_ISSUER_EXIST, message));
    }

    pub(crate) fn set_waiting_for_issuer_ready(&mut self, current: IssuerReadiness<'_>) {
        let message = match current {
            IssuerReadiness::NoCondition => {
                "Waiting for issuer to become ready. Current issuer ready condition: <none>."
                    .to_owned()
            }
            IssuerReadiness::Outdated => {
                "Waiting for issuer to become ready. Current issuer ready condition is outdated."
                    .to_owned()
            }
            IssuerReadiness::NotReady { reason, message } => format!(
                "Waiting for issuer to become ready. Current issuer ready condition is \"{reason}\": {message}."
            ),
        };
        self.set_ready(FALSE, request_reason::PENDING, &message);
        self.events
            .push(EventSpec::normal(reason::WAITING_FOR_ISSUER_READY, message));
    }

    /// Sets the user's extra condition; returns whether its status changes (or it is new).
    pub(crate) fn set_custom(
        &mut self,
        type_: &str,
        status: &str,
        reason: &str,
        message: &str,
    ) -> bool {
        self.set_condition(type_, status, reason, message);
        self.existing
            .iter()
            .find(|c| c.type_ == type_)
            .is_none_or(|c| c.status != status)
    }

    pub(crate) fn set_pending(&mut self, why: &str) {
        let message = format!("Signing still in progress. Reason: {why}");
        self.set_ready(FALSE, request_reason::PENDING, &message);
        self.events
            .push(EventSpec::warning(reason::PENDING, message));
    }

    pub(crate) fn set_retryable_error(&mut self, error: &str) {
        let message = format!("Failed to sign {}, will retry: {error}", self.flavor.noun());
        self.set_ready(FALSE, request_reason::PENDING, &message);
        self.events
            .push(EventSpec::warning(reason::RETRYABLE_ERROR, message));
    }

    pub(crate) fn set_permanent_error(&mut self, error: &str) {
        let message = match self.flavor {
            Flavor::CertificateRequest => {
                let message = format!("Failed permanently to sign CertificateRequest: {error}");
                self.set_ready(FALSE, request_reason::FAILED, &message);
                self.failure_time = Some(self.now.clone());
                message
            }
            Flavor::KubernetesCsr => {
                let message = format!("CertificateSigningRequest has failed permanently: {error}");
                self.set_condition("Failed", TRUE, request_reason::FAILED, &message);
                message
            }
        };
        self.events
            .push(EventSpec::warning(reason::PERMANENT_ERROR, message));
    }

    pub(crate) fn set_issued(&mut self, bundle: &PemBundle, set_ca: bool) {
        self.certificate = Some(bundle.chain_pem.clone());
        if set_ca && self.flavor == Flavor::CertificateRequest {
            self.ca = bundle.ca_pem.clone();
        }
        let message = format!("Succeeded signing the {}", self.flavor.noun());
        self.set_ready(TRUE, request_reason::ISSUED, &message);
        self.events.push(EventSpec::normal(reason::ISSUED, message));
    }

    /// The `status` to apply, or `None` when there is nothing to write.
    pub(crate) fn status(&self) -> Option<Value> {
        let mut status = serde_json::Map::new();
        if !self.conditions.is_empty() {
            status.insert("conditions".into(), Value::Array(self.conditions.clone()));
        }
        if let Some(certificate) = &self.certificate {
            let bytes = ByteString(certificate.clone().into_bytes());
            status.insert("certificate".into(), json!(bytes));
        }
        if let Some(ca) = &self.ca {
            status.insert("ca".into(), json!(ByteString(ca.clone().into_bytes())));
        }
        if let Some(time) = &self.failure_time {
            status.insert("failureTime".into(), json!(time));
        }
        (!status.is_empty()).then_some(Value::Object(status))
    }
}

/// Why a request waits for its issuer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IssuerReadiness<'a> {
    NoCondition,
    Outdated,
    NotReady { reason: &'a str, message: &'a str },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: &str, time: i64) -> Existing {
        Existing {
            type_: "Ready".into(),
            status: status.into(),
            last_transition_time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(time).unwrap_or_default(),
            )),
        }
    }

    #[test]
    fn certificate_request_steps() {
        let now = conditions::now();
        let mut patch = StatusPatch::new(Flavor::CertificateRequest, vec![], now.clone());
        assert!(patch.set_initializing(false, false, "me"));
        let status = patch.status().unwrap_or_default();
        assert_eq!(status["conditions"][0]["status"], "Unknown");
        assert_eq!(status["conditions"][0]["reason"], "Initializing");
        assert_eq!(
            status["conditions"][0]["message"],
            "me has started reconciling this CertificateRequest"
        );
        assert!(status.get("failureTime").is_none());

        let mut patch = StatusPatch::new(
            Flavor::CertificateRequest,
            vec![ready("Unknown", 5)],
            now.clone(),
        );
        assert!(patch.set_initializing(true, true, "me"));
        let status = patch.status().unwrap_or_default();
        assert_eq!(status["conditions"][0]["reason"], "Denied");
        assert_eq!(status["failureTime"], json!(now));
        assert_eq!(patch.events[0].reason, "PermanentError");

        // Unknown -> False moves the transition time; False -> False keeps it.
        let mut patch = StatusPatch::new(
            Flavor::CertificateRequest,
            vec![ready("False", 5)],
            now.clone(),
        );
        patch.set_pending("queued");
        let status = patch.status().unwrap_or_default();
        assert_eq!(
            status["conditions"][0]["lastTransitionTime"],
            "1970-01-01T00:00:05Z"
        );
        assert_eq!(
            status["conditions"][0]["message"],
            "Signing still in progress. Reason: queued"
        );

        let mut patch = StatusPatch::new(
            Flavor::CertificateRequest,
            vec![ready("False", 5)],
            now.clone(),
        );
        patch.set_issued(
            &PemBundle {
                chain_pem: "PEM".into(),
                ca_pem: Some("CA".into()),
            },
            false,
        );
        let status = patch.status().unwrap_or_default();
        assert_eq!(status["certificate"], "UEVN");
        assert!(status.get("ca").is_none());
        assert_eq!(status["conditions"][0]["lastTransitionTime"], json!(now));
    }

    #[test]
    fn kubernetes_csr_gets_only_certificate_or_failed() {
        let now = conditions::now();
        let mut patch = StatusPatch::new(Flavor::KubernetesCsr, vec![], now.clone());
        assert!(!patch.set_initializing(false, false, "me"));
        patch.set_waiting_for_issuer_ready(IssuerReadiness::Outdated);
        patch.set_retryable_error("x");
        assert_eq!(patch.status(), None);
        assert_eq!(patch.events.len(), 2);
        patch.set_permanent_error("bad CSR");
        let status = patch.status().unwrap_or_default();
        assert_eq!(status["conditions"][0]["type"], "Failed");
        assert_eq!(status["conditions"][0]["status"], "True");
        assert_eq!(
            status["conditions"][0]["message"],
            "CertificateSigningRequest has failed permanently: bad CSR"
        );
        assert!(status.get("failureTime").is_none());
    }

    #[test]
    fn custom_condition_transition() {
        let existing = vec![Existing {
            type_: "Queued".into(),
            status: "True".into(),
            last_transition_time: None,
        }];
        let mut patch = StatusPatch::new(Flavor::CertificateRequest, existing, conditions::now());
        assert!(!patch.set_custom("Queued", "True", "AtCA", "m"));
        assert!(patch.set_custom("Queued", "False", "AtCA", "m"));
        assert!(patch.set_custom("Other", "True", "X", "m"));
        assert_eq!(
            patch.status().unwrap_or_default()["conditions"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
    }
}

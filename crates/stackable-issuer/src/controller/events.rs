//! Kubernetes Events (`events.k8s.io/v1`, <https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/>)
//! with issuer-lib's reasons, published through kube-runtime's [`Recorder`] (which counts
//! repeats as a series). Publishing is best effort: a failure is logged, never fatal.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

/// issuer-lib's Event reasons.
pub(crate) mod reason {
    pub(crate) const CHECKED: &str = "Checked";
    pub(crate) const ISSUED: &str = "Issued";
    pub(crate) const PENDING: &str = "Pending";
    pub(crate) const RETRYABLE_ERROR: &str = "RetryableError";
    pub(crate) const PERMANENT_ERROR: &str = "PermanentError";
    pub(crate) const WAITING_FOR_ISSUER_EXIST: &str = "WaitingForIssuerExist";
    pub(crate) const WAITING_FOR_ISSUER_READY: &str = "WaitingForIssuerReady";
}

/// The longest note events.k8s.io accepts.
const MAX_NOTE: usize = 1024;

/// One Event to publish about the reconciled object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EventSpec {
    pub(crate) warning: bool,
    pub(crate) reason: &'static str,
    pub(crate) note: String,
}

impl EventSpec {
    pub(crate) fn normal(reason: &'static str, note: impl Into<String>) -> Self {
        EventSpec {
            warning: false,
            reason,
            note: note.into(),
        }
    }

    pub(crate) fn warning(reason: &'static str, note: impl Into<String>) -> Self {
        EventSpec {
            warning: true,
            reason,
            note: note.into(),
        }
    }
}

/// Publishes `events` about `regarding`.
pub(crate) async fn publish(
    recorder: &Recorder,
    regarding: &ObjectReference,
    events: &[EventSpec],
) {
    for spec in events {
        let event = Event {
            type_: if spec.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: spec.reason.to_owned(),
            note: Some(crate::conditions::truncate(&spec.note, MAX_NOTE)),
            action: if spec.warning { "SyncFailed" } else { "Synced" }.to_owned(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, regarding).await {
            tracing::warn!(
                kind = regarding.kind.as_deref().unwrap_or_default(),
                name = regarding.name.as_deref().unwrap_or_default(),
                reason = spec.reason,
                %error,
                "cannot publish an Event"
            );
        }
    }
}

//! Issuer errors reported by the request controllers to the issuer controllers
//! (issuer-lib's `kubeutil.EventSource`): when `sign` returns an
//! [issuer error](crate::SignerError::issuer), the issuer is reconciled at once with that error,
//! which turns a `Ready` issuer not-Ready; it is then checked again.

use std::{collections::HashMap, sync::Mutex};

use futures::channel::mpsc;
use kube::runtime::reflector::ObjectRef;

use crate::issuer::IssuerResource;

/// The reports for one issuer kind.
#[derive(Debug)]
pub(crate) struct Reports<K: IssuerResource> {
    errors: Mutex<HashMap<ObjectRef<K>, String>>,
    trigger: mpsc::UnboundedSender<ObjectRef<K>>,
}

impl<K: IssuerResource> Reports<K> {
    /// The reports and the stream of issuers to reconcile (for `Controller::reconcile_on`).
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<ObjectRef<K>>) {
        let (trigger, receiver) = mpsc::unbounded();
        (
            Reports {
                errors: Mutex::new(HashMap::new()),
                trigger,
            },
            receiver,
        )
    }

    /// Records `message` for `issuer` and asks for it to be reconciled.
    pub(crate) fn report(&self, issuer: ObjectRef<K>, message: String) {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(issuer.clone(), message);
        if self.trigger.unbounded_send(issuer).is_err() {
            tracing::debug!("the issuer controller has stopped; an issuer error is dropped");
        }
    }

    /// Takes the error reported for `issuer`, if any.
    pub(crate) fn take(&self, issuer: &ObjectRef<K>) -> Option<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(issuer)
    }
}

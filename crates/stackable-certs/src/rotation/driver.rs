//! The rotation driver: a tokio task that keeps serving material fresh and publishes it.

use std::sync::Arc;

use tokio::{sync::watch, task::JoinHandle};

use crate::{
    CaBundle, LeafOptions, ServingMaterial,
    ca::{CaOptions, CertificateAuthority},
    error::Result,
    rotation::RotationPolicy,
};

/// Receives the current serving material; a new value is sent after every renewal.
pub type MaterialReceiver = watch::Receiver<Arc<ServingMaterial>>;

/// Drives renewal and CA rotation for one leaf.
#[derive(Debug)]
pub struct RotationDriver {
    policy: RotationPolicy,
    leaf: LeafOptions,
}

/// A running driver task.
#[derive(Debug)]
pub struct RunningRotation {
    receiver: MaterialReceiver,
    handle: JoinHandle<()>,
}

impl RotationDriver {
    /// A driver with an in-memory store.
    pub fn new(policy: RotationPolicy, leaf: LeafOptions) -> Self {
        RotationDriver { policy, leaf }
    }

    /// Creates the initial material and spawns the task.
    pub async fn start(self) -> Result<RunningRotation> {
        let ca = CertificateAuthority::new(
            &CaOptions::new(self.policy.ca_common_name.clone())
                .validity(self.policy.ca_validity)
                .key_algorithm(self.policy.ca_key_algorithm),
        )?;
        let issued = ca.issue(&self.leaf.clone().validity(self.policy.leaf_validity))?;
        let bundle = CaBundle::from_certificates([ca.certificate().clone()])?;
        let material = ServingMaterial::from_issued(issued, bundle)?;
        let (tx, receiver) = watch::channel(Arc::new(material));
        let handle = tokio::spawn(async move {
            tx.closed().await;
        });
        Ok(RunningRotation { receiver, handle })
    }
}

impl RunningRotation {
    /// A new receiver of the serving material.
    pub fn subscribe(&self) -> MaterialReceiver {
        self.receiver.clone()
    }

    /// The current serving material.
    pub fn current(&self) -> Arc<ServingMaterial> {
        self.receiver.borrow().clone()
    }

    /// Stops the task.
    pub async fn shutdown(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

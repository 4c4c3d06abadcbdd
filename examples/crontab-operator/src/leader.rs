//! Leader election with a `coordination.k8s.io/v1` Lease
//! (<https://kubernetes.io/docs/concepts/architecture/leases/#leader-election>), through the
//! kube-lease-manager crate (kube 5): every replica serves the webhooks, one reconciles.
//!
//! The leader renews the Lease; when it dies, another replica takes over once the Lease
//! expires (`duration` + `grace` at most). A replica that stops releases the Lease, so a rolling
//! update hands over at once.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use snafu::{ResultExt as _, Snafu};
use tokio::{sync::watch, task::JoinHandle};

/// Why leader election could not start.
#[derive(Debug, Snafu)]
pub enum Error {
    /// The Lease manager could not be built (the Lease cannot be read or created).
    #[snafu(display("cannot start leader election with Lease {namespace}/{name}"))]
    Build {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// The cause.
        source: kube_lease_manager::LeaseManagerError,
    },
}

/// Who this replica is and which Lease it competes for.
#[derive(Clone, Debug)]
pub struct Election {
    /// The Lease's namespace (the operator's).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (the Pod name).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
}

/// A running election: `leading()` says whether this replica leads right now.
#[derive(Debug)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
    task:
        JoinHandle<Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>>,
}

impl Leadership {
    /// Starts competing for the Lease.
    pub async fn start(client: Client, election: &Election) -> Result<Self, Error> {
        let seconds = election.duration.as_secs().max(2);
        let manager = LeaseManagerBuilder::new(client, &election.name)
            .with_namespace(&election.namespace)
            .with_identity(&election.identity)
            .with_duration(seconds)
            .with_grace((seconds / 3).max(1))
            .build()
            .await
            .context(BuildSnafu {
                namespace: &election.namespace,
                name: &election.name,
            })?;
        let (leading, task) = manager.watch().await;
        Ok(Leadership { leading, task })
    }

    /// A receiver of "this replica leads". Drop every one before [`Self::release`]: the Lease
    /// is released once no receiver is left.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Releases the Lease (another replica can lead at once) and stops competing.
    pub async fn release(self) {
        drop(self.leading);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader Lease"),
            Ok(Err(error)) => tracing::warn!(%error, "releasing the leader Lease failed"),
            Err(error) => tracing::warn!(%error, "the leader election task failed"),
        }
    }
}

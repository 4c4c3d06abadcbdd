//! Leader election with a `coordination.k8s.io/v1` Lease
//! (<https://kubernetes.io/docs/concepts/architecture/leases/#leader-election>), through the
//! kube-lease-manager crate (kube 5): every replica competes, one leads (reconciles).
//!
//! The leader renews the Lease; a replica that stops releases it. Another replica takes over
//! within about one `duration` either way: a standby looks at the Lease again when the expiry
//! it last saw has passed (kube-lease-manager does not watch it), and takes it if it is free
//! or expired. [`Leadership::lead`] runs a piece of work (a term) each time this replica becomes
//! the leader and stops it when the leadership is lost; an operator with a more intricate order
//! of start and shutdown uses [`Leadership::leading`] itself.
//!
//! RBAC: `get`, `update`, `patch` on the Lease by name, `create` on leases in its namespace.

use std::{future::Future, pin::pin, time::Duration};

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

/// Completes when a term of [`Leadership::lead`] must end.
#[derive(Debug)]
pub struct Stopped(watch::Receiver<bool>);

impl Stopped {
    /// Waits until the term must end.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
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

    /// Runs `term` each time this replica becomes the leader, until `shutdown` completes; then
    /// releases the Lease. `term` gets a future that completes when the term must end (the
    /// leadership was lost, or `shutdown` completed) and must return soon after it does: no two
    /// replicas' terms should overlap for longer than that. A term that fails ends the
    /// election with its error (the Lease released); a term that returns `Ok` without being
    /// asked to ends it too.
    pub async fn lead<E, Term, Fut>(
        self,
        shutdown: impl Future<Output = ()>,
        mut term: Term,
    ) -> Result<(), E>
    where
        Term: FnMut(Stopped) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let mut leading = self.leading();
        let mut shutdown = pin!(shutdown);
        let result = 'election: loop {
            tokio::select! {
                () = &mut shutdown => break 'election Ok(()),
                running = until(&mut leading, true) => {
                    if !running {
                        tracing::warn!("the leader election ended");
                        break 'election Ok(());
                    }
                }
            }
            tracing::info!("leading: starting the term");
            let (stop, stopped) = watch::channel(false);
            let mut run = pin!(term(Stopped(stopped)));
            let mut shutting_down = false;
            let outcome = loop {
                let stopping = *stop.borrow();
                tokio::select! {
                    outcome = &mut run => break outcome,
                    () = &mut shutdown, if !shutting_down => {
                        shutting_down = true;
                        stop.send_replace(true);
                    }
                    _ = until(&mut leading, false), if !stopping => {
                        tracing::info!("no longer leading: stopping the term");
                        stop.send_replace(true);
                    }
                }
            };
            let lost = *stop.borrow() && !shutting_down;
            match outcome {
                Err(error) => break 'election Err(error),
                Ok(()) if lost => continue,
                Ok(()) => break 'election Ok(()),
            }
        };
        drop(leading);
        self.release().await;
        result
    }

    /// Releases the Lease (another replica may lead without waiting for it to expire) and stops
    /// competing.
    pub async fn release(self) {
        drop(self.leading);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader Lease"),
            Ok(Err(error)) => tracing::warn!(%error, "releasing the leader Lease failed"),
            Err(error) => tracing::warn!(%error, "the leader election task failed"),
        }
    }
}

/// Waits until `leading` is `want`; `false` when the election ended instead.
async fn until(leading: &mut watch::Receiver<bool>, want: bool) -> bool {
    leading.wait_for(|l| *l == want).await.is_ok()
}

//! The rotation driver: a tokio task that keeps serving material fresh and publishes it.
//!
//! The task sleeps until the next deadline of the state machine, but never longer than
//! [`RotationPolicy::max_sleep`] (default 60 s): on every wake-up the deadlines are checked
//! against the wall clock again, so a suspended machine or an NTP step is noticed within
//! that cap. On each wake-up the store is also re-read, so material written by another
//! replica is adopted. Serving material is published on a [`tokio::sync::watch`] channel for
//! the webhook server, which the API server reaches as described in
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>.

use std::{sync::Arc, time::Duration};

use snafu::ResultExt as _;
use time::OffsetDateTime;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    LeafOptions, ServingMaterial,
    rotation::{
        CertificatesSnafu, Error, IncompleteUserMaterialSnafu, InvalidPolicySnafu, RotationPolicy,
        StoreSnafu, TooManyConflictsSnafu,
        state::{RotationState, advance, next_deadline},
        store::{Classified, InMemoryStore, Store, WriteOutcome, classify, encode},
    },
};

/// Receives the current serving material; a new value is sent whenever it changes.
pub type MaterialReceiver = watch::Receiver<Arc<ServingMaterial>>;

/// The wall clock used by the driver (replaceable in tests).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

const MAX_CONFLICTS: u32 = 5;

/// Drives renewal and CA rotation for one leaf, storing state in a [`Store`].
pub struct RotationDriver<S: Store = InMemoryStore> {
    policy: RotationPolicy,
    leaf: LeafOptions,
    store: S,
    clock: Clock,
}

impl<S: Store> std::fmt::Debug for RotationDriver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotationDriver")
            .field("policy", &self.policy)
            .field("leaf", &self.leaf)
            .field("store", &self.store.describe())
            .finish()
    }
}

/// A running driver task.
#[derive(Debug)]
pub struct RunningRotation {
    receiver: MaterialReceiver,
    shutdown: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// What the store currently provides.
#[derive(Clone, Debug)]
pub(crate) enum Current {
    Managed { state: Box<RotationState> },
    User(ServingMaterial),
}

impl Current {
    fn material(&self) -> Option<ServingMaterial> {
        match self {
            Current::Managed { state } => state.serving_material(),
            Current::User(m) => Some(m.clone()),
        }
    }
}

impl RotationDriver<InMemoryStore> {
    /// A driver keeping its state in memory (a restart starts with a new CA).
    pub fn new(policy: RotationPolicy, leaf: LeafOptions) -> Self {
        Self::with_store(policy, leaf, InMemoryStore::new())
    }
}

impl<S: Store> RotationDriver<S> {
    /// A driver keeping its state in `store`. `leaf.validity` is replaced by
    /// `policy.leaf_validity`.
    pub fn with_store(policy: RotationPolicy, leaf: LeafOptions, store: S) -> Self {
        RotationDriver {
            policy,
            leaf,
            store,
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }

    /// Replaces the wall clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the policy, brings the store up to date (creating material if needed),
    /// publishes the first material and spawns the task.
    pub async fn start(self) -> Result<RunningRotation, Error> {
        self.policy.validate().context(InvalidPolicySnafu)?;
        let current = self.sync().await?;
        let Some(material) = current.material() else {
            // A managed state always has a leaf after `advance`.
            return IncompleteUserMaterialSnafu {
                store: self.store.describe(),
                reason: "no leaf after synchronisation",
            }
            .fail();
        };
        let (tx, receiver) = watch::channel(Arc::new(material));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let handle = tokio::spawn(self.run(current, tx, shutdown_rx));
        Ok(RunningRotation {
            receiver,
            shutdown,
            handle,
        })
    }

    async fn run(
        self,
        mut current: Current,
        tx: watch::Sender<Arc<ServingMaterial>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let retry = self.policy.max_sleep.min(Duration::from_secs(30));
        let mut failed = false;
        loop {
            let now = (self.clock)();
            let deadline = match &current {
                Current::Managed { state } => next_deadline(state, &self.policy, now),
                Current::User(_) => now + time::Duration::seconds(3600),
            };
            let until = std::time::Duration::try_from(deadline - now).unwrap_or_default();
            let sleep = if failed {
                retry
            } else {
                until.min(self.policy.max_sleep)
            };
            tracing::trace!(?sleep, %deadline, "rotation driver sleeping");
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => break,
                _ = tx.closed() => break,
            }
            match self.sync().await {
                Ok(next) => {
                    failed = false;
                    if let Some(material) = next.material() {
                        tx.send_if_modified(|old| {
                            if **old == material {
                                false
                            } else {
                                tracing::info!(
                                    store = %self.store.describe(),
                                    leaf_serial = %material.leaf().info().serial_hex(),
                                    not_after = %material.not_after(),
                                    bundle_size = material.ca_bundle().len(),
                                    "publishing new serving material"
                                );
                                *old = Arc::new(material);
                                true
                            }
                        });
                    }
                    current = next;
                }
                Err(error) => {
                    failed = true;
                    tracing::warn!(
                        error = %snafu::Report::from_error(error),
                        retry_in = ?retry,
                        "certificate rotation failed; keeping the current material"
                    );
                }
            }
        }
        tracing::debug!(store = %self.store.describe(), "rotation driver stopped");
    }

    /// Reads the store, performs due steps and writes them back with preconditions.
    /// On a lost race the store is re-read and the winner's material adopted.
    pub(crate) async fn sync(&self) -> Result<Current, Error> {
        let store = self.store.describe();
        for _ in 0..MAX_CONFLICTS {
            let now = (self.clock)();
            let object = self.store.read().await.context(StoreSnafu {
                action: "read",
                store: &store,
            })?;
            let Some(object) = object else {
                let adv = advance(&RotationState::empty(), &self.policy, &self.leaf, now)
                    .context(CertificatesSnafu { store: &store })?;
                match self
                    .store
                    .create(encode(&adv.state))
                    .await
                    .context(StoreSnafu {
                        action: "create",
                        store: &store,
                    })? {
                    WriteOutcome::Written { .. } => {
                        log_steps(&store, &adv.steps, "created");
                        return Ok(Current::Managed {
                            state: Box::new(adv.state),
                        });
                    }
                    WriteOutcome::Conflict => {
                        tracing::info!(%store, "another replica created the material first; adopting it");
                        continue;
                    }
                }
            };
            let (base, must_write, what) = match classify(&object.data, now) {
                Classified::Managed(state) => (state, false, "updated"),
                Classified::ProvidedCa(state) => {
                    tracing::info!(%store, "adopting the CA found in the store (no rotation state yet)");
                    (state, true, "adopted CA")
                }
                Classified::UserProvided(material) => {
                    let left = material.not_after() - now;
                    if left < time::Duration::days(7) {
                        tracing::warn!(%store, not_after = %material.not_after(), "user-provided certificate expires soon and is not rotated automatically (no CA key in the store)");
                    } else {
                        tracing::debug!(%store, "serving user-provided material; it is not rotated");
                    }
                    return Ok(Current::User(material));
                }
                Classified::Incomplete { reason } => {
                    return IncompleteUserMaterialSnafu { store, reason }.fail();
                }
                Classified::Garbage { reason } => {
                    tracing::warn!(%store, %reason, "stored material is unusable; repairing it with new material");
                    (RotationState::empty(), true, "repaired")
                }
            };
            let adv = advance(&base, &self.policy, &self.leaf, now)
                .context(CertificatesSnafu { store: &store })?;
            if adv.steps.is_empty() && !must_write {
                return Ok(Current::Managed {
                    state: Box::new(adv.state),
                });
            }
            match self
                .store
                .replace(encode(&adv.state), &object.version)
                .await
                .context(StoreSnafu {
                    action: "replace",
                    store: &store,
                })? {
                WriteOutcome::Written { .. } => {
                    log_steps(&store, &adv.steps, what);
                    return Ok(Current::Managed {
                        state: Box::new(adv.state),
                    });
                }
                WriteOutcome::Conflict => {
                    tracing::info!(%store, "another replica changed the material first; re-reading and adopting it");
                }
            }
        }
        TooManyConflictsSnafu {
            store,
            attempts: MAX_CONFLICTS,
        }
        .fail()
    }
}

fn log_steps(store: &str, steps: &[crate::rotation::Step], what: &str) {
    for step in steps {
        tracing::info!(%store, %step, "certificate rotation step ({what})");
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

    /// Stops the task and waits for it.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.handle.await;
    }
}

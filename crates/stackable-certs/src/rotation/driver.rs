//! The rotation driver: a tokio task that keeps serving material fresh and publishes it.
//!
//! The store holds what replicas share (the CAs and the stage of a rotation); each replica
//! issues its own leaf from the shared CA that [`serving_authority`] names. The task wakes at
//! the next deadline, when the store changes ([`Store::changes`]: another replica wrote, the
//! Secret was deleted or edited), when what is published changes ([`PublishedTrust`], read back
//! from the API server by the injector) and at least every [`RotationPolicy::max_sleep`]
//! (60 s): on every wake-up the deadlines are checked against the wall clock again, so a
//! suspended machine or an NTP step is noticed within that cap, and the store is re-read.
//!
//! When the store lost its state (deleted, emptied, damaged) the driver writes back the state
//! it holds: the CAs keep their identity. Only a driver that holds nothing creates a new CA,
//! and then keeps whatever the published bundle trusts in the new bundle for
//! `propagation_delay + overlap` (see [`super::state::RetainedCa`]).
//!
//! Serving material is published on a [`tokio::sync::watch`] channel for the webhook server,
//! which the API server reaches as described in
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#contacting-the-webhook>.

use std::{sync::Arc, time::Duration};

use snafu::ResultExt as _;
use time::OffsetDateTime;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    LeafOptions, ServingMaterial,
    rotation::{
        CertificatesSnafu, Error, IncompleteUserMaterialSnafu, InvalidPolicySnafu, NewerStateSnafu,
        PublishedTrust, RotationPolicy, StoreSnafu, TooManyConflictsSnafu, WaitingForRestoreSnafu,
        state::{
            RotationState, ServedLeaf, Step, advance_cas, issue_leaf, leaf_due_from, leaf_renew_at,
            next_cas_deadline, round_deadline, serving_authority, waiting_for_publication,
        },
        store::{
            Classified, InMemoryStore, Store, StoreChanges, WriteOutcome, classify, encode,
            encode_onto,
        },
    },
};

/// Receives the current serving material; a new value is sent whenever it changes.
pub type MaterialReceiver = watch::Receiver<Arc<ServingMaterial>>;

/// The wall clock used by the driver (replaceable in tests).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

const MAX_CONFLICTS: u32 = 5;

/// How many times a starting driver that holds no state re-reads an empty store, a second
/// apart, before it creates a new CA while the published bundle trusts CAs.
const RESTORE_WAIT_ATTEMPTS: u32 = 5;

/// What a running driver is doing, for logs, metrics and readiness (never key material).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationStatus {
    /// Serial (hex) of the served leaf.
    pub leaf_serial: Option<String>,
    /// Serial (hex) of the CA that signed it.
    pub issuer_serial: Option<String>,
    /// Whether every target's `caBundle` holds that CA (true when nothing is observed).
    pub issuer_published: bool,
    /// The stage of the shared rotation (`stable`, `propagating (…)`, `overlap (…)`), or
    /// `user-provided`.
    pub stage: String,
    /// What the rotation waits for, if anything.
    pub waiting: Option<String>,
    /// The last error, when the last attempt failed (the served material stays).
    pub error: Option<String>,
}

/// Drives renewal and CA rotation for one leaf, sharing CAs through a [`Store`].
pub struct RotationDriver<S: Store = InMemoryStore> {
    policy: RotationPolicy,
    leaf: LeafOptions,
    store: S,
    clock: Clock,
    published: Option<watch::Receiver<PublishedTrust>>,
}

impl<S: Store> std::fmt::Debug for RotationDriver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotationDriver")
            .field("policy", &self.policy)
            .field("leaf", &self.leaf)
            .field("store", &self.store.describe())
            .field("observes_targets", &self.published.is_some())
            .finish()
    }
}

/// A running driver task.
#[derive(Debug)]
pub struct RunningRotation {
    receiver: MaterialReceiver,
    status: watch::Receiver<RotationStatus>,
    shutdown: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// What the store currently provides.
#[derive(Clone, Debug)]
pub(crate) enum Current {
    /// The shared state (never with a leaf).
    Managed {
        state: Box<RotationState>,
    },
    User(ServingMaterial),
}

/// The state of one replica: what the store provides, the last good shared state (written
/// back when the store loses it) and this replica's own leaf.
struct Replica {
    current: Current,
    held: Option<RotationState>,
    leaf: Option<ServedLeaf>,
}

impl RotationDriver<InMemoryStore> {
    /// A driver keeping its CA in this process's memory: every process (replica) gets a CA of
    /// its own, and a restart starts with a new CA. For tests, demos and single-process use;
    /// replicas share one CA through a Secret (`rotation::kube::SecretStore`).
    pub fn new(policy: RotationPolicy, leaf: LeafOptions) -> Self {
        Self::with_store(policy, leaf, InMemoryStore::new())
    }
}

impl<S: Store> RotationDriver<S> {
    /// A driver keeping its shared state in `store`. `leaf.validity` is replaced by
    /// `policy.leaf_validity`.
    pub fn with_store(policy: RotationPolicy, leaf: LeafOptions, store: S) -> Self {
        RotationDriver {
            policy,
            leaf,
            store,
            clock: Arc::new(OffsetDateTime::now_utc),
            published: None,
        }
    }

    /// Replaces the wall clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Gates the rotation on what the targets' `caBundle`s hold, as read back from the API
    /// server (stackable-cainject's injector publishes it): leaves come from a new CA only once
    /// it is in every target, the rotation waits while it is not, and a state created afresh
    /// keeps what the targets trust. Without it only the policy's delays pace a rotation.
    pub fn with_published_trust(mut self, published: watch::Receiver<PublishedTrust>) -> Self {
        self.published = Some(published);
        self
    }

    /// Validates the policy, brings the store up to date (creating material if needed),
    /// issues this replica's leaf, publishes the first material and spawns the task.
    ///
    /// Fails when the store cannot be read or written, or holds material that must not be
    /// overwritten; callers that must not exit retry (stackable-cainject's
    /// `ServingCertificates` does).
    pub async fn start(self) -> Result<RunningRotation, Error> {
        self.policy.validate().context(InvalidPolicySnafu)?;
        let mut attempt = 0;
        let current = loop {
            let published = self.published();
            let allow_new_ca = attempt >= RESTORE_WAIT_ATTEMPTS;
            match self.sync(None, &published, allow_new_ca).await {
                Err(Error::WaitingForRestore { .. }) => {
                    attempt += 1;
                    tracing::info!(store = %self.store.describe(), attempt, "the store holds no usable state but the published caBundle trusts CAs; waiting for a replica that holds them");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => break other?,
            }
        };
        let held = match &current {
            Current::Managed { state } => Some((**state).clone()),
            Current::User(_) => None,
        };
        let mut replica = Replica {
            current,
            held,
            leaf: None,
        };
        let published = self.published();
        let material = self.refresh_leaf(&mut replica, &published)?;
        let Some(material) = material else {
            return IncompleteUserMaterialSnafu {
                store: self.store.describe(),
                reason: "no leaf after synchronisation",
            }
            .fail();
        };
        let status = self.status(&replica, &published, None);
        let (tx, receiver) = watch::channel(Arc::new(material));
        let (status_tx, status) = watch::channel(status);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let changes = self.store.changes();
        let handle = tokio::spawn(self.run(replica, tx, status_tx, changes, shutdown_rx));
        Ok(RunningRotation {
            receiver,
            status,
            shutdown,
            handle,
        })
    }

    fn published(&self) -> PublishedTrust {
        self.published
            .as_ref()
            .map(|p| p.borrow().clone())
            .unwrap_or_default()
    }

    async fn run(
        self,
        mut replica: Replica,
        tx: watch::Sender<Arc<ServingMaterial>>,
        status_tx: watch::Sender<RotationStatus>,
        mut changes: Option<StoreChanges>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let retry = self.policy.max_sleep.min(Duration::from_secs(30));
        let mut published_rx = self.published.clone();
        let mut failed = false;
        loop {
            let now = (self.clock)();
            let published = self.published();
            // Capped by max_sleep, and on a whole second like every deadline: certificate
            // times are whole seconds, so a renewal at a fractional time issues less than
            // asked for.
            let cap = round_deadline(now.saturating_add(to_time(self.policy.max_sleep)), now);
            let deadline = self.deadline(&replica, &published, now).min(cap);
            let until = std::time::Duration::try_from(deadline - now).unwrap_or_default();
            let sleep = if failed { retry } else { until };
            tracing::trace!(?sleep, %deadline, "rotation driver sleeping");
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => break,
                _ = tx.closed() => break,
                changed = wait_changed(changes.as_mut()) => {
                    if !changed { changes = None; }
                }
                changed = wait_changed(published_rx.as_mut()) => {
                    if !changed { published_rx = None; }
                }
            }
            let published = self.published();
            let result = match self.sync(replica.held.as_ref(), &published, true).await {
                Ok(next) => {
                    if let Current::Managed { state } = &next {
                        replica.held = Some((**state).clone());
                    }
                    replica.current = next;
                    self.refresh_leaf(&mut replica, &published)
                }
                Err(error) => Err(error),
            };
            let error = match result {
                Ok(material) => {
                    failed = false;
                    if let Some(material) = material {
                        self.publish(&tx, material);
                    }
                    None
                }
                Err(error) => {
                    failed = true;
                    let report = snafu::Report::from_error(&error).to_string();
                    tracing::warn!(
                        error = %report,
                        retry_in = ?retry,
                        "certificate rotation failed; keeping the current material"
                    );
                    Some(report)
                }
            };
            let status = self.status(&replica, &published, error);
            status_tx.send_if_modified(|old| {
                if *old == status {
                    false
                } else {
                    *old = status;
                    true
                }
            });
        }
        tracing::debug!(store = %self.store.describe(), "rotation driver stopped");
    }

    fn publish(&self, tx: &watch::Sender<Arc<ServingMaterial>>, material: ServingMaterial) {
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

    fn deadline(
        &self,
        replica: &Replica,
        published: &PublishedTrust,
        now: OffsetDateTime,
    ) -> OffsetDateTime {
        match &replica.current {
            Current::Managed { state } => {
                let cas = next_cas_deadline(state, &self.policy, published, now);
                match &replica.leaf {
                    Some(leaf) => cas.min(round_deadline(
                        leaf_renew_at(&self.policy, &leaf.certificate),
                        now,
                    )),
                    None => cas,
                }
            }
            Current::User(_) => now + time::Duration::seconds(3600),
        }
    }

    fn status(
        &self,
        replica: &Replica,
        published: &PublishedTrust,
        error: Option<String>,
    ) -> RotationStatus {
        let now = (self.clock)();
        match &replica.current {
            Current::Managed { state } => {
                let issuer = replica.leaf.as_ref().and_then(|leaf| {
                    state
                        .authorities()
                        .iter()
                        .map(|a| a.ca.certificate())
                        .chain(state.retained().iter().map(|r| &r.certificate))
                        .find(|ca| leaf.certificate.is_issued_by(ca))
                });
                let waiting = waiting_for_publication(state, published, now).map(|ca| {
                    format!(
                        "CA {} is not yet in every target's caBundle; leaves keep coming from the previous CA",
                        ca.info().serial_hex()
                    )
                });
                let waiting = match (waiting, issuer) {
                    (Some(w), _) => Some(w),
                    (None, Some(issuer)) if !published.trusts(issuer) => Some(format!(
                        "the served leaf's CA {} is not yet in every target's caBundle",
                        issuer.info().serial_hex()
                    )),
                    (None, _) => None,
                };
                RotationStatus {
                    leaf_serial: replica
                        .leaf
                        .as_ref()
                        .map(|l| l.certificate.info().serial_hex()),
                    issuer_serial: issuer.map(|ca| ca.info().serial_hex()),
                    issuer_published: issuer.is_some_and(|ca| published.trusts(ca)),
                    stage: state.stage().to_string(),
                    waiting,
                    error,
                }
            }
            Current::User(material) => {
                let issuer = material
                    .ca_bundle()
                    .certificates()
                    .iter()
                    .find(|ca| material.leaf().is_issued_by(ca));
                RotationStatus {
                    leaf_serial: Some(material.leaf().info().serial_hex()),
                    issuer_serial: issuer.map(|ca| ca.info().serial_hex()),
                    issuer_published: issuer.is_some_and(|ca| published.trusts(ca)),
                    stage: "user-provided".to_owned(),
                    waiting: None,
                    error,
                }
            }
        }
    }

    /// Issues this replica's leaf when it is missing, due, asked differently or not from the
    /// CA that should sign it now, and returns the material to serve.
    fn refresh_leaf(
        &self,
        replica: &mut Replica,
        published: &PublishedTrust,
    ) -> Result<Option<ServingMaterial>, Error> {
        let store = self.store.describe();
        let state = match &replica.current {
            Current::User(material) => return Ok(Some(material.clone())),
            Current::Managed { state } => state,
        };
        let now = (self.clock)();
        let wanted = self.leaf.clone().validity(self.policy.leaf_validity);
        let issuer = serving_authority(state, published);
        if let Some(reason) =
            leaf_due_from(replica.leaf.as_ref(), issuer, &self.policy, &wanted, now)
            && let Some(issuer) = issuer
        {
            let (leaf, step) = issue_leaf(issuer, &self.policy, &wanted, reason, now)
                .context(CertificatesSnafu { store: &store })?;
            log_steps(&store, &[step], "this replica");
            replica.leaf = Some(leaf);
        }
        Ok(replica
            .leaf
            .as_ref()
            .and_then(|leaf| state.with_leaf(Some(leaf.clone())).serving_material()))
    }

    /// Reads the store, performs due CA steps and writes them back with preconditions. On a
    /// lost race the store is re-read and the winner's state adopted. When the store lost its
    /// state, `held` (the state this replica holds) is written back.
    pub(crate) async fn sync(
        &self,
        held: Option<&RotationState>,
        published: &PublishedTrust,
        allow_new_ca: bool,
    ) -> Result<Current, Error> {
        let store = self.store.describe();
        for _ in 0..MAX_CONFLICTS {
            let now = (self.clock)();
            let object = self.store.read().await.context(StoreSnafu {
                action: "read",
                store: &store,
            })?;
            let Some(object) = object else {
                let (base, what) = self.restore_base(
                    &store,
                    held,
                    published,
                    allow_new_ca,
                    "the store does not exist",
                )?;
                let adv = advance_cas(&base, &self.policy, published, now)
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
                        log_steps(&store, &adv.steps, what);
                        return Ok(Current::Managed {
                            state: Box::new(adv.state),
                        });
                    }
                    WriteOutcome::Conflict => {
                        tracing::info!(%store, "another replica created the state first; adopting it");
                        continue;
                    }
                }
            };
            let classified = classify(&object.data, now);
            let (base, must_write, what) = match classified {
                Classified::Managed(state) => (state, false, "updated"),
                Classified::ProvidedCa(state) => {
                    tracing::info!(%store, "adopting the CA found in the store (no usable rotation state)");
                    (state.without_leaf(), true, "adopted CA")
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
                Classified::Newer { version } => {
                    return NewerStateSnafu { store, version }.fail();
                }
                Classified::Corrupt { reason } | Classified::Garbage { reason } => {
                    let (base, what) =
                        self.restore_base(&store, held, published, allow_new_ca, &reason)?;
                    (base, true, what)
                }
            };
            let adv = advance_cas(&base, &self.policy, published, now)
                .context(CertificatesSnafu { store: &store })?;
            if adv.steps.is_empty() && !must_write {
                return Ok(Current::Managed {
                    state: Box::new(adv.state),
                });
            }
            match self
                .store
                .replace(encode_onto(&object.data, &adv.state), &object.version)
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
                    tracing::info!(%store, "another replica changed the state first; re-reading and adopting it");
                }
            }
        }
        TooManyConflictsSnafu {
            store,
            attempts: MAX_CONFLICTS,
        }
        .fail()
    }

    /// The state to write into a store that lost its state: the one this replica holds (the
    /// CAs keep their identity), else a new one, unless the published bundle trusts CAs and
    /// waiting for a replica that holds them is still allowed.
    fn restore_base(
        &self,
        store: &str,
        held: Option<&RotationState>,
        published: &PublishedTrust,
        allow_new_ca: bool,
        reason: &str,
    ) -> Result<(RotationState, &'static str), Error> {
        if let Some(held) = held {
            tracing::warn!(%store, %reason, "the stored state is gone or unusable; writing back the state this replica holds (same CAs)");
            return Ok((held.without_leaf(), "restored"));
        }
        if !allow_new_ca && !published.certificates().is_empty() {
            return WaitingForRestoreSnafu { store }.fail();
        }
        if published.certificates().is_empty() {
            tracing::info!(%store, %reason, "no state yet; creating a CA");
        } else {
            tracing::warn!(%store, %reason, "no replica restored the state; creating a new CA and keeping the CAs clients trust now in the bundle");
        }
        Ok((RotationState::empty(), "created"))
    }
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// Waits for a change on an optional watch; `false` when its sender is gone. Pending forever
/// without a watch.
async fn wait_changed<T>(rx: Option<&mut watch::Receiver<T>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => futures_pending().await,
    }
}

async fn futures_pending() -> bool {
    std::future::pending::<bool>().await
}

fn log_steps(store: &str, steps: &[Step], what: &str) {
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

    /// What the driver is doing (serving CA, what it waits for, the last error).
    pub fn status(&self) -> watch::Receiver<RotationStatus> {
        self.status.clone()
    }

    /// Stops the task and waits for it.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.handle.await;
    }
}
